//! In-memory tests: a client and a server session driven against each other by moving bytes
//! between their buffers, with certificates that `certtool` (gnutls-bin) generates per run.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use zeroize::Zeroizing;

use super::*;

mod certgen;
mod privacy;
mod rawpk;
mod renegotiate;

const TLS12: &str = "NORMAL:-VERS-ALL:+VERS-TLS1.2";
pub(crate) const TLS13: &str = "NORMAL:-VERS-ALL:+VERS-TLS1.3";
const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A certificate with its key, as PEM.
pub(crate) struct Identity {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl Identity {
    pub(crate) fn credentials(&self, anchors: &[u8]) -> Credentials {
        Credentials::builder()
            .certificate_chain(&self.cert_pem, Encoding::Pem)
            .private_key(PrivateKeySource::Memory {
                data: Zeroizing::new(self.key_pem.clone()),
                encoding: Encoding::Pem,
            })
            .trust_anchors(anchors, Encoding::Pem)
            .build()
            .expect("test credentials build")
    }

    fn leaf_der(&self) -> Vec<u8> {
        ffi::certificates_to_der(&self.cert_pem, true).expect("test certificate parses")[0].clone()
    }
}

/// Certificates shared by all tests of one run.
pub(crate) struct Fixture {
    _dir: tempfile::TempDir,
    pub(crate) ca_pem: Vec<u8>,
    ca_key_path: PathBuf,
    ca_cert_path: PathBuf,
    rsa_server: Identity,
    pub(crate) ecdsa_server: Identity,
    other_server: Identity,
    client: Identity,
    untrusted_server: Identity,
    expired_server: Identity,
}

fn certtool(dir: &Path, args: &[&str]) {
    let output = Command::new("certtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("certtool (package gnutls-bin) runs");
    assert!(
        output.status.success(),
        "certtool {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn generate_key(dir: &Path, name: &str, kind: &str) -> PathBuf {
    let path = dir.join(format!("{name}.key"));
    let path_str = path.to_str().expect("temp paths are UTF-8");
    match kind {
        "rsa" => certtool(
            dir,
            &[
                "-p",
                "--key-type=rsa",
                "--bits=2048",
                "--no-text",
                "--outfile",
                path_str,
            ],
        ),
        _ => certtool(
            dir,
            &[
                "-p",
                "--key-type=ecdsa",
                "--curve=secp256r1",
                "--no-text",
                "--outfile",
                path_str,
            ],
        ),
    }
    path
}

fn write_template(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.tmpl"));
    fs::write(&path, body).expect("template written");
    path
}

fn make_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = generate_key(dir, name, "ecdsa");
    let template = write_template(
        dir,
        name,
        &format!("cn = \"{name}\"\nca\ncert_signing_key\nexpiration_days = 30\n"),
    );
    let cert = dir.join(format!("{name}.pem"));
    certtool(
        dir,
        &[
            "--generate-self-signed",
            "--load-privkey",
            key.to_str().unwrap(),
            "--template",
            template.to_str().unwrap(),
            "--no-text",
            "--outfile",
            cert.to_str().unwrap(),
        ],
    );
    (cert, key)
}

fn issue(dir: &Path, ca: &(PathBuf, PathBuf), name: &str, kind: &str, template: &str) -> Identity {
    let key = generate_key(dir, name, kind);
    let template = write_template(dir, name, template);
    let cert = dir.join(format!("{name}.pem"));
    certtool(
        dir,
        &[
            "--generate-certificate",
            "--load-privkey",
            key.to_str().unwrap(),
            "--load-ca-certificate",
            ca.0.to_str().unwrap(),
            "--load-ca-privkey",
            ca.1.to_str().unwrap(),
            "--template",
            template.to_str().unwrap(),
            "--no-text",
            "--outfile",
            cert.to_str().unwrap(),
        ],
    );
    Identity {
        cert_pem: fs::read(cert).expect("certificate written"),
        key_pem: fs::read(key).expect("key written"),
    }
}

fn server_template(name: &str) -> String {
    format!(
        "cn = {name}\ndns_name = {name}\ntls_www_server\nsigning_key\nencryption_key\nexpiration_days = 30\n"
    )
}

pub(crate) fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let ca = make_ca(d, "test-ca");
        let rogue_ca = make_ca(d, "rogue-ca");
        let expired = "cn = old.example\ndns_name = old.example\ntls_www_server\nsigning_key\n\
                       activation_date = \"2020-01-01 00:00:00 UTC\"\n\
                       expiration_date = \"2020-02-01 00:00:00 UTC\"\n";
        Fixture {
            ca_pem: fs::read(&ca.0).expect("CA written"),
            rsa_server: issue(d, &ca, "server.example", "rsa", &server_template("server.example")),
            ecdsa_server: issue(d, &ca, "ecdsa.example", "ecdsa", &server_template("ecdsa.example")),
            other_server: issue(d, &ca, "other.example", "ecdsa", &server_template("other.example")),
            client: issue(
                d,
                &ca,
                "alice",
                "ecdsa",
                "cn = alice\nemail = alice@example.com\ntls_www_client\nsigning_key\nexpiration_days = 30\n",
            ),
            untrusted_server: issue(d, &rogue_ca, "rogue", "ecdsa", &server_template("server.example")),
            expired_server: issue(d, &ca, "old.example", "ecdsa", expired),
            ca_cert_path: ca.0,
            ca_key_path: ca.1,
            _dir: dir,
        }
    })
}

