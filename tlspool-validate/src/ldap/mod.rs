//! Global directory checks for the `O`, `o`, `G` and `g` predicates: find the LDAP directory of
//! the remote identity's domain, search it for the identity, and compare what it holds with the
//! peer's X.509 certificate or OpenPGP key.
//!
//! # Discovery order
//!
//! 1. The `ldap_proxy` server, when one is configured, is the only server searched. It is
//!    trusted by configuration: no SRV lookup and no TLS check happen.
//! 2. Otherwise the [`SrvResolver`] looks up `_ldap._tcp.DOMAIN` (`_pgpkey-ldap._tcp.DOMAIN`
//!    for OpenPGP keys), and after an authenticated denial each parent domain that still has
//!    two labels. A bogus, insecure or failed answer ends the check with an error. No records
//!    anywhere is [`Outcome::NotFound`].
//! 3. The targets are tried in SRV priority order, at most [`MAX_SERVERS`] of them, until one
//!    answers. Each gets StartTLS where it offers it and must then pass the
//!    [`DirectoryTlsCheck`] before it is searched. A target that fails is logged at debug and
//!    the next one is tried, so the worst case is `MAX_SERVERS` timeouts. The daemon uses
//!    [`DnssecSrvResolver`] and [`DaneDirectoryCheck`]: a server that does not offer StartTLS,
//!    or whose certificate matches no DNSSEC-secured TLSA record, is never searched.
//!
//! # Search
//!
//! The base is `dc=LABEL,...` of the identity's domain (RFC 4514 escaping). For `user@domain`
//! the search is a subtree search with `(&(uid=USER)(objectClass=pkiUser))` for X.509 or
//! `(&(uid=USER)(objectClass=pgpKeyInfo))` for OpenPGP (RFC 4515 escaping). For a bare domain it
//! is a base-object search of the domain's own entry with `(objectClass=pkiUser)` or
//! `(objectClass=pgpKeyInfo)`. Only `userCertificate;binary` or `pgpKey` is requested. Each
//! server gets [`DirectoryConfig::timeout`] (2 seconds by default) for connecting, StartTLS,
//! the TLS check and the search together.
//!
//! # Outcomes and predicates
//!
//! | Result                                  | Outcome    | `O`, `G` | `o`, `g` |
//! |-----------------------------------------|------------|----------|----------|
//! | a value is exactly the peer's credential | `Success`  | true     | true     |
//! | no entry, or entries without the attribute | `NotFound` | false  | true     |
//! | values exist and none is the credential  | `Invalid`  | false    | false    |
//! | any [`DirectoryError`]                   | none       | false    | false    |
//!
//! X.509 values match when their DER bytes equal the peer's end certificate. OpenPGP values
//! match when their first public key packet equals the peer key's. A key or certification
//! revocation signature in the matching value or in the peer's key makes the outcome `Invalid`.
//! For a peer that sent an RFC 7250 raw public key ([`Credential::RawPublicKey`]), a `pgpKey`
//! value matches when its authentication key is that raw key and it has a valid, unrevoked
//! user ID with the remote identity as its email address.
//!
//! Errors fail closed: a server that is down, a timeout, a failed TLS check or an unusable
//! DNS answer makes the weak predicates false too, because "not negative" cannot be claimed
//! for a directory that was not read.
//!
//! # Known limitations
//!
//! - Referrals are followed only when [`DirectoryConfig::follow_referrals`] is set, one level
//!   deep and at most [`MAX_REFERRALS`] of them. Referrals that are not followed and no
//!   matching value give [`DirectoryError::ReferralNotFollowed`].
//! - The certificate of the `ldap_proxy` server is not verified.
//! - Binds are anonymous.

mod client;
mod discover;
mod dnssec;
mod error;
mod escape;
mod openpgp;
mod tls;

use std::time::Duration;

use ldap3::Scope;
use tracing::debug;

use crate::valexp::Predicate;
use client::{Endpoint, Query, Response, Transport};

