//! Revocation checks of a validated path against the revocation entries of the trust store
//! and the peer's stapled OCSP response: the `R` and `r` predicates.
//!
//! The revocation list of an issuer is stored under the issuer's key identifier, the same key
//! as the issuer's anchor entry, so the lists of a certificate are found under its
//! AuthorityKeyIdentifier (or its issuer's key identifier when it has none). The anchor itself
//! is trusted and not checked. A stapled OCSP response covers the end certificate only, since
//! TLS staples one response (RFC 6066 `status_request`).

use std::time::SystemTime;

use tracing::{debug, warn};

use super::ocsp::{self, OcspStatus};
use super::path::ValidPath;
use super::trust::{RevocationList, TrustRecord, TrustStore};
use super::{Certificate, ValidateError};

/// The strictness of a revocation check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevocationPolicy {
    /// `R`: every certificate needs a current revocation status from its issuer. That is a
    /// list that does not list it, or for the end certificate a valid stapled OCSP response
    /// with status good.
    RequireList,
    /// `r`: no list or stapled response may revoke a certificate. An issuer without a list, or
    /// with an outdated one, is accepted, and so is a stapled response that is invalid.
    AllowMissing,
}

/// Checks every certificate of `path` against the revocation lists of its issuer at `at`.
///
/// # Errors
///
/// As [`check_revocation_stapled`] without a stapled response.
pub fn check_revocation(
    store: &dyn TrustStore,
    path: &ValidPath,
    policy: RevocationPolicy,
    at: SystemTime,
) -> Result<(), ValidateError> {
    check_revocation_stapled(store, path, policy, at, None)
}

/// Checks every certificate of `path` against the revocation lists of its issuer at `at`, and
/// the end certificate also against `stapled`, the DER OCSPResponse the peer sent, if any.
///
/// # Errors
///
/// [`ValidateError::Revoked`] for a listed serial number and [`ValidateError::RevokedByOcsp`]
/// for a stapled response with status revoked, under either policy. Under
/// [`RevocationPolicy::RequireList`] also [`ValidateError::NoRevocationList`] and
/// [`ValidateError::RevocationListOutdated`], or [`ValidateError::InvalidOcspResponse`] when
/// the end certificate has no current list and its stapled response does not count.
/// [`ValidateError::TrustStore`] when the store cannot be read.
pub fn check_revocation_stapled(
    store: &dyn TrustStore,
    path: &ValidPath,
    policy: RevocationPolicy,
    at: SystemTime,
    stapled: Option<&[u8]>,
) -> Result<(), ValidateError> {
    let issuers: Vec<&Certificate> = path
        .certificates
        .iter()
        .skip(1)
        .chain(std::iter::once(&path.anchor.certificate))
        .collect();
    let stapled_status = match (stapled, path.certificates.first(), issuers.first()) {
        (Some(response), Some(leaf), Some(issuer)) => {
            Some(stapled_status(response, leaf, issuer, at)?)
        }
        _ => None,
    };
    for (index, (cert, issuer)) in path.certificates.iter().zip(issuers).enumerate() {
        let key = match cert.authority_key_id() {
            Some(key) => key.to_vec(),
            None => issuer.key_id(),
        };
        let lists: Vec<RevocationList> = store
            .records(&key)?
            .into_iter()
            .filter_map(|record| match record {
                TrustRecord::Revocation(list) => Some(list),
                _ => None,
            })
            .collect();
        let leaf_status = if index == 0 {
            stapled_status.as_ref()
        } else {
            None
        };
        let result = match leaf_status {
            // A good response is a current status of the end certificate, so the lists
            // only need to not revoke it.
            Some(Ok(())) => {
                check_certificate(cert, issuer, &lists, RevocationPolicy::AllowMissing, at)
            }
            _ => check_certificate(cert, issuer, &lists, policy, at),
        };
        match (result, leaf_status) {
            (
                Err(
                    ValidateError::NoRevocationList { .. }
                    | ValidateError::RevocationListOutdated { .. },
                ),
                Some(Err(stapled_error)),
            ) => return Err(stapled_error.clone()),
            (result, _) => result?,
        }
    }
    Ok(())
}

/// Returns `Ok(Ok(()))` for a valid good response, `Ok(Err(reason))` for a response that does
/// not count, and `Err` for a valid response that revokes `leaf`.
fn stapled_status(
    response: &[u8],
    leaf: &Certificate,
    issuer: &Certificate,
    at: SystemTime,
) -> Result<Result<(), ValidateError>, ValidateError> {
    match ocsp::check_stapled(response, leaf, issuer, at) {
        Ok(OcspStatus::Good) => {
            debug!(subject = leaf.subject(), "stapled ocsp response: good");
            Ok(Ok(()))
        }
        Ok(OcspStatus::Revoked(_)) => Err(ValidateError::RevokedByOcsp {
            subject: leaf.subject().to_owned(),
            serial: hex(leaf.serial()),
            issuer: issuer.subject().to_owned(),
        }),
        Ok(OcspStatus::Unknown) => Ok(Err(ValidateError::InvalidOcspResponse {
            subject: leaf.subject().to_owned(),
            reason: "the responder does not know the certificate".to_owned(),
        })),
        Err(error) => {
            warn!(subject = leaf.subject(), %error, "stapled ocsp response ignored");
            Ok(Err(error))
        }
    }
}

