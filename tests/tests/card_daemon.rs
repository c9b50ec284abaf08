//! PGP local identities on an OpenPGP card through the built daemon: `tlspool-admin localid
//! card` stores an OpenPGP key around the card's authentication key, and the pool serves
//! `gnutls-cli` (raw public keys, TLS 1.3) with a signature made on the card. The tests also
//! cover a wrong `openpgp_card_pin` followed by the PIN entry service, an absent card, an
//! unreachable pcscd and a card whose key no longer matches the identity.
//!
//! Each test runs in a child process with a fresh virtual card (see `run_on_virtual_card`).
//! The daemon and `tlspool-admin` inherit the child's `PCSCLITE_CSOCK_NAME`. Run through
//! `scripts/netns-run.sh`, because the virtual card's reader driver listens on every interface.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use tlspool_client::blocking::{Client, register_pin_entry};
use tlspool_client::{ClientError, PinRequest, StartTlsFlags, StartTlsRequest};
use tlspool_pkcs11::{CardKeyAlgorithm, OpenPgpCard};
use tlspool_tests::bin_path;
use tlspool_tests::daemon::TestDaemon;
use tlspool_tests::tls_peers::{Peer, gnutls_cli};
use tlspool_tests::virtual_card::{
    VIRTUAL_CARD_ADMIN_PIN, VIRTUAL_CARD_IDENT, VIRTUAL_CARD_USER_PIN, run_on_virtual_card,
};

const ALICE: &str = "alice@card.example";
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// A client that accepts only a raw public key from the server, in TLS 1.3.
const CLIENT_PRIORITY: &str =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CTYPE-ALL:+CTYPE-SRV-RAWPK:+CTYPE-CLI-X509";

#[test]
fn card_identity_serves_gnutls_cli() {
    run_on_virtual_card("card_identity_serves_gnutls_cli", || {
        let setup = CardSetup::new();
        let pin_line = format!("openpgp_card_pin {VIRTUAL_CARD_USER_PIN}");
        let daemon = setup.start_daemon(&[&pin_line]);

        let mut cli = serve_gnutls_cli(&daemon).unwrap_or_else(|e| {
            panic!("STARTTLS failed: {e}\n{}", daemon.stderr());
        });
        let output = cli.output();
        assert!(output.contains("Raw Public Key"), "{output}");
        assert!(output.contains("EdDSA-Ed25519"), "{output}");
        assert!(output.contains("TLS1.3"), "{output}");
        cli.close_stdin();
    });
}

#[test]
fn wrong_card_pin_falls_back_to_service() {
    run_on_virtual_card("wrong_card_pin_falls_back_to_service", || {
        let setup = CardSetup::new();
        let daemon = setup.start_daemon(&["openpgp_card_pin 000000"]);
        let requests = spawn_helper(daemon.socket_path(), VIRTUAL_CARD_USER_PIN);

        serve_gnutls_cli(&daemon).unwrap_or_else(|e| {
            panic!("STARTTLS failed: {e}\n{}", daemon.stderr());
        });
        let request = requests
            .recv_timeout(STEP_TIMEOUT)
            .expect("the daemon asked the PIN entry service");
        assert_eq!(request.token_label, VIRTUAL_CARD_IDENT);
        assert_eq!(request.token_serial, VIRTUAL_CARD_IDENT);
        assert_eq!(request.token_model, "OpenPGP card");
        assert_eq!(request.attempt, 1, "one wrong PIN, the configured one");

        drop(daemon);
        let mut card = OpenPgpCard::open(VIRTUAL_CARD_IDENT).expect("the card opens");
        let retries = card.user_pin_retries().expect("retry counter readable");
        assert_eq!(retries, 3, "the right PIN resets the retry counter");
    });
}

