//! DANE (RFC 6698, RFC 7671) for the `D` and `d` predicates: the TLSA records of the peer's
//! service, validated with DNSSEC, against the certificate chain the peer sent.
//!
//! [`check`] looks up TLSA at `_PORT._PROTO.HOST` with the [`Resolver`], which validates the
//! response, CNAME chain included, from the `dnssec_rootkey` trust anchors. Only a secure
//! response counts. The usable records (see [`TlsaRecord::from_fields`]) are then matched:
//!
//! - DANE-EE (3): the end certificate matches; names and validity dates are ignored.
//! - DANE-TA (2): a certificate the peer sent above its end certificate matches. The end
//!   certificate must validate to it by RFC 5280 path validation, with it as the only anchor,
//!   at the validation time and for the peer's role, and must carry the host name.
//! - PKIX-EE (1) and PKIX-TA (0): the [`PkixValidator`] (the `x509` module's
//!   [`PathValidator`](crate::x509::PathValidator) with the trust anchors of the role)
//!   validates the chain and the host name, and the end certificate (PKIX-EE) or a CA
//!   certificate of the validated path, the anchor included (PKIX-TA), matches.
//!
//! One matching record is enough. Selectors 0 (whole certificate) and 1
//! (SubjectPublicKeyInfo) and matching types 0 (exact), 1 (SHA-256) and 2 (SHA-512) are
//! supported.
//!
//! A peer that sent an RFC 7250 raw public key is checked with [`check_raw_public_key`]
//! instead: only DANE-EE records with the SubjectPublicKeyInfo selector can match its key.
//!
//! # The predicates
//!
//! | outcome | `D` | `d` |
//! |---|---|---|
//! | [`DaneOutcome::Match`] | true | true |
//! | [`DaneOutcome::NoRecords`] with [`NoDane::Denied`]: a secure NXDOMAIN or NODATA | false | true |
//! | [`DaneOutcome::NoRecords`] with [`NoDane::Insecure`] or [`NoDane::Indeterminate`] | false | false |
//! | [`DaneOutcome::NoMatch`], also when no record is usable | false | false |
//! | [`DaneOutcome::Bogus`] | false | false |
//! | [`DaneOutcome::Error`], including a timeout | false | false |
//!
//! So `d` accepts the absence of TLSA records only when DNSSEC proves it. An unsigned zone
//! proves nothing about what its owner published, and an attacker on the path can make any
//! lookup fail, so neither counts as a denial.
//!
//! # Known limitations
//!
//! - A DANE-TA record must match a certificate the peer sent: a bare public key (selector 1)
//!   of an anchor absent from the chain is not used.
//! - The host name is checked against the original name only, not also against the target
//!   of a CNAME'd TLSA owner, which RFC 7671 permits as an extra reference identifier.
//! - The digest algorithm agility of RFC 7671 is not applied: a matching SHA-256 record
//!   is accepted even when SHA-512 records for the same usage and selector do not match.
//! - A record that matches a different certificate than the one that fails another check is
//!   not combined: each record is tried on its own.

mod raw_key;
mod tlsa;
mod verify;

use tracing::{debug, warn};

pub use raw_key::check_raw_public_key;
pub use tlsa::{MatchingType, Selector, TlsaRecord, Usage};
pub use verify::{DaneMatch, PkixValidator};

use crate::dns::{DnsError, RecordData, Resolver, Rtype, Security};
use crate::x509::Certificate;

/// The transport protocol of the service, the second label of the TLSA owner name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `_tcp`.
    Tcp,
    /// `_udp`, for DTLS.
    Udp,
    /// `_sctp`.
    Sctp,
}

/// The reason DANE does not apply to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoDane {
    /// DNSSEC proves that no TLSA record exists: the owner name (NXDOMAIN) or the type (NODATA)
    /// is absent from a signed zone.
    Denied,
    /// DNSSEC proves that the zone (or one on its CNAME chain) is unsigned, so its records, if
    /// any, cannot be trusted.
    Insecure,
    /// No trust anchor covers the name.
    Indeterminate,
}

