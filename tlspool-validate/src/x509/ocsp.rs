//! Stapled OCSP responses (RFC 6960, sent by the peer under RFC 6066 `status_request`) for the
//! `R` and `r` predicates: the status of the end certificate as its issuer signed it.
//!
//! A response counts only when all of these hold:
//!
//! - it is successful and of type id-pkix-ocsp-basic;
//! - its signature verifies with the key of the issuer or of a delegated responder, which is
//!   a certificate in the response that the issuer signed, valid at the validation time, with
//!   the id-kp-OCSPSigning extended key usage;
//! - one of its single responses names the end certificate (CertID hashed with SHA-1,
//!   SHA-256, SHA-384 or SHA-512);
//! - that single response is current: `thisUpdate` is not after the validation time plus
//!   [`CLOCK_SKEW`], and the validation time is before `nextUpdate`, or within
//!   [`MAX_AGE_WITHOUT_NEXT_UPDATE`] of `thisUpdate` when there is none.

use std::time::{Duration, SystemTime};

use der::asn1::{Any, BitString, GeneralizedTime, ObjectIdentifier, OctetString};
use der::{Decode, Encode, Enumerated, Sequence, SliceReader, Tag, TagNumber, Tagged};
use ring::digest;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoRef};

use super::signature::{SignatureFailure, verify_signed_data};
use super::{Certificate, ValidateError};

/// How far `thisUpdate` may lie after the validation time, for clocks that differ.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);
/// How long a response without `nextUpdate` stays current after its `thisUpdate`.
pub const MAX_AGE_WITHOUT_NEXT_UPDATE: Duration = Duration::from_secs(7 * 24 * 60 * 60);

const ID_PKIX_OCSP_BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
const ID_KP_OCSP_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.9");
const SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");

/// The status of the end certificate in a valid, current stapled response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OcspStatus {
    /// The issuer vouches that the certificate is not revoked.
    Good,
    /// The issuer revoked the certificate at this time.
    Revoked(SystemTime),
    /// The responder does not know the certificate.
    Unknown,
}

/// OCSPResponseStatus of RFC 6960 section 4.2.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enumerated)]
#[repr(u32)]
enum ResponseStatus {
    Successful = 0,
    MalformedRequest = 1,
    InternalError = 2,
    TryLater = 3,
    SigRequired = 5,
    Unauthorized = 6,
}

#[derive(Sequence)]
struct OcspResponse {
    status: ResponseStatus,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    bytes: Option<ResponseBytes>,
}

#[derive(Sequence)]
struct ResponseBytes {
    response_type: ObjectIdentifier,
    response: OctetString,
}

#[derive(Sequence)]
struct BasicOcspResponse {
    /// The whole ResponseData, whose DER encoding is what the signature covers.
    tbs_response_data: Any,
    signature_algorithm: AlgorithmIdentifierOwned,
    signature: BitString,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    certs: Option<Vec<Any>>,
}

#[derive(Sequence)]
struct ResponseData {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    version: Option<u8>,
    responder_id: Any,
    produced_at: GeneralizedTime,
    responses: Vec<SingleResponse>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    extensions: Option<Any>,
}

#[derive(Sequence)]
struct SingleResponse {
    cert_id: CertId,
    cert_status: Any,
    this_update: GeneralizedTime,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    next_update: Option<GeneralizedTime>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    extensions: Option<Any>,
}

#[derive(Sequence)]
struct CertId {
    hash_algorithm: AlgorithmIdentifierOwned,
    issuer_name_hash: OctetString,
    issuer_key_hash: OctetString,
    serial_number: SerialNumber,
}

