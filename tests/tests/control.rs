//! CONTROL_DETACH, CONTROL_REATTACH, PRNG and INFO through the built `tlspool` daemon, on
//! sessions whose both ends run through one daemon over loopback TCP ("pool to pool"), and
//! against `gnutls-cli`.
//!
//! The identities come from one `tlspool-admin dev-init` run with the domain `dev.example`:
//! the daemon's credentials sit on a SoftHSM2 token and the CA is in `ca.pem`. Run the tests
//! through `scripts/netns-run.sh`, as the other tests with external TLS peers.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

use ring::digest::{Context, SHA256};
use tlspool_client::blocking::{self, TlsConnection};
use tlspool_client::{ClientError, CtlKey, ErrorCode, InfoKind, StartTlsFlags, StartTlsRequest};
use tlspool_proto::blocking::RecordStream;
use tlspool_proto::{Control, Info, Payload, Prng, Record};
use tlspool_tests::bin_path;
use tlspool_tests::daemon::TestDaemon;
use tlspool_tests::tls_peers::{self, PEER_TIMEOUT};

/// The identity dev-init issues on the token, used by both ends.
const DOMAIN: &str = "dev.example";
/// The PRNG label of the TLS Pool test tools.
const LABEL: &str = "EXPERIMENTAL-tlspool-test";
/// `tls_priority` of a daemon limited to TLS 1.2.
const TLS12_ONLY: &str = "tls_priority NORMAL:-VERS-ALL:+VERS-TLS1.2:%SAFE_RENEGOTIATION";
/// Environment variable that makes [`reattach_child`] act: the control key in hex.
const CHILD_KEY: &str = "TLSPOOL_TEST_CHILD_CTLKEY";
/// Environment variable with the daemon socket for [`reattach_child`].
const CHILD_SOCKET: &str = "TLSPOOL_TEST_CHILD_SOCKET";
const MIB: usize = 1024 * 1024;

/// One dev-init run shared by the tests of this file.
struct Setup {
    _temp: tempfile::TempDir,
    dir: PathBuf,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let temp = tempfile::tempdir().expect("temporary directory");
        let dir = temp.path().join("dev");
        let output = Command::new(bin_path("tlspool-admin"))
            .arg("dev-init")
            .arg(&dir)
            .args(["--domain", DOMAIN])
            .output()
            .expect("run tlspool-admin dev-init");
        assert!(
            output.status.success(),
            "dev-init failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Setup { _temp: temp, dir }
    })
}

/// Starts a daemon on the dev-init token and databases with `extra` configuration lines.
fn start_daemon(extra: &[&str]) -> TestDaemon {
    let setup = setup();
    let config = std::fs::read_to_string(setup.dir.join("tlspool.conf")).expect("dev config");
    let mut lines: Vec<&str> = config
        .lines()
        .filter(|line| line.starts_with("pkcs11_") || line.starts_with("dbenv_dir"))
        .collect();
    lines.extend_from_slice(extra);
    let softhsm = setup.dir.join("softhsm2.conf");
    TestDaemon::start_with_env(&lines, &[("SOFTHSM2_CONF", softhsm.as_path())])
}

/// Both ends of a session that runs through one daemon, each with its own connection to it.
struct PoolPair {
    client_pool: blocking::Client,
    server_pool: blocking::Client,
    client: TlsConnection,
    server: TlsConnection,
}

