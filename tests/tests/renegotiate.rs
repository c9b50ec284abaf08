//! TLS 1.2 renegotiation through the built daemon against real peers on loopback: requested by
//! the application with `PIOF_STARTTLS_RENEGOTIATE` (pool as client of `gnutls-serv` and as
//! server of `gnutls-cli`), requested by the peer (`openssl s_client`'s `R` command), with
//! data before and after each one checked byte for byte, and the error cases: TLS 1.3, an
//! unknown control key, a descriptor with the request, a peer without the extended master
//! secret and a peer that refuses.
//!
//! Run through `scripts/netns-run.sh`, because `gnutls-serv` listens on every interface.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use tlspool_proto::blocking::RecordStream;
use tlspool_proto::{
    ErrorCode, ErrorPayload, FixedString, Identity, Payload, Record, StartTls, StartTlsFlags,
};
use tlspool_tests::daemon::TestDaemon;
use tlspool_tests::dev_pki::{DOMAIN, DevSetup, PEER, dev_setup};
use tlspool_tests::tls_peers::{Peer, free_port, gnutls_cli, gnutls_serv, openssl_s_client};

const STEP_TIMEOUT: Duration = Duration::from_secs(30);
const TLS12: &str = "NORMAL:-VERS-ALL:+VERS-TLS1.2";
const TLS12_DAEMON: &str = "tls_priority NORMAL:-VERS-ALL:+VERS-TLS1.2:%SAFE_RENEGOTIATION";

const CLIENT: StartTlsFlags =
    StartTlsFlags::LOCALROLE_CLIENT.union(StartTlsFlags::REMOTEROLE_SERVER);
const SERVER: StartTlsFlags =
    StartTlsFlags::LOCALROLE_SERVER.union(StartTlsFlags::REMOTEROLE_CLIENT);

fn request(flags: StartTlsFlags, localid: &str, remoteid: &str, ctlkey: u8) -> Record {
    Record::new(
        1,
        Payload::StartTls(StartTls {
            flags,
            local: 0,
            ipproto: 6,
            streamid: 0,
            localid: Identity::new(localid).expect("localid fits"),
            remoteid: Identity::new(remoteid).expect("remoteid fits"),
            ctlkey: [ctlkey; 16],
            service: FixedString::new("generic").expect("service fits"),
            timeout: 10_000,
        }),
    )
}

/// The RENEGOTIATE request for the session of `ctlkey`.
fn renegotiation(flags: StartTlsFlags, localid: &str, remoteid: &str, ctlkey: u8) -> Record {
    let mut record = request(
        flags | StartTlsFlags::RENEGOTIATE,
        localid,
        remoteid,
        ctlkey,
    );
    record.reqid = 2;
    record
}

fn connect(daemon: &TestDaemon) -> RecordStream {
    let stream = RecordStream::connect(daemon.socket_path()).expect("connect to the daemon");
    stream
        .get_ref()
        .set_read_timeout(Some(STEP_TIMEOUT))
        .expect("read timeout");
    stream
}

fn receive(stream: &mut RecordStream) -> Record {
    let frame = stream
        .recv()
        .expect("receive from the daemon")
        .expect("the daemon closed the connection");
    frame.decode().expect("decode the record")
}

/// Runs STARTTLS with `cipher`, answering PLAINTEXT_CONNECT with a socketpair end.
fn starttls(stream: &mut RecordStream, record: &Record, cipher: impl AsFd) -> UnixStream {
    stream
        .send_record(record, Some(cipher.as_fd()))
        .expect("send STARTTLS");
    drop(cipher);
    let mut plaintext = None;
    loop {
        let reply = receive(stream);
        match reply.payload {
            Payload::PlaintextConnect(params) => {
                let (ours, theirs) = UnixStream::pair().expect("socketpair");
                let mut answer = Record::new(reply.reqid, Payload::PlaintextConnect(params));
                answer.cbid = reply.cbid;
                stream
                    .send_record(&answer, Some(theirs.as_fd()))
                    .expect("answer PLAINTEXT_CONNECT");
                plaintext = Some(ours);
            }
            Payload::StartTls(_) => {
                let plaintext = plaintext.expect("PLAINTEXT_CONNECT preceded the reply");
                plaintext
                    .set_read_timeout(Some(STEP_TIMEOUT))
                    .expect("read timeout");
                return plaintext;
            }
            other => panic!("STARTTLS failed: {other:?}"),
        }
    }
}

