//! How sessions through the built daemon end, against `gnutls-cli` as the TLS client of the
//! pool: a peer that vanishes without close_notify resets the application's TCP plaintext
//! socket and is logged as a truncation, and both SIGTERM and the close of the control
//! connection send the bytes the application already wrote, then close_notify.
//!
//! `gnutls-cli` prints `- Peer has closed the GnuTLS connection` after close_notify and
//! `non-properly terminated` after a TCP end of file without it (GnuTLS 3.7.9). Run through
//! `scripts/netns-run.sh`, like the other tests with GnuTLS peers.

use std::io::{ErrorKind, Read as _, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tlspool_proto::blocking::RecordStream;
use tlspool_proto::{FixedString, Identity, Payload, Record, StartTls, StartTlsFlags};
use tlspool_tests::daemon::TestDaemon;
use tlspool_tests::dev_pki::{DOMAIN, dev_setup};
use tlspool_tests::tls_peers::{Peer, gnutls_cli};

const STEP_TIMEOUT: Duration = Duration::from_secs(30);
const CLEAN_CLOSE: &str = "- Peer has closed the GnuTLS connection";
const TRUNCATED: &str = "non-properly terminated";

const SERVER: StartTlsFlags =
    StartTlsFlags::LOCALROLE_SERVER.union(StartTlsFlags::REMOTEROLE_CLIENT);

/// The pool's server session with `gnutls-cli`: the client process, the control connection
/// and the application's end of the plaintext descriptor.
struct ServerSession<P> {
    client: Peer,
    control: RecordStream,
    plaintext: P,
}

/// A connected socket type for the plaintext descriptor: the application keeps one end and
/// the daemon receives the other with the answer to PLAINTEXT_CONNECT.
trait PlaintextPair: Sized {
    fn connected() -> (Self, OwnedFd);
}

impl PlaintextPair for UnixStream {
    fn connected() -> (Self, OwnedFd) {
        let (ours, theirs) = Self::pair().expect("socketpair");
        (ours, theirs.into())
    }
}

impl PlaintextPair for TcpStream {
    fn connected() -> (Self, OwnedFd) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen for the plaintext pair");
        let ours = Self::connect(listener.local_addr().expect("address")).expect("connect");
        let (theirs, _) = listener.accept().expect("accept the plaintext pair");
        (ours, theirs.into())
    }
}

/// Connects to `daemon` and sends STARTTLS as TLS server for `localid` over `tcp`, with
/// control key 3, and returns the control connection.
fn send_server_request(daemon: &TestDaemon, localid: &str, tcp: TcpStream) -> RecordStream {
    let control = RecordStream::connect(daemon.socket_path()).expect("connect to the daemon");
    control
        .get_ref()
        .set_read_timeout(Some(STEP_TIMEOUT))
        .expect("read timeout");
    let request = Record::new(
        1,
        Payload::StartTls(StartTls {
            flags: SERVER,
            local: 0,
            ipproto: 6,
            streamid: 0,
            localid: Identity::new(localid).expect("localid fits"),
            remoteid: Identity::new("").expect("remoteid fits"),
            ctlkey: [3; 16],
            service: FixedString::new("generic").expect("service fits"),
            timeout: 10_000,
        }),
    );
    control
        .send_record(&request, Some(tcp.as_fd()))
        .expect("send STARTTLS");
    control
}

/// Starts `gnutls-cli` against the pool as TLS server for `dev.example`.
fn pool_server<P: PlaintextPair>(daemon: &TestDaemon) -> ServerSession<P> {
    let setup = dev_setup();
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("address").port();
    let (ca, cert, key) = (
        setup.file("ca.pem"),
        setup.file("peer-cert.pem"),
        setup.file("peer-key.pem"),
    );
    let client = gnutls_cli(
        port,
        &[
            "--x509cafile",
            &ca,
            "--sni-hostname",
            DOMAIN,
            "--verify-hostname",
            DOMAIN,
            "--x509certfile",
            &cert,
            "--x509keyfile",
            &key,
        ],
    );
    let (tcp, _) = listener.accept().expect("accept the TLS client");

    let mut control = send_server_request(daemon, "", tcp);

    let mut plaintext = None;
    loop {
        let frame = control
            .recv()
            .expect("receive from the daemon")
            .expect("the daemon closed the connection");
        let reply = frame.decode().expect("decode the record");
        match reply.payload {
            Payload::PlaintextConnect(params) => {
                let (ours, theirs) = P::connected();
                let mut answer = Record::new(reply.reqid, Payload::PlaintextConnect(params));
                answer.cbid = reply.cbid;
                control
                    .send_record(&answer, Some(theirs.as_fd()))
                    .expect("answer PLAINTEXT_CONNECT");
                plaintext = Some(ours);
            }
            Payload::StartTls(_) => break,
            other => panic!("STARTTLS failed: {other:?}\n{}", client.output()),
        }
    }
    let plaintext = plaintext.expect("PLAINTEXT_CONNECT preceded the reply");
    ServerSession {
        client,
        control,
        plaintext,
    }
}

