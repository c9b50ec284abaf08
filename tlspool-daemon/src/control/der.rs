//! The few DER reads INFO needs from an X.509 certificate: the complete `issuer` and
//! `subject` Name of the TBSCertificate and the GeneralNames of its subjectAltName extension,
//! each as the exact bytes of the certificate.

/// DER encoding of the subjectAltName extension's OID 2.5.29.17, with tag and length.
const SUBJECT_ALT_NAME_OID: [u8; 5] = [0x06, 0x03, 0x55, 0x1d, 0x11];

const TAG_SEQUENCE: u8 = 0x30;
const TAG_INTEGER: u8 = 0x02;
const TAG_BOOLEAN: u8 = 0x01;
const TAG_OCTET_STRING: u8 = 0x04;
/// `[0] EXPLICIT Version` of the TBSCertificate.
const TAG_VERSION: u8 = 0xa0;
/// `[3] EXPLICIT Extensions` of the TBSCertificate.
const TAG_EXTENSIONS: u8 = 0xa3;

/// One TLV: its tag, its contents and the complete encoding.
#[derive(Debug, Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    contents: &'a [u8],
    encoding: &'a [u8],
}

/// Splits the first TLV off `input`; `None` when it is not valid definite-length DER with a
/// one-byte tag.
fn split_tlv(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let len = bytes
            .iter()
            .fold(0usize, |len, &byte| (len << 8) | usize::from(byte));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let header_len = input.len() - rest.len();
    let tlv = Tlv {
        tag,
        contents: &rest[..len],
        encoding: &input[..header_len + len],
    };
    Some((tlv, &rest[len..]))
}

/// Splits the first TLV off `input` if it has `tag`.
fn expect_tlv(input: &[u8], tag: u8) -> Option<(Tlv<'_>, &[u8])> {
    split_tlv(input).filter(|(tlv, _)| tlv.tag == tag)
}

/// The parts of a TBSCertificate that INFO returns or checks.
#[derive(Debug)]
pub(super) struct CertificateFields<'a> {
    /// The complete DER `issuer` Name.
    pub(super) issuer: &'a [u8],
    /// The complete DER `subject` Name.
    pub(super) subject: &'a [u8],
    /// The contents of the `[3]` extensions field, if present.
    extensions: Option<&'a [u8]>,
}

impl<'a> CertificateFields<'a> {
    /// Reads the fields of the DER certificate `der`; `None` when it does not parse.
    pub(super) fn parse(der: &'a [u8]) -> Option<Self> {
        let (certificate, _) = expect_tlv(der, TAG_SEQUENCE)?;
        let (tbs, _) = expect_tlv(certificate.contents, TAG_SEQUENCE)?;
        let mut rest = tbs.contents;
        if let Some((_, after)) = expect_tlv(rest, TAG_VERSION) {
            rest = after;
        }
        let (_serial, rest) = expect_tlv(rest, TAG_INTEGER)?;
        let (_signature, rest) = expect_tlv(rest, TAG_SEQUENCE)?;
        let (issuer, rest) = expect_tlv(rest, TAG_SEQUENCE)?;
        let (_validity, rest) = expect_tlv(rest, TAG_SEQUENCE)?;
        let (subject, mut rest) = expect_tlv(rest, TAG_SEQUENCE)?;
        let mut extensions = None;
        // subjectPublicKeyInfo, then the optional unique ids and extensions.
        while let Some((field, after)) = split_tlv(rest) {
            if field.tag == TAG_EXTENSIONS {
                extensions = Some(field.contents);
            }
            rest = after;
        }
        Some(Self {
            issuer: issuer.encoding,
            subject: subject.encoding,
            extensions,
        })
    }

    /// Tells whether the subjectAltName extension holds a GeneralName whose complete DER
    /// encoding equals `general_name`.
    pub(super) fn has_subject_alt_name(&self, general_name: &[u8]) -> bool {
        self.subject_alt_names()
            .is_some_and(|names| names.contains(&general_name))
    }

    /// Returns the complete DER encodings of the GeneralNames in subjectAltName.
    fn subject_alt_names(&self) -> Option<Vec<&'a [u8]>> {
        let (list, _) = expect_tlv(self.extensions?, TAG_SEQUENCE)?;
        let mut rest = list.contents;
        while let Some((extension, after)) = expect_tlv(rest, TAG_SEQUENCE) {
            rest = after;
            let Some(inner) = extension.contents.strip_prefix(&SUBJECT_ALT_NAME_OID[..]) else {
                continue;
            };
            let inner = match expect_tlv(inner, TAG_BOOLEAN) {
                Some((_critical, after)) => after,
                None => inner,
            };
            let (value, _) = expect_tlv(inner, TAG_OCTET_STRING)?;
            let (names, _) = expect_tlv(value.contents, TAG_SEQUENCE)?;
            let mut encodings = Vec::new();
            let mut names = names.contents;
            while let Some((name, after)) = split_tlv(names) {
                encodings.push(name.encoding);
                names = after;
            }
            return Some(encodings);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    use super::*;

    fn certificate(sans: Vec<SanType>) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "testsrv.example");
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn names_are_complete_tlvs() {
        let der = certificate(Vec::new());
        let fields = CertificateFields::parse(&der).unwrap();
        assert_eq!(fields.subject[0], TAG_SEQUENCE);
        assert_eq!(usize::from(fields.subject[1]) + 2, fields.subject.len());
        assert!(
            fields
                .subject
                .windows(15)
                .any(|window| window == b"testsrv.example")
        );
        assert_eq!(fields.issuer, fields.subject);
        assert!(!fields.has_subject_alt_name(&[0x82, 0x01, b'a']));
    }

    #[test]
    fn subject_alt_name_matches_byte_for_byte() {
        let email = "testsrv@tlspool.example";
        let der = certificate(vec![
            SanType::DnsName("tlspool.example".try_into().unwrap()),
            SanType::Rfc822Name(email.try_into().unwrap()),
        ]);
        let fields = CertificateFields::parse(&der).unwrap();
        let mut rfc822 = vec![0x81, u8::try_from(email.len()).unwrap()];
        rfc822.extend_from_slice(email.as_bytes());
        assert!(fields.has_subject_alt_name(&rfc822));
        let mut dns = vec![0x82, 15];
        dns.extend_from_slice(b"tlspool.example");
        assert!(fields.has_subject_alt_name(&dns));
        // Another tag with the same contents, or a prefix, does not match.
        rfc822[0] = 0x82;
        assert!(!fields.has_subject_alt_name(&rfc822));
        assert!(!fields.has_subject_alt_name(&dns[..dns.len() - 1]));
    }

    #[test]
    fn truncated_certificate_does_not_parse() {
        let der = certificate(Vec::new());
        assert!(CertificateFields::parse(&der[..der.len() / 2]).is_none());
        assert!(CertificateFields::parse(&[]).is_none());
    }
}
