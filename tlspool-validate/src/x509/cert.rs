//! Decoding of X.509 certificates (RFC 5280 section 4) into the facts path validation uses:
//! names, validity, key identifiers and the extensions of RFC 5280 section 4.2.1.
//!
//! Extensions are decoded once, when the certificate is parsed, so a malformed extension
//! fails the certificate as a whole. Names are compared by their DER bytes, as most X.509
//! validators do, not by the full comparison rules of RFC 5280 section 7.1.

use std::time::SystemTime;

use der::asn1::{Ia5StringRef, PrintableStringRef, TeletexStringRef, Utf8StringRef};
use der::oid::ObjectIdentifier;
use der::oid::db::rfc3280::EMAIL_ADDRESS;
use der::oid::db::rfc4519::CN;
use der::oid::db::rfc5280 as oids;
use der::{Decode, Encode, Reader, SliceReader};
use ring::digest;
use x509_cert::ext::pkix::constraints::name::GeneralSubtrees;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    NameConstraints, SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::name::Name;

use super::ValidateError;

/// The extensions whose meaning this validator enforces, or which are safe to ignore when
/// critical because they only restrict policies that the TLS Pool does not use.
const PROCESSED_EXTENSIONS: [ObjectIdentifier; 7] = [
    oids::ID_CE_BASIC_CONSTRAINTS,
    oids::ID_CE_KEY_USAGE,
    oids::ID_CE_EXT_KEY_USAGE,
    oids::ID_CE_SUBJECT_ALT_NAME,
    oids::ID_CE_NAME_CONSTRAINTS,
    oids::ID_CE_AUTHORITY_KEY_IDENTIFIER,
    oids::ID_CE_SUBJECT_KEY_IDENTIFIER,
];

/// A decoded X.509 certificate with the facts path validation needs.
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    tbs_range: std::ops::Range<usize>,
    subject: String,
    subject_der: Vec<u8>,
    issuer_der: Vec<u8>,
    issuer: String,
    serial: Vec<u8>,
    not_before: SystemTime,
    not_after: SystemTime,
    spki_der: Vec<u8>,
    signature_algorithm_der: Vec<u8>,
    signature: Vec<u8>,
    common_names: Vec<String>,
    email_addresses: Vec<String>,
    extensions: Extensions,
}

/// The decoded extensions of one certificate; `None` where the extension is absent.
#[derive(Clone, Default)]
pub(crate) struct Extensions {
    pub(crate) basic_constraints: Option<BasicConstraints>,
    pub(crate) key_usage: Option<KeyUsage>,
    pub(crate) extended_key_usage: Option<Vec<ObjectIdentifier>>,
    pub(crate) subject_alt_name: Option<Vec<GeneralName>>,
    pub(crate) permitted_subtrees: Option<GeneralSubtrees>,
    pub(crate) excluded_subtrees: Option<GeneralSubtrees>,
    pub(crate) authority_key_id: Option<Vec<u8>>,
    pub(crate) subject_key_id: Option<Vec<u8>>,
    pub(crate) unknown_critical: Vec<ObjectIdentifier>,
}

impl Certificate {
    /// Decodes one DER certificate.
    ///
    /// # Errors
    ///
    /// [`ValidateError::Malformed`] (with index 0) when the DER does not decode as a
    /// certificate, and [`ValidateError::InvalidExtension`] when one of the extensions this
    /// validator processes does not decode.
    pub fn from_der(der: &[u8]) -> Result<Self, ValidateError> {
        let malformed = |reason: String| ValidateError::Malformed { index: 0, reason };
        let cert = x509_cert::Certificate::from_der(der).map_err(|e| malformed(e.to_string()))?;
        let tbs_range = tbs_range(der).map_err(|e| malformed(e.to_string()))?;
        let tbs = &cert.tbs_certificate;

        let subject = tbs.subject.to_string();
        let extensions = decode_extensions(tbs.extensions.as_deref().unwrap_or(&[]), &subject)?;
        Ok(Self {
            der: der.to_vec(),
            tbs_range,
            subject_der: encode(&tbs.subject)?,
            issuer_der: encode(&tbs.issuer)?,
            issuer: tbs.issuer.to_string(),
            serial: tbs.serial_number.as_bytes().to_vec(),
            not_before: tbs.validity.not_before.to_system_time(),
            not_after: tbs.validity.not_after.to_system_time(),
            spki_der: encode(&tbs.subject_public_key_info)?,
            signature_algorithm_der: encode(&cert.signature_algorithm)?,
            signature: cert.signature.raw_bytes().to_vec(),
            common_names: attribute_texts(&tbs.subject, CN),
            email_addresses: attribute_texts(&tbs.subject, EMAIL_ADDRESS),
            subject,
            extensions,
        })
    }

