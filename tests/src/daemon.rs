//! A harness that runs the built `tlspool` daemon in the foreground with a temporary
//! configuration, socket and PID file, and kills it when dropped.
//!
//! The daemon's stderr (its log, at level DEBUG) goes to a file in the temporary directory,
//! so a test can read it while the daemon runs and the daemon never blocks on a full pipe.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;
use tlspool_proto::blocking::RecordStream;
use tlspool_proto::{Facilities, FixedString, IDENTITY_V2, Payload, Ping, Record};

/// How long [`TestDaemon::start`] waits for the first PING reply.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Interval between polls of a condition.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The path of a workspace binary, built on first use; see [`crate::bin_path`].
pub use crate::bin_path as binary_path;

/// Returns the `tlspool` binary, built on first use.
pub fn daemon_binary() -> PathBuf {
    crate::bin_path("tlspool")
}

/// A running `tlspool -f -c FILE`, killed with SIGKILL when dropped.
#[derive(Debug)]
pub struct TestDaemon {
    child: Option<Child>,
    directory: Arc<TempDir>,
    config: PathBuf,
    socket: PathBuf,
    pid_file: PathBuf,
    stderr: PathBuf,
    environment: Vec<(String, PathBuf)>,
}

impl TestDaemon {
    /// Starts a daemon whose configuration has `extra_config_lines` after the logging and PID
    /// file lines and before `socket_name`, so `socket_*` lines apply to the socket. Waits
    /// until the daemon answers PING.
    ///
    /// # Panics
    ///
    /// If the daemon exits or does not answer within [`START_TIMEOUT`]; the message contains
    /// its stderr.
    pub fn start(extra_config_lines: &[&str]) -> Self {
        Self::start_with_env(extra_config_lines, &[])
    }

    /// Starts a daemon like [`Self::start`], with `environment` (such as `SOFTHSM2_CONF`) set
    /// in its environment.
    pub fn start_with_env(extra_config_lines: &[&str], environment: &[(&str, &Path)]) -> Self {
        let directory = Arc::new(tempfile::tempdir().expect("temporary directory"));
        let config = directory.path().join("tlspool.conf");
        let socket = directory.path().join("tlspool.sock");
        let pid_file = directory.path().join("tlspool.pid");
        let mut text = String::from("log_stderr YES\nlog_level DEBUG\n");
        text.push_str(&format!("daemon_pidfile {}\n", pid_file.display()));
        for line in extra_config_lines {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(&format!("socket_name {}\n", socket.display()));
        std::fs::write(&config, text).expect("write configuration");

        let mut daemon = Self {
            child: None,
            stderr: directory.path().join("stderr-1.log"),
            directory,
            config,
            socket,
            pid_file,
            environment: environment
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.to_path_buf()))
                .collect(),
        };
        // SoftHSM 2.6 sometimes fails C_GetTokenInfo with CKR_GENERAL_ERROR when several
        // processes open the same token directory at the same moment, so test daemons start
        // one at a time, across every test of this process.
        static STARTING: Mutex<()> = Mutex::new(());
        let _starting = STARTING.lock().unwrap_or_else(PoisonError::into_inner);
        daemon.spawn(&[]);
        daemon
    }

    /// Starts a second daemon with `-k` on the same configuration, which takes over from this
    /// one, and waits until it answers PING.
    pub fn takeover(&self) -> Self {
        let mut daemon = Self {
            child: None,
            directory: Arc::clone(&self.directory),
            config: self.config.clone(),
            socket: self.socket.clone(),
            pid_file: self.pid_file.clone(),
            stderr: self.directory.path().join("stderr-2.log"),
            environment: self.environment.clone(),
        };
        daemon.spawn(&["-k"]);
        daemon
    }

    /// Returns a command that runs `tlspool -f -c FILE` on this daemon's configuration.
    pub fn command(&self) -> Command {
        let mut command = Command::new(daemon_binary());
        command.arg("-f").arg("-c").arg(&self.config);
        command.envs(self.environment.iter().map(|(name, value)| (name, value)));
        command
    }

    /// Returns the socket path.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// Returns the PID file path.
    pub fn pid_file_path(&self) -> &Path {
        &self.pid_file
    }

    /// Returns the configuration file path.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Returns the temporary directory that holds configuration, socket and PID file.
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// Returns the daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Returns the number of descriptors the daemon has open (entries of `/proc/PID/fd`).
    pub fn open_fd_count(&self) -> usize {
        let directory = format!("/proc/{}/fd", self.pid());
        std::fs::read_dir(directory)
            .expect("read the daemon's descriptor list")
            .count()
    }

    /// Returns the daemon's descriptor count once it stays the same for 200 ms, so the closes
    /// of the start-up PING connections are over.
    pub fn settled_fd_count(&self) -> usize {
        let mut count = self.open_fd_count();
        loop {
            thread::sleep(Duration::from_millis(200));
            let again = self.open_fd_count();
            if again == count {
                return count;
            }
            count = again;
        }
    }

    /// Waits up to `timeout` for the daemon's descriptor count to equal `expected`, and
    /// returns the last count seen.
    pub fn wait_fd_count(&self, expected: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut count = self.open_fd_count();
        while count != expected && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
            count = self.open_fd_count();
        }
        count
    }

    /// Returns everything the daemon wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Pauses the daemon with SIGSTOP, so it accepts and answers nothing until killed.
    pub fn stop(&mut self) {
        self.signal(Signal::SIGSTOP);
    }

    /// Kills the daemon with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.pid()).expect("process id fits i32");
        kill(Pid::from_raw(pid), signal).expect("signal the daemon");
    }

    /// Waits up to `timeout` for the daemon to exit and returns its status, or `None` if it
    /// still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("poll the daemon") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Connects to the daemon and sends one PING with request id `reqid`; returns the reply.
    pub fn ping(&self, reqid: u16) -> Record {
        let mut stream = RecordStream::connect(&self.socket).expect("connect to the daemon");
        stream
            .get_ref()
            .set_read_timeout(Some(START_TIMEOUT))
            .expect("read timeout");
        stream
            .send_record(&ping_record(reqid), None)
            .expect("send PING");
        let frame = stream
            .recv()
            .expect("receive the PING answer")
            .expect("daemon closed the connection");
        frame.decode().expect("decode the PING answer")
    }

    fn spawn(&mut self, extra_args: &[&str]) {
        let stderr = File::create(&self.stderr).expect("create the stderr log");
        let child = self
            .command()
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start tlspool");
        self.child = Some(child);
        self.wait_until_ready();
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|child| child.try_wait().ok()?) {
                panic!(
                    "tlspool exited with {status} during start-up:\n{}",
                    self.stderr()
                );
            }
            // During a takeover the old daemon still answers on the socket, so PING counts
            // only once the PID file names this daemon, which locks it before binding.
            let pid_text = std::fs::read_to_string(&self.pid_file).unwrap_or_default();
            if pid_text.trim() == self.pid().to_string() && self.answers_ping() {
                return;
            }
            if Instant::now() >= deadline {
                panic!("tlspool did not answer PING in time:\n{}", self.stderr());
            }
            thread::sleep(POLL_INTERVAL);
        }
    }
}

