//! Validation expressions through the built daemon, with the pool as TLS client of
//! `gnutls-serv` on loopback: the secure default, an anchor's expression set with
//! `tlspool-admin trust set`, `P` against a pin entry, and `D` without a DNSSEC trust anchor.
//! Identities come from `tlspool-admin dev-init`.
//!
//! Run through `scripts/netns-run.sh`, because `gnutls-serv` listens on every interface.

use std::net::TcpStream;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tlspool_proto::blocking::RecordStream;
use tlspool_proto::{
    ErrorPayload, FixedString, Identity, Payload, Record, StartTls, StartTlsFlags,
};
use tlspool_tests::bin_path;
use tlspool_tests::daemon::TestDaemon;
use tlspool_tests::tls_peers::{Peer, free_port, gnutls_serv};

const DOMAIN: &str = "dev.example";
const PEER: &str = "peer.dev.example";
const PIN: &str = "43214321";
const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// `EKEYREJECTED`, the `errno` of a rejected peer.
const EKEYREJECTED: i32 = 129;

const CLIENT: StartTlsFlags =
    StartTlsFlags::LOCALROLE_CLIENT.union(StartTlsFlags::REMOTEROLE_SERVER);

/// A dev-init setup. Each test makes its own, because tests change its trust database.
struct Setup {
    _temp: tempfile::TempDir,
    dir: PathBuf,
}