/// The result of a DANE check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaneOutcome {
    /// A secure, usable TLSA record matches the peer's chain.
    Match(DaneMatch),
    /// Secure TLSA records exist but none matches; one reason per usable record, or one
    /// reason when none is usable.
    NoMatch(Vec<String>),
    /// DANE does not apply.
    NoRecords(NoDane),
    /// The TLSA response, or its CNAME chain, failed DNSSEC validation, for the reason given.
    Bogus(String),
    /// The lookup failed or timed out.
    Error(DnsError),
}

impl Transport {
    /// Returns the label of the transport, `_tcp`, `_udp` or `_sctp`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Tcp => "_tcp",
            Self::Udp => "_udp",
            Self::Sctp => "_sctp",
        }
    }
}

impl DaneOutcome {
    /// Returns the value of predicate `D`: DANE data is present and matches.
    pub fn is_match(&self) -> bool {
        matches!(self, Self::Match(_))
    }

    /// Returns the value of predicate `d`: a match, or a secure proof that no TLSA record
    /// exists.
    pub fn is_match_or_denied(&self) -> bool {
        matches!(self, Self::Match(_) | Self::NoRecords(NoDane::Denied))
    }

    /// Returns why the lookup at `owner` gave no usable result: an unsigned zone, no covering
    /// trust anchor, a bogus response or a failed lookup. Returns `None` for a match, a
    /// mismatch and an authenticated denial.
    pub fn lookup_failure(&self, owner: &str) -> Option<String> {
        match self {
            Self::Match(_) | Self::NoMatch(_) | Self::NoRecords(NoDane::Denied) => None,
            Self::NoRecords(NoDane::Insecure) => {
                Some(format!("the TLSA lookup of {owner} is not DNSSEC-signed"))
            }
            Self::NoRecords(NoDane::Indeterminate) => {
                Some(format!("no DNSSEC trust anchor covers {owner}"))
            }
            Self::Bogus(reason) => Some(format!(
                "the TLSA response for {owner} failed DNSSEC validation: {reason}"
            )),
            Self::Error(error) => Some(format!("the TLSA lookup of {owner} failed: {error}")),
        }
    }
}

/// Returns the TLSA owner name `_PORT._PROTO.HOST` of a service.
pub fn tlsa_owner(host: &str, port: u16, transport: Transport) -> String {
    format!(
        "_{port}.{}.{}",
        transport.label(),
        host.trim_end_matches('.')
    )
}

/// Checks the peer's chain `peer_chain_der` (DER certificates, end certificate first) for the
/// service at `host`, `port` and `transport` against its TLSA records.
///
/// `host` is the DNS name of the peer, without a user part. The lookup is bounded by the
/// resolver's timeout. `pkix` does the PKIX validation that usages 0 and 1 require, and
/// provides the role and time for DANE-TA paths. The returned future is `Send` when `P` is
/// `Sync`.
pub async fn check<P: PkixValidator>(
    resolver: &Resolver,
    host: &str,
    port: u16,
    transport: Transport,
    peer_chain_der: &[Vec<u8>],
    pkix: &P,
) -> DaneOutcome {
    let owner = tlsa_owner(host, port, transport);
    let usable = match lookup_usable_tlsa(resolver, &owner).await {
        Ok(usable) => usable,
        Err(outcome) => return outcome,
    };

    let chain = match decode_chain(peer_chain_der) {
        Ok(chain) => chain,
        Err(reason) => return DaneOutcome::NoMatch(vec![reason]),
    };
    match verify::match_records(&usable, &chain, host, pkix) {
        Ok(found) => DaneOutcome::Match(found),
        Err(reasons) => {
            debug!(owner = %owner, reasons = ?reasons, "no tlsa record matched");
            DaneOutcome::NoMatch(reasons)
        }
    }
}

/// Looks up the TLSA RRset at `owner` and returns its usable records. Every other result is
/// returned as the final [`DaneOutcome`]: no secure records, or none of them usable.
async fn lookup_usable_tlsa(
    resolver: &Resolver,
    owner: &str,
) -> Result<Vec<TlsaRecord>, DaneOutcome> {
    let records = match lookup_tlsa(resolver, owner).await {
        Ok(records) => records,
        Err(outcome) => {
            debug!(owner = %owner, outcome = ?outcome, "no dane for the peer");
            return Err(outcome);
        }
    };
    let usable = usable_records(owner, &records);
    if usable.is_empty() {
        return Err(DaneOutcome::NoMatch(vec![format!(
            "none of the {} TLSA records at {owner} is usable",
            records.len()
        )]));
    }
    Ok(usable)
}