/// Checks the stapled OCSP response `response` (DER OCSPResponse) for `cert`, issued by
/// `issuer`, at time `at`, and returns the status it gives.
///
/// # Errors
///
/// [`ValidateError::InvalidOcspResponse`] naming `cert` with the reason: undecodable, not
/// successful, not basic, a signature that does not verify, an unauthorised signer, no
/// single response for `cert`, or not current at `at`.
pub fn check_stapled(
    response: &[u8],
    cert: &Certificate,
    issuer: &Certificate,
    at: SystemTime,
) -> Result<OcspStatus, ValidateError> {
    let invalid = |reason: String| ValidateError::InvalidOcspResponse {
        subject: cert.subject().to_owned(),
        reason,
    };
    let outer = OcspResponse::from_der(response)
        .map_err(|e| invalid(format!("the response does not decode: {e}")))?;
    if outer.status != ResponseStatus::Successful {
        return Err(invalid(format!(
            "the responder returned status {:?}",
            outer.status
        )));
    }
    let bytes = outer
        .bytes
        .ok_or_else(|| invalid("the successful response has no body".to_owned()))?;
    if bytes.response_type != ID_PKIX_OCSP_BASIC {
        return Err(invalid(format!(
            "response type {} is not id-pkix-ocsp-basic",
            bytes.response_type
        )));
    }
    let basic = BasicOcspResponse::from_der(bytes.response.as_bytes())
        .map_err(|e| invalid(format!("the basic response does not decode: {e}")))?;
    let tbs = basic
        .tbs_response_data
        .to_der()
        .map_err(|e| invalid(format!("the response data does not encode: {e}")))?;
    let data = ResponseData::from_der(&tbs)
        .map_err(|e| invalid(format!("the response data does not decode: {e}")))?;

    verify_responder(&basic, &tbs, issuer, at).map_err(invalid)?;

    let single = data
        .responses
        .iter()
        .find(|single| names_certificate(&single.cert_id, cert, issuer))
        .ok_or_else(|| invalid("no single response names the certificate".to_owned()))?;
    let this_update = single.this_update.to_system_time();
    if this_update > at + CLOCK_SKEW {
        return Err(invalid(
            "its thisUpdate lies after the validation time".to_owned(),
        ));
    }
    let expiry = match &single.next_update {
        Some(next) => next.to_system_time(),
        None => this_update + MAX_AGE_WITHOUT_NEXT_UPDATE,
    };
    if at >= expiry {
        return Err(invalid("it is outdated at the validation time".to_owned()));
    }
    status_of(&single.cert_status).map_err(invalid)
}

/// Verifies the signature of `basic` over `tbs` with the issuer's key, or with the key of a
/// delegated responder certificate in the response.
fn verify_responder(
    basic: &BasicOcspResponse,
    tbs: &[u8],
    issuer: &Certificate,
    at: SystemTime,
) -> Result<(), String> {
    let algorithm = basic
        .signature_algorithm
        .to_der()
        .map_err(|e| format!("the signature algorithm does not encode: {e}"))?;
    let signature = basic
        .signature
        .as_bytes()
        .ok_or_else(|| "the signature has unused bits".to_owned())?;
    let verify = |spki: &[u8]| verify_signed_data(&algorithm, tbs, signature, spki);
    match verify(issuer.spki_der()) {
        Ok(()) => return Ok(()),
        Err(SignatureFailure::Unsupported(algorithm)) => {
            return Err(format!("signature algorithm {algorithm} is not supported"));
        }
        Err(SignatureFailure::Mismatch) => {}
    }
    for any in basic.certs.iter().flatten() {
        let Ok(der) = any.to_der() else { continue };
        let Ok(responder) = Certificate::from_der(&der) else {
            continue;
        };
        if verify(responder.spki_der()).is_err() {
            continue;
        }
        let delegated = responder
            .extensions()
            .extended_key_usage
            .as_ref()
            .is_some_and(|usages| usages.contains(&ID_KP_OCSP_SIGNING));
        let current = responder.not_before() <= at && at <= responder.not_after();
        let issued = responder.issuer_der() == issuer.subject_der()
            && super::signature::verify_signature(&responder, issuer.spki_der(), issuer.subject())
                .is_ok();
        if delegated && current && issued {
            return Ok(());
        }
        return Err(format!(
            "the signer {:?} is not a current OCSP responder delegated by {:?}",
            responder.subject(),
            issuer.subject()
        ));
    }
    Err(format!(
        "the signature verifies neither with the key of {:?} nor with a delegated responder",
        issuer.subject()
    ))
}

