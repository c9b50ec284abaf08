//! The certificate side of DANE: each usable TLSA record against the peer's chain, with the
//! extra checks its usage requires (RFC 6698 section 2.1.1, RFC 7671).

use std::time::SystemTime;

use tracing::debug;

use super::tlsa::{TlsaRecord, Usage};
use crate::x509::{
    Anchor, AnchorSet, Certificate, PathValidator, PeerRole, ValidateError, check_name,
};

/// Normal PKIX validation, which the PKIX-TA and PKIX-EE usages require besides the match.
///
/// [`PathValidator`] implements it with the trust anchors of its store and a name check.
pub trait PkixValidator {
    /// Validates `chain` (end certificate first) to a trust anchor and checks that the end
    /// certificate carries `host`, returning the path from the end certificate up to and
    /// including the anchor.
    ///
    /// # Errors
    ///
    /// The reason the chain or the name failed.
    fn validate_for_host(
        &self,
        chain: &[Certificate],
        host: &str,
    ) -> Result<Vec<Certificate>, ValidateError>;

    /// Returns the role of the peer, whose extended key usage DANE-TA paths also check.
    fn role(&self) -> PeerRole;

    /// Returns the validation time, against which DANE-TA paths are also checked.
    fn at(&self) -> SystemTime;
}

impl PkixValidator for PathValidator<'_> {
    fn validate_for_host(
        &self,
        chain: &[Certificate],
        host: &str,
    ) -> Result<Vec<Certificate>, ValidateError> {
        let path = self.validate(chain)?;
        let leaf = chain.first().ok_or(ValidateError::EmptyChain)?;
        check_name(leaf, host)?;
        let mut certificates = path.certificates;
        certificates.push(path.anchor.certificate);
        Ok(certificates)
    }

    fn role(&self) -> PeerRole {
        PathValidator::role(self)
    }

    fn at(&self) -> SystemTime {
        PathValidator::at(self)
    }
}

/// The TLSA record that matched and the certificate it matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaneMatch {
    /// The record that matched.
    pub record: TlsaRecord,
    /// The subject of the matching certificate: the end certificate, a CA of the PKIX path
    /// or the DANE trust anchor.
    pub subject: String,
}

/// Checks the usable `records` against `chain` (end certificate first, the rest in any order)
/// and returns the first match, or the reason each record failed.
pub(super) fn match_records(
    records: &[TlsaRecord],
    chain: &[Certificate],
    host: &str,
    pkix: &dyn PkixValidator,
) -> Result<DaneMatch, Vec<String>> {
    let mut pkix_path: Option<Result<Vec<Certificate>, ValidateError>> = None;
    let mut reasons = Vec::new();
    for record in records {
        let outcome = match record.usage {
            Usage::DaneEe => match_dane_ee(record, chain),
            Usage::DaneTa => match_dane_ta(record, chain, host, pkix),
            Usage::PkixEe | Usage::PkixTa => {
                let path = pkix_path.get_or_insert_with(|| pkix.validate_for_host(chain, host));
                match_pkix(record, path)
            }
        };
        match outcome {
            Ok(subject) => {
                debug!(record = %record, subject = %subject, "tlsa record matched");
                return Ok(DaneMatch {
                    record: record.clone(),
                    subject,
                });
            }
            Err(reason) => reasons.push(format!("TLSA {record}: {reason}")),
        }
    }
    Err(reasons)
}

/// DANE-EE: the end certificate matches; its names and validity dates are not checked
/// (RFC 7671).
fn match_dane_ee(record: &TlsaRecord, chain: &[Certificate]) -> Result<String, String> {
    let leaf = chain.first().ok_or("the peer sent no certificate")?;
    if record.matches(leaf) {
        Ok(leaf.subject().to_owned())
    } else {
        Err(format!(
            "end certificate {:?} does not match",
            leaf.subject()
        ))
    }
}

/// DANE-TA: a certificate the peer sent, other than the end certificate, matches, and the end
/// certificate validates to it as the only trust anchor and carries `host`
/// (RFC 7671).
fn match_dane_ta(
    record: &TlsaRecord,
    chain: &[Certificate],
    host: &str,
    pkix: &dyn PkixValidator,
) -> Result<String, String> {
    let leaf = chain.first().ok_or("the peer sent no certificate")?;
    let mut failures = Vec::new();
    for candidate in chain.iter().skip(1).filter(|cert| record.matches(cert)) {
        let mut anchors = AnchorSet::new();
        anchors.add_anchor(Anchor {
            certificate: candidate.clone(),
            for_clients: true,
            for_servers: true,
            not_root: !candidate.is_self_issued(),
            valexp: "1".to_owned(),
        });
        let validator = PathValidator::new(&anchors, pkix.role(), pkix.at());
        let checked = validator
            .validate(chain)
            .and_then(|_| check_name(leaf, host));
        match checked {
            Ok(()) => return Ok(candidate.subject().to_owned()),
            Err(err) => failures.push(format!("trust anchor {:?}: {err}", candidate.subject())),
        }
    }
    if failures.is_empty() {
        Err("no CA certificate of the peer's chain matches".to_owned())
    } else {
        Err(failures.join("; "))
    }
}

/// PKIX-EE and PKIX-TA: the chain passes PKIX validation, and the end certificate (PKIX-EE)
/// or a CA certificate of the validated path, the anchor included (PKIX-TA), matches.
fn match_pkix(
    record: &TlsaRecord,
    path: &Result<Vec<Certificate>, ValidateError>,
) -> Result<String, String> {
    let path = path
        .as_ref()
        .map_err(|err| format!("PKIX validation failed: {err}"))?;
    let candidates = match record.usage {
        Usage::PkixEe => path.get(..1).unwrap_or_default(),
        _ => path.get(1..).unwrap_or_default(),
    };
    candidates
        .iter()
        .find(|cert| record.matches(cert))
        .map(|cert| cert.subject().to_owned())
        .ok_or_else(|| match record.usage {
            Usage::PkixEe => "the end certificate does not match".to_owned(),
            _ => "no CA certificate of the validated path matches".to_owned(),
        })
}
