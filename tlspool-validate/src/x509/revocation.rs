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

/// How strictly revocation is checked.
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
