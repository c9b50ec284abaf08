//! The error type of X.509 path validation: one variant per reason a chain, a link or a name
//! fails, each naming the certificate by its subject and the limit it broke.

use std::fmt;
use std::time::SystemTime;

/// A reason why a certificate chain, a certificate or a name failed validation.
///
/// Subjects are printed as RFC 4514 strings (`CN=leaf,O=Example`). A peer causes every variant
/// except [`TrustStore`](Self::TrustStore), so the daemon treats all of them as a failed
/// predicate rather than an internal error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidateError {
    /// The peer sent no certificate.
    #[error("the peer sent no certificate")]
    EmptyChain,

    /// A certificate or PEM block that does not decode.
    #[error("certificate {index} of the chain is malformed: {reason}")]
    Malformed {
        /// Position in the presented chain, from 0 for the end certificate.
        index: usize,
        /// The decoder's reason for rejecting it.
        reason: String,
    },

    /// An extension whose value does not decode.
    #[error("extension {oid} of certificate {subject:?} is malformed: {reason}")]
    InvalidExtension {
        /// Subject of the certificate.
        subject: String,
        /// Object identifier of the extension.
        oid: String,
        /// The decoder's reason for rejecting it.
        reason: String,
    },

    /// The validation time is after the certificate's notAfter.
    #[error(
        "certificate {subject:?} expired at {}, before the validation time {}",
        Rfc3339(not_after),
        Rfc3339(at)
    )]
    Expired {
        /// Subject of the certificate.
        subject: String,
        /// The end of its validity.
        not_after: SystemTime,
        /// The validation time.
        at: SystemTime,
    },

    /// The validation time is before the certificate's notBefore.
    #[error(
        "certificate {subject:?} is not valid before {}, after the validation time {}",
        Rfc3339(not_before),
        Rfc3339(at)
    )]
    NotYetValid {
        /// Subject of the certificate.
        subject: String,
        /// The start of its validity.
        not_before: SystemTime,
        /// The validation time.
        at: SystemTime,
    },

    /// Neither the presented certificates nor the trust anchors of the role contain the issuer.
    #[error(
        "issuer {issuer:?} of certificate {subject:?} is not a trusted anchor nor in the chain"
    )]
    UnknownIssuer {
        /// Subject of the certificate whose issuer is missing.
        subject: String,
        /// Its issuer name.
        issuer: String,
    },

    /// A root anchor (without `TAD_NOTROOT`) whose subject differs from its issuer.
    #[error(
        "trust anchor {subject:?} is not self-issued; mark it notroot to trust it as an \
         intermediate"
    )]
    AnchorNotSelfIssued {
        /// Subject of the anchor.
        subject: String,
    },

    /// An issuer without the CA flag of basicConstraints.
    #[error("certificate {subject:?} issues certificates but is not a CA (basicConstraints)")]
    NotCa {
        /// Subject of the issuing certificate.
        subject: String,
    },

    /// More intermediate certificates than a pathLenConstraint above them allows.
    #[error(
        "certificate {subject:?} exceeds the path length limit of {path_len} intermediate \
         certificates set by {limited_by:?}"
    )]
    PathLenExceeded {
        /// Subject of the intermediate certificate past the limit.
        subject: String,
        /// The pathLenConstraint.
        path_len: u8,
        /// Subject of the certificate that set it.
        limited_by: String,
    },

    /// A keyUsage extension without the bit the certificate's place in the path requires.
    #[error("certificate {subject:?} lacks key usage {required}")]
    KeyUsage {
        /// Subject of the certificate.
        subject: String,
        /// The required usage, such as `keyCertSign` or `digitalSignature`.
        required: &'static str,
    },

    /// An extendedKeyUsage extension without the purpose of the peer's role.
    #[error("certificate {subject:?} lacks extended key usage {required}")]
    ExtendedKeyUsage {
        /// Subject of the certificate.
        subject: String,
        /// The required purpose: `serverAuth` or `clientAuth`.
        required: &'static str,
    },

    /// A name of a certificate outside the nameConstraints of an issuer.
    #[error("name {name:?} of certificate {subject:?} {rule} of issuer {issuer:?}")]
    NameConstraint {
        /// Subject of the constrained certificate.
        subject: String,
        /// The name that broke the constraint.
        name: String,
        /// Subject of the issuer whose nameConstraints it broke.
        issuer: String,
        /// The broken rule, such as `is outside the permitted subtrees example.com`.
        rule: String,
    },

    /// The certificate carries no name that matches the expected remote identity.
    #[error("certificate names {} do not match {expected:?}", Names(presented))]
    NameMismatch {
        /// The remote identity.
        expected: String,
        /// The names the certificate presents for that kind of identity.
        presented: Vec<String>,
    },

    /// A signature that does not verify with the issuer's public key.
    #[error("signature of certificate {subject:?} does not verify with the key of {issuer:?}")]
    BadSignature {
        /// Subject of the signed certificate.
        subject: String,
        /// Subject of the issuer whose key was used.
        issuer: String,
    },

    /// A signature algorithm or issuer key type outside RSA PKCS#1 v1.5 and PSS with SHA-2,
    /// ECDSA P-256 and P-384 with SHA-256 or SHA-384, and Ed25519.
    #[error("certificate {subject:?} uses unsupported algorithm {algorithm}")]
    UnsupportedAlgorithm {
        /// Subject of the signed certificate.
        subject: String,
        /// The algorithm: an object identifier, with parameters where they decide.
        algorithm: String,
    },

    /// A critical extension this validator does not process.
    #[error("certificate {subject:?} has unknown critical extension {oid}")]
    UnknownCriticalExtension {
        /// Subject of the certificate.
        subject: String,
        /// Object identifier of the extension.
        oid: String,
    },

    /// A serial number listed in a revocation entry of its issuer.
    #[error("certificate {subject:?} with serial {serial} is revoked by {issuer:?}")]
    Revoked {
        /// Subject of the certificate.
        subject: String,
        /// Its serial number in hexadecimal.
        serial: String,
        /// Subject of the issuer whose revocation list lists it.
        issuer: String,
    },

    /// A certificate that the peer's stapled OCSP response reports as revoked by its issuer.
    #[error(
        "certificate {subject:?} with serial {serial} is revoked by {issuer:?} (stapled OCSP response)"
    )]
    RevokedByOcsp {
        /// Subject of the certificate.
        subject: String,
        /// Its serial number in hexadecimal.
        serial: String,
        /// Subject of the issuer that signed the response, itself or through a responder.
        issuer: String,
    },

    /// The peer's stapled OCSP response cannot be relied upon.
    #[error("the stapled OCSP response for certificate {subject:?} is invalid: {reason}")]
    InvalidOcspResponse {
        /// Subject of the certificate.
        subject: String,
        /// The reason the response does not count.
        reason: String,
    },

    /// No revocation entry exists for the issuer of a certificate (fails only `R`).
    #[error("no revocation list of issuer {issuer:?} covers certificate {subject:?}")]
    NoRevocationList {
        /// Subject of the certificate.
        subject: String,
        /// Subject of its issuer.
        issuer: String,
    },

    /// The revocation entry of an issuer is past its next update (fails only `R`).
    #[error(
        "revocation list of issuer {issuer:?} was due for an update at {}, before the \
         validation time {}",
        Rfc3339(next_update),
        Rfc3339(at)
    )]
    RevocationListOutdated {
        /// Subject of the issuer.
        issuer: String,
        /// The next update the list announced.
        next_update: SystemTime,
        /// The validation time.
        at: SystemTime,
    },

    /// The trust store could not be read.
    #[error("reading the trust store under key {key} failed: {reason}")]
    TrustStore {
        /// The key in hexadecimal.
        key: String,
        /// The underlying error.
        reason: String,
    },
}

/// Formats a time as RFC 3339 in UTC, or as seconds since the epoch where X.509 cannot express
/// it.
pub(crate) struct Rfc3339<'a>(pub(crate) &'a SystemTime);

impl fmt::Display for Rfc3339<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match der::DateTime::from_system_time(*self.0) {
            Ok(time) => write!(f, "{time}"),
            Err(_) => match self.0.duration_since(SystemTime::UNIX_EPOCH) {
                Ok(since) => write!(f, "{} s after the epoch", since.as_secs()),
                Err(_) => f.write_str("a time before the epoch"),
            },
        }
    }
}

/// Formats a list of names as `"a", "b"`, or `none` for an empty list.
struct Names<'a>(&'a [String]);

impl fmt::Display for Names<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(none)");
        }
        for (i, name) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name:?}")?;
        }
        Ok(())
    }
}
