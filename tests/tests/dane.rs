//! DANE checks against TLSA records served by a real nsd on loopback, validated with DNSSEC
//! in process from the DS records of the test zones.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::time::{Duration, Instant, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use ring::digest;
use tlspool_tests::dns::{Nsd, Signing, Zone};
use tlspool_validate::dane::{self, DaneOutcome, NoDane, Transport, Usage};
use tlspool_validate::dns::{DnsError, Resolver};
use tlspool_validate::x509::{Anchor, AnchorSet, Certificate, PathValidator, PeerRole};

const ZONE: &str = "example.test";
const TIMEOUT: Duration = Duration::from_secs(2);

/// A generated certificate with its key.
struct Issued {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A CA and an end certificate for `*.example.test` and `www.example.test` issued by it.
struct Pki {
    ca: Issued,
    leaf: Issued,
}

impl Issued {
    fn der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    /// Returns the association data of `selector` and `matching_type` for this certificate.
    fn association(&self, selector: u8, matching_type: u8) -> Vec<u8> {
        let selected = match selector {
            0 => self.der(),
            _ => self.key.public_key_der(),
        };
        match matching_type {
            0 => selected,
            1 => digest::digest(&digest::SHA256, &selected).as_ref().to_vec(),
            _ => digest::digest(&digest::SHA512, &selected).as_ref().to_vec(),
        }
    }
}

impl Pki {
    fn new(ca_name: &str) -> Self {
        let ca_key = KeyPair::generate().expect("generating the CA key");
        let mut ca_params = params(ca_name);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-signing the CA");

        let leaf_key = KeyPair::generate().expect("generating the end certificate key");
        let mut leaf_params = params("www.example.test");
        leaf_params.subject_alt_names = ["*.example.test", "www.example.test"]
            .iter()
            .map(|name| SanType::DnsName((*name).try_into().expect("ASCII name")))
            .collect();
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_cert = leaf_params
            .signed_by(&leaf_key, &ca_cert, &ca_key)
            .expect("issuing the end certificate");
        Self {
            ca: Issued {
                cert: ca_cert,
                key: ca_key,
            },
            leaf: Issued {
                cert: leaf_cert,
                key: leaf_key,
            },
        }
    }

    fn chain(&self) -> Vec<Vec<u8>> {
        vec![self.leaf.der(), self.ca.der()]
    }

    fn anchor(&self) -> Anchor {
        Anchor {
            certificate: Certificate::from_der(&self.ca.der()).expect("rcgen output decodes"),
            for_clients: true,
            for_servers: true,
            not_root: false,
            valexp: "1".to_owned(),
        }
    }
}

/// Returns parameters with the common name `cn`, valid from 2020 to 2040.
fn params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2040, 1, 1);
    params.use_authority_key_identifier_extension = true;
    params
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn tlsa(owner: &str, usage: u8, selector: u8, matching_type: u8, data: &[u8]) -> String {
    format!(
        "_443._tcp.{owner} IN TLSA {usage} {selector} {matching_type} {}",
        hex(data)
    )
}

/// Returns a PKIX validator for a peer server at the current time that trusts `anchors`.
fn pkix(anchors: &AnchorSet) -> PathValidator<'_> {
    PathValidator::new(anchors, PeerRole::Server, SystemTime::now())
}

fn resolver(nsd: &Nsd) -> Resolver {
    Resolver::new(Some(nsd.address()), nsd.trust_anchor(), TIMEOUT).expect("creating resolver")
}

async fn check(
    resolver: &Resolver,
    host: &str,
    chain: &[Vec<u8>],
    pkix: &PathValidator<'_>,
) -> DaneOutcome {
    dane::check(resolver, host, 443, Transport::Tcp, chain, pkix).await
}

/// Checks with a PKIX validator that trusts no anchor, so only the DANE usages can match.
async fn check_without_pkix(resolver: &Resolver, host: &str, chain: &[Vec<u8>]) -> DaneOutcome {
    let no_anchors = AnchorSet::new();
    check(resolver, host, chain, &pkix(&no_anchors)).await
}

