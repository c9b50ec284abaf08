//! Key pair generation on a token, for `tlspool-admin dev-init`.
//!
//! Each key pair is stored on the token (`CKA_TOKEN`) under one label and `CKA_ID`. The
//! private key is sensitive and not extractable. The result carries the `pkcs11:` URIs of both
//! halves and the public key as SubjectPublicKeyInfo DER, ready for a certificate request or
//! a raw public key entry. SoftHSM 2.6.1 (Debian 12) offers every mechanism used here,
//! including `CKM_EC_EDWARDS_KEY_PAIR_GEN` for Ed25519.

use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::slot::Slot;
use cryptoki::types::Ulong;
use tracing::info;

use crate::encoding;
use crate::error::Pkcs11Error;
use crate::module::Module;
use crate::pin::PinSource;
use crate::token::{KeyKind, ObjectInfo, TokenInfo};
use crate::uri::{ObjectType, Pkcs11Uri};

/// The key pair types `generate_key_pair` creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// RSA with a 2048-bit modulus and public exponent 65537.
    Rsa2048,
    /// RSA with a 3072-bit modulus and public exponent 65537.
    Rsa3072,
    /// ECDSA on NIST P-256 (secp256r1).
    EcdsaP256,
    /// ECDSA on NIST P-384 (secp384r1).
    EcdsaP384,
    /// Ed25519 (RFC 8032), through `CKM_EC_EDWARDS_KEY_PAIR_GEN`.
    Ed25519,
}

/// A key pair generated on a token.
#[derive(Debug, Clone)]
pub struct GeneratedKeyPair {
    /// `pkcs11:` URI of the private key (`type=private`).
    pub private_key_uri: Pkcs11Uri,
    /// `pkcs11:` URI of the public key (`type=public`).
    pub public_key_uri: Pkcs11Uri,
    /// The public key as DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
}

impl KeyAlgorithm {
    fn mechanism(self) -> (Mechanism<'static>, MechanismType, &'static str) {
        match self {
            Self::Rsa2048 | Self::Rsa3072 => (
                Mechanism::RsaPkcsKeyPairGen,
                MechanismType::RSA_PKCS_KEY_PAIR_GEN,
                "CKM_RSA_PKCS_KEY_PAIR_GEN",
            ),
            Self::EcdsaP256 | Self::EcdsaP384 => (
                Mechanism::EccKeyPairGen,
                MechanismType::ECC_KEY_PAIR_GEN,
                "CKM_EC_KEY_PAIR_GEN",
            ),
            Self::Ed25519 => (
                Mechanism::EccEdwardsKeyPairGen,
                MechanismType::ECC_EDWARDS_KEY_PAIR_GEN,
                "CKM_EC_EDWARDS_KEY_PAIR_GEN",
            ),
        }
    }

    fn kind(self) -> KeyKind {
        match self {
            Self::Rsa2048 | Self::Rsa3072 => KeyKind::Rsa,
            Self::EcdsaP256 | Self::EcdsaP384 => KeyKind::Ec,
            Self::Ed25519 => KeyKind::EcEdwards,
        }
    }

    /// Returns the attributes that only the public key template carries.
    fn public_attributes(self) -> Vec<Attribute> {
        let rsa = |bits: u64| {
            vec![
                Attribute::ModulusBits(Ulong::from(bits)),
                Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
                Attribute::Encrypt(true),
            ]
        };
        match self {
            Self::Rsa2048 => rsa(2048),
            Self::Rsa3072 => rsa(3072),
            Self::EcdsaP256 => vec![Attribute::EcParams(encoding::oid_der(encoding::SECP256R1))],
            Self::EcdsaP384 => vec![Attribute::EcParams(encoding::oid_der(encoding::SECP384R1))],
            Self::Ed25519 => vec![Attribute::EcParams(encoding::oid_der(encoding::ED25519))],
        }
    }
}