/// Looks up the TLSA RRset at `owner`, returning every outcome other than secure records as
/// the final [`DaneOutcome`].
async fn lookup_tlsa(resolver: &Resolver, owner: &str) -> Result<Vec<RecordData>, DaneOutcome> {
    let answer = resolver
        .lookup(owner, Rtype::TLSA)
        .await
        .map_err(DaneOutcome::Error)?;
    match answer.security() {
        Security::Secure => {}
        Security::Insecure => return Err(DaneOutcome::NoRecords(NoDane::Insecure)),
        Security::Indeterminate => return Err(DaneOutcome::NoRecords(NoDane::Indeterminate)),
        Security::Bogus(reason) => {
            warn!(owner = %owner, reason = %reason, "tlsa lookup failed dnssec validation");
            return Err(DaneOutcome::Bogus(reason.clone()));
        }
    }
    let rrset = answer.rrset().map_err(DaneOutcome::Error)?;
    if rrset.records.is_empty() {
        return Err(DaneOutcome::NoRecords(NoDane::Denied));
    }
    Ok(rrset.records)
}

/// Returns the usable TLSA records among `records`, logging why each other one is ignored.
fn usable_records(owner: &str, records: &[RecordData]) -> Vec<TlsaRecord> {
    let mut usable = Vec::new();
    for record in records {
        let RecordData::Tlsa(tlsa) = record else {
            continue;
        };
        match TlsaRecord::from_fields(
            tlsa.usage().to_int(),
            tlsa.selector().to_int(),
            tlsa.matching_type().to_int(),
            tlsa.data(),
        ) {
            Ok(parsed) => usable.push(parsed),
            Err(reason) => debug!(owner = %owner, reason = %reason, "tlsa record ignored"),
        }
    }
    usable
}

/// Decodes the end certificate, which must decode, and the other certificates that do.
fn decode_chain(peer_chain_der: &[Vec<u8>]) -> Result<Vec<Certificate>, String> {
    let (leaf, rest) = peer_chain_der
        .split_first()
        .ok_or("the peer sent no certificate")?;
    let leaf = Certificate::from_der(leaf)
        .map_err(|err| format!("the end certificate does not decode: {err}"))?;
    let mut chain = vec![leaf];
    for (index, der) in rest.iter().enumerate() {
        match Certificate::from_der(der) {
            Ok(cert) => chain.push(cert),
            Err(err) => debug!(index = index + 1, error = %err, "peer certificate skipped"),
        }
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlsa_owner_has_port_and_protocol_labels() {
        assert_eq!(
            tlsa_owner("example.com", 443, Transport::Tcp),
            "_443._tcp.example.com"
        );
        assert_eq!(
            tlsa_owner("example.com.", 5061, Transport::Sctp),
            "_5061._sctp.example.com"
        );
        assert_eq!(
            tlsa_owner("dtls.example.com", 853, Transport::Udp),
            "_853._udp.dtls.example.com"
        );
    }

    #[test]
    fn predicates_follow_outcomes() {
        let record = TlsaRecord::from_fields(3, 1, 1, &[0; 32]).expect("usable record");
        let matched = DaneOutcome::Match(DaneMatch {
            record,
            subject: "CN=leaf".to_owned(),
        });
        assert!(matched.is_match());
        assert!(matched.is_match_or_denied());

        let denied = DaneOutcome::NoRecords(NoDane::Denied);
        assert!(!denied.is_match());
        assert!(denied.is_match_or_denied());

        for outcome in [
            DaneOutcome::NoRecords(NoDane::Insecure),
            DaneOutcome::NoRecords(NoDane::Indeterminate),
            DaneOutcome::NoMatch(vec!["no match".to_owned()]),
            DaneOutcome::Bogus("bad signature".to_owned()),
        ] {
            assert!(!outcome.is_match(), "{outcome:?}");
            assert!(!outcome.is_match_or_denied(), "{outcome:?}");
        }
    }

    #[test]
    fn decode_chain_needs_end_certificate() {
        assert!(decode_chain(&[]).is_err());
        assert!(decode_chain(&[vec![0x30, 0x00]]).is_err());
    }
}
