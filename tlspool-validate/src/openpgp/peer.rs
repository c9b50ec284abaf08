//! Matching a raw public key received from a TLS peer against candidate OpenPGP keys of the
//! remote identity it claims.

use std::time::SystemTime;

use der::Decode;
use sequoia_openpgp::Cert;
use sequoia_openpgp::Fingerprint;
use sequoia_openpgp::cert::ValidCert;
use sequoia_openpgp::cert::amalgamation::{ValidAmalgamation, ValidateAmalgamation};
use sequoia_openpgp::policy::Policy;
use sequoia_openpgp::types::RevocationStatus;
use tracing::debug;
use x509_cert::spki::SubjectPublicKeyInfoRef;

use super::key::{key_status, parse_transferable_public_key, revocation_reason, valid_certificate};
use super::spki::subject_public_key_info;
use super::{AuthenticationKey, Mismatch, OpenPgpError, Rejection};

/// The candidate key that matched a received raw public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerMatch {
    /// Position of the matching candidate in the list given, from 0.
    pub candidate: usize,
    /// The authentication key that the raw public key is.
    pub key: AuthenticationKey,
    /// The valid user ID whose email address is the remote identity.
    pub user_id: String,
}

/// Matches the raw public key a peer sent against candidate OpenPGP keys of `remote_id`.
///
/// `raw_public_key` is the DER SubjectPublicKeyInfo from the peer's RFC 7250 certificate
/// message. `remote_id` is the `user@domain` the peer claims, split at its last `@`. Each
/// candidate is a transferable public key, binary or ASCII-armoured, from any source (trust
/// database, LDAP `pgpKey` values, OPENPGPKEY records). The first candidate matches that:
///
/// - is accepted by `policy`, unrevoked and alive at `time`;
/// - has as its authentication key (see [`AuthenticationKey::select`]) exactly the received
///   SubjectPublicKeyInfo, compared byte for byte with the DER this crate derives;
/// - has a user ID with a binding valid under `policy` at `time` that is not revoked. The
///   local part of its email address equals the user of `remote_id`, and its domain equals the
///   domain of `remote_id` without regard to ASCII case.
///
/// # Errors
///
/// [`OpenPgpError::InvalidRemoteId`], [`OpenPgpError::InvalidRawPublicKey`], or
/// [`OpenPgpError::NoMatchingKey`] with the reason each candidate failed.
pub fn match_raw_public_key<'c, I>(
    raw_public_key: &[u8],
    remote_id: &str,
    candidates: I,
    policy: &dyn Policy,
    time: SystemTime,
) -> Result<PeerMatch, OpenPgpError>
where
    I: IntoIterator<Item = &'c [u8]>,
{
    let address = EmailAddress::parse(remote_id).ok_or_else(|| OpenPgpError::InvalidRemoteId {
        remote_id: remote_id.to_owned(),
    })?;
    SubjectPublicKeyInfoRef::from_der(raw_public_key).map_err(|error| {
        OpenPgpError::InvalidRawPublicKey {
            reason: error.to_string(),
        }
    })?;

    let mut rejections = Vec::new();
    for (candidate, bytes) in candidates.into_iter().enumerate() {
        match match_candidate(bytes, raw_public_key, &address, policy, time) {
            Ok((key, user_id)) => {
                debug!(remote_id, key = %key.key, candidate, "openpgp key matches raw public key");
                return Ok(PeerMatch {
                    candidate,
                    key,
                    user_id,
                });
            }
            Err(mismatch) => {
                debug!(remote_id, candidate, %mismatch, "openpgp key does not match");
                rejections.push(Rejection {
                    candidate,
                    mismatch,
                });
            }
        }
    }
    Err(OpenPgpError::NoMatchingKey {
        remote_id: remote_id.to_owned(),
        rejections,
    })
}

/// Checks one candidate and returns its authentication key and matching user ID.
fn match_candidate(
    bytes: &[u8],
    raw_public_key: &[u8],
    address: &EmailAddress<'_>,
    policy: &dyn Policy,
    time: SystemTime,
) -> Result<(AuthenticationKey, String), Mismatch> {
    let cert = parse_transferable_public_key(bytes).map_err(Mismatch::Key)?;
    let Some(presented) = key_deriving(&cert, raw_public_key) else {
        return Err(Mismatch::WrongKey {
            certificate: cert.fingerprint(),
        });
    };

    let selected = AuthenticationKey::select(&cert, policy, time).map_err(Mismatch::Key)?;
    if selected.subject_public_key_info != raw_public_key {
        return Err(not_selected(&cert, presented, selected.key, policy, time));
    }

    // Selection succeeded, so the certificate is valid at `time`.
    let valid = valid_certificate(&cert, policy, time).map_err(Mismatch::Key)?;
    let user_id = user_id_for(&valid, address)?;
    Ok((selected, user_id))
}

