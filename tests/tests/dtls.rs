//! DTLS over UDP through the built `tlspool` daemon: STARTTLS with `ipproto` 17 from the
//! client library, against `gnutls-serv --udp` and `gnutls-cli --udp`, and between two pool
//! sessions, all on loopback.
//!
//! The daemons run with `dtls_mtu 1400`, so every datagram of up to [`MAX_TESTED_DATAGRAM`]
//! bytes fits one record and [`OVERLONG_DATAGRAM`] never does. The exact limit per cipher
//! suite is checked by the unit tests of the DTLS session. Run the tests through
//! `scripts/netns-run.sh`, because `gnutls-serv` listens on every interface.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Duration;

use tlspool_client::{StartTlsRequest, TlsConnection, blocking};
use tlspool_tests::daemon::TestDaemon;
use tlspool_tests::dev_pki::{DOMAIN, PEER, dev_setup as setup};
use tlspool_tests::tls_peers::{self, PEER_TIMEOUT, Peer};

/// The path MTU the test daemons use, in bytes of UDP payload.
const DTLS_MTU: u16 = 1400;
/// Largest datagram the tests expect to pass: the MTU less a generous record overhead.
const MAX_TESTED_DATAGRAM: usize = 1200;
/// A datagram longer than the MTU itself, which no record can carry.
const OVERLONG_DATAGRAM: usize = 1500;
/// Largest datagram `gnutls-serv --udp --echo` (GnuTLS 3.7.9) was seen to return whole: it
/// returned 254 bytes of a 512-byte datagram.
const GNUTLS_SERV_MAX_ECHO: usize = 254;
/// Datagrams in the loss count test.
const LOSS_TEST_DATAGRAMS: usize = 10_000;
/// Datagrams in flight at once in the loss count test, few enough for every socket buffer.
const LOSS_TEST_WINDOW: usize = 32;

/// Starts a daemon on the dev-init token with the DTLS settings of these tests and `extra`.
fn start_daemon(extra: &[&str]) -> TestDaemon {
    let setup = setup();
    let config = std::fs::read_to_string(setup.dir().join("tlspool.conf")).expect("dev config");
    let mtu = format!("dtls_mtu {DTLS_MTU}");
    let mut lines: Vec<&str> = config
        .lines()
        .filter(|line| line.starts_with("pkcs11_") || line.starts_with("dbenv_dir"))
        .collect();
    lines.push(&mtu);
    lines.extend_from_slice(extra);
    let softhsm = setup.dir().join("softhsm2.conf");
    TestDaemon::start_with_env(&lines, &[("SOFTHSM2_CONF", softhsm.as_path())])
}

/// Returns a UDP port on 127.0.0.1 that was free a moment ago.
fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral UDP port");
    socket.local_addr().expect("local address").port()
}

/// Starts `gnutls-serv --udp --echo` with the external peer's certificate and waits until it
/// prints that it is ready.
fn gnutls_udp_echo_server(port: u16) -> Peer {
    tls_peers::require_loopback_only();
    let setup = setup();
    let mut command = std::process::Command::new("gnutls-serv");
    command.args([
        "--udp",
        "--echo",
        "--port",
        &port.to_string(),
        "--x509certfile",
        &setup.file("peer-cert.pem"),
        "--x509keyfile",
        &setup.file("peer-key.pem"),
        "--x509cafile",
        &setup.file("ca.pem"),
    ]);
    let server = Peer::spawn("gnutls-serv --udp", command);
    assert!(
        server.wait_for_output(&format!("IPv4 0.0.0.0 port {port}...done")),
        "gnutls-serv --udp did not start:\n{}",
        server.output()
    );
    server
}

/// A DTLS session with its control connection, which stays open as long as the session.
struct PoolSession {
    connection: TlsConnection<UnixStream>,
    control: blocking::Client,
}

/// Starts `gnutls-cli --udp` towards 127.0.0.1:`port`, checking the server's certificate for
/// `DOMAIN` against the dev-init CA.
fn gnutls_cli_udp(port: u16) -> Peer {
    let ca = setup().file("ca.pem");
    tls_peers::gnutls_cli(
        port,
        &[
            "--udp",
            "--x509cafile",
            &ca,
            "--sni-hostname",
            DOMAIN,
            "--verify-hostname",
            DOMAIN,
        ],
    )
}

