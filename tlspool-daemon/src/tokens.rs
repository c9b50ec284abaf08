//! PKCS #11 at start-up and at handshake time: the module of `pkcs11_path`, the login to the
//! tokens that hold local identities, and the GnuTLS side of the same module with a PIN
//! callback.
//!
//! The module is initialised through cryptoki first and then added to GnuTLS, which then
//! opens the private keys named by the `pkcs11:` URIs of the localid database. A PKCS #11
//! login belongs to the process and the token, so a login done here also serves the
//! sessions GnuTLS opens. At start-up the tokens of the `pkcs11_token` lines and of the
//! localid database's URIs are logged in to with `pkcs11_pin`. A token that is still logged
//! out when a handshake needs its key is logged in to by [`TokenLogin`], which asks
//! `pkcs11_pin` first and then the registered PIN entry service.
//!
//! PINs are never logged, and the copies handed to cryptoki and GnuTLS are wiped when
//! dropped. Only user PINs are requested: the GnuTLS callback rejects security-officer
//! requests.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tracing::{info, warn};

use tlspool_core::Config;
use tlspool_core::db::{Database, DbEnv, LocalIdEntry};
use tlspool_core::logging::TARGET_FILES;
use tlspool_core::tls;
use tlspool_pkcs11::{
    ConfiguredPin, Module, PinChain, Pkcs11Error, Pkcs11Uri, TokenInfo, Zeroizing,
};

use crate::pinentry::{PinEntryService, ServicePin};

/// Logs in to the token of a key before GnuTLS opens it, with the configured PIN and then
/// the PIN entry service.
#[derive(Debug)]
pub(crate) struct TokenLogin {
    module: Arc<Module>,
    pins: PinChain,
}

impl TokenLogin {
    /// Logs in to the token that `key_uri` names, unless a session of this process already
    /// is logged in. Blocks while the PIN entry service is asked, so call it on a blocking
    /// thread of the runtime.
    ///
    /// # Errors
    ///
    /// An invalid URI, [`Pkcs11Error::TokenNotFound`], and the login errors of
    /// [`Module::login`].
    pub(crate) fn log_in_for_key(&self, key_uri: &str) -> Result<(), Pkcs11Error> {
        let uri = Pkcs11Uri::parse(key_uri)?;
        let token = self.module.find_token(&uri)?;
        self.module.login(&token, &self.pins)
    }
}

/// Loads the configured PKCS #11 module, logs in to the tokens of the local identities with
/// `pkcs11_pin` and makes the module available to GnuTLS. Returns `None` without
/// `pkcs11_path`. A token that `pkcs11_pin` does not open is left for the PIN entry service.
///
/// # Errors
///
/// A module that does not load, a locked token, or a GnuTLS failure to add the module.
pub(crate) fn set_up(
    config: &Config,
    databases: Option<&DbEnv>,
    pin_entry: &Arc<PinEntryService>,
) -> anyhow::Result<Option<TokenLogin>> {
    let Some(path) = config.pkcs11_path() else {
        return Ok(None);
    };
    let module = Module::load(path)
        .with_context(|| format!("loading the PKCS #11 module {}", path.display()))?;

    let pin = config.pkcs11_pin().map(ConfiguredPin::new);
    for token in tokens_to_log_in(config, databases, &module)? {
        let Some(pin) = &pin else {
            info!(target: TARGET_FILES, token = %token.label,
                "no pkcs11_pin configured, so the PIN entry service is asked at the first handshake");
            continue;
        };
        match module.login(&token, pin) {
            Ok(()) => {
                info!(target: TARGET_FILES, token = %token.label, "logged in to PKCS #11 token")
            }
            Err(error @ Pkcs11Error::WrongPin { .. }) => {
                warn!(target: TARGET_FILES, token = %token.label, %error,
                    "pkcs11_pin was rejected, so the PIN entry service is asked at the first handshake");
            }
            Err(error) => {
                return Err(error).with_context(|| {
                    format!(
                        "logging in to PKCS #11 token {:?} with pkcs11_pin",
                        token.label
                    )
                });
            }
        }
    }

    add_to_gnutls(path, config.pkcs11_pin())?;
    let mut pins = PinChain::new();
    if let Some(pin) = pin {
        pins = pins.then(pin);
    }
    let pins = pins.then(ServicePin::new(Arc::clone(pin_entry)));
    Ok(Some(TokenLogin { module, pins }))
}

/// Adds the module to GnuTLS and installs the PIN callback.
fn add_to_gnutls(path: &Path, pin: Option<&str>) -> anyhow::Result<()> {
    let path_text = path
        .to_str()
        .with_context(|| format!("PKCS #11 module path {} is not UTF-8", path.display()))?;
    tls::pkcs11_add_provider(path_text)
        .with_context(|| format!("adding the PKCS #11 module {path_text} to GnuTLS"))?;
    let pin = pin.map(|pin| Zeroizing::new(pin.to_owned()));
    tls::set_pin_callback(Box::new(move |request| {
        if request.security_officer {
            warn!(target: TARGET_FILES, token = %request.token_label,
                "rejected a security-officer PIN request");
            return None;
        }
        // NOTE: GnuTLS asks here only when the login of `TokenLogin` was lost. GnuTLS then
        // runs C_Login and its retries itself, outside the wrong-PIN count and lock-out
        // checks of `Module::login`, so this callback offers `pkcs11_pin` and never the PIN
        // entry service.
        if pin.is_none() || request.previous_wrong || request.final_try {
            warn!(target: TARGET_FILES, token = %request.token_label,
                previous_wrong = request.previous_wrong, final_try = request.final_try,
                "no usable PIN for a PKCS #11 login");
            return None;
        }
        pin.clone()
    }));
    Ok(())
}

/// Returns the tokens of the `pkcs11_token` lines and of the localid database's URIs, each
/// once. A URI that matches no token is logged and skipped.
fn tokens_to_log_in(
    config: &Config,
    databases: Option<&DbEnv>,
    module: &Module,
) -> anyhow::Result<Vec<TokenInfo>> {
    let mut uris: Vec<String> = config
        .pkcs11_tokens()
        .iter()
        .filter(|token| token.module == config.pkcs11_path().unwrap_or(&token.module))
        .map(|token| token.uri.clone())
        .collect();
    if let Some(databases) = databases {
        let pairs = databases
            .export(Database::LocalId)
            .context("reading the localid database for its PKCS #11 URIs")?;
        uris.extend(
            pairs
                .iter()
                .filter_map(|(_, value)| LocalIdEntry::decode(value).ok()?.pkcs11_uri)
                .filter(|uri| uri.starts_with("pkcs11:")),
        );
    }

    let mut tokens: Vec<TokenInfo> = Vec::new();
    for text in uris {
        let found = Pkcs11Uri::parse(&text).and_then(|uri| module.find_token(&uri));
        match found {
            Ok(token) => {
                if !tokens.iter().any(|known| known.slot_id == token.slot_id) {
                    tokens.push(token);
                }
            }
            Err(error @ (Pkcs11Error::TokenNotFound { .. } | Pkcs11Error::InvalidUri { .. })) => {
                warn!(target: TARGET_FILES, uri = %text, %error,
                    "PKCS #11 URI names no token of the module");
            }
            Err(error) => {
                return Err(error).with_context(|| format!("finding the token of {text}"));
            }
        }
    }
    Ok(tokens)
}