#[test]
fn absent_card_fails_starttls_clearly() {
    run_on_virtual_card("absent_card_fails_starttls_clearly", || {
        let setup = CardSetup::new();
        setup.admin(&[
            "localid",
            "set",
            "bob@card.example",
            "pgp,client,server",
            "openpgp-card:FFFF:12345678",
            &setup.key_file.display().to_string(),
        ]);
        let pin_line = format!("openpgp_card_pin {VIRTUAL_CARD_USER_PIN}");
        let daemon = setup.start_daemon(&[&pin_line]);

        let message = daemon_message(serve_gnutls_cli_as(&daemon, "bob@card.example"));
        assert!(message.contains("FFFF:12345678"), "{message}");
        assert!(message.contains("no OpenPGP card"), "{message}");

        // The daemon keeps serving, and the identity on the present card still works.
        serve_gnutls_cli(&daemon).unwrap_or_else(|e| {
            panic!(
                "STARTTLS after the absent card failed: {e}\n{}",
                daemon.stderr()
            );
        });
    });
}

#[test]
fn unreachable_pcscd_fails_starttls_clearly() {
    run_on_virtual_card("unreachable_pcscd_fails_starttls_clearly", || {
        let setup = CardSetup::new();
        let missing = setup.dir.path().join("no-pcscd.comm");
        let pin_line = format!("openpgp_card_pin {VIRTUAL_CARD_USER_PIN}");
        let daemon = TestDaemon::start_with_env(
            &[&setup.dbenv_line(), &pin_line],
            &[("PCSCLITE_CSOCK_NAME", &missing)],
        );

        let message = daemon_message(serve_gnutls_cli(&daemon));
        assert!(message.contains(VIRTUAL_CARD_IDENT), "{message}");
        assert!(message.contains("pcsc"), "{message}");

        let ping = Client::connect(Some(daemon.socket_path()))
            .and_then(|client| client.ping())
            .unwrap_or_else(|e| panic!("PING after the failure: {e}\n{}", daemon.stderr()));
        assert!(!ping.producer.is_empty(), "{ping:?}");
    });
}

#[test]
fn replaced_card_key_is_mismatch() {
    run_on_virtual_card("replaced_card_key_is_mismatch", || {
        let setup = CardSetup::new();
        generate_card_key(CardKeyAlgorithm::EcdsaP256);
        let pin_line = format!("openpgp_card_pin {VIRTUAL_CARD_USER_PIN}");
        let daemon = setup.start_daemon(&[&pin_line]);

        let message = daemon_message(serve_gnutls_cli(&daemon));
        assert!(
            message.contains("differs from the OpenPGP key"),
            "{message}"
        );
        assert!(message.contains(ALICE), "{message}");

        drop(daemon);
        let mut card = OpenPgpCard::open(VIRTUAL_CARD_IDENT).expect("the card opens");
        let retries = card.user_pin_retries().expect("retry counter readable");
        assert_eq!(retries, 3, "no PIN was tried for a mismatched key");
    });
}

/// A database with `alice@card.example` on the virtual card's new Ed25519 key.
struct CardSetup {
    dir: tempfile::TempDir,
    config: PathBuf,
    /// The OpenPGP public key that `localid card` wrote.
    key_file: PathBuf,
}

impl CardSetup {
    fn new() -> Self {
        generate_card_key(CardKeyAlgorithm::Ed25519);
        let dir = tempfile::tempdir().expect("temporary directory");
        let dbenv = dir.path().join("db");
        std::fs::create_dir(&dbenv).expect("create the database directory");
        let config = dir.path().join("admin.conf");
        std::fs::write(&config, format!("dbenv_dir {}\n", dbenv.display()))
            .expect("write the admin configuration");
        let key_file = dir.path().join("alice.pgp");
        let setup = Self {
            dir,
            config,
            key_file,
        };
        let output = setup.admin(&[
            "localid",
            "card",
            ALICE,
            VIRTUAL_CARD_IDENT,
            "-o",
            &setup.key_file.display().to_string(),
        ]);
        assert!(
            output.contains(&format!("openpgp-card:{VIRTUAL_CARD_IDENT}")),
            "{output}"
        );
        setup
    }