impl TestDaemon {
    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = RecordStream::connect(&self.socket) else {
            return false;
        };
        stream.send_record(&ping_record(1), None).is_ok() && matches!(stream.recv(), Ok(Some(_)))
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Builds a PING request that asks for every facility.
pub fn ping_record(reqid: u16) -> Record {
    Record::new(
        reqid,
        Payload::Ping(Ping {
            producer: FixedString::new(IDENTITY_V2).expect("identity fits the producer field"),
            facilities: Facilities::all(),
        }),
    )
}

/// Writes `text` to a new file `name` in `directory` and returns its path.
pub fn write_file(directory: &Path, name: &str, text: &str) -> PathBuf {
    let path = directory.join(name);
    let mut file = File::create(&path).expect("create file");
    file.write_all(text.as_bytes()).expect("write file");
    path
}

/// Runs STARTTLS through `daemon` as TLS client of the server on 127.0.0.1:`port`, asking for
/// `remote_id`, and returns the final STARTTLS reply or the ERROR. A PLAINTEXT_CONNECT
/// callback is answered with one end of a new socket pair, which stays open until the reply.
///
/// # Panics
///
/// When the daemon or the server cannot be reached, or the daemon sends an unexpected record
/// or none within `timeout`.
pub fn starttls_client(
    daemon: &TestDaemon,
    port: u16,
    remote_id: &str,
    flags: tlspool_proto::StartTlsFlags,
    timeout: Duration,
) -> Result<tlspool_proto::StartTls, tlspool_proto::ErrorPayload> {
    use std::os::fd::AsFd as _;
    use tlspool_proto::{Identity, StartTls};

    let mut stream = RecordStream::connect(daemon.socket_path()).expect("connect to the daemon");
    stream
        .get_ref()
        .set_read_timeout(Some(timeout))
        .expect("read timeout");
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the server");
    let record = Record::new(
        1,
        Payload::StartTls(StartTls {
            flags,
            local: 0,
            ipproto: 6,
            streamid: 0,
            localid: Identity::new("").expect("localid fits"),
            remoteid: Identity::new(remote_id).expect("remoteid fits"),
            ctlkey: [7; 16],
            service: FixedString::new("generic").expect("service fits"),
            timeout: 10_000,
        }),
    );
    stream
        .send_record(&record, Some(tcp.as_fd()))
        .expect("send STARTTLS");
    drop(tcp);
    let mut plaintext = Vec::new();
    loop {
        let frame = stream
            .recv()
            .expect("receive from the daemon")
            .expect("the daemon closed the connection");
        let reply = frame.decode().expect("decode the record");
        match reply.payload {
            Payload::PlaintextConnect(params) => {
                let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
                let mut answer = Record::new(reply.reqid, Payload::PlaintextConnect(params));
                answer.cbid = reply.cbid;
                stream
                    .send_record(&answer, Some(theirs.as_fd()))
                    .expect("answer PLAINTEXT_CONNECT");
                plaintext.push(ours);
            }
            Payload::StartTls(params) => return Ok(params),
            Payload::Error(error) => return Err(error),
            other => panic!("unexpected record from the daemon: {other:?}"),
        }
    }
}