pub(crate) fn client_session(
    priority: &str,
    sni: Option<&str>,
    credentials: &Credentials,
) -> Session {
    Session::new(client_config(priority, sni), credentials).expect("client session created")
}

pub(crate) fn server_session(
    priority: &str,
    client_cert: ClientCertificate,
    credentials: &Credentials,
) -> Session {
    Session::new(server_config(priority, client_cert), credentials).expect("server session created")
}

fn client_config(priority: &str, sni: Option<&str>) -> SessionConfig {
    let mut config = SessionConfig::new(Role::Client);
    config.priority = priority.to_owned();
    config.sni = sni.map(str::to_owned);
    config
}

fn server_config(priority: &str, client_cert: ClientCertificate) -> SessionConfig {
    let mut config = SessionConfig::new(Role::Server);
    config.priority = priority.to_owned();
    config.client_cert = client_cert;
    config
}

fn anchors() -> TrustAnchors {
    TrustAnchors::from_certificates(&fixture().ca_pem, Encoding::Pem).expect("CA parses")
}

pub(crate) fn anonymous_client() -> Credentials {
    Credentials::builder()
        .trust_anchors(&fixture().ca_pem, Encoding::Pem)
        .build()
        .expect("client credentials build")
}

/// Which end failed a handshake.
#[derive(Debug, PartialEq)]
enum Side {
    Client,
    Server,
}

/// Runs both handshakes to completion, moving bytes between them; on failure still delivers
/// the failing side's alert to the other side before returning.
fn handshake(client: &mut Session, server: &mut Session) -> Result<(), (Side, TlsError)> {
    for _ in 0..50 {
        let c = client.handshake();
        server.feed_ciphertext(&client.take_ciphertext());
        if let Err(e) = c {
            return Err((Side::Client, e));
        }
        let s = server.handshake();
        client.feed_ciphertext(&server.take_ciphertext());
        if let Err(e) = s {
            return Err((Side::Server, e));
        }
        if client.is_handshake_done() && server.is_handshake_done() {
            return Ok(());
        }
    }
    panic!("handshake did not finish within 50 round trips");
}

/// Sends `data` from `from` to `to` and returns what `to` read.
fn transfer(from: &mut Session, to: &mut Session, data: &[u8]) -> Vec<u8> {
    let mut received = Vec::with_capacity(data.len());
    let mut buf = vec![0u8; 32 * 1024];
    let mut sent = 0;
    while sent < data.len() || received.len() < data.len() {
        if sent < data.len() {
            sent += from.write_plaintext(&data[sent..]).expect("write succeeds");
        }
        to.feed_ciphertext(&from.take_ciphertext());
        loop {
            match to.read_plaintext(&mut buf).expect("read succeeds") {
                ReadOutcome::Data(n) => received.extend_from_slice(&buf[..n]),
                ReadOutcome::WantRead => break,
                ReadOutcome::CloseNotify => panic!("unexpected close_notify"),
            }
        }
        // TLS 1.3 session tickets and other post-handshake messages flow back to the sender.
        from.feed_ciphertext(&to.take_ciphertext());
    }
    received
}

fn connected_pair(priority: &str, server_identity: &Identity) -> (Session, Session) {
    let f = fixture();
    let mut client = client_session(priority, Some("server.example"), &anonymous_client());
    let mut server = server_session(
        priority,
        ClientCertificate::Ignore,
        &server_identity.credentials(&f.ca_pem),
    );
    handshake(&mut client, &mut server).expect("handshake succeeds");
    (client, server)
}

#[test]
fn handles_move_between_threads() {
    fn assert_send<T: Send>() {}
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send::<Session>();
    assert_send_sync::<Credentials>();
    assert_send_sync::<TrustAnchors>();
}

#[test]
fn tls13_handshake_with_rsa_server() {
    let f = fixture();
    let (client, server) = connected_pair(TLS13, &f.rsa_server);

    assert_eq!(client.protocol_version(), Some(ProtocolVersion::Tls13));
    assert_eq!(server.protocol_version(), Some(ProtocolVersion::Tls13));
    let suite = client.cipher_suite().expect("suite negotiated");
    assert!(suite.starts_with("TLS_"), "suite {suite}");
    assert_eq!(server.cipher_suite(), Some(suite));
    assert_eq!(client.peer_certificate_type(), CertificateType::X509);
    assert_eq!(client.peer_certificates(), vec![f.rsa_server.leaf_der()]);
    assert!(server.peer_certificates().is_empty());
    assert_eq!(
        client
            .verify_peer_x509(&anchors(), Some("server.example"))
            .ok(),
        Some(())
    );
}