/// Writes `count` numbered lines to `plaintext` and returns the last one.
fn write_lines(plaintext: &mut impl Write, count: usize) -> String {
    let mut text = String::new();
    for number in 0..count {
        text.push_str(&format!("queued line {number}\n"));
    }
    plaintext
        .write_all(text.as_bytes())
        .expect("write plaintext");
    format!("queued line {}", count - 1)
}

/// Starts a session and proves it relays: the application's first line reaches `gnutls-cli`.
fn relaying_session<P: PlaintextPair + Write>(daemon: &TestDaemon) -> ServerSession<P> {
    let mut session = pool_server::<P>(daemon);
    session
        .plaintext
        .write_all(b"first line\n")
        .expect("write plaintext");
    assert!(
        session.client.wait_for_output("first line"),
        "{}",
        session.client.output()
    );
    session
}

/// Asserts that the daemon logs `message` within [`STEP_TIMEOUT`], at warning level with the
/// local identity and the peer's address. The relay closes the descriptors before the
/// daemon logs how the session ended, so the line may follow what the test observed.
fn assert_warning_names_peer(daemon: &TestDaemon, message: &str) {
    let deadline = Instant::now() + STEP_TIMEOUT;
    let line = loop {
        let log = daemon.stderr();
        if let Some(line) = log.lines().find(|line| line.contains(message)) {
            break line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no {message:?} line in the daemon's log:\n{log}"
        );
        thread::sleep(Duration::from_millis(20));
    };
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(DOMAIN), "{line}");
    assert!(line.contains("127.0.0.1"), "{line}");
}

#[test]
fn killed_peer_resets_application() {
    let daemon = dev_setup().start_daemon();
    let mut session = relaying_session::<TcpStream>(&daemon);
    session
        .plaintext
        .set_read_timeout(Some(STEP_TIMEOUT))
        .expect("read timeout");
    session.client.send_line("from the peer");
    let mut received = [0u8; 14];
    session
        .plaintext
        .read_exact(&mut received)
        .expect("read the peer's line");
    assert_eq!(&received, b"from the peer\n");

    // Killing gnutls-cli closes its TCP socket without close_notify.
    drop(session.client);

    let mut rest = [0u8; 16];
    let error = session
        .plaintext
        .read(&mut rest)
        .expect_err("a truncated session resets the plaintext socket");
    assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error}");
    assert_warning_names_peer(&daemon, "tls session truncated");
    drop(session.control);
}

#[test]
fn sigterm_sends_queued_data_and_close_notify() {
    let mut daemon = dev_setup().start_daemon();
    let mut session = relaying_session::<UnixStream>(&daemon);

    let last = write_lines(&mut session.plaintext, 500);
    daemon.signal(Signal::SIGTERM);

    assert!(
        session.client.wait_for_output(CLEAN_CLOSE),
        "{}",
        session.client.output()
    );
    let output = session.client.output();
    assert!(output.contains(&last), "{output}");
    assert!(!output.contains(TRUNCATED), "{output}");
    let status = daemon.wait_exit(STEP_TIMEOUT).expect("the daemon exits");
    assert!(status.success(), "{status}");
    drop(session.control);
}

#[test]
fn control_close_sends_queued_data_first() {
    let daemon = dev_setup().start_daemon();
    let mut session = relaying_session::<UnixStream>(&daemon);

    let last = write_lines(&mut session.plaintext, 500);
    drop(session.control);

    assert!(
        session.client.wait_for_output(CLEAN_CLOSE),
        "{}",
        session.client.output()
    );
    let output = session.client.output();
    assert!(output.contains(&last), "{output}");
    assert!(!output.contains(TRUNCATED), "{output}");
}

#[test]
fn failed_starttls_logs_warning() {
    let daemon = dev_setup().start_daemon();
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("address").port();
    // The client trusts the system's CAs but not the dev-init CA, so it rejects the pool's
    // certificate and the handshake fails.
    let system_ca = "/etc/ssl/certs/ca-certificates.crt";
    let client = gnutls_cli(port, &["--x509cafile", system_ca, "--sni-hostname", DOMAIN]);
    let (tcp, _) = listener.accept().expect("accept the TLS client");

    let mut control = send_server_request(&daemon, DOMAIN, tcp);
    let frame = control
        .recv()
        .expect("receive from the daemon")
        .expect("the daemon closed the connection");
    let reply = frame.decode().expect("decode the record");
    assert!(
        matches!(reply.payload, Payload::Error(_)),
        "{:?}\n{}",
        reply.payload,
        client.output()
    );

    assert_warning_names_peer(&daemon, "starttls failed");
}
