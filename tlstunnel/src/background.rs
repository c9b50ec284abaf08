//! `--daemon` and `--pidfile`: going into the background once the listeners are bound.
//!
//! The foreground process starts a copy of itself in a new session, with standard input on
//! `/dev/null` and standard output on a pipe, and waits. The copy binds its listeners, writes
//! the PID file, reports readiness on the pipe and points standard output at `/dev/null`.
//! The foreground process then exits 0. When the copy fails first, the foreground process
//! exits with its status. Standard error stays shared, so log lines still reach it.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tracing::debug;

use crate::TunnelError;

/// The environment variable that marks the background copy.
pub(crate) const CHILD_MARKER: &str = "TLSTUNNEL_BACKGROUND_CHILD";

/// The line the background copy writes once its listeners are bound.
const READY: &[u8] = b"ready\n";

/// A PID file that is removed when dropped.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

/// Returns whether this process is the background copy of a `--daemon` start.
pub fn is_background_child() -> bool {
    std::env::var_os(CHILD_MARKER).is_some()
}

/// Starts the background copy with the same arguments and waits until it is ready.
///
/// # Errors
///
/// [`TunnelError::Daemonize`] when the copy cannot start, and
/// [`TunnelError::DaemonChildFailed`] when it exits before it is ready.
pub fn start_in_background() -> Result<(), TunnelError> {
    let daemonize_error = |step| move |source| TunnelError::Daemonize { step, source };
    let program = std::env::current_exe().map_err(daemonize_error("locating the program"))?;
    let mut child = Command::new(program)
        .args(std::env::args_os().skip(1))
        .env(CHILD_MARKER, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(daemonize_error("starting the background process"))?;

    let mut report = Vec::new();
    if let Some(mut pipe) = child.stdout.take() {
        // The copy closes the pipe when it is ready or when it exits.
        let _ = pipe.read_to_end(&mut report);
    }
    if report.starts_with(READY) {
        debug!(pid = child.id(), "background process is ready");
        return Ok(());
    }
    let status = child
        .wait()
        .map_err(daemonize_error("waiting for the background process"))?;
    Err(TunnelError::DaemonChildFailed { status })
}

/// Detaches the background copy from the terminal session of its starter.
///
/// # Errors
///
/// [`TunnelError::Daemonize`] when `setsid` fails.
pub fn detach_session() -> Result<(), TunnelError> {
    rustix::process::setsid().map_err(|errno| TunnelError::Daemonize {
        step: "setsid",
        source: errno.into(),
    })?;
    Ok(())
}

/// Tells the waiting starter that the listeners are bound, then points standard output at
/// `/dev/null` so the pipe reaches end of file for the starter.
///
/// # Errors
///
/// [`TunnelError::Daemonize`] when writing or redirecting fails.
pub fn report_ready() -> Result<(), TunnelError> {
    let daemonize_error = |step| move |source| TunnelError::Daemonize { step, source };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(READY)
        .and_then(|()| stdout.flush())
        .map_err(daemonize_error("reporting readiness"))?;
    let null = File::options()
        .write(true)
        .open("/dev/null")
        .map_err(daemonize_error("opening /dev/null"))?;
    rustix::stdio::dup2_stdout(&null).map_err(|errno| TunnelError::Daemonize {
        step: "redirecting standard output",
        source: errno.into(),
    })
}

impl PidFile {
    /// Writes this process's id and a newline to `path`, replacing the file's content.
    ///
    /// # Errors
    ///
    /// [`TunnelError::PidFile`] when the file cannot be written.
    pub fn create(path: &Path) -> Result<Self, TunnelError> {
        std::fs::write(path, format!("{}\n", std::process::id())).map_err(|source| {
            TunnelError::PidFile {
                path: path.to_owned(),
                source,
            }
        })?;
        Ok(Self {
            path: path.to_owned(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_file(&self.path) {
            debug!(path = %self.path.display(), %error, "removing the PID file failed");
        }
    }
}