/// Sends a RENEGOTIATE record (with `fd` if given) and returns the final reply or the ERROR.
fn renegotiate(
    stream: &mut RecordStream,
    record: &Record,
    fd: Option<&UnixStream>,
) -> Result<StartTls, ErrorPayload> {
    stream
        .send_record(record, fd.map(AsFd::as_fd))
        .expect("send RENEGOTIATE");
    let reply = receive(stream);
    assert_eq!(reply.reqid, record.reqid);
    match reply.payload {
        Payload::StartTls(params) => Ok(params),
        Payload::Error(error) => Err(error),
        other => panic!("unexpected record after RENEGOTIATE: {other:?}"),
    }
}

fn read_line(plaintext: &mut UnixStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        let n = plaintext.read(&mut byte).expect("read plaintext");
        assert!(n > 0, "plaintext closed after {line:?}");
        line.push(byte[0]);
    }
    String::from_utf8(line).expect("UTF-8 line")
}

fn assert_echo(plaintext: &mut UnixStream, line: &str) {
    plaintext
        .write_all(format!("{line}\n").as_bytes())
        .expect("write plaintext");
    assert_eq!(read_line(plaintext), format!("{line}\n"));
}

fn assert_error_code(error: &ErrorPayload, code: ErrorCode) {
    assert_eq!(error.error_code(), Some(code), "{}", error.message);
}

fn gnutls_echo_server(setup: &DevSetup, port: u16, priority: &str) -> Peer {
    let (cert, key) = (setup.file("peer-cert.pem"), setup.file("peer-key.pem"));
    gnutls_serv(
        port,
        &[
            "--x509certfile",
            &cert,
            "--x509keyfile",
            &key,
            "--echo",
            "--priority",
            priority,
        ],
    )
}

/// Starts the pool as client of a server on `port`, with control key 1.
fn pool_client(daemon: &TestDaemon, port: u16) -> (RecordStream, UnixStream) {
    let mut control = connect(daemon);
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect to the TLS server");
    let plaintext = starttls(&mut control, &request(CLIENT, "", PEER, 1), tcp);
    (control, plaintext)
}

/// Starts `gnutls-cli` with `extra` arguments and the pool as its server, with control key 2.
fn pool_server(
    setup: &DevSetup,
    daemon: &TestDaemon,
    extra: &[&str],
) -> (Peer, RecordStream, UnixStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("address").port();
    let (ca, cert, key) = (
        setup.file("ca.pem"),
        setup.file("peer-cert.pem"),
        setup.file("peer-key.pem"),
    );
    let mut args = vec![
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
    ];
    args.extend_from_slice(extra);
    let client = gnutls_cli(port, &args);
    let mut control = connect(daemon);
    let (tcp, _) = listener.accept().expect("accept the TLS client");
    let plaintext = starttls(&mut control, &request(SERVER, "", "", 2), tcp);
    (client, control, plaintext)
}

#[test]
fn client_renegotiates_with_gnutls_serv() {
    let setup = dev_setup();
    let daemon = setup.start_daemon();
    let port = free_port();
    let _server = gnutls_echo_server(setup, port, TLS12);
    let (mut control, mut plaintext) = pool_client(&daemon, port);
    assert_echo(&mut plaintext, "before the renegotiation");

    let reply = renegotiate(&mut control, &renegotiation(CLIENT, "", PEER, 1), None)
        .unwrap_or_else(|error| panic!("renegotiation failed: {error:?}\n{}", daemon.stderr()));

    assert_eq!(reply.remoteid.as_str(), PEER);
    assert_eq!(reply.ctlkey, [1; 16]);
    assert_echo(&mut plaintext, "after the renegotiation");
}

#[test]
fn server_renegotiates_with_gnutls_cli() {
    let setup = dev_setup();
    let daemon = setup.start_daemon();
    let (mut client, mut control, mut plaintext) =
        pool_server(setup, &daemon, &["--priority", TLS12]);
    client.send_line("before");
    assert_eq!(read_line(&mut plaintext), "before\n");

    // The client's line may cross the HelloRequest; the relay delivers it either way.
    client.send_line("in flight");
    let reply = renegotiate(&mut control, &renegotiation(SERVER, "", "", 2), None)
        .unwrap_or_else(|error| panic!("renegotiation failed: {error:?}\n{}", daemon.stderr()));
    assert_eq!(read_line(&mut plaintext), "in flight\n");

    assert_eq!(reply.remoteid.as_str(), PEER);
    assert!(
        client.wait_for_output("Rehandshake was performed"),
        "gnutls-cli output:\n{}",
        client.output()
    );
    client.send_line("after");
    assert_eq!(read_line(&mut plaintext), "after\n");
    plaintext
        .write_all(b"answer after the renegotiation\n")
        .expect("write plaintext");
    assert!(client.wait_for_output("answer after the renegotiation"));
}

