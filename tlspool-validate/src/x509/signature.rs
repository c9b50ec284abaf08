//! Verification of the signature on one link of a path: a certificate signed by the key of
//! its issuer (RFC 5280 section 6.1.3 (a)(1)), with `ring`.
//!
//! Supported: RSA PKCS#1 v1.5 with SHA-256, SHA-384 and SHA-512 (RFC 4055), RSASSA-PSS with
//! SHA-256, SHA-384 and SHA-512 where MGF1 uses the same hash and the salt is as long as the
//! hash (RFC 4055 section 3.1), ECDSA P-256 and P-384 with SHA-256 and SHA-384 (RFC 5758) and
//! Ed25519 (RFC 8410). RSA keys must have 2048 to 8192 bits. SHA-1 signatures are rejected.

use der::asn1::ObjectIdentifier;
use der::{Decode, Sequence};
use ring::signature::{self, VerificationAlgorithm};
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoRef};

use super::{Certificate, ValidateError};

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");
const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// RSASSA-PSS-params of RFC 4055 section 3.1. The defaults (SHA-1) are not supported, so
/// absent fields reject the algorithm rather than take their default.
#[derive(Sequence)]
struct PssParams {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    hash: Option<AlgorithmIdentifierOwned>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    mask_gen: Option<AlgorithmIdentifierOwned>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", optional = "true")]
    salt_length: Option<u32>,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
    trailer_field: Option<u32>,
}

/// Verifies the signature of `cert` with the public key in `issuer_spki` (the DER
/// SubjectPublicKeyInfo of the issuer).
///
/// # Errors
///
/// [`ValidateError::UnsupportedAlgorithm`] for an algorithm outside the supported list or a
/// key type that does not fit it, [`ValidateError::BadSignature`] (naming `issuer`) when the
/// signature does not verify.
pub(crate) fn verify_signature(
    cert: &Certificate,
    issuer_spki: &[u8],
    issuer: &str,
) -> Result<(), ValidateError> {
    verify_signed_data(
        cert.signature_algorithm_der(),
        cert.tbs_der(),
        cert.signature(),
        issuer_spki,
    )
    .map_err(|failure| match failure {
        SignatureFailure::Unsupported(algorithm) => ValidateError::UnsupportedAlgorithm {
            subject: cert.subject().to_owned(),
            algorithm,
        },
        SignatureFailure::Mismatch => ValidateError::BadSignature {
            subject: cert.subject().to_owned(),
            issuer: issuer.to_owned(),
        },
    })
}

/// The failure of a signature over some DER data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SignatureFailure {
    /// The algorithm, or its pairing with the signer's key type, is not supported.
    Unsupported(String),
    /// The signature does not verify with the signer's key.
    Mismatch,
}

/// Verifies `signature` over `signed` with the DER AlgorithmIdentifier `algorithm_der` and the
/// public key in `signer_spki` (a DER SubjectPublicKeyInfo).
///
/// # Errors
///
/// [`SignatureFailure::Unsupported`] with the algorithm's description, or
/// [`SignatureFailure::Mismatch`].
pub(crate) fn verify_signed_data(
    algorithm_der: &[u8],
    signed: &[u8],
    signature: &[u8],
    signer_spki: &[u8],
) -> Result<(), SignatureFailure> {
    let algorithm = AlgorithmIdentifierOwned::from_der(algorithm_der)
        .map_err(|e| SignatureFailure::Unsupported(format!("(undecodable: {e})")))?;
    let spki = SubjectPublicKeyInfoRef::from_der(signer_spki)
        .map_err(|e| SignatureFailure::Unsupported(format!("(undecodable issuer key: {e})")))?;
    let key_algorithm = spki.algorithm.oid;
    let curve = spki
        .algorithm
        .parameters
        .and_then(|any| any.decode_as::<ObjectIdentifier>().ok());

    let verifier = choose_verifier(&algorithm, key_algorithm, curve).ok_or_else(|| {
        let curve = curve.map(|c| format!(" on curve {c}")).unwrap_or_default();
        SignatureFailure::Unsupported(format!(
            "{} with an issuer key of type {key_algorithm}{curve}",
            algorithm.oid
        ))
    })?;
    let key = signature::UnparsedPublicKey::new(verifier, spki.subject_public_key.raw_bytes());
    key.verify(signed, signature)
        .map_err(|_| SignatureFailure::Mismatch)
}

/// Picks the `ring` algorithm for a signature algorithm and an issuer key type, or `None`
/// when the pair is not supported.
fn choose_verifier(
    algorithm: &AlgorithmIdentifierOwned,
    key_algorithm: ObjectIdentifier,
    curve: Option<ObjectIdentifier>,
) -> Option<&'static dyn VerificationAlgorithm> {
    let is_rsa_key = key_algorithm == RSA_ENCRYPTION || key_algorithm == RSASSA_PSS;
    let ec_curve = (key_algorithm == EC_PUBLIC_KEY).then_some(curve).flatten();
    let verifier: &'static dyn VerificationAlgorithm = match algorithm.oid {
        SHA256_WITH_RSA if is_rsa_key => &signature::RSA_PKCS1_2048_8192_SHA256,
        SHA384_WITH_RSA if is_rsa_key => &signature::RSA_PKCS1_2048_8192_SHA384,
        SHA512_WITH_RSA if is_rsa_key => &signature::RSA_PKCS1_2048_8192_SHA512,
        RSASSA_PSS if is_rsa_key => match pss_hash(algorithm)? {
            SHA256 => &signature::RSA_PSS_2048_8192_SHA256,
            SHA384 => &signature::RSA_PSS_2048_8192_SHA384,
            _ => &signature::RSA_PSS_2048_8192_SHA512,
        },
        ECDSA_SHA256 => match ec_curve? {
            P256 => &signature::ECDSA_P256_SHA256_ASN1,
            P384 => &signature::ECDSA_P384_SHA256_ASN1,
            _ => return None,
        },
        ECDSA_SHA384 => match ec_curve? {
            P256 => &signature::ECDSA_P256_SHA384_ASN1,
            P384 => &signature::ECDSA_P384_SHA384_ASN1,
            _ => return None,
        },
        ED25519 if key_algorithm == ED25519 => &signature::ED25519,
        _ => return None,
    };
    Some(verifier)
}

