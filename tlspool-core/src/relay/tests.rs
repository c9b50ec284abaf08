//! Relay tests over real sockets: a client relay and a server relay joined by a loopback TCP
//! connection, each with a UNIX socketpair to a test "application", moving data that the
//! receiving end checks by SHA-256.

use std::fs;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::tls::tests::{TLS13, anonymous_client, client_session, fixture, server_session};
use crate::tls::{ClientCertificate, Role, TlsError};

mod privacy;

const MIB: usize = 1024 * 1024;

/// Upper bound on [`RelayOutcome::peak_buffered`]: one record of pending ciphertext beyond
/// the 16 KiB limit, one incomplete record plus one 32 KiB read of inbound ciphertext, and one
/// decrypted record.
const BUFFERED_LIMIT: usize = 128 * 1024;

/// The `/proc/self/fd` link of a descriptor (`socket:[inode]`), to tell later whether that
/// very socket is still open even when the number was reused.
#[derive(Debug)]
struct FdIdentity {
    fd: RawFd,
    link: PathBuf,
}

impl FdIdentity {
    fn of(fd: &impl AsRawFd) -> Self {
        let fd = fd.as_raw_fd();
        let link = fs::read_link(format!("/proc/self/fd/{fd}")).expect("descriptor is open");
        Self { fd, link }
    }

    fn assert_closed(&self) {
        if let Ok(link) = fs::read_link(format!("/proc/self/fd/{}", self.fd)) {
            assert_ne!(link, self.link, "descriptor {} is still open", self.fd);
        }
    }
}

fn tcp_pair() -> (OwnedFd, OwnedFd) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("loopback bind");
    let client = TcpStream::connect(listener.local_addr().unwrap()).expect("loopback connect");
    let (server, _) = listener.accept().expect("loopback accept");
    (client.into(), server.into())
}

/// Returns the relay's end of a socketpair and the application's end as a tokio stream.
fn app_pair() -> (OwnedFd, UnixStream) {
    let (relay_end, app_end) = StdUnixStream::pair().expect("socketpair");
    app_end.set_nonblocking(true).unwrap();
    (relay_end.into(), UnixStream::from_std(app_end).unwrap())
}

fn sessions() -> (Session, Session) {
    let f = fixture();
    let client = client_session(TLS13, Some("ecdsa.example"), &anonymous_client());
    let server = server_session(
        TLS13,
        ClientCertificate::Ignore,
        &f.ecdsa_server.credentials(&f.ca_pem),
    );
    (client, server)
}

/// Handshakes `session` over `cipher` and relays it to `plaintext`.
fn spawn_relay(
    mut session: Session,
    cipher: OwnedFd,
    plaintext: OwnedFd,
    stop: CancellationToken,
) -> JoinHandle<RelayOutcome> {
    tokio::spawn(async move {
        let socket = CipherSocket::new(cipher).expect("cipher socket registers");
        drive_handshake(&mut session, &socket, Some(Duration::from_secs(10)))
            .await
            .expect("handshake completes");
        run(session, socket.into_fd(), plaintext, stop).await
    })
}

/// Two relays back to back: client application ⇄ client relay ⇄ TCP ⇄ server relay ⇄ server
/// application.
struct Tunnel {
    client_app: UnixStream,
    server_app: UnixStream,
    client_relay: JoinHandle<RelayOutcome>,
    server_relay: JoinHandle<RelayOutcome>,
    stop: CancellationToken,
    relay_fds: Vec<FdIdentity>,
}

impl Tunnel {
    fn start() -> Self {
        let (client, server) = sessions();
        let (client_cipher, server_cipher) = tcp_pair();
        let (client_plain, client_app) = app_pair();
        let (server_plain, server_app) = app_pair();
        let relay_fds = [&client_cipher, &server_cipher, &client_plain, &server_plain]
            .map(FdIdentity::of)
            .into();
        let stop = CancellationToken::new();
        Self {
            client_relay: spawn_relay(client, client_cipher, client_plain, stop.clone()),
            server_relay: spawn_relay(server, server_cipher, server_plain, stop.clone()),
            client_app,
            server_app,
            stop,
            relay_fds,
        }
    }

