//! Real TLS peers on loopback for the STARTTLS tests: `gnutls-serv` and `openssl s_server` as
//! servers, `gnutls-cli` and `openssl s_client` as interactive clients, each killed when
//! dropped.
//!
//! `gnutls-serv` listens on every interface and has no option to bind loopback alone, so
//! [`gnutls_serv`] starts it only when `/proc/net/dev` lists no interface but `lo`, as inside
//! the private network namespace of `scripts/netns-run.sh`.

use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// How long a peer may take to listen, or an expected output may take to appear.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(20);

/// A server or client process, killed and reaped when dropped.
#[derive(Debug)]
pub struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    output: Arc<Mutex<String>>,
    name: &'static str,
}

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// Panics unless `/proc/net/dev` lists only the loopback interface.
pub fn require_loopback_only() {
    let text = std::fs::read_to_string("/proc/net/dev").expect("read /proc/net/dev");
    let interfaces: Vec<&str> = text
        .lines()
        .skip(2)
        .filter_map(|line| line.split(':').next())
        .map(str::trim)
        .collect();
    assert!(
        interfaces.iter().all(|name| *name == "lo"),
        "gnutls-serv listens on every interface, and this network namespace has {interfaces:?}; \
         run the tests through scripts/netns-run.sh (for example `bash scripts/netns-run.sh \
         cargo test -p tlspool-tests --test starttls`)"
    );
}

/// Starts `gnutls-serv --port PORT ARGS` and waits until it listens.
///
/// # Panics
///
/// When the network namespace has interfaces besides `lo`, or the server does not listen in
/// time.
pub fn gnutls_serv(port: u16, args: &[&str]) -> Peer {
    require_loopback_only();
    let mut command = Command::new("gnutls-serv");
    command.arg("--port").arg(port.to_string()).args(args);
    let peer = Peer::spawn("gnutls-serv", command);
    peer.wait_listening(port);
    peer
}

/// Starts `openssl s_server -accept 127.0.0.1:PORT ARGS` and waits until it listens.
pub fn openssl_s_server(port: u16, args: &[&str]) -> Peer {
    let mut command = Command::new("openssl");
    command
        .arg("s_server")
        .arg("-accept")
        .arg(format!("127.0.0.1:{port}"))
        .args(args);
    let peer = Peer::spawn("openssl s_server", command);
    peer.wait_listening(port);
    peer
}

/// Starts `gnutls-cli ARGS --port PORT 127.0.0.1`.
pub fn gnutls_cli(port: u16, args: &[&str]) -> Peer {
    let mut command = Command::new("gnutls-cli");
    command
        .args(args)
        .arg("--port")
        .arg(port.to_string())
        .arg("127.0.0.1");
    Peer::spawn("gnutls-cli", command)
}

/// Starts `openssl s_client -connect 127.0.0.1:PORT ARGS`.
pub fn openssl_s_client(port: u16, args: &[&str]) -> Peer {
    let mut command = Command::new("openssl");
    command
        .arg("s_client")
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .args(args);
    Peer::spawn("openssl s_client", command)
}

impl Peer {
    /// Starts `command` with piped standard input and its standard output and error collected.
    pub fn spawn(name: &'static str, mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("starting {name} failed: {error}"));
        let output = Arc::new(Mutex::new(String::new()));
        if let Some(stdout) = child.stdout.take() {
            collect(stdout, Arc::clone(&output));
        }
        if let Some(stderr) = child.stderr.take() {
            collect(stderr, Arc::clone(&output));
        }
        Self {
            stdin: child.stdin.take(),
            child,
            output,
            name,
        }
    }

    /// Writes `line` and a newline to the peer's standard input.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("standard input is open");
        // One write, so that a peer reading its input sees the line and its newline together.
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to the peer's standard input");
        stdin.flush().expect("flush the peer's standard input");
    }

    /// Closes the peer's standard input.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Returns everything the peer printed so far, standard output and error mixed.
    pub fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until the output contains `needle` and returns whether it did within
    /// [`PEER_TIMEOUT`].
    pub fn wait_for_output(&self, needle: &str) -> bool {
        let deadline = Instant::now() + PEER_TIMEOUT;
        while Instant::now() < deadline {
            if self.output().contains(needle) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits up to [`PEER_TIMEOUT`] for the peer to exit and returns whether it did.
    pub fn wait_exit(&mut self) -> bool {
        let deadline = Instant::now() + PEER_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn wait_listening(&self, port: u16) {
        let deadline = Instant::now() + PEER_TIMEOUT;
        while Instant::now() < deadline {
            if is_listening(port) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "{} did not listen on port {port} in time:\n{}",
            self.name,
            self.output()
        );
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies everything `source` produces into `output`, on a thread of its own.
fn collect(source: impl Read + Send + 'static, output: Arc<Mutex<String>>) {
    thread::spawn(move || {
        let mut reader = BufReader::new(source);
        let mut line = String::new();
        while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
            output
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_str(&line);
            line.clear();
        }
    });
}

/// Tells whether a TCP socket listens on `port`, from `/proc/net/tcp` and `/proc/net/tcp6`.
fn is_listening(port: u16) -> bool {
    const LISTEN: &str = "0A";
    let local_port = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.len() > 3 && fields[1].ends_with(&local_port) && fields[3] == LISTEN
            })
    })
}
