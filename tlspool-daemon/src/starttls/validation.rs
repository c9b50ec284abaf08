//! Validation expressions of a STARTTLS handshake: their sources, the secure default, and the
//! checks behind each predicate.
//!
//! The expressions of the trust anchor that signed the peer's chain (unless it is `1`), of the
//! local identity's `LID_TYPE_VALEXP` entries and of `validate_default` are combined with AND.
//! Without any of them [`DEFAULT_VALEXP`] applies, so a peer is never accepted unchecked. The
//! predicates that need the network (`D`, `d`, `O`, `o`, `G`, `g`) run through the daemon's
//! [`OnlineChecks`], which are set up on first use inside the runtime. All other predicates
//! are decided from facts gathered right after the handshake, and those the daemon cannot
//! know are false.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use nix::sys::socket::{SockaddrLike, SockaddrStorage, getpeername};
use tokio::sync::OnceCell;
use tracing::info;

use tlspool_core::config::{Config, ConfigError, Key};
use tlspool_core::logging::TARGET_CERT;
use tlspool_validate::CacheConfig;
use tlspool_validate::dane::Transport;
use tlspool_validate::ldap::{Credential, Outcome};
use tlspool_validate::predicates::{
    AnchorPkix, BoxFuture, Finding, OnlineChecks, OnlineSettings, PredicateChecks,
};
use tlspool_validate::valexp::{NormalForm, Predicate};

use super::error::StartTlsError;

/// The expression that applies when no source configures one: the peer's chain validates to
/// a trusted anchor (`T`) and its certificate carries the requested remote identity (`I`).
pub(crate) const DEFAULT_VALEXP: &str = "IT&";

/// The bound on each predicate's check. It exceeds the worst case of the online checks with
/// their default timeouts (2 s per DNS lookup, 2 s per directory server, 200 ms per cache
/// request), so it only ends a check that hangs.
pub(crate) const CHECK_TIMEOUT: Duration = Duration::from_secs(8);

/// Bound on one DNS lookup of the DANE check.
const DNS_TIMEOUT: Duration = tlspool_validate::dns::DEFAULT_TIMEOUT;
/// Bound on the `ldap_proxy` server for one directory check.
const LDAP_TIMEOUT: Duration = tlspool_validate::ldap::DEFAULT_TIMEOUT;
/// `memcache_port` when it is not configured.
const DEFAULT_MEMCACHE_PORT: u16 = 11211;
/// `memcache_ttl` in seconds when it is not configured.
const DEFAULT_MEMCACHE_TTL: u32 = 3600;

/// The validation settings of the daemon and its online checks.
#[derive(Debug)]
pub struct Validation {
    validate_default: Option<String>,
    settings: OnlineSettings,
    online: OnceCell<OnlineChecks>,
}

impl Validation {
    /// Reads `validate_default`, `dns_server`, `dnssec_rootkey`, `ldap_proxy` and the
    /// `memcache_*` keys.
    pub fn from_config(config: &Config) -> Self {
        let cache = config.memcache_host().map(|host| {
            let port = config.memcache_port().unwrap_or(DEFAULT_MEMCACHE_PORT);
            let ttl = config.memcache_ttl().unwrap_or(DEFAULT_MEMCACHE_TTL);
            CacheConfig::new(host, port, Duration::from_secs(u64::from(ttl)))
        });
        Self {
            validate_default: config.validate_default().map(str::to_owned),
            settings: OnlineSettings {
                dns_server: config.dns_server(),
                dnssec_rootkey: config.dnssec_rootkey().to_path_buf(),
                dns_timeout: DNS_TIMEOUT,
                ldap_proxy: config.ldap_proxy().map(str::to_owned),
                ldap_timeout: LDAP_TIMEOUT,
                cache,
            },
            online: OnceCell::new(),
        }
    }

