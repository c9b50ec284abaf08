//! Certificates for the tests, generated with `rcgen`: roots, intermediates and end
//! certificates with P-256 keys, valid from 2020 to 2030 unless a test changes it.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use super::{Anchor, AnchorSet, Certificate};

/// A generated certificate with its key.
pub(crate) struct Issued {
    pub(crate) cert: rcgen::Certificate,
    pub(crate) key: KeyPair,
}

impl Issued {
    pub(crate) fn der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    pub(crate) fn parsed(&self) -> Certificate {
        Certificate::from_der(self.cert.der()).expect("rcgen output decodes")
    }

    /// Returns an anchor for both roles.
    pub(crate) fn anchor(&self) -> Anchor {
        Anchor {
            certificate: self.parsed(),
            for_clients: true,
            for_servers: true,
            not_root: false,
            valexp: "1".into(),
        }
    }
}

/// Returns the Unix time of midnight UTC on a day.
pub(crate) fn day(year: i32, month: u8, day: u8) -> SystemTime {
    let date = time::Date::from_calendar_date(year, month.try_into().expect("month"), day)
        .expect("valid date");
    let seconds = date.midnight().assume_utc().unix_timestamp();
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds.try_into().expect("after 1970"))
}

fn offset(at: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(at)
}

/// Returns parameters with the common name `cn`, valid from 2020 to 2030.
pub(crate) fn params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.not_before = offset(day(2020, 1, 1));
    params.not_after = offset(day(2030, 1, 1));
    params.use_authority_key_identifier_extension = true;
    params
}

/// Returns parameters of a CA without a path length limit.
pub(crate) fn ca_params(cn: &str) -> CertificateParams {
    let mut params = params(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// Returns parameters of a server certificate for the DNS names `sans`.
pub(crate) fn server_params(cn: &str, sans: &[&str]) -> CertificateParams {
    let mut params = params(cn);
    params.subject_alt_names = sans
        .iter()
        .map(|name| SanType::DnsName((*name).try_into().expect("ASCII name")))
        .collect();
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params
}

pub(crate) fn new_key() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key generation")
}

pub(crate) fn self_signed(params: CertificateParams) -> Issued {
    self_signed_with(params, new_key())
}

pub(crate) fn self_signed_with(params: CertificateParams, key: KeyPair) -> Issued {
    let cert = params.self_signed(&key).expect("self-signing");
    Issued { cert, key }
}

pub(crate) fn issue(params: CertificateParams, issuer: &Issued) -> Issued {
    issue_with(params, new_key(), issuer)
}

pub(crate) fn issue_with(params: CertificateParams, key: KeyPair, issuer: &Issued) -> Issued {
    let cert = params
        .signed_by(&key, &issuer.cert, &issuer.key)
        .expect("signing");
    Issued { cert, key }
}

/// Returns the chain as the peer would send it.
pub(crate) fn chain(certs: &[&Issued]) -> Vec<Certificate> {
    certs.iter().map(|issued| issued.parsed()).collect()
}

/// Returns a store with the given certificates as anchors for both roles.
pub(crate) fn anchors(roots: &[&Issued]) -> AnchorSet {
    let mut set = AnchorSet::new();
    for root in roots {
        set.add_anchor(root.anchor());
    }
    set
}

/// Returns a second handle to the same key, for two certificates with one key.
pub(crate) fn copy_key(key: &KeyPair) -> KeyPair {
    KeyPair::from_pem(&key.serialize_pem()).expect("PEM of a generated key decodes")
}