/// Runs a DTLS client STARTTLS for `remote_id` on a UDP socket connected to `peer`.
fn pool_client(daemon: &TestDaemon, peer: SocketAddr, remote_id: &str) -> PoolSession {
    let control = blocking::Client::connect(Some(daemon.socket_path())).expect("connect");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
    udp.connect(peer).expect("connect UDP");
    PoolSession {
        connection: pool_client_on(&control, udp, remote_id),
        control,
    }
}

fn pool_client_on(
    client: &blocking::Client,
    udp: UdpSocket,
    remote_id: &str,
) -> TlsConnection<UnixStream> {
    let request = StartTlsRequest::client(remote_id)
        .dtls()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("request");
    let connection = client.starttls(udp, &request).expect("dtls starttls");
    set_read_timeout(&connection.plaintext);
    connection
}

/// Binds a UDP socket, waits for the first datagram, connects to its sender and leaves the
/// datagram queued for the daemon.
fn accept_udp(socket: UdpSocket) -> UdpSocket {
    socket
        .set_read_timeout(Some(PEER_TIMEOUT))
        .expect("read timeout");
    let mut probe = [0u8; 1];
    let (_, sender) = socket
        .peek_from(&mut probe)
        .expect("a first datagram arrives");
    socket.connect(sender).expect("connect to the client");
    socket.set_read_timeout(None).expect("clear the timeout");
    socket
}

/// Runs a DTLS server STARTTLS for `DOMAIN` on `udp`, on a thread.
fn pool_server(daemon: &TestDaemon, udp: UdpSocket) -> thread::JoinHandle<PoolSession> {
    let control = blocking::Client::connect(Some(daemon.socket_path())).expect("connect");
    thread::spawn(move || {
        let udp = accept_udp(udp);
        let request = StartTlsRequest::server(DOMAIN)
            .flags(tlspool_client::StartTlsFlags::IGNORE_REMOTEID)
            .dtls()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("request");
        let connection = control
            .starttls(udp, &request)
            .expect("dtls server starttls");
        set_read_timeout(&connection.plaintext);
        PoolSession {
            connection,
            control,
        }
    })
}

fn set_read_timeout(plaintext: &UnixStream) {
    plaintext
        .set_read_timeout(Some(PEER_TIMEOUT))
        .expect("read timeout");
}

/// Reads one datagram from the plaintext side.
fn recv_datagram(plaintext: &mut UnixStream) -> Vec<u8> {
    let mut buf = vec![0u8; 65536];
    let len = plaintext
        .read(&mut buf)
        .expect("a datagram arrives in time");
    buf.truncate(len);
    buf
}

/// A datagram of `len` bytes whose content depends on `len` and `index`.
fn pattern(len: usize, index: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 7 + index) % 251) as u8).collect()
}

#[test]
fn pool_client_echoes_through_gnutls_serv_udp() {
    let daemon = start_daemon(&[]);
    let port = free_udp_port();
    let _server = gnutls_udp_echo_server(port);

    let session = pool_client(&daemon, ([127, 0, 0, 1], port).into(), PEER);
    let mut connection = session.connection;

    assert_eq!(connection.remote_id, PEER);
    for (index, len) in [1, 2, 3, 100, 200, GNUTLS_SERV_MAX_ECHO]
        .into_iter()
        .enumerate()
    {
        let datagram = pattern(len, index);
        connection.plaintext.write_all(&datagram).expect("send");
        let echo = recv_datagram(&mut connection.plaintext);
        assert_eq!(echo.len(), len, "echo of a {len}-byte datagram");
        assert_eq!(echo, datagram, "content of the {len}-byte echo");
    }
}

#[test]
fn gnutls_cli_udp_reaches_pool_server() {
    let daemon = start_daemon(&[]);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
    let port = socket.local_addr().expect("address").port();
    let server = pool_server(&daemon, socket);
    let mut cli = gnutls_cli_udp(port);

    let session = server.join().expect("the server thread");
    let mut connection = session.connection;
    assert_eq!(connection.local_id, DOMAIN);
    cli.send_line("hello over dtls");
    let received = recv_datagram(&mut connection.plaintext);
    assert_eq!(
        received,
        b"hello over dtls\n",
        "gnutls-cli:\n{}\ndaemon:\n{}",
        cli.output(),
        daemon.stderr()
    );
    connection
        .plaintext
        .write_all(b"reply from the pool\n")
        .expect("send the reply");
    assert!(
        cli.wait_for_output("reply from the pool"),
        "gnutls-cli did not print the reply:\n{}",
        cli.output()
    );
}

