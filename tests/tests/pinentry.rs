//! The PIN entry service through the built `tlspool` daemon: a daemon without a usable
//! `pkcs11_pin` logs in to a copy of the SoftHSM2 token of `tlspool-admin dev-init` with the
//! PIN that a registered helper supplies, during a client STARTTLS to `gnutls-serv --echo`.
//!
//! Run the tests through `scripts/netns-run.sh`, because `gnutls-serv` listens on every
//! interface.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tlspool_client::{ClientError, ErrorCode, PinRequest, StartTlsRequest, blocking};
use tlspool_tests::daemon::TestDaemon;
use tlspool_tests::dev_pki::{DOMAIN, PEER, dev_setup as setup};
use tlspool_tests::tls_peers::{self, Peer, free_port};

/// Window each test helper registers with; generous for a loaded machine.
const WINDOW: Duration = Duration::from_secs(60);

/// Label of the token dev-init creates.
const TOKEN_LABEL: &str = "tlspool-dev";

/// Returns the user PIN that dev-init stored as `pkcs11_pin`.
fn token_pin() -> String {
    let config = std::fs::read_to_string(setup().dir().join("tlspool.conf")).expect("dev config");
    config
        .lines()
        .find_map(|line| line.strip_prefix("pkcs11_pin "))
        .expect("dev config has pkcs11_pin")
        .trim()
        .to_owned()
}

/// A daemon on a private copy of the dev-init token. SoftHSM 2.6.1 rewrites `token.object` on
/// every wrong user PIN (it sets `CKF_USER_PIN_COUNT_LOW`) and on the next right one, and a
/// daemon that reads the file meanwhile fails `C_GetTokenInfo` with `CKR_GENERAL_ERROR`. The
/// tests of this file enter wrong PINs while others run, so none of them shares a token.
struct PinDaemon {
    daemon: TestDaemon,
    /// The token copy and its `softhsm2.conf`, removed after the daemon was killed.
    _token_copy: TempDir,
}

impl std::ops::Deref for PinDaemon {
    type Target = TestDaemon;

    fn deref(&self) -> &TestDaemon {
        &self.daemon
    }
}

/// Starts a daemon on a copy of the dev-init token and on the dev-init databases, with
/// `pin_line` in place of the configured `pkcs11_pin` (none when `None`).
fn start_daemon(pin_line: Option<&str>) -> PinDaemon {
    let setup = setup();
    let config = std::fs::read_to_string(setup.dir().join("tlspool.conf")).expect("dev config");
    let mut lines: Vec<&str> = config
        .lines()
        .filter(|line| line.starts_with("pkcs11_") || line.starts_with("dbenv_dir"))
        .filter(|line| !line.starts_with("pkcs11_pin"))
        .collect();
    lines.extend(pin_line);

    let token_copy = tempfile::tempdir().expect("temporary directory");
    let tokens = token_copy.path().join("tokens");
    copy_tree(&setup.dir().join("tokens"), &tokens);
    let softhsm = token_copy.path().join("softhsm2.conf");
    let softhsm_config = format!(
        "directories.tokendir = {}\nobjectstore.backend = file\n",
        tokens.display()
    );
    std::fs::write(&softhsm, softhsm_config).expect("write softhsm2.conf");

    let daemon = TestDaemon::start_with_env(&lines, &[("SOFTHSM2_CONF", softhsm.as_path())]);
    PinDaemon {
        daemon,
        _token_copy: token_copy,
    }
}

/// Copies the directory `from` with its files and subdirectories to the new directory `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir(to).expect("create token directory copy");
    for entry in std::fs::read_dir(from).expect("read token directory") {
        let entry = entry.expect("token directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy token file");
        }
    }
}

fn gnutls_echo_server(port: u16) -> Peer {
    let setup = setup();
    tls_peers::gnutls_serv(
        port,
        &[
            "--echo",
            "--x509certfile",
            &setup.file("peer-cert.pem"),
            "--x509keyfile",
            &setup.file("peer-key.pem"),
            "--x509cafile",
            &setup.file("ca.pem"),
        ],
    )
}