/// Runs STARTTLS as server and as client through `daemon` over a loopback TCP connection;
/// `client_flags` are added to the client's request.
fn pool_pair(daemon: &TestDaemon, client_flags: StartTlsFlags) -> PoolPair {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let address = listener.local_addr().expect("local address");
    let server_pool = blocking::Client::connect(Some(daemon.socket_path())).unwrap();
    let server_thread = {
        let server_pool = server_pool.clone();
        thread::spawn(move || {
            let (tcp, _) = listener.accept().expect("accept");
            let request = StartTlsRequest::server(DOMAIN)
                .flags(StartTlsFlags::REQUEST_REMOTEID)
                .build()
                .unwrap();
            server_pool.starttls(tcp, &request)
        })
    };
    let client_pool = blocking::Client::connect(Some(daemon.socket_path())).unwrap();
    let request = StartTlsRequest::client(DOMAIN)
        .flags(client_flags)
        .build()
        .unwrap();
    let tcp = TcpStream::connect(address).expect("connect");
    let client = client_pool
        .starttls(tcp, &request)
        .expect("client STARTTLS");
    let server = server_thread
        .join()
        .expect("server thread")
        .expect("server STARTTLS");
    PoolPair {
        client_pool,
        server_pool,
        client,
        server,
    }
}

fn daemon_code(result: Result<impl std::fmt::Debug, ClientError>) -> Option<ErrorCode> {
    match result {
        Err(ClientError::Daemon { known, .. }) => known,
        other => panic!("expected an ERROR from the daemon, got {other:?}"),
    }
}

/// Queries INFO `kind` on both ends and asserts the values are equal and not empty.
fn assert_info_equal(pair: &PoolPair, kind: InfoKind) -> Vec<u8> {
    let client = pair
        .client_pool
        .info(&pair.client.ctlkey, kind, None)
        .unwrap_or_else(|e| panic!("client INFO {kind:?}: {e}"));
    let server = pair
        .server_pool
        .info(&pair.server.ctlkey, kind, None)
        .unwrap_or_else(|e| panic!("server INFO {kind:?}: {e}"));
    assert!(!client.is_empty(), "{kind:?} is empty");
    assert_eq!(client, server, "{kind:?} differs between the ends");
    client
}

fn prng_both(pair: &PoolPair, context: Option<&[u8]>, len: usize) -> Vec<u8> {
    let client = pair
        .client_pool
        .prng(&pair.client.ctlkey, LABEL, context, len)
        .expect("client PRNG");
    let server = pair
        .server_pool
        .prng(&pair.server.ctlkey, LABEL, context, len)
        .expect("server PRNG");
    assert_eq!(client.len(), len);
    assert_eq!(client, server, "PRNG differs between the ends");
    client
}

#[test]
fn tls13_exporter_and_bindings_agree() {
    let daemon = start_daemon(&[]);
    let pair = pool_pair(&daemon, StartTlsFlags::empty());

    let version = assert_info_equal(&pair, InfoKind::PROTOCOL_VERSION);
    assert_eq!(version, b"TLS1.3");
    let none = prng_both(&pair, None, 16);
    let chained = prng_both(&pair, Some(&none), 16);
    assert_ne!(none, chained);
    prng_both(&pair, None, 350);
    // RFC 8446 defines no context as the empty context.
    assert_eq!(prng_both(&pair, Some(&[]), 16), none);

    let exporter = assert_info_equal(&pair, InfoKind::CHANBIND_TLS_EXPORTER);
    assert_eq!(exporter.len(), 32);
    let end_point = assert_info_equal(&pair, InfoKind::CHANBIND_TLS_SERVER_END_POINT);
    assert_eq!(
        end_point,
        server_certificate_sha256(),
        "RFC 5929 tls-server-end-point"
    );
    assert_eq!(
        daemon_code(pair.client_pool.info(
            &pair.client.ctlkey,
            InfoKind::CHANBIND_TLS_UNIQUE,
            None
        )),
        Some(ErrorCode::InfoNotFound)
    );
    assert_eq!(
        assert_info_equal(&pair, InfoKind::PEER_CERTIFICATE_TYPE),
        b"X.509"
    );
    assert_eq!(
        assert_info_equal(&pair, InfoKind::MY_CERTIFICATE_TYPE),
        b"X.509"
    );
}

