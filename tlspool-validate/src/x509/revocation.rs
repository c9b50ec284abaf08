//! Revocation checks of a validated path against the revocation entries of the trust store:
//! the `R` and `r` predicates.
//!
//! The revocation list of an issuer is stored under the issuer's key identifier, the same key
//! as the issuer's anchor entry, so the lists of a certificate are found under its
//! AuthorityKeyIdentifier (or its issuer's key identifier when it has none). The anchor itself
//! is trusted and not checked.

use std::time::SystemTime;

use super::path::ValidPath;
use super::trust::{RevocationList, TrustRecord, TrustStore};
use super::{Certificate, ValidateError};

/// The strictness of a revocation check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevocationPolicy {
    /// `R`: every certificate needs a current list of its issuer that does not list it.
    RequireList,
    /// `r`: no list may revoke a certificate; an issuer without a list, or with an outdated
    /// one, is accepted.
    AllowMissing,
}

/// Checks every certificate of `path` against the revocation lists of its issuer at `at`.
///
/// # Errors
///
/// [`ValidateError::Revoked`] for a listed serial number under either policy; under
/// [`RevocationPolicy::RequireList`] also [`ValidateError::NoRevocationList`] and
/// [`ValidateError::RevocationListOutdated`]; [`ValidateError::TrustStore`] when the store
/// cannot be read.
pub fn check_revocation(
    store: &dyn TrustStore,
    path: &ValidPath,
    policy: RevocationPolicy,
    at: SystemTime,
) -> Result<(), ValidateError> {
    // NOTE: only trust database entries are consulted; a stapled OCSP response (RFC 6066
    // status_request) is not yet taken into account.
    let issuers = path
        .certificates
        .iter()
        .skip(1)
        .chain(std::iter::once(&path.anchor.certificate));
    for (cert, issuer) in path.certificates.iter().zip(issuers) {
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
        check_certificate(cert, issuer, &lists, policy, at)?;
    }
    Ok(())
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
