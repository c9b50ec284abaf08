//! OpenPGP identities over RFC 7250 raw public keys through the built daemon. The pool with an
//! OpenPGP identity on a SoftHSM token runs against `gnutls-serv` and `gnutls-cli` with raw
//! keys, and against itself with OpenPGP on both sides. The pool-to-pool cases cover RSA,
//! P-256 and Ed25519 token keys, version 4 and 6 OpenPGP keys, and TLS 1.2 and 1.3. The tests also check the certificate type
//! in INFO and in `tlspoolctl connect`, the rejection of a revoked and of a wrong-address key,
//! the certificate type order, and that a peer that offers only X.509 gets X.509.
//!
//! `tlspool-admin dev-init --openpgp` makes the identities `alice@dev.example` and
//! `bob@dev.example`, whose authentication keys are on the token, and the external peer
//! `peer@dev.example`, whose key is in a file. The trust database lists all three as `pgp`
//! keys.
//!
//! Run through `scripts/netns-run.sh`, because `gnutls-serv` listens on every interface.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::Duration;

use tlspool_client::blocking::Client;
use tlspool_client::{InfoKind, StartTlsRequest};
use tlspool_tests::bin_path;
use tlspool_tests::daemon::TestDaemon;
use tlspool_tests::tls_peers::{free_port, gnutls_cli, gnutls_serv};

const ALICE: &str = "alice@dev.example";
const BOB: &str = "bob@dev.example";
const PEER: &str = "peer@dev.example";
const DOMAIN: &str = "dev.example";
const PIN: &str = "43214321";
const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
const TLS12: &str = "NORMAL:-VERS-ALL:+VERS-TLS1.2";
const TLS13: &str = "NORMAL:-VERS-ALL:+VERS-TLS1.3";
/// Priority elements that add raw public keys after X.509, as `gnutls-serv` needs them.
const RAWPK: &str = ":+CTYPE-CLI-RAWPK:+CTYPE-SRV-RAWPK";
/// Priority elements for a client that prefers raw public keys. GnuTLS 3.7 servers follow the
/// client's order.
const RAW_FIRST: &str =
    ":-CTYPE-ALL:+CTYPE-CLI-RAWPK:+CTYPE-SRV-RAWPK:+CTYPE-CLI-X509:+CTYPE-SRV-X509";
/// Priority elements for a client that prefers X.509.
const X509_FIRST: &str =
    ":-CTYPE-ALL:+CTYPE-CLI-X509:+CTYPE-SRV-X509:+CTYPE-CLI-RAWPK:+CTYPE-SRV-RAWPK";

/// A dev-init setup with OpenPGP identities.
struct Pki {
    _temp: tempfile::TempDir,
    dir: PathBuf,
    /// The dev-init summary.
    summary: String,
}

/// Returns the setup of `key_type` and OpenPGP key `version`, made on first use.
fn pki(key_type: &'static str, version: &'static str) -> &'static Pki {
    static SETUPS: Mutex<Vec<(&str, &str, &'static Pki)>> = Mutex::new(Vec::new());
    let mut setups = SETUPS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, _, pki)) = setups
        .iter()
        .find(|(kind, v, _)| *kind == key_type && *v == version)
    {
        return pki;
    }
    let pki: &'static Pki = Box::leak(Box::new(Pki::create(key_type, version)));
    setups.push((key_type, version, pki));
    pki
}

