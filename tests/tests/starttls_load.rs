//! Heavy STARTTLS sessions through the built `tlspool` daemon over loopback TCP. The tests
//! send bulk data both ways at once with SHA-256 checks, half-close in each direction, and
//! read everything from a peer that writes and closes at once. A thousand concurrent sessions
//! leave the daemon's descriptor count at its baseline afterwards.
//!
//! Most tests run the pool against itself: one daemon serves both the client STARTTLS and the
//! server STARTTLS of a TCP connection that the test makes on a loopback listener. The
//! identities come from `tlspool-admin dev-init` (see [`tlspool_tests::dev_pki`]). No test
//! here starts `gnutls-serv`, so none needs `scripts/netns-run.sh`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ring::digest::{Context, Digest, SHA256};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use tlspool_client::{Client, StartTlsRequest, blocking};
use tlspool_tests::daemon::TestDaemon;
use tlspool_tests::dev_pki::{DOMAIN, PEER, dev_setup};
use tlspool_tests::tls_peers::{PEER_TIMEOUT, Peer, free_port};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{Barrier, Semaphore};

const MIB: u64 = 1024 * 1024;

/// How long one read on a plaintext socket may block before the test fails.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The size of the buffers the bulk writers and readers use.
const CHUNK: usize = 64 * 1024;

/// Both ends of one pool-to-pool TLS session, with the control connections that keep it.
struct PoolPair {
    client: blocking::TlsConnection,
    server: blocking::TlsConnection,
    /// Closing a control connection ends the sessions it started.
    _controls: [blocking::Client; 2],
}

/// Connects a TCP socket on loopback and runs the client STARTTLS on one end and the server
/// STARTTLS on the other, both through `daemon`.
fn pool_pair(daemon: &TestDaemon) -> PoolPair {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen on loopback");
    let cipher_client = TcpStream::connect(listener.local_addr().expect("listener address"))
        .expect("connect to the listener");
    let (cipher_server, _) = listener.accept().expect("accept the connection");

    let client_control = blocking::Client::connect(Some(daemon.socket_path())).expect("connect");
    let server_control = blocking::Client::connect(Some(daemon.socket_path())).expect("connect");
    let server_side = server_control.clone();
    let server = thread::spawn(move || {
        let request = StartTlsRequest::server(DOMAIN)
            .build()
            .expect("server request");
        server_side.starttls(cipher_server, &request)
    });
    let request = StartTlsRequest::client(DOMAIN)
        .build()
        .expect("client request");
    let client = client_control
        .starttls(cipher_client, &request)
        .expect("client STARTTLS");
    let server = server
        .join()
        .expect("server STARTTLS thread")
        .expect("server STARTTLS");

    assert_eq!(client.remote_id, DOMAIN);
    assert_eq!(server.local_id, DOMAIN);
    assert_eq!(
        server.remote_id, client.local_id,
        "the server saw the client"
    );
    for end in [&client.plaintext, &server.plaintext] {
        end.set_read_timeout(Some(READ_TIMEOUT))
            .expect("plaintext read timeout");
    }
    PoolPair {
        client,
        server,
        _controls: [client_control, server_control],
    }
}

/// A deterministic byte stream (xorshift64), so each direction sends different bytes.
struct Pattern(u64);

impl Pattern {
    fn fill(&mut self, buffer: &mut [u8]) {
        for word in buffer.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            word.copy_from_slice(&self.0.to_le_bytes()[..word.len()]);
        }
    }
}

/// Writes `len` bytes of the pattern seeded with `seed`, then shuts the write side down, and
/// returns the SHA-256 of what was written.
fn send_pattern(mut socket: UnixStream, seed: u64, len: u64) -> Digest {
    let mut pattern = Pattern(seed);
    let mut hash = Context::new(&SHA256);
    let mut buffer = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        let size = usize::try_from(left.min(CHUNK as u64)).expect("chunk fits usize");
        pattern.fill(&mut buffer[..size]);
        socket.write_all(&buffer[..size]).expect("write plaintext");
        hash.update(&buffer[..size]);
        left -= size as u64;
    }
    socket.shutdown(Shutdown::Write).expect("shut down writing");
    hash.finish()
}

