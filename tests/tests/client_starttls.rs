//! STARTTLS through the built `tlspool` daemon from the client library and `tlspoolctl`, with
//! real TLS peers on loopback.
//!
//! The tests run `starttls()` in both flavours against `gnutls-serv` and `openssl s_server`,
//! `tlspoolctl connect` through `gnutls-serv --echo`, and `openssl s_client` against
//! `tlspoolctl serve --echo --once`. They also check that a daemon ERROR becomes exit status 1
//! and that local identity check handlers can replace or reject the proposal.
//!
//! The identities come from one `tlspool-admin dev-init` run with the domains `dev.example`
//! and `other.example`: the daemon's credentials sit on a SoftHSM2 token, and the external
//! peer `peer.dev.example` has its key in `peer-key.pem`. Run the tests through
//! `scripts/netns-run.sh`, because `gnutls-serv` listens on every interface.

use std::io::Write as _;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tlspool_client::{
    Client, ClientError, LocalIdDecision, StartTlsFlags, StartTlsRequest, blocking,
};
use tlspool_tests::daemon::TestDaemon;
use tlspool_tests::dev_pki::{DOMAIN, OTHER_DOMAIN, PEER, dev_setup as setup};
use tlspool_tests::tls_peers::{self, Peer, free_port};
use tlspool_tests::{bin_path, tls_peers::PEER_TIMEOUT};

/// Starts `gnutls-serv --echo` with the external peer's certificate and file key.
fn gnutls_echo_server(port: u16) -> Peer {
    let setup = setup();
    tls_peers::gnutls_serv(
        port,
        &[
            "--echo",
            "--x509certfile",
            &setup.file("peer-cert.pem"),
            "--x509keyfile",
            &setup.file("peer-key.pem"),
            "--x509cafile",
            &setup.file("ca.pem"),
        ],
    )
}

fn tlspoolctl(daemon: &TestDaemon) -> Command {
    let mut command = Command::new(bin_path("tlspoolctl"));
    command.arg("--socket").arg(daemon.socket_path());
    command
}

/// Runs `tlspoolctl connect` with `input` on its standard input.
fn run_connect(daemon: &TestDaemon, port: u16, remote_id: &str, input: &[u8]) -> Output {
    let mut child = tlspoolctl(daemon)
        .args([
            "connect",
            "127.0.0.1",
            &port.to_string(),
            "--remote-id",
            remote_id,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tlspoolctl connect");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(input).expect("write tlspoolctl's input");
    drop(stdin);
    child.wait_with_output().expect("wait for tlspoolctl")
}

/// Starts `openssl s_client` against 127.0.0.1:`port`, trusting the dev-init CA.
fn s_client(port: u16) -> Peer {
    let ca = setup().file("ca.pem");
    tls_peers::openssl_s_client(
        port,
        &[
            "-CAfile",
            &ca,
            "-verify_return_error",
            "-quiet",
            "-no_ign_eof",
        ],
    )
}

/// Reads exactly `len` bytes from `stream`.
fn read_exactly(stream: &mut impl std::io::Read, len: usize) -> Vec<u8> {
    let mut received = vec![0u8; len];
    stream.read_exact(&mut received).expect("read the echo");
    received
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Accepts one connection on `listener` within [`PEER_TIMEOUT`].
fn accept(listener: &TcpListener) -> TcpStream {
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let deadline = std::time::Instant::now() + PEER_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).expect("blocking stream");
                return stream;
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(std::time::Instant::now() < deadline, "no client connected");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(error) => panic!("accept failed: {error}"),
        }
    }
}

#[test]
fn blocking_starttls_echoes_through_gnutls_serv() {
    let daemon = setup().start_daemon();
    let port = free_port();
    let _server = gnutls_echo_server(port);

    let client = blocking::Client::connect(Some(daemon.socket_path())).unwrap();
    let request = StartTlsRequest::client(PEER).build().unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut connection = client.starttls(tcp, &request).unwrap();

    assert_eq!(connection.local_id, DOMAIN);
    assert_eq!(connection.remote_id, PEER);
    assert!(connection.flags.contains(StartTlsFlags::LOCALROLE_CLIENT));
    connection.plaintext.write_all(b"blocking hello\n").unwrap();
    assert_eq!(
        read_exactly(&mut connection.plaintext, 15),
        b"blocking hello\n"
    );
}

