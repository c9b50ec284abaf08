//! OPENPGPKEY records (RFC 7929): the owner name of an email address's key and its lookup
//! under DNSSEC.

use std::fmt::Write;

use tracing::{debug, warn};

use super::OpenPgpError;
use crate::dns::{DnsError, RecordData, Resolver, Rtype, Security};

/// Octets of the SHA-256 digest of the local part that form the first label.
const DIGEST_OCTETS: usize = 28;

/// Returns the owner name of the OPENPGPKEY record for `local_part@domain`.
///
/// The first label is the SHA-256 digest of the local part's UTF-8 octets, truncated to 28
/// octets and written as 56 lower-case hexadecimal digits. It is followed by `_openpgpkey` and
/// `domain` as given. The local part is hashed exactly as given: RFC 7929 leaves any case
/// folding to the caller, who may retry with a lower-cased local part.
///
/// ```
/// use tlspool_validate::openpgp::openpgpkey_owner_name;
///
/// assert_eq!(
///     openpgpkey_owner_name("hugh", "example.com"),
///     "c93f1e400f26708f98cb19d936620da35eec8f72e57f9eec01c1afd6._openpgpkey.example.com"
/// );
/// ```
pub fn openpgpkey_owner_name(local_part: &str, domain: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, local_part.as_bytes());
    let mut name = String::with_capacity(2 * DIGEST_OCTETS + "._openpgpkey.".len() + domain.len());
    for octet in &digest.as_ref()[..DIGEST_OCTETS] {
        // `fmt::Write` for `String` always returns `Ok`.
        let _ = write!(name, "{octet:02x}");
    }
    name.push_str("._openpgpkey.");
    name.push_str(domain);
    name
}

/// The result of an OPENPGPKEY lookup under DNSSEC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenPgpKeyLookup {
    /// The zone is signed and publishes these keys: the data of each record, which RFC 7929
    /// defines as a binary transferable public key.
    Found(Vec<Vec<u8>>),
    /// DNSSEC proves that no OPENPGPKEY record exists for the address (NXDOMAIN or NODATA).
    Denied,
    /// DNSSEC proves that a zone on the way is unsigned, so any record it serves is no key.
    Insecure,
    /// No trust anchor covers the name.
    Indeterminate,
    /// The response, or its CNAME chain, failed DNSSEC validation, for the reason given.
    Bogus(String),
    /// The lookup failed or timed out.
    Error(DnsError),
}

impl OpenPgpKeyLookup {
    /// Returns why the lookup for `name` (the owner name or the address it derives from) gave
    /// no usable result: an unsigned zone, no covering trust anchor, a bogus response or a
    /// failed lookup. Returns `None` for keys and for an authenticated denial.
    pub fn lookup_failure(&self, name: &str) -> Option<String> {
        match self {
            Self::Found(_) | Self::Denied => None,
            Self::Insecure => Some(format!("OPENPGPKEY of {name} is not DNSSEC-signed")),
            Self::Indeterminate => Some(format!("no DNSSEC trust anchor covers {name}")),
            Self::Bogus(reason) => Some(format!(
                "OPENPGPKEY of {name} failed DNSSEC validation: {reason}"
            )),
            Self::Error(error) => Some(format!("OPENPGPKEY lookup of {name} failed: {error}")),
        }
    }
}

/// Returns the OPENPGPKEY owner name of `address` (`user@domain`, split at its last `@`).
///
/// # Errors
///
/// [`OpenPgpError::InvalidRemoteId`] when the user or the domain is empty or there is no `@`.
pub fn openpgpkey_owner_for(address: &str) -> Result<String, OpenPgpError> {
    match address.rsplit_once('@') {
        Some((local_part, domain)) if !local_part.is_empty() && !domain.is_empty() => {
            Ok(openpgpkey_owner_name(local_part, domain))
        }
        _ => Err(OpenPgpError::InvalidRemoteId {
            remote_id: address.to_owned(),
        }),
    }
}

/// Looks up the OPENPGPKEY records of `address` (`user@domain`) with `resolver`, which
/// validates the response and its CNAME chain under DNSSEC.
///
/// Only a [`Security::Secure`] answer yields keys. The local part is hashed as given, and no
/// lookup is retried with a lower-cased local part.
///
/// # Errors
///
/// [`OpenPgpError::InvalidRemoteId`] when `address` is no `user@domain`.
pub async fn lookup_openpgpkey(
    resolver: &Resolver,
    address: &str,
) -> Result<OpenPgpKeyLookup, OpenPgpError> {
    let owner = openpgpkey_owner_for(address)?;
    let answer = match resolver.lookup(&owner, Rtype::OPENPGPKEY).await {
        Ok(answer) => answer,
        Err(error) => return Ok(OpenPgpKeyLookup::Error(error)),
    };
    match answer.security() {
        Security::Secure => {}
        Security::Insecure => return Ok(OpenPgpKeyLookup::Insecure),
        Security::Indeterminate => return Ok(OpenPgpKeyLookup::Indeterminate),
        Security::Bogus(reason) => {
            warn!(owner = %owner, reason = %reason, "openpgpkey lookup failed dnssec validation");
            return Ok(OpenPgpKeyLookup::Bogus(reason.clone()));
        }
    }
    let rrset = match answer.rrset() {
        Ok(rrset) => rrset,
        Err(error) => return Ok(OpenPgpKeyLookup::Error(error)),
    };
    let keys: Vec<Vec<u8>> = rrset
        .records
        .iter()
        .filter_map(|record| match record {
            RecordData::Openpgpkey(key) => Some(key.key().to_vec()),
            _ => None,
        })
        .collect();
    debug!(owner = %owner, keys = keys.len(), "openpgpkey lookup is secure");
    if keys.is_empty() {
        Ok(OpenPgpKeyLookup::Denied)
    } else {
        Ok(OpenPgpKeyLookup::Found(keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_for_address_splits_at_last_at_sign() {
        let owner = openpgpkey_owner_for("hugh@example.com").expect("valid address");
        assert_eq!(owner, openpgpkey_owner_name("hugh", "example.com"));
        let quoted = openpgpkey_owner_for("\"a@b\"@example.com").expect("valid address");
        assert_eq!(quoted, openpgpkey_owner_name("\"a@b\"", "example.com"));
    }

    #[test]
    fn owner_for_address_needs_user_and_domain() {
        for address in ["example.com", "@example.com", "hugh@"] {
            let error = openpgpkey_owner_for(address).expect_err("invalid address");
            assert!(
                matches!(error, OpenPgpError::InvalidRemoteId { .. }),
                "{address}: {error}"
            );
        }
    }

    #[test]
    fn lookup_failure_only_for_unusable_answers() {
        let owner = "x._openpgpkey.example.com";
        assert_eq!(
            OpenPgpKeyLookup::Found(vec![vec![1]]).lookup_failure(owner),
            None
        );
        assert_eq!(OpenPgpKeyLookup::Denied.lookup_failure(owner), None);
        let insecure = OpenPgpKeyLookup::Insecure.lookup_failure(owner);
        assert!(insecure.is_some_and(|reason| reason.contains("not DNSSEC-signed")));
        let bogus = OpenPgpKeyLookup::Bogus("bad signature".to_owned()).lookup_failure(owner);
        assert!(bogus.is_some_and(|reason| reason.contains("bad signature")));
    }
}