/// Reads until EOF and returns the byte count and the SHA-256 of what arrived.
fn receive_all(mut socket: UnixStream) -> (u64, Digest) {
    let mut hash = Context::new(&SHA256);
    let mut buffer = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = socket.read(&mut buffer).expect("read plaintext");
        if n == 0 {
            return (total, hash.finish());
        }
        hash.update(&buffer[..n]);
        total += n as u64;
    }
}

/// Sends `len` bytes from each end to the other at the same time and checks count and
/// SHA-256 on the receiving ends.
fn transfer_both_ways(len: u64) {
    let daemon = dev_setup().start_daemon();
    let pair = pool_pair(&daemon);
    let started = Instant::now();

    let clone = |socket: &UnixStream| socket.try_clone().expect("clone the plaintext socket");
    let client_writer = clone(&pair.client.plaintext);
    let server_writer = clone(&pair.server.plaintext);
    let client_reader = clone(&pair.client.plaintext);
    let server_reader = clone(&pair.server.plaintext);
    let upload = thread::spawn(move || send_pattern(client_writer, 1, len));
    let download = thread::spawn(move || send_pattern(server_writer, 2, len));
    let at_server = thread::spawn(move || receive_all(server_reader));
    let at_client = thread::spawn(move || receive_all(client_reader));

    let sent_up = upload.join().expect("client writer");
    let sent_down = download.join().expect("server writer");
    let (received_up, hash_up) = at_server.join().expect("server reader");
    let (received_down, hash_down) = at_client.join().expect("client reader");
    eprintln!(
        "{} MiB each way in {:.1} s",
        len / MIB,
        started.elapsed().as_secs_f64()
    );

    assert_eq!(received_up, len, "bytes at the server");
    assert_eq!(received_down, len, "bytes at the client");
    assert_eq!(hash_up.as_ref(), sent_up.as_ref(), "SHA-256 at the server");
    assert_eq!(
        hash_down.as_ref(),
        sent_down.as_ref(),
        "SHA-256 at the client"
    );
}

#[test]
fn bulk_64_mib_each_way() {
    transfer_both_ways(64 * MIB);
}

#[test]
#[ignore = "1 GiB each way; run with --ignored"]
fn bulk_1_gib_each_way() {
    transfer_both_ways(1024 * MIB);
}

/// Which end of a pool pair acts first.
#[derive(Clone, Copy, Debug)]
enum Side {
    Client,
    Server,
}

/// Half-closes the plaintext of `closer` while the other end streams 8 MiB to it, and checks
/// that the EOF arrives while the stream goes on, then that the stream ends with its own EOF.
fn half_close_while_streaming(closer: Side) {
    const STREAM_LEN: u64 = 8 * MIB;
    const LAST_WORDS: &[u8] = b"the last bytes before the half-close\n";

    let daemon = dev_setup().start_daemon();
    let pair = pool_pair(&daemon);
    let (closing, streaming) = match closer {
        Side::Client => (pair.client.plaintext, pair.server.plaintext),
        Side::Server => (pair.server.plaintext, pair.client.plaintext),
    };

    // The streaming end writes until the closing end has sent its EOF, and continues after.
    let mut streaming_reader = streaming.try_clone().expect("clone the plaintext socket");
    let (eof_seen_sender, eof_seen) = std::sync::mpsc::channel();
    let streamer = thread::spawn(move || {
        let mut pattern = Pattern(3);
        let mut hash = Context::new(&SHA256);
        let mut buffer = vec![0u8; CHUNK];
        let mut writer = streaming;
        let mut written = 0u64;
        while written < STREAM_LEN {
            pattern.fill(&mut buffer);
            writer.write_all(&buffer).expect("write while half-open");
            hash.update(&buffer);
            written += CHUNK as u64;
            if written == STREAM_LEN / 2 {
                // Wait for the EOF in the middle, so the second half flows after it.
                eof_seen
                    .recv_timeout(READ_TIMEOUT)
                    .expect("the EOF arrived before the second half");
            }
        }
        writer.shutdown(Shutdown::Write).expect("shut down writing");
        hash.finish()
    });

    let mut closing_writer = closing.try_clone().expect("clone the plaintext socket");
    let closing_reader = thread::spawn(move || receive_all(closing));
    closing_writer
        .write_all(LAST_WORDS)
        .expect("write plaintext");
    closing_writer
        .shutdown(Shutdown::Write)
        .expect("shut down writing");

    let mut before_eof = Vec::new();
    streaming_reader
        .read_to_end(&mut before_eof)
        .expect("read up to the EOF");
    assert_eq!(before_eof, LAST_WORDS, "the bytes before the EOF");
    eof_seen_sender.send(()).expect("the streamer waits");

    let (received, hash) = closing_reader.join().expect("reading thread");
    let sent = streamer.join().expect("streaming thread");
    assert_eq!(received, STREAM_LEN, "bytes after the half-close");
    assert_eq!(hash.as_ref(), sent.as_ref(), "SHA-256 after the half-close");
}