/// Finds the key of `cert`, valid or not, whose SubjectPublicKeyInfo is `raw_public_key`.
fn key_deriving(cert: &Cert, raw_public_key: &[u8]) -> Option<Fingerprint> {
    cert.keys()
        .find(|ka| subject_public_key_info(ka.key()).is_ok_and(|spki| spki == raw_public_key))
        .map(|ka| ka.key().fingerprint())
}

/// Explains why the presented key of `cert` is not the selected one: it is revoked, expired,
/// rejected by the policy, or valid but not chosen for authentication.
fn not_selected(
    cert: &Cert,
    presented: Fingerprint,
    selected: Fingerprint,
    policy: &dyn Policy,
    time: SystemTime,
) -> Mismatch {
    let not_selected = Mismatch::KeyNotSelected {
        key: presented.clone(),
        selected,
    };
    let Some(key) = cert.keys().key_handle(presented).next() else {
        return not_selected;
    };
    let valid = match key.with_policy(policy, time) {
        Ok(valid) => valid,
        Err(error) => {
            return Mismatch::Key(OpenPgpError::PolicyRejected {
                fingerprint: key.key().fingerprint(),
                reason: format!("{error:#}"),
            });
        }
    };
    match key_status(
        valid.revocation_status(),
        valid.alive(),
        valid.key_expiration_time(),
        valid.key(),
    ) {
        Ok(()) => not_selected,
        Err(error) => Mismatch::Key(error),
    }
}

/// Finds a valid, unrevoked user ID of `valid` whose email address is `address`.
fn user_id_for(valid: &ValidCert<'_>, address: &EmailAddress<'_>) -> Result<String, Mismatch> {
    let mut revoked = None;
    for user_id in valid.userids() {
        let Ok(Some(email)) = user_id.userid().email() else {
            continue;
        };
        if !EmailAddress::parse(email).is_some_and(|found| found.matches(address)) {
            continue;
        }
        let text = String::from_utf8_lossy(user_id.userid().value()).into_owned();
        match user_id.revocation_status() {
            RevocationStatus::Revoked(signatures) => {
                revoked.get_or_insert_with(|| (text, revocation_reason(&signatures)));
            }
            _ => return Ok(text),
        }
    }
    Err(match revoked {
        Some((user_id, reason)) => Mismatch::UserIdRevoked {
            certificate: valid.fingerprint(),
            user_id,
            reason,
        },
        None => Mismatch::NoUserId {
            certificate: valid.fingerprint(),
            address: address.to_string(),
        },
    })
}

/// An email address split into local part and domain at its last `@`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EmailAddress<'a> {
    local_part: &'a str,
    domain: &'a str,
}

impl<'a> EmailAddress<'a> {
    /// Splits `text` at its last `@`; `None` if either side is empty or there is no `@`.
    fn parse(text: &'a str) -> Option<Self> {
        let (local_part, domain) = text.rsplit_once('@')?;
        if local_part.is_empty() || domain.is_empty() {
            return None;
        }
        Some(Self { local_part, domain })
    }

    /// Compares local parts exactly and domains without regard to ASCII case.
    fn matches(&self, other: &Self) -> bool {
        self.local_part == other.local_part && self.domain.eq_ignore_ascii_case(other.domain)
    }
}

impl std::fmt::Display for EmailAddress<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.local_part, self.domain)
    }
}

#[cfg(test)]
mod tests {
    use super::EmailAddress;

    #[test]
    fn address_splits_at_last_at_sign() {
        let address = EmailAddress::parse("\"a@b\"@example.com");
        assert_eq!(
            address,
            Some(EmailAddress {
                local_part: "\"a@b\"",
                domain: "example.com"
            })
        );
    }

    #[test]
    fn address_without_user_or_domain_is_rejected() {
        assert_eq!(EmailAddress::parse("example.com"), None);
        assert_eq!(EmailAddress::parse("@example.com"), None);
        assert_eq!(EmailAddress::parse("user@"), None);
    }

    #[test]
    fn address_case_rules() {
        let Some(reference) = EmailAddress::parse("Hugh@Example.COM") else {
            panic!("reference address does not parse");
        };
        let same_domain = EmailAddress::parse("Hugh@example.com");
        let other_case_user = EmailAddress::parse("hugh@example.com");
        assert!(same_domain.is_some_and(|address| address.matches(&reference)));
        assert!(!other_case_user.is_some_and(|address| address.matches(&reference)));
    }
}