/// Tells whether `id` names `cert` as issued by `issuer`.
fn names_certificate(id: &CertId, cert: &Certificate, issuer: &Certificate) -> bool {
    let algorithm: &'static digest::Algorithm = match id.hash_algorithm.oid {
        SHA1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        SHA256 => &digest::SHA256,
        SHA384 => &digest::SHA384,
        SHA512 => &digest::SHA512,
        _ => return false,
    };
    let Ok(spki) = SubjectPublicKeyInfoRef::from_der(issuer.spki_der()) else {
        return false;
    };
    let name_hash = digest::digest(algorithm, issuer.subject_der());
    let key_hash = digest::digest(algorithm, spki.subject_public_key.raw_bytes());
    id.serial_number.as_bytes() == cert.serial()
        && id.issuer_name_hash.as_bytes() == name_hash.as_ref()
        && id.issuer_key_hash.as_bytes() == key_hash.as_ref()
}

/// Decodes CertStatus: `good [0] IMPLICIT NULL`, `revoked [1] IMPLICIT RevokedInfo` or
/// `unknown [2] IMPLICIT NULL`.
fn status_of(status: &Any) -> Result<OcspStatus, String> {
    match status.tag() {
        Tag::ContextSpecific {
            number,
            constructed: false,
        } if number == TagNumber::N0 => Ok(OcspStatus::Good),
        Tag::ContextSpecific {
            number,
            constructed: true,
        } if number == TagNumber::N1 => {
            // RevokedInfo starts with revocationTime, a GeneralizedTime.
            let time = SliceReader::new(status.value())
                .and_then(|mut reader| GeneralizedTime::decode(&mut reader))
                .map_err(|e| format!("the revocation time does not decode: {e}"))?;
            Ok(OcspStatus::Revoked(time.to_system_time()))
        }
        Tag::ContextSpecific {
            number,
            constructed: false,
        } if number == TagNumber::N2 => Ok(OcspStatus::Unknown),
        other => Err(format!("certificate status has unexpected tag {other}")),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::process::Command;

    use super::*;

    /// A CA, an end certificate with serial 1234 that it issued, and `openssl ocsp` to sign
    /// responses about it.
    struct Pki {
        dir: tempfile::TempDir,
    }

    impl Pki {
        fn new() -> Self {
            let pki = Self {
                dir: tempfile::tempdir().expect("temporary directory"),
            };
            pki.make_ca("ca", "OCSP Test CA");
            pki.make_ca("other", "Other CA");
            pki.openssl(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "leaf.key",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=www.example.com",
            ]);
            std::fs::write(
                pki.path("leaf.cnf"),
                "subjectAltName=DNS:www.example.com\nextendedKeyUsage=serverAuth\n",
            )
            .expect("write the extension file");
            pki.openssl(&[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                "0x1234",
                "-days",
                "2",
                "-extfile",
                "leaf.cnf",
                "-out",
                "leaf.pem",
            ]);
            pki
        }

        fn make_ca(&self, stem: &str, name: &str) {
            let key = format!("{stem}.key");
            let pem = format!("{stem}.pem");
            let subject = format!("/CN={name}");
            self.openssl(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &pem,
                "-subj",
                &subject,
                "-days",
                "2",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]);
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn openssl(&self, args: &[&str]) {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(self.dir.path())
                .output()
                .expect("run openssl");
            assert!(
                output.status.success(),
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }

        fn certificate(&self, stem: &str) -> Certificate {
            let pem = std::fs::read(self.path(&format!("{stem}.pem"))).expect("read PEM");
            Certificate::parse_chain(&pem)
                .expect("openssl output decodes")
                .remove(0)
        }

        /// Returns a response about the end certificate with index line `status` (`V` or
        /// `R`), signed by `signer` with `days` of validity.
        fn response(&self, status: &str, signer: &str, days: &str) -> Vec<u8> {
            let revoked = if status == "R" { "250101000000Z" } else { "" };
            let index =
                format!("{status}\t301231235959Z\t{revoked}\t1234\tunknown\t/CN=www.example.com\n");
            std::fs::write(self.path("index.txt"), index).expect("write the index");
            let signer_pem = format!("{signer}.pem");
            let signer_key = format!("{signer}.key");
            self.openssl(&[
                "ocsp",
                "-index",
                "index.txt",
                "-rsigner",
                &signer_pem,
                "-rkey",
                &signer_key,
                "-CA",
                "ca.pem",
                "-issuer",
                "ca.pem",
                "-cert",
                "leaf.pem",
                "-respout",
                "response.der",
                "-ndays",
                days,
            ]);
            std::fs::read(self.path("response.der")).expect("read the response")
        }
    }

    fn check(pki: &Pki, response: &[u8], at: SystemTime) -> Result<OcspStatus, ValidateError> {
        check_stapled(
            response,
            &pki.certificate("leaf"),
            &pki.certificate("ca"),
            at,
        )
    }

    fn assert_invalid(result: Result<OcspStatus, ValidateError>, fragment: &str) {
        match result {
            Err(ValidateError::InvalidOcspResponse { reason, .. }) => {
                assert!(reason.contains(fragment), "{reason:?} lacks {fragment:?}");
            }
            other => panic!("expected an invalid response, got {other:?}"),
        }
    }

    #[test]
    fn good_response_from_issuer_is_good() {
        let pki = Pki::new();
        let response = pki.response("V", "ca", "1");
        assert_eq!(
            check(&pki, &response, SystemTime::now()),
            Ok(OcspStatus::Good)
        );
    }

    #[test]
    fn revoked_response_is_revoked() {
        let pki = Pki::new();
        let response = pki.response("R", "ca", "1");
        let status = check(&pki, &response, SystemTime::now()).expect("a valid response");
        assert!(matches!(status, OcspStatus::Revoked(_)), "{status:?}");
    }

    #[test]
    fn delegated_responder_response_is_good() {
        let pki = Pki::new();
        pki.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "responder.key",
            "-out",
            "responder.csr",
            "-subj",
            "/CN=Responder",
        ]);
        std::fs::write(pki.path("responder.cnf"), "extendedKeyUsage=OCSPSigning\n")
            .expect("write the extension file");
        pki.openssl(&[
            "x509",
            "-req",
            "-in",
            "responder.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "0x77",
            "-days",
            "2",
            "-extfile",
            "responder.cnf",
            "-out",
            "responder.pem",
        ]);
        let response = pki.response("V", "responder", "1");
        assert_eq!(
            check(&pki, &response, SystemTime::now()),
            Ok(OcspStatus::Good)
        );
    }

    #[test]
    fn response_of_other_signer_is_invalid() {
        let pki = Pki::new();
        let response = pki.response("V", "other", "1");
        assert_invalid(
            check(&pki, &response, SystemTime::now()),
            "is not a current OCSP responder delegated by",
        );
    }

    #[test]
    fn outdated_response_is_invalid() {
        let pki = Pki::new();
        let response = pki.response("V", "ca", "1");
        let later = SystemTime::now() + Duration::from_secs(2 * 24 * 60 * 60);
        assert_invalid(check(&pki, &response, later), "outdated");
        let earlier = SystemTime::now() - Duration::from_secs(60 * 60);
        assert_invalid(check(&pki, &response, earlier), "thisUpdate");
    }

    #[test]
    fn response_for_other_certificate_is_invalid() {
        let pki = Pki::new();
        let response = pki.response("V", "ca", "1");
        let other = pki.certificate("other");
        let result = check_stapled(&response, &other, &pki.certificate("ca"), SystemTime::now());
        assert_invalid(result, "no single response names the certificate");
    }

    #[test]
    fn garbage_response_is_invalid() {
        let pki = Pki::new();
        assert_invalid(
            check(&pki, b"\x30\x03\x0a\x01\x01", SystemTime::now()),
            "MalformedRequest",
        );
        assert_invalid(
            check(&pki, b"not DER", SystemTime::now()),
            "does not decode",
        );
    }
}
