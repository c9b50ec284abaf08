//! OpenPGP identities presented as TLS raw public keys.
//!
//! TLS 1.3 has no OpenPGP certificate type, and GnuTLS dropped the RFC 6091 one, so an
//! OpenPGP identity travels as an RFC 7250 raw public key: the DER SubjectPublicKeyInfo of
//! one key of the certificate. This module owns the OpenPGP side of that. It reads a
//! transferable public key: the public data of a `LID_TYPE_PGP` local identity, a
//! `TAD_TYPE_PINNED_PGP` pin, an LDAP `pgpKey` value or an OPENPGPKEY record. It selects the
//! key that authenticates TLS and derives the SubjectPublicKeyInfo of that key. It decides
//! whether a raw public key received from a peer belongs to an OpenPGP key of the identity the
//! peer claims. It looks up OPENPGPKEY records under DNSSEC, and it runs no TLS.
//!
//! ```
//! use std::time::SystemTime;
//!
//! use sequoia_openpgp::cert::{CertBuilder, CipherSuite};
//! use sequoia_openpgp::policy::StandardPolicy;
//! use sequoia_openpgp::serialize::SerializeInto;
//! use tlspool_validate::openpgp::{AuthenticationKey, match_raw_public_key};
//!
//! let (cert, _revocation) = CertBuilder::new()
//!     .set_cipher_suite(CipherSuite::Cv25519)
//!     .add_userid("Hugh <hugh@example.com>")
//!     .add_authentication_subkey()
//!     .generate()?;
//! let transferable_public_key = cert.to_vec()?;
//!
//! let policy = StandardPolicy::new();
//! let now = SystemTime::now();
//! let local = AuthenticationKey::from_bytes(&transferable_public_key, &policy, now)?;
//! // The daemon sends `local.subject_public_key_info`; the peer checks what it received.
//! let candidates = [transferable_public_key.as_slice()];
//! let found = match_raw_public_key(
//!     &local.subject_public_key_info,
//!     "hugh@example.com",
//!     candidates,
//!     &policy,
//!     now,
//! )?;
//! assert_eq!(found.user_id, "Hugh <hugh@example.com>");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Which key authenticates
//!
//! [`AuthenticationKey::select`] applies the caller's policy (normally sequoia's
//! `StandardPolicy`) at a given time. The certificate must be accepted, unrevoked and alive.
//! Then the newest subkey with a valid binding that carries the authentication key flag and is
//! unrevoked, alive and of a supported algorithm is chosen. Without such a subkey, the primary
//! key is chosen if it carries the authentication flag. Keys flagged only for signing or certifying
//! are never chosen. Errors name the condition that failed: [`OpenPgpError::Revoked`],
//! [`OpenPgpError::Expired`], [`OpenPgpError::NoAuthenticationKey`],
//! [`OpenPgpError::UnsupportedAlgorithm`] and so on.
//!
//! Both version 4 (RFC 4880) and version 6 (RFC 9580) keys are read, as sequoia-openpgp 2
//! parses, verifies and generates both.
//!
//! # SubjectPublicKeyInfo
//!
//! [`subject_public_key_info`] encodes RSA as `rsaEncryption`, ECDSA over P-256, P-384 and
//! P-521 as `id-ecPublicKey` with the named curve and the uncompressed point, and Ed25519 and
//! Ed448 as `id-Ed25519` and `id-Ed448`, in the DER that GnuTLS exports for the same keys. The
//! legacy version 4 EdDSA encoding (an MPI prefixed with `0x40`) is converted to the plain
//! 32-octet key.
//!
//! # Matching a peer
//!
//! [`match_raw_public_key`] accepts the first candidate whose selected authentication key
//! derives exactly the received SubjectPublicKeyInfo and which has a valid, unrevoked user ID
//! whose email address is the remote identity (local part exact, domain without regard to
//! ASCII case). Otherwise [`OpenPgpError::NoMatchingKey`] lists one [`Mismatch`] per
//! candidate: wrong key, a key that is not the selected one, a revoked or expired key, no
//! user ID with that address, or a revoked user ID.
//!
//! [`openpgpkey_owner_name`] gives the DNS name under which RFC 7929 publishes the key of an
//! email address, and [`lookup_openpgpkey`] fetches the keys published there. Only a
//! DNSSEC-secure answer yields keys: an unsigned zone yields none, and a bogus answer is an
//! error. The keys found are candidates for [`match_raw_public_key`] like any other.
//!
//! # Known limitations
//!
//! - Trust is not decided here: a match says the raw public key belongs to that OpenPGP key
//!   and address, not that the key is trustworthy. Certifications by a `TAD_TYPE_PGP` anchor
//!   (the web of trust) are not evaluated.
//! - Revocations by a designated revoker are not verified, because that needs the revoker's
//!   certificate, so they do not reject a key.
//! - The received SubjectPublicKeyInfo is compared byte for byte, so a peer that encodes the
//!   same key differently (an RSA key without the NULL parameters) does not match.
//! - Domains are compared as ASCII. An internationalised domain in a user ID must be written
//!   in the same form (A-label or U-label) as the remote identity.
//! - DSA, ElGamal, Brainpool curves and post-quantum algorithms have no raw public key form
//!   here.

mod error;
mod key;
mod openpgpkey;
mod peer;
mod spki;

pub use self::spki::subject_public_key_info;
pub use error::{Mismatch, OpenPgpError, Rejection};
pub use key::{AuthenticationKey, parse_transferable_public_key};
pub use openpgpkey::{
    OpenPgpKeyLookup, lookup_openpgpkey, openpgpkey_owner_for, openpgpkey_owner_name,
};
pub use peer::{PeerMatch, match_raw_public_key};