/// Connects a pool client and a pool server session over loopback UDP.
fn pool_pair(daemon: &TestDaemon) -> (PoolSession, PoolSession) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
    let address = socket.local_addr().expect("address");
    let server = pool_server(daemon, socket);
    let client = pool_client(daemon, address, DOMAIN);
    (client, server.join().expect("the server thread"))
}

#[test]
fn pool_to_pool_keeps_every_datagram_size() {
    let daemon = start_daemon(&[]);
    let (client_session, server_session) = pool_pair(&daemon);
    let (mut client, mut server) = (client_session.connection, server_session.connection);

    for len in 1..=MAX_TESTED_DATAGRAM {
        let datagram = pattern(len, 0);
        client.plaintext.write_all(&datagram).expect("send");
        let received = recv_datagram(&mut server.plaintext);
        assert_eq!(received.len(), len, "length of a {len}-byte datagram");
        assert_eq!(received, datagram, "content of a {len}-byte datagram");
    }
    server.plaintext.write_all(b"back").expect("send back");
    assert_eq!(recv_datagram(&mut client.plaintext), b"back");
}

#[test]
fn pool_to_pool_loses_no_datagram() {
    let daemon = start_daemon(&[]);
    let (client_session, server_session) = pool_pair(&daemon);
    let (mut client, mut server) = (client_session.connection, server_session.connection);
    server
        .plaintext
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");

    let mut lost = 0;
    let mut index = 0;
    while index < LOSS_TEST_DATAGRAMS {
        let window = LOSS_TEST_WINDOW.min(LOSS_TEST_DATAGRAMS - index);
        for i in index..index + window {
            let datagram = (i as u32).to_be_bytes();
            client.plaintext.write_all(&datagram).expect("send");
        }
        let mut buf = [0u8; 64];
        let mut received = 0;
        while received < window {
            match server.plaintext.read(&mut buf) {
                Ok(4) => received += 1,
                Ok(len) => panic!("a {len}-byte datagram arrived in place of 4 bytes"),
                Err(_) => break,
            }
        }
        lost += window - received;
        index += window;
    }
    assert_eq!(
        lost, 0,
        "{lost} of {LOSS_TEST_DATAGRAMS} datagrams lost on loopback"
    );
}

#[test]
fn overlong_datagram_ends_the_session() {
    let daemon = start_daemon(&[]);
    let (client_session, server_session) = pool_pair(&daemon);
    let (mut client, mut server) = (client_session.connection, server_session.connection);
    client.plaintext.write_all(b"before").expect("send");
    assert_eq!(recv_datagram(&mut server.plaintext), b"before");

    client
        .plaintext
        .write_all(&pattern(OVERLONG_DATAGRAM, 0))
        .expect("the socket pair takes the datagram");
    let mut buf = [0u8; 16];
    let len = client
        .plaintext
        .read(&mut buf)
        .expect("end of file arrives in time");
    assert_eq!(len, 0, "the client's plaintext socket reads end of file");
    assert_eq!(
        server
            .plaintext
            .read(&mut buf)
            .expect("end of file at the server"),
        0,
        "close_notify reaches the server's application"
    );
}

/// A DTLS 1.2 ClientHello without a cookie, as a spoofed source would send it.
fn cookieless_client_hello(sequence: u16) -> Vec<u8> {
    let mut body = vec![0xfe, 0xfd];
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
    body.push(0); // cookie
    body.extend_from_slice(&[0, 2, 0xc0, 0x2b]); // TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    body.extend_from_slice(&[1, 0]); // null compression
    let len = body.len() as u32;
    let mut handshake = vec![1];
    handshake.extend_from_slice(&len.to_be_bytes()[1..]);
    handshake.extend_from_slice(&0u16.to_be_bytes()); // message sequence
    handshake.extend_from_slice(&[0, 0, 0]); // fragment offset
    handshake.extend_from_slice(&len.to_be_bytes()[1..]); // fragment length
    handshake.extend_from_slice(&body);
    let mut record = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0];
    record.extend_from_slice(&sequence.to_be_bytes());
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[test]
fn cookieless_hellos_create_no_session_state() {
    let daemon = start_daemon(&[]);
    let server_socket = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
    let server_address = server_socket.local_addr().expect("address");
    let flood = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
    flood.connect(server_address).expect("connect UDP");
    flood
        .set_read_timeout(Some(PEER_TIMEOUT))
        .expect("read timeout");
    flood
        .send(&cookieless_client_hello(0))
        .expect("first hello");
    let server = pool_server(&daemon, server_socket);
    let mut buf = [0u8; 2048];
    let first = flood.recv(&mut buf).expect("a HelloVerifyRequest arrives");
    assert_eq!(buf[13], 3, "the answer is a HelloVerifyRequest");
    assert!(first < 100, "a {first}-byte HelloVerifyRequest");
    let settled = daemon.settled_fd_count();

    for sequence in 1..=200 {
        flood
            .send(&cookieless_client_hello(sequence))
            .expect("hello");
        let len = flood.recv(&mut buf).expect("a HelloVerifyRequest arrives");
        assert_eq!(buf[13], 3, "answer {sequence} is a HelloVerifyRequest");
        assert_eq!(len, first, "every HelloVerifyRequest has the same size");
    }
    assert_eq!(
        daemon.settled_fd_count(),
        settled,
        "200 cookieless ClientHellos changed the daemon's descriptors"
    );

    // The same address then completes a handshake, so the request was waiting all along.
    let control = blocking::Client::connect(Some(daemon.socket_path())).expect("connect");
    let mut connection = pool_client_on(&control, flood, DOMAIN);
    let accepted_session = server.join().expect("the server thread");
    let mut accepted = accepted_session.connection;
    connection
        .plaintext
        .write_all(b"after the flood")
        .expect("send");
    assert_eq!(recv_datagram(&mut accepted.plaintext), b"after the flood");
}