pub use discover::{
    DirectoryServer, DirectoryService, DirectoryTlsCheck, PinnedDirectoryCertificates,
    RejectUncheckedDirectory, RemoteIdentity, SrvError, SrvResolver, SrvTarget, StaticSrvResolver,
    discover,
};
pub use dnssec::{DaneDirectoryCheck, DnssecSrvResolver};
pub use error::DirectoryError;
pub use escape::{domain_base, escape_dn_value, escape_filter_value};

/// Default time one directory server gets for connecting, StartTLS and the search.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Maximum number of SRV targets tried for one check.
pub const MAX_SERVERS: usize = 3;
/// Maximum number of referrals followed for one search.
pub const MAX_REFERRALS: usize = 4;

/// The peer's credential that the directory is to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// The DER end certificate.
    X509(&'a [u8]),
    /// The binary transferable public key (RFC 4880 section 11.1).
    OpenPgp(&'a [u8]),
    /// The DER SubjectPublicKeyInfo of an RFC 7250 raw public key. A `pgpKey` value contains it
    /// when [`match_raw_public_key`](crate::openpgp::match_raw_public_key) accepts the value
    /// for the key and the remote identity.
    RawPublicKey(&'a [u8]),
}

impl Credential<'_> {
    fn service(self) -> DirectoryService {
        match self {
            Self::X509(_) => DirectoryService::Ldap,
            Self::OpenPgp(_) | Self::RawPublicKey(_) => DirectoryService::PgpKeyLdap,
        }
    }

    fn object_class(self) -> &'static str {
        match self {
            Self::X509(_) => "pkiUser",
            Self::OpenPgp(_) | Self::RawPublicKey(_) => "pgpKeyInfo",
        }
    }

    fn attribute(self) -> &'static str {
        match self {
            Self::X509(_) => "userCertificate;binary",
            Self::OpenPgp(_) | Self::RawPublicKey(_) => "pgpKey",
        }
    }
}

/// The answer of a directory that was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The directory holds exactly the peer's credential.
    Success,
    /// The directory holds no credential for the identity.
    NotFound,
    /// The directory holds credentials for the identity and none is the peer's, or the
    /// matching OpenPGP key is revoked.
    Invalid,
}

impl Outcome {
    /// Returns the value of `O` and `G`: true only on success.
    pub fn strong(self) -> bool {
        self == Self::Success
    }

    /// Returns the value of `o` and `g`: true unless invalid.
    pub fn weak(self) -> bool {
        self != Self::Invalid
    }
}

/// Returns the value of `predicate` for the result of a directory check, or `None` when the
/// predicate is not one of `O`, `o`, `G`, `g`. An error makes all four false.
pub fn predicate_value(
    result: &Result<Outcome, DirectoryError>,
    predicate: Predicate,
) -> Option<bool> {
    let outcome = result.as_ref().ok().copied();
    match predicate.letter() {
        'O' | 'G' => Some(outcome.is_some_and(Outcome::strong)),
        'o' | 'g' => Some(outcome.is_some_and(Outcome::weak)),
        _ => None,
    }
}

/// Settings of the directory check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryConfig {
    /// The `ldap_proxy` URI (`ldap://HOST[:PORT]` or `ldaps://HOST[:PORT]`); when set, it is the
    /// only server searched.
    pub proxy: Option<String>,
    /// Time one server gets for connecting, StartTLS, the TLS check and the search.
    pub timeout: Duration,
    /// Whether referrals are followed.
    pub follow_referrals: bool,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        Self {
            proxy: None,
            timeout: DEFAULT_TIMEOUT,
            follow_referrals: false,
        }
    }
}

/// The global directory check, with its resolver for SRV discovery and its TLS check for
/// discovered servers.
#[derive(Debug)]
pub struct GlobalDirectory<R, C> {
    proxy: Option<Endpoint>,
    timeout: Duration,
    follow_referrals: bool,
    resolver: R,
    tls_check: C,
}

