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

use tlspool_core::config::Config;
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
    /// The peer's OpenPGP key when it sent a raw public key. The directory is then searched
    /// for it as a `pgpKey` instead of for the end certificate.
    openpgp_key: Option<Vec<u8>>,
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
            openpgp_key: None,
            dane_result: OnceCell::new(),
            directory_result: OnceCell::new(),
        }
    }

    /// Sets the OpenPGP key that the directory check searches for.
    pub(crate) fn with_openpgp_key(mut self, openpgp_key: Option<Vec<u8>>) -> Self {
        self.openpgp_key = openpgp_key;
        self
    }

    async fn dane_outcome(&self) -> &Result<Outcome, String> {
        self.dane_result
            .get_or_init(|| async {
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
                let credential = match &self.openpgp_key {
                    Some(key) => Credential::OpenPgp(key),
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

impl PredicateChecks for HandshakeChecks<'_> {
    fn check(&self, predicate: Predicate) -> BoxFuture<'_, Finding> {
        Box::pin(async move {
            match predicate.letter() {
                'D' | 'd' => dane_finding(self.dane_outcome().await, predicate.letter() == 'D'),
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
    fn dane_predicates_follow_outcome() {
        let denied = Ok(Outcome::NotFound);
        assert!(!dane_finding(&denied, true).value);
        assert!(dane_finding(&denied, false).value);
        assert_eq!(dane_finding(&denied, true).reason, "no TLSA records");
        let failed = Err("the TLSA lookup failed".to_owned());
        assert!(!dane_finding(&failed, false).value);
    }
}
