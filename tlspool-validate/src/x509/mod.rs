//! X.509 certificate path validation for the `T`, `t`, `R`, `r`, `P` and `p` predicates, and
//! the name check of the peer's certificate against the remote identity.
//!
//! The peer sends an end certificate and intermediates in any order. [`PathValidator`] builds
//! candidate paths to a trust anchor of the peer's [`PeerRole`] and validates them as RFC 5280
//! section 6.1 describes; [`check_name`] compares the end certificate with the remote
//! identity; [`check_revocation`] and [`pin_status`] read the revocation and pinned entries of
//! the trust store, and [`check_revocation_stapled`] also the peer's stapled OCSP response.
//!
//! Certificates are decoded with `x509-cert` (RustCrypto), whose typed, strict DER structures
//! for the RFC 5280 extensions share `der` and `spki` with the rest of RustCrypto, and whose
//! `Name` prints RFC 4514 strings for the error messages. Signatures are verified with `ring`,
//! which covers RSA PKCS#1 v1.5 and PSS, ECDSA P-256 and P-384 and Ed25519 in one audited
//! crate. Neither links the GnuTLS engine, so this module can be fuzzed and tested alone
//! (build without the default `trust-db` feature to leave out `tlspool-core` as well).
//!
//! ```
//! use std::time::SystemTime;
//! use tlspool_validate::x509::{AnchorSet, Certificate, PathValidator, PeerRole};
//!
//! let anchors = AnchorSet::new();
//! let validator = PathValidator::new(&anchors, PeerRole::Server, SystemTime::now());
//! assert!(validator.validate(&[]).is_err());
//! # let _ = Certificate::parse_chain;
//! ```
//!
//! # Known limitations
//!
//! - Names are compared by their DER bytes, not with the rules of RFC 5280 section 7.1.
//! - Certificate policies (RFC 5280 section 6.1.3 (d)) are not processed, and a critical
//!   certificatePolicies extension fails the certificate as an unknown critical extension.
//! - nameConstraints with directoryName, iPAddress or URI subtrees fail the path.
//! - A certificate without an AuthorityKeyIdentifier finds its anchor in the trust database
//!   only when the peer sends the anchor along; in-memory stores also match by subject.

mod cert;
mod constraints;
mod error;
mod name;
mod ocsp;
mod path;
mod revocation;
mod signature;
mod trust;
#[cfg(feature = "trust-db")]
mod trust_db;

pub use cert::Certificate;
pub use error::ValidateError;
pub use name::{PresentedName, check_name, dns_name_matches, identity_names, mail_matches};
pub use ocsp::{CLOCK_SKEW, MAX_AGE_WITHOUT_NEXT_UPDATE, OcspStatus, check_stapled};
pub use path::{MAX_CANDIDATES, MAX_PATH_DEPTH, PathValidator, ValidPath};
pub use revocation::{RevocationPolicy, check_revocation, check_revocation_stapled};
pub use trust::{
    Anchor, AnchorSet, PeerRole, Pin, PinStatus, RevocationList, TrustRecord, TrustStore,
    pin_status,
};
#[cfg(feature = "trust-db")]
pub use trust_db::TrustDb;
#[cfg(test)]
mod testing;