/// Returns the SHA-256 of the server certificate dev-init issued, the tls-server-end-point
/// hash of a certificate signed with ECDSA-SHA256.
fn server_certificate_sha256() -> Vec<u8> {
    let pem = setup().dir.join(format!("{DOMAIN}-server.pem"));
    let output = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&pem)
        .output()
        .expect("run openssl x509");
    assert!(
        output.status.success(),
        "openssl x509 failed on {}",
        pem.display()
    );
    ring::digest::digest(&SHA256, &output.stdout)
        .as_ref()
        .to_vec()
}

#[test]
fn certificate_names_match_across_ends() {
    let daemon = start_daemon(&[]);
    let pair = pool_pair(&daemon, StartTlsFlags::empty());
    let info = |pool: &blocking::Client, key: &CtlKey, kind| pool.info(key, kind, None).unwrap();

    let client_peer = info(
        &pair.client_pool,
        &pair.client.ctlkey,
        InfoKind::PEERCERT_SUBJECT,
    );
    let server_mine = info(
        &pair.server_pool,
        &pair.server.ctlkey,
        InfoKind::MYCERT_SUBJECT,
    );
    assert_eq!(client_peer, server_mine);
    assert_eq!(client_peer[0], 0x30, "a Name is a DER SEQUENCE");
    assert!(
        client_peer
            .windows(DOMAIN.len())
            .any(|w| w == DOMAIN.as_bytes())
    );
    let client_issuer = info(
        &pair.client_pool,
        &pair.client.ctlkey,
        InfoKind::PEERCERT_ISSUER,
    );
    let server_issuer = info(
        &pair.server_pool,
        &pair.server.ctlkey,
        InfoKind::MYCERT_ISSUER,
    );
    assert_eq!(client_issuer, server_issuer);
    assert_ne!(client_issuer, client_peer);
    let server_peer = info(
        &pair.server_pool,
        &pair.server.ctlkey,
        InfoKind::PEERCERT_SUBJECT,
    );
    let client_mine = info(
        &pair.client_pool,
        &pair.client.ctlkey,
        InfoKind::MYCERT_SUBJECT,
    );
    assert_eq!(server_peer, client_mine);

    let mut dns_name = vec![0x82, u8::try_from(DOMAIN.len()).unwrap()];
    dns_name.extend_from_slice(DOMAIN.as_bytes());
    for kind in [
        InfoKind::PEERCERT_SUBJECTALTNAME,
        InfoKind::MYCERT_SUBJECTALTNAME,
    ] {
        let echo = pair
            .client_pool
            .info(&pair.client.ctlkey, kind, Some(&dns_name))
            .unwrap();
        assert_eq!(echo, dns_name, "{kind:?}");
    }
}

#[test]
fn tls12_exporter_and_tls_unique_agree() {
    let daemon = start_daemon(&[TLS12_ONLY]);
    let pair = pool_pair(&daemon, StartTlsFlags::empty());

    assert_eq!(
        assert_info_equal(&pair, InfoKind::PROTOCOL_VERSION),
        b"TLS1.2"
    );
    let none = prng_both(&pair, None, 16);
    let empty = prng_both(&pair, Some(&[]), 16);
    // RFC 5705 distinguishes no context from an empty context.
    assert_ne!(none, empty);
    let unique = assert_info_equal(&pair, InfoKind::CHANBIND_TLS_UNIQUE);
    assert_eq!(unique.len(), 12);
    assert_info_equal(&pair, InfoKind::CHANBIND_TLS_SERVER_END_POINT);
    assert_eq!(
        daemon_code(pair.client_pool.info(
            &pair.client.ctlkey,
            InfoKind::CHANBIND_TLS_EXPORTER,
            None
        )),
        Some(ErrorCode::InfoNotFound)
    );
}

