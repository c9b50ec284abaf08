//! Fail-closed policy of the built daemon: a requested remote identity is checked even when
//! the validation expression is `1`, an empty or unparseable expression never accepts a peer,
//! and a plaintext descriptor that cannot carry the session is rejected before the final
//! STARTTLS reply. The pool runs as TLS client of `gnutls-serv` on loopback, with identities
//! from `tlspool-admin dev-init`.
//!
//! Run through `scripts/netns-run.sh`, because `gnutls-serv` listens on every interface.

use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tlspool_proto::blocking::RecordStream;
use tlspool_proto::{
    ErrorCode, ErrorPayload, FixedString, Identity, Payload, Record, StartTls, StartTlsFlags,
};
use tlspool_tests::bin_path;
use tlspool_tests::daemon::{TestDaemon, daemon_binary};
use tlspool_tests::tls_peers::{Peer, free_port, gnutls_serv};

const DOMAIN: &str = "dev.example";
const PEER: &str = "peer.dev.example";
const OTHER: &str = "totally.other.dev.example";
const PIN: &str = "43214321";
const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// `EACCES`, the `errno` of a peer that does not carry the requested remote identity.
const EACCES: i32 = 13;

const CLIENT: StartTlsFlags =
    StartTlsFlags::LOCALROLE_CLIENT.union(StartTlsFlags::REMOTEROLE_SERVER);

/// A dev-init setup of its own for each test, because tests change its databases.
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

    /// Runs `tlspool-admin` on the setup's configuration.
    fn run_admin(&self, args: &[&str]) -> Output {
        Command::new(bin_path("tlspool-admin"))
            .args(["-c", &self.path("tlspool.conf")])
            .args(args)
            .output()
            .expect("run tlspool-admin")
    }

    /// Stores `valexp` as the validation expression of the local identity `dev.example`.
    fn set_local_valexp(&self, valexp: &str) {
        let output = self.run_admin(&[
            "localid",
            "set",
            DOMAIN,
            "valexp,client,server",
            valexp,
            "/dev/null",
        ]);
        assert!(
            output.status.success(),
            "localid set {valexp:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
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

/// Serialises the tests, because dev-init and the daemons share one SoftHSM installation.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: OnceLock<Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| Mutex::new(()))
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// The plaintext descriptor a test answers PLAINTEXT_CONNECT with.
enum Plaintext {
    /// One end of a fresh stream socketpair, the usable kind.
    StreamPair,
    /// `/dev/null`.
    DevNull,
    /// The client's own end of its control connection.
    ControlConnection,
}

/// Runs STARTTLS as client of the server on `port` for `remote_id`, answering
/// PLAINTEXT_CONNECT with `plaintext`, and returns the final reply or the ERROR.
fn pool_client(
    daemon: &TestDaemon,
    port: u16,
    remote_id: &str,
    plaintext: Plaintext,
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
            flags: CLIENT,
            local: 0,
            ipproto: 6,
            streamid: 0,
            localid: Identity::new("").expect("localid fits"),
            remoteid: Identity::new(remote_id).expect("remoteid fits"),
            ctlkey: [7; 16],
            service: FixedString::new("generic").expect("service fits"),
            timeout: 10_000,
        }),
    );
    stream
        .send_record(&record, Some(tcp.as_fd()))
        .expect("send STARTTLS");
    drop(tcp);
    let mut kept: Vec<OwnedFd> = Vec::new();
    loop {
        let frame = stream
            .recv()
            .expect("receive from the daemon")
            .expect("the daemon closed the connection");
        let reply = frame.decode().expect("decode the record");
        match reply.payload {
            Payload::PlaintextConnect(params) => {
                let mut answer = Record::new(reply.reqid, Payload::PlaintextConnect(params));
                answer.cbid = reply.cbid;
                let null;
                let pair;
                let fd: BorrowedFd<'_> = match plaintext {
                    Plaintext::StreamPair => {
                        pair = UnixStream::pair().expect("socketpair");
                        pair.1.as_fd()
                    }
                    Plaintext::DevNull => {
                        null = std::fs::File::open("/dev/null").expect("open /dev/null");
                        null.as_fd()
                    }
                    Plaintext::ControlConnection => stream.get_ref().as_fd(),
                };
                let fd = fd
                    .try_clone_to_owned()
                    .expect("dup the plaintext descriptor");
                stream
                    .send_record(&answer, Some(fd.as_fd()))
                    .expect("answer PLAINTEXT_CONNECT");
                kept.push(fd);
            }
            Payload::StartTls(params) => return Ok(params),
            Payload::Error(error) => return Err(error),
            other => panic!("unexpected record from the daemon: {other:?}"),
        }
    }
}

