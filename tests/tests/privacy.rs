//! Privacy mode through the built daemon over TLS 1.2: a pool-to-pool session through a
//! recording TCP proxy, whose capture must not contain the server's certificate when privacy
//! mode ran (and does contain it without privacy mode), predicate `A` required by
//! `validate_default`, and a peer without anonymous suites (`gnutls-serv`) that gets a normal
//! handshake. Both sides report the privacy mode through INFO, and `tlspoolctl connect`
//! prints it.
//!
//! Run through `scripts/netns-run.sh`, because `gnutls-serv` listens on every interface.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use tlspool_client::blocking::{self, TlsConnection};
use tlspool_client::{ClientError, PrivacyMode, StartTlsFlags, StartTlsRequest};
use tlspool_tests::bin_path;
use tlspool_tests::daemon::TestDaemon;
use tlspool_tests::dev_pki::{DOMAIN, PEER, dev_setup};
use tlspool_tests::tls_peers::{free_port, gnutls_serv};

const TLS12_ONLY: &str = "tls_priority NORMAL:-VERS-ALL:+VERS-TLS1.2:%SAFE_RENEGOTIATION";
const PRIVACY_ON: &str = "privacy_attempt yes";
/// A service the built-in registry does not list, added for both roles.
const SERVICE: &str = "xmpp-client";
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

fn start_daemon(extra: &[&str]) -> TestDaemon {
    dev_setup().start_daemon_with(extra)
}

/// Returns the DER of the server certificate dev-init issued for [`DOMAIN`].
fn server_certificate_der() -> Vec<u8> {
    let pem = dev_setup().file(&format!("{DOMAIN}-server.pem"));
    let output = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in", &pem])
        .output()
        .expect("run openssl x509");
    assert!(output.status.success(), "openssl x509 failed on {pem}");
    output.stdout
}

/// A TCP proxy on loopback that forwards one connection to `target` and records the bytes the
/// server sends.
struct RecordingProxy {
    port: u16,
    from_server: Arc<Mutex<Vec<u8>>>,
}