impl Setup {
    fn create() -> Self {
        let temp = tempfile::tempdir().expect("temporary directory");
        let dir = temp.path().join("pki");
        let output = Command::new(bin_path("tlspool-admin"))
            .args(["dev-init", dir.to_str().expect("UTF-8 path")])
            .args(["--domain", DOMAIN, "--pin", PIN])
            .output()
            .expect("run tlspool-admin dev-init");
        assert!(
            output.status.success(),
            "dev-init failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self { _temp: temp, dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().expect("UTF-8 path").to_owned()
    }

    /// Runs `tlspool-admin` on the setup's configuration and returns its output.
    fn admin(&self, args: &[&str]) -> String {
        let config = self.path("tlspool.conf");
        let output = Command::new(bin_path("tlspool-admin"))
            .args(["-c", &config])
            .args(args)
            .output()
            .expect("run tlspool-admin");
        assert!(
            output.status.success(),
            "tlspool-admin {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Replaces the expression of the test CA's anchor entry with `valexp`.
    fn set_anchor_valexp(&self, valexp: &str) {
        let listed = self.admin(&["trust", "list"]);
        let key = listed
            .lines()
            .find(|line| line.split('\t').nth(1) == Some("x509"))
            .and_then(|line| line.split('\t').next())
            .expect("dev-init stores an anchor for the test CA")
            .to_owned();
        let anchor = self.path("anchor.der");
        self.admin(&["trust", "get", &key, "x509", "-o", &anchor]);
        self.admin(&["trust", "set", "x509,client,server", &key, valexp, &anchor]);
    }

    /// Pins the peer's certificate for local clients (the role that trusts it), without
    /// expiry.
    fn pin_peer(&self) {
        let der = self.path("peer-cert.der");
        // The file holds the chain; openssl converts its first certificate only.
        let converted = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(self.path("peer-cert.pem"))
            .args(["-out", &der])
            .status()
            .expect("run openssl x509");
        assert!(
            converted.success(),
            "openssl could not convert the peer certificate"
        );
        let digest = Command::new("sha256sum")
            .arg(&der)
            .output()
            .expect("run sha256sum");
        let text = String::from_utf8_lossy(&digest.stdout).into_owned();
        let fingerprint = text
            .split_whitespace()
            .next()
            .expect("sha256sum prints a digest");
        let no_expiry = self.path("no-expiry.bin");
        std::fs::write(&no_expiry, b"").expect("write the pin data");
        self.admin(&[
            "trust",
            "set",
            "pinned,x509,client",
            fingerprint,
            "1",
            &no_expiry,
        ]);
    }

    fn start_daemon(&self, extra: &[&str]) -> TestDaemon {
        let mut lines = vec![
            format!("pkcs11_path {SOFTHSM_MODULE}"),
            format!("pkcs11_pin {PIN}"),
            format!("dbenv_dir {}", self.path("db")),
        ];
        lines.extend(extra.iter().map(|line| (*line).to_owned()));
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let conf = self.dir.join("softhsm2.conf");
        // SoftHSM fails C_GetTokenInfo now and then when several daemons start at once.
        static STARTING: Mutex<()> = Mutex::new(());
        let _starting = STARTING.lock().unwrap_or_else(PoisonError::into_inner);
        TestDaemon::start_with_env(&lines, &[("SOFTHSM2_CONF", conf.as_path())])
    }

    fn peer_server(&self) -> (Peer, u16) {
        let port = free_port();
        let cert = self.path("peer-cert.pem");
        let key = self.path("peer-key.pem");
        let server = gnutls_serv(
            port,
            &["--echo", "--x509certfile", &cert, "--x509keyfile", &key],
        );
        (server, port)
    }
}

/// Serialises the tests: each starts a daemon on the SoftHSM token of its own setup, and
/// dev-init with SoftHSM is slow enough that running them at once only adds contention.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: OnceLock<Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| Mutex::new(()))
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Runs STARTTLS as client of the server on `port` for `PEER`, answering PLAINTEXT_CONNECT,
/// and returns the final reply or the ERROR.
fn pool_client(
    daemon: &TestDaemon,
    port: u16,
    flags: StartTlsFlags,
) -> Result<StartTls, ErrorPayload> {
    let mut stream = RecordStream::connect(daemon.socket_path()).expect("connect to the daemon");
    stream
        .get_ref()
        .set_read_timeout(Some(STEP_TIMEOUT))
        .expect("read timeout");
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect to the TLS server");
    let record = Record::new(
        1,
        Payload::StartTls(StartTls {
            flags,
            local: 0,
            ipproto: 6,
            streamid: 0,
            localid: Identity::new("").expect("localid fits"),
            remoteid: Identity::new(PEER).expect("remoteid fits"),
            ctlkey: [7; 16],
            service: FixedString::new("generic").expect("service fits"),
            timeout: 10_000,
        }),
    );
    stream
        .send_record(&record, Some(tcp.as_fd()))
        .expect("send STARTTLS");
    drop(tcp);
    let mut plaintext = Vec::new();
    loop {
        let frame = stream
            .recv()
            .expect("receive from the daemon")
            .expect("the daemon closed the connection");
        let reply = frame.decode().expect("decode the record");
        match reply.payload {
            Payload::PlaintextConnect(params) => {
                let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
                let mut answer = Record::new(reply.reqid, Payload::PlaintextConnect(params));
                answer.cbid = reply.cbid;
                stream
                    .send_record(&answer, Some(theirs.as_fd()))
                    .expect("answer PLAINTEXT_CONNECT");
                plaintext.push(ours);
            }
            Payload::StartTls(params) => return Ok(params),
            Payload::Error(error) => return Err(error),
            other => panic!("unexpected record from the daemon: {other:?}"),
        }
    }
}

fn assert_rejected(result: Result<StartTls, ErrorPayload>, fragment: &str) {
    let error = result.expect_err("the daemon rejects the peer");
    assert_eq!(error.tlserrno, EKEYREJECTED, "{}", error.message);
    assert!(
        error.message.contains(fragment),
        "expected {fragment:?} in {:?}",
        error.message
    );
}

#[test]
fn default_expression_accepts_trusted_peer() {
    let _serial = serial();
    let setup = Setup::create();
    let daemon = setup.start_daemon(&[]);
    let (_server, port) = setup.peer_server();

    let reply = pool_client(&daemon, port, CLIENT).expect("the default accepts the peer");
    assert_eq!(reply.remoteid.as_str(), PEER);
    let log = daemon.stderr();
    assert!(
        log.contains("validation expression accepted the peer"),
        "{log}"
    );
    assert!(
        log.contains("IT&"),
        "the log names the default expression:\n{log}"
    );
}

#[test]
fn anchor_expression_decides_peer() {
    let _serial = serial();
    let setup = Setup::create();
    let (_server, port) = setup.peer_server();

    // Q (quantum-proof encryption) is never true, so the anchor rejects its peers.
    setup.set_anchor_valexp("TQ&");
    let daemon = setup.start_daemon(&[]);
    let result = pool_client(&daemon, port, CLIENT);
    assert_rejected(result, "validation expression `TQ&` failed at Q");
    let log = daemon.stderr();
    assert!(
        log.contains("validation expression rejected the peer"),
        "{log}"
    );
    assert!(
        log.contains("Q=0"),
        "the log lists the decided predicates:\n{log}"
    );
    drop(daemon);

    // F holds for TLS 1.3 with an ECDHE key share.
    setup.set_anchor_valexp("IF&");
    let daemon = setup.start_daemon(&[]);
    let reply = pool_client(&daemon, port, CLIENT).expect("IF& accepts the peer");
    assert_eq!(reply.remoteid.as_str(), PEER);
}

#[test]
fn pin_entry_decides_p() {
    let _serial = serial();
    let setup = Setup::create();
    let (_server, port) = setup.peer_server();

    let daemon = setup.start_daemon(&["validate_default P"]);
    assert_rejected(
        pool_client(&daemon, port, CLIENT),
        "failed at P (pin status NotFound)",
    );
    drop(daemon);

    setup.pin_peer();
    let daemon = setup.start_daemon(&["validate_default P"]);
    let reply = pool_client(&daemon, port, CLIENT).expect("the pin accepts the peer");
    assert_eq!(reply.remoteid.as_str(), PEER);
}

#[test]
fn dane_without_trust_anchor_fails_closed() {
    let _serial = serial();
    let setup = Setup::create();
    let (_server, port) = setup.peer_server();
    let missing = setup.path("missing-root.key");
    let rootkey = format!("dnssec_rootkey {missing}");

    let daemon = setup.start_daemon(&["validate_default Dd|", &rootkey]);
    let result = pool_client(&daemon, port, CLIENT);
    assert_rejected(result, "validation expression `Dd|` failed at");
    let log = daemon.stderr();
    assert!(
        log.contains("does not exist"),
        "the log says why DANE is off:\n{log}"
    );
}

#[test]
fn invalid_anchor_expression_rejects() {
    let _serial = serial();
    let setup = Setup::create();
    let (_server, port) = setup.peer_server();

    setup.set_anchor_valexp("T&");
    let daemon = setup.start_daemon(&[]);
    assert_rejected(
        pool_client(&daemon, port, CLIENT),
        "validation expression `T&` of the trust anchor is invalid",
    );
    let log = daemon.stderr();
    assert!(
        log.contains("invalid validation expression, so the peer is rejected"),
        "{log}"
    );
}