    /// Checks every non-empty `validate_default` line of `config`, so that an expression that
    /// would reject every peer stops the start-up instead. An empty value unsets the key.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] naming the file, the line, the key and why the expression
    /// does not parse.
    pub(crate) fn check_config(config: &Config) -> Result<(), ConfigError> {
        let lines = config.directives().iter().filter(|directive| {
            directive.key == Key::ValidateDefault && !directive.value.is_empty()
        });
        for directive in lines {
            if let Err(error) = NormalForm::parse(&directive.value) {
                return Err(ConfigError::InvalidValue {
                    path: config.origin().to_path_buf(),
                    line: directive.line,
                    key: Key::ValidateDefault.name(),
                    value: directive.value.clone(),
                    reason: error.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Returns `validate_default`.
    pub(crate) fn validate_default(&self) -> Option<&str> {
        self.validate_default.as_deref()
    }

    /// Returns the online checks, setting them up on the first call.
    pub(crate) async fn online(&self) -> &OnlineChecks {
        self.online
            .get_or_init(|| async {
                let checks = OnlineChecks::new(&self.settings);
                for reason in checks.unavailable() {
                    info!(target: TARGET_CERT, reason, "online check off");
                }
                checks
            })
            .await
    }
}

/// One source of a handshake's expression: where it comes from and its text.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// `the trust anchor`, `the local identity` or `validate_default`.
    pub origin: &'static str,
    pub text: String,
}

/// Parses `sources` and combines them with AND, or returns the default expression when there
/// is none. Returns the normal form and one postfix text of the whole expression.
///
/// # Errors
///
/// [`StartTlsError::InvalidValidationExpression`] for a source that does not parse.
pub(crate) fn combine(sources: &[Source]) -> Result<(NormalForm, String), StartTlsError> {
    let default = NormalForm::parse(DEFAULT_VALEXP)
        .map_err(|error| invalid("the default", DEFAULT_VALEXP, &error))?;
    let mut forms = Vec::with_capacity(sources.len());
    for source in sources {
        let form = NormalForm::parse(&source.text)
            .map_err(|error| invalid(source.origin, &source.text, &error))?;
        forms.push(form);
    }
    let combined = NormalForm::all_of(&forms, &default)
        .map_err(|error| invalid("the combined sources", &postfix_and(sources), &error))?;
    let text = if sources.is_empty() {
        DEFAULT_VALEXP.to_owned()
    } else {
        postfix_and(sources)
    };
    Ok((combined, text))
}

/// Writes the AND of the sources in postfix: `A`, `B`, `C` become `AB&C&`.
fn postfix_and(sources: &[Source]) -> String {
    let mut text = String::new();
    for (index, source) in sources.iter().enumerate() {
        text.push_str(&source.text);
        if index > 0 {
            text.push('&');
        }
    }
    text
}

fn invalid(origin: &'static str, expression: &str, error: &dyn std::fmt::Display) -> StartTlsError {
    StartTlsError::InvalidValidationExpression {
        origin,
        expression: expression.to_owned(),
        reason: error.to_string(),
    }
}

/// Returns the TCP port of the remote end of `fd`, or `None` when it has none.
pub(crate) fn peer_port(fd: BorrowedFd<'_>) -> Option<u16> {
    let address: SockaddrStorage = getpeername(fd.as_raw_fd()).ok()?;
    match address.family() {
        Some(nix::sys::socket::AddressFamily::Inet) => address.as_sockaddr_in().map(|a| a.port()),
        Some(nix::sys::socket::AddressFamily::Inet6) => address.as_sockaddr_in6().map(|a| a.port()),
        _ => None,
    }
}

/// The DANE service of a remote server: its host and TCP port.
#[derive(Debug, Clone)]
pub(crate) struct DaneService {
    pub host: String,
    pub port: u16,
}

/// The checks of one handshake: the facts decided locally and the inputs of the online
/// checks, whose results `D`/`d` and `O`/`o`/`G`/`g` share.
pub(crate) struct HandshakeChecks<'v> {
    pub local: HashMap<Predicate, Finding>,
    pub online: &'v OnlineChecks,
    /// The service for DANE, or why DANE does not apply.
    pub dane: Result<DaneService, String>,
    /// The identity whose directory is searched.
    pub directory_id: String,
    pub chain: Vec<Vec<u8>>,
    pub pkix: AnchorPkix,
    pub ignore_caches: bool,
    /// The DER SubjectPublicKeyInfo when the peer sent an RFC 7250 raw public key. `D` and
    /// `d` then check OPENPGPKEY records of the identity and DANE-EE records of the service,
    /// and the directory is searched for a `pgpKey` that contains the key.
    raw_public_key: Option<Vec<u8>>,
    dane_result: OnceCell<Result<Outcome, String>>,
    directory_result: OnceCell<Result<Outcome, String>>,
}

impl<'v> HandshakeChecks<'v> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        local: HashMap<Predicate, Finding>,
        online: &'v OnlineChecks,
        dane: Result<DaneService, String>,
        directory_id: String,
        chain: Vec<Vec<u8>>,
        pkix: AnchorPkix,
        ignore_caches: bool,
    ) -> Self {
        Self {
            local,
            online,
            dane,
            directory_id,
            chain,
            pkix,
            ignore_caches,
            raw_public_key: None,
            dane_result: OnceCell::new(),
            directory_result: OnceCell::new(),
        }
    }

    /// Sets the raw public key that the peer sent in place of a certificate chain.
    pub(crate) fn with_raw_public_key(mut self, raw_public_key: Option<Vec<u8>>) -> Self {
        self.raw_public_key = raw_public_key;
        self
    }

    /// Tells whether a finished `D`, `d` or directory check found the peer's raw public key
    /// published for the remote identity: in an OPENPGPKEY record, a DANE-EE TLSA record or a
    /// `pgpKey` value.
    pub(crate) fn raw_public_key_published(&self) -> bool {
        let published = |cell: &OnceCell<Result<Outcome, String>>| {
            matches!(cell.get(), Some(Ok(Outcome::Success)))
        };
        self.raw_public_key.is_some()
            && (published(&self.dane_result) || published(&self.directory_result))
    }

    async fn dane_outcome(&self) -> &Result<Outcome, String> {
        self.dane_result
            .get_or_init(|| async {
                if let Some(spki) = &self.raw_public_key {
                    return self.raw_public_key_dane(spki).await;
                }
                let service = self.dane.as_ref().map_err(Clone::clone)?;
                self.online
                    .dane(
                        (&service.host, service.port, Transport::Tcp),
                        &self.chain,
                        &self.pkix,
                        self.ignore_caches,
                    )
                    .await
            })
            .await
    }

    async fn directory_outcome(&self) -> &Result<Outcome, String> {
        self.directory_result
            .get_or_init(|| async {
                let credential = match &self.raw_public_key {
                    Some(spki) => Credential::RawPublicKey(spki),
                    None => {
                        Credential::X509(self.chain.first().map(Vec::as_slice).unwrap_or_default())
                    }
                };
                self.online
                    .directory(&self.directory_id, credential, self.ignore_caches)
                    .await
            })
            .await
    }
}

impl HandshakeChecks<'_> {
    /// Checks a raw public key against the OPENPGPKEY records of a `user@domain` identity and
    /// the DANE-EE records of a remote server's service, running the lookups that apply at
    /// once.
    async fn raw_public_key_dane(&self, spki: &[u8]) -> Result<Outcome, String> {
        let openpgpkey = async {
            if !self.directory_id.contains('@') {
                return None;
            }
            let outcome = self
                .online
                .openpgpkey(&self.directory_id, spki, self.ignore_caches)
                .await;
            Some(outcome)
        };
        let tlsa = async {
            let service = self.dane.as_ref().ok()?;
            let outcome = self
                .online
                .dane_raw_public_key(
                    (&service.host, service.port, Transport::Tcp),
                    spki,
                    self.ignore_caches,
                )
                .await;
            Some(outcome)
        };
        let (openpgpkey, tlsa) = tokio::join!(openpgpkey, tlsa);
        let outcomes: Vec<Result<Outcome, String>> = openpgpkey.into_iter().chain(tlsa).collect();
        if outcomes.is_empty() {
            let reason = self.dane.as_ref().err().cloned().unwrap_or_default();
            return Err(format!(
                "OPENPGPKEY needs a user@domain identity, and {reason}"
            ));
        }
        combine_raw_key_outcomes(outcomes)
    }
}