fn check_certificate(
    cert: &Certificate,
    issuer: &Certificate,
    lists: &[RevocationList],
    policy: RevocationPolicy,
    at: SystemTime,
) -> Result<(), ValidateError> {
    if lists
        .iter()
        .any(|list| list.serials.iter().any(|s| s == cert.serial()))
    {
        return Err(ValidateError::Revoked {
            subject: cert.subject().to_owned(),
            serial: hex(cert.serial()),
            issuer: issuer.subject().to_owned(),
        });
    }
    if policy == RevocationPolicy::AllowMissing {
        return Ok(());
    }

    let Some(latest) = lists.iter().max_by_key(|list| list.next_update) else {
        return Err(ValidateError::NoRevocationList {
            subject: cert.subject().to_owned(),
            issuer: issuer.subject().to_owned(),
        });
    };
    if latest.next_update < at {
        return Err(ValidateError::RevocationListOutdated {
            issuer: issuer.subject().to_owned(),
            next_update: latest.next_update,
            at,
        });
    }
    Ok(())
}

/// Formats bytes as lowercase hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use rcgen::SerialNumber;

    use super::*;
    use crate::x509::testing::{anchors, ca_params, chain, day, issue, self_signed, server_params};
    use crate::x509::{PathValidator, PeerRole};

    fn list(serials: &[&[u8]], next_update: SystemTime) -> TrustRecord {
        TrustRecord::Revocation(RevocationList {
            this_update: day(2025, 1, 1),
            next_update,
            serials: serials.iter().map(|s| s.to_vec()).collect(),
        })
    }

    #[test]
    fn revoked_serial_fails_both_policies() {
        let root = self_signed(ca_params("Root"));
        let mut params = server_params("www", &["www.example.com"]);
        params.serial_number = Some(SerialNumber::from_slice(&[0x12, 0x34]));
        let leaf = issue(params, &root);
        let mut store = anchors(&[&root]);
        store.insert(
            &root.parsed().key_id(),
            list(&[&[0x12, 0x34]], day(2026, 1, 1)),
        );

        let at = day(2025, 6, 1);
        let path = PathValidator::new(&store, PeerRole::Server, at)
            .validate(&chain(&[&leaf]))
            .unwrap();
        for policy in [
            RevocationPolicy::RequireList,
            RevocationPolicy::AllowMissing,
        ] {
            let err = check_revocation(&store, &path, policy, at).unwrap_err();
            assert_eq!(
                err,
                ValidateError::Revoked {
                    subject: "CN=www".into(),
                    serial: "1234".into(),
                    issuer: "CN=Root".into(),
                },
                "{policy:?}"
            );
        }
    }

    #[test]
    fn missing_or_outdated_list_fails_only_strict_policy() {
        let root = self_signed(ca_params("Root"));
        let intermediate = issue(ca_params("Intermediate"), &root);
        let leaf = issue(server_params("www", &["www.example.com"]), &intermediate);
        let mut store = anchors(&[&root]);
        store.insert(&root.parsed().key_id(), list(&[&[0x01]], day(2026, 1, 1)));
        let at = day(2025, 6, 1);
        let path = PathValidator::new(&store, PeerRole::Server, at)
            .validate(&chain(&[&leaf, &intermediate]))
            .unwrap();

        let strict = check_revocation(&store, &path, RevocationPolicy::RequireList, at);
        assert_eq!(
            strict.unwrap_err(),
            ValidateError::NoRevocationList {
                subject: "CN=www".into(),
                issuer: "CN=Intermediate".into(),
            }
        );
        assert!(check_revocation(&store, &path, RevocationPolicy::AllowMissing, at).is_ok());

        store.insert(&intermediate.parsed().key_id(), list(&[], day(2025, 2, 1)));
        let strict = check_revocation(&store, &path, RevocationPolicy::RequireList, at);
        assert_eq!(
            strict.unwrap_err(),
            ValidateError::RevocationListOutdated {
                issuer: "CN=Intermediate".into(),
                next_update: day(2025, 2, 1),
                at,
            }
        );
        assert!(check_revocation(&store, &path, RevocationPolicy::AllowMissing, at).is_ok());

        store.insert(&intermediate.parsed().key_id(), list(&[], day(2026, 2, 1)));
        assert!(check_revocation(&store, &path, RevocationPolicy::RequireList, at).is_ok());
    }
}
