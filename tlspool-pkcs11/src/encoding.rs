//! DER encodings built from token attributes: SubjectPublicKeyInfo (RFC 5280) for RSA, EC
//! and Ed25519 public keys, and the X.509 `Ecdsa-Sig-Value` form of an ECDSA signature.

use der::asn1::{AnyRef, BitStringRef, ObjectIdentifier, OctetStringRef, UintRef};
use der::{Decode, Encode, Sequence};
use spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};

/// `rsaEncryption` (RFC 8017).
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// `id-ecPublicKey` (RFC 5480).
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `id-Ed25519` (RFC 8410).
pub(crate) const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// `secp256r1` (RFC 5480).
pub(crate) const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// `secp384r1` (RFC 5480).
pub(crate) const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// `RSAPublicKey` (RFC 8017 appendix A.1.1).
#[derive(Sequence)]
struct RsaPublicKey<'a> {
    modulus: UintRef<'a>,
    public_exponent: UintRef<'a>,
}

/// `Ecdsa-Sig-Value` (RFC 5480 section 2.2 and RFC 3279).
#[derive(Sequence)]
struct EcdsaSigValue<'a> {
    r: UintRef<'a>,
    s: UintRef<'a>,
}

/// Returns the DER of an OID, the form `CKA_EC_PARAMS` uses for a named curve.
pub(crate) fn oid_der(oid: ObjectIdentifier) -> Vec<u8> {
    // An OID built from a valid constant always encodes; an empty vector would make the token
    // reject the template with CKR_ATTRIBUTE_VALUE_INVALID.
    oid.to_der().unwrap_or_default()
}

/// Builds the SubjectPublicKeyInfo of an RSA key from `CKA_MODULUS` and
/// `CKA_PUBLIC_EXPONENT`.
pub(crate) fn rsa_spki(modulus: &[u8], exponent: &[u8]) -> der::Result<Vec<u8>> {
    let key = RsaPublicKey {
        modulus: UintRef::new(modulus)?,
        public_exponent: UintRef::new(exponent)?,
    }
    .to_der()?;
    spki_der(RSA_ENCRYPTION, Some(AnyRef::NULL), &key)
}

/// Builds the SubjectPublicKeyInfo of an ECDSA key from `CKA_EC_PARAMS` (the DER of the
/// curve's OID) and `CKA_EC_POINT`.
pub(crate) fn ec_spki(ec_params: &[u8], ec_point: &[u8]) -> der::Result<Vec<u8>> {
    let curve = AnyRef::from_der(ec_params)?;
    spki_der(EC_PUBLIC_KEY, Some(curve), unwrap_ec_point(ec_point))
}

/// Builds the SubjectPublicKeyInfo of an Ed25519 key from `CKA_EC_POINT`; RFC 8410 puts the
/// 32 key bytes in the bit string and leaves the parameters out.
pub(crate) fn ed25519_spki(ec_point: &[u8]) -> der::Result<Vec<u8>> {
    spki_der(ED25519, None, unwrap_ec_point(ec_point))
}

/// Converts a PKCS #11 ECDSA signature (`r` and `s`, each as wide as the curve order) into a
/// DER `Ecdsa-Sig-Value`. Returns `None` for an odd or empty length.
pub(crate) fn ecdsa_signature_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || raw.len() % 2 != 0 {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let value = EcdsaSigValue {
        r: UintRef::new(r).ok()?,
        s: UintRef::new(s).ok()?,
    };
    value.to_der().ok()
}

fn spki_der(
    oid: ObjectIdentifier,
    parameters: Option<AnyRef<'_>>,
    key: &[u8],
) -> der::Result<Vec<u8>> {
    SubjectPublicKeyInfoRef {
        algorithm: AlgorithmIdentifierRef { oid, parameters },
        subject_public_key: BitStringRef::from_bytes(key)?,
    }
    .to_der()
}

/// Returns the point inside `CKA_EC_POINT`. PKCS #11 wraps it in a DER OCTET STRING, but some
/// modules store the bare point, which for an uncompressed point also starts with 0x04; only
/// a value that decodes completely as an OCTET STRING is unwrapped.
fn unwrap_ec_point(ec_point: &[u8]) -> &[u8] {
    match OctetStringRef::from_der(ec_point) {
        Ok(inner) => inner.as_bytes(),
        Err(_) => ec_point,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_der_strips_and_pads_integers() {
        let mut raw = vec![0u8; 64];
        raw[1] = 0x01; // r = 0x01 followed by 30 zero bytes and 0x00
        raw[32] = 0x80; // s has its top bit set, so DER adds a leading zero
        let der = ecdsa_signature_der(&raw).unwrap_or_default();
        assert_eq!(der[0], 0x30);
        assert_eq!(&der[2..4], &[0x02, 31]);
        assert_eq!(der[4], 0x01);
        assert_eq!(&der[35..38], &[0x02, 33, 0x00]);
        assert_eq!(der[38], 0x80);
    }

    #[test]
    fn ecdsa_der_rejects_odd_length() {
        assert_eq!(ecdsa_signature_der(&[1, 2, 3]), None);
        assert_eq!(ecdsa_signature_der(&[]), None);
    }

    #[test]
    fn ec_point_unwraps_octet_string_only() {
        let mut point = vec![0x04];
        point.extend([7u8; 64]);
        let mut wrapped = vec![0x04, 65];
        wrapped.extend(&point);
        assert_eq!(unwrap_ec_point(&wrapped), &point[..]);
        assert_eq!(unwrap_ec_point(&point), &point[..]);
    }

    #[test]
    fn oid_der_matches_ec_params_bytes() {
        let p256 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        assert_eq!(oid_der(SECP256R1), p256);
        assert_eq!(oid_der(ED25519), [0x06, 0x03, 0x2b, 0x65, 0x70]);
    }
}