#[test]
fn async_starttls_talks_to_openssl_s_server() {
    let daemon = setup().start_daemon();
    let setup = setup();
    let port = free_port();
    let mut server = tls_peers::openssl_s_server(
        port,
        &[
            "-cert",
            &setup.file("peer-cert.pem"),
            "-key",
            &setup.file("peer-key.pem"),
            "-CAfile",
            &setup.file("ca.pem"),
        ],
    );

    let connection = runtime().block_on(async {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

        let client = Client::connect(Some(daemon.socket_path())).await.unwrap();
        let request = StartTlsRequest::client(PEER)
            .service("generic")
            .build()
            .unwrap();
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut connection = client.starttls(tcp, &request).await.unwrap();

        connection
            .plaintext
            .write_all(b"from the pool\n")
            .await
            .unwrap();
        assert!(
            server.wait_for_output("from the pool"),
            "s_server did not print the client's line:\n{}",
            server.output()
        );
        server.send_line("from s_server");
        let mut received = [0u8; 14];
        tokio::time::timeout(PEER_TIMEOUT, connection.plaintext.read_exact(&mut received))
            .await
            .expect("s_server's line arrives in time")
            .unwrap();
        assert_eq!(&received, b"from s_server\n");
        connection
    });

    assert_eq!(connection.local_id, DOMAIN);
    assert_eq!(connection.remote_id, PEER);
}

#[test]
fn tlspoolctl_connect_pipes_through_gnutls_echo() {
    let daemon = setup().start_daemon();
    let port = free_port();
    let _server = gnutls_echo_server(port);
    let input = b"first line\nsecond line\n";

    let output = run_connect(&daemon, port, PEER, input);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tlspoolctl connect failed: {stderr}"
    );
    assert_eq!(output.stdout, input);
    assert!(stderr.contains("local-id: dev.example\n"), "{stderr}");
    assert!(stderr.contains("remote-id: peer.dev.example\n"), "{stderr}");
}

#[test]
fn tlspoolctl_connect_reports_daemon_error() {
    let daemon = setup().start_daemon();
    let port = free_port();
    let _server = gnutls_echo_server(port);

    // The server presents peer.dev.example, not the requested identity.
    let output = run_connect(&daemon, port, "wrong.dev.example", b"never sent\n");

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(output.stdout.is_empty());
    assert!(
        stderr.starts_with("tlspoolctl: the TLS Pool returned an error: "),
        "{stderr}"
    );
    assert!(!stderr.contains("local-id:"), "{stderr}");
}

#[test]
fn tlspoolctl_serve_echoes_to_s_client() {
    let daemon = setup().start_daemon();
    let (mut serve, port) = start_serve(&daemon, &["--once"]);

    let mut client = s_client(port);
    client.send_line("echo me please");
    assert!(
        client.wait_for_output("echo me please"),
        "s_client got no echo:\n{}",
        client.output()
    );
    client.close_stdin();

    assert!(serve.wait_exit(), "serve --once did not exit");
    let output = serve.output();
    assert!(output.contains("local-id: dev.example\n"), "{output}");
    assert!(output.contains("remote-id: (none)\n"), "{output}");
    assert!(
        client.output().contains("CN = dev.example"),
        "{}",
        client.output()
    );
}