impl<R: SrvResolver, C: DirectoryTlsCheck> GlobalDirectory<R, C> {
    /// Creates the check.
    ///
    /// # Errors
    ///
    /// [`DirectoryError::InvalidProxy`] when `config.proxy` is not an LDAP URI with a host.
    pub fn new(config: DirectoryConfig, resolver: R, tls_check: C) -> Result<Self, DirectoryError> {
        let proxy = config.proxy.as_deref().map(parse_proxy).transpose()?;
        Ok(Self {
            proxy,
            timeout: config.timeout,
            follow_referrals: config.follow_referrals,
            resolver,
            tls_check,
        })
    }

    /// Checks whether the directory of `remote_id` (`user@domain` or `domain`) holds
    /// `credential`.
    ///
    /// # Errors
    ///
    /// Any [`DirectoryError`]; see the module documentation for their predicate values.
    pub async fn check(
        &self,
        remote_id: &str,
        credential: Credential<'_>,
    ) -> Result<Outcome, DirectoryError> {
        let identity = RemoteIdentity::parse(remote_id)?;
        let query =
            build_query(&identity, credential).ok_or_else(|| DirectoryError::InvalidIdentity {
                identity: remote_id.to_owned(),
            })?;

        let endpoints = match &self.proxy {
            Some(proxy) => vec![proxy.clone()],
            None => {
                let service = credential.service();
                match discover(&self.resolver, service, &identity.domain).await? {
                    Some((domain, targets)) => discovered_endpoints(&domain, targets),
                    None => return Ok(Outcome::NotFound),
                }
            }
        };

        let mut last_error = None;
        for endpoint in &endpoints {
            match self
                .search_server(endpoint, &query, remote_id, credential)
                .await
            {
                Ok(outcome) => return Ok(outcome),
                Err(error) => {
                    debug!(server = %endpoint.server.authority(), %error, "directory server failed");
                    last_error = Some(error);
                }
            }
        }
        // `endpoints` is never empty: a proxy is one endpoint, and SRV answers with no target
        // are treated as no records.
        Err(last_error.unwrap_or_else(|| DirectoryError::SrvLookup {
            name: credential.service().srv_name(&identity.domain),
            reason: "the answer lists no target".to_owned(),
        }))
    }

    async fn search_server(
        &self,
        endpoint: &Endpoint,
        query: &Query,
        remote_id: &str,
        credential: Credential<'_>,
    ) -> Result<Outcome, DirectoryError> {
        let mut response = self.search_bounded(endpoint, query).await?;
        let mut unfollowed = std::mem::take(&mut response.referrals);
        if self.follow_referrals {
            let followed: Vec<String> = unfollowed
                .drain(..unfollowed.len().min(MAX_REFERRALS))
                .collect();
            for uri in followed {
                let (referred, referred_query) = referral_target(&uri, query).ok_or_else(|| {
                    DirectoryError::MalformedResponse {
                        server: endpoint.server.authority(),
                        what: "referral URI",
                    }
                })?;
                let mut more = self.search_bounded(&referred, &referred_query).await?;
                unfollowed.append(&mut more.referrals);
                response.entries += more.entries;
                response.values.append(&mut more.values);
            }
        }

        let outcome = decide(credential, remote_id, &response.values);
        if outcome != Outcome::Success && !unfollowed.is_empty() {
            return Err(DirectoryError::ReferralNotFollowed {
                server: endpoint.server.authority(),
                count: unfollowed.len(),
            });
        }
        debug!(
            server = %endpoint.server.authority(),
            entries = response.entries,
            values = response.values.len(),
            ?outcome,
            "directory searched"
        );
        Ok(outcome)
    }

    async fn search_bounded(
        &self,
        endpoint: &Endpoint,
        query: &Query,
    ) -> Result<Response, DirectoryError> {
        let search = client::search(endpoint, query, &self.tls_check, self.timeout);
        tokio::time::timeout(self.timeout, search)
            .await
            .unwrap_or_else(|_| {
                Err(DirectoryError::Timeout {
                    server: endpoint.server.authority(),
                    timeout: self.timeout,
                })
            })
    }
}

