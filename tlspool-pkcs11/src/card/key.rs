//! Public keys of OpenPGP card key slots: decoding the card's public key material, the DER
//! SubjectPublicKeyInfo that TLS sends (RFC 7250 raw public keys and X.509 certificates), and
//! the OpenPGP version 4 fingerprint the card stores beside a generated key (RFC 4880,
//! section 12.2).

use der::Encode;
use der::asn1::OctetStringRef;
use openpgp_card::ocard::algorithm::{AlgorithmAttributes, Curve};
use openpgp_card::ocard::crypto::{EccType, PublicKeyMaterial};
use sha1::{Digest, Sha1};

use crate::encoding::{SECP256R1, ec_spki, ed25519_spki, oid_der};
use crate::error::Pkcs11Error;

/// Key algorithms this crate uses in an OpenPGP card's authentication slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CardKeyAlgorithm {
    /// Ed25519 (RFC 8032), OpenPGP public key algorithm 22 (EdDSA).
    Ed25519,
    /// ECDSA on NIST P-256, OpenPGP public key algorithm 19.
    EcdsaP256,
}

/// The public half of a key on an OpenPGP card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardPublicKey {
    algorithm: CardKeyAlgorithm,
    /// The 32 key bytes for Ed25519, the SEC 1 uncompressed point for P-256.
    point: Vec<u8>,
}

/// OpenPGP OID of Ed25519 for EdDSA keys (RFC 4880bis, section 9.2), without tag and length.
const ED25519_OPENPGP_OID: [u8; 9] = [0x2b, 0x06, 0x01, 0x04, 0x01, 0xda, 0x47, 0x0f, 0x01];
/// OID of NIST P-256 (1.2.840.10045.3.1.7), without tag and length.
const P256_OID: [u8; 8] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// OpenPGP public key algorithm numbers (RFC 4880, section 9.1 and RFC 6637).
const OPENPGP_ALGORITHM_ECDSA: u8 = 19;
const OPENPGP_ALGORITHM_EDDSA: u8 = 22;

impl CardPublicKey {
    /// Decodes the public key material a card returns for a key slot.
    pub(crate) fn from_material(
        ident: &str,
        material: &PublicKeyMaterial,
    ) -> Result<Self, Pkcs11Error> {
        let PublicKeyMaterial::E(ecc) = material else {
            return Err(unsupported(ident, "RSA"));
        };
        let AlgorithmAttributes::Ecc(attributes) = ecc.algo() else {
            return Err(unsupported(ident, "unknown algorithm attributes"));
        };

        let (algorithm, point) = match (attributes.ecc_type(), attributes.curve()) {
            (EccType::EdDSA, Curve::Ed25519) => {
                // Cards return the bare 32 bytes; some prefix the OpenPGP native marker 0x40.
                let point = match ecc.data() {
                    [0x40, rest @ ..] if rest.len() == 32 => rest,
                    other => other,
                };
                (CardKeyAlgorithm::Ed25519, point)
            }
            (EccType::ECDSA, Curve::NistP256r1) => (CardKeyAlgorithm::EcdsaP256, ecc.data()),
            (ecc_type, curve) => {
                return Err(unsupported(ident, &format!("{ecc_type:?} on {curve:?}")));
            }
        };

        let expected_len = match algorithm {
            CardKeyAlgorithm::Ed25519 => 32,
            CardKeyAlgorithm::EcdsaP256 => 65,
        };
        if point.len() != expected_len {
            return Err(Pkcs11Error::CardKeyInvalid {
                ident: ident.to_owned(),
                reason: format!(
                    "{algorithm:?} public key has {} bytes, expected {expected_len}",
                    point.len()
                ),
            });
        }
        Ok(Self {
            algorithm,
            point: point.to_vec(),
        })
    }

    /// Returns the key's algorithm.
    pub fn algorithm(&self) -> CardKeyAlgorithm {
        self.algorithm
    }

    /// Returns the key bytes: 32 bytes for Ed25519, the uncompressed point for P-256.
    pub fn point(&self) -> &[u8] {
        &self.point
    }