impl Pki {
    fn create(key_type: &str, version: &str) -> Self {
        let temp = tempfile::tempdir().expect("temporary directory");
        let dir = temp.path().join("pki");
        let output = Command::new(bin_path("tlspool-admin"))
            .args(["dev-init", dir.to_str().expect("UTF-8 path")])
            .args(["--domain", DOMAIN, "--pin", PIN, "--key-type", key_type])
            .args(["--openpgp", ALICE, "--openpgp", BOB])
            .args(["--openpgp-version", version])
            .output()
            .expect("run tlspool-admin dev-init");
        assert!(
            output.status.success(),
            "dev-init failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let summary = String::from_utf8_lossy(&output.stdout).into_owned();
        Self {
            _temp: temp,
            dir,
            summary,
        }
    }

    /// Returns the word after `marker` on the summary line that starts with `address`.
    fn summary_word(&self, address: &str, marker: &str) -> String {
        self.summary
            .lines()
            .skip_while(|line| !line.trim_start().starts_with(address))
            .take(2)
            .find_map(|line| line.split_once(marker))
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .map(|word| word.trim_end_matches(';').to_owned())
            .unwrap_or_else(|| panic!("no {marker:?} for {address} in:\n{}", self.summary))
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().expect("UTF-8 path").to_owned()
    }

    /// Starts a daemon on the token with the extra configuration `lines`.
    fn start_daemon(&self, lines: &[&str]) -> TestDaemon {
        let mut config = vec![
            format!("pkcs11_path {SOFTHSM_MODULE}"),
            format!("pkcs11_pin {PIN}"),
            format!("dbenv_dir {}", self.path("db")),
        ];
        config.extend(lines.iter().map(|line| (*line).to_owned()));
        let config: Vec<&str> = config.iter().map(String::as_str).collect();
        let conf = self.dir.join("softhsm2.conf");
        // SoftHSM 2.6 failed C_GetTokenInfo with CKR_GENERAL_ERROR now and then when several
        // daemons started on the same token directory at once, so they start one at a time.
        static STARTING: Mutex<()> = Mutex::new(());
        let _starting = STARTING.lock().unwrap_or_else(PoisonError::into_inner);
        TestDaemon::start_with_env(&config, &[("SOFTHSM2_CONF", conf.as_path())])
    }

    /// Runs `tlspool-admin ARGS` on this setup's databases.
    fn admin(&self, args: &[&str]) {
        let config = self.dir.join("tlspool.conf");
        let output = Command::new(bin_path("tlspool-admin"))
            .arg("-c")
            .arg(&config)
            .args(args)
            .env("SOFTHSM2_CONF", self.dir.join("softhsm2.conf"))
            .output()
            .expect("run tlspool-admin");
        assert!(
            output.status.success(),
            "tlspool-admin {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Arguments of `gnutls-serv` or `gnutls-cli` that present the external peer's raw key.
    fn peer_raw_key_args(&self) -> Vec<String> {
        vec![
            "--rawpkkeyfile".into(),
            self.path("peer-openpgp-key.pem"),
            "--rawpkfile".into(),
            self.path("peer-openpgp-spki.pem"),
        ]
    }
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn client(daemon: &TestDaemon) -> Client {
    Client::connect(Some(daemon.socket_path())).expect("connect to the daemon")
}

fn info(client: &Client, ctlkey: &tlspool_client::CtlKey, kind: InfoKind) -> String {
    let value = client.info(ctlkey, kind, None).expect("INFO succeeds");
    String::from_utf8(value).expect("UTF-8 INFO value")
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

/// Listens on an ephemeral port of 127.0.0.1 for a TLS client of the pool.
fn listen() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("address").port();
    (listener, port)
}

/// Sends `line` (with its newline) through the pool to an echoing peer and checks the echo.
fn assert_echo(plaintext: &mut UnixStream, line: &str) {
    plaintext
        .set_read_timeout(Some(STEP_TIMEOUT))
        .expect("timeout");
    plaintext
        .write_all(line.as_bytes())
        .expect("write plaintext");
    assert_eq!(read_line(plaintext), line);
}

fn pool_client_request(local_id: &str, remote_id: &str) -> StartTlsRequest {
    let mut builder = StartTlsRequest::client(remote_id);
    builder.local_id(local_id).timeout(STEP_TIMEOUT);
    builder.build().expect("client request")
}

fn pool_server_request(local_id: &str) -> StartTlsRequest {
    let mut builder = StartTlsRequest::server(local_id);
    builder.timeout(STEP_TIMEOUT);
    builder.build().expect("server request")
}

/// Starts `gnutls-serv --echo` with the external peer's raw key and the `priority`.
fn raw_key_server(pki: &Pki, port: u16, priority: &str) -> tlspool_tests::tls_peers::Peer {
    let mut args = pki.peer_raw_key_args();
    args.extend([
        "--echo".into(),
        "--priority".into(),
        format!("{priority}{RAWPK}"),
    ]);
    gnutls_serv(port, &strs(&args))
}

#[test]
fn pool_client_to_gnutls_serv_raw_key() {
    let pki = pki("p256", "4");
    let daemon = pki.start_daemon(&[]);
    for priority in [TLS12, TLS13] {
        let port = free_port();
        let server = raw_key_server(pki, port, priority);
        let control = client(&daemon);
        let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect to gnutls-serv");

        let connection = control
            .starttls(tcp, &pool_client_request(ALICE, PEER))
            .unwrap_or_else(|e| panic!("{priority}: {e}\n{}", daemon.stderr()));

        assert_eq!(connection.local_id, ALICE);
        assert_eq!(connection.remote_id, PEER);
        let key = &connection.ctlkey;
        assert_eq!(
            info(&control, key, InfoKind::PEER_CERTIFICATE_TYPE),
            "RAWPK"
        );
        assert_eq!(info(&control, key, InfoKind::MY_CERTIFICATE_TYPE), "RAWPK");
        let mut plaintext = connection.plaintext;
        assert_echo(&mut plaintext, "raw key echo\n");
        assert!(
            server.wait_for_output("Raw Public Key"),
            "gnutls-serv output:\n{}",
            server.output()
        );
    }
}

#[test]
fn gnutls_cli_to_pool_server_raw_key() {
    let pki = pki("p256", "4");
    let daemon = pki.start_daemon(&[]);
    for priority in [TLS12, TLS13] {
        let (listener, port) = listen();
        let mut args = pki.peer_raw_key_args();
        args.extend([
            "--no-ca-verification".into(),
            "--priority".into(),
            format!("{priority}{RAW_FIRST}"),
        ]);
        let mut cli = gnutls_cli(port, &strs(&args));
        let (tcp, _) = listener.accept().expect("accept gnutls-cli");
        let control = client(&daemon);

        let connection = control
            .starttls(tcp, &pool_server_request(BOB))
            .unwrap_or_else(|e| panic!("{priority}: {e}\n{}", daemon.stderr()));

        assert_eq!(connection.local_id, BOB);
        assert_eq!(connection.remote_id, PEER, "the client's OpenPGP user ID");
        let key = &connection.ctlkey;
        assert_eq!(
            info(&control, key, InfoKind::PEER_CERTIFICATE_TYPE),
            "RAWPK"
        );
        let mut plaintext = connection.plaintext;
        plaintext
            .set_read_timeout(Some(STEP_TIMEOUT))
            .expect("timeout");
        cli.send_line("from gnutls-cli");
        assert_eq!(read_line(&mut plaintext), "from gnutls-cli\n");
        plaintext.write_all(b"from bob\n").expect("write plaintext");
        assert!(
            cli.wait_for_output("from bob"),
            "gnutls-cli output:\n{}",
            cli.output()
        );
        assert!(
            cli.output().contains("Raw Public Key"),
            "gnutls-cli output:\n{}",
            cli.output()
        );
    }
}

/// Runs a pool server for `server_id` and a pool client from `client_id` to `remote_id`
/// through the same daemon, and returns the client's result with its INFO values, or the
/// error text.
fn pool_to_pool(
    daemon: &TestDaemon,
    client_id: &str,
    remote_id: &str,
    server_id: &str,
) -> Result<(String, String, String), String> {
    let (listener, port) = listen();
    let socket = daemon.socket_path().to_path_buf();
    let server_id = server_id.to_owned();
    let server = thread::spawn(move || {
        let (tcp, _) = listener.accept().expect("accept the pool client");
        let control = Client::connect(Some(&socket)).expect("connect to the daemon");
        // The server's handshake may succeed while the client rejects the server, so a
        // failure after it is an outcome here, not a test failure.
        let connection = control
            .starttls(tcp, &pool_server_request(&server_id))
            .ok()?;
        let kind = control
            .info(&connection.ctlkey, InfoKind::PEER_CERTIFICATE_TYPE, None)
            .ok()?;
        let mut plaintext = connection.plaintext;
        plaintext.set_read_timeout(Some(STEP_TIMEOUT)).ok()?;
        let mut line = [0u8; 13];
        plaintext.read_exact(&mut line).ok()?;
        plaintext.write_all(&line).ok()?;
        // Keep the session until the client has read the echo.
        let mut rest = Vec::new();
        let _ = plaintext.read_to_end(&mut rest);
        Some((
            connection.remote_id,
            String::from_utf8_lossy(&kind).into_owned(),
        ))
    });

    let control = client(daemon);
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect to the pool server");
    let result = control.starttls(tcp, &pool_client_request(client_id, remote_id));
    let outcome = match result {
        Ok(connection) => {
            let key = &connection.ctlkey;
            let peer_type = info(&control, key, InfoKind::PEER_CERTIFICATE_TYPE);
            let version = info(&control, key, InfoKind::PROTOCOL_VERSION);
            let mut plaintext = connection.plaintext;
            assert_echo(&mut plaintext, "pool to pool\n");
            drop(plaintext);
            Ok((connection.remote_id, peer_type, version))
        }
        Err(error) => Err(error.to_string()),
    };
    let served = server.join().expect("server thread");
    if outcome.is_ok() {
        let (client_seen, kind) = served.expect("the server session succeeds");
        assert_eq!(
            client_seen, client_id,
            "the server authenticated the client"
        );
        assert_eq!(kind, "RAWPK", "the server saw the client's raw key");
    }
    outcome
}

#[test]
fn pool_to_pool_openpgp_key_types_and_versions() {
    let cases = [
        ("p256", "4"),
        ("rsa2048", "4"),
        ("ed25519", "4"),
        ("p256", "6"),
        ("ed25519", "6"),
    ];
    for (key_type, version) in cases {
        let pki = pki(key_type, version);
        for (priority, expected) in [(TLS13, "TLS1.3"), (TLS12, "TLS1.2")] {
            // GnuTLS 3.7 sends no Ed25519 client key under TLS 1.2.
            if key_type == "ed25519" && priority == TLS12 {
                continue;
            }
            let case = format!("{key_type} v{version} {expected}");
            let mut daemon = pki.start_daemon(&[&format!("tls_priority {priority}")]);
            let (remote_id, peer_type, negotiated) = pool_to_pool(&daemon, ALICE, BOB, BOB)
                .unwrap_or_else(|e| panic!("{case}: {e}\n{}", daemon.stderr()));
            assert_eq!(remote_id, BOB, "{case}");
            assert_eq!(peer_type, "RAWPK", "{case}");
            assert_eq!(negotiated, expected, "{case}");
            daemon.stop();
        }
    }
}

#[test]
fn wrong_address_is_rejected() {
    let pki = pki("p256", "4");
    let daemon = pki.start_daemon(&[]);
    let error = pool_to_pool(&daemon, ALICE, "carol@dev.example", BOB)
        .expect_err("bob's key carries no user ID carol@dev.example");
    assert!(
        error.contains("has no user ID <carol@dev.example>"),
        "{error}"
    );
}

#[test]
fn revoked_and_expired_keys_are_rejected() {
    let pki = pki("ed25519", "4");
    let daemon = pki.start_daemon(&[]);
    let key = pki.summary_word(PEER, "trust pgp ");
    let set_trusted = |file: &str| {
        pki.admin(&[
            "trust",
            "set",
            "pgp,client,server",
            &key,
            "1",
            &pki.path(file),
        ]);
    };
    for (file, reason) in [
        ("peer-openpgp-revoked.pgp", "the OpenPGP key is revoked"),
        ("peer-openpgp-expired.pgp", "the OpenPGP key expired"),
    ] {
        let port = free_port();
        let server = raw_key_server(pki, port, TLS13);
        set_trusted(file);

        let control = client(&daemon);
        let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect to gnutls-serv");
        let error = control
            .starttls(tcp, &pool_client_request(ALICE, PEER))
            .expect_err("the peer's OpenPGP key is not valid");
        assert!(error.to_string().contains(reason), "{file}: {error}");
        drop(server);
    }
    set_trusted("peer-openpgp.pgp");
}

/// Gives `dev.example`, which has an X.509 server credential, alice's OpenPGP key as well,
/// so that its identity offers both certificate types.
fn add_openpgp_to_domain(pki: &Pki) {
    static ADDED: OnceLock<()> = OnceLock::new();
    ADDED.get_or_init(|| {
        let uri = pki.summary_word(ALICE, "authentication key ");
        pki.admin(&[
            "localid",
            "set",
            DOMAIN,
            "pgp,client,server",
            &uri,
            &pki.path(&format!("{ALICE}.pgp")),
        ]);
    });
}

/// Runs `gnutls-cli` with `args` against the pool serving `dev.example` and returns the
/// certificate type the pool sent and the client's output.
fn domain_server_type(daemon: &TestDaemon, args: &[&str]) -> (String, String) {
    let (listener, port) = listen();
    let cli = gnutls_cli(port, args);
    let (tcp, _) = listener.accept().expect("accept gnutls-cli");
    let control = client(daemon);
    let mut builder = StartTlsRequest::server(DOMAIN);
    builder
        .timeout(STEP_TIMEOUT)
        .flags(tlspool_client::StartTlsFlags::IGNORE_REMOTEID);
    let request = builder.build().expect("server request");
    let connection = control
        .starttls(tcp, &request)
        .unwrap_or_else(|e| panic!("{e}\n{}", daemon.stderr()));
    let sent = info(&control, &connection.ctlkey, InfoKind::MY_CERTIFICATE_TYPE);
    let mut plaintext = connection.plaintext;
    plaintext.write_all(b"typed\n").expect("write plaintext");
    assert!(
        cli.wait_for_output("typed"),
        "gnutls-cli output:\n{}",
        cli.output()
    );
    (sent, cli.output())
}

#[test]
fn x509_only_peer_gets_x509() {
    let pki = pki("p256", "4");
    add_openpgp_to_domain(pki);
    let daemon = pki.start_daemon(&[]);
    let ca = pki.path("ca.pem");
    for priority in [TLS12, TLS13] {
        let (sent, output) = domain_server_type(
            &daemon,
            &[
                "--x509cafile",
                &ca,
                "--verify-hostname",
                DOMAIN,
                "--priority",
                priority,
            ],
        );
        assert_eq!(sent, "X.509", "{priority}");
        assert!(output.contains("Certificate type: X.509"), "{output}");
    }
}

#[test]
fn dual_identity_follows_client_order() {
    let pki = pki("p256", "4");
    add_openpgp_to_domain(pki);
    let daemon = pki.start_daemon(&[]);
    let ca = pki.path("ca.pem");
    for (order, expected, printed) in [
        (RAW_FIRST, "RAWPK", "Raw Public Key"),
        (X509_FIRST, "X.509", "Certificate type: X.509"),
    ] {
        let priority = format!("{TLS13}{order}");
        let args = [
            "--x509cafile",
            &ca,
            "--no-ca-verification",
            "--priority",
            &priority,
        ];
        let (sent, output) = domain_server_type(&daemon, &args);
        assert_eq!(sent, expected, "{order}");
        assert!(output.contains(printed), "{order}: {output}");
    }
}

#[test]
fn pool_client_prefers_openpgp_unless_configured() {
    let pki = pki("p256", "4");
    for (lines, expected) in [(&[][..], "RAWPK"), (&["tls_prefer_x509 yes"][..], "X.509")] {
        let daemon = pki.start_daemon(lines);
        let port = free_port();
        let mut args = pki.peer_raw_key_args();
        args.extend([
            "--x509certfile".into(),
            pki.path("peer-cert.pem"),
            "--x509keyfile".into(),
            pki.path("peer-key.pem"),
            "--echo".into(),
            "--priority".into(),
            format!("{TLS13}{RAWPK}"),
        ]);
        let _server = gnutls_serv(port, &strs(&args));
        let control = client(&daemon);
        let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect to gnutls-serv");
        // The remote identity is not validated, so either type of the server's credential
        // is accepted and only the negotiation decides.
        let mut builder = StartTlsRequest::client(PEER);
        builder
            .timeout(STEP_TIMEOUT)
            .flags(tlspool_client::StartTlsFlags::IGNORE_REMOTEID);
        let request = builder.build().expect("client request");
        let connection = control
            .starttls(tcp, &request)
            .unwrap_or_else(|e| panic!("{lines:?}: {e}\n{}", daemon.stderr()));
        let received = info(
            &control,
            &connection.ctlkey,
            InfoKind::PEER_CERTIFICATE_TYPE,
        );
        assert_eq!(received, expected, "{lines:?}");
    }
}

#[test]
fn tlspoolctl_connect_prints_certificate_type() {
    let pki = pki("p256", "4");
    let daemon = pki.start_daemon(&[]);
    let port = free_port();
    let _server = raw_key_server(pki, port, TLS13);
    let output = Command::new(bin_path("tlspoolctl"))
        .arg("--socket")
        .arg(daemon.socket_path())
        .args(["connect", "127.0.0.1", &port.to_string()])
        .args(["--remote-id", PEER, "--local-id", ALICE])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run tlspoolctl connect");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("peer-certificate-type: RAWPK"), "{stderr}");
    assert!(stderr.contains("local-certificate-type: RAWPK"), "{stderr}");
    assert!(stderr.contains("protocol-version: TLS1.3"), "{stderr}");
}
