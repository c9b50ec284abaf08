//! `O`, `o`, `G` and `g` through the daemon: slapd as `ldap_proxy`, and slapd found by SRV
//! records in a zone that nsd serves signed, with the directory server's own TLSA record.

use std::path::Path;

use tlspool_tests::daemon::TestDaemon;
use tlspool_tests::dns::{Nsd, Signing, Zone};
use tlspool_tests::ldap::Slapd;

use super::{CLIENT, DOMAIN, Setup, assert_accepted, assert_rejected, pool_client, serial};

/// The suffix of the directory of `DOMAIN`.
pub(crate) const SUFFIX: &str = "dc=dev,dc=example";
/// The entry that the daemon searches for the peer `peer.dev.example`.
pub(crate) const PEER_BASE: &str = "dc=peer,dc=dev,dc=example";

/// Returns LDIF for the suffix and, unless `certificate` is `None`, the peer's entry holding
/// the DER certificate in that file.
pub(crate) fn ldif(certificate: Option<&Path>) -> String {
    let mut text = format!("dn: {SUFFIX}\nobjectClass: domain\ndc: dev\n\n");
    if let Some(path) = certificate {
        text.push_str(&format!(
            "dn: {PEER_BASE}\nobjectClass: domain\nobjectClass: pkiUser\ndc: peer\n\
             userCertificate;binary:< file://{}\n",
            path.display()
        ));
    }
    text
}

/// Writes `der` to `name` in the setup directory and returns the path.
pub(crate) fn write_der(setup: &Setup, name: &str, der: &[u8]) -> std::path::PathBuf {
    let path = setup.path(name);
    std::fs::write(&path, der).expect("write a DER certificate");
    path
}

/// Starts a daemon with `ldap_proxy` pointing at `slapd` and `valexp` as the default.
fn proxy_daemon(setup: &Setup, slapd: &Slapd, valexp: &str) -> TestDaemon {
    let proxy = format!("ldap_proxy {}", slapd.url());
    let default = format!("validate_default {valexp}");
    setup.start_daemon(&[&default, &proxy])
}

#[test]
fn proxy_directory_decides_predicates() {
    let _serial = serial();
    let setup = Setup::create();
    let (_server, port) = setup.peer_server(&[]);
    let peer = write_der(&setup, "peer.der", &setup.peer_der());
    let other = write_der(&setup, "other.der", &setup.ca_der());

    let holding_peer = Slapd::start_with_suffix(SUFFIX, &ldif(Some(&peer)), false);
    for valexp in ["O", "o", "G", "g"] {
        let daemon = proxy_daemon(&setup, &holding_peer, valexp);
        assert_accepted(pool_client(&daemon, port, CLIENT));
    }
    assert_eq!(holding_peer.search_count(PEER_BASE), 4);

    let holding_other = Slapd::start_with_suffix(SUFFIX, &ldif(Some(&other)), false);
    for valexp in ["O", "o"] {
        let daemon = proxy_daemon(&setup, &holding_other, valexp);
        assert_rejected(
            pool_client(&daemon, port, CLIENT),
            "the directory holds other certificates than the peer's",
        );
    }

    let holding_none = Slapd::start_with_suffix(SUFFIX, &ldif(None), false);
    let daemon = proxy_daemon(&setup, &holding_none, "O");
    assert_rejected(
        pool_client(&daemon, port, CLIENT),
        "failed at O (the directory holds no certificate)",
    );
    drop(daemon);
    let daemon = proxy_daemon(&setup, &holding_none, "o");
    assert_accepted(pool_client(&daemon, port, CLIENT));
}

#[test]
fn stopped_directory_fails_closed() {
    let _serial = serial();
    let setup = Setup::create();
    let (_server, port) = setup.peer_server(&[]);
    let peer = write_der(&setup, "peer.der", &setup.peer_der());
    let mut slapd = Slapd::start_with_suffix(SUFFIX, &ldif(Some(&peer)), false);
    let strong = proxy_daemon(&setup, &slapd, "O");
    let weak = proxy_daemon(&setup, &slapd, "o");
    assert_accepted(pool_client(&strong, port, CLIENT));

    slapd.stop();
    for daemon in [&strong, &weak] {
        assert_rejected(
            pool_client(daemon, port, CLIENT),
            "the directory check of peer.dev.example failed",
        );
    }
}