#[test]
fn tls12_handshake_with_ecdsa_server() {
    let f = fixture();
    let (client, server) = connected_pair(TLS12, &f.ecdsa_server);

    assert_eq!(client.protocol_version(), Some(ProtocolVersion::Tls12));
    assert_eq!(server.protocol_version(), Some(ProtocolVersion::Tls12));
    let suite = client.cipher_suite().expect("suite negotiated");
    assert!(suite.contains("ECDSA"), "suite {suite}");
    assert_eq!(client.peer_certificates(), vec![f.ecdsa_server.leaf_der()]);
    assert_eq!(
        client
            .verify_peer_x509(&anchors(), Some("ecdsa.example"))
            .ok(),
        Some(())
    );
}

#[test]
fn tls12_handshake_with_rsa_server() {
    let f = fixture();
    let (client, _server) = connected_pair(TLS12, &f.rsa_server);

    assert_eq!(client.protocol_version(), Some(ProtocolVersion::Tls12));
    assert!(client.cipher_suite().expect("suite").contains("RSA"));
}

#[test]
fn tls13_handshake_with_ecdsa_server() {
    let f = fixture();
    let (client, _server) = connected_pair(TLS13, &f.ecdsa_server);

    assert_eq!(client.protocol_version(), Some(ProtocolVersion::Tls13));
    assert_eq!(client.peer_certificates(), vec![f.ecdsa_server.leaf_der()]);
}

#[test]
fn mutual_authentication_both_versions() {
    let f = fixture();
    for priority in [TLS12, TLS13] {
        let mut client = client_session(
            priority,
            Some("server.example"),
            &f.client.credentials(&f.ca_pem),
        );
        let mut server = server_session(
            priority,
            ClientCertificate::Require,
            &f.rsa_server.credentials(&f.ca_pem),
        );
        handshake(&mut client, &mut server).expect("mutual handshake succeeds");

        assert_eq!(
            server.peer_certificates(),
            vec![f.client.leaf_der()],
            "{priority}"
        );
        assert_eq!(server.peer_certificate_type(), CertificateType::X509);
        assert_eq!(server.local_certificate_type(), CertificateType::X509);
        assert_eq!(
            server
                .verify_peer_x509(&anchors(), Some("alice@example.com"))
                .ok(),
            Some(()),
            "{priority}"
        );
        assert_eq!(
            client
                .verify_peer_x509(&anchors(), Some("server.example"))
                .ok(),
            Some(())
        );
    }
}

#[test]
fn required_client_certificate_missing() {
    let f = fixture();
    for priority in [TLS12, TLS13] {
        let mut client = client_session(priority, Some("server.example"), &anonymous_client());
        let mut server = server_session(
            priority,
            ClientCertificate::Require,
            &f.rsa_server.credentials(&f.ca_pem),
        );

        let (side, error) = handshake(&mut client, &mut server).expect_err("handshake fails");
        assert_eq!(side, Side::Server, "{priority}");
        assert!(
            matches!(error, TlsError::NoPeerCertificate),
            "{priority}: {error}"
        );
        assert!(error.is_fatal());
        assert!(error.is_peer_caused());

        // The server's alert reaches the client as a fatal alert: in the handshake under
        // TLS 1.2, and in the first read under TLS 1.3, where the client finishes first.
        let client_error = match client.handshake() {
            Err(e) => e,
            Ok(HandshakeStatus::Done) => {
                let mut buf = [0u8; 16];
                client
                    .read_plaintext(&mut buf)
                    .expect_err("client sees the alert")
            }
            Ok(HandshakeStatus::WantRead) => panic!("{priority}: no alert reached the client"),
        };
        assert!(
            matches!(client_error, TlsError::AlertReceived { fatal: true, .. }),
            "{priority}: {client_error}"
        );
    }
}

#[test]
fn requested_client_certificate_optional() {
    let f = fixture();
    let mut client = client_session(TLS13, Some("server.example"), &anonymous_client());
    let mut server = server_session(
        TLS13,
        ClientCertificate::Request,
        &f.rsa_server.credentials(&f.ca_pem),
    );

    handshake(&mut client, &mut server).expect("handshake succeeds without client certificate");
    assert!(server.peer_certificates().is_empty());
    assert!(matches!(
        server.verify_peer_x509(&anchors(), None),
        Err(VerifyError::NoPeerCertificate)
    ));
}

/// Server names the SNI selector was called with.
type SeenNames = Arc<std::sync::Mutex<Vec<Option<String>>>>;