#[test]
fn client_half_close_keeps_server_stream() {
    half_close_while_streaming(Side::Client);
}

#[test]
fn server_half_close_keeps_client_stream() {
    half_close_while_streaming(Side::Server);
}

/// The size of the payload that a peer writes just before it closes.
const FAREWELL_LEN: u64 = MIB;

#[test]
fn pool_server_write_then_close_loses_nothing() {
    let daemon = dev_setup().start_daemon();
    let pair = pool_pair(&daemon);

    let server_end = pair.server.plaintext;
    let writer = thread::spawn(move || {
        let sent = send_pattern(
            server_end.try_clone().expect("clone the plaintext socket"),
            4,
            FAREWELL_LEN,
        );
        drop(server_end);
        sent
    });
    let (received, hash) = receive_all(pair.client.plaintext);
    let sent = writer.join().expect("server writer");

    assert_eq!(received, FAREWELL_LEN, "bytes at the client");
    assert_eq!(hash.as_ref(), sent.as_ref(), "SHA-256 at the client");
}

#[test]
fn openssl_www_write_then_close_loses_nothing() {
    let setup = dev_setup();
    let daemon = setup.start_daemon();
    let documents = tempfile::tempdir().expect("temporary directory");
    let mut payload = vec![0u8; usize::try_from(FAREWELL_LEN).expect("payload fits usize")];
    Pattern(5).fill(&mut payload);
    std::fs::write(documents.path().join("payload.bin"), &payload).expect("write the payload");

    // `s_server -WWW` serves one GET request with a file from its working directory, then
    // closes the connection.
    let port = free_port();
    let mut command = Command::new("openssl");
    command
        .current_dir(documents.path())
        .arg("s_server")
        .arg("-accept")
        .arg(format!("127.0.0.1:{port}"))
        .args(["-cert", &setup.file("peer-cert.pem")])
        .args(["-key", &setup.file("peer-key.pem")])
        .arg("-WWW");
    let server = Peer::spawn("openssl s_server -WWW", command);
    assert!(
        server.wait_for_output("ACCEPT"),
        "s_server did not listen:\n{}",
        server.output()
    );

    let control = blocking::Client::connect(Some(daemon.socket_path())).expect("connect");
    let cipher = TcpStream::connect(("127.0.0.1", port)).expect("connect to s_server");
    let request = StartTlsRequest::client(PEER)
        .build()
        .expect("client request");
    let connection = control.starttls(cipher, &request).expect("client STARTTLS");
    let mut plaintext = connection.plaintext;
    plaintext
        .set_read_timeout(Some(PEER_TIMEOUT))
        .expect("plaintext read timeout");
    plaintext
        .write_all(b"GET /payload.bin HTTP/1.0\r\n\r\n")
        .expect("write the request");

    let mut response = Vec::new();
    plaintext
        .read_to_end(&mut response)
        .expect("read the response up to the EOF");
    let header_end = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|position| position + 4)
        .unwrap_or_else(|| panic!("no HTTP header in {} bytes", response.len()));
    assert!(
        response.starts_with(b"HTTP/1.0 200 ok"),
        "{:?}",
        String::from_utf8_lossy(&response[..header_end])
    );
    assert_eq!(response.len() - header_end, payload.len(), "body length");
    assert!(response[header_end..] == payload[..], "body bytes differ");
}