/// Combines the OPENPGPKEY and TLSA outcomes of a raw public key into the one that `D` and
/// `d` use. A match in any is a match, because each one is DNSSEC-secure on its own. Else
/// records that do not match make it invalid, and a failed lookup leaves no DANE result. Only
/// when every lookup proves that no record exists is it not found.
fn combine_raw_key_outcomes(outcomes: Vec<Result<Outcome, String>>) -> Result<Outcome, String> {
    for wanted in [Outcome::Success, Outcome::Invalid] {
        if outcomes.contains(&Ok(wanted)) {
            return Ok(wanted);
        }
    }
    let failures: Vec<String> = outcomes.into_iter().filter_map(Result::err).collect();
    if failures.is_empty() {
        Ok(Outcome::NotFound)
    } else {
        Err(failures.join("; "))
    }
}

impl PredicateChecks for HandshakeChecks<'_> {
    fn check(&self, predicate: Predicate) -> BoxFuture<'_, Finding> {
        Box::pin(async move {
            match predicate.letter() {
                'D' | 'd' => {
                    let strong = predicate.letter() == 'D';
                    let outcome = self.dane_outcome().await;
                    if self.raw_public_key.is_some() {
                        raw_key_dane_finding(outcome, strong)
                    } else {
                        dane_finding(outcome, strong)
                    }
                }
                'O' | 'o' | 'G' | 'g' => {
                    let strong = predicate.letter().is_ascii_uppercase();
                    directory_finding(self.directory_outcome().await, strong)
                }
                _ => self
                    .local
                    .get(&predicate)
                    .cloned()
                    .unwrap_or_else(|| Finding::new(false, "not implemented")),
            }
        })
    }
}