/// Builds the search of `identity` for `credential`, or `None` when the domain has no base.
fn build_query(identity: &RemoteIdentity, credential: Credential<'_>) -> Option<Query> {
    let base = domain_base(&identity.domain)?;
    let object_class = credential.object_class();
    let (scope, filter) = match &identity.user {
        Some(user) => (
            Scope::Subtree,
            format!(
                "(&(uid={})(objectClass={object_class}))",
                escape_filter_value(user)
            ),
        ),
        None => (Scope::Base, format!("(objectClass={object_class})")),
    };
    Some(Query {
        base,
        scope,
        filter,
        attribute: credential.attribute(),
    })
}

/// Compares the returned values with the peer's credential for `remote_id`.
fn decide(credential: Credential<'_>, remote_id: &str, values: &[Vec<u8>]) -> Outcome {
    if values.is_empty() {
        return Outcome::NotFound;
    }
    let matched = match credential {
        Credential::X509(der) => values.iter().any(|value| value == der),
        Credential::OpenPgp(key) => {
            let Some(peer) = openpgp::summarize(key) else {
                return Outcome::Invalid;
            };
            !peer.revoked
                && values
                    .iter()
                    .filter_map(|value| openpgp::decode_value(value))
                    .filter_map(|packets| openpgp::summarize(&packets))
                    .any(|entry| entry.primary_key == peer.primary_key && !entry.revoked)
        }
        Credential::RawPublicKey(spki) => openpgp::holds_raw_public_key(values, spki, remote_id),
    };
    if matched {
        Outcome::Success
    } else {
        Outcome::Invalid
    }
}

fn discovered_endpoints(domain: &str, targets: Vec<SrvTarget>) -> Vec<Endpoint> {
    targets
        .into_iter()
        .take(MAX_SERVERS)
        .map(|target| Endpoint {
            server: DirectoryServer {
                host: target.host,
                port: target.port,
                srv_domain: Some(domain.to_owned()),
            },
            addresses: target.addresses,
            transport: Transport::StartTls,
            checked: true,
        })
        .collect()
}

/// Parses an `ldap_proxy` URI into an unchecked endpoint.
fn parse_proxy(uri: &str) -> Result<Endpoint, DirectoryError> {
    let invalid = |reason: &str| DirectoryError::InvalidProxy {
        uri: uri.to_owned(),
        reason: reason.to_owned(),
    };
    let (server, transport) = parse_ldap_url(uri).map_err(|reason| invalid(&reason))?;
    Ok(Endpoint {
        server,
        addresses: Vec::new(),
        transport,
        checked: false,
    })
}

/// Splits an `ldap://` or `ldaps://` URI into its server and transport.
fn parse_ldap_url(uri: &str) -> Result<(DirectoryServer, Transport), String> {
    let url = url::Url::parse(uri).map_err(|error| error.to_string())?;
    let (transport, default_port) = match url.scheme() {
        "ldap" => (Transport::StartTls, 389),
        "ldaps" => (Transport::Implicit, 636),
        other => return Err(format!("scheme {other:?} is neither ldap nor ldaps")),
    };
    let host = match url.host() {
        Some(url::Host::Ipv6(address)) => address.to_string(),
        Some(host) => host.to_string(),
        None => return Err("the URI has no host".to_owned()),
    };
    let server = DirectoryServer {
        host,
        port: url.port().unwrap_or(default_port),
        srv_domain: None,
    };
    Ok((server, transport))
}