/// Returns the zone of `DOMAIN` with an SRV record for the directory on `ldap_port` and a
/// TLSA record for it with the SHA-256 of `tlsa_certificate`.
fn directory_zone(signing: Signing, ldap_port: u16, tlsa_certificate: &[u8]) -> Zone {
    let digest = super::sha256_hex(tlsa_certificate);
    Zone::new(DOMAIN, signing)
        .record(&format!("_ldap._tcp IN SRV 0 0 {ldap_port} ldap.{DOMAIN}."))
        .record("ldap IN A 127.0.0.1")
        .record(&format!("_{ldap_port}._tcp.ldap IN TLSA 3 0 1 {digest}"))
}

/// Starts a daemon without `ldap_proxy` that asks `nsd` and validates with `valexp`.
fn discovery_daemon(setup: &Setup, nsd: &Nsd, valexp: &str) -> TestDaemon {
    let server = format!("dns_server {}", nsd.address());
    let rootkey = format!("dnssec_rootkey {}", nsd.trust_anchor().display());
    let default = format!("validate_default {valexp}");
    setup.start_daemon(&[&default, &server, &rootkey])
}

#[test]
fn srv_discovery_finds_dane_checked_directory() {
    let _serial = serial();
    let setup = Setup::create();
    let (_server, port) = setup.peer_server(&[]);
    let peer = write_der(&setup, "peer.der", &setup.peer_der());
    let slapd = Slapd::start_with_suffix(SUFFIX, &ldif(Some(&peer)), true);
    let slapd_certificate = slapd
        .certificate()
        .expect("slapd has a certificate")
        .to_vec();

    let nsd = Nsd::start(&[directory_zone(
        Signing::Signed,
        slapd.port(),
        &slapd_certificate,
    )]);
    let daemon = discovery_daemon(&setup, &nsd, "O");
    assert_accepted(pool_client(&daemon, port, CLIENT));
    assert_eq!(slapd.search_count(PEER_BASE), 1);
    let log = daemon.stderr();
    assert!(
        log.contains("directory server matches its tlsa record"),
        "{log}"
    );
}

#[test]
fn srv_discovery_rejects_unchecked_directory() {
    let _serial = serial();
    let setup = Setup::create();
    let (_server, port) = setup.peer_server(&[]);
    let peer = write_der(&setup, "peer.der", &setup.peer_der());

    // The TLSA record names another certificate than the one slapd presents.
    let slapd = Slapd::start_with_suffix(SUFFIX, &ldif(Some(&peer)), true);
    let nsd = Nsd::start(&[directory_zone(
        Signing::Signed,
        slapd.port(),
        &setup.ca_der(),
    )]);
    for valexp in ["O", "o"] {
        let daemon = discovery_daemon(&setup, &nsd, valexp);
        assert_rejected(
            pool_client(&daemon, port, CLIENT),
            "the directory check of peer.dev.example failed",
        );
        let log = daemon.stderr();
        assert!(
            log.contains("matches the server certificate"),
            "the log names the failed TLSA check:\n{log}"
        );
    }
    drop(nsd);

    // Without StartTLS the server cannot be authenticated at all.
    let plain = Slapd::start_with_suffix(SUFFIX, &ldif(Some(&peer)), false);
    let nsd = Nsd::start(&[directory_zone(
        Signing::Signed,
        plain.port(),
        &setup.ca_der(),
    )]);
    let daemon = discovery_daemon(&setup, &nsd, "O");
    assert_rejected(
        pool_client(&daemon, port, CLIENT),
        "the directory check of peer.dev.example failed",
    );
    let log = daemon.stderr();
    assert!(log.contains("does not offer StartTLS"), "{log}");
    drop(nsd);

    // An unsigned zone proves nothing about the directory.
    let parent = Zone::new("example", Signing::Signed);
    let child = directory_zone(
        Signing::Unsigned,
        slapd.port(),
        slapd.certificate().expect("slapd has a certificate"),
    );
    let nsd = Nsd::start(&[parent, child]);
    let daemon = discovery_daemon(&setup, &nsd, "o");
    assert_rejected(
        pool_client(&daemon, port, CLIENT),
        "the directory check of peer.dev.example failed: SRV lookup",
    );
    let log = daemon.stderr();
    assert!(log.contains("not DNSSEC-signed"), "{log}");
    assert_eq!(slapd.search_count(PEER_BASE), 0);
    assert_eq!(plain.search_count(PEER_BASE), 0);
}