#[test]
fn peer_renegotiation_from_openssl_keeps_data() {
    let setup = dev_setup();
    let daemon = setup.start_daemon();
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("address").port();
    let (ca, cert, key) = (
        setup.file("ca.pem"),
        setup.file("peer-cert.pem"),
        setup.file("peer-key.pem"),
    );
    let mut client = openssl_s_client(
        port,
        &[
            "-servername",
            DOMAIN,
            "-CAfile",
            &ca,
            "-cert",
            &cert,
            "-key",
            &key,
            "-tls1_2",
        ],
    );
    let mut control = connect(&daemon);
    let (tcp, _) = listener.accept().expect("accept the TLS client");
    let mut plaintext = starttls(&mut control, &request(SERVER, "", "", 3), tcp);
    client.send_line("first line");
    assert_eq!(read_line(&mut plaintext), "first line\n");

    client.send_line("R");
    assert!(
        client.wait_for_output("RENEGOTIATING"),
        "s_client output:\n{}",
        client.output()
    );
    client.send_line("second line");

    assert_eq!(read_line(&mut plaintext), "second line\n");
    plaintext
        .write_all(b"reply after the peer's renegotiation\n")
        .expect("write plaintext");
    assert!(
        client.wait_for_output("reply after the peer's renegotiation"),
        "s_client output:\n{}",
        client.output()
    );
    assert!(
        !client.output().contains("no renegotiation"),
        "the first request is accepted:\n{}",
        client.output()
    );
}

#[test]
fn tls13_session_is_not_interruptible() {
    let setup = dev_setup();
    let daemon = setup.start_daemon();
    let port = free_port();
    let _server = gnutls_echo_server(setup, port, "NORMAL");
    let (mut control, mut plaintext) = pool_client(&daemon, port);

    let error = renegotiate(&mut control, &renegotiation(CLIENT, "", PEER, 1), None)
        .expect_err("TLS 1.3 has no renegotiation");

    assert_error_code(&error, ErrorCode::RenegotiateNotInterruptable);
    assert_echo(&mut plaintext, "the session continues");
}

#[test]
fn unknown_ctlkey_and_descriptor_are_rejected() {
    let setup = dev_setup();
    let daemon = setup.start_daemon();
    let port = free_port();
    let _server = gnutls_echo_server(setup, port, TLS12);
    let (mut control, mut plaintext) = pool_client(&daemon, port);

    let unknown = renegotiate(&mut control, &renegotiation(CLIENT, "", PEER, 9), None)
        .expect_err("no session has ctlkey 9");
    let (extra, _) = UnixStream::pair().expect("socketpair");
    let with_fd = renegotiate(
        &mut control,
        &renegotiation(CLIENT, "", PEER, 1),
        Some(&extra),
    )
    .expect_err("a descriptor is superfluous");
    let mut other = connect(&daemon);
    let foreign = renegotiate(&mut other, &renegotiation(CLIENT, "", PEER, 1), None)
        .expect_err("the session is attached to the first connection");

    assert_error_code(&unknown, ErrorCode::RenegotiateNotFound);
    assert_error_code(&with_fd, ErrorCode::SuperfluousSocket);
    assert_error_code(&foreign, ErrorCode::RenegotiateNotFound);
    assert_echo(&mut plaintext, "the session continues");
}

#[test]
fn peer_without_extended_master_secret_ends_session() {
    let setup = dev_setup();
    let daemon = setup.start_daemon();
    let port = free_port();
    // The daemon's default priority demands secure renegotiation even for the first
    // handshake, so the missing protection is the extended master secret.
    let _server = gnutls_echo_server(setup, port, &format!("{TLS12}:%NO_SESSION_HASH"));
    let (mut control, mut plaintext) = pool_client(&daemon, port);
    assert_echo(&mut plaintext, "before");

    let error = renegotiate(&mut control, &renegotiation(CLIENT, "", PEER, 1), None)
        .expect_err("renegotiation would be insecure");

    assert_error_code(&error, ErrorCode::RenegotiateWouldBeInsecure);
    let mut rest = Vec::new();
    let end = plaintext.read_to_end(&mut rest);
    assert!(end.is_ok(), "the plaintext side is closed: {end:?}");
}