/// Returns the server and query of a referral URI (RFC 4516): its DN, when present, replaces
/// the base. The referred server must pass the TLS check.
fn referral_target(uri: &str, query: &Query) -> Option<(Endpoint, Query)> {
    let (server, transport) = parse_ldap_url(uri).ok()?;
    let url = url::Url::parse(uri).ok()?;
    let dn = percent_encoding::percent_decode_str(url.path().trim_start_matches('/'))
        .decode_utf8()
        .ok()?;
    let mut referred = query.clone();
    if !dn.is_empty() {
        referred.base = dn.into_owned();
    }
    let endpoint = Endpoint {
        server,
        addresses: Vec::new(),
        transport,
        checked: true,
    };
    Some((endpoint, referred))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(text: &str) -> RemoteIdentity {
        RemoteIdentity::parse(text).unwrap()
    }

    #[test]
    fn query_for_user_escapes_uid() {
        let query = build_query(&identity("a*)(uid=*@example.com"), Credential::X509(&[])).unwrap();
        assert_eq!(query.base, "dc=example,dc=com");
        assert_eq!(query.scope, Scope::Subtree);
        assert_eq!(
            query.filter,
            "(&(uid=a\\2a\\29\\28uid=\\2a)(objectClass=pkiUser))"
        );
        assert_eq!(query.attribute, "userCertificate;binary");
    }

    #[test]
    fn query_for_domain_reads_base_entry() {
        let query = build_query(&identity("example.org"), Credential::OpenPgp(&[])).unwrap();
        assert_eq!(query.base, "dc=example,dc=org");
        assert_eq!(query.scope, Scope::Base);
        assert_eq!(query.filter, "(objectClass=pgpKeyInfo)");
        assert_eq!(query.attribute, "pgpKey");
    }

    #[test]
    fn x509_values_decide_outcome() {
        assert_eq!(
            decide(Credential::X509(b"cert"), "alice@example.com", &[]),
            Outcome::NotFound
        );
        let values = vec![b"other".to_vec(), b"cert".to_vec()];
        assert_eq!(
            decide(Credential::X509(b"cert"), "alice@example.com", &values),
            Outcome::Success
        );
        assert_eq!(
            decide(Credential::X509(b"cert"), "alice@example.com", &values[..1]),
            Outcome::Invalid
        );
    }

    #[test]
    fn outcomes_map_to_predicates() {
        let letter = |c| Predicate::from_letter(c).unwrap();
        let cases = [
            (Ok(Outcome::Success), true, true),
            (Ok(Outcome::NotFound), false, true),
            (Ok(Outcome::Invalid), false, false),
            (
                Err(DirectoryError::Timeout {
                    server: "x:389".into(),
                    timeout: DEFAULT_TIMEOUT,
                }),
                false,
                false,
            ),
        ];
        for (result, strong, weak) in cases {
            for upper in ['O', 'G'] {
                assert_eq!(
                    predicate_value(&result, letter(upper)),
                    Some(strong),
                    "{result:?}"
                );
            }
            for lower in ['o', 'g'] {
                assert_eq!(
                    predicate_value(&result, letter(lower)),
                    Some(weak),
                    "{result:?}"
                );
            }
        }
        assert_eq!(predicate_value(&Ok(Outcome::Success), letter('T')), None);
    }

    #[test]
    fn proxy_uri_must_be_ldap() {
        assert!(parse_proxy("http://ldap.example.com/").is_err());
        assert!(parse_proxy("not a uri").is_err());
        let endpoint = parse_proxy("ldaps://[::1]").unwrap();
        assert_eq!(endpoint.server.authority(), "[::1]:636");
        assert_eq!(endpoint.transport, Transport::Implicit);
        assert!(!endpoint.checked);
    }

    #[test]
    fn referral_dn_replaces_base() {
        let query = build_query(&identity("alice@example.com"), Credential::X509(&[])).unwrap();
        let (endpoint, referred) =
            referral_target("ldap://127.0.0.1:3890/ou=people,dc=example,dc=com", &query).unwrap();
        assert_eq!(endpoint.server.authority(), "127.0.0.1:3890");
        assert!(endpoint.checked);
        assert_eq!(referred.base, "ou=people,dc=example,dc=com");
        assert_eq!(referred.filter, query.filter);
    }
}