#[test]
fn vanished_peer_session_expires() {
    let daemon = start_daemon(&["dtls_idle_timeout 2"]);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
    let port = socket.local_addr().expect("address").port();
    let server = pool_server(&daemon, socket);
    let mut cli = gnutls_cli_udp(port);
    let session = server.join().expect("the server thread");
    let mut connection = session.connection;
    cli.send_line("still here");
    assert_eq!(recv_datagram(&mut connection.plaintext), b"still here\n");

    // SIGKILL sends no close_notify, so only the idle timeout ends the session.
    drop(cli);
    let mut buf = [0u8; 16];
    let len = connection
        .plaintext
        .read(&mut buf)
        .expect("the session ends within the read timeout");
    assert_eq!(len, 0, "the plaintext socket reads end of file");
}

fn tlspoolctl(daemon: &TestDaemon) -> std::process::Command {
    let mut command = std::process::Command::new(tlspool_tests::bin_path("tlspoolctl"));
    command.arg("--socket").arg(daemon.socket_path());
    command
}

#[test]
fn tlspoolctl_connect_udp_sends_lines_as_datagrams() {
    let daemon = start_daemon(&[]);
    let port = free_udp_port();
    let _server = gnutls_udp_echo_server(port);

    let mut child = tlspoolctl(&daemon)
        .args(["connect", "--udp", "127.0.0.1", &port.to_string()])
        .args(["--remote-id", PEER])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start tlspoolctl connect --udp");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(b"first\n").expect("write a line");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut echo = [0u8; 6];
    stdout.read_exact(&mut echo).expect("the first echo");
    assert_eq!(&echo, b"first\n");
    stdin.write_all(b"second\n").expect("write a line");
    let mut echo = [0u8; 7];
    stdout.read_exact(&mut echo).expect("the second echo");
    assert_eq!(&echo, b"second\n");
    drop(stdin);
    let output = child.wait_with_output().expect("tlspoolctl exits");
    assert!(
        output.status.success(),
        "tlspoolctl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("remote-id: peer.dev.example"), "{stderr}");
}

#[test]
fn tlspoolctl_connect_udp_waits_for_replies_after_input() {
    let daemon = start_daemon(&[]);
    let port = free_udp_port();
    let _server = gnutls_udp_echo_server(port);

    let mut child = tlspoolctl(&daemon)
        .args(["connect", "--udp", "127.0.0.1", &port.to_string()])
        .args(["--remote-id", PEER])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start tlspoolctl connect --udp");
    // All input and its end arrive before the handshake is done, as from a pipe.
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(b"one\ntwo\nthree\n")
        .expect("write the lines");
    drop(stdin);
    let output = child.wait_with_output().expect("tlspoolctl exits");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tlspoolctl failed: {stderr}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "one\ntwo\nthree\n",
        "stderr: {stderr}"
    );
    assert!(stderr.contains("protocol-version: DTLS"), "{stderr}");
    assert!(stderr.contains("peer-certificate-type: X.509"), "{stderr}");
    assert!(stderr.contains("local-certificate-type: "), "{stderr}");
}