impl Module {
    /// Generates a key pair on the token that `token_uri` selects, logging in through `pins`.
    ///
    /// RSA private keys may also decrypt, so TLS 1.2 RSA key transport keeps working.
    ///
    /// # Errors
    ///
    /// [`Pkcs11Error::TokenNotFound`], the login errors of [`Module::login`],
    /// [`Pkcs11Error::MechanismNotSupported`] when the token lacks the generation mechanism,
    /// and [`Pkcs11Error::Call`] when `C_GenerateKeyPair` or an attribute read fails.
    pub fn generate_key_pair(
        &self,
        token_uri: &Pkcs11Uri,
        algorithm: KeyAlgorithm,
        label: &str,
        id: &[u8],
        pins: &dyn PinSource,
    ) -> Result<GeneratedKeyPair, Pkcs11Error> {
        let token = self.find_token(token_uri)?;
        let (mechanism, mechanism_type, mechanism_name) = algorithm.mechanism();
        self.require_mechanism(&token, mechanism_type, mechanism_name)?;

        let mut public = vec![
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
        ];
        public.extend(algorithm.public_attributes());
        let mut private = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
        ];
        if algorithm.kind() == KeyKind::Rsa {
            private.push(Attribute::Decrypt(true));
        }

        let spki_der = self.with_session(&token, true, pins, |session| {
            let (public_key, _) = session
                .generate_key_pair(&mechanism, &public, &private)
                .map_err(|e| Pkcs11Error::from_cryptoki("generating a key pair", e))?;
            public_key_spki(session, public_key, algorithm.kind(), &token)
        })?;

        let object = |object_type| ObjectInfo {
            object_type,
            label: label.to_owned(),
            id: id.to_vec(),
            key_type: Some(algorithm.kind()),
        };
        let result = GeneratedKeyPair {
            private_key_uri: Pkcs11Uri::for_object(&token, &object(ObjectType::PrivateKey)),
            public_key_uri: Pkcs11Uri::for_object(&token, &object(ObjectType::PublicKey)),
            spki_der,
        };
        info!(
            token = %token.label,
            ?algorithm,
            uri = %result.private_key_uri,
            "generated key pair"
        );
        Ok(result)
    }

    /// Fails unless the token's slot lists `mechanism`.
    pub(crate) fn require_mechanism(
        &self,
        token: &TokenInfo,
        mechanism: MechanismType,
        name: &'static str,
    ) -> Result<(), Pkcs11Error> {
        let slot = Slot::try_from(token.slot_id)
            .map_err(|e| Pkcs11Error::from_cryptoki("converting the slot id", e))?;
        let mechanisms = self
            .context()
            .get_mechanism_list(slot)
            .map_err(|e| Pkcs11Error::from_cryptoki("listing mechanisms", e))?;
        if mechanisms.contains(&mechanism) {
            return Ok(());
        }
        Err(Pkcs11Error::MechanismNotSupported {
            token: token.label.clone(),
            mechanism: name,
        })
    }
}

/// Reads a public key's attributes and encodes them as SubjectPublicKeyInfo.
fn public_key_spki(
    session: &Session,
    key: ObjectHandle,
    kind: KeyKind,
    token: &TokenInfo,
) -> Result<Vec<u8>, Pkcs11Error> {
    let wanted: &[AttributeType] = match kind {
        KeyKind::Rsa => &[AttributeType::Modulus, AttributeType::PublicExponent],
        _ => &[AttributeType::EcParams, AttributeType::EcPoint],
    };
    let attributes = session
        .get_attributes(key, wanted)
        .map_err(|e| Pkcs11Error::from_cryptoki("reading public key attributes", e))?;
    let mut first = None;
    let mut second = None;
    for attribute in attributes {
        match attribute {
            Attribute::Modulus(v) | Attribute::EcParams(v) => first = Some(v),
            Attribute::PublicExponent(v) | Attribute::EcPoint(v) => second = Some(v),
            _ => {}
        }
    }
    let invalid = |attribute: &'static str, reason: String| Pkcs11Error::InvalidKeyAttribute {
        token: token.label.clone(),
        attribute,
        reason,
    };
    let (Some(first), Some(second)) = (first, second) else {
        return Err(invalid(
            "public key",
            "attribute missing from C_GetAttributeValue".into(),
        ));
    };

    let encoded = match kind {
        KeyKind::Rsa => encoding::rsa_spki(&first, &second),
        KeyKind::Ec => encoding::ec_spki(&first, &second),
        _ => encoding::ed25519_spki(&second),
    };
    encoded.map_err(|e| invalid("SubjectPublicKeyInfo", e.to_string()))
}
