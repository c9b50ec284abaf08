//! STARTTLS through the built daemon against real TLS peers on loopback: the pool as client of
//! `gnutls-serv` and `openssl s_server`, the pool as server of `gnutls-cli` and
//! `openssl s_client`, TLS 1.2 and 1.3, ECDSA and RSA identities on a SoftHSM token made by
//! `tlspool-admin dev-init`, mutual authentication, the callbacks, the rejections of bad peers
//! with their error codes, and the daemon's descriptors back at their baseline afterwards.
//!
//! Run through `scripts/netns-run.sh`, because `gnutls-serv` listens on every interface.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::Duration;

use tlspool_proto::blocking::RecordStream;
use tlspool_proto::{
    ErrorCode, ErrorPayload, FixedString, Identity, Payload, Record, StartTls, StartTlsFlags,
};
use tlspool_tests::bin_path;
use tlspool_tests::daemon::TestDaemon;
use tlspool_tests::tls_peers::{
    Peer, free_port, gnutls_cli, gnutls_serv, openssl_s_client, openssl_s_server,
};

const DOMAIN: &str = "dev.example";
const PEER: &str = "peer.dev.example";
const PIN: &str = "43214321";
const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

const CLIENT: StartTlsFlags =
    StartTlsFlags::LOCALROLE_CLIENT.union(StartTlsFlags::REMOTEROLE_SERVER);
const SERVER: StartTlsFlags =
    StartTlsFlags::LOCALROLE_SERVER.union(StartTlsFlags::REMOTEROLE_CLIENT);

/// `errno` values of peer validation failures.
const EACCES: i32 = 13;
const ETIMEDOUT: i32 = 110;
const ENOKEY: i32 = 126;
const EKEYEXPIRED: i32 = 127;
const EKEYREJECTED: i32 = 129;

/// A dev-init setup: token, CA, identities of `dev.example`, databases and peer files.
struct Pki {
    _temp: tempfile::TempDir,
    dir: PathBuf,
    ca_key_uri: String,
}