impl RecordingProxy {
    fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let from_server = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&from_server);
        thread::spawn(move || {
            let (client, _) = listener.accept().expect("accept the client");
            let server = TcpStream::connect(("127.0.0.1", target)).expect("connect the server");
            let upstream = thread::spawn({
                let (client, server) = (clone(&client), clone(&server));
                move || copy(client, server, None)
            });
            copy(server, client, Some(&record));
            let _ = upstream.join();
        });
        Self { port, from_server }
    }

    fn server_bytes(&self) -> Vec<u8> {
        self.from_server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn clone(stream: &TcpStream) -> TcpStream {
    stream.try_clone().expect("clone the TCP stream")
}

/// Copies `from` to `to` until end of file, appending every byte to `record` if given.
fn copy(mut from: TcpStream, mut to: TcpStream, record: Option<&Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        if let Some(record) = record {
            record
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// The outcome of [`pool_pair_through_proxy`].
struct PairOutcome {
    /// The bytes the server sent on the wire.
    server_bytes: Vec<u8>,
    /// The privacy mode INFO returned to the client application.
    client_privacy: PrivacyMode,
    /// The privacy mode INFO returned to the server application.
    server_privacy: PrivacyMode,
}

/// Accepts one connection on `listener` and runs STARTTLS on it as a pool server for
/// [`DOMAIN`] that requires a client certificate, on a thread of its own.
fn accept_pool_server(
    listener: TcpListener,
    server_pool: blocking::Client,
) -> thread::JoinHandle<Result<TlsConnection, ClientError>> {
    thread::spawn(move || {
        let (tcp, _) = listener.accept().expect("accept");
        let request = StartTlsRequest::server(DOMAIN)
            .flags(StartTlsFlags::REQUEST_REMOTEID)
            .service(SERVICE)
            .build()
            .expect("server request");
        server_pool.starttls(tcp, &request)
    })
}

/// Runs a pool server and a pool client of `daemon` through a recording proxy, queries the
/// privacy mode of both sessions, and exchanges a line each way.
fn pool_pair_through_proxy(daemon: &TestDaemon) -> PairOutcome {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the server");
    let server_port = listener.local_addr().expect("server address").port();
    let proxy = RecordingProxy::start(server_port);
    let server_pool = blocking::Client::connect(Some(daemon.socket_path())).expect("connect");
    let server_thread = accept_pool_server(listener, server_pool.clone());
    let client_pool = blocking::Client::connect(Some(daemon.socket_path())).expect("connect");
    let request = StartTlsRequest::client(DOMAIN)
        .service(SERVICE)
        .build()
        .expect("client request");
    let tcp = TcpStream::connect(("127.0.0.1", proxy.port)).expect("connect the proxy");
    let client = client_pool
        .starttls(tcp, &request)
        .unwrap_or_else(|error| panic!("client STARTTLS: {error}\n{}", daemon.stderr()));
    let server = server_thread
        .join()
        .expect("server thread")
        .unwrap_or_else(|error| panic!("server STARTTLS: {error}\n{}", daemon.stderr()));

    assert_eq!(client.remote_id, DOMAIN);
    assert_eq!(
        server.remote_id, DOMAIN,
        "the client certificate was validated"
    );
    let client_privacy = client_pool
        .privacy_mode(&client.ctlkey)
        .expect("INFO privacy mode of the client");
    let server_privacy = server_pool
        .privacy_mode(&server.ctlkey)
        .expect("INFO privacy mode of the server");
    exchange_lines(client, server);
    PairOutcome {
        server_bytes: proxy.server_bytes(),
        client_privacy,
        server_privacy,
    }
}

fn exchange_lines(client: TlsConnection, server: TlsConnection) {
    let (mut client, mut server) = (client.plaintext, server.plaintext);
    for stream in [&client, &server] {
        stream
            .set_read_timeout(Some(STEP_TIMEOUT))
            .expect("read timeout");
    }
    client.write_all(b"to the server\n").expect("write");
    assert_eq!(read_line(&mut server), "to the server\n");
    server.write_all(b"to the client\n").expect("write");
    assert_eq!(read_line(&mut client), "to the client\n");
}

fn read_line(stream: &mut UnixStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        let n = stream.read(&mut byte).expect("read plaintext");
        assert!(n > 0, "plaintext closed after {line:?}");
        line.push(byte[0]);
    }
    String::from_utf8(line).expect("UTF-8 line")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[test]
fn privacy_mode_hides_server_certificate() {
    let services = format!("tls_privacy_services {SERVICE}");
    // `A` must hold, so the session exists only if the precursor ran.
    let daemon = start_daemon(&[TLS12_ONLY, PRIVACY_ON, &services, "validate_default A"]);

    let outcome = pool_pair_through_proxy(&daemon);

    let certificate = server_certificate_der();
    assert!(!outcome.server_bytes.is_empty());
    assert!(
        !contains(&outcome.server_bytes, &certificate),
        "the server certificate crossed in clear"
    );
    assert_eq!(outcome.client_privacy, PrivacyMode::Renegotiated);
    assert_eq!(outcome.server_privacy, PrivacyMode::Renegotiated);
}

#[test]
fn without_privacy_certificate_is_visible() {
    let daemon = start_daemon(&[TLS12_ONLY]);

    let outcome = pool_pair_through_proxy(&daemon);

    assert!(
        contains(&outcome.server_bytes, &server_certificate_der()),
        "the capture misses the certificate of a normal TLS 1.2 handshake"
    );
    assert_eq!(outcome.client_privacy, PrivacyMode::None);
    assert_eq!(outcome.server_privacy, PrivacyMode::None);
}

#[test]
fn unlisted_service_gets_no_precursor() {
    let daemon = start_daemon(&[TLS12_ONLY, PRIVACY_ON]);

    let outcome = pool_pair_through_proxy(&daemon);

    assert!(
        contains(&outcome.server_bytes, &server_certificate_der()),
        "privacy mode ran for a service outside the registry"
    );
    assert_eq!(outcome.client_privacy, PrivacyMode::None);
    assert_eq!(outcome.server_privacy, PrivacyMode::None);
}

#[test]
fn tls13_session_reports_tls13_privacy() {
    // The default priority prefers TLS 1.3, so the precursor is declined.
    let services = format!("tls_privacy_services {SERVICE}");
    let daemon = start_daemon(&[PRIVACY_ON, &services]);

    let outcome = pool_pair_through_proxy(&daemon);

    assert_eq!(outcome.client_privacy, PrivacyMode::Tls13);
    assert_eq!(outcome.server_privacy, PrivacyMode::Tls13);
}

/// Runs `tlspoolctl connect` with standard input closed against a pool server of `daemon`
/// that sends one line, and returns the standard error of `tlspoolctl`.
fn tlspoolctl_connect_stderr(daemon: &TestDaemon) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the server");
    let port = listener.local_addr().expect("server address").port();
    // The control connection stays open until `tlspoolctl` exits, because closing it stops
    // the server's session.
    let server_pool = blocking::Client::connect(Some(daemon.socket_path())).expect("connect");
    let server_thread = accept_pool_server(listener, server_pool.clone());

    let tlspoolctl = Command::new(bin_path("tlspoolctl"))
        .arg("--socket")
        .arg(daemon.socket_path())
        .args(["connect", "127.0.0.1", &port.to_string()])
        .args(["--remote-id", DOMAIN, "--service", SERVICE])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tlspoolctl connect");
    let server = server_thread
        .join()
        .expect("server thread")
        .unwrap_or_else(|error| panic!("server STARTTLS: {error}\n{}", daemon.stderr()));
    let mut plaintext = server.plaintext;
    plaintext.write_all(b"from the server\n").expect("write");
    // Closing the plaintext makes the daemon end the session, so `tlspoolctl` exits.
    drop(plaintext);
    let output = tlspoolctl.wait_with_output().expect("tlspoolctl exits");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{stderr}\ndaemon:\n{}",
        daemon.stderr()
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "from the server\n",
        "{stderr}"
    );
    drop(server_pool);
    stderr
}

#[test]
fn tlspoolctl_connect_prints_privacy() {
    let services = format!("tls_privacy_services {SERVICE}");
    let daemon = start_daemon(&[TLS12_ONLY, PRIVACY_ON, &services, "validate_default A"]);

    let stderr = tlspoolctl_connect_stderr(&daemon);

    assert!(stderr.contains("\nprivacy: renegotiated\n"), "{stderr}");
    assert!(stderr.contains("protocol-version: TLS1.2"), "{stderr}");
}

#[test]
fn tlspoolctl_connect_prints_no_privacy() {
    let daemon = start_daemon(&[TLS12_ONLY]);

    let stderr = tlspoolctl_connect_stderr(&daemon);

    assert!(stderr.contains("\nprivacy: none\n"), "{stderr}");
}

#[test]
fn peer_without_anonymous_suites_falls_back() {
    let setup = dev_setup();
    let daemon = start_daemon(&[TLS12_ONLY, PRIVACY_ON, "tls_privacy_services generic"]);
    let port = free_port();
    let (cert, key) = (setup.file("peer-cert.pem"), setup.file("peer-key.pem"));
    let server = gnutls_serv(
        port,
        &[
            "--x509certfile",
            &cert,
            "--x509keyfile",
            &key,
            "--echo",
            "--priority",
            "NORMAL:-VERS-ALL:+VERS-TLS1.2",
        ],
    );
    let client_pool = blocking::Client::connect(Some(daemon.socket_path())).expect("connect");
    let request = StartTlsRequest::client(PEER)
        .service("generic")
        .build()
        .expect("client request");
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect gnutls-serv");

    let connection = client_pool
        .starttls(tcp, &request)
        .unwrap_or_else(|error| panic!("client STARTTLS: {error}\n{}", daemon.stderr()));

    assert_eq!(connection.remote_id, PEER);
    let mut plaintext = connection.plaintext;
    plaintext
        .set_read_timeout(Some(STEP_TIMEOUT))
        .expect("read timeout");
    plaintext.write_all(b"normal handshake\n").expect("write");
    assert_eq!(read_line(&mut plaintext), "normal handshake\n");
    assert!(
        server.wait_for_output("TLS1.2"),
        "gnutls-serv output:\n{}",
        server.output()
    );
}
