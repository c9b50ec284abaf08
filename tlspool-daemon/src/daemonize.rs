//! The switch to the background after start-up: `fork`, then `setsid` in the child, while the
//! parent waits until the child reports that it serves, so a start that fails late still ends
//! the command with exit status 1.
//!
//! `fork` copies only the calling thread, so it runs before the async runtime starts and is
//! refused when `/proc/self/task` lists more than one thread. The child replaces stdin and
//! stdout with `/dev/null`, so a caller that reads the daemon's output (as `$(tlspool)` does)
//! is not kept waiting. It keeps stderr, where `log_stderr` sends the log.

use std::fs::File;
use std::io::{Read as _, Write as _};

use nix::fcntl::OFlag;
use nix::unistd::{ForkResult, Pid, dup2_stdin, dup2_stdout, fork, pipe2, setsid};

use crate::error::DaemonError;

/// The byte the child writes once it serves.
const READY: u8 = b'R';

/// The side of the `fork` this process is on.
#[derive(Debug)]
pub enum Forked {
    /// The original process, which waits for the child and then exits.
    Parent(StartupWaiter),
    /// The background daemon, which reports when it serves.
    Child(ReadyNotifier),
}

/// The parent's end of the start-up report.
#[derive(Debug)]
pub struct StartupWaiter {
    report: File,
    child: Pid,
}

/// The child's end of the start-up report.
#[derive(Debug)]
pub struct ReadyNotifier {
    report: Option<File>,
}

/// Forks the process and starts a new session in the child.
///
/// # Errors
///
/// [`DaemonError::NotSingleThreaded`] when other threads run, and [`DaemonError::Daemonize`]
/// naming `pipe2`, `fork` or `setsid`.
pub fn fork_to_background() -> Result<Forked, DaemonError> {
    let threads = thread_count();
    if threads != 1 {
        return Err(DaemonError::NotSingleThreaded { threads });
    }
    let failed = |call| {
        move |errno: nix::errno::Errno| DaemonError::Daemonize {
            call,
            source: errno.into(),
        }
    };
    let (read, write) = pipe2(OFlag::O_CLOEXEC).map_err(failed("pipe2"))?;

    // SAFETY: the process has exactly one thread (checked above), so the child is a complete
    // copy and may run any code, not only async-signal-safe functions.
    #[expect(unsafe_code, reason = "nix offers fork only as an unsafe function")]
    let forked = unsafe { fork() }.map_err(failed("fork"))?;
    match forked {
        ForkResult::Parent { child } => {
            drop(write);
            Ok(Forked::Parent(StartupWaiter {
                report: File::from(read),
                child,
            }))
        }
        ForkResult::Child => {
            drop(read);
            setsid().map_err(failed("setsid"))?;
            let null = File::options()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map_err(|source| DaemonError::Daemonize {
                    call: "open /dev/null",
                    source,
                })?;
            dup2_stdin(&null).map_err(failed("dup2"))?;
            dup2_stdout(&null).map_err(failed("dup2"))?;
            Ok(Forked::Child(ReadyNotifier {
                report: Some(File::from(write)),
            }))
        }
    }
}

impl StartupWaiter {
    /// Waits until the child reports that it serves, or exits.
    ///
    /// # Errors
    ///
    /// [`DaemonError::ChildFailed`] when the child ends its report without the ready byte.
    pub fn wait(mut self) -> Result<Pid, DaemonError> {
        let mut byte = [0u8; 1];
        match self.report.read(&mut byte) {
            Ok(1) if byte[0] == READY => Ok(self.child),
            _ => Err(DaemonError::ChildFailed),
        }
    }
}

impl ReadyNotifier {
    /// Tells the parent that the daemon serves; later calls do nothing.
    pub fn notify(&mut self) {
        if let Some(mut report) = self.report.take() {
            // The parent may have been killed; the daemon serves either way.
            let _ = report.write_all(&[READY]);
        }
    }
}

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}
