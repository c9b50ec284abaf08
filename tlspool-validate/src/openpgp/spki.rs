//! Conversion of an OpenPGP public key into the DER SubjectPublicKeyInfo that a TLS raw public
//! key (RFC 7250) carries, in the encoding GnuTLS exports for the same key.
//!
//! - RSA: `rsaEncryption` with NULL parameters and an RFC 8017 `RSAPublicKey` (modulus, then
//!   public exponent).
//! - ECDSA over P-256, P-384 and P-521: `id-ecPublicKey` with the named curve (RFC 5480) and
//!   the uncompressed point `04 || x || y`.
//! - Ed25519 and Ed448: `id-Ed25519` or `id-Ed448` without parameters and the raw public key
//!   (RFC 8410). Version 4 keys of the legacy EdDSA algorithm (22, EdDSALegacy in RFC 9580)
//!   store the Ed25519 key as an MPI prefixed with `0x40`, and the prefix is stripped. Keys of
//!   the RFC 9580 Ed25519 (27) and Ed448 (28) algorithms store the key as is.
//!
//! Other algorithms (DSA, ElGamal, ECDH and the X25519 and X448 encryption keys, the Brainpool
//! curves, post-quantum composites) fail with [`OpenPgpError::UnsupportedAlgorithm`].

use der::Encode;
use der::asn1::{AnyRef, BitStringRef, ObjectIdentifier, UintRef};
use sequoia_openpgp::crypto::mpi;
use sequoia_openpgp::packet::Key;
use sequoia_openpgp::packet::key::{KeyParts, KeyRole};
use sequoia_openpgp::types::Curve;
use x509_cert::spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};

use super::OpenPgpError;

/// `rsaEncryption` (RFC 8017 appendix C).
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// `id-ecPublicKey` (RFC 5480 section 2.1.1).
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `secp256r1` (RFC 5480 section 2.1.1.1).
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// `secp384r1` (RFC 5480 section 2.1.1.1).
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// `secp521r1` (RFC 5480 section 2.1.1.1).
const SECP521R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
/// `id-Ed25519` (RFC 8410 section 3).
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// `id-Ed448` (RFC 8410 section 3).
const ED448: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.113");

/// `RSAPublicKey` of RFC 8017 appendix A.1.1.
#[derive(der::Sequence)]
struct RsaPublicKey<'a> {
    modulus: UintRef<'a>,
    public_exponent: UintRef<'a>,
}

/// Encodes `key` as the DER SubjectPublicKeyInfo of a TLS raw public key.
///
/// # Errors
///
/// [`OpenPgpError::UnsupportedAlgorithm`] for an algorithm or curve listed in the module
/// documentation as unsupported, [`OpenPgpError::InvalidKeyMaterial`] for an elliptic-curve
/// point or RSA integer that does not decode, [`OpenPgpError::Encoding`] if DER encoding fails.
pub fn subject_public_key_info<P: KeyParts, R: KeyRole>(
    key: &Key<P, R>,
) -> Result<Vec<u8>, OpenPgpError> {
    let fingerprint = key.fingerprint();
    let encoding = |error: der::Error| OpenPgpError::Encoding {
        fingerprint: fingerprint.clone(),
        reason: error.to_string(),
    };
    let invalid = |reason: String| OpenPgpError::InvalidKeyMaterial {
        fingerprint: fingerprint.clone(),
        reason,
    };
    let unsupported = |algorithm: String| OpenPgpError::UnsupportedAlgorithm {
        fingerprint: fingerprint.clone(),
        algorithm,
    };

    match key.mpis() {
        mpi::PublicKey::RSA { e, n } => {
            // MPIs carry no leading zero octets, so an empty value is zero.
            if n.value().is_empty() || e.value().is_empty() {
                return Err(invalid("RSA modulus or public exponent is zero".to_owned()));
            }
            let rsa = RsaPublicKey {
                modulus: UintRef::new(n.value()).map_err(encoding)?,
                public_exponent: UintRef::new(e.value()).map_err(encoding)?,
            };
            let bits = rsa.to_der().map_err(encoding)?;
            encode(RSA_ENCRYPTION, Some(AnyRef::NULL), &bits).map_err(encoding)
        }
        mpi::PublicKey::ECDSA { curve, q } => {
            let named_curve = match curve {
                Curve::NistP256 => SECP256R1,
                Curve::NistP384 => SECP384R1,
                Curve::NistP521 => SECP521R1,
                other => return Err(unsupported(format!("ECDSA over {other}"))),
            };
            // Checks the 0x04 prefix and the coordinate lengths of the uncompressed point.
            q.decode_point(curve)
                .map_err(|error| invalid(format!("{error:#}")))?;
            encode(EC_PUBLIC_KEY, Some(AnyRef::from(&named_curve)), q.value()).map_err(encoding)
        }
        mpi::PublicKey::EdDSA { curve, q } => {
            if *curve != Curve::Ed25519 {
                return Err(unsupported(format!("EdDSA over {curve}")));
            }
            let (point, _) = q
                .decode_point(curve)
                .map_err(|error| invalid(format!("{error:#}")))?;
            encode(ED25519, None, point).map_err(encoding)
        }
        mpi::PublicKey::Ed25519 { a } => encode(ED25519, None, a).map_err(encoding),
        mpi::PublicKey::Ed448 { a } => encode(ED448, None, &a[..]).map_err(encoding),
        _ => Err(unsupported(key.pk_algo().to_string())),
    }
}

/// Encodes a SubjectPublicKeyInfo from its algorithm and the content of its BIT STRING.
fn encode(
    oid: ObjectIdentifier,
    parameters: Option<AnyRef<'_>>,
    subject_public_key: &[u8],
) -> der::Result<Vec<u8>> {
    SubjectPublicKeyInfoRef {
        algorithm: AlgorithmIdentifierRef { oid, parameters },
        subject_public_key: BitStringRef::from_bytes(subject_public_key)?,
    }
    .to_der()
}