/// Starts `tlspoolctl serve --udp --echo` on 127.0.0.1:`port` for `DOMAIN` and waits until
/// it listens; `extra` adds options such as `--once`.
fn tlspoolctl_serve_udp(daemon: &TestDaemon, port: u16, extra: &[&str]) -> Peer {
    let serve = Peer::spawn("tlspoolctl serve --udp", {
        let mut command = tlspoolctl(daemon);
        command.args([
            "serve",
            "--udp",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--local-id",
            DOMAIN,
            "--echo",
        ]);
        command.args(extra);
        command
    });
    assert!(
        serve.wait_for_output("listening on"),
        "serve did not start:\n{}",
        serve.output()
    );
    serve
}

/// Sends `line` from `cli` and checks that `serve` echoes it back.
fn assert_echo(cli: &mut Peer, serve: &Peer, line: &str) {
    cli.send_line(line);
    assert!(
        cli.wait_for_output(line),
        "gnutls-cli got no echo of {line:?}:\n{}\nserve:\n{}",
        cli.output(),
        serve.output()
    );
}

#[test]
fn tlspoolctl_serve_udp_echoes_to_gnutls_cli() {
    let daemon = start_daemon(&[]);
    let port = free_udp_port();
    let mut serve = tlspoolctl_serve_udp(&daemon, port, &["--once"]);
    let mut cli = gnutls_cli_udp(port);
    assert_echo(&mut cli, &serve, "echo me");
    cli.close_stdin();
    assert!(
        serve.wait_exit(),
        "serve --once did not exit:\n{}",
        serve.output()
    );
}

#[test]
fn tlspoolctl_serve_udp_serves_peer_after_peer() {
    let daemon = start_daemon(&[]);
    let port = free_udp_port();
    let serve = tlspoolctl_serve_udp(&daemon, port, &[]);
    for index in 0..3 {
        let mut cli = gnutls_cli_udp(port);
        assert_echo(&mut cli, &serve, &format!("client {index}"));
        cli.close_stdin();
        assert!(
            cli.wait_exit(),
            "gnutls-cli {index} did not exit:\n{}",
            cli.output()
        );
    }
    let output = serve.output();
    assert_eq!(
        output.matches("connection from").count(),
        3,
        "serve:\n{output}"
    );
    assert!(!output.contains("failed"), "serve:\n{output}");
}

#[test]
fn tlspoolctl_serve_udp_serves_peers_at_once() {
    let daemon = start_daemon(&[]);
    let port = free_udp_port();
    let serve = tlspoolctl_serve_udp(&daemon, port, &[]);
    let mut first = gnutls_cli_udp(port);
    assert_echo(&mut first, &serve, "first client");
    let mut second = gnutls_cli_udp(port);
    assert_echo(&mut second, &serve, "second client");
    assert_echo(&mut first, &serve, "first client again");
}

#[test]
fn tlspoolctl_serve_udp_ignores_stray_datagrams() {
    let daemon = start_daemon(&[]);
    let port = free_udp_port();
    let mut serve = tlspoolctl_serve_udp(&daemon, port, &["--once"]);
    let stray = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
    stray
        .connect(("127.0.0.1", port))
        .expect("connect the stray socket");
    stray
        .set_read_timeout(Some(PEER_TIMEOUT))
        .expect("read timeout");
    stray
        .send(b"not a ClientHello\n")
        .expect("send a stray datagram");
    stray
        .send(&cookieless_client_hello(0))
        .expect("send a cookieless ClientHello");
    let mut reply = vec![0u8; 2048];
    let len = stray
        .recv(&mut reply)
        .expect("a reply to the cookieless ClientHello");
    assert_eq!(reply[0], 22, "the reply is a handshake record");
    assert_eq!(reply[13], 3, "the reply is a HelloVerifyRequest");
    assert!(len > 13 + 12, "the reply carries a cookie");

    let mut cli = gnutls_cli_udp(port);
    assert_echo(&mut cli, &serve, "real client");
    cli.close_stdin();
    assert!(
        serve.wait_exit(),
        "serve --once did not exit:\n{}",
        serve.output()
    );
    let stray_address = stray.local_addr().expect("stray address").to_string();
    let output = serve.output();
    assert!(!output.contains(&stray_address), "serve:\n{output}");
}