#[tokio::test]
async fn every_usage_selector_and_matching_type() {
    let right = Pki::new("Right CA");
    let wrong = Pki::new("Wrong CA");
    let mut zone = Zone::new(ZONE, Signing::Signed);
    let mut labels = Vec::new();
    for usage in 0..=3u8 {
        for selector in 0..=1u8 {
            for matching_type in 0..=2u8 {
                let label = format!("u{usage}s{selector}m{matching_type}");
                let certificate = if usage % 2 == 0 {
                    &right.ca
                } else {
                    &right.leaf
                };
                let data = certificate.association(selector, matching_type);
                zone = zone.record(&tlsa(&label, usage, selector, matching_type, &data));
                labels.push((label, usage));
            }
        }
    }
    let nsd = Nsd::start(&[zone]);
    let resolver = resolver(&nsd);

    // Both CAs are PKIX anchors, so the wrong chain fails PKIX-* only by not matching.
    let mut anchors = AnchorSet::new();
    anchors.add_anchor(right.anchor());
    anchors.add_anchor(wrong.anchor());
    let validator = pkix(&anchors);

    for (label, usage) in labels {
        let host = format!("{label}.{ZONE}");
        let outcome = check(&resolver, &host, &right.chain(), &validator).await;
        let DaneOutcome::Match(found) = &outcome else {
            panic!("{host}: right chain gave {outcome:?}");
        };
        assert_eq!(found.record.usage.number(), usage, "{host}");
        assert!(outcome.is_match_or_denied(), "{host}");

        let outcome = check(&resolver, &host, &wrong.chain(), &validator).await;
        assert!(
            matches!(outcome, DaneOutcome::NoMatch(_)),
            "{host}: wrong chain gave {outcome:?}"
        );
        assert!(!outcome.is_match_or_denied(), "{host}");
    }
}

#[tokio::test]
async fn pkix_usages_need_pkix_validation() {
    let pki = Pki::new("Untrusted CA");
    let zone = Zone::new(ZONE, Signing::Signed)
        .record(&tlsa("ee", 1, 1, 1, &pki.leaf.association(1, 1)))
        .record(&tlsa("ta", 0, 1, 1, &pki.ca.association(1, 1)));
    let nsd = Nsd::start(&[zone]);
    let resolver = resolver(&nsd);

    for host in ["ee.example.test", "ta.example.test"] {
        let outcome = check_without_pkix(&resolver, host, &pki.chain()).await;
        let DaneOutcome::NoMatch(reasons) = &outcome else {
            panic!("{host}: untrusted chain gave {outcome:?}");
        };
        assert!(reasons[0].contains("PKIX validation failed"), "{reasons:?}");
    }
}

#[tokio::test]
async fn unusable_records_ignored() {
    let pki = Pki::new("DANE CA");
    let spki_sha256 = pki.leaf.association(1, 1);
    let zone = Zone::new(ZONE, Signing::Signed)
        .record(&tlsa("unusable", 4, 1, 1, &spki_sha256))
        .record(&tlsa("unusable", 3, 2, 1, &spki_sha256))
        .record(&tlsa("unusable", 3, 1, 3, &spki_sha256))
        .record(&tlsa("unusable", 3, 1, 1, &spki_sha256[..31]))
        .record(&tlsa("unusable", 3, 1, 2, &spki_sha256))
        .record(&tlsa("mixed", 255, 1, 1, &spki_sha256))
        .record(&tlsa("mixed", 3, 1, 2, &spki_sha256))
        .record(&tlsa("mixed", 3, 1, 1, &spki_sha256));
    let nsd = Nsd::start(&[zone]);
    let resolver = resolver(&nsd);
    let no_anchors = AnchorSet::new();
    let validator = pkix(&no_anchors);

    let outcome = check(&resolver, "unusable.example.test", &pki.chain(), &validator).await;
    let DaneOutcome::NoMatch(reasons) = &outcome else {
        panic!("only unusable records gave {outcome:?}");
    };
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("none of the 5"), "{reasons:?}");
    assert!(!outcome.is_match_or_denied());

    let outcome = check(&resolver, "mixed.example.test", &pki.chain(), &validator).await;
    let DaneOutcome::Match(found) = &outcome else {
        panic!("a usable record among unusable ones gave {outcome:?}");
    };
    assert_eq!(found.record.usage, Usage::DaneEe);
    assert_eq!(found.record.matching_type.number(), 1);
}