fn dane_finding(result: &Result<Outcome, String>, strong: bool) -> Finding {
    match result {
        Ok(Outcome::Success) => Finding::new(true, "a TLSA record matches"),
        Ok(Outcome::NotFound) => Finding::new(!strong, "no TLSA records"),
        Ok(Outcome::Invalid) => Finding::new(false, "no TLSA record matches the peer"),
        Err(reason) => Finding::new(false, reason.clone()),
    }
}

fn raw_key_dane_finding(result: &Result<Outcome, String>, strong: bool) -> Finding {
    match result {
        Ok(Outcome::Success) => Finding::new(true, "DNSSEC-secured DNS publishes the raw key"),
        Ok(Outcome::NotFound) => Finding::new(!strong, "no OPENPGPKEY or TLSA records"),
        Ok(Outcome::Invalid) => {
            Finding::new(false, "no OPENPGPKEY or TLSA record matches the raw key")
        }
        Err(reason) => Finding::new(false, reason.clone()),
    }
}

fn directory_finding(result: &Result<Outcome, String>, strong: bool) -> Finding {
    match result {
        Ok(Outcome::Success) => Finding::new(true, "the directory holds the peer's certificate"),
        Ok(Outcome::NotFound) => Finding::new(!strong, "the directory holds no certificate"),
        Ok(Outcome::Invalid) => Finding::new(
            false,
            "the directory holds other certificates than the peer's",
        ),
        Err(reason) => Finding::new(false, reason.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(origin: &'static str, text: &str) -> Source {
        Source {
            origin,
            text: text.to_owned(),
        }
    }

    #[test]
    fn no_source_uses_default() {
        let (form, text) = combine(&[]).expect("default parses");
        assert_eq!(text, DEFAULT_VALEXP);
        assert_eq!(
            form.to_string(),
            NormalForm::parse("IT&").expect("parses").to_string()
        );
    }

    #[test]
    fn sources_combine_with_and() {
        let sources = [
            source("the trust anchor", "D"),
            source("validate_default", "Tt|"),
        ];
        let (form, text) = combine(&sources).expect("both parse");
        assert_eq!(text, "DTt|&");
        let expected = NormalForm::parse("DTt|&").expect("parses");
        assert_eq!(form.to_string(), expected.to_string());
    }

    #[test]
    fn invalid_source_names_origin() {
        let error = combine(&[source("validate_default", "(L&T)")]).expect_err("infix is invalid");
        let message = error.to_string();
        assert!(message.contains("validate_default"), "{message}");
        assert!(message.contains("(L&T)"), "{message}");
    }

    #[test]
    fn raw_key_outcomes_prefer_match() {
        let failed = || Err("the OPENPGPKEY lookup failed".to_owned());
        let combined = combine_raw_key_outcomes(vec![failed(), Ok(Outcome::Success)]);
        assert_eq!(combined, Ok(Outcome::Success));
        let combined = combine_raw_key_outcomes(vec![Ok(Outcome::NotFound), Ok(Outcome::Invalid)]);
        assert_eq!(combined, Ok(Outcome::Invalid));
    }

    #[test]
    fn raw_key_failure_outweighs_denial() {
        let combined = combine_raw_key_outcomes(vec![
            Err("the OPENPGPKEY lookup is not DNSSEC-signed".to_owned()),
            Ok(Outcome::NotFound),
        ]);
        assert_eq!(
            combined,
            Err("the OPENPGPKEY lookup is not DNSSEC-signed".to_owned())
        );
        let denied = combine_raw_key_outcomes(vec![Ok(Outcome::NotFound), Ok(Outcome::NotFound)]);
        assert_eq!(denied, Ok(Outcome::NotFound));
    }

    #[test]
    fn dane_predicates_follow_outcome() {
        let denied = Ok(Outcome::NotFound);
        assert!(!dane_finding(&denied, true).value);
        assert!(dane_finding(&denied, false).value);
        assert_eq!(dane_finding(&denied, true).reason, "no TLSA records");
        let failed = Err("the TLSA lookup failed".to_owned());
        assert!(!dane_finding(&failed, false).value);
    }
}