/// Runs a client STARTTLS to a fresh `gnutls-serv --echo` and checks one echo on success.
/// Returns the daemon's error on failure.
fn starttls_echo(socket: &Path) -> Result<(), ClientError> {
    let port = free_port();
    let _server = gnutls_echo_server(port);
    let client = blocking::Client::connect(Some(socket))?;
    let request = StartTlsRequest::client(PEER).build()?;
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect to gnutls-serv");
    let mut connection = client.starttls(tcp, &request)?;
    assert_eq!(connection.local_id, DOMAIN);
    connection.plaintext.write_all(b"pin hello\n").unwrap();
    let mut echo = [0u8; 10];
    connection.plaintext.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"pin hello\n");
    Ok(())
}

/// Registers a helper on `socket` that answers the requests with `answers` in turn, then
/// closes its connection. Sends every request it saw on the returned channel.
fn spawn_helper(socket: &Path, answers: Vec<String>) -> mpsc::Receiver<PinRequest> {
    let mut service = blocking::register_pin_entry(Some(socket), WINDOW).expect("register");
    let (seen, requests) = mpsc::channel();
    thread::spawn(move || {
        for answer in answers {
            let Ok(request) = service.next_request() else {
                return;
            };
            let _ = seen.send(request.clone());
            if service.answer(&request, &answer).is_err() {
                return;
            }
        }
    });
    requests
}

fn daemon_message(result: Result<(), ClientError>) -> String {
    match result {
        Err(ClientError::Daemon { message, .. }) => message,
        other => panic!("expected a daemon ERROR, got {other:?}"),
    }
}

#[test]
fn service_pin_completes_starttls() {
    let daemon = start_daemon(None);
    let requests = spawn_helper(daemon.socket_path(), vec![token_pin()]);

    starttls_echo(daemon.socket_path()).expect("STARTTLS with the service's PIN");

    let request = requests.recv_timeout(WINDOW).expect("one PIN request");
    assert_eq!(request.token_label, TOKEN_LABEL);
    assert_eq!(request.token_manufacturer, "SoftHSM project");
    assert_eq!(request.token_model, "SoftHSM v2");
    assert!(!request.token_serial.is_empty());
    assert_eq!(request.attempt, 0);
    assert_eq!(request.prompt, "Enter PIN: ");
}

#[test]
fn wrong_pin_is_counted_before_right_one() {
    let daemon = start_daemon(None);
    let requests = spawn_helper(
        daemon.socket_path(),
        vec!["99999999".to_owned(), token_pin()],
    );

    starttls_echo(daemon.socket_path()).expect("STARTTLS after one wrong PIN");

    let first = requests.recv_timeout(WINDOW).expect("first request");
    let second = requests.recv_timeout(WINDOW).expect("second request");
    assert_eq!(first.attempt, 0);
    assert_eq!(second.attempt, 1, "the wrong PIN is counted");
}

#[test]
fn wrong_pins_only_fail_starttls_with_count() {
    let daemon = start_daemon(None);
    let wrong = ["11111111", "22222222", "33333333"].map(str::to_owned);
    let requests = spawn_helper(daemon.socket_path(), wrong.to_vec());

    let message = daemon_message(starttls_echo(daemon.socket_path()));
    assert!(message.contains("rejected the user PIN"), "{message}");
    assert!(message.contains("3 wrong PINs"), "{message}");
    let attempts: Vec<u32> = requests.try_iter().map(|request| request.attempt).collect();
    assert_eq!(attempts, [0, 1, 2]);
}

#[test]
fn wrong_configured_pin_falls_back_to_service() {
    let daemon = start_daemon(Some("pkcs11_pin 77777777"));
    let requests = spawn_helper(daemon.socket_path(), vec![token_pin()]);

    starttls_echo(daemon.socket_path()).expect("STARTTLS with the service's PIN");

    let request = requests.recv_timeout(WINDOW).expect("one PIN request");
    assert_eq!(request.attempt, 1, "the rejected pkcs11_pin is counted");
}