#[tokio::test]
async fn dane_ee_ignores_names_and_dates() {
    let key = KeyPair::generate().expect("generating a key");
    let mut params = params("unrelated.invalid");
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let cert = params.self_signed(&key).expect("self-signing");
    let expired = Issued { cert, key };
    let zone = Zone::new(ZONE, Signing::Signed)
        .record(&tlsa("expired", 3, 1, 1, &expired.association(1, 1)))
        .record(&tlsa("expired", 3, 0, 2, &expired.association(0, 2)));
    let nsd = Nsd::start(&[zone]);
    let resolver = resolver(&nsd);

    let outcome = check_without_pkix(&resolver, "expired.example.test", &[expired.der()]).await;
    assert!(
        outcome.is_match(),
        "expired, misnamed DANE-EE gave {outcome:?}"
    );
}

#[tokio::test]
async fn dane_ta_needs_anchor_in_chain() {
    let pki = Pki::new("DANE TA");
    let zone =
        Zone::new(ZONE, Signing::Signed).record(&tlsa("www", 2, 0, 1, &pki.ca.association(0, 1)));
    let nsd = Nsd::start(&[zone]);
    let resolver = resolver(&nsd);
    let no_anchors = AnchorSet::new();
    let validator = pkix(&no_anchors);

    let outcome = check(&resolver, "www.example.test", &pki.chain(), &validator).await;
    let DaneOutcome::Match(found) = &outcome else {
        panic!("DANE-TA with the anchor sent gave {outcome:?}");
    };
    assert_eq!(found.subject, "CN=DANE TA");

    let leaf_only = vec![pki.leaf.der()];
    let outcome = check(&resolver, "www.example.test", &leaf_only, &validator).await;
    assert!(
        matches!(outcome, DaneOutcome::NoMatch(_)),
        "anchor not sent gave {outcome:?}"
    );
}

#[tokio::test]
async fn dane_ta_rejects_name_mismatch() {
    let pki = Pki::new("DANE TA");
    let zone = Zone::new(ZONE, Signing::Signed)
        .record(&tlsa("a.b", 2, 1, 1, &pki.ca.association(1, 1)))
        .record(&tlsa(
            "a.b",
            3,
            1,
            1,
            &Pki::new("Other").leaf.association(1, 1),
        ));
    let nsd = Nsd::start(&[zone]);
    let resolver = resolver(&nsd);

    // The end certificate names *.example.test, which does not cover a.b.example.test.
    let outcome = check_without_pkix(&resolver, "a.b.example.test", &pki.chain()).await;
    let DaneOutcome::NoMatch(reasons) = &outcome else {
        panic!("DANE-TA for a name the certificate lacks gave {outcome:?}");
    };
    assert_eq!(reasons.len(), 2, "{reasons:?}");
}

#[tokio::test]
async fn cname_tlsa_owner_followed() {
    let pki = Pki::new("DANE CA");
    let zone = Zone::new(ZONE, Signing::Signed)
        .record("_443._tcp.alias IN CNAME _443._tcp.target")
        .record(&tlsa("target", 3, 1, 1, &pki.leaf.association(1, 1)));
    let nsd = Nsd::start(&[zone]);
    let resolver = resolver(&nsd);

    let outcome = check_without_pkix(&resolver, "alias.example.test", &pki.chain()).await;
    assert!(outcome.is_match(), "CNAME'd owner gave {outcome:?}");

    let answer = resolver
        .lookup(
            "_443._tcp.alias.example.test",
            tlspool_validate::dns::Rtype::TLSA,
        )
        .await
        .expect("lookup");
    let rrset = answer.rrset().expect("rrset");
    assert_eq!(rrset.cname_chain, ["_443._tcp.target.example.test"]);
    assert_eq!(rrset.owner, "_443._tcp.target.example.test");
    assert_eq!(rrset.records.len(), 1);
}

