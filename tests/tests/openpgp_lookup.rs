//! Raw public keys of peers that the trust database does not list, which the built daemon finds
//! through the network. The sources are OPENPGPKEY records (RFC 7929) in a zone that nsd
//! serves under DNSSEC, `pgpKey` values in slapd, and DANE-EE TLSA records with the
//! SubjectPublicKeyInfo selector.
//!
//! `tlspool-admin dev-init --openpgp` makes the identity `alice@dev.example` and the external
//! peer `peer@dev.example`, whose key is in a file. The tests delete the peer's `pgp` entry
//! from the trust database, so only the online checks can bind its raw key to its address,
//! and disclose Alice to the host `peer.dev.example` too.
//! The pool runs as TLS client of `gnutls-serv`, which presents the raw key.
//!
//! Run through `scripts/netns-run.sh`, because `gnutls-serv` listens on every interface.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use tlspool_client::StartTlsRequest;
use tlspool_client::blocking::Client;
use tlspool_tests::bin_path;
use tlspool_tests::daemon::TestDaemon;
use tlspool_tests::dns::{Nsd, Signing, Zone};
use tlspool_tests::ldap::Slapd;
use tlspool_tests::memcached::Memcached;
use tlspool_tests::tls_peers::{Peer, free_port, gnutls_serv};
use tlspool_validate::openpgp::openpgpkey_owner_name;

const ALICE: &str = "alice@dev.example";
const PEER: &str = "peer@dev.example";
/// The host name under which the DANE tests publish the X.509 peer's key.
const PEER_HOST: &str = "peer.dev.example";
const DOMAIN: &str = "dev.example";
const PIN: &str = "43214321";
const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Priority string of `gnutls-serv`, which sends raw public keys only when they are enabled.
const RAW_KEY_PRIORITY: &str = "NORMAL:+CTYPE-CLI-RAWPK:+CTYPE-SRV-RAWPK";
/// The suffix of the directory of `DOMAIN`.
const SUFFIX: &str = "dc=dev,dc=example";

/// A dev-init setup whose trust database does not list the external peer's OpenPGP key.
struct Pki {
    _temp: tempfile::TempDir,
    dir: PathBuf,
}

/// Returns the setup of the process, made on first use.
fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(Pki::create)
}