fn pki(key_type: &'static str) -> &'static Pki {
    static P256: OnceLock<Pki> = OnceLock::new();
    static RSA: OnceLock<Pki> = OnceLock::new();
    let cell = if key_type == "rsa2048" { &RSA } else { &P256 };
    cell.get_or_init(|| Pki::create(key_type))
}

impl Pki {
    fn create(key_type: &str) -> Self {
        let temp = tempfile::tempdir().expect("temporary directory");
        let dir = temp.path().join("pki");
        let output = Command::new(bin_path("tlspool-admin"))
            .args(["dev-init", dir.to_str().expect("UTF-8 path")])
            .args(["--domain", DOMAIN, "--pin", PIN, "--key-type", key_type])
            .output()
            .expect("run tlspool-admin dev-init");
        let summary = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "dev-init failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let ca_key_uri = summary
            .lines()
            .find_map(|line| line.trim().strip_prefix("test CA"))
            .map(|uri| uri.trim().to_owned())
            .expect("the summary names the CA key");
        Self {
            _temp: temp,
            dir,
            ca_key_uri,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().expect("UTF-8 path").to_owned()
    }

    fn softhsm_conf(&self) -> PathBuf {
        self.dir.join("softhsm2.conf")
    }

    fn start_daemon(&self) -> TestDaemon {
        let lines = [
            format!("pkcs11_path {SOFTHSM_MODULE}"),
            format!("pkcs11_pin {PIN}"),
            format!("dbenv_dir {}", self.path("db")),
        ];
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let conf = self.softhsm_conf();
        // SoftHSM 2.6 failed C_GetTokenInfo with CKR_GENERAL_ERROR now and then when several
        // daemons started on the same token directory at once, so they start one at a time.
        static STARTING: Mutex<()> = Mutex::new(());
        let _starting = STARTING.lock().unwrap_or_else(PoisonError::into_inner);
        TestDaemon::start_with_env(&lines, &[("SOFTHSM2_CONF", conf.as_path())])
    }

    /// Issues a certificate for `peer.dev.example` from a fresh file key with the `template`
    /// lines, signed by the test CA's token key (or self-signed CA `issuer` files), and
    /// returns the certificate and key files.
    fn issue_peer(
        &self,
        name: &str,
        template: &str,
        issuer: Option<(&str, &str)>,
    ) -> (String, String) {
        let key = self.path(&format!("{name}.key"));
        let cert = self.path(&format!("{name}.pem"));
        let template_path = self.path(&format!("{name}.tmpl"));
        std::fs::write(&template_path, template).expect("write the template");
        certtool(self, &["--generate-privkey", "--outfile", &key]);
        let (ca_cert, ca_key) = issuer.map_or_else(
            || (self.path("ca.pem"), self.ca_key_uri.clone()),
            |(cert, key)| (cert.to_owned(), key.to_owned()),
        );
        certtool(
            self,
            &[
                "--generate-certificate",
                "--load-privkey",
                &key,
                "--load-ca-certificate",
                &ca_cert,
                "--load-ca-privkey",
                &ca_key,
                "--template",
                &template_path,
                "--outfile",
                &cert,
            ],
        );
        (cert, key)
    }

    /// Creates a self-signed CA in files that the trust database does not know.
    fn untrusted_ca(&self) -> (String, String) {
        let key = self.path("untrusted-ca.key");
        let cert = self.path("untrusted-ca.pem");
        let template = self.path("untrusted-ca.tmpl");
        std::fs::write(&template, "cn = \"Untrusted CA\"\nca\ncert_signing_key\n")
            .expect("write the template");
        certtool(self, &["--generate-privkey", "--outfile", &key]);
        certtool(
            self,
            &[
                "--generate-self-signed",
                "--load-privkey",
                &key,
                "--template",
                &template,
                "--outfile",
                &cert,
            ],
        );
        (cert, key)
    }
}

fn certtool(pki: &Pki, args: &[&str]) {
    let output = Command::new("certtool")
        .args(["--provider", SOFTHSM_MODULE])
        .args(args)
        .env("SOFTHSM2_CONF", pki.softhsm_conf())
        .env("GNUTLS_PIN", PIN)
        .output()
        .expect("run certtool");
    assert!(
        output.status.success(),
        "certtool {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn peer_template(extra: &str) -> String {
    format!(
        "cn = \"{PEER}\"\ndns_name = \"{PEER}\"\ntls_www_server\ntls_www_client\nsigning_key\nencryption_key\n{extra}"
    )
}

/// Builds a STARTTLS request.
fn request(reqid: u16, flags: StartTlsFlags, localid: &str, remoteid: &str, ctlkey: u8) -> Record {
    Record::new(
        reqid,
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

fn connect(daemon: &TestDaemon) -> RecordStream {
    let stream = RecordStream::connect(daemon.socket_path()).expect("connect to the daemon");
    stream
        .get_ref()
        .set_read_timeout(Some(STEP_TIMEOUT))
        .expect("read timeout");
    stream
}

fn receive(stream: &mut RecordStream) -> (Record, Option<std::os::fd::OwnedFd>) {
    let frame = stream
        .recv()
        .expect("receive from the daemon")
        .expect("the daemon closed the connection");
    let record = frame.decode().expect("decode the record");
    (record, frame.fd)
}

/// Sends `record` with `cipher`, responds to the PLAINTEXT_CONNECT callback with a socketpair end
/// and returns the final reply and the application's plaintext end, or the ERROR.
fn starttls(
    stream: &mut RecordStream,
    record: &Record,
    cipher: impl AsFd,
) -> Result<(StartTls, UnixStream), ErrorPayload> {
    stream
        .send_record(record, Some(cipher.as_fd()))
        .expect("send STARTTLS");
    drop(cipher);
    let mut plaintext = None;
    loop {
        let (reply, _) = receive(stream);
        match reply.payload {
            Payload::PlaintextConnect(params) => {
                assert_ne!(reply.cbid, 0, "a callback carries a callback id");
                let (ours, theirs) = UnixStream::pair().expect("socketpair");
                let mut answer = Record::new(reply.reqid, Payload::PlaintextConnect(params));
                answer.cbid = reply.cbid;
                stream
                    .send_record(&answer, Some(theirs.as_fd()))
                    .expect("answer PLAINTEXT_CONNECT");
                plaintext = Some(ours);
            }
            Payload::StartTls(params) => {
                assert_eq!(reply.cbid, 0, "the final reply carries cbid 0");
                assert_eq!(reply.reqid, record.reqid);
                let plaintext = plaintext.expect("PLAINTEXT_CONNECT preceded the reply");
                plaintext
                    .set_read_timeout(Some(STEP_TIMEOUT))
                    .expect("read timeout");
                return Ok((params, plaintext));
            }
            Payload::Error(error) => {
                assert_eq!(reply.cbid, 0);
                return Err(error);
            }
            other => panic!("unexpected record from the daemon: {other:?}"),
        }
    }
}

/// Runs the pool as TLS client of a server on `port` and returns the reply and plaintext end.
fn pool_client(
    daemon: &TestDaemon,
    port: u16,
    remoteid: &str,
) -> (RecordStream, Result<(StartTls, UnixStream), ErrorPayload>) {
    let mut stream = connect(daemon);
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect to the TLS server");
    let result = starttls(&mut stream, &request(1, CLIENT, "", remoteid, 1), tcp);
    (stream, result)
}

/// Listens on an ephemeral port of 127.0.0.1 for a TLS client of the pool.
fn listen() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("address").port();
    (listener, port)
}

/// Accepts the TLS client of `listener` and runs the pool as its server.
fn pool_server(
    daemon: &TestDaemon,
    listener: &TcpListener,
    flags: StartTlsFlags,
    localid: &str,
) -> (RecordStream, Result<(StartTls, UnixStream), ErrorPayload>) {
    let mut stream = connect(daemon);
    let (tcp, _) = listener.accept().expect("accept the TLS client");
    let result = starttls(&mut stream, &request(2, flags, localid, "", 2), tcp);
    (stream, result)
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

/// Sends a line through the pool to a line-echoing server and checks the echoed line.
fn assert_echo(plaintext: &mut UnixStream, line: &str, expected: &str) {
    plaintext
        .write_all(format!("{line}\n").as_bytes())
        .expect("write plaintext");
    assert_eq!(read_line(plaintext), format!("{expected}\n"));
}

/// Exchanges a line each way between an interactive TLS client and the pool's plaintext end.
fn assert_exchange(client: &mut Peer, plaintext: &mut UnixStream) {
    client.send_line("ping from the client");
    assert_eq!(read_line(plaintext), "ping from the client\n");
    plaintext
        .write_all(b"pong from the application\n")
        .expect("write plaintext");
    assert!(
        client.wait_for_output("pong from the application"),
        "the client did not print the answer:\n{}",
        client.output()
    );
}

fn wait_fd_count(daemon: &TestDaemon, baseline: usize) {
    let count = daemon.wait_fd_count(baseline, STEP_TIMEOUT);
    assert_eq!(count, baseline, "daemon descriptors after the session");
}

fn peer_server_args(pki: &Pki) -> Vec<String> {
    vec![
        "--x509certfile".into(),
        pki.path("peer-cert.pem"),
        "--x509keyfile".into(),
        pki.path("peer-key.pem"),
    ]
}

/// Starts `gnutls-cli` without a client certificate, verifying the pool's `dev.example`.
fn anonymous_cli(pki: &Pki, port: u16) -> Peer {
    let ca = pki.path("ca.pem");
    gnutls_cli(
        port,
        &[
            "--x509cafile",
            &ca,
            "--sni-hostname",
            DOMAIN,
            "--verify-hostname",
            DOMAIN,
        ],
    )
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn assert_error(error: &ErrorPayload, tlserrno: i32, fragment: &str) {
    assert_eq!(error.tlserrno, tlserrno, "{}", error.message);
    assert!(error.message.contains(fragment), "{}", error.message);
}

#[test]
fn client_to_gnutls_serv_tls13_mutual() {
    let pki = pki("p256");
    let daemon = pki.start_daemon();
    let baseline = daemon.settled_fd_count();
    let port = free_port();
    let mut args = peer_server_args(pki);
    let ca = pki.path("ca.pem");
    args.extend(["--echo", "--require-client-cert", "--x509cafile", &ca].map(String::from));
    let server = gnutls_serv(port, &strs(&args));

    let (control, result) = pool_client(&daemon, port, PEER);
    let (reply, mut plaintext) = result.expect("STARTTLS succeeds");
    assert_eq!(reply.localid.as_str(), DOMAIN);
    assert_eq!(reply.remoteid.as_str(), PEER);
    assert_eq!(reply.flags, CLIENT);
    assert_echo(&mut plaintext, "hello over TLS 1.3", "hello over TLS 1.3");
    assert!(
        server.wait_for_output("TLS1.3"),
        "gnutls-serv output:\n{}",
        server.output()
    );

    drop(plaintext);
    drop(control);
    drop(server);
    wait_fd_count(&daemon, baseline);
}

#[test]
fn client_to_gnutls_serv_tls12_rsa() {
    let pki = pki("rsa2048");
    let daemon = pki.start_daemon();
    let port = free_port();
    let mut args = peer_server_args(pki);
    args.extend(["--echo", "--priority", "NORMAL:-VERS-ALL:+VERS-TLS1.2"].map(String::from));
    let server = gnutls_serv(port, &strs(&args));

    let (_control, result) = pool_client(&daemon, port, PEER);
    let (reply, mut plaintext) = result.expect("STARTTLS succeeds");
    assert_eq!(reply.remoteid.as_str(), PEER);
    assert_echo(&mut plaintext, "hello over TLS 1.2", "hello over TLS 1.2");
    assert!(
        server.wait_for_output("TLS1.2"),
        "gnutls-serv output:\n{}",
        server.output()
    );
}

#[test]
fn client_to_openssl_s_server_mutual() {
    let pki = pki("p256");
    let daemon = pki.start_daemon();
    let port = free_port();
    let (cert, key, ca) = (
        pki.path("peer-cert.pem"),
        pki.path("peer-key.pem"),
        pki.path("ca.pem"),
    );
    let _server = openssl_s_server(
        port,
        &[
            "-cert", &cert, "-key", &key, "-CAfile", &ca, "-Verify", "1", "-rev", "-tls1_3",
        ],
    );

    let (_control, result) = pool_client(&daemon, port, PEER);
    let (reply, mut plaintext) = result.expect("STARTTLS succeeds");
    assert_eq!(reply.localid.as_str(), DOMAIN);
    assert_echo(&mut plaintext, "abc", "cba");
}

#[test]
fn gnutls_cli_to_pool_server_by_sni() {
    let pki = pki("p256");
    let daemon = pki.start_daemon();
    let baseline = daemon.settled_fd_count();
    let (listener, port) = listen();
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("peer-cert.pem"),
        pki.path("peer-key.pem"),
    );
    let mut client = gnutls_cli(
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
            "--priority",
            "NORMAL:-VERS-ALL:+VERS-TLS1.2",
        ],
    );

    let (control, result) = pool_server(&daemon, &listener, SERVER, "");
    let (reply, mut plaintext) = result.expect("STARTTLS succeeds");
    assert_eq!(
        reply.localid.as_str(),
        DOMAIN,
        "the SNI became the local identity"
    );
    assert_eq!(
        reply.remoteid.as_str(),
        PEER,
        "the client certificate's name"
    );
    assert_exchange(&mut client, &mut plaintext);

    client.close_stdin();
    drop(plaintext);
    drop(control);
    drop(client);
    wait_fd_count(&daemon, baseline);
}

#[test]
fn openssl_s_client_to_pool_server_rsa() {
    let pki = pki("rsa2048");
    let daemon = pki.start_daemon();
    let (listener, port) = listen();
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("peer-cert.pem"),
        pki.path("peer-key.pem"),
    );
    let mut client = openssl_s_client(
        port,
        &[
            "-servername",
            DOMAIN,
            "-CAfile",
            &ca,
            "-verify_return_error",
            "-verify_hostname",
            DOMAIN,
            "-cert",
            &cert,
            "-key",
            &key,
            "-tls1_3",
            "-quiet",
        ],
    );

    let (_control, result) = pool_server(&daemon, &listener, SERVER, DOMAIN);
    let (reply, mut plaintext) = result.expect("STARTTLS succeeds");
    assert_eq!(reply.localid.as_str(), DOMAIN);
    assert_eq!(reply.remoteid.as_str(), PEER);
    assert_exchange(&mut client, &mut plaintext);
}

#[test]
fn pool_server_requires_client_certificate() {
    let pki = pki("p256");
    let daemon = pki.start_daemon();
    let baseline = daemon.settled_fd_count();
    let (listener, port) = listen();
    let _client = anonymous_cli(pki, port);

    let (control, result) = pool_server(&daemon, &listener, SERVER, DOMAIN);
    let error = result.expect_err("a client without certificate is rejected");
    assert_error(&error, ENOKEY, "peer");

    drop(control);
    wait_fd_count(&daemon, baseline);
}

#[test]
fn request_remoteid_accepts_anonymous_client() {
    let pki = pki("p256");
    let daemon = pki.start_daemon();
    let (listener, port) = listen();
    let mut client = anonymous_cli(pki, port);

    let flags = SERVER | StartTlsFlags::REQUEST_REMOTEID;
    let (_control, result) = pool_server(&daemon, &listener, flags, DOMAIN);
    let (reply, mut plaintext) = result.expect("an anonymous client passes");
    assert_eq!(
        reply.remoteid.as_str(),
        "",
        "an anonymous peer has no identity"
    );
    assert_exchange(&mut client, &mut plaintext);
}

#[test]
fn untrusted_chain_is_rejected() {
    let pki = pki("p256");
    let daemon = pki.start_daemon();
    let baseline = daemon.settled_fd_count();
    let (ca_cert, ca_key) = pki.untrusted_ca();
    let (cert, key) = pki.issue_peer(
        "untrusted-peer",
        &peer_template(""),
        Some((&ca_cert, &ca_key)),
    );
    let port = free_port();
    let _server = gnutls_serv(port, &["--x509certfile", &cert, "--x509keyfile", &key]);

    let (control, result) = pool_client(&daemon, port, PEER);
    let error = result.expect_err("an unknown issuer is rejected");
    assert_error(
        &error,
        EKEYREJECTED,
        "TLS Pool rejected the peer certificate",
    );

    drop(control);
    wait_fd_count(&daemon, baseline);
}

#[test]
fn expired_certificate_is_rejected() {
    let pki = pki("p256");
    let daemon = pki.start_daemon();
    let template = peer_template(
        "activation_date = \"2020-01-01 00:00:00\"\nexpiration_date = \"2021-01-01 00:00:00\"\n",
    );
    let (cert, key) = pki.issue_peer("expired-peer", &template, None);
    let port = free_port();
    let _server = gnutls_serv(port, &["--x509certfile", &cert, "--x509keyfile", &key]);

    let (_control, result) = pool_client(&daemon, port, PEER);
    let error = result.expect_err("an expired certificate is rejected");
    assert_error(
        &error,
        EKEYEXPIRED,
        "TLS Pool rejected the peer certificate",
    );
}

#[test]
fn wrong_server_name_is_rejected() {
    let pki = pki("p256");
    let daemon = pki.start_daemon();
    let baseline = daemon.settled_fd_count();
    let port = free_port();
    let args = peer_server_args(pki);
    let _server = gnutls_serv(port, &strs(&args));

    let (control, result) = pool_client(&daemon, port, "other.dev.example");
    let error = result.expect_err("a certificate for another name is rejected");
    assert_error(&error, EACCES, "other.dev.example");

    drop(control);
    wait_fd_count(&daemon, baseline);
}

#[test]
fn unknown_local_identity_is_named() {
    let pki = pki("p256");
    let daemon = pki.start_daemon();
    let baseline = daemon.settled_fd_count();
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let mut stream = connect(&daemon);
    let tcp = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
    let result = starttls(
        &mut stream,
        &request(3, SERVER, "unknown.example", "", 3),
        tcp,
    );
    let error = result.expect_err("no credential");
    assert_eq!(error.error_code(), Some(ErrorCode::ConnectionDriverSetup));
    assert_eq!(
        error.message,
        "TLS Pool has no local identity for unknown.example"
    );

    drop(stream);
    drop(listener);
    wait_fd_count(&daemon, baseline);
}

#[test]
fn regular_file_as_cipher_descriptor_is_rejected() {
    let pki = pki("p256");
    let daemon = pki.start_daemon();
    let baseline = daemon.settled_fd_count();
    let mut stream = connect(&daemon);
    // The client role, the server role with a preset identity, and the server role that
    // reads the ClientHello to pick the identity from its server name.
    let cases = [
        (4, CLIENT, "", DOMAIN),
        (5, SERVER, DOMAIN, ""),
        (6, SERVER, "", ""),
    ];
    for (reqid, flags, localid, remoteid) in cases {
        let file = tempfile::tempfile().expect("temporary file");
        let record = request(reqid, flags, localid, remoteid, reqid as u8);
        let error = starttls(&mut stream, &record, &file).expect_err("a file is not a socket");
        assert_eq!(
            error.error_code(),
            Some(ErrorCode::ConnectionHandlerSetup),
            "request {reqid}: {}",
            error.message
        );
        assert_eq!(
            error.message,
            "TLS Pool cannot use the ciphertext socket: the cipher descriptor is not a stream \
             socket",
            "request {reqid}"
        );
    }

    drop(stream);
    wait_fd_count(&daemon, baseline);
}

#[test]
fn localid_check_answer_with_plaintext_descriptor() {
    let pki = pki("p256");
    let daemon = pki.start_daemon();
    let (listener, port) = listen();
    let mut client = anonymous_cli(pki, port);
    let (tcp, _) = listener.accept().expect("accept");

    let mut stream = connect(&daemon);
    let flags = SERVER | StartTlsFlags::LOCALID_CHECK | StartTlsFlags::IGNORE_REMOTEID;
    let record = request(4, flags, "", "", 4);
    stream
        .send_record(&record, Some(tcp.as_fd()))
        .expect("send STARTTLS");
    drop(tcp);

    let (callback, _) = receive(&mut stream);
    assert_ne!(callback.cbid, 0);
    let Payload::StartTlsLocalId(proposal) = callback.payload else {
        panic!("expected the LOCALID callback, got {callback:?}");
    };
    assert_eq!(
        proposal.localid.as_str(),
        DOMAIN,
        "the proposal is the client's SNI"
    );
    let (mut plaintext, theirs) = UnixStream::pair().expect("socketpair");
    plaintext
        .set_read_timeout(Some(STEP_TIMEOUT))
        .expect("timeout");
    let mut answer = Record::new(callback.reqid, Payload::StartTlsLocalId(proposal));
    answer.cbid = callback.cbid;
    stream
        .send_record(&answer, Some(theirs.as_fd()))
        .expect("answer LOCALID");
    drop(theirs);

    let (reply, _) = receive(&mut stream);
    let Payload::StartTls(reply) = reply.payload else {
        panic!("expected the final reply without PLAINTEXT_CONNECT, got {reply:?}");
    };
    assert_eq!(reply.localid.as_str(), DOMAIN);
    assert_exchange(&mut client, &mut plaintext);
}

#[test]
fn localid_check_refusal_fails_request() {
    let pki = pki("p256");
    let daemon = pki.start_daemon();
    let baseline = daemon.settled_fd_count();
    let (listener, port) = listen();
    let _client = anonymous_cli(pki, port);
    let (tcp, _) = listener.accept().expect("accept");

    let mut stream = connect(&daemon);
    let flags = SERVER | StartTlsFlags::LOCALID_CHECK;
    stream
        .send_record(&request(5, flags, "", "", 5), Some(tcp.as_fd()))
        .expect("send STARTTLS");
    drop(tcp);
    let (callback, _) = receive(&mut stream);
    let mut refusal = Record::error(callback.reqid, 1, "not this identity");
    refusal.cbid = callback.cbid;
    stream.send_record(&refusal, None).expect("refuse");
    let (reply, _) = receive(&mut stream);
    let Payload::Error(error) = reply.payload else {
        panic!("expected ERROR, got {reply:?}");
    };
    assert_eq!(error.error_code(), Some(ErrorCode::ClientRefusesCallback));
    assert!(
        error.message.contains("not this identity"),
        "{}",
        error.message
    );

    drop(stream);
    wait_fd_count(&daemon, baseline);
}

#[test]
fn plaintext_connect_without_descriptor_fails() {
    let pki = pki("p256");
    let daemon = pki.start_daemon();
    let port = free_port();
    let args = peer_server_args(pki);
    let _server = gnutls_serv(port, &strs(&args));
    let mut stream = connect(&daemon);
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .send_record(&request(6, CLIENT, "", PEER, 6), Some(tcp.as_fd()))
        .expect("send STARTTLS");
    drop(tcp);

    let (callback, _) = receive(&mut stream);
    assert!(
        matches!(callback.payload, Payload::PlaintextConnect(_)),
        "{callback:?}"
    );
    let mut answer = callback.clone();
    answer.cbid = callback.cbid;
    stream
        .send_record(&answer, None)
        .expect("answer without descriptor");
    let (reply, _) = receive(&mut stream);
    let Payload::Error(error) = reply.payload else {
        panic!("expected ERROR, got {reply:?}");
    };
    assert_eq!(error.error_code(), Some(ErrorCode::PlainSocketNeeded));
}

#[test]
fn duplicate_control_key_is_rejected() {
    let pki = pki("p256");
    let daemon = pki.start_daemon();
    let port = free_port();
    let mut args = peer_server_args(pki);
    args.push("--echo".into());
    let _server = gnutls_serv(port, &strs(&args));

    let (_first, first) = pool_client(&daemon, port, PEER);
    let (_session, _plaintext) = first.expect("first session");
    let (_second, second) = pool_client(&daemon, port, PEER);
    let error = second.expect_err("the same control key twice");
    assert_eq!(
        error.error_code(),
        Some(ErrorCode::CtlkeyRegistrationFailed)
    );
}

#[test]
fn closing_control_connection_ends_session_unless_forked() {
    let pki = pki("p256");
    let daemon = pki.start_daemon();
    let port = free_port();
    let mut args = peer_server_args(pki);
    args.push("--echo".into());
    let _server = gnutls_serv(port, &strs(&args));

    let (control, result) = pool_client(&daemon, port, PEER);
    let (_, mut attached) = result.expect("attached session");
    drop(control);
    let mut byte = [0u8; 1];
    assert_eq!(
        attached.read(&mut byte).expect("read"),
        0,
        "the relay stops"
    );

    let mut stream = connect(&daemon);
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let forked = request(7, CLIENT | StartTlsFlags::FORK, "", PEER, 7);
    let (reply, mut plaintext) = starttls(&mut stream, &forked, tcp).expect("forked session");
    assert!(
        !reply.flags.contains(StartTlsFlags::FORK),
        "FORK is not echoed"
    );
    drop(stream);
    assert_echo(&mut plaintext, "still relayed", "still relayed");
}

#[test]
fn dead_client_mid_handshake_frees_everything() {
    let pki = pki("p256");
    let daemon = pki.start_daemon();
    let baseline = daemon.settled_fd_count();
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let silent = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
    let (tcp, _) = listener.accept().expect("accept");

    let stream = connect(&daemon);
    let mut record = request(8, SERVER, DOMAIN, "", 8);
    if let Payload::StartTls(params) = &mut record.payload {
        params.timeout = tlspool_proto::TIMEOUT_INFINITE;
    }
    stream
        .send_record(&record, Some(tcp.as_fd()))
        .expect("send STARTTLS");
    drop(tcp);
    thread::sleep(Duration::from_millis(300));
    assert!(
        daemon.open_fd_count() > baseline,
        "the handshake holds the socket"
    );
    drop(stream);
    wait_fd_count(&daemon, baseline);
    drop(silent);
}

#[test]
fn handshake_timeout_is_reported() {
    let pki = pki("p256");
    let daemon = pki.start_daemon();
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let _silent = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
    let (tcp, _) = listener.accept().expect("accept");

    let mut stream = connect(&daemon);
    let mut record = request(9, SERVER, DOMAIN, "", 9);
    if let Payload::StartTls(params) = &mut record.payload {
        params.timeout = 300;
    }
    let error = starttls(&mut stream, &record, tcp).expect_err("nobody sends a ClientHello");
    assert_error(&error, ETIMEDOUT, "300 ms");
}

#[test]
fn peer_role_sctp_and_stream_udp_are_rejected() {
    let pki = pki("p256");
    let daemon = pki.start_daemon();
    let mut stream = connect(&daemon);
    let cases = [
        (
            StartTlsFlags::BOTHROLES_PEER,
            6,
            ErrorCode::CommandNotImpl,
            "peer role",
        ),
        (
            CLIENT,
            132,
            ErrorCode::CommandNotImpl,
            "not supported on this system",
        ),
        (CLIENT, 17, ErrorCode::ConnectionHandlerSetup, "datagram"),
    ];
    for (flags, ipproto, code, fragment) in cases {
        let mut record = request(10, flags, "", PEER, 10);
        if let Payload::StartTls(params) = &mut record.payload {
            params.ipproto = ipproto;
        }
        // A stream socketpair: right for the peer role and SCTP checks, wrong for DTLS.
        let (ours, _theirs) = UnixStream::pair().expect("socketpair");
        let error = starttls(&mut stream, &record, ours).expect_err("rejected");
        assert_eq!(error.error_code(), Some(code), "{}", error.message);
        assert!(error.message.contains(fragment), "{}", error.message);
    }
}

#[test]
fn dead_client_during_callback_frees_everything() {
    let pki = pki("p256");
    let daemon = pki.start_daemon();
    let baseline = daemon.settled_fd_count();
    let (listener, port) = listen();
    let _client = anonymous_cli(pki, port);
    let (tcp, _) = listener.accept().expect("accept");

    let mut stream = connect(&daemon);
    let flags = SERVER | StartTlsFlags::LOCALID_CHECK;
    stream
        .send_record(&request(11, flags, "", "", 11), Some(tcp.as_fd()))
        .expect("send STARTTLS");
    drop(tcp);
    let (callback, _) = receive(&mut stream);
    assert!(
        matches!(callback.payload, Payload::StartTlsLocalId(_)),
        "{callback:?}"
    );

    // The application disconnects instead of responding to the callback.
    drop(stream);
    wait_fd_count(&daemon, baseline);
}