/// A client sending `sni` and a server whose selector knows server.example and other.example,
/// with server.example's credentials as the default.
fn sni_pair(sni: Option<&str>) -> (Session, Session, SeenNames) {
    let f = fixture();
    let seen = SeenNames::default();
    let by_name: HashMap<&str, Credentials> = HashMap::from([
        ("server.example", f.rsa_server.credentials(&f.ca_pem)),
        ("other.example", f.other_server.credentials(&f.ca_pem)),
    ]);
    let mut config = server_config(TLS13, ClientCertificate::Ignore);
    let record = Arc::clone(&seen);
    config.credential_selector = Some(Arc::new(move |name: Option<&str>| {
        record.lock().unwrap().push(name.map(str::to_owned));
        by_name.get(name?).cloned()
    }));
    let server = Session::new(config, &f.rsa_server.credentials(&f.ca_pem)).unwrap();
    (
        client_session(TLS13, sni, &anonymous_client()),
        server,
        seen,
    )
}

#[test]
fn sni_selects_server_credentials() {
    // The default credentials would present server.example; the selector must replace them.
    let (mut client, mut server, seen) = sni_pair(Some("other.example"));
    let f = fixture();

    handshake(&mut client, &mut server).expect("handshake succeeds");
    assert_eq!(server.server_name().as_deref(), Some("other.example"));
    assert_eq!(
        *seen.lock().unwrap(),
        vec![Some("other.example".to_owned())]
    );
    assert_eq!(client.peer_certificates(), vec![f.other_server.leaf_der()]);
    assert_eq!(
        client
            .verify_peer_x509(&anchors(), Some("other.example"))
            .ok(),
        Some(())
    );
    assert_eq!(client.server_name(), None);
}

#[test]
fn unknown_sni_fails_handshake() {
    let (mut client, mut server, _seen) = sni_pair(Some("nobody.example"));

    let (side, error) = handshake(&mut client, &mut server).expect_err("handshake fails");
    assert_eq!(side, Side::Server);
    match error {
        TlsError::NoCredentialsForName { server_name } => {
            assert_eq!(server_name.as_deref(), Some("nobody.example"));
        }
        other => panic!("unexpected error {other}"),
    }
    let client_error = client.handshake().expect_err("client sees the alert");
    assert!(
        matches!(client_error, TlsError::AlertReceived { fatal: true, .. }),
        "{client_error}"
    );
}

#[test]
fn missing_sni_reaches_selector_as_none() {
    let (mut client, mut server, seen) = sni_pair(None);

    let (side, error) = handshake(&mut client, &mut server).expect_err("handshake fails");
    assert_eq!(side, Side::Server);
    assert!(
        matches!(error, TlsError::NoCredentialsForName { server_name: None }),
        "{error}"
    );
    assert_eq!(*seen.lock().unwrap(), vec![None]);
}

#[test]
fn full_record_both_directions() {
    let f = fixture();
    for priority in [TLS12, TLS13] {
        let (mut client, mut server) = connected_pair(priority, &f.rsa_server);
        let payload: Vec<u8> = (0..MAX_RECORD_PLAINTEXT).map(|i| (i % 251) as u8).collect();

        // One call takes the whole 16 KiB into a single record.
        assert_eq!(
            client.write_plaintext(&payload).unwrap(),
            MAX_RECORD_PLAINTEXT
        );
        let record = client.take_ciphertext();
        assert!(record.len() > MAX_RECORD_PLAINTEXT, "{priority}");
        assert!(
            record.len() < MAX_RECORD_PLAINTEXT + 512,
            "{priority}: {}",
            record.len()
        );
        server.feed_ciphertext(&record);
        let mut buf = vec![0u8; MAX_RECORD_PLAINTEXT];
        let mut received = Vec::new();
        while let ReadOutcome::Data(n) = server.read_plaintext(&mut buf).unwrap() {
            received.extend_from_slice(&buf[..n]);
        }
        assert_eq!(received, payload, "{priority}");

        assert_eq!(
            transfer(&mut server, &mut client, &payload),
            payload,
            "{priority}"
        );
    }
}

#[test]
fn write_splits_at_record_size() {
    let f = fixture();
    let (mut client, _server) = connected_pair(TLS13, &f.rsa_server);
    let payload = vec![7u8; MAX_RECORD_PLAINTEXT + 100];

    assert_eq!(
        client.write_plaintext(&payload).unwrap(),
        MAX_RECORD_PLAINTEXT
    );
    assert_eq!(
        client
            .write_plaintext(&payload[MAX_RECORD_PLAINTEXT..])
            .unwrap(),
        100
    );
    assert_eq!(client.write_plaintext(&[]).unwrap(), 0);
}

#[test]
fn small_reads_drain_buffered_plaintext() {
    let f = fixture();
    let (mut client, mut server) = connected_pair(TLS13, &f.rsa_server);
    client.write_plaintext(b"hello, pool").unwrap();
    server.feed_ciphertext(&client.take_ciphertext());

    let mut small = [0u8; 4];
    assert_eq!(
        server.read_plaintext(&mut small).unwrap(),
        ReadOutcome::Data(4)
    );
    assert_eq!(&small, b"hell");
    // The rest of the record is inside GnuTLS now, with no ciphertext left to feed.
    assert_eq!(server.buffered_ciphertext(), 0);
    assert_eq!(server.pending_plaintext(), 7);
    let mut rest = [0u8; 16];
    assert_eq!(
        server.read_plaintext(&mut rest).unwrap(),
        ReadOutcome::Data(7)
    );
    assert_eq!(&rest[..7], b"o, pool");
    assert_eq!(
        server.read_plaintext(&mut rest).unwrap(),
        ReadOutcome::WantRead
    );
}

