//! SRV discovery and the check of discovered directory servers over the DNSSEC-validating
//! [`Resolver`]. [`DnssecSrvResolver`] returns only secure SRV, A and AAAA records.
//! [`DaneDirectoryCheck`] accepts a server only when a secure TLSA record at
//! `_PORT._tcp.HOST` matches the certificate it presented during StartTLS.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use tracing::debug;

use super::discover::{DirectoryServer, DirectoryTlsCheck, SrvError, SrvResolver, SrvTarget};
use crate::dane::{self, DaneOutcome, Transport};
use crate::dns::{RecordData, Resolver, Rtype, Security};
use crate::predicates::AnchorPkix;
use crate::x509::{AnchorSet, PeerRole};

/// An [`SrvResolver`] that queries the DNSSEC-validating resolver, or fails every lookup
/// with the reason DNSSEC is unavailable.
#[derive(Debug, Clone)]
pub struct DnssecSrvResolver {
    resolver: Result<Arc<Resolver>, String>,
}

impl DnssecSrvResolver {
    /// Creates a resolver over `resolver`. An `Err` contains why there is no DNSSEC
    /// resolver, and every lookup then fails with [`SrvError::Failed`] and that reason.
    pub fn new(resolver: Result<Arc<Resolver>, String>) -> Self {
        Self { resolver }
    }

    /// Returns the secure addresses of `host` of record type `rtype` (A or AAAA). A response
    /// that is not secure contributes none.
    async fn addresses(resolver: &Resolver, host: &str, rtype: Rtype) -> Vec<IpAddr> {
        let answer = match resolver.lookup(host, rtype).await {
            Ok(answer) => answer,
            Err(error) => {
                debug!(host, %rtype, %error, "address lookup of a directory server failed");
                return Vec::new();
            }
        };
        if *answer.security() != Security::Secure {
            debug!(host, %rtype, security = ?answer.security(),
                "address answer of a directory server is not secure; ignored");
            return Vec::new();
        }
        let Ok(rrset) = answer.rrset() else {
            return Vec::new();
        };
        rrset
            .records
            .iter()
            .filter_map(|record| match record {
                RecordData::A(a) => Some(IpAddr::V4(a.addr())),
                RecordData::Aaaa(aaaa) => Some(IpAddr::V6(aaaa.addr())),
                _ => None,
            })
            .collect()
    }
}

impl SrvResolver for DnssecSrvResolver {
    async fn resolve_srv(&self, name: &str) -> Result<Vec<SrvTarget>, SrvError> {
        let resolver = self
            .resolver
            .as_ref()
            .map_err(|reason| SrvError::Failed(reason.clone()))?;
        let answer = resolver
            .lookup(name, Rtype::SRV)
            .await
            .map_err(|error| SrvError::Failed(error.to_string()))?;
        match answer.security() {
            Security::Secure => {}
            Security::Insecure => return Err(SrvError::Insecure),
            Security::Bogus(reason) => return Err(SrvError::Bogus(reason.clone())),
            Security::Indeterminate => {
                return Err(SrvError::Failed(format!(
                    "no DNSSEC trust anchor covers {name}"
                )));
            }
        }
        let rrset = answer
            .rrset()
            .map_err(|error| SrvError::Failed(error.to_string()))?;
        let mut targets = Vec::new();
        for record in &rrset.records {
            let RecordData::Srv(srv) = record else {
                continue;
            };
            let host = srv.target().to_string();
            let host = host.trim_end_matches('.').to_owned();
            // A target of "." says the service is not offered at this domain (RFC 2782).
            if host.is_empty() {
                continue;
            }
            let mut addresses = Self::addresses(resolver, &host, Rtype::AAAA).await;
            addresses.extend(Self::addresses(resolver, &host, Rtype::A).await);
            targets.push(SrvTarget {
                priority: srv.priority(),
                weight: srv.weight(),
                port: srv.port(),
                host,
                addresses,
            });
        }
        if targets.is_empty() {
            return Err(SrvError::NotFound);
        }
        Ok(targets)
    }
}

/// A [`DirectoryTlsCheck`] that accepts a discovered server only over TLS and only when a
/// DNSSEC-secured TLSA record for its port and host name matches its end certificate.
///
/// Only the end certificate of the directory server reaches the check, so DANE-EE (usage 3)
/// records are the ones that can match. DANE-TA records need the issuing certificate, and the
/// PKIX usages need trust anchors, which directory servers are not given.
#[derive(Debug, Clone)]
pub struct DaneDirectoryCheck {
    resolver: Result<Arc<Resolver>, String>,
}

impl DaneDirectoryCheck {
    /// Creates the check over `resolver`. An `Err` contains why there is no DNSSEC resolver,
    /// and every server is then rejected with that reason.
    pub fn new(resolver: Result<Arc<Resolver>, String>) -> Self {
        Self { resolver }
    }
}

impl DirectoryTlsCheck for DaneDirectoryCheck {
    async fn check_directory(
        &self,
        server: &DirectoryServer,
        end_certificate: Option<&[u8]>,
    ) -> Result<(), String> {
        let resolver = self.resolver.as_ref().map_err(Clone::clone)?;
        let authority = server.authority();
        let Some(certificate) = end_certificate else {
            return Err(format!(
                "{authority} does not offer StartTLS, so DANE cannot authenticate it"
            ));
        };
        // NOTE: DANE-TA and PKIX records cannot match, because only the end certificate of
        // the directory server is known here and no anchors are configured for it.
        let pkix = AnchorPkix::new(AnchorSet::new(), PeerRole::Server, SystemTime::now());
        let chain = [certificate.to_vec()];
        let owner = dane::tlsa_owner(&server.host, server.port, Transport::Tcp);
        let outcome = dane::check(
            resolver,
            &server.host,
            server.port,
            Transport::Tcp,
            &chain,
            &pkix,
        )
        .await;
        if let Some(reason) = outcome.lookup_failure(&owner) {
            return Err(reason);
        }
        match outcome {
            DaneOutcome::Match(found) => {
                debug!(server = %authority, owner = %owner, subject = %found.subject,
                    "directory server matches its tlsa record");
                Ok(())
            }
            DaneOutcome::NoMatch(reasons) => Err(format!(
                "no TLSA record at {owner} matches the server certificate: {}",
                reasons.join("; ")
            )),
            _ => Err(format!(
                "{owner} has no TLSA records (authenticated denial)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> DirectoryServer {
        DirectoryServer {
            host: "ldap.example.com".to_owned(),
            port: 389,
            srv_domain: Some("example.com".to_owned()),
        }
    }

    #[tokio::test]
    async fn check_without_resolver_rejects_server() {
        let check = DaneDirectoryCheck::new(Err("DANE is off".to_owned()));
        let result = check.check_directory(&server(), Some(&[0x30, 0x00])).await;
        assert_eq!(result, Err("DANE is off".to_owned()));
    }

    #[tokio::test]
    async fn srv_lookup_without_resolver_fails() {
        let resolver = DnssecSrvResolver::new(Err("DANE is off".to_owned()));
        let result = resolver.resolve_srv("_ldap._tcp.example.com").await;
        assert_eq!(result, Err(SrvError::Failed("DANE is off".to_owned())));
    }
}
