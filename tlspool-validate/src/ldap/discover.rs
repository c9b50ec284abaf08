//! Finding the directory server of a remote identity: the parsed identity, the SRV resolver
//! and TLS check traits that the DNSSEC and DANE code implement, and the walk up the domain
//! tree from `_ldap._tcp.DOMAIN`.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;

use super::DirectoryError;

/// The services whose SRV records name a directory: `_ldap._tcp` for X.509 certificates and
/// `_pgpkey-ldap._tcp` for OpenPGP keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DirectoryService {
    /// `_ldap._tcp`, for `userCertificate` entries.
    Ldap,
    /// `_pgpkey-ldap._tcp`, for `pgpKey` entries.
    PgpKeyLdap,
}

impl DirectoryService {
    /// Returns the SRV owner name of this service under `domain`.
    pub fn srv_name(self, domain: &str) -> String {
        match self {
            Self::Ldap => format!("_ldap._tcp.{domain}"),
            Self::PgpKeyLdap => format!("_pgpkey-ldap._tcp.{domain}"),
        }
    }
}

/// A remote identity split into its optional user and its domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteIdentity {
    /// The part before the last `@`, if any.
    pub user: Option<String>,
    /// The domain, without a trailing dot.
    pub domain: String,
}

impl RemoteIdentity {
    /// Parses `user@domain` or `domain`. The user part may contain any character, including
    /// `@`, because it is escaped wherever it is used.
    ///
    /// # Errors
    ///
    /// [`DirectoryError::InvalidIdentity`] for an empty user or a domain with an empty label.
    pub fn parse(identity: &str) -> Result<Self, DirectoryError> {
        let invalid = || DirectoryError::InvalidIdentity {
            identity: identity.to_owned(),
        };
        let (user, domain) = match identity.rsplit_once('@') {
            Some((user, domain)) => (Some(user), domain),
            None => (None, identity),
        };
        if user.is_some_and(str::is_empty) {
            return Err(invalid());
        }
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        if domain.is_empty() || domain.split('.').any(str::is_empty) {
            return Err(invalid());
        }
        Ok(Self {
            user: user.map(str::to_owned),
            domain: domain.to_ascii_lowercase(),
        })
    }
}

/// One target of a validated SRV answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvTarget {
    /// SRV priority: lower values are tried first.
    pub priority: u16,
    /// SRV weight among targets of equal priority.
    pub weight: u16,
    /// TCP port of the directory server.
    pub port: u16,
    /// Host name of the directory server, without a trailing dot.
    pub host: String,
    /// Addresses of `host` from DNSSEC-validated AAAA and A answers, in that order. When empty,
    /// the host name is resolved with the system resolver, which is not DNSSEC-validated.
    pub addresses: Vec<IpAddr>,
}

/// The failures of a DNSSEC-validated SRV lookup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SrvError {
    /// Authenticated denial: the name or its SRV records do not exist (NXDOMAIN or NODATA
    /// with a valid NSEC or NSEC3 proof).
    #[error("no SRV records exist (authenticated denial)")]
    NotFound,
    /// The answer failed DNSSEC validation.
    #[error("DNSSEC validation failed: {0}")]
    Bogus(String),
    /// The answer is not signed, so it cannot be trusted.
    #[error("the answer is not DNSSEC-signed")]
    Insecure,
    /// The lookup failed (timeout, SERVFAIL, network error).
    #[error("lookup failed: {0}")]
    Failed(String),
}

/// A resolver that returns only DNSSEC-validated SRV answers.
///
/// The DNSSEC-validating resolver of this crate implements it; [`StaticSrvResolver`] serves a
/// fixed table.
pub trait SrvResolver: Send + Sync {
    /// Looks up the SRV records of `name` (such as `_ldap._tcp.example.com`) and returns their
    /// targets, each with its validated addresses.
    fn resolve_srv(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<SrvTarget>, SrvError>> + Send;
}

/// An [`SrvResolver`] over a fixed table of names, for deployments that list their directory
/// servers and for tests.
#[derive(Debug, Clone, Default)]
pub struct StaticSrvResolver {
    records: HashMap<String, Result<Vec<SrvTarget>, SrvError>>,
}

impl StaticSrvResolver {
    /// Creates a resolver that returns [`SrvError::NotFound`] for every name.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `name` resolve to `targets`.
    pub fn insert(&mut self, name: &str, targets: Vec<SrvTarget>) -> &mut Self {
        self.records.insert(name.to_ascii_lowercase(), Ok(targets));
        self
    }