#[test]
fn megabyte_transfer_both_directions() {
    let f = fixture();
    let (mut client, mut server) = connected_pair(TLS13, &f.ecdsa_server);
    let payload: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(31) >> 3) as u8)
        .collect();

    assert_eq!(transfer(&mut client, &mut server, &payload), payload);
    assert_eq!(transfer(&mut server, &mut client, &payload), payload);
}

#[test]
fn partial_ciphertext_wants_more() {
    let f = fixture();
    let (mut client, mut server) = connected_pair(TLS12, &f.rsa_server);
    client.write_plaintext(b"split record").unwrap();
    let record = client.take_ciphertext();
    let mut buf = [0u8; 64];

    server.feed_ciphertext(&record[..10]);
    assert_eq!(
        server.read_plaintext(&mut buf).unwrap(),
        ReadOutcome::WantRead
    );
    server.feed_ciphertext(&record[10..]);
    assert_eq!(
        server.read_plaintext(&mut buf).unwrap(),
        ReadOutcome::Data(12)
    );
    assert_eq!(&buf[..12], b"split record");
}

/// Runs a TLS 1.3 handshake with session tickets enabled on the server, then returns both
/// sessions and the ciphertext of `count` NewSessionTicket messages the client has not seen.
fn tls13_pair_with_tickets(count: u32) -> (Session, Session, Vec<u8>) {
    let f = fixture();
    let mut client = client_session(TLS13, Some("server.example"), &anonymous_client());
    let mut server = server_session(
        TLS13,
        ClientCertificate::Ignore,
        &f.rsa_server.credentials(&f.ca_pem),
    );
    server
        .enable_session_tickets(&[7; 64])
        .expect("session tickets enabled");
    handshake(&mut client, &mut server).expect("handshake succeeds");
    server
        .send_session_tickets(count)
        .expect("session tickets queued");
    let tickets = server.take_ciphertext();
    (client, server, tickets)
}

/// Feeds `stream` to `session` cut at `splits`, reading until `WantRead` after each part as
/// the relay does, and returns the plaintext read.
fn read_in_parts(session: &mut Session, stream: &[u8], splits: &[usize]) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 64];
    let mut start = 0;
    for end in splits.iter().copied().chain([stream.len()]) {
        session.feed_ciphertext(&stream[start..end]);
        start = end;
        loop {
            match session.read_plaintext(&mut buf).expect("read succeeds") {
                ReadOutcome::Data(n) => received.extend_from_slice(&buf[..n]),
                ReadOutcome::WantRead => break,
                ReadOutcome::CloseNotify => panic!("unexpected close_notify"),
            }
        }
    }
    received
}

/// GnuTLS 3.7.9 returns `GNUTLS_E_AGAIN` from `gnutls_record_recv` after each TLS 1.3
/// NewSessionTicket, also when more records are fed. A `WantRead` there would leave a short
/// reply that arrived with the tickets undelivered, because the relay then waits for more
/// ciphertext. OpenSSL servers (stunnel, `openssl s_server`) send two tickets.
#[test]
fn short_record_after_session_tickets() {
    for count in [1u32, 2] {
        let stream_of = || {
            let (client, mut server, mut stream) = tls13_pair_with_tickets(count);
            let tickets_len = stream.len();
            server.write_plaintext(b"ok").expect("write succeeds");
            stream.extend_from_slice(&server.take_ciphertext());
            (client, stream, tickets_len)
        };
        let (_, stream, tickets_len) = stream_of();
        // The ticket records all have one length, so they end at its multiples.
        let ticket_len = tickets_len / count as usize;
        let mut cuts = vec![0, stream.len()];
        for boundary in (1..=count as usize).map(|i| i * ticket_len) {
            cuts.extend([boundary - 1, boundary, boundary + 1, boundary + 6]);
        }
        cuts.sort_unstable();
        cuts.dedup();

        let mut undelivered = Vec::new();
        for (i, &first) in cuts.iter().enumerate() {
            for &second in &cuts[i..] {
                let (mut client, stream, _) = stream_of();
                if read_in_parts(&mut client, &stream, &[first, second]) != b"ok" {
                    undelivered.push((first, second));
                }
            }
        }
        assert!(
            undelivered.is_empty(),
            "reply after {count} session ticket(s) not read with the stream cut at {undelivered:?}"
        );
    }
}