    /// Sends four bytes from the client application to the server's, which proves both relays
    /// are running.
    async fn ping(&mut self) {
        self.client_app.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        self.server_app.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
    }

    /// Waits for both relays, checks that their descriptors are closed and returns the
    /// client's and the server's outcome.
    async fn finish(
        client_relay: JoinHandle<RelayOutcome>,
        server_relay: JoinHandle<RelayOutcome>,
        relay_fds: &[FdIdentity],
    ) -> (RelayOutcome, RelayOutcome) {
        let wait = async { (client_relay.await, server_relay.await) };
        let (client, server) = tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .expect("relays end within 60 s");
        for fd in relay_fds {
            fd.assert_closed();
        }
        (client.expect("client relay"), server.expect("server relay"))
    }
}

/// Fills `buf` from a xorshift64 generator, so sender and receiver need not share a copy.
fn fill(buf: &mut [u8], state: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
}

/// Writes `len` generated bytes, shuts down the write side and returns their SHA-256.
async fn send_generated(mut writer: OwnedWriteHalf, len: usize, seed: u64) -> [u8; 32] {
    let mut state = seed;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        fill(&mut buf[..n], &mut state);
        hasher.update(&buf[..n]);
        writer
            .write_all(&buf[..n])
            .await
            .expect("application write");
        left -= n;
    }
    writer.shutdown().await.expect("application shutdown");
    hasher.finalize().into()
}

/// Reads to end of file, pausing `pause` after every 256 KiB; returns the count and SHA-256.
async fn receive_all(mut reader: OwnedReadHalf, pause: Duration) -> (usize, [u8; 32]) {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    let mut since_pause = 0;
    loop {
        let n = reader.read(&mut buf).await.expect("application read");
        if n == 0 {
            return (total, hasher.finalize().into());
        }
        hasher.update(&buf[..n]);
        total += n;
        since_pause += n;
        if !pause.is_zero() && since_pause >= 256 * 1024 {
            since_pause = 0;
            tokio::time::sleep(pause).await;
        }
    }
}