/// Serves one `gnutls-cli --keymatexport` client through the pool with `priority` and
/// returns the pool's PRNG output and gnutls-cli's "Key material" line.
fn exporter_against_gnutls_cli(daemon: &TestDaemon, priority: &str) -> (String, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().unwrap().port();
    let ca = setup().dir.join("ca.pem");
    let mut cli = tls_peers::gnutls_cli(
        port,
        &[
            "--x509cafile",
            ca.to_str().unwrap(),
            "--sni-hostname",
            DOMAIN,
            "--verify-hostname",
            DOMAIN,
            "--priority",
            priority,
            &format!("--keymatexport={LABEL}"),
            "--keymatexportsize=32",
        ],
    );
    let (tcp, _) = listener.accept().expect("accept gnutls-cli");
    let pool = blocking::Client::connect(Some(daemon.socket_path())).unwrap();
    let request = StartTlsRequest::server(DOMAIN)
        .flags(StartTlsFlags::REQUEST_REMOTEID)
        .build()
        .unwrap();
    let session = pool.starttls(tcp, &request).expect("server STARTTLS");
    let ours = pool.prng(&session.ctlkey, LABEL, None, 32).expect("PRNG");
    assert!(
        cli.wait_for_output("- Handshake was completed"),
        "{}",
        cli.output()
    );
    cli.close_stdin();
    let output = cli.output();
    // gnutls-cli 3.7.9 prints the exporter output as "- Key material: " and lowercase hex.
    let theirs = output
        .lines()
        .find_map(|line| line.strip_prefix("- Key material: "))
        .unwrap_or_else(|| panic!("no key material in gnutls-cli output:\n{output}"))
        .trim()
        .to_owned();
    (hex(&ours), theirs)
}

#[test]
fn prng_matches_gnutls_cli_keymatexport() {
    let daemon = start_daemon(&[]);
    let (ours, theirs) = exporter_against_gnutls_cli(&daemon, "NORMAL");
    assert_eq!(ours, theirs, "TLS 1.3 exporter");
    let (ours, theirs) = exporter_against_gnutls_cli(&daemon, "NORMAL:-VERS-ALL:+VERS-TLS1.2");
    assert_eq!(ours, theirs, "TLS 1.2 exporter");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn parse_hex(text: &str) -> CtlKey {
    let mut key = [0u8; 16];
    for (index, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * index..2 * index + 2], 16).expect("hex key");
    }
    key
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

/// Writes `len` generated bytes to `stream`, shuts down its write side and returns their
/// SHA-256.
fn send_generated(mut stream: std::os::unix::net::UnixStream, len: usize) -> Vec<u8> {
    let mut state = 0x5eed_u64;
    let mut digest = Context::new(&SHA256);
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        fill(&mut buf[..n], &mut state);
        digest.update(&buf[..n]);
        stream.write_all(&buf[..n]).expect("write plaintext");
        left -= n;
    }
    stream
        .shutdown(Shutdown::Write)
        .expect("shutdown plaintext");
    digest.finish().as_ref().to_vec()
}

