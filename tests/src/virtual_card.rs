//! A virtual OpenPGP card for tests, started through `scripts/virtual-card.sh`, and the helper
//! that runs a test in a child process connected to its own card.
//!
//! libpcsclite reads the pcscd socket path (`PCSCLITE_CSOCK_NAME`) once per process, and each
//! card runs its own pcscd. So a test that talks to a card through PC/SC runs in a child
//! process of the test binary. [`run_on_virtual_card`] starts a fresh card, runs the same test
//! again with that socket in the environment, and fails when the child fails.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::bin_path;

/// Ident of the virtual card: opcard's default manufacturer and serial number, both zero.
pub const VIRTUAL_CARD_IDENT: &str = "0000:00000000";
/// Factory user PIN (PW1) of the virtual card.
pub const VIRTUAL_CARD_USER_PIN: &str = "123456";
/// Factory admin PIN (PW3) of the virtual card.
pub const VIRTUAL_CARD_ADMIN_PIN: &str = "12345678";

/// Environment variable that marks a child process started by [`run_on_virtual_card`].
const CHILD_MARKER: &str = "TLSPOOL_TESTS_ON_VIRTUAL_CARD";
/// How long the script may take to report the card in the reader; it usually takes 0.6 s.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the script may take to stop pcscd and the card; it usually takes well under a second.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// pcscd with one virtual OpenPGP card, stopped when dropped.
pub struct VirtualCard {
    child: Child,
    stdin: Option<ChildStdin>,
    socket: PathBuf,
    _dir: TempDir,
}

impl VirtualCard {
    /// Starts pcscd and the card in private namespaces and waits until the card is in the
    /// reader.
    ///
    /// # Panics
    /// When the script cannot start, exits early or reports no card within a minute.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("creating the card directory failed");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/virtual-card.sh");
        let mut child = Command::new("bash")
            .arg(&script)
            .arg(dir.path())
            .env("TLSPOOL_VIRTUAL_CARD", bin_path("tlspool-virtual-card"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} failed: {e}", script.display()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");

        let (sender, receiver) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let mut reader = BufReader::new(stdout);
            let _ = reader.read_line(&mut line);
            let _ = sender.send(line);
            // Keep draining so the script never blocks on a full pipe.
            let _ = reader.read_to_end(&mut Vec::new());
        });
        let line = receiver
            .recv_timeout(START_TIMEOUT)
            .expect("virtual-card.sh reported no card within a minute");
        let socket = line
            .trim()
            .strip_prefix("PCSCLITE_CSOCK_NAME=")
            .unwrap_or_else(|| panic!("virtual-card.sh failed to start the card: {line:?}"))
            .into();

        Self {
            child,
            stdin,
            socket,
            _dir: dir,
        }
    }

    /// Returns the path of this card's pcscd socket, the value for `PCSCLITE_CSOCK_NAME`.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for VirtualCard {
    fn drop(&mut self) {
        // At end of input the script stops pcscd, and the card exits with it.
        drop(self.stdin.take());
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        // Killing the script skips its cleanup, so pcscd then ends by its 60 s auto-exit.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `body` against a fresh virtual card in a child process of this test binary.
///
/// Called in the parent, it starts a card, runs the test `test_name` again in a child with
/// `PCSCLITE_CSOCK_NAME` naming the card's socket, and panics with the child's output when
/// the child fails. Called in that child, it runs `body`.
///
/// # Panics
/// When the card cannot start or the child test fails.
pub fn run_on_virtual_card(test_name: &str, body: impl FnOnce()) {
    if std::env::var_os(CHILD_MARKER).is_some() {
        body();
        return;
    }

    let card = VirtualCard::start();
    let exe = std::env::current_exe().expect("the test binary has a path");
    let output = Command::new(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_MARKER, "1")
        .env("PCSCLITE_CSOCK_NAME", card.socket())
        .output()
        .expect("starting the test binary as a child failed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{test_name} failed on the virtual card ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test named {test_name}:\n{stdout}"
    );
    drop(card);
}