/// Sends `len` bytes each way at once through a tunnel and checks both digests, the byte
/// counts and the buffer bound.
async fn transfer_both_ways(len: usize) {
    let tunnel = Tunnel::start();
    let (client_read, client_write) = tunnel.client_app.into_split();
    let (server_read, server_write) = tunnel.server_app.into_split();

    let upload = tokio::spawn(send_generated(client_write, len, 1));
    let download = tokio::spawn(send_generated(server_write, len, 2));
    let uploaded = tokio::spawn(receive_all(server_read, Duration::ZERO));
    let downloaded = tokio::spawn(receive_all(client_read, Duration::ZERO));

    let (up_len, up_received) = uploaded.await.unwrap();
    let (down_len, down_received) = downloaded.await.unwrap();
    assert_eq!(up_len, len);
    assert_eq!(down_len, len);
    assert_eq!(
        up_received,
        upload.await.unwrap(),
        "client to server digest"
    );
    assert_eq!(
        down_received,
        download.await.unwrap(),
        "server to client digest"
    );

    let (client, server) =
        Tunnel::finish(tunnel.client_relay, tunnel.server_relay, &tunnel.relay_fds).await;
    for outcome in [&client, &server] {
        assert!(matches!(outcome.end, RelayEnd::Closed), "{outcome:?}");
        assert!(outcome.peak_buffered < BUFFERED_LIMIT, "{outcome:?}");
    }
    assert_eq!(client.plaintext_to_tls, len as u64);
    assert_eq!(client.tls_to_plaintext, len as u64);
    assert_eq!(server.plaintext_to_tls, len as u64);
    assert_eq!(server.tls_to_plaintext, len as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_64_mib_each_way_at_once() {
    transfer_both_ways(64 * MIB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "1 GiB transfer; run with --ignored"]
async fn relays_1_gib_each_way_at_once() {
    transfer_both_ways(1024 * MIB).await;
}

/// One side finishes sending first; the other direction still carries `reply_len` bytes.
async fn half_close_then_reply(first: Role, reply_len: usize) {
    let tunnel = Tunnel::start();
    let (client_read, client_write) = tunnel.client_app.into_split();
    let (server_read, server_write) = tunnel.server_app.into_split();
    let (quiet_read, quiet_write, busy_read, busy_write) = match first {
        Role::Client => (server_read, client_write, client_read, server_write),
        Role::Server => (client_read, server_write, server_read, client_write),
    };

    // The quiet side sends a short request and closes its write side at once.
    let request = send_generated(quiet_write, 1000, 3).await;
    let (request_len, request_received) = receive_all(quiet_read, Duration::ZERO).await;
    assert_eq!(request_len, 1000);
    assert_eq!(request_received, request);

    // After the peer saw end of file, the other direction still flows.
    let reply = tokio::spawn(send_generated(busy_write, reply_len, 4));
    let (reply_received_len, reply_received) = receive_all(busy_read, Duration::ZERO).await;
    assert_eq!(reply_received_len, reply_len);
    assert_eq!(reply_received, reply.await.unwrap());

    let (client, server) =
        Tunnel::finish(tunnel.client_relay, tunnel.server_relay, &tunnel.relay_fds).await;
    assert!(matches!(client.end, RelayEnd::Closed), "{client:?}");
    assert!(matches!(server.end, RelayEnd::Closed), "{server:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_eof_keeps_tls_to_plaintext_flowing() {
    half_close_then_reply(Role::Client, 4 * MIB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_close_notify_keeps_plaintext_to_tls_flowing() {
    half_close_then_reply(Role::Server, 4 * MIB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_then_immediate_close_loses_nothing() {
    let tunnel = Tunnel::start();
    let len = 300 * 1024 + 17;

    // Written before the handshake ends, then the socket is closed entirely.
    let mut data = vec![0u8; len];
    fill(&mut data, &mut 5);
    let mut client_app = tunnel.client_app;
    client_app.write_all(&data).await.unwrap();
    drop(client_app);

    let (server_read, _server_write) = tunnel.server_app.into_split();
    let (received_len, received) = receive_all(server_read, Duration::ZERO).await;
    assert_eq!(received_len, len);
    assert_eq!(received, <[u8; 32]>::from(Sha256::digest(&data)));
    drop(_server_write);

    let (client, server) =
        Tunnel::finish(tunnel.client_relay, tunnel.server_relay, &tunnel.relay_fds).await;
    assert_eq!(client.plaintext_to_tls, len as u64);
    assert_eq!(server.tls_to_plaintext, len as u64);
    assert!(
        matches!(client.end, RelayEnd::HungUp(DescriptorRole::Plaintext)),
        "{client:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_backpressure_bounds_buffers() {
    let tunnel = Tunnel::start();
    let len = 16 * MIB;
    let (_client_read, client_write) = tunnel.client_app.into_split();
    let (server_read, server_write) = tunnel.server_app.into_split();

    let sent = tokio::spawn(send_generated(client_write, len, 6));
    let started = Instant::now();
    let (received_len, received) = receive_all(server_read, Duration::from_millis(2)).await;
    assert_eq!(received_len, len);
    assert_eq!(received, sent.await.unwrap());
    assert!(
        started.elapsed() >= Duration::from_millis(2 * 64),
        "the reader paused 64 times"
    );

    drop(server_write);
    let (client, server) =
        Tunnel::finish(tunnel.client_relay, tunnel.server_relay, &tunnel.relay_fds).await;
    assert!(client.peak_buffered < BUFFERED_LIMIT, "{client:?}");
    assert!(server.peak_buffered < BUFFERED_LIMIT, "{server:?}");
    assert!(matches!(server.end, RelayEnd::Closed), "{server:?}");
}

/// A client session handshaken over loopback TCP: its session and socket, the server's raw
/// socket, and the client relay's plaintext pair with the descriptors it will own.
struct HandshakenClient {
    session: Session,
    cipher: CipherSocket,
    server_cipher: OwnedFd,
    plaintext: OwnedFd,
    app: UnixStream,
    relay_fds: [FdIdentity; 2],
}

async fn handshaken_client() -> HandshakenClient {
    let (mut session, mut server) = sessions();
    let (client_cipher, server_cipher) = tcp_pair();
    let (plaintext, app) = app_pair();
    let relay_fds = [FdIdentity::of(&client_cipher), FdIdentity::of(&plaintext)];

    let cipher = CipherSocket::new(client_cipher).unwrap();
    let server_socket = CipherSocket::new(server_cipher).unwrap();
    let timeout = Some(Duration::from_secs(10));
    let (c, s) = tokio::join!(
        drive_handshake(&mut session, &cipher, timeout),
        drive_handshake(&mut server, &server_socket, timeout)
    );
    c.expect("client handshake");
    s.expect("server handshake");
    HandshakenClient {
        session,
        cipher,
        server_cipher: server_socket.into_fd(),
        plaintext,
        app,
        relay_fds,
    }
}

/// Relays a handshaken session until it ends, within 10 s.
async fn relay_to_end(session: Session, cipher: CipherSocket, plaintext: OwnedFd) -> RelayOutcome {
    let outcome = run(
        session,
        cipher.into_fd(),
        plaintext,
        CancellationToken::new(),
    );
    tokio::time::timeout(Duration::from_secs(10), outcome)
        .await
        .expect("relay ends")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_garbage_ends_relay_and_closes_descriptors() {
    let HandshakenClient {
        session,
        cipher,
        server_cipher,
        plaintext,
        mut app,
        relay_fds,
    } = handshaken_client().await;

    // The server end sends a forged application data record.
    let mut forged = vec![0x17, 0x03, 0x03, 0x00, 0x40];
    forged.extend_from_slice(&[0x41; 64]);
    let mut peer = tokio::net::TcpStream::from_std(server_cipher.into()).unwrap();
    peer.write_all(&forged).await.unwrap();

    let outcome = relay_to_end(session, cipher, plaintext).await;
    assert!(
        matches!(
            &outcome.end,
            RelayEnd::Failed(RelayError::Tls {
                call: "read_plaintext",
                ..
            })
        ),
        "{outcome:?}"
    );
    for fd in &relay_fds {
        fd.assert_closed();
    }
    let mut buf = [0u8; 16];
    assert_eq!(
        app.read(&mut buf).await.unwrap(),
        0,
        "application reads EOF"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_eof_without_close_notify_is_truncation() {
    let client = handshaken_client().await;
    drop(client.server_cipher);

    let outcome = relay_to_end(client.session, client.cipher, client.plaintext).await;
    assert!(
        matches!(
            &outcome.end,
            RelayEnd::Failed(RelayError::Tls {
                source: TlsError::PrematureTermination,
                ..
            })
        ),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_resets_tcp_application() {
    let (mut client, mut server) = sessions();
    let (client_cipher, server_cipher) = tcp_pair();
    let (plaintext, app) = tcp_pair();
    let cipher = CipherSocket::new(client_cipher).unwrap();
    let server_socket = CipherSocket::new(server_cipher).unwrap();
    let timeout = Some(Duration::from_secs(10));
    let (c, s) = tokio::join!(
        drive_handshake(&mut client, &cipher, timeout),
        drive_handshake(&mut server, &server_socket, timeout)
    );
    c.expect("client handshake");
    s.expect("server handshake");

    // The server sends one record, then closes TCP without close_notify.
    server.write_plaintext(b"partial").unwrap();
    handshake::flush_ciphertext(&mut server, &server_socket.socket)
        .await
        .unwrap();
    drop(server_socket);
    drop(server);

    let outcome = relay_to_end(client, cipher, plaintext).await;
    assert!(
        matches!(
            &outcome.end,
            RelayEnd::Failed(RelayError::Tls {
                source: TlsError::PrematureTermination,
                ..
            })
        ),
        "{outcome:?}"
    );
    let app = TcpStream::from(app);
    app.set_nonblocking(true).unwrap();
    let mut app = tokio::net::TcpStream::from_std(app).unwrap();
    let mut received = [0u8; 7];
    app.read_exact(&mut received).await.unwrap();
    assert_eq!(&received, b"partial", "bytes before the truncation arrive");
    let error = app.read(&mut received).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_hangs_up_unix_application() {
    let mut client = handshaken_client().await;
    drop(client.server_cipher);

    let outcome = relay_to_end(client.session, client.cipher, client.plaintext).await;
    assert!(!matches!(outcome.end, RelayEnd::Closed), "{outcome:?}");
    // The reactor may still hold the writable readiness of the registration when the relay
    // ends, so the hang-up shows once its event has been read.
    let hung_up = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let ready = client
                .app
                .ready(tokio::io::Interest::WRITABLE)
                .await
                .unwrap();
            if ready.is_write_closed() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(hung_up.is_ok(), "POLLHUP is reported within 10 s");
    let mut buf = [0u8; 4];
    assert_eq!(client.app.read(&mut buf).await.unwrap(), 0);
    let error = client.app.write_all(b"late").await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sends_queued_plaintext_then_close_notify() {
    let (client, server) = sessions();
    let (client_cipher, server_cipher) = tcp_pair();
    let (client_plain, mut client_app) = app_pair();
    let (server_plain, mut server_app) = app_pair();
    let queued: Vec<u8> = (0..64 * 1024_u32).map(|i| (i % 251) as u8).collect();
    client_app.write_all(&queued).await.unwrap();

    // The client relay starts already stopped, with the application's bytes queued.
    let stopped = CancellationToken::new();
    stopped.cancel();
    let client_relay = spawn_relay(client, client_cipher, client_plain, stopped);
    let server_relay = spawn_relay(
        server,
        server_cipher,
        server_plain,
        CancellationToken::new(),
    );

    let mut received = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(60),
        server_app.read_to_end(&mut received),
    )
    .await
    .expect("the server application reads to its end within 60 s")
    .expect("the server application reads a clean end of file");
    assert_eq!(received.len(), queued.len());
    assert!(received == queued, "the relayed bytes differ");

    let client = client_relay.await.unwrap();
    assert!(matches!(client.end, RelayEnd::Stopped), "{client:?}");
    assert_eq!(client.plaintext_to_tls, queued.len() as u64);
    drop(server_app);
    let server = tokio::time::timeout(Duration::from_secs(60), server_relay)
        .await
        .expect("the server relay ends within 60 s")
        .unwrap();
    assert_eq!(server.tls_to_plaintext, queued.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_times_out_on_silent_peer() {
    let (client, _) = sessions();
    let mut client = client;
    let (client_cipher, _silent_peer) = tcp_pair();
    let socket = CipherSocket::new(client_cipher).unwrap();

    let started = Instant::now();
    let limit = Duration::from_millis(300);
    let result = drive_handshake(&mut client, &socket, Some(limit)).await;

    assert!(
        matches!(result, Err(RelayError::HandshakeTimedOut { timeout }) if timeout == limit),
        "{result:?}"
    );
    assert!(started.elapsed() >= limit);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_fails_when_peer_closes() {
    let (mut client, _) = sessions();
    let (client_cipher, peer) = tcp_pair();
    drop(peer);
    let socket = CipherSocket::new(client_cipher).unwrap();

    let result = drive_handshake(&mut client, &socket, Some(Duration::from_secs(5))).await;

    assert!(
        matches!(
            result,
            Err(RelayError::Tls { .. } | RelayError::ClosedDuringHandshake | RelayError::Io { .. })
        ),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_signal_ends_both_relays() {
    let mut tunnel = Tunnel::start();
    tunnel.ping().await;
    tunnel.stop.cancel();

    let (client, server) =
        Tunnel::finish(tunnel.client_relay, tunnel.server_relay, &tunnel.relay_fds).await;
    assert!(matches!(client.end, RelayEnd::Stopped), "{client:?}");
    assert!(matches!(server.end, RelayEnd::Stopped), "{server:?}");
    assert_eq!(client.plaintext_to_tls, 4);
    assert_eq!(server.tls_to_plaintext, 4);
    let mut buf = [0u8; 4];
    assert_eq!(tunnel.client_app.read(&mut buf).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_relay_future_closes_descriptors() {
    let mut tunnel = Tunnel::start();
    tunnel.ping().await;

    tunnel.client_relay.abort();
    tunnel.server_relay.abort();
    let (client, server) = (tunnel.client_relay.await, tunnel.server_relay.await);

    // Once one relay is dropped, the other may see its peer vanish and end on its own before
    // its abort lands, so only one of them is certain to have been dropped mid-way.
    let cancelled = [&client, &server]
        .iter()
        .filter(|result| result.as_ref().is_err_and(|err| err.is_cancelled()))
        .count();
    assert!(cancelled >= 1, "client {client:?}, server {server:?}");
    for fd in &tunnel.relay_fds {
        fd.assert_closed();
    }
}

#[tokio::test]
async fn regular_file_rejected_as_not_a_socket() {
    let (client, _) = sessions();
    let file = tempfile::tempfile().unwrap();
    let (plain, _app) = app_pair();

    let outcome = run(client, file.into(), plain, CancellationToken::new()).await;

    assert!(
        matches!(
            outcome.end,
            RelayEnd::Failed(RelayError::NotStreamSocket {
                role: DescriptorRole::Cipher
            })
        ),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn datagram_socket_rejected_at_setup() {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (cipher, _peer) = tcp_pair();
    let (client, _) = sessions();

    let outcome = run(client, cipher, udp.into(), CancellationToken::new()).await;

    assert!(
        matches!(
            outcome.end,
            RelayEnd::Failed(RelayError::NotStreamSocket {
                role: DescriptorRole::Plaintext
            })
        ),
        "{outcome:?}"
    );
}

/// Handshakes `session` over `cipher` and relays it with a request queue.
fn spawn_queried_relay(
    mut session: Session,
    cipher: OwnedFd,
    plaintext: OwnedFd,
    stop: CancellationToken,
) -> (SessionQueries, JoinHandle<RelayOutcome>) {
    let (queries, receiver) = query_channel();
    let relay = tokio::spawn(async move {
        let socket = CipherSocket::new(cipher).expect("cipher socket registers");
        drive_handshake(&mut session, &socket, Some(Duration::from_secs(10)))
            .await
            .expect("handshake completes");
        run_with_queries(session, socket.into_fd(), plaintext, stop, receiver).await
    });
    (queries, relay)
}

fn export(session: &Session) -> Vec<u8> {
    let mut out = vec![0u8; 32];
    session
        .export_keying_material("EXPERIMENTAL-relay-test", Some(b"context"), &mut out)
        .expect("exporter runs");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_run_while_data_flows() {
    let (client, server) = sessions();
    let (client_cipher, server_cipher) = tcp_pair();
    let (client_plain, client_app) = app_pair();
    let (server_plain, server_app) = app_pair();
    let stop = CancellationToken::new();
    let (client_queries, client_relay) =
        spawn_queried_relay(client, client_cipher, client_plain, stop.clone());
    let (server_queries, server_relay) =
        spawn_queried_relay(server, server_cipher, server_plain, stop.clone());

    let len = 8 * MIB;
    let (server_read, _server_write) = server_app.into_split();
    let (_client_read, client_write) = client_app.into_split();
    let upload = tokio::spawn(send_generated(client_write, len, 3));
    let received = tokio::spawn(receive_all(server_read, Duration::ZERO));
    let mut client_values = Vec::new();
    let mut server_values = Vec::new();
    for _ in 0..20 {
        client_values.push(client_queries.run(export).await.expect("client relay runs"));
        server_values.push(server_queries.run(export).await.expect("server relay runs"));
    }
    let (received_len, digest) = received.await.unwrap();
    assert_eq!(received_len, len);
    assert_eq!(digest, upload.await.unwrap());
    assert_eq!(client_values, server_values);
    assert!(client_values.windows(2).all(|pair| pair[0] == pair[1]));

    stop.cancel();
    client_relay.await.unwrap();
    server_relay.await.unwrap();
    assert!(matches!(
        client_queries.run(export).await,
        Err(RelayError::SessionEnded)
    ));
}