    /// Decodes a chain given as PEM `CERTIFICATE` blocks (other blocks are skipped) or as one
    /// or more concatenated DER certificates, in the order given.
    ///
    /// # Errors
    ///
    /// [`ValidateError::EmptyChain`] when the input contains no certificate, otherwise as for
    /// [`from_der`](Self::from_der) with the index of the failing certificate.
    pub fn parse_chain(input: &[u8]) -> Result<Vec<Self>, ValidateError> {
        let ders = split_pem_or_der(input)?;
        if ders.is_empty() {
            return Err(ValidateError::EmptyChain);
        }
        ders.iter()
            .enumerate()
            .map(|(index, der)| {
                Self::from_der(der).map_err(|err| match err {
                    ValidateError::Malformed { reason, .. } => {
                        ValidateError::Malformed { index, reason }
                    }
                    other => other,
                })
            })
            .collect()
    }

    /// Returns the DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Returns the subject as an RFC 4514 string.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Returns the issuer as an RFC 4514 string.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Returns the content octets of the serial number.
    pub fn serial(&self) -> &[u8] {
        &self.serial
    }

    /// Returns the notBefore time.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// Returns the notAfter time.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Returns the SubjectKeyIdentifier, or the SHA-1 of the subjectPublicKey bits (method 1
    /// of RFC 5280 section 4.2.1.2) when the extension is absent. This is the key of the
    /// certificate's entries in the trust database.
    pub fn key_id(&self) -> Vec<u8> {
        match &self.extensions.subject_key_id {
            Some(id) => id.clone(),
            None => {
                let bits = self.public_key_bits().unwrap_or_default();
                digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &bits)
                    .as_ref()
                    .to_vec()
            }
        }
    }

    /// Returns the keyIdentifier of the AuthorityKeyIdentifier extension, if present.
    pub fn authority_key_id(&self) -> Option<&[u8]> {
        self.extensions.authority_key_id.as_deref()
    }

    /// Returns the SHA-256 of the DER encoding: the key of a pinned entry.
    pub fn sha256(&self) -> [u8; 32] {
        let mut out = [0; 32];
        out.copy_from_slice(digest::digest(&digest::SHA256, &self.der).as_ref());
        out
    }

    /// Tells whether the subject and issuer names are equal (RFC 5280 "self-issued").
    pub fn is_self_issued(&self) -> bool {
        self.subject_der == self.issuer_der
    }

    /// Returns the dNSName entries of the subjectAltName extension.
    pub fn dns_names(&self) -> Vec<&str> {
        self.alt_names()
            .filter_map(|name| match name {
                GeneralName::DnsName(dns) => Some(dns.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Returns the rfc822Name entries of the subjectAltName extension.
    pub fn email_names(&self) -> Vec<&str> {
        self.alt_names()
            .filter_map(|name| match name {
                GeneralName::Rfc822Name(mail) => Some(mail.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Tells whether the certificate has a subjectAltName extension.
    pub fn has_subject_alt_name(&self) -> bool {
        self.extensions.subject_alt_name.is_some()
    }

    /// Returns the commonName attributes of the subject, in order.
    pub fn common_names(&self) -> &[String] {
        &self.common_names
    }

    /// Returns the emailAddress attributes of the subject (PKCS #9), in order.
    pub fn email_addresses(&self) -> &[String] {
        &self.email_addresses
    }

    pub(crate) fn subject_der(&self) -> &[u8] {
        &self.subject_der
    }

    pub(crate) fn issuer_der(&self) -> &[u8] {
        &self.issuer_der
    }

    pub(crate) fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    pub(crate) fn tbs_der(&self) -> &[u8] {
        &self.der[self.tbs_range.clone()]
    }

    pub(crate) fn signature_algorithm_der(&self) -> &[u8] {
        &self.signature_algorithm_der
    }

    pub(crate) fn signature(&self) -> &[u8] {
        &self.signature
    }

    pub(crate) fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    pub(crate) fn has_key_usage(&self, usage: KeyUsages) -> Option<bool> {
        self.extensions
            .key_usage
            .map(|key_usage| key_usage.0.contains(usage))
    }

    fn alt_names(&self) -> impl Iterator<Item = &GeneralName> {
        self.extensions.subject_alt_name.iter().flatten()
    }

    fn public_key_bits(&self) -> Option<Vec<u8>> {
        let spki = x509_cert::spki::SubjectPublicKeyInfoRef::from_der(&self.spki_der).ok()?;
        Some(spki.subject_public_key.raw_bytes().to_vec())
    }
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("subject", &self.subject)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// Encodes a decoded part of a certificate back to DER.
fn encode(value: &impl Encode) -> Result<Vec<u8>, ValidateError> {
    value.to_der().map_err(|e| ValidateError::Malformed {
        index: 0,
        reason: e.to_string(),
    })
}

/// Finds the byte range of the TBSCertificate, the signed part, in the DER of a certificate.
fn tbs_range(der: &[u8]) -> der::Result<std::ops::Range<usize>> {
    let mut outer = SliceReader::new(der)?;
    der::Header::decode(&mut outer)?;
    let start = usize::try_from(outer.position())?;
    let tbs = outer.tlv_bytes()?;
    Ok(start..start + tbs.len())
}

/// Decodes the extensions of RFC 5280 section 4.2.1 that path validation uses and lists the
/// critical ones it does not know.
fn decode_extensions(
    list: &[x509_cert::ext::Extension],
    subject: &str,
) -> Result<Extensions, ValidateError> {
    let mut extensions = Extensions::default();
    for extension in list {
        let value = extension.extn_value.as_bytes();
        let invalid = |err: der::Error| ValidateError::InvalidExtension {
            subject: subject.to_owned(),
            oid: extension.extn_id.to_string(),
            reason: err.to_string(),
        };
        match extension.extn_id {
            oids::ID_CE_BASIC_CONSTRAINTS => {
                extensions.basic_constraints =
                    Some(BasicConstraints::from_der(value).map_err(invalid)?);
            }
            oids::ID_CE_KEY_USAGE => {
                extensions.key_usage = Some(KeyUsage::from_der(value).map_err(invalid)?);
            }
            oids::ID_CE_EXT_KEY_USAGE => {
                let usage = ExtendedKeyUsage::from_der(value).map_err(invalid)?;
                extensions.extended_key_usage = Some(usage.0);
            }
            oids::ID_CE_SUBJECT_ALT_NAME => {
                let names = SubjectAltName::from_der(value).map_err(invalid)?;
                extensions.subject_alt_name = Some(names.0);
            }
            oids::ID_CE_NAME_CONSTRAINTS => {
                let constraints = NameConstraints::from_der(value).map_err(invalid)?;
                extensions.permitted_subtrees = constraints.permitted_subtrees;
                extensions.excluded_subtrees = constraints.excluded_subtrees;
            }
            oids::ID_CE_AUTHORITY_KEY_IDENTIFIER => {
                let id = AuthorityKeyIdentifier::from_der(value).map_err(invalid)?;
                extensions.authority_key_id = id.key_identifier.map(|id| id.as_bytes().to_vec());
            }
            oids::ID_CE_SUBJECT_KEY_IDENTIFIER => {
                let id = SubjectKeyIdentifier::from_der(value).map_err(invalid)?;
                extensions.subject_key_id = Some(id.0.as_bytes().to_vec());
            }
            oid if extension.critical && !PROCESSED_EXTENSIONS.contains(&oid) => {
                extensions.unknown_critical.push(oid);
            }
            _ => {}
        }
    }
    Ok(extensions)
}

/// Returns the text of every attribute of type `oid` in `name`, for the string types X.509
/// names use; values of other types are skipped.
fn attribute_texts(name: &Name, oid: ObjectIdentifier) -> Vec<String> {
    name.0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|attribute| attribute.oid == oid)
        .filter_map(|attribute| {
            let value = &attribute.value;
            value
                .decode_as::<Utf8StringRef<'_>>()
                .map(|s| s.to_string())
                .or_else(|_| {
                    value
                        .decode_as::<PrintableStringRef<'_>>()
                        .map(|s| s.to_string())
                })
                .or_else(|_| value.decode_as::<Ia5StringRef<'_>>().map(|s| s.to_string()))
                .or_else(|_| {
                    value
                        .decode_as::<TeletexStringRef<'_>>()
                        .map(|s| s.to_string())
                })
                .ok()
        })
        .collect()
}

/// Splits PEM `CERTIFICATE` blocks, or concatenated DER certificates, into DER certificates.
fn split_pem_or_der(input: &[u8]) -> Result<Vec<Vec<u8>>, ValidateError> {
    let malformed = |index, reason: String| ValidateError::Malformed { index, reason };
    // A DER certificate starts with a SEQUENCE tag; anything else is read as PEM text, where
    // text around the blocks is allowed.
    if input.first() != Some(&0x30) {
        let text = std::str::from_utf8(input).map_err(|e| malformed(0, e.to_string()))?;
        let mut ders = Vec::new();
        for (index, block) in pem_blocks(text).enumerate() {
            let (label, der) = der::pem::decode_vec(block.as_bytes())
                .map_err(|e| malformed(index, format!("invalid PEM block: {e}")))?;
            if label == "CERTIFICATE" {
                ders.push(der);
            }
        }
        return Ok(ders);
    }

    let mut ders = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let mut reader =
            SliceReader::new(rest).map_err(|e| malformed(ders.len(), e.to_string()))?;
        let tlv = reader
            .tlv_bytes()
            .map_err(|e| malformed(ders.len(), e.to_string()))?;
        ders.push(tlv.to_vec());
        rest = &rest[tlv.len()..];
    }
    Ok(ders)
}

/// Yields each `-----BEGIN ...-----` to `-----END ...-----` block of `text`, leaving out the
/// text between blocks.
fn pem_blocks(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let start = rest.find("-----BEGIN ")?;
        let end_marker = start + rest[start..].find("-----END ")?;
        let after_label = end_marker + "-----END ".len();
        let end = after_label + rest[after_label..].find("-----")? + "-----".len();
        let block = &rest[start..end];
        rest = &rest[end..];
        Some(block)
    })
}