/// The number of sessions that [`concurrent_sessions_free_descriptors`] keeps open at once.
const SESSIONS: usize = 1000;

/// Descriptors one session takes in the daemon or in this process, with room to spare: two
/// control connections, two TCP sockets and two plaintext ends.
const DESCRIPTORS_PER_SESSION: u64 = 8;

/// Raises the soft `RLIMIT_NOFILE` of this process to `needed` unless it is that high
/// already, and returns the soft limit. Children such as the daemon inherit it.
fn raise_nofile_limit(needed: u64) -> u64 {
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    if current >= needed {
        return current;
    }
    let maximum = limit.maximum;
    assert!(
        maximum.is_none_or(|maximum| maximum >= needed),
        "the hard RLIMIT_NOFILE {maximum:?} is below the {needed} descriptors the test needs"
    );
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(needed),
            maximum,
        },
    )
    .expect("raise RLIMIT_NOFILE");
    needed
}

/// Returns the soft "Max open files" limit from `/proc/PID/limits` of `daemon`.
fn daemon_nofile_limit(daemon: &TestDaemon) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", daemon.pid()))
        .expect("read the daemon's limits");
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("the limits list open files");
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()
        .expect("the soft limit");
    if soft == "unlimited" {
        return u64::MAX;
    }
    soft.parse().expect("a numeric soft limit")
}

/// Handshakes per role that may be in progress at once. Both roles together stay below the
/// daemon's listen backlog of 128, because the daemon accepts each control connection before
/// it replies to its STARTTLS.
///
/// NOTE: `Client::connect` fails with `EAGAIN` instead of waiting when the daemon's listen
/// backlog is full, as a burst of a thousand connects makes it, so the handshakes are limited.
const HANDSHAKES_IN_FLIGHT: usize = 32;

/// Connects to the daemon at `socket` and runs the STARTTLS `request` on `cipher`. Returns the
/// control connection, which keeps the session, and the plaintext end.
async fn start_session(
    socket: &Path,
    cipher: tokio::net::TcpStream,
    request: &StartTlsRequest,
) -> (Client, tokio::net::UnixStream) {
    let control = Client::connect(Some(socket))
        .await
        .expect("connect to the daemon");
    let connection = control
        .starttls(cipher, request)
        .await
        .unwrap_or_else(|error| panic!("STARTTLS as {:?}: {error}", request.flags()));
    (control, connection.plaintext)
}

/// Runs the server STARTTLS on `cipher`, replies to the client's greeting, and waits for the
/// client to close.
async fn serve_session(
    socket: Arc<Path>,
    handshakes: Arc<Semaphore>,
    cipher: tokio::net::TcpStream,
) {
    let permit = handshakes
        .acquire()
        .await
        .expect("the semaphore stays open");
    let request = StartTlsRequest::server(DOMAIN)
        .build()
        .expect("server request");
    let (_control, mut plaintext) = start_session(&socket, cipher, &request).await;
    drop(permit);

    let mut greeting = [0u8; GREETING_LEN];
    plaintext
        .read_exact(&mut greeting)
        .await
        .expect("read the greeting");
    plaintext
        .write_all(&reply_to(&greeting))
        .await
        .expect("write the reply");
    let mut rest = Vec::new();
    plaintext
        .read_to_end(&mut rest)
        .await
        .expect("read up to the client's EOF");
    assert!(rest.is_empty(), "the client sent {} more bytes", rest.len());
}

/// The length of `session NNNNN\n`, the greeting of a client.
const GREETING_LEN: usize = 14;

fn reply_to(greeting: &[u8]) -> Vec<u8> {
    [b"reply to ".as_slice(), greeting].concat()
}