    fn dbenv_line(&self) -> String {
        format!("dbenv_dir {}", self.dir.path().join("db").display())
    }

    /// Runs `tlspool-admin` on the setup's databases and returns its standard output.
    fn admin(&self, args: &[&str]) -> String {
        let output = Command::new(bin_path("tlspool-admin"))
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("start tlspool-admin");
        assert!(
            output.status.success(),
            "tlspool-admin {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn start_daemon(&self, lines: &[&str]) -> TestDaemon {
        let dbenv = self.dbenv_line();
        let mut all = vec![dbenv.as_str()];
        all.extend_from_slice(lines);
        TestDaemon::start(&all)
    }
}

/// Generates a new authentication key of `algorithm` on the virtual card.
fn generate_card_key(algorithm: CardKeyAlgorithm) {
    let mut card = OpenPgpCard::open(VIRTUAL_CARD_IDENT).expect("the virtual card opens");
    card.generate_authentication_key(VIRTUAL_CARD_ADMIN_PIN, algorithm)
        .expect("the card generates a key");
}

/// Serves one `gnutls-cli` connection as `alice@card.example`; see [`serve_gnutls_cli_as`].
fn serve_gnutls_cli(daemon: &TestDaemon) -> Result<Peer, ClientError> {
    serve_gnutls_cli_as(daemon, ALICE)
}

/// Runs a server STARTTLS as `local_id` for a `gnutls-cli` that accepts only raw public keys
/// in TLS 1.3, then sends one line each way. Returns the client with its output.
///
/// `--insecure` skips only the trust decision on the raw key: the handshake completes only
/// when the card's signature verifies, because the daemon has no other private key.
fn serve_gnutls_cli_as(daemon: &TestDaemon, local_id: &str) -> Result<Peer, ClientError> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().expect("local address").port();
    let mut cli = gnutls_cli(port, &["--insecure", "--priority", CLIENT_PRIORITY]);
    let (tcp, _) = listener.accept().expect("gnutls-cli connects");

    let control = Client::connect(Some(daemon.socket_path()))?;
    let mut builder = StartTlsRequest::server(local_id);
    // gnutls-cli presents no certificate of its own.
    builder
        .flags(StartTlsFlags::IGNORE_REMOTEID)
        .timeout(STEP_TIMEOUT);
    let request = builder.build()?;
    let connection = control.starttls(tcp, &request)?;
    assert_eq!(connection.local_id, local_id);

    let mut plaintext = connection.plaintext;
    plaintext
        .set_read_timeout(Some(STEP_TIMEOUT))
        .expect("set a read timeout");
    plaintext
        .write_all(b"signed on the card\n")
        .expect("write plaintext");
    assert!(
        cli.wait_for_output("signed on the card"),
        "gnutls-cli output:\n{}",
        cli.output()
    );
    cli.send_line("from gnutls-cli");
    let mut line = [0u8; 16];
    plaintext.read_exact(&mut line).expect("read plaintext");
    assert_eq!(&line, b"from gnutls-cli\n");
    Ok(cli)
}

/// Registers a PIN entry helper that returns `pin` for one request and sends that request on
/// the returned channel.
fn spawn_helper(socket: &Path, pin: &'static str) -> mpsc::Receiver<PinRequest> {
    let mut service = register_pin_entry(Some(socket), STEP_TIMEOUT).expect("register");
    let (seen, requests) = mpsc::channel();
    thread::spawn(move || {
        let Ok(request) = service.next_request() else {
            return;
        };
        let _ = seen.send(request.clone());
        let _ = service.answer(&request, pin);
        // Keep the registration's connection open until the test ends.
        thread::sleep(STEP_TIMEOUT);
    });
    requests
}

fn daemon_message(result: Result<Peer, ClientError>) -> String {
    match result {
        Err(ClientError::Daemon { message, .. }) => message,
        Err(other) => panic!("expected a daemon ERROR, got {other}"),
        Ok(_) => panic!("expected a daemon ERROR, the STARTTLS succeeded"),
    }
}
