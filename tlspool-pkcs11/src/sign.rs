//! Signing with a token key named by a `pkcs11:` URI, for the on-the-fly certificate signer.
//!
//! The message is hashed in software and only the hash goes to the token, through the
//! mechanisms every module has: `CKM_RSA_PKCS` over a DigestInfo, `CKM_RSA_PKCS_PSS`,
//! `CKM_ECDSA` and `CKM_EDDSA`. SoftHSM 2.6 has no `CKM_ECDSA_SHA256`, which is why ECDSA
//! hashes first here.

use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::types::Ulong;
use sha2::{Digest, Sha256, Sha384, Sha512};
use tracing::trace;

use crate::encoding;
use crate::error::Pkcs11Error;
use crate::module::{Module, find_matching};
use crate::pin::PinSource;
use crate::session;
use crate::uri::{ObjectType, Pkcs11Uri};

/// Hash functions for RSA and ECDSA signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

/// The output format of an ECDSA signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcdsaFormat {
    /// `r` and `s` concatenated, each as wide as the curve order, as PKCS #11 and TLS 1.3's
    /// raw form return them.
    Raw,
    /// The DER `Ecdsa-Sig-Value` that X.509 certificates and TLS carry.
    Der,
}

/// A signature scheme and its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureScheme {
    /// RSASSA-PKCS1-v1_5 (RFC 8017).
    RsaPkcs1v15(HashAlgorithm),
    /// RSASSA-PSS with MGF1 over the same hash and a salt as long as the hash.
    RsaPss(HashAlgorithm),
    /// ECDSA over the hash of the message.
    Ecdsa(HashAlgorithm, EcdsaFormat),
    /// Pure Ed25519 over the message itself.
    Ed25519,
}

impl HashAlgorithm {
    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha384 => Sha384::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// Returns the DER DigestInfo prefix for a hash of this algorithm (RFC 8017 section 9.2).
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            Self::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            Self::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            Self::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }

    fn pss_params(self) -> PkcsPssParams {
        let (hash_alg, mgf, salt_len) = match self {
            Self::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256, 32u64),
            Self::Sha384 => (MechanismType::SHA384, PkcsMgfType::MGF1_SHA384, 48),
            Self::Sha512 => (MechanismType::SHA512, PkcsMgfType::MGF1_SHA512, 64),
        };
        PkcsPssParams {
            hash_alg,
            mgf,
            s_len: Ulong::from(salt_len),
        }
    }
}

impl Module {
    /// Signs `data` with the private key that `key_uri` names, logging in through `pins`.
    ///
    /// The URI must match exactly one private key; its `type` attribute, if present, must be
    /// `private`.
    ///
    /// # Errors
    ///
    /// [`Pkcs11Error::TokenNotFound`], [`Pkcs11Error::ObjectNotFound`],
    /// [`Pkcs11Error::AmbiguousObject`], the login errors of [`Module::login`], and
    /// [`Pkcs11Error::Call`] when `C_SignInit` or `C_Sign` fail, for example with
    /// `CKR_KEY_TYPE_INCONSISTENT` when the scheme does not fit the key.
    pub fn sign(
        &self,
        key_uri: &Pkcs11Uri,
        scheme: SignatureScheme,
        data: &[u8],
        pins: &dyn PinSource,
    ) -> Result<Vec<u8>, Pkcs11Error> {
        let token = self.find_token(key_uri)?;
        let mut private_uri = key_uri.token_and_object();
        if private_uri
            .object_type
            .is_some_and(|t| t != ObjectType::PrivateKey)
        {
            return Err(Pkcs11Error::ObjectNotFound {
                token: token.label,
                uri: key_uri.to_string(),
            });
        }
        private_uri.object_type = Some(ObjectType::PrivateKey);

        let (mechanism_input, ecdsa_format) = prepare_input(scheme, data);
        let signature = self.with_session(&token, true, pins, |session| {
            let mut keys = find_matching(session, &private_uri)?;
            let key = match keys.len() {
                1 => keys.remove(0).0,
                0 => {
                    // Private keys vanish from searches when the login was lost.
                    session::check_logged_in(session)?;
                    return Err(Pkcs11Error::ObjectNotFound {
                        token: token.label.clone(),
                        uri: key_uri.to_string(),
                    });
                }
                count => {
                    return Err(Pkcs11Error::AmbiguousObject {
                        token: token.label.clone(),
                        uri: key_uri.to_string(),
                        count,
                    });
                }
            };
            let pss;
            let mechanism = match scheme {
                SignatureScheme::RsaPkcs1v15(_) => Mechanism::RsaPkcs,
                SignatureScheme::RsaPss(hash) => {
                    pss = hash.pss_params();
                    Mechanism::RsaPkcsPss(pss)
                }
                SignatureScheme::Ecdsa(..) => Mechanism::Ecdsa,
                SignatureScheme::Ed25519 => {
                    Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure))
                }
            };
            session
                .sign(&mechanism, key, &mechanism_input)
                .map_err(|e| Pkcs11Error::from_cryptoki("signing", e))
        })?;
        trace!(token = %token.label, ?scheme, len = signature.len(), "token signature made");

        match ecdsa_format {
            Some(EcdsaFormat::Der) => encoding::ecdsa_signature_der(&signature).ok_or_else(|| {
                Pkcs11Error::InvalidKeyAttribute {
                    token: token.label.clone(),
                    attribute: "ECDSA signature",
                    reason: format!("C_Sign returned {} bytes, not r and s", signature.len()),
                }
            }),
            _ => Ok(signature),
        }
    }
}

/// Returns what the token signs for `scheme` and, for ECDSA, the output format.
fn prepare_input(scheme: SignatureScheme, data: &[u8]) -> (Vec<u8>, Option<EcdsaFormat>) {
    match scheme {
        SignatureScheme::RsaPkcs1v15(hash) => {
            let mut input = hash.digest_info_prefix().to_vec();
            input.extend(hash.digest(data));
            (input, None)
        }
        SignatureScheme::RsaPss(hash) => (hash.digest(data), None),
        SignatureScheme::Ecdsa(hash, format) => (hash.digest(data), Some(format)),
        SignatureScheme::Ed25519 => (data.to_vec(), None),
    }
}