/// Runs the client STARTTLS for session `index`, checks the server's reply to its greeting,
/// and keeps the session open until `all_open` and `release` let it go.
async fn client_session(
    socket: Arc<Path>,
    handshakes: Arc<Semaphore>,
    port: u16,
    index: usize,
    all_open: Arc<Barrier>,
    release: Arc<Barrier>,
) {
    let permit = handshakes
        .acquire()
        .await
        .expect("the semaphore stays open");
    let cipher = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the listener");
    let request = StartTlsRequest::client(DOMAIN)
        .build()
        .expect("client request");
    let (_control, mut plaintext) = start_session(&socket, cipher, &request).await;
    drop(permit);

    let greeting = format!("session {index:05}\n").into_bytes();
    assert_eq!(greeting.len(), GREETING_LEN);
    plaintext
        .write_all(&greeting)
        .await
        .expect("write the greeting");
    let mut reply = vec![0u8; reply_to(&greeting).len()];
    plaintext
        .read_exact(&mut reply)
        .await
        .expect("read the reply");
    assert_eq!(reply, reply_to(&greeting), "reply in session {index}");

    all_open.wait().await;
    release.wait().await;
}

#[test]
fn concurrent_sessions_free_descriptors() {
    let needed = DESCRIPTORS_PER_SESSION * SESSIONS as u64 + 256;
    raise_nofile_limit(needed);
    let daemon = dev_setup().start_daemon();
    let daemon_limit = daemon_nofile_limit(&daemon);
    assert!(
        daemon_limit >= needed,
        "the daemon may open {daemon_limit} descriptors, the test needs {needed}"
    );
    let baseline = daemon.settled_fd_count();
    let socket: Arc<Path> = Arc::from(daemon.socket_path());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = Instant::now();
    let (open_count, established) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen on loopback");
        let port = listener.local_addr().expect("listener address").port();
        let server_handshakes = Arc::new(Semaphore::new(HANDSHAKES_IN_FLIGHT));
        let client_handshakes = Arc::new(Semaphore::new(HANDSHAKES_IN_FLIGHT));
        let server_socket = Arc::clone(&socket);
        let servers = tokio::spawn(async move {
            let mut sessions = tokio::task::JoinSet::new();
            for _ in 0..SESSIONS {
                let (cipher, _) = listener.accept().await.expect("accept a client");
                sessions.spawn(serve_session(
                    Arc::clone(&server_socket),
                    Arc::clone(&server_handshakes),
                    cipher,
                ));
            }
            sessions.join_all().await;
        });

        let all_open = Arc::new(Barrier::new(SESSIONS + 1));
        let release = Arc::new(Barrier::new(SESSIONS + 1));
        let mut clients = tokio::task::JoinSet::new();
        for index in 0..SESSIONS {
            clients.spawn(client_session(
                Arc::clone(&socket),
                Arc::clone(&client_handshakes),
                port,
                index,
                Arc::clone(&all_open),
                Arc::clone(&release),
            ));
        }

        // A failed session panics its task, so it never reaches the barrier.
        let waited = tokio::time::timeout(Duration::from_secs(120), all_open.wait()).await;
        if waited.is_err() {
            while let Some(result) = clients.try_join_next() {
                result.expect("client session");
            }
            panic!("not all {SESSIONS} sessions were open within 120 s");
        }
        let established = started.elapsed();
        let open_count = daemon.open_fd_count();
        release.wait().await;
        clients.join_all().await;
        servers.await.expect("server sessions");
        (open_count, established)
    });
    drop(runtime);
    let closed = started.elapsed();

    let open_minimum = baseline + 4 * SESSIONS;
    assert!(
        open_count >= open_minimum,
        "the daemon had {open_count} descriptors with all sessions open, expected at least \
         {open_minimum}"
    );
    let freed_at = Instant::now();
    let count = daemon.wait_fd_count(baseline, Duration::from_secs(5));
    assert_eq!(count, baseline, "daemon descriptors after the sessions");
    eprintln!(
        "{SESSIONS} sessions open after {:.1} s with {open_count} daemon descriptors, closed \
         after {:.1} s, descriptors back to {baseline} {:.1} s later",
        established.as_secs_f64(),
        closed.as_secs_f64(),
        freed_at.elapsed().as_secs_f64()
    );
}