    /// Makes the lookup of `name` fail with `error`.
    pub fn insert_error(&mut self, name: &str, error: SrvError) -> &mut Self {
        self.records.insert(name.to_ascii_lowercase(), Err(error));
        self
    }
}

impl SrvResolver for StaticSrvResolver {
    async fn resolve_srv(&self, name: &str) -> Result<Vec<SrvTarget>, SrvError> {
        self.records
            .get(&name.to_ascii_lowercase())
            .cloned()
            .unwrap_or(Err(SrvError::NotFound))
    }
}

/// A directory server about to be searched: where it was found and how it is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryServer {
    /// Host name (or address) of the server.
    pub host: String,
    /// TCP port of the server.
    pub port: u16,
    /// The domain whose SRV records named this server, or `None` for the configured
    /// `ldap_proxy` and for servers reached through a referral.
    pub srv_domain: Option<String>,
}

impl DirectoryServer {
    /// Returns `host:port`, with brackets around an IPv6 address.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The check that a discovered directory server is the one its domain publishes, such as DANE
/// (a DNSSEC-secured TLSA record `_PORT._tcp.HOST` that matches the server's certificate).
///
/// It runs after StartTLS and before the search. Only a server that passes is searched, so an
/// unchecked server never produces an outcome.
pub trait DirectoryTlsCheck: Send + Sync {
    /// Checks `server`. `end_certificate` is the DER certificate the server presented during
    /// StartTLS, or `None` when the server does not offer StartTLS.
    ///
    /// # Errors
    ///
    /// A reason the server is not accepted; it becomes [`DirectoryError::TlsCheck`].
    fn check_directory(
        &self,
        server: &DirectoryServer,
        end_certificate: Option<&[u8]>,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// A [`DirectoryTlsCheck`] that rejects every server, for a daemon without DANE support: with
/// it only the configured `ldap_proxy` is searched.
#[derive(Debug, Clone, Copy, Default)]
pub struct RejectUncheckedDirectory;

impl DirectoryTlsCheck for RejectUncheckedDirectory {
    async fn check_directory(
        &self,
        _server: &DirectoryServer,
        _end_certificate: Option<&[u8]>,
    ) -> Result<(), String> {
        Err("no DANE check is available for discovered directory servers".to_owned())
    }
}

/// A [`DirectoryTlsCheck`] that accepts a server only over TLS and only with one of the
/// listed DER end certificates, like a DANE-EE full-certificate match (usage 3, selector 0,
/// matching type 0) from local configuration.
#[derive(Debug, Clone, Default)]
pub struct PinnedDirectoryCertificates {
    certificates: Vec<Vec<u8>>,
}

impl PinnedDirectoryCertificates {
    /// Creates a check that accepts the DER certificates in `certificates`.
    pub fn new(certificates: Vec<Vec<u8>>) -> Self {
        Self { certificates }
    }
}

impl DirectoryTlsCheck for PinnedDirectoryCertificates {
    async fn check_directory(
        &self,
        server: &DirectoryServer,
        end_certificate: Option<&[u8]>,
    ) -> Result<(), String> {
        let Some(certificate) = end_certificate else {
            return Err(format!(
                "{} does not offer StartTLS, but its certificate is pinned",
                server.authority()
            ));
        };
        if self.certificates.iter().any(|pinned| pinned == certificate) {
            Ok(())
        } else {
            Err("the server certificate matches no pinned certificate".to_owned())
        }
    }
}

/// Finds the SRV targets of `service` for `domain`, trying `domain` and then each parent that
/// still has at least two labels, so `a.b.example.com` tries `_ldap._tcp.a.b.example.com`,
/// `_ldap._tcp.b.example.com` and `_ldap._tcp.example.com`.
///
/// Only an authenticated denial moves on to the parent. Returns the domain that answered and
/// its targets sorted by priority, then by descending weight, or `Ok(None)` when no domain has
/// records.
///
/// # Errors
///
/// A bogus, insecure or failed lookup stops the walk with [`DirectoryError::SrvLookup`].
pub async fn discover<R: SrvResolver>(
    resolver: &R,
    service: DirectoryService,
    domain: &str,
) -> Result<Option<(String, Vec<SrvTarget>)>, DirectoryError> {
    let mut current = domain;
    loop {
        let name = service.srv_name(current);
        match resolver.resolve_srv(&name).await {
            Ok(mut targets) if !targets.is_empty() => {
                targets.sort_by_key(|target| (target.priority, u16::MAX - target.weight));
                return Ok(Some((current.to_owned(), targets)));
            }
            Ok(_) | Err(SrvError::NotFound) => {}
            Err(error) => {
                return Err(DirectoryError::SrvLookup {
                    name,
                    reason: error.to_string(),
                });
            }
        }
        match current.split_once('.') {
            Some((_, parent)) if parent.contains('.') => current = parent,
            _ => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, priority: u16, weight: u16) -> SrvTarget {
        SrvTarget {
            priority,
            weight,
            port: 389,
            host: host.to_owned(),
            addresses: Vec::new(),
        }
    }

    #[test]
    fn identity_splits_at_last_at_sign() {
        let identity = RemoteIdentity::parse("a@b@Example.COM.").unwrap();
        assert_eq!(identity.user.as_deref(), Some("a@b"));
        assert_eq!(identity.domain, "example.com");
    }

    #[test]
    fn identity_without_user_is_domain() {
        let identity = RemoteIdentity::parse("example.com").unwrap();
        assert_eq!(identity.user, None);
        assert_eq!(identity.domain, "example.com");
    }

    #[test]
    fn identity_rejects_empty_parts() {
        for bad in ["", "@example.com", "alice@", "alice@a..b", "."] {
            assert!(RemoteIdentity::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[tokio::test]
    async fn discover_walks_up_to_two_labels() {
        let mut resolver = StaticSrvResolver::new();
        resolver.insert(
            "_ldap._tcp.example.com",
            vec![target("ldap.example.com", 0, 0)],
        );
        let found = discover(&resolver, DirectoryService::Ldap, "a.b.example.com").await;
        let (domain, targets) = found.unwrap().unwrap();
        assert_eq!(domain, "example.com");
        assert_eq!(targets[0].host, "ldap.example.com");
    }

    #[tokio::test]
    async fn discover_never_queries_top_level_domain() {
        let mut resolver = StaticSrvResolver::new();
        resolver.insert("_ldap._tcp.com", vec![target("ldap.com", 0, 0)]);
        let found = discover(&resolver, DirectoryService::Ldap, "example.com").await;
        assert_eq!(found.unwrap(), None);
    }

    #[tokio::test]
    async fn discover_stops_at_bogus_answer() {
        let mut resolver = StaticSrvResolver::new();
        resolver.insert_error(
            "_ldap._tcp.b.example.com",
            SrvError::Bogus("bad RRSIG".into()),
        );
        resolver.insert(
            "_ldap._tcp.example.com",
            vec![target("ldap.example.com", 0, 0)],
        );
        let found = discover(&resolver, DirectoryService::Ldap, "a.b.example.com").await;
        assert!(matches!(found, Err(DirectoryError::SrvLookup { .. })));
    }

    #[tokio::test]
    async fn discover_orders_by_priority_then_weight() {
        let mut resolver = StaticSrvResolver::new();
        resolver.insert(
            "_pgpkey-ldap._tcp.example.com",
            vec![target("c", 10, 0), target("b", 0, 1), target("a", 0, 9)],
        );
        let found = discover(&resolver, DirectoryService::PgpKeyLdap, "example.com").await;
        let (_, targets) = found.unwrap().unwrap();
        let hosts: Vec<_> = targets.iter().map(|target| target.host.as_str()).collect();
        assert_eq!(hosts, ["a", "b", "c"]);
    }
}
