//! memcached in front of the daemon's online checks: a repeated handshake is decided from the
//! cache without a directory search or a TLSA lookup, `IGNORE_CACHES` bypasses it, and a
//! stopped memcached only makes the checks run uncached.

use tlspool_proto::StartTlsFlags;
use tlspool_tests::daemon::TestDaemon;
use tlspool_tests::dns::{Nsd, Signing, Zone};
use tlspool_tests::ldap::Slapd;
use tlspool_tests::memcached::Memcached;

use super::directory::{PEER_BASE, SUFFIX, ldif, write_der};
use super::{CLIENT, DOMAIN, Setup, assert_accepted, assert_rejected, pool_client, serial};

/// The log line of a check that the cache decided.
const CACHE_HIT: &str = "online check answered from the cache";

/// Returns how often `needle` occurs in the daemon's log.
fn log_count(daemon: &TestDaemon, needle: &str) -> usize {
    daemon.stderr().matches(needle).count()
}

#[test]
fn cache_serves_repeated_directory_check() {
    let _serial = serial();
    let setup = Setup::create();
    let (_server, port) = setup.peer_server(&[]);
    let peer = write_der(&setup, "peer.der", &setup.peer_der());
    let mut slapd = Slapd::start_with_suffix(SUFFIX, &ldif(Some(&peer)), false);
    let mut memcached = Memcached::start();
    let daemon = setup.start_daemon(&[
        "validate_default O",
        &format!("ldap_proxy {}", slapd.url()),
        "memcache_host 127.0.0.1",
        &format!("memcache_port {}", memcached.port()),
    ]);

    assert_accepted(pool_client(&daemon, port, CLIENT));
    assert_eq!(slapd.search_count(PEER_BASE), 1);
    assert_eq!(log_count(&daemon, CACHE_HIT), 0);

    // The same peer again: the cache decides O, and slapd sees no search.
    assert_accepted(pool_client(&daemon, port, CLIENT));
    assert_eq!(slapd.search_count(PEER_BASE), 1);
    assert_eq!(log_count(&daemon, CACHE_HIT), 1);
    assert!(daemon.stderr().contains("cache hit"), "{}", daemon.stderr());

    let ignoring = CLIENT.union(StartTlsFlags::IGNORE_CACHES);
    assert_accepted(pool_client(&daemon, port, ignoring));
    assert_eq!(slapd.search_count(PEER_BASE), 2);
    assert_eq!(log_count(&daemon, CACHE_HIT), 1);
    assert!(
        daemon.stderr().contains("bypasses the cache"),
        "{}",
        daemon.stderr()
    );

    // Without memcached the check runs live, with a warning.
    memcached.stop();
    assert_accepted(pool_client(&daemon, port, CLIENT));
    assert_eq!(slapd.search_count(PEER_BASE), 3);
    assert_eq!(log_count(&daemon, CACHE_HIT), 1);
    let log = daemon.stderr();
    assert!(
        log.contains("memcached unreachable, online checks run uncached"),
        "{log}"
    );

    // Neither cache nor directory: the peer is rejected, not accepted on stale grounds.
    slapd.stop();
    assert_rejected(
        pool_client(&daemon, port, CLIENT),
        "the directory check of peer.dev.example failed",
    );
}

#[test]
fn cache_serves_repeated_dane_check() {
    let _serial = serial();
    let setup = Setup::create();
    let (_server, port) = setup.peer_server(&[]);
    let digest = super::sha256_hex(&setup.peer_spki());
    let record = format!("_{port}._tcp.peer IN TLSA 3 1 1 {digest}");
    let nsd = Nsd::start(&[Zone::new(DOMAIN, Signing::Signed).record(&record)]);
    let memcached = Memcached::start();
    let daemon = setup.start_daemon(&[
        "validate_default D",
        &format!("dns_server {}", nsd.address()),
        &format!("dnssec_rootkey {}", nsd.trust_anchor().display()),
        "memcache_host 127.0.0.1",
        &format!("memcache_port {}", memcached.port()),
    ]);

    assert_accepted(pool_client(&daemon, port, CLIENT));
    assert_eq!(log_count(&daemon, "tlsa record matches"), 1);
    assert_eq!(log_count(&daemon, CACHE_HIT), 0);

    // The cached match decides D again without a TLSA lookup.
    drop(nsd);
    assert_accepted(pool_client(&daemon, port, CLIENT));
    assert_eq!(log_count(&daemon, "tlsa record matches"), 1);
    assert_eq!(log_count(&daemon, CACHE_HIT), 1);

    // Bypassing the cache needs the DNS server, which is gone: the peer is rejected.
    let ignoring = CLIENT.union(StartTlsFlags::IGNORE_CACHES);
    assert_rejected(pool_client(&daemon, port, ignoring), "the TLSA lookup of");
}