/// Returns the hash of RSASSA-PSS parameters that `ring` verifies: SHA-256, SHA-384 or
/// SHA-512, MGF1 with the same hash, a salt as long as the hash and trailer field 1.
fn pss_hash(algorithm: &AlgorithmIdentifierOwned) -> Option<ObjectIdentifier> {
    let params: PssParams = algorithm.parameters.as_ref()?.decode_as().ok()?;
    let hash = params.hash?.oid;
    let salt_length = match hash {
        SHA256 => 32,
        SHA384 => 48,
        SHA512 => 64,
        _ => return None,
    };
    let mask_gen = params.mask_gen?;
    let mask_hash: AlgorithmIdentifierOwned = mask_gen.parameters?.decode_as().ok()?;
    let matches = mask_gen.oid == MGF1
        && mask_hash.oid == hash
        && params.salt_length == Some(salt_length)
        && params.trailer_field.unwrap_or(1) == 1;
    matches.then_some(hash)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use super::*;
    use crate::x509::testing::{ca_params, day, issue_with, self_signed_with, server_params};

    fn verifies(leaf: &Certificate, issuer: &Certificate) -> Result<(), ValidateError> {
        verify_signature(leaf, issuer.spki_der(), issuer.subject())
    }

    #[test]
    fn ecdsa_and_ed25519_links_verify() {
        for algorithm in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
        ] {
            let root_key = rcgen::KeyPair::generate_for(algorithm).unwrap();
            let root = self_signed_with(ca_params("Root"), root_key);
            let leaf_key = rcgen::KeyPair::generate_for(algorithm).unwrap();
            let leaf = issue_with(server_params("www", &["www.example.com"]), leaf_key, &root);
            assert_eq!(
                verifies(&leaf.parsed(), &root.parsed()),
                Ok(()),
                "{algorithm:?}"
            );

            let other = self_signed_with(
                ca_params("Root"),
                rcgen::KeyPair::generate_for(algorithm).unwrap(),
            );
            assert!(
                matches!(
                    verifies(&leaf.parsed(), &other.parsed()),
                    Err(ValidateError::BadSignature { .. })
                ),
                "{algorithm:?} with the wrong key"
            );
        }
    }

    #[test]
    fn key_type_must_fit_algorithm() {
        let p256 = self_signed_with(
            ca_params("P-256"),
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        );
        let ed25519 = self_signed_with(
            ca_params("Ed25519"),
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap(),
        );
        let err = verifies(&p256.parsed(), &ed25519.parsed()).unwrap_err();
        assert!(
            matches!(&err, ValidateError::UnsupportedAlgorithm { algorithm, .. }
                if algorithm == "1.2.840.10045.4.3.2 with an issuer key of type 1.3.101.112"),
            "{err}"
        );
    }

    /// Runs certtool in `dir`; the tests need the gnutls-bin package.
    fn certtool(dir: &Path, args: &[&str]) {
        let status = Command::new("certtool")
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("certtool runs (install gnutls-bin)");
        assert!(status.success(), "certtool {args:?}");
    }

    #[test]
    fn rsa_pkcs1_and_pss_links_verify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        std::fs::write(path.join("ca.tmpl"), "cn = Root\nca\ncert_signing_key\n").unwrap();
        std::fs::write(
            path.join("leaf.tmpl"),
            "cn = www\ntls_www_server\nsigning_key\n",
        )
        .unwrap();
        certtool(
            path,
            &[
                "--generate-privkey",
                "--key-type",
                "rsa",
                "--bits",
                "2048",
                "--outfile",
                "ca.key",
            ],
        );
        certtool(
            path,
            &[
                "--generate-self-signed",
                "--load-privkey",
                "ca.key",
                "--template",
                "ca.tmpl",
                "--outfile",
                "ca.pem",
            ],
        );
        certtool(
            path,
            &[
                "--generate-privkey",
                "--key-type",
                "rsa",
                "--bits",
                "2048",
                "--outfile",
                "leaf.key",
            ],
        );
        for (name, extra) in [("pkcs1.pem", None), ("pss.pem", Some("rsa-pss"))] {
            let mut args = vec![
                "--generate-certificate",
                "--load-privkey",
                "leaf.key",
                "--load-ca-certificate",
                "ca.pem",
                "--load-ca-privkey",
                "ca.key",
                "--template",
                "leaf.tmpl",
                "--outfile",
                name,
            ];
            if let Some(params) = extra {
                args.extend(["--sign-params", params]);
            }
            certtool(path, &args);
        }

        let root = Certificate::parse_chain(&std::fs::read(path.join("ca.pem")).unwrap()).unwrap();
        assert_eq!(
            verifies(&root[0], &root[0]),
            Ok(()),
            "self-signed RSA PKCS#1 v1.5"
        );
        for name in ["pkcs1.pem", "pss.pem"] {
            let leaf = Certificate::parse_chain(&std::fs::read(path.join(name)).unwrap()).unwrap();
            assert_eq!(verifies(&leaf[0], &root[0]), Ok(()), "{name}");
            assert!(leaf[0].not_before() < day(2100, 1, 1));
        }
    }
}