#[test]
fn pending_ciphertext_consumed_in_parts() {
    let f = fixture();
    let (mut client, mut server) = connected_pair(TLS13, &f.rsa_server);
    client.write_plaintext(b"partial writes").unwrap();

    // A socket that accepts a few bytes at a time.
    while !client.pending_ciphertext().is_empty() {
        let n = client.pending_ciphertext().len().min(5);
        server.feed_ciphertext(&client.pending_ciphertext()[..n]);
        client.consume(n);
    }
    let mut buf = [0u8; 64];
    assert_eq!(
        server.read_plaintext(&mut buf).unwrap(),
        ReadOutcome::Data(14)
    );
    assert_eq!(&buf[..14], b"partial writes");
}

#[test]
fn close_notify_reads_as_close_notify() {
    let f = fixture();
    for priority in [TLS12, TLS13] {
        let (mut client, mut server) = connected_pair(priority, &f.rsa_server);
        client.send_close_notify().unwrap();
        server.feed_ciphertext(&client.take_ciphertext());

        let mut buf = [0u8; 64];
        assert_eq!(
            server.read_plaintext(&mut buf).unwrap(),
            ReadOutcome::CloseNotify,
            "{priority}"
        );

        // The write side of the server stays open after the client's close_notify.
        server.write_plaintext(b"still here").unwrap();
        client.feed_ciphertext(&server.take_ciphertext());
        let mut data = Vec::new();
        while let ReadOutcome::Data(n) = client.read_plaintext(&mut buf).unwrap() {
            data.extend_from_slice(&buf[..n]);
        }
        assert_eq!(data, b"still here", "{priority}");
    }
}

#[test]
fn eof_without_close_notify_is_premature() {
    let f = fixture();
    let (_client, mut server) = connected_pair(TLS13, &f.rsa_server);
    server.feed_eof();

    let mut buf = [0u8; 64];
    let error = server.read_plaintext(&mut buf).expect_err("premature end");
    assert!(matches!(error, TlsError::PrematureTermination), "{error}");
    assert!(error.is_peer_caused());
}

#[test]
fn verify_rejects_wrong_name() {
    let f = fixture();
    let (client, _server) = connected_pair(TLS13, &f.rsa_server);

    match client.verify_peer_x509(&anchors(), Some("wrong.example")) {
        Err(VerifyError::NameMismatch { expected }) => assert_eq!(expected, "wrong.example"),
        other => panic!("expected a name mismatch, got {other:?}"),
    }
    assert!(matches!(
        client.verify_peer_x509(&anchors(), Some("user@server.example")),
        Err(VerifyError::NameMismatch { .. })
    ));
}

#[test]
fn verify_rejects_untrusted_chain() {
    let f = fixture();
    let (client, _server) = connected_pair(TLS13, &f.untrusted_server);

    let error = client
        .verify_peer_x509(&anchors(), Some("server.example"))
        .expect_err("untrusted chain rejected");
    assert!(
        matches!(error, VerifyError::UnknownIssuer { .. }),
        "{error}"
    );
}

#[test]
fn verify_rejects_expired_certificate() {
    let f = fixture();
    let (client, _server) = connected_pair(TLS13, &f.expired_server);

    let error = client
        .verify_peer_x509(&anchors(), Some("old.example"))
        .expect_err("expired certificate rejected");
    assert!(matches!(error, VerifyError::Expired { .. }), "{error}");
}

#[test]
fn verify_rejects_server_certificate_as_client() {
    let f = fixture();
    // A server certificate (serverAuth only) used as a client certificate.
    let mut client = client_session(
        TLS13,
        Some("server.example"),
        &f.other_server.credentials(&f.ca_pem),
    );
    let mut server = server_session(
        TLS13,
        ClientCertificate::Require,
        &f.rsa_server.credentials(&f.ca_pem),
    );
    handshake(&mut client, &mut server).expect("handshake succeeds");

    let error = server
        .verify_peer_x509(&anchors(), None)
        .expect_err("purpose mismatch");
    assert!(
        matches!(error, VerifyError::PurposeMismatch { .. }),
        "{error}"
    );
}

#[test]
fn exporter_matches_on_both_ends() {
    let f = fixture();
    for priority in [TLS12, TLS13] {
        let (client, server) = connected_pair(priority, &f.rsa_server);
        let mut from_client = [0u8; 32];
        let mut from_server = [0u8; 32];
        let mut other_label = [0u8; 32];
        client
            .export_keying_material("EXPORTER-tlspool-test", Some(b"ctx"), &mut from_client)
            .unwrap();
        server
            .export_keying_material("EXPORTER-tlspool-test", Some(b"ctx"), &mut from_server)
            .unwrap();
        client
            .export_keying_material("EXPORTER-tlspool-other", Some(b"ctx"), &mut other_label)
            .unwrap();

        assert_eq!(from_client, from_server, "{priority}");
        assert_ne!(from_client, [0u8; 32], "{priority}");
        assert_ne!(from_client, other_label, "{priority}");
    }
}