#[test]
fn dtls_session_serves_prng_and_detach() {
    let daemon = start_daemon(&[]);
    let (client_session, server_session) = pool_pair(&daemon);
    let client_key = client_session.connection.ctlkey;
    let server_key = server_session.connection.ctlkey;

    let label = "EXPERIMENTAL-tlspool-test";
    let from_client = client_session
        .control
        .prng(&client_key, label, None, 32)
        .expect("PRNG on the client session");
    let from_server = server_session
        .control
        .prng(&server_key, label, None, 32)
        .expect("PRNG on the server session");
    assert_eq!(from_client.len(), 32);
    assert_eq!(from_client, from_server, "both ends export the same bytes");

    client_session
        .control
        .detach(&client_key)
        .expect("detach the client session");
    let other = blocking::Client::connect(Some(daemon.socket_path())).expect("connect");
    other
        .reattach(&client_key)
        .expect("reattach on another connection");
    let mut client = client_session.connection;
    let mut server = server_session.connection;
    client.plaintext.write_all(b"after reattach").expect("send");
    assert_eq!(recv_datagram(&mut server.plaintext), b"after reattach");
}

/// Runs a UDP echo service on 127.0.0.1 on a thread and returns its port.
fn udp_echo_service() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the echo service");
    let port = socket.local_addr().expect("address").port();
    thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok((len, sender)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..len], sender);
        }
    });
    port
}

/// Starts `tlstunnel ARGS -S SOCKET` in the foreground.
fn tlstunnel(daemon: &TestDaemon, args: &[&str]) -> Peer {
    let mut command = std::process::Command::new(tlspool_tests::bin_path("tlstunnel"));
    command.args(args).arg("-S").arg(daemon.socket_path());
    Peer::spawn("tlstunnel", command)
}

/// Starts `tlstunnel -s -u` for `DOMAIN` on 127.0.0.1:`port`, forwarding to the UDP service
/// on 127.0.0.1:`backend_port`.
fn tlstunnel_udp_server(daemon: &TestDaemon, port: u16, backend_port: u16) -> Peer {
    tlstunnel(
        daemon,
        &[
            "-s",
            "-u",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-r",
            &format!("127.0.0.1:{backend_port}"),
            "-L",
            DOMAIN,
            "--ignore-remote-id",
        ],
    )
}

#[test]
fn tlstunnel_udp_both_modes_reach_echo_service() {
    let daemon = start_daemon(&[]);
    let echo_port = udp_echo_service();
    let server_port = free_udp_port();
    let client_port = free_udp_port();
    let server = tlstunnel_udp_server(&daemon, server_port, echo_port);
    let client = tlstunnel(
        &daemon,
        &[
            "-c",
            "-u",
            "-l",
            &format!("127.0.0.1:{client_port}"),
            "-r",
            &format!("127.0.0.1:{server_port}"),
            "-L",
            DOMAIN,
            "-R",
            DOMAIN,
        ],
    );

    let app = UdpSocket::bind("127.0.0.1:0").expect("bind the application socket");
    app.connect(("127.0.0.1", client_port)).expect("connect");
    app.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("read timeout");
    // The tunnels bind their ports some time after they start, so the first datagram is sent
    // again until its echo returns.
    let mut buf = [0u8; 2048];
    let mut first_echo = None;
    for _ in 0..60 {
        let _ = app.send(b"through both tunnels");
        match app.recv(&mut buf) {
            Ok(len) => {
                first_echo = Some(buf[..len].to_vec());
                break;
            }
            // Nothing listens yet: the ICMP port unreachable arrives at once.
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                thread::sleep(Duration::from_millis(200));
            }
            Err(_) => {}
        }
    }
    assert_eq!(
        first_echo.as_deref(),
        Some(&b"through both tunnels"[..]),
        "no echo through the tunnels\nclient:\n{}\nserver:\n{}",
        client.output(),
        server.output()
    );
    // Late echoes of the retries may still arrive; each is the same datagram.
    app.set_read_timeout(Some(PEER_TIMEOUT))
        .expect("read timeout");
    for len in [1, 100, MAX_TESTED_DATAGRAM] {
        let datagram = pattern(len, 3);
        app.send(&datagram).expect("send");
        let echo = loop {
            let received = app.recv(&mut buf).expect("an echo arrives");
            if &buf[..received] != b"through both tunnels" {
                break buf[..received].to_vec();
            }
        };
        assert_eq!(echo.len(), len, "echo length of a {len}-byte datagram");
        assert_eq!(echo, datagram, "echo content of a {len}-byte datagram");
    }
}