/// Serialises the tests, which start several servers and daemons each, so that a loaded
/// machine runs one test's handshakes at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Pki {
    fn create() -> Self {
        let temp = tempfile::tempdir().expect("temporary directory");
        let dir = temp.path().join("pki");
        let output = Command::new(bin_path("tlspool-admin"))
            .args(["dev-init", dir.to_str().expect("UTF-8 path")])
            .args(["--domain", DOMAIN, "--pin", PIN, "--key-type", "p256"])
            .args(["--openpgp", ALICE])
            .output()
            .expect("run tlspool-admin dev-init");
        assert!(
            output.status.success(),
            "dev-init failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let summary = String::from_utf8_lossy(&output.stdout).into_owned();
        let pki = Self { _temp: temp, dir };
        let key = summary
            .lines()
            .find(|line| line.trim_start().starts_with(PEER))
            .and_then(|line| line.split_once("trust pgp "))
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no trust key for {PEER} in:\n{summary}"))
            .to_owned();
        pki.admin(&["trust", "delete", &key, "pgp"]);
        // Alice's OpenPGP identity makes the pool offer raw public keys to the host as well.
        pki.admin(&["disclose", "set", PEER_HOST, ALICE]);
        pki
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().expect("UTF-8 path").to_owned()
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
    }

    /// Runs `tlspool-admin ARGS` on this setup's databases.
    fn admin(&self, args: &[&str]) {
        let output = Command::new(bin_path("tlspool-admin"))
            .arg("-c")
            .arg(self.dir.join("tlspool.conf"))
            .args(args)
            .env("SOFTHSM2_CONF", self.dir.join("softhsm2.conf"))
            .output()
            .expect("run tlspool-admin");
        assert!(
            output.status.success(),
            "tlspool-admin {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts a daemon on the token with `valexp` as `validate_default` and the extra
    /// configuration `lines`.
    fn start_daemon(&self, valexp: &str, lines: &[String]) -> TestDaemon {
        let mut config = vec![
            format!("pkcs11_path {SOFTHSM_MODULE}"),
            format!("pkcs11_pin {PIN}"),
            format!("dbenv_dir {}", self.path("db")),
            format!("validate_default {valexp}"),
        ];
        config.extend(lines.iter().cloned());
        let config: Vec<&str> = config.iter().map(String::as_str).collect();
        let conf = self.dir.join("softhsm2.conf");
        TestDaemon::start_with_env(&config, &[("SOFTHSM2_CONF", conf.as_path())])
    }

    /// Starts `gnutls-serv --echo` that presents the external OpenPGP peer's raw key.
    fn openpgp_peer(&self) -> (Peer, u16) {
        let key = self.path("peer-openpgp-key.pem");
        let spki = self.path("peer-openpgp-spki.pem");
        raw_key_server(&key, &spki)
    }

    /// Starts `gnutls-serv --echo` that presents the key of the X.509 peer certificate as a
    /// raw key, and returns it with the key's DER SubjectPublicKeyInfo.
    fn x509_key_peer(&self) -> (Peer, u16, Vec<u8>) {
        let cert = self.path("peer-cert.pem");
        let pem = openssl(&["x509", "-noout", "-pubkey", "-in", &cert], None);
        let spki_pem = self.dir.join("peer-x509-spki.pem");
        std::fs::write(&spki_pem, &pem).expect("write the public key");
        let spki_pem = spki_pem.to_str().expect("UTF-8 path");
        let der = openssl(
            &["pkey", "-pubin", "-outform", "DER", "-in", spki_pem],
            None,
        );
        let (server, port) = raw_key_server(&self.path("peer-key.pem"), spki_pem);
        (server, port, der)
    }

    /// Returns the DER SubjectPublicKeyInfo of the external OpenPGP peer's key.
    fn openpgp_peer_spki(&self) -> Vec<u8> {
        let pem = self.path("peer-openpgp-spki.pem");
        openssl(&["pkey", "-pubin", "-outform", "DER", "-in", &pem], None)
    }
}

/// Starts `gnutls-serv --echo` with the raw key pair in the PEM files `key` and `spki`.
fn raw_key_server(key: &str, spki: &str) -> (Peer, u16) {
    let port = free_port();
    let args = [
        "--echo",
        "--rawpkkeyfile",
        key,
        "--rawpkfile",
        spki,
        "--priority",
        RAW_KEY_PRIORITY,
    ];
    (gnutls_serv(port, &args), port)
}

/// Runs openssl with `input` on its standard input and returns its standard output.
fn openssl(args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write as _;
    use std::process::Stdio;

    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl");
    let mut stdin = child.stdin.take().expect("openssl stdin");
    if let Some(input) = input {
        stdin.write_all(input).expect("write to openssl");
    }
    drop(stdin);
    let output = child.wait_with_output().expect("wait for openssl");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Encodes `data` as one line of base64, as zone files and LDIF take binary values.
fn base64(data: &[u8]) -> String {
    let encoded = openssl(&["base64", "-A"], Some(data));
    String::from_utf8(encoded)
        .expect("base64 is ASCII")
        .trim()
        .to_owned()
}

/// Returns the lowercase hexadecimal SHA-256 digest of `data`.
fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Returns the zone-file line of the OPENPGPKEY record of `PEER` holding `key`, relative to
/// the origin `DOMAIN`.
fn openpgpkey_record(key: &[u8]) -> String {
    let owner = openpgpkey_owner_name("peer", DOMAIN);
    let relative = owner
        .strip_suffix(&format!(".{DOMAIN}"))
        .expect("the owner is below the domain");
    format!("{relative} IN OPENPGPKEY {}", base64(key))
}

/// Returns the configuration lines that make the daemon ask `nsd` and trust its zones' keys.
fn dns_lines(nsd: &Nsd) -> Vec<String> {
    vec![
        format!("dns_server {}", nsd.address()),
        format!("dnssec_rootkey {}", nsd.trust_anchor().display()),
    ]
}

/// Runs STARTTLS as `ALICE` to the server on `port` for `remote_id`, with the given cache
/// flag, and returns the authenticated remote identity after an echo, or the error text.
fn connect(
    daemon: &TestDaemon,
    port: u16,
    remote_id: &str,
    ignore_caches: bool,
) -> Result<String, String> {
    let control = Client::connect(Some(daemon.socket_path())).expect("connect to the daemon");
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect to gnutls-serv");
    let mut builder = StartTlsRequest::client(remote_id);
    builder.local_id(ALICE).timeout(STEP_TIMEOUT);
    if ignore_caches {
        builder.flags(tlspool_proto::StartTlsFlags::IGNORE_CACHES);
    }
    let request = builder.build().expect("client request");
    let connection = control
        .starttls(tcp, &request)
        .map_err(|error| error.to_string())?;
    let mut plaintext = connection.plaintext;
    echo(&mut plaintext);
    Ok(connection.remote_id)
}

/// Sends a line through the pool to the echoing peer and checks that it comes back.
fn echo(plaintext: &mut std::os::unix::net::UnixStream) {
    use std::io::{Read as _, Write as _};

    plaintext
        .set_read_timeout(Some(STEP_TIMEOUT))
        .expect("timeout");
    plaintext.write_all(b"raw key\n").expect("write plaintext");
    let mut line = [0u8; 8];
    plaintext.read_exact(&mut line).expect("read the echo");
    assert_eq!(&line, b"raw key\n");
}

/// Asserts that `result` is a rejection whose message contains `fragment`.
fn assert_rejected(result: Result<String, String>, fragment: &str, daemon: &TestDaemon) {
    match result {
        Ok(remote_id) => panic!("the daemon accepted the peer as {remote_id}"),
        Err(error) => assert!(
            error.contains(fragment),
            "expected {fragment:?} in {error:?}\n{}",
            daemon.stderr()
        ),
    }
}

#[test]
fn openpgpkey_match_is_accepted() {
    let _serial = serial();
    let pki = pki();
    let (_server, port) = pki.openpgp_peer();
    let zone = Zone::new(DOMAIN, Signing::Signed)
        .record(&openpgpkey_record(&pki.read("peer-openpgp.pgp")));
    let nsd = Nsd::start(&[zone]);

    for valexp in ["D", "d"] {
        let daemon = pki.start_daemon(valexp, &dns_lines(&nsd));
        let result = connect(&daemon, port, PEER, false);
        assert_eq!(result, Ok(PEER.to_owned()), "{valexp}\n{}", daemon.stderr());
    }
}

#[test]
fn openpgpkey_without_trust_entry_fails_default() {
    let _serial = serial();
    let pki = pki();
    let (_server, port) = pki.openpgp_peer();
    let zone = Zone::new(DOMAIN, Signing::Signed)
        .record(&openpgpkey_record(&pki.read("peer-openpgp.pgp")));
    let nsd = Nsd::start(&[zone]);

    // The default expression needs a key of the trust database, and DNS adds none.
    let daemon = pki.start_daemon("IT&", &dns_lines(&nsd));
    assert_rejected(
        connect(&daemon, port, PEER, false),
        "no trusted OpenPGP key of peer@dev.example",
        &daemon,
    );
}

/// Serves `zones` and asserts that the daemon rejects the OpenPGP peer under both `D` and
/// `d` with a message containing `fragment`.
fn assert_openpgpkey_rejected(pki: &Pki, zones: &[Zone], fragment: &str) {
    let (_server, port) = pki.openpgp_peer();
    let nsd = Nsd::start(zones);
    for valexp in ["D", "d"] {
        let daemon = pki.start_daemon(valexp, &dns_lines(&nsd));
        assert_rejected(connect(&daemon, port, PEER, false), fragment, &daemon);
    }
}

#[test]
fn openpgpkey_mismatch_is_rejected() {
    let _serial = serial();
    let pki = pki();
    // Alice's key has another key and no user ID of the peer. The revoked copy of the
    // peer's own key has the right key, but it is revoked.
    for file in [
        format!("{ALICE}.pgp"),
        "peer-openpgp-revoked.pgp".to_owned(),
    ] {
        let zone = Zone::new(DOMAIN, Signing::Signed).record(&openpgpkey_record(&pki.read(&file)));
        assert_openpgpkey_rejected(
            pki,
            &[zone],
            "no OPENPGPKEY or TLSA record matches the raw key",
        );
    }
}

#[test]
fn openpgpkey_bogus_zone_is_rejected() {
    let _serial = serial();
    let pki = pki();
    let zone = Zone::new(DOMAIN, Signing::BadOpenPgpKeySignature)
        .record(&openpgpkey_record(&pki.read("peer-openpgp.pgp")));
    assert_openpgpkey_rejected(
        pki,
        &[zone],
        "OPENPGPKEY of peer@dev.example failed DNSSEC validation",
    );
}

#[test]
fn openpgpkey_unsigned_zone_gives_no_key() {
    let _serial = serial();
    let pki = pki();
    let parent = Zone::new("example", Signing::Signed);
    let child = Zone::new(DOMAIN, Signing::Unsigned)
        .record(&openpgpkey_record(&pki.read("peer-openpgp.pgp")));
    // An unsigned zone proves nothing, so not even the weak predicate accepts the key.
    assert_openpgpkey_rejected(
        pki,
        &[parent, child],
        "OPENPGPKEY of peer@dev.example is not DNSSEC-signed",
    );
}

#[test]
fn openpgpkey_result_is_cached() {
    let _serial = serial();
    let pki = pki();
    let (_server, port) = pki.openpgp_peer();
    let zone = Zone::new(DOMAIN, Signing::Signed)
        .record(&openpgpkey_record(&pki.read("peer-openpgp.pgp")));
    let nsd = Nsd::start(&[zone]);
    let memcached = Memcached::start();
    let mut lines = dns_lines(&nsd);
    lines.push("memcache_host 127.0.0.1".to_owned());
    lines.push(format!("memcache_port {}", memcached.port()));
    let daemon = pki.start_daemon("D", &lines);

    assert_eq!(connect(&daemon, port, PEER, false), Ok(PEER.to_owned()));
    assert_eq!(connect(&daemon, port, PEER, false), Ok(PEER.to_owned()));
    let log = daemon.stderr();
    let openpgpkey_hit = log.lines().any(|line| {
        line.contains("online check answered from the cache")
            && line.contains("kind=\"openpgpkey\"")
    });
    assert!(openpgpkey_hit, "the second lookup is a cache hit:\n{log}");
    let hits = log.matches("online check answered from the cache").count();
    assert_eq!(connect(&daemon, port, PEER, true), Ok(PEER.to_owned()));
    let log = daemon.stderr();
    assert_eq!(
        log.matches("online check answered from the cache").count(),
        hits,
        "IGNORE_CACHES bypasses the cache:\n{log}"
    );
}

#[test]
fn directory_pgp_key_is_accepted() {
    let _serial = serial();
    let pki = pki();
    let (_server, port) = pki.openpgp_peer();
    let entry = |key: &[u8]| {
        format!(
            "dn: {SUFFIX}\nobjectClass: domain\ndc: dev\n\n\
             dn: uid=peer,{SUFFIX}\nobjectClass: inetOrgPerson\nobjectClass: pgpKeyInfo\n\
             uid: peer\ncn: Peer\nsn: P\npgpKey:: {}\n",
            base64(key)
        )
    };

    let holding_peer =
        Slapd::start_with_suffix(SUFFIX, &entry(&pki.read("peer-openpgp.pgp")), false);
    for valexp in ["O", "G"] {
        let proxy = vec![format!("ldap_proxy {}", holding_peer.url())];
        let daemon = pki.start_daemon(valexp, &proxy);
        let result = connect(&daemon, port, PEER, false);
        assert_eq!(result, Ok(PEER.to_owned()), "{valexp}\n{}", daemon.stderr());
    }

    let holding_alice =
        Slapd::start_with_suffix(SUFFIX, &entry(&pki.read(&format!("{ALICE}.pgp"))), false);
    let proxy = vec![format!("ldap_proxy {}", holding_alice.url())];
    for valexp in ["O", "o"] {
        let daemon = pki.start_daemon(valexp, &proxy);
        assert_rejected(
            connect(&daemon, port, PEER, false),
            "the directory holds other certificates than the peer's",
            &daemon,
        );
    }
}

#[test]
fn dane_ee_raw_key_is_accepted() {
    let _serial = serial();
    let pki = pki();
    let (server, port, spki) = pki.x509_key_peer();
    let tlsa = |data: &[u8]| format!("_{port}._tcp.peer IN TLSA 3 1 1 {}", sha256_hex(data));

    let matching = Nsd::start(&[Zone::new(DOMAIN, Signing::Signed).record(&tlsa(&spki))]);
    let daemon = pki.start_daemon("D", &dns_lines(&matching));
    let result = connect(&daemon, port, PEER_HOST, false);
    assert_eq!(
        result,
        Ok(PEER_HOST.to_owned()),
        "{}\ngnutls-serv:\n{}",
        daemon.stderr(),
        server.output()
    );
    drop(daemon);
    drop(matching);

    // A record for another key, and a record of the right key under a usage that a raw key
    // cannot meet, are both no match.
    let other = tlsa(&pki.openpgp_peer_spki());
    let wrong_usage = format!("_{port}._tcp.peer IN TLSA 2 1 1 {}", sha256_hex(&spki));
    for record in [other, wrong_usage] {
        let nsd = Nsd::start(&[Zone::new(DOMAIN, Signing::Signed).record(&record)]);
        let daemon = pki.start_daemon("D", &dns_lines(&nsd));
        assert_rejected(
            connect(&daemon, port, PEER_HOST, false),
            "no OPENPGPKEY or TLSA record matches the raw key",
            &daemon,
        );
    }
}