#[test]
fn channel_binding_matches_on_both_ends() {
    let f = fixture();
    let (client, server) = connected_pair(TLS13, &f.rsa_server);
    let kind = ChannelBinding::TlsExporter;
    let binding = client.channel_binding(kind).unwrap();
    assert_eq!(binding.len(), 32);
    assert_eq!(server.channel_binding(kind).unwrap(), binding);

    let (client, server) = connected_pair(TLS12, &f.rsa_server);
    let kind = ChannelBinding::TlsUnique;
    let binding = client.channel_binding(kind).unwrap();
    assert!(!binding.is_empty());
    assert_eq!(server.channel_binding(kind).unwrap(), binding);
}

#[test]
fn exporter_before_handshake_fails() {
    let client = client_session(TLS13, None, &anonymous_client());
    let mut out = [0u8; 16];

    assert!(
        client
            .export_keying_material("EXPORTER-x", None, &mut out)
            .is_err()
    );
    assert_eq!(client.protocol_version(), None);
    assert_eq!(client.cipher_suite(), None);
}

#[test]
fn data_before_handshake_rejected() {
    let mut client = client_session(TLS13, None, &anonymous_client());
    let mut buf = [0u8; 16];

    let write = client
        .write_plaintext(b"early")
        .expect_err("write rejected");
    assert!(matches!(
        write,
        TlsError::HandshakeNotDone {
            operation: "write_plaintext"
        }
    ));
    let read = client.read_plaintext(&mut buf).expect_err("read rejected");
    assert!(matches!(
        read,
        TlsError::HandshakeNotDone {
            operation: "read_plaintext"
        }
    ));
    assert!(client.pending_ciphertext().is_empty());
}

#[test]
fn drop_mid_handshake_releases_session() {
    let f = fixture();
    let mut client = client_session(TLS13, Some("server.example"), &anonymous_client());
    let mut server = server_session(
        TLS13,
        ClientCertificate::Ignore,
        &f.rsa_server.credentials(&f.ca_pem),
    );

    assert_eq!(client.handshake().unwrap(), HandshakeStatus::WantRead);
    server.feed_ciphertext(&client.take_ciphertext());
    assert_eq!(server.handshake().unwrap(), HandshakeStatus::WantRead);
    assert!(!server.pending_ciphertext().is_empty());
    // Dropping here frees both sessions, their buffers and the credentials (checked for leaks
    // by running the suite under valgrind).
    drop(server);
    drop(client);
}