/// Returns whether `datagram` is a DTLS ClientHello with an empty cookie, the kind a client
/// sends before any HelloVerifyRequest (RFC 6347 section 4.2.1).
fn is_cookieless_client_hello(datagram: &[u8]) -> bool {
    // Record header (13 bytes), handshake header (12), client_version (2) and random (32).
    const SESSION_ID_LENGTH: usize = 13 + 12 + 2 + 32;
    if datagram.len() <= SESSION_ID_LENGTH || datagram[0] != 22 || datagram[13] != 1 {
        return false;
    }
    let cookie_length = SESSION_ID_LENGTH + 1 + usize::from(datagram[SESSION_ID_LENGTH]);
    datagram.get(cookie_length) == Some(&0)
}

/// A UDP relay on 127.0.0.1 in front of `upstream` that forwards datagrams both ways for one
/// client and counts the cookieless ClientHellos that client sends.
struct HelloCountingRelay {
    address: SocketAddr,
    cookieless_hellos: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl HelloCountingRelay {
    fn start(upstream: SocketAddr) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};

        let front = UdpSocket::bind("127.0.0.1:0").expect("bind the relay");
        let address = front.local_addr().expect("relay address");
        let back = UdpSocket::bind("127.0.0.1:0").expect("bind the relay's upstream socket");
        back.connect(upstream).expect("connect the relay upstream");
        let cookieless_hellos = Arc::new(AtomicUsize::new(0));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();

        let (front_in, back_out) = (
            front.try_clone().expect("clone"),
            back.try_clone().expect("clone"),
        );
        let (count, client_in) = (Arc::clone(&cookieless_hellos), Arc::clone(&client));
        thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok((len, sender)) = front_in.recv_from(&mut buf) {
                if is_cookieless_client_hello(&buf[..len]) {
                    count.fetch_add(1, Ordering::SeqCst);
                }
                *client_in.lock().expect("relay client lock") = Some(sender);
                let _ = back_out.send(&buf[..len]);
            }
        });
        thread::spawn(move || {
            let mut buf = [0u8; 65536];
            loop {
                let len = match back.recv(&mut buf) {
                    Ok(len) => len,
                    // An ICMP port unreachable from the tunnel before it listens.
                    Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                        continue;
                    }
                    Err(_) => return,
                };
                let sender = *client.lock().expect("relay client lock");
                if let Some(sender) = sender {
                    let _ = front.send_to(&buf[..len], sender);
                }
            }
        });
        Self {
            address,
            cookieless_hellos,
        }
    }

    fn cookieless_hellos(&self) -> usize {
        self.cookieless_hellos
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn tlstunnel_udp_server_answers_first_client_hello() {
    let daemon = start_daemon(&[]);
    let echo_port = udp_echo_service();
    let server_port = free_udp_port();
    let server = tlstunnel_udp_server(&daemon, server_port, echo_port);
    assert!(
        server.wait_for_output("udp tunnel listening"),
        "tlstunnel -s -u did not start:\n{}",
        server.output()
    );
    let relay = HelloCountingRelay::start(([127, 0, 0, 1], server_port).into());

    let control = blocking::Client::connect(Some(daemon.socket_path())).expect("connect");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
    udp.connect(relay.address).expect("connect UDP");
    let request = StartTlsRequest::client(DOMAIN)
        .local_id(DOMAIN)
        .dtls()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("request");
    let mut connection = control
        .starttls(udp, &request)
        .unwrap_or_else(|error| panic!("dtls starttls: {error}\ntunnel:\n{}", server.output()));
    set_read_timeout(&connection.plaintext);
    connection.plaintext.write_all(b"first try").expect("send");
    assert_eq!(recv_datagram(&mut connection.plaintext), b"first try");

    // A dropped first ClientHello makes the client send it again after its 1 s
    // retransmission timer, so a second cookieless ClientHello passes the relay.
    assert_eq!(
        relay.cookieless_hellos(),
        1,
        "cookieless ClientHellos the client sent\ntunnel:\n{}",
        server.output()
    );
}

#[test]
fn tlspoolctl_connect_udp_to_closed_port_fails() {
    let daemon = start_daemon(&[]);
    let port = free_udp_port();

    // The request's handshake timeout is 40 s, so a hang until then would end with "timed
    // out" instead of the ICMP port unreachable that loopback returns at once.
    let output = tlspoolctl(&daemon)
        .args(["connect", "--udp", "127.0.0.1", &port.to_string()])
        .args(["--remote-id", PEER])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run tlspoolctl connect --udp");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "tlspoolctl succeeded: {stderr}");
    assert!(stderr.contains("port unreachable"), "tlspoolctl: {stderr}");
    assert!(!stderr.contains("timed out"), "tlspoolctl: {stderr}");
}

/// Datagrams that are no valid DTLS record of the session: empty, too short for a record
/// header, random bytes, a record of an unknown content type, application data of epoch 1
/// that fails to decrypt, a record of epoch 0 after the handshake, a record whose length field
/// exceeds the datagram, a zero-length record and a cookieless ClientHello.
fn garbage_datagrams() -> Vec<Vec<u8>> {
    let mut forged = vec![23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 99, 0, 40];
    forged.extend_from_slice(&[0xa5; 40]);
    let mut epoch_zero = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 200, 0, 4];
    epoch_zero.extend_from_slice(&[20, 0, 0, 0]);
    let mut overlong = vec![23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 100, 0x40, 0];
    overlong.extend_from_slice(&[7; 16]);
    vec![
        Vec::new(),
        vec![0x17],
        pattern(300, 9),
        vec![99, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 98, 0, 2, 1, 2],
        forged,
        epoch_zero,
        overlong,
        vec![23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 101, 0, 0],
        cookieless_client_hello(7),
    ]
}

