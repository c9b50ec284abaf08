//! Heavy STARTTLS sessions through the built `tlspool` daemon over loopback TCP. The tests
//! send bulk data both ways at once with SHA-256 checks, half-close in each direction, and
//! read everything from a peer that writes and closes at once.
//!
//! Most tests run the pool against itself: one daemon serves both the client STARTTLS and the
//! server STARTTLS of a TCP connection that the test makes on a loopback listener. The
//! identities come from `tlspool-admin dev-init` (see [`tlspool_tests::dev_pki`]). No test
//! here starts `gnutls-serv`, so none needs `scripts/netns-run.sh`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use ring::digest::{Context, Digest, SHA256};
use tlspool_client::{StartTlsRequest, blocking};
use tlspool_tests::daemon::TestDaemon;
use tlspool_tests::dev_pki::{DOMAIN, PEER, dev_setup};
use tlspool_tests::tls_peers::{PEER_TIMEOUT, Peer, free_port};

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