/// Runs the daemon in the foreground on `config_lines` and returns its output.
fn run_daemon_once(directory: &std::path::Path, config_lines: &str) -> Output {
    let config = directory.join("bad.conf");
    std::fs::write(&config, config_lines).expect("write the configuration");
    Command::new(daemon_binary())
        .arg("-f")
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .expect("run tlspool")
}

#[test]
fn expression_one_still_checks_remote_id() {
    let _serial = serial();
    let setup = Setup::create();
    setup.set_local_valexp("1");
    let daemon = setup.start_daemon(&[]);
    let (_server, port) = setup.peer_server();

    let error = pool_client(&daemon, port, OTHER, Plaintext::StreamPair)
        .expect_err("a peer without the requested name is rejected");
    assert_eq!(error.tlserrno, EACCES, "{}", error.message);
    assert!(
        error.message.contains(OTHER),
        "the message names the requested identity: {}",
        error.message
    );
    let log = daemon.stderr();
    assert!(
        log.contains("does not authenticate as the requested remote identity"),
        "{log}"
    );

    let reply = pool_client(&daemon, port, PEER, Plaintext::StreamPair)
        .expect("1 accepts a peer that carries the requested name");
    assert_eq!(reply.remoteid.as_str(), PEER);
}

#[test]
fn admin_rejects_empty_and_invalid_valexp() {
    let _serial = serial();
    let setup = Setup::create();
    for (valexp, fragment) in [
        ("", "the validation expression is empty"),
        ("  ", "the validation expression is empty"),
        ("((", "invalid validation expression"),
        ("T&", "invalid validation expression"),
    ] {
        let output = setup.run_admin(&[
            "localid",
            "set",
            DOMAIN,
            "valexp,client,server",
            valexp,
            "/dev/null",
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{valexp:?} was stored");
        assert!(stderr.contains(fragment), "{valexp:?}: {stderr}");
    }
    let listed = setup.run_admin(&["localid", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        !listed.contains("valexp"),
        "no expression was stored:\n{listed}"
    );
}

#[test]
fn admin_rejects_nop11_valexp() {
    let _serial = serial();
    let setup = Setup::create();
    let output = setup.run_admin(&[
        "localid",
        "set",
        DOMAIN,
        "valexp,client,nop11",
        "",
        "/dev/null",
    ]);
    assert!(!output.status.success(), "a nop11 valexp was stored");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot be nop11"), "{stderr}");
}

#[test]
fn unparseable_validate_default_stops_start() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let socket = directory.path().join("tlspool.sock");
    let text = format!(
        "log_stderr YES\nsocket_name {}\nvalidate_default IT&\nvalidate_default ((\n",
        socket.display()
    );
    let output = run_daemon_once(directory.path(), &text);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bad.conf:4:"), "{stderr}");
    assert!(stderr.contains("validate_default"), "{stderr}");
    assert!(stderr.contains("\"((\""), "{stderr}");
    assert!(!socket.exists(), "no socket from a bad configuration");
}

#[test]
fn valid_validate_default_starts() {
    let daemon = TestDaemon::start(&["validate_default IT&"]);
    let reply = daemon.ping(3);
    assert_eq!(reply.reqid, 3);
}

#[test]
fn unusable_plaintext_descriptors_are_rejected() {
    let _serial = serial();
    let setup = Setup::create();
    let daemon = setup.start_daemon(&[]);
    let (_server, port) = setup.peer_server();
    let reject = |plaintext, fragment: &str| {
        let error = pool_client(&daemon, port, PEER, plaintext)
            .expect_err("the daemon rejects the plaintext descriptor");
        assert_eq!(
            error.error_code(),
            Some(ErrorCode::PlainSocketNeeded),
            "{}",
            error.message
        );
        assert!(
            error.message.contains(fragment),
            "expected {fragment:?} in {:?}",
            error.message
        );
    };

    // The first request opens what the daemon keeps for later ones, so the count starts after.
    reject(Plaintext::DevNull, "it is not a socket");
    let before = daemon.settled_fd_count();
    reject(
        Plaintext::ControlConnection,
        "it is connected to the TLS Pool control socket",
    );
    reject(Plaintext::DevNull, "it is not a socket");
    let after = daemon.wait_fd_count(before, STEP_TIMEOUT);
    assert_eq!(after, before, "the rejected descriptors are closed");

    let reply = pool_client(&daemon, port, PEER, Plaintext::StreamPair)
        .expect("a stream socketpair is usable");
    assert_eq!(reply.remoteid.as_str(), PEER);
}