#[test]
fn garbage_datagrams_leave_session_alive() {
    let daemon = start_daemon(&[]);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
    let server_address = socket.local_addr().expect("address");
    let server = pool_server(&daemon, socket);
    let control = blocking::Client::connect(Some(daemon.socket_path())).expect("connect");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
    udp.connect(server_address).expect("connect UDP");
    // A second descriptor of the client's socket sends from the client's own address, as an
    // attacker who spoofs it, or a broken peer, would.
    let client_address_sender = udp.try_clone().expect("dup the client socket");
    let mut client = pool_client_on(&control, udp, DOMAIN);
    let accepted_session = server.join().expect("the server thread");
    let mut accepted = accepted_session.connection;
    client.plaintext.write_all(b"before").expect("send");
    assert_eq!(recv_datagram(&mut accepted.plaintext), b"before");

    for (index, garbage) in garbage_datagrams().iter().enumerate() {
        client_address_sender
            .send(garbage)
            .unwrap_or_else(|error| panic!("send garbage datagram {index}: {error}"));
        let datagram = pattern(50, index);
        client.plaintext.write_all(&datagram).expect("send");
        let mut buf = vec![0u8; 2048];
        let received = accepted.plaintext.read(&mut buf).unwrap_or_else(|error| {
            panic!(
                "no datagram after garbage datagram {index}: {error}\ndaemon:\n{}",
                daemon.stderr()
            )
        });
        assert_eq!(
            &buf[..received],
            &datagram[..],
            "datagram after garbage datagram {index}"
        );
    }
    accepted.plaintext.write_all(b"reply").expect("send back");
    assert_eq!(recv_datagram(&mut client.plaintext), b"reply");
}

#[test]
fn sctp_starttls_is_not_supported() {
    use tlspool_proto::blocking::RecordStream;
    use tlspool_proto::{FixedString, Identity, Payload, Record, StartTls, StartTlsFlags};

    let daemon = start_daemon(&[]);
    let mut stream = RecordStream::connect(daemon.socket_path()).expect("connect");
    stream
        .get_ref()
        .set_read_timeout(Some(PEER_TIMEOUT))
        .expect("read timeout");
    let request = Record::new(
        1,
        Payload::StartTls(StartTls {
            flags: StartTlsFlags::LOCALROLE_CLIENT
                | StartTlsFlags::REMOTEROLE_SERVER
                | StartTlsFlags::DTLS,
            local: 0,
            ipproto: 132,
            streamid: 3,
            localid: Identity::new("").expect("localid fits"),
            remoteid: Identity::new(PEER).expect("remoteid fits"),
            ctlkey: [1; 16],
            service: FixedString::new("generic").expect("service fits"),
            timeout: 10_000,
        }),
    );
    // This kernel has no SCTP, so a UDP socket replaces the SCTP one.
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
    udp.connect(("127.0.0.1", free_udp_port()))
        .expect("connect UDP");
    stream
        .send_record(&request, Some(std::os::fd::AsFd::as_fd(&udp)))
        .expect("send STARTTLS");
    let frame = stream
        .recv()
        .expect("receive from the daemon")
        .expect("the daemon answers");
    let reply = frame.decode().expect("decode the reply");
    let Payload::Error(error) = reply.payload else {
        panic!("STARTTLS over SCTP got {:?}", reply.payload);
    };
    assert!(
        error.message.contains("SCTP"),
        "error message: {}",
        error.message
    );
    assert!(
        error.message.contains("not supported on this system"),
        "error message: {}",
        error.message
    );
}