#[test]
fn peer_rejection_keeps_session() {
    let setup = dev_setup();
    let daemon = setup.start_daemon();
    let port = free_port();
    let (cert, key) = (setup.file("peer-cert.pem"), setup.file("peer-key.pem"));
    let _server = tlspool_tests::tls_peers::openssl_s_server(
        port,
        &[
            "-cert",
            &cert,
            "-key",
            &key,
            "-rev",
            "-tls1_2",
            "-no_renegotiation",
        ],
    );
    let (mut control, mut plaintext) = pool_client(&daemon, port);

    let error = renegotiate(&mut control, &renegotiation(CLIENT, "", PEER, 1), None)
        .expect_err("s_server refuses renegotiation");

    assert_error_code(&error, ErrorCode::StirredNotShaken);
    assert!(error.message.contains("rejected"), "{}", error.message);
    plaintext.write_all(b"abc\n").expect("write plaintext");
    assert_eq!(read_line(&mut plaintext), "cba\n");
}

/// Sends `len` bytes of a counting pattern to `stream`, then shuts down its write side.
fn send_pattern(mut stream: UnixStream, len: usize) {
    let block: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let mut sent = 0;
    while sent < len {
        let n = block.len().min(len - sent);
        stream.write_all(&block[..n]).expect("write plaintext");
        sent += n;
    }
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shut down the plaintext write side");
}

/// Reads `stream` to its end and returns how many bytes broke the counting pattern.
fn count_pattern_errors(mut stream: UnixStream) -> (usize, usize) {
    let mut buf = vec![0u8; 64 * 1024];
    let (mut total, mut errors) = (0, 0);
    loop {
        let n = stream.read(&mut buf).expect("read plaintext");
        if n == 0 {
            return (total, errors);
        }
        for (offset, byte) in buf[..n].iter().enumerate() {
            let position = (total + offset) % (64 * 1024);
            if *byte != (position % 251) as u8 {
                errors += 1;
            }
        }
        total += n;
    }
}

#[test]
fn renegotiation_mid_transfer_loses_nothing() {
    const LEN: usize = 16 * 1024 * 1024;
    let daemon = dev_setup().start_daemon_with(&[TLS12_DAEMON]);
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("address").port();
    let server_thread = {
        let mut control = connect(&daemon);
        thread_spawn(move || {
            let (tcp, _) = listener.accept().expect("accept the pool client");
            let flags = SERVER | StartTlsFlags::REQUEST_REMOTEID;
            let plaintext = starttls(&mut control, &request(flags, DOMAIN, "", 4), tcp);
            (control, plaintext)
        })
    };
    let mut client_control = connect(&daemon);
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect the pool server");
    let client_plaintext = starttls(&mut client_control, &request(CLIENT, "", DOMAIN, 5), tcp);
    let (mut server_control, server_plaintext) = server_thread.join().expect("server thread");

    // Both directions carry data while the server renegotiates twice.
    let to_server = clone_unix(&client_plaintext);
    let to_client = clone_unix(&server_plaintext);
    let senders = [
        thread_spawn(move || send_pattern(to_server, LEN)),
        thread_spawn(move || send_pattern(to_client, LEN)),
    ];
    let receivers = [
        thread_spawn(move || count_pattern_errors(server_plaintext)),
        thread_spawn(move || count_pattern_errors(client_plaintext)),
    ];
    for round in 0..2 {
        let result = renegotiate(
            &mut server_control,
            &renegotiation(SERVER | StartTlsFlags::REQUEST_REMOTEID, DOMAIN, "", 4),
            None,
        );
        let reply = result.unwrap_or_else(|error| {
            panic!(
                "renegotiation {round} failed: {error:?}\n{}",
                daemon.stderr()
            )
        });
        assert_eq!(reply.remoteid.as_str(), DOMAIN);
    }

    for sender in senders {
        sender.join().expect("sender thread");
    }
    for receiver in receivers {
        let (total, errors) = receiver.join().expect("receiver thread");
        assert_eq!(total, LEN);
        assert_eq!(errors, 0);
    }
    drop(client_control);
}

fn clone_unix(stream: &UnixStream) -> UnixStream {
    let clone = stream.try_clone().expect("clone the plaintext socket");
    clone.set_read_timeout(None).expect("no read timeout");
    clone
}

fn thread_spawn<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(f)
}
