//! `D` and `d` through the daemon: TLSA records for the peer's port in a zone that nsd serves
//! signed, tampered or unsigned, with the zones' DS records as `dnssec_rootkey`.

use tlspool_tests::daemon::TestDaemon;
use tlspool_tests::dns::{Nsd, Signing, Zone};

use super::{CLIENT, DOMAIN, Setup, assert_accepted, assert_rejected, pool_client, serial};

/// Returns the TLSA record line for the peer's host on `port`, relative to `DOMAIN`.
fn tlsa(port: u16, usage: u8, selector: u8, matching: u8, data: &str) -> String {
    format!("_{port}._tcp.peer IN TLSA {usage} {selector} {matching} {data}")
}

/// Starts a daemon that validates with `valexp` against the DNS server `nsd`.
fn dane_daemon(setup: &Setup, nsd: &Nsd, valexp: &str) -> TestDaemon {
    let server = format!("dns_server {}", nsd.address());
    let rootkey = format!("dnssec_rootkey {}", nsd.trust_anchor().display());
    let default = format!("validate_default {valexp}");
    setup.start_daemon(&[&default, &server, &rootkey])
}

#[test]
fn matching_tlsa_records_accept_peer() {
    let _serial = serial();
    let setup = Setup::create();
    let (_server, port) = setup.peer_server(&[]);
    let cases = [
        (
            "DANE-EE of the SubjectPublicKeyInfo",
            3,
            1,
            setup.peer_spki(),
        ),
        ("DANE-EE of the certificate", 3, 0, setup.peer_der()),
        ("DANE-TA of the CA certificate", 2, 0, setup.ca_der()),
    ];
    for (case, usage, selector, selected) in cases {
        let record = tlsa(port, usage, selector, 1, &super::sha256_hex(&selected));
        let nsd = Nsd::start(&[Zone::new(DOMAIN, Signing::Signed).record(&record)]);
        let daemon = dane_daemon(&setup, &nsd, "D");
        let result = pool_client(&daemon, port, CLIENT);
        assert!(result.is_ok(), "{case}: {:?}", result.err());
        assert_accepted(result);
        let log = daemon.stderr();
        assert!(log.contains("tlsa record matches"), "{case}:\n{log}");
    }
}

#[test]
fn mismatching_tlsa_record_rejects_peer() {
    let _serial = serial();
    let setup = Setup::create();
    let (_server, port) = setup.peer_server(&[]);
    let other = super::sha256_hex(b"not the peer's key");
    let zone = Zone::new(DOMAIN, Signing::Signed).record(&tlsa(port, 3, 1, 1, &other));
    let nsd = Nsd::start(&[zone]);

    for valexp in ["D", "d"] {
        let daemon = dane_daemon(&setup, &nsd, valexp);
        assert_rejected(
            pool_client(&daemon, port, CLIENT),
            &format!("failed at {valexp} (no TLSA record matches the peer)"),
        );
    }
}

#[test]
fn absent_tlsa_records_decide_d_and_weak_d() {
    let _serial = serial();
    let setup = Setup::create();
    let (_server, port) = setup.peer_server(&[]);
    let nsd = Nsd::start(&[Zone::new(DOMAIN, Signing::Signed).record("peer IN A 127.0.0.1")]);

    let daemon = dane_daemon(&setup, &nsd, "D");
    assert_rejected(
        pool_client(&daemon, port, CLIENT),
        "failed at D (no TLSA records)",
    );
    drop(daemon);
    let daemon = dane_daemon(&setup, &nsd, "d");
    assert_accepted(pool_client(&daemon, port, CLIENT));
}

#[test]
fn bogus_tlsa_signature_rejects_peer() {
    let _serial = serial();
    let setup = Setup::create();
    let (_server, port) = setup.peer_server(&[]);
    let record = tlsa(port, 3, 1, 1, &super::sha256_hex(&setup.peer_spki()));
    let nsd = Nsd::start(&[Zone::new(DOMAIN, Signing::BadTlsaSignature).record(&record)]);

    for valexp in ["D", "d"] {
        let daemon = dane_daemon(&setup, &nsd, valexp);
        let owner = format!("_{port}._tcp.peer.{DOMAIN}");
        assert_rejected(
            pool_client(&daemon, port, CLIENT),
            &format!("failed at {valexp} (the TLSA response for {owner} failed"),
        );
        let log = daemon.stderr();
        assert!(log.contains("failed DNSSEC validation"), "{log}");
    }
}

#[test]
fn unsigned_zone_rejects_peer() {
    let _serial = serial();
    let setup = Setup::create();
    let (_server, port) = setup.peer_server(&[]);
    let record = tlsa(port, 3, 1, 1, &super::sha256_hex(&setup.peer_spki()));
    let parent = Zone::new("example", Signing::Signed);
    let child = Zone::new(DOMAIN, Signing::Unsigned).record(&record);
    let nsd = Nsd::start(&[parent, child]);

    for valexp in ["D", "d"] {
        let daemon = dane_daemon(&setup, &nsd, valexp);
        let owner = format!("_{port}._tcp.peer.{DOMAIN}");
        assert_rejected(
            pool_client(&daemon, port, CLIENT),
            &format!("failed at {valexp} (the TLSA lookup of {owner} is not"),
        );
        let log = daemon.stderr();
        assert!(log.contains("is not DNSSEC-signed"), "{log}");
    }
}
