//! The error type of OpenPGP key handling: why a transferable public key cannot identify a TLS
//! peer, and why a candidate key does not match a received raw public key.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use sequoia_openpgp::Fingerprint;

/// An error in reading an OpenPGP key, selecting its authentication key or matching a peer.
///
/// Fingerprints are printed in hexadecimal as sequoia prints them. Times are printed as
/// seconds since the Unix epoch. A peer or a key source can cause every variant, so the
/// daemon treats all of them as a failed check rather than an internal error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenPgpError {
    /// The bytes are no single transferable public key, in binary or ASCII armour.
    #[error("invalid OpenPGP transferable public key: {reason}")]
    Parse {
        /// The parser's reason.
        reason: String,
    },

    /// The primary key was created after the validation time.
    #[error(
        "OpenPGP key {fingerprint} is not yet valid: created at {}",
        unix_seconds(created)
    )]
    NotYetValid {
        /// Fingerprint of the primary key.
        fingerprint: Fingerprint,
        /// Creation time of the primary key.
        created: SystemTime,
    },

    /// The policy rejects the key or every binding signature of it (a weak hash such as SHA-1,
    /// a short RSA modulus, a binding made after the validation time).
    #[error("OpenPGP key {fingerprint} is rejected by the policy: {reason}")]
    PolicyRejected {
        /// Fingerprint of the rejected primary key or subkey.
        fingerprint: Fingerprint,
        /// Sequoia's reason.
        reason: String,
    },

    /// A valid revocation signature covers the key.
    #[error("OpenPGP key {fingerprint} is revoked: {reason}")]
    Revoked {
        /// Fingerprint of the revoked primary key or subkey.
        fingerprint: Fingerprint,
        /// Reason for revocation and its message, as the revocation signature states them.
        reason: String,
    },

    /// The key expired before the validation time.
    #[error("OpenPGP key {fingerprint} expired at {}", unix_seconds(at))]
    Expired {
        /// Fingerprint of the expired primary key or subkey.
        fingerprint: Fingerprint,
        /// Expiration time from the binding or direct-key signature.
        at: SystemTime,
    },

    /// Neither a valid subkey nor the primary key carries the authentication key flag.
    #[error("OpenPGP key {fingerprint} has no key flagged for authentication")]
    NoAuthenticationKey {
        /// Fingerprint of the primary key.
        fingerprint: Fingerprint,
    },

    /// The key's algorithm or curve has no SubjectPublicKeyInfo form used by TLS here.
    #[error(
        "OpenPGP key {fingerprint} uses {algorithm}, which has no raw public key form; \
         use RSA, ECDSA over P-256, P-384 or P-521, Ed25519 or Ed448"
    )]
    UnsupportedAlgorithm {
        /// Fingerprint of the key.
        fingerprint: Fingerprint,
        /// The public-key algorithm, and the curve where there is one.
        algorithm: String,
    },

    /// The public key material does not decode for its algorithm.
    #[error("OpenPGP key {fingerprint} has invalid key material: {reason}")]
    InvalidKeyMaterial {
        /// Fingerprint of the key.
        fingerprint: Fingerprint,
        /// The decoding failure.
        reason: String,
    },

    /// Encoding the SubjectPublicKeyInfo failed.
    #[error("encoding the SubjectPublicKeyInfo of OpenPGP key {fingerprint} failed: {reason}")]
    Encoding {
        /// Fingerprint of the key.
        fingerprint: Fingerprint,
        /// The DER encoder's reason.
        reason: String,
    },

    /// The received raw public key is no DER SubjectPublicKeyInfo.
    #[error("invalid raw public key: {reason}")]
    InvalidRawPublicKey {
        /// The DER decoder's reason.
        reason: String,
    },

    /// The remote identity is no `user@domain` with a non-empty user and domain.
    #[error("remote identity {remote_id:?} is no user@domain address")]
    InvalidRemoteId {
        /// The remote identity as given.
        remote_id: String,
    },

    /// No candidate key matches the received raw public key and the remote identity.
    #[error(
        "no OpenPGP key of {remote_id} matches the raw public key: {}",
        Rejections(rejections)
    )]
    NoMatchingKey {
        /// The remote identity.
        remote_id: String,
        /// The reason each candidate failed, in candidate order. It is empty without candidates.
        rejections: Vec<Rejection>,
    },
}

/// A candidate key that does not match a received raw public key, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Position of the candidate in the list given, from 0.
    pub candidate: usize,
    /// The reason.
    pub mismatch: Mismatch,
}

/// The reason a candidate key does not match a received raw public key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mismatch {
    /// The candidate does not identify a TLS peer at all: it does not parse, it is revoked or
    /// expired, or it has no usable authentication key.
    Key(OpenPgpError),

    /// No key of the candidate derives the received SubjectPublicKeyInfo.
    WrongKey {
        /// Fingerprint of the candidate's primary key.
        certificate: Fingerprint,
    },

    /// A key of the candidate derives the received SubjectPublicKeyInfo, but the key selected
    /// for authentication is another one.
    KeyNotSelected {
        /// Fingerprint of the key that derives the received SubjectPublicKeyInfo.
        key: Fingerprint,
        /// Fingerprint of the key selected for authentication.
        selected: Fingerprint,
    },

    /// No valid user ID of the candidate carries the remote identity as its email address.
    NoUserId {
        /// Fingerprint of the candidate's primary key.
        certificate: Fingerprint,
        /// The remote identity looked for.
        address: String,
    },

    /// The only user IDs with the remote identity as their email address are revoked.
    UserIdRevoked {
        /// Fingerprint of the candidate's primary key.
        certificate: Fingerprint,
        /// The revoked user ID.
        user_id: String,
        /// Reason for revocation and its message.
        reason: String,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key(error) => error.fmt(f),
            Self::WrongKey { certificate } => {
                write!(
                    f,
                    "no key of OpenPGP key {certificate} is the raw public key"
                )
            }
            Self::KeyNotSelected { key, selected } => write!(
                f,
                "the raw public key is OpenPGP key {key}, but {selected} is the key selected \
                 for authentication"
            ),
            Self::NoUserId {
                certificate,
                address,
            } => write!(
                f,
                "OpenPGP key {certificate} has no valid user ID <{address}>"
            ),
            Self::UserIdRevoked {
                certificate,
                user_id,
                reason,
            } => write!(
                f,
                "user ID {user_id:?} of OpenPGP key {certificate} is revoked: {reason}"
            ),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "candidate {}: {}", self.candidate, self.mismatch)
    }
}

/// Display helper that lists rejections separated by semicolons.
struct Rejections<'a>(&'a [Rejection]);

impl fmt::Display for Rejections<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no candidate key was given");
        }
        for (index, rejection) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            rejection.fmt(f)?;
        }
        Ok(())
    }
}

/// Seconds since the Unix epoch, negative for earlier times.
fn unix_seconds(time: &SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}