#[test]
fn tlspoolctl_serve_reconnects_after_daemon_restart() {
    let daemon = setup().start_daemon();
    let (serve, port) = start_serve(&daemon, &[]);
    let mut first = s_client(port);
    first.send_line("before the restart");
    assert!(
        first.wait_for_output("before the restart"),
        "s_client got no echo:\n{}\nserve:\n{}",
        first.output(),
        serve.output()
    );
    first.close_stdin();
    assert!(first.wait_exit(), "s_client did not exit");

    // The new daemon takes over the socket and the old one exits, closing serve's connection.
    let _restarted = daemon.takeover();
    let mut second = s_client(port);
    second.send_line("after the restart");
    assert!(
        second.wait_for_output("after the restart"),
        "s_client got no echo after the restart:\n{}\nserve:\n{}",
        second.output(),
        serve.output()
    );
    assert!(
        serve.output().contains("reconnected to the TLS Pool at "),
        "{}",
        serve.output()
    );
}

/// Starts `tlspoolctl serve --echo` for `dev.example` on a free loopback port with `extra`
/// arguments, and returns it with the port it prints.
fn start_serve(daemon: &TestDaemon, extra: &[&str]) -> (Peer, u16) {
    let serve = Peer::spawn("tlspoolctl serve", {
        let mut command = tlspoolctl(daemon);
        command.args(["serve", "--listen", "127.0.0.1:0", "--local-id", DOMAIN]);
        command.arg("--echo").args(extra);
        command
    });
    assert!(
        serve.wait_for_output("listening on 127.0.0.1:"),
        "{}",
        serve.output()
    );
    let port: u16 = serve
        .output()
        .lines()
        .find_map(|line| line.strip_prefix("listening on 127.0.0.1:"))
        .and_then(|port| port.trim().parse().ok())
        .expect("serve prints its port");
    (serve, port)
}

/// The outcome of a blocking server STARTTLS against `openssl s_client`.
struct ServedClient {
    result: Result<blocking::TlsConnection, ClientError>,
    s_client: Peer,
    /// The control connection, kept open because closing it ends the session.
    _pool: blocking::Client,
}

/// Runs a blocking server STARTTLS with `request` against `openssl s_client`.
fn serve_one_s_client(daemon: &TestDaemon, request: &StartTlsRequest) -> ServedClient {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let s_client = s_client(port);
    let tcp = accept(&listener);
    let pool = blocking::Client::connect(Some(daemon.socket_path())).unwrap();
    ServedClient {
        result: pool.starttls(tcp, request),
        s_client,
        _pool: pool,
    }
}

#[test]
fn localid_handler_replaces_server_identity() {
    let daemon = setup().start_daemon();
    let request = StartTlsRequest::server(DOMAIN)
        .flags(StartTlsFlags::REQUEST_REMOTEID)
        .localid_check(|check| {
            assert_eq!(check.local_id, DOMAIN);
            LocalIdDecision::Replace(OTHER_DOMAIN.to_owned())
        })
        .build()
        .unwrap();

    let served = serve_one_s_client(&daemon, &request);
    let mut client = served.s_client;
    let mut connection = served.result.unwrap();

    assert_eq!(connection.local_id, OTHER_DOMAIN);
    connection
        .plaintext
        .write_all(b"served as other\n")
        .unwrap();
    assert!(
        client.wait_for_output("served as other"),
        "{}",
        client.output()
    );
    assert!(
        client.output().contains("CN = other.example"),
        "{}",
        client.output()
    );
    connection.plaintext.shutdown(Shutdown::Write).unwrap();
    client.close_stdin();
}

#[test]
fn localid_handler_rejection_fails_starttls() {
    let daemon = setup().start_daemon();
    let request = StartTlsRequest::server(DOMAIN)
        .flags(StartTlsFlags::REQUEST_REMOTEID)
        .localid_check(|_| LocalIdDecision::Reject)
        .build()
        .unwrap();

    let served = serve_one_s_client(&daemon, &request);
    let (result, mut client) = (served.result, served.s_client);

    let Err(ClientError::Daemon { message, .. }) = result else {
        panic!("a rejected local identity did not fail STARTTLS: {result:?}");
    };
    assert!(!message.is_empty());
    assert!(client.wait_exit(), "s_client did not give up");
    assert!(
        !client.output().contains("CN = dev.example"),
        "{}",
        client.output()
    );
}