#[test]
fn missing_service_fails_starttls_clearly() {
    let daemon = start_daemon(None);
    let message = daemon_message(starttls_echo(daemon.socket_path()));
    assert!(
        message.contains("no PIN entry service is registered"),
        "{message}"
    );
}

#[test]
fn second_registration_is_not_vacant() {
    let daemon = start_daemon(None);
    let _first = blocking::register_pin_entry(Some(daemon.socket_path()), WINDOW).unwrap();

    let second = blocking::register_pin_entry(Some(daemon.socket_path()), WINDOW);

    let Err(ClientError::Daemon { known, .. }) = second else {
        panic!("second registration was not refused: {second:?}");
    };
    assert_eq!(known, Some(ErrorCode::PinEntryNotVacant));
}

#[test]
fn vanished_helper_fails_request_and_frees_window() {
    let daemon = start_daemon(None);
    let mut service = blocking::register_pin_entry(Some(daemon.socket_path()), WINDOW).unwrap();
    let vanished = thread::spawn(move || {
        let request = service.next_request().expect("a PIN request");
        drop(service);
        request
    });

    let message = daemon_message(starttls_echo(daemon.socket_path()));
    assert!(message.contains("disconnected"), "{message}");
    assert_eq!(vanished.join().unwrap().token_label, TOKEN_LABEL);

    let _requests = spawn_helper(daemon.socket_path(), vec![token_pin()]);
    starttls_echo(daemon.socket_path()).expect("STARTTLS with a new helper");
}

#[test]
fn tlspoolctl_pin_entry_reads_pin_without_echo() {
    let daemon = start_daemon(None);
    let pin = token_pin();
    let command_line = format!(
        "{} --socket {} pin-entry --once --window 60",
        tlspool_tests::bin_path("tlspoolctl").display(),
        daemon.socket_path().display()
    );
    // `script` gives tlspoolctl a pseudo-terminal as standard input and output.
    let mut helper = Command::new("script")
        .args([
            "--quiet",
            "--return",
            "--command",
            &command_line,
            "/dev/null",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start script");
    let output = Arc::new(Mutex::new(Vec::new()));
    let stdout = helper.stdout.take().expect("piped stdout");
    let collector = {
        let output = Arc::clone(&output);
        thread::spawn(move || collect_bytes(stdout, &output))
    };
    let shown = || String::from_utf8_lossy(&output.lock().unwrap()).into_owned();
    let deadline = Instant::now() + WINDOW;
    while !daemon.stderr().contains("PIN entry service registered") {
        assert!(Instant::now() < deadline, "{}", shown());
        thread::sleep(Duration::from_millis(50));
    }

    let socket = daemon.socket_path().to_owned();
    let starttls = thread::spawn(move || starttls_echo(&socket));
    while !shown().contains("Enter PIN: ") {
        assert!(Instant::now() < deadline, "no prompt: {}", shown());
        thread::sleep(Duration::from_millis(50));
    }
    assert!(shown().contains("token-label: tlspool-dev"), "{}", shown());
    assert!(shown().contains("attempt: 0 "), "{}", shown());
    let mut stdin = helper.stdin.take().expect("piped stdin");
    stdin.write_all(format!("{pin}\n").as_bytes()).unwrap();

    starttls
        .join()
        .unwrap()
        .expect("STARTTLS with the terminal's PIN");
    let status = helper.wait().expect("wait for script");
    assert!(status.success(), "{status}: {}", shown());
    collector.join().unwrap();
    assert!(!shown().contains(&pin), "PIN echoed: {}", shown());
}

/// Appends everything `source` produces to `output`, also output without a line ending.
fn collect_bytes(mut source: impl std::io::Read, output: &Mutex<Vec<u8>>) {
    let mut buffer = [0u8; 1024];
    while let Ok(len @ 1..) = source.read(&mut buffer) {
        output.lock().unwrap().extend_from_slice(&buffer[..len]);
    }
}