/// Reads `stream` to its end and returns the byte count and SHA-256, pausing now and then
/// so the transfer is still running while control moves.
fn receive_all(mut stream: std::os::unix::net::UnixStream) -> (usize, Vec<u8>) {
    let mut digest = Context::new(&SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        let n = stream.read(&mut buf).expect("read plaintext");
        if n == 0 {
            return (total, digest.finish().as_ref().to_vec());
        }
        digest.update(&buf[..n]);
        total += n;
        if total % (8 * MIB) < n {
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The child process of [`detached_session_moves_between_processes`]: reattaches the session
/// named in its environment, prints its PRNG output, and detaches it again. Without the
/// environment it does nothing.
#[test]
fn reattach_child() {
    let (Ok(key), Ok(socket)) = (std::env::var(CHILD_KEY), std::env::var(CHILD_SOCKET)) else {
        return;
    };
    let key = parse_hex(&key);
    let pool = blocking::Client::connect(Some(PathBuf::from(socket).as_path())).unwrap();
    pool.reattach(&key).expect("child REATTACH");
    let output = pool.prng(&key, LABEL, None, 16).expect("child PRNG");
    pool.detach(&key).expect("child DETACH");
    println!("child-prng {}", hex(&output));
}

#[test]
fn detached_session_moves_between_processes() {
    let daemon = start_daemon(&[]);
    let pair = pool_pair(&daemon, StartTlsFlags::empty());
    let PoolPair {
        client_pool,
        server_pool,
        client,
        server,
    } = pair;
    let key = client.ctlkey;
    let expected = client_pool.prng(&key, LABEL, None, 16).unwrap();

    let len = 100 * MIB;
    let receiver = thread::spawn(move || receive_all(server.plaintext));
    let sender = thread::spawn(move || send_generated(client.plaintext, len));

    client_pool.detach(&key).expect("DETACH");
    // A detached session outlives the connection that created it.
    drop(client_pool);
    thread::sleep(Duration::from_millis(200));

    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "reattach_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_KEY, hex(&key))
        .env(CHILD_SOCKET, daemon.socket_path())
        .output()
        .expect("run the child process");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child failed:\n{stdout}");
    // The test harness prints the test name on the same line before the child's output.
    let child_prng = stdout
        .split("child-prng ")
        .nth(1)
        .and_then(|rest| rest.get(..32))
        .unwrap_or_else(|| panic!("the child printed no PRNG output:\n{stdout}"));
    assert_eq!(child_prng, hex(&expected));

    let pool = blocking::Client::connect(Some(daemon.socket_path())).unwrap();
    pool.reattach(&key)
        .expect("REATTACH after the child detached");
    assert_eq!(pool.prng(&key, LABEL, None, 16).unwrap(), expected);

    let sent = sender.join().expect("sender");
    let (received_len, received) = receiver.join().expect("receiver");
    assert_eq!(received_len, len);
    assert_eq!(received, sent, "SHA-256 of the transfer");
    drop(server_pool);
}

/// Waits until `stream` reads end of file, and returns whether it did within
/// [`PEER_TIMEOUT`].
fn reaches_eof(stream: &mut std::os::unix::net::UnixStream) -> bool {
    stream.set_read_timeout(Some(PEER_TIMEOUT)).unwrap();
    let mut buf = [0u8; 64];
    matches!(stream.read(&mut buf), Ok(0))
}

#[test]
fn attached_session_ends_with_its_connection() {
    let daemon = start_daemon(&[]);
    let pair = pool_pair(&daemon, StartTlsFlags::empty());
    let mut server_plaintext = pair.server.plaintext;
    let key = pair.client.ctlkey;
    drop(pair.client_pool);
    assert!(reaches_eof(&mut server_plaintext));
    let pool = blocking::Client::connect(Some(daemon.socket_path())).unwrap();
    assert_eq!(
        daemon_code(pool.reattach(&key)),
        Some(ErrorCode::CtlkeyNotFound)
    );
    drop(pair.client.plaintext);
}

#[test]
fn forked_session_survives_its_connection() {
    let daemon = start_daemon(&[]);
    let pair = pool_pair(&daemon, StartTlsFlags::FORK);
    let key = pair.client.ctlkey;
    drop(pair.client_pool);
    thread::sleep(Duration::from_millis(200));
    let pool = blocking::Client::connect(Some(daemon.socket_path())).unwrap();
    pool.reattach(&key).expect("REATTACH of a forked session");
    let mut client_plaintext = pair.client.plaintext;
    let mut server_plaintext = pair.server.plaintext;
    client_plaintext.write_all(b"still here").unwrap();
    let mut received = [0u8; 10];
    server_plaintext.read_exact(&mut received).unwrap();
    assert_eq!(&received, b"still here");
}

/// Sends `payload` on a raw connection to `daemon` and returns the reply's error code.
fn raw_error(stream: &mut RecordStream, payload: Payload) -> Option<ErrorCode> {
    stream
        .send_record(&Record::new(7, payload), None)
        .expect("send");
    let frame = stream.recv().expect("receive").expect("daemon closed");
    match frame.decode().expect("decode").payload {
        Payload::Error(error) => error.error_code(),
        other => panic!("expected ERROR, got {other:?}"),
    }
}

#[test]
fn every_control_error_is_returned() {
    let daemon = start_daemon(&[]);
    let pair = pool_pair(&daemon, StartTlsFlags::empty());
    let (pool, key) = (&pair.client_pool, pair.client.ctlkey);
    let other = &pair.server_pool;
    let unknown = [0xee; 16];
    let code = |result| daemon_code(result);

    assert_eq!(code(pool.detach(&unknown)), Some(ErrorCode::CtlkeyNotFound));
    assert_eq!(code(other.detach(&key)), Some(ErrorCode::CtlkeyNotYours));
    assert_eq!(code(other.reattach(&key)), Some(ErrorCode::CtlkeyAttached));
    assert_eq!(
        code(pool.reattach(&unknown)),
        Some(ErrorCode::CtlkeyNotFound)
    );
    pool.detach(&key).unwrap();
    assert_eq!(code(pool.detach(&key)), Some(ErrorCode::CtlkeyDetached));
    assert_eq!(
        daemon_code(pool.prng(&key, LABEL, None, 16)),
        Some(ErrorCode::CtlkeyNotFound),
        "PRNG on a detached session"
    );
    pool.reattach(&key).unwrap();

    let prng = |label: &str| daemon_code(pool.prng(&key, label, None, 16));
    for label in [
        "master secret",
        "key expansion",
        "EXPERIMENTAL",
        "EXPORTER-x",
    ] {
        assert_eq!(prng(label), Some(ErrorCode::PrngUnavailable), "{label}");
    }
    assert!(pool.prng(&key, "ttls challenge", None, 16).is_ok());
    assert_eq!(
        daemon_code(other.prng(&key, LABEL, None, 16)),
        Some(ErrorCode::CtlkeyNotFound)
    );
    assert_eq!(
        daemon_code(other.info(&key, InfoKind::PEERCERT_SUBJECT, None)),
        Some(ErrorCode::CtlkeyNotFound)
    );

    let info = |kind, value: Option<&[u8]>| daemon_code(pool.info(&key, kind, value));
    assert_eq!(
        info(InfoKind(0x5280_0003), None),
        Some(ErrorCode::InfoKindUnknown)
    );
    assert_eq!(
        info(InfoKind::PEERCERT_SUBJECTALTNAME, Some(b"\x82\x03a.b")),
        Some(ErrorCode::InfoNotFound)
    );
    assert_eq!(
        info(InfoKind::PEERCERT_SUBJECTALTNAME, None),
        Some(ErrorCode::InfoNotFound)
    );
    assert_eq!(
        info(InfoKind::PEERCERT_SUBJECT, Some(b"x")),
        Some(ErrorCode::InfoNotFound)
    );

    // Lengths the client library rejects go out as raw records.
    let mut raw = RecordStream::connect(daemon.socket_path()).unwrap();
    let mut prng = Prng::request(&key, LABEL.as_bytes(), None, 16).unwrap();
    prng.prng_len = 351;
    assert_eq!(
        raw_error(&mut raw, Payload::Prng(prng.clone())),
        Some(ErrorCode::PrngUnavailable)
    );
    prng.prng_len = 16;
    prng.in1_len = 0;
    assert_eq!(
        raw_error(&mut raw, Payload::Prng(prng.clone())),
        Some(ErrorCode::PrngUnavailable)
    );
    prng.in1_len = i16::try_from(LABEL.len()).unwrap();
    prng.in2_len = 350;
    assert_eq!(
        raw_error(&mut raw, Payload::Prng(prng)),
        Some(ErrorCode::PrngUnavailable)
    );
    // The key is checked before the length, so this connection's own key would be needed
    // for COMMAND_NOTIMPL; on another connection the key is not found first.
    let mut info = Info::query(key, InfoKind::PEERCERT_SUBJECT);
    info.len = 335;
    assert_eq!(
        raw_error(&mut raw, Payload::Info(info)),
        Some(ErrorCode::CtlkeyNotFound)
    );
    assert_eq!(
        raw_error(&mut raw, Payload::ControlDetach(Control::new(key))),
        Some(ErrorCode::CtlkeyNotYours)
    );
}

#[test]
fn oversized_info_length_is_not_implemented() {
    let daemon = start_daemon(&[]);
    // A session whose client end runs on a raw connection, so the INFO record can carry a
    // length the client library rejects.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let server_pool = blocking::Client::connect(Some(daemon.socket_path())).unwrap();
    let server = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let request = StartTlsRequest::server(DOMAIN)
            .flags(StartTlsFlags::REQUEST_REMOTEID)
            .build()
            .unwrap();
        server_pool
            .starttls(tcp, &request)
            .map(|s| (server_pool, s))
    });
    let client_pool = blocking::Client::connect(Some(daemon.socket_path())).unwrap();
    let request = StartTlsRequest::client(DOMAIN).build().unwrap();
    let client = client_pool
        .starttls(TcpStream::connect(address).unwrap(), &request)
        .unwrap();
    let (server_pool, session) = server.join().unwrap().unwrap();
    client_pool.detach(&client.ctlkey).unwrap();

    let mut raw = RecordStream::connect(daemon.socket_path()).unwrap();
    let reattach = Payload::ControlReattach(Control::new(client.ctlkey));
    raw.send_record(&Record::new(1, reattach), None).unwrap();
    let reply = raw.recv().unwrap().unwrap().decode().unwrap();
    assert!(matches!(reply.payload, Payload::Success), "{reply:?}");
    let mut info = Info::query(client.ctlkey, InfoKind::PEERCERT_SUBJECT);
    info.len = 335;
    assert_eq!(
        raw_error(&mut raw, Payload::Info(info)),
        Some(ErrorCode::CommandNotImpl)
    );
    drop((server_pool, session));
}

#[test]
fn prng_needs_starttls_facility() {
    let daemon = start_daemon(&["deny_facilities starttls"]);
    let pool = blocking::Client::connect(Some(daemon.socket_path())).unwrap();
    assert_eq!(
        daemon_code(pool.prng(&[1; 16], LABEL, None, 16)),
        Some(ErrorCode::FacilityStartTls)
    );
}

#[test]
fn test_client_passes_against_test_server() {
    let daemon = start_daemon(&[]);
    let port = tls_peers::free_port();
    let ctl = |args: &[&str]| {
        let mut command = Command::new(bin_path("tlspoolctl"));
        command.arg("--socket").arg(daemon.socket_path()).args(args);
        command
    };
    let listen = format!("127.0.0.1:{port}");
    let mut server = tls_peers::Peer::spawn(
        "tlspoolctl test-server",
        ctl(&["test-server", "--listen", &listen, "--local-id", DOMAIN]),
    );
    assert!(
        server.wait_for_output("listening on"),
        "{}",
        server.output()
    );

    let client = ctl(&[
        "test-client",
        "127.0.0.1",
        &port.to_string(),
        "--remote-id",
        DOMAIN,
    ])
    .output()
    .expect("run test-client");
    assert!(server.wait_exit(), "test-server did not exit");
    // The output collector may still be reading the last lines after the exit.
    server.wait_for_output("ok close");
    let client_stdout = String::from_utf8_lossy(&client.stdout);
    let server_output = server.output();
    assert!(
        client.status.success(),
        "test-client:\n{client_stdout}{}\ntest-server:\n{server_output}",
        String::from_utf8_lossy(&client.stderr)
    );
    for output in [&*client_stdout, server_output.as_str()] {
        assert!(!output.contains("FAILED"), "{output}");
        for step in [
            "detach-again",
            "prng-context",
            "chanbind",
            "peer-agrees",
            "close",
        ] {
            assert!(
                output.contains(&format!("ok {step}\n")),
                "{step}:\n{output}"
            );
        }
    }
    assert!(!server_output.contains("tlspoolctl:"), "{server_output}");
}