#[tokio::test]
async fn signed_absence_is_denial() {
    let pki = Pki::new("DANE CA");
    let zone = Zone::new(ZONE, Signing::Signed)
        .record("www IN A 192.0.2.1")
        .record("_443._tcp.txt IN TXT \"no TLSA here\"");
    let nsd = Nsd::start(&[zone]);
    let resolver = resolver(&nsd);

    // NXDOMAIN for _443._tcp.www, NODATA for _443._tcp.txt.
    for host in ["www.example.test", "txt.example.test"] {
        let outcome = check_without_pkix(&resolver, host, &pki.chain()).await;
        assert_eq!(outcome, DaneOutcome::NoRecords(NoDane::Denied), "{host}");
        assert!(!outcome.is_match(), "{host}");
        assert!(outcome.is_match_or_denied(), "{host}");
    }
}

#[tokio::test]
async fn bad_signature_is_bogus() {
    let pki = Pki::new("DANE CA");
    let zone = Zone::new("bogus.test", Signing::BadTlsaSignature).record(&tlsa(
        "www",
        3,
        1,
        1,
        &pki.leaf.association(1, 1),
    ));
    let nsd = Nsd::start(&[zone]);
    let resolver = resolver(&nsd);

    let outcome = check_without_pkix(&resolver, "www.bogus.test", &pki.chain()).await;
    assert!(
        matches!(outcome, DaneOutcome::Bogus(_)),
        "bad signature gave {outcome:?}"
    );
    assert!(!outcome.is_match_or_denied());
}

#[tokio::test]
async fn unsigned_zone_is_insecure() {
    let pki = Pki::new("DANE CA");
    let parent = Zone::new(ZONE, Signing::Signed);
    let child = Zone::new("insecure.example.test", Signing::Unsigned).record(&tlsa(
        "www",
        3,
        1,
        1,
        &pki.leaf.association(1, 1),
    ));
    let nsd = Nsd::start(&[parent, child]);
    let resolver = resolver(&nsd);

    let host = "www.insecure.example.test";
    let outcome = check_without_pkix(&resolver, host, &pki.chain()).await;
    assert_eq!(outcome, DaneOutcome::NoRecords(NoDane::Insecure));
    assert!(!outcome.is_match_or_denied());
}

#[tokio::test]
async fn server_down_is_error_within_timeout() {
    let nsd = Nsd::start(&[Zone::new(ZONE, Signing::Signed)]);
    let anchor = nsd.trust_anchor().to_owned();
    let pki = Pki::new("DANE CA");
    let timeout = Duration::from_millis(500);

    // Nothing listens on a port just released. The transport waits out its timeout even so.
    let closed = {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a UDP port");
        socket.local_addr().expect("local address")
    };
    // A bound UDP socket and a TCP listener that never answer: queries time out.
    let silent_udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a UDP port");
    let silent_address = silent_udp.local_addr().expect("local address");
    let _silent_tcp = TcpListener::bind(silent_address).expect("binding the same TCP port");

    for server in [closed, silent_address] {
        let resolver = Resolver::new(Some(server), &anchor, timeout).expect("creating resolver");
        let start = Instant::now();
        let outcome = check_without_pkix(&resolver, "www.example.test", &pki.chain()).await;
        let elapsed = start.elapsed();
        assert!(
            matches!(outcome, DaneOutcome::Error(_)),
            "{server}: {outcome:?}"
        );
        assert!(
            elapsed < timeout + Duration::from_millis(500),
            "{server}: took {elapsed:?}"
        );
    }

    let resolver = Resolver::new(Some(silent_address), &anchor, timeout).expect("resolver");
    let outcome = check_without_pkix(&resolver, "www.example.test", &pki.chain()).await;
    assert!(
        matches!(outcome, DaneOutcome::Error(DnsError::Timeout { .. })),
        "silent server gave {outcome:?}"
    );
}