#[test]
fn invalid_priority_rejected() {
    let error = Session::new(
        client_config("NORMAL:+NO-SUCH-THING", None),
        &anonymous_client(),
    )
    .expect_err("priority rejected");
    match error {
        TlsError::InvalidPriority { position, .. } => assert_eq!(position, 7),
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn check_priority_accepts_default_rejects_typo() {
    assert!(check_priority(crate::config::DEFAULT_TLS_PRIORITY).is_ok());
    let error = check_priority("NONSENSE:+FOO").expect_err("priority rejected");
    assert!(
        matches!(error, TlsError::InvalidPriority { position: 0, .. }),
        "{error}"
    );
}

#[test]
fn chain_without_key_rejected() {
    let error = Credentials::builder()
        .certificate_chain(&fixture().rsa_server.cert_pem, Encoding::Pem)
        .build()
        .expect_err("incomplete key pair");
    assert!(matches!(error, TlsError::IncompleteKeyPair), "{error}");
}

#[test]
fn garbage_certificate_rejected() {
    let error = Credentials::builder()
        .trust_anchors(b"not a certificate", Encoding::Der)
        .build()
        .expect_err("garbage rejected");
    assert!(matches!(
        error,
        TlsError::Library {
            function: "gnutls_x509_crt_list_import2",
            ..
        }
    ));
}

/// Number of PIN callback calls in the child process of the PKCS#11 test.
static PIN_CALLS: AtomicUsize = AtomicUsize::new(0);

const TOKEN_PIN: &str = "1234";

fn run_tool(program: &str, args: &[&str], conf: &Path) {
    let output = Command::new(program)
        .args(args)
        .env("SOFTHSM2_CONF", conf)
        .env("GNUTLS_PIN", TOKEN_PIN)
        .output()
        .unwrap_or_else(|e| panic!("{program} failed to start: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Creates a SoftHSM2 configuration under `dir` with one token labelled `tlspool` (user PIN
/// [`TOKEN_PIN`]) and returns the configuration path for `SOFTHSM2_CONF`.
fn init_token(dir: &Path) -> PathBuf {
    let conf = dir.join("softhsm2.conf");
    fs::create_dir(dir.join("tokens")).unwrap();
    fs::write(
        &conf,
        format!(
            "directories.tokendir = {}/tokens\nobjectstore.backend = file\n",
            dir.display()
        ),
    )
    .unwrap();
    run_tool(
        "softhsm2-util",
        &[
            "--init-token",
            "--free",
            "--label",
            "tlspool",
            "--so-pin",
            "12345678",
            "--pin",
            TOKEN_PIN,
        ],
        &conf,
    );
    conf
}

/// Generates an ECDSA P-256 key pair labelled `label` on the `tlspool` token.
fn generate_token_key(conf: &Path, label: &str) {
    run_tool(
        "p11tool",
        &[
            "--provider",
            SOFTHSM_MODULE,
            "--login",
            "--generate-privkey=ecdsa",
            "--curve=secp256r1",
            &format!("--label={label}"),
            "--id=01",
            "pkcs11:token=tlspool",
        ],
        conf,
    );
}

#[test]
fn pkcs11_key_completes_handshake() {
    if !Path::new(SOFTHSM_MODULE).exists() {
        eprintln!("skipping: {SOFTHSM_MODULE} is missing (install softhsm2)");
        return;
    }
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();

    // A token with an ECDSA P-256 key, certified by the test CA.
    let conf = init_token(dir.path());
    generate_token_key(&conf, "tlskey");
    let template = write_template(dir.path(), "token", &server_template("token.example"));
    let cert = dir.path().join("token.pem");
    run_tool(
        "certtool",
        &[
            "--provider",
            SOFTHSM_MODULE,
            "--generate-certificate",
            "--load-privkey",
            "pkcs11:token=tlspool;object=tlskey;type=private",
            "--load-pubkey",
            "pkcs11:token=tlspool;object=tlskey;type=public",
            "--load-ca-certificate",
            f.ca_cert_path.to_str().unwrap(),
            "--load-ca-privkey",
            f.ca_key_path.to_str().unwrap(),
            "--template",
            template.to_str().unwrap(),
            "--no-text",
            "--outfile",
            cert.to_str().unwrap(),
        ],
        &conf,
    );

    // GnuTLS's PKCS#11 state is process-wide and SoftHSM reads SOFTHSM2_CONF when it loads, so
    // the handshake runs in a child test process with its own environment.
    run_child_test(
        "tls::tests::pkcs11_handshake_child",
        &[
            ("SOFTHSM2_CONF", conf.as_os_str()),
            ("TLSPOOL_TEST_TOKEN_CERT", cert.as_os_str()),
            ("TLSPOOL_TEST_CA_CERT", f.ca_cert_path.as_os_str()),
        ],
    );
}

/// Runs the ignored test `name` of this test binary in a child process with `env` added to its
/// environment, and fails unless it ran and passed.
fn run_child_test(name: &str, env: &[(&str, &std::ffi::OsStr)]) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--ignored", "--nocapture"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "child did not run the test:\n{stdout}"
    );
}

#[test]
#[ignore = "run by pkcs11_key_completes_handshake in a child process with SOFTHSM2_CONF set"]
fn pkcs11_handshake_child() {
    let cert_path = std::env::var_os("TLSPOOL_TEST_TOKEN_CERT").expect("set by the parent test");
    let ca_path = std::env::var_os("TLSPOOL_TEST_CA_CERT").expect("set by the parent test");
    let ca_pem = fs::read(ca_path).unwrap();

    pkcs11_add_provider(SOFTHSM_MODULE).expect("softhsm module loads");
    set_pin_callback(Box::new(|request: &PinRequest| {
        PIN_CALLS.fetch_add(1, Ordering::SeqCst);
        assert_eq!(request.token_label, "tlspool");
        assert!(!request.security_officer);
        Some(Zeroizing::new(TOKEN_PIN.to_owned()))
    }));
    let server_credentials = Credentials::builder()
        .certificate_chain(&fs::read(cert_path).unwrap(), Encoding::Pem)
        .private_key(PrivateKeySource::Pkcs11Uri(
            "pkcs11:token=tlspool;object=tlskey;type=private".to_owned(),
        ))
        .build()
        .expect("token key opens");

    for priority in [TLS12, TLS13] {
        let client_credentials = Credentials::builder()
            .trust_anchors(&ca_pem, Encoding::Pem)
            .build()
            .unwrap();
        let mut client = client_session(priority, Some("token.example"), &client_credentials);
        let mut server = server_session(priority, ClientCertificate::Ignore, &server_credentials);
        handshake(&mut client, &mut server).expect("handshake with token key succeeds");

        let anchors = TrustAnchors::from_certificates(&ca_pem, Encoding::Pem).unwrap();
        assert_eq!(
            client
                .verify_peer_x509(&anchors, Some("token.example"))
                .ok(),
            Some(())
        );
        assert_eq!(
            transfer(&mut client, &mut server, b"via token"),
            b"via token"
        );
    }
    assert!(
        PIN_CALLS.load(Ordering::SeqCst) >= 1,
        "the PIN callback was never called"
    );
}

#[test]
fn handshake_timeout_expires() {
    let mut config = client_config(TLS13, Some("server.example"));
    config.handshake_timeout = Some(std::time::Duration::from_millis(20));
    let mut client = Session::new(config, &anonymous_client()).unwrap();

    assert_eq!(client.handshake().unwrap(), HandshakeStatus::WantRead);
    std::thread::sleep(std::time::Duration::from_millis(60));
    let error = client.handshake().expect_err("timeout reported");
    assert!(matches!(error, TlsError::HandshakeTimeout), "{error}");
}