    /// Encodes the key as a DER SubjectPublicKeyInfo (RFC 5280, RFC 8410 for Ed25519).
    ///
    /// # Errors
    /// [`Pkcs11Error::EncodingFailed`] when the DER encoder fails.
    pub fn to_subject_public_key_info(&self) -> Result<Vec<u8>, Pkcs11Error> {
        // The encoding helpers take a CKA_EC_POINT, which is an OCTET STRING around the point.
        let wrapped = OctetStringRef::new(&self.point).and_then(|octets| octets.to_der());
        let spki = wrapped.and_then(|point| match self.algorithm {
            CardKeyAlgorithm::Ed25519 => ed25519_spki(&point),
            CardKeyAlgorithm::EcdsaP256 => ec_spki(&oid_der(SECP256R1), &point),
        });
        spki.map_err(|error| Pkcs11Error::EncodingFailed {
            output: "SubjectPublicKeyInfo",
            reason: error.to_string(),
        })
    }

    /// Computes the OpenPGP version 4 fingerprint of this key created at `created` (seconds
    /// since the Unix epoch), as stored on the card and shown by OpenPGP software.
    pub fn openpgp_v4_fingerprint(&self, created: u32) -> [u8; 20] {
        let mut body = vec![4];
        body.extend_from_slice(&created.to_be_bytes());
        match self.algorithm {
            CardKeyAlgorithm::Ed25519 => {
                body.push(OPENPGP_ALGORITHM_EDDSA);
                push_oid(&mut body, &ED25519_OPENPGP_OID);
                let mut native = vec![0x40];
                native.extend_from_slice(&self.point);
                push_mpi(&mut body, &native);
            }
            CardKeyAlgorithm::EcdsaP256 => {
                body.push(OPENPGP_ALGORITHM_ECDSA);
                push_oid(&mut body, &P256_OID);
                push_mpi(&mut body, &self.point);
            }
        }

        let mut hasher = Sha1::new();
        hasher.update([0x99]);
        // A key packet body of these algorithms is at most 84 bytes, so the length fits u16.
        hasher.update((body.len() as u16).to_be_bytes());
        hasher.update(&body);
        hasher.finalize().into()
    }
}

/// Appends a one-byte length and the OID bytes.
fn push_oid(body: &mut Vec<u8>, oid: &[u8]) {
    // Both OIDs are constants of 8 and 9 bytes.
    body.push(oid.len() as u8);
    body.extend_from_slice(oid);
}

/// Appends an OpenPGP multiprecision integer: its length in bits, then the bytes without
/// leading zero bytes (RFC 4880, section 3.2).
fn push_mpi(body: &mut Vec<u8>, value: &[u8]) {
    let first = value.iter().position(|&b| b != 0).unwrap_or(value.len());
    let value = &value[first..];
    let bits = match value.first() {
        Some(&top) => (value.len() * 8) as u32 - top.leading_zeros(),
        None => 0,
    };
    // The values are points of at most 65 bytes, so the bit count fits u16.
    body.extend_from_slice(&(bits as u16).to_be_bytes());
    body.extend_from_slice(value);
}

fn unsupported(ident: &str, algorithm: &str) -> Pkcs11Error {
    Pkcs11Error::CardAlgorithmUnsupported {
        ident: ident.to_owned(),
        algorithm: algorithm.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpi_counts_bits_from_top_byte() {
        let mut body = Vec::new();
        push_mpi(&mut body, &[0x00, 0x40, 0xff]);
        assert_eq!(body, [0x00, 0x0f, 0x40, 0xff]);
    }

    #[test]
    fn ed25519_spki_has_rfc8410_prefix() {
        let key = CardPublicKey {
            algorithm: CardKeyAlgorithm::Ed25519,
            point: vec![0x04; 32],
        };
        let spki = key.to_subject_public_key_info().expect("spki encodes");
        let prefix = [
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        assert_eq!(spki[..12], prefix);
        assert_eq!(spki[12..], [0x04; 32]);
    }

    /// Builds the version 4 key packet by hand (a 51-byte body) and compares its SHA-1.
    #[test]
    fn ed25519_fingerprint_matches_key_packet_hash() {
        let key = CardPublicKey {
            algorithm: CardKeyAlgorithm::Ed25519,
            point: vec![0x11; 32],
        };
        let mut packet = vec![0x99, 0x00, 0x33, 4, 0, 0, 0, 0, 22, 9];
        packet.extend_from_slice(&ED25519_OPENPGP_OID);
        packet.extend_from_slice(&[0x01, 0x07, 0x40]);
        packet.extend_from_slice(&[0x11; 32]);
        let expected: [u8; 20] = Sha1::digest(&packet).into();
        assert_eq!(key.openpgp_v4_fingerprint(0), expected);
    }
}
