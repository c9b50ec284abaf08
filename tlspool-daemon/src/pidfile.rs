//! The PID file (`daemon_pidfile`): an exclusive `flock` that keeps a second daemon from
//! starting, and with `-k` the takeover from a running daemon.
//!
//! The file is opened or created with mode 0664 (less the umask) and locked with a
//! non-blocking exclusive `flock`. If another process holds the lock, the PID written in the
//! file decides. Without `-k` a live process stops this start and a dead one is ignored, as in
//! the TLS Pool. With `-k` the process gets SIGTERM and the daemon waits for the lock. The
//! daemon then writes `"<pid>\n"`, truncates, syncs and keeps the file open to hold the lock,
//! and removes the file when it exits.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _};
use std::os::unix::fs::{FileExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tracing::{info, warn};

use tlspool_core::logging::TARGET_DAEMON;

use crate::cleanup::RemoveOnDrop;
use crate::error::DaemonError;

/// How long `-k` waits for the old daemon to release the PID file after SIGTERM.
pub const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(10);

/// Interval between attempts to take the lock during a takeover.
const LOCK_RETRY_INTERVAL: Duration = Duration::from_millis(50);

/// Maximum bytes of the PID file read to find the process id.
const MAX_PID_FILE_BYTES: u64 = 64;

/// The PID file of the running daemon, removed when dropped.
#[derive(Debug)]
pub struct PidFile {
    // Declared first so the file is removed while the lock is still held.
    _removal: RemoveOnDrop,
    hold: Hold,
    path: PathBuf,
}

/// How the daemon holds the PID file.
#[derive(Debug)]
enum Hold {
    /// With the exclusive lock, the normal case.
    Locked(Flock<File>),
    /// Without the lock, because a process holds it whose PID in the file is dead.
    Unlocked(File),
}

/// The outcome of one attempt to lock the file at the path.
enum Attempt {
    Locked(Flock<File>),
    Held {
        file: File,
        pid: Option<i32>,
        content: String,
    },
    Replaced,
}

impl PidFile {
    /// Opens and locks the PID file at `path` and writes this process's id into it.
    ///
    /// With `takeover` (`-k`), a daemon that holds the lock gets SIGTERM and this call waits
    /// up to [`TAKEOVER_TIMEOUT`] for the lock.
    ///
    /// # Errors
    ///
    /// [`DaemonError::PidFileOwned`] when a live daemon holds the file and `takeover` is false,
    /// [`DaemonError::PidFileUnreadable`] when the holder's PID cannot be read,
    /// [`DaemonError::TakeoverTimedOut`] when the old daemon keeps the lock, and
    /// [`DaemonError::PidFile`] when a call on the file fails.
    pub fn acquire(path: &Path, takeover: bool) -> Result<Self, DaemonError> {
        let started = Instant::now();
        let mut signalled = None;
        let hold = loop {
            let (file, pid, content) = match attempt_lock(path)? {
                Attempt::Locked(lock) => break Hold::Locked(lock),
                Attempt::Replaced => continue,
                Attempt::Held { file, pid, content } => (file, pid, content),
            };
            let Some(pid) = pid else {
                // A starting daemon may not have written its PID yet.
                if takeover && started.elapsed() < TAKEOVER_TIMEOUT {
                    thread::sleep(LOCK_RETRY_INTERVAL);
                    continue;
                }
                return Err(DaemonError::PidFileUnreadable {
                    path: path.to_owned(),
                    content,
                });
            };
            if !takeover {
                if is_alive(pid) {
                    return Err(DaemonError::PidFileOwned {
                        path: path.to_owned(),
                        pid,
                    });
                }
                warn!(target: TARGET_DAEMON, path = %path.display(), pid,
                    "PID file is locked but names a process that no longer exists; carrying on");
                break Hold::Unlocked(file);
            }
            if signalled != Some(pid) {
                signal_holder(path, pid)?;
                signalled = Some(pid);
            }
            if started.elapsed() >= TAKEOVER_TIMEOUT {
                return Err(DaemonError::TakeoverTimedOut {
                    path: path.to_owned(),
                    pid,
                    seconds: TAKEOVER_TIMEOUT.as_secs(),
                });
            }
            thread::sleep(LOCK_RETRY_INTERVAL);
        };

        let removal =
            RemoveOnDrop::new(path, "PID file").map_err(|source| DaemonError::PidFile {
                path: path.to_owned(),
                call: "fstatat",
                source,
            })?;
        let pid_file = Self {
            _removal: removal,
            hold,
            path: path.to_owned(),
        };
        pid_file.write_pid(std::process::id())?;
        info!(target: TARGET_DAEMON, path = %path.display(), "PID file locked");
        Ok(pid_file)
    }

    /// Replaces the content with `pid`, truncates and syncs; used again after `fork`.
    ///
    /// # Errors
    ///
    /// [`DaemonError::PidFile`] naming the failed call.
    pub fn write_pid(&self, pid: u32) -> Result<(), DaemonError> {
        let file = self.file();
        let text = format!("{pid}\n");
        let failed = |call| {
            move |source| DaemonError::PidFile {
                path: self.path.clone(),
                call,
                source,
            }
        };
        file.write_all_at(text.as_bytes(), 0)
            .map_err(failed("write"))?;
        file.set_len(text.len() as u64)
            .map_err(failed("ftruncate"))?;
        file.sync_all().map_err(failed("fsync"))
    }

    /// Returns the path of the PID file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file(&self) -> &File {
        match &self.hold {
            Hold::Locked(lock) => lock,
            Hold::Unlocked(file) => file,
        }
    }
}

/// Opens `path` and tries the lock once.
fn attempt_lock(path: &Path) -> Result<Attempt, DaemonError> {
    let failed = |call| {
        move |source| DaemonError::PidFile {
            path: path.to_owned(),
            call,
            source,
        }
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o664)
        .open(path)
        .map_err(failed("open"))?;

    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => {
            // A daemon that exits removes the file while it holds the lock, so the inode
            // locked here may no longer be the one at the path.
            if is_same_file(&lock, path).map_err(failed("fstat"))? {
                Ok(Attempt::Locked(lock))
            } else {
                Ok(Attempt::Replaced)
            }
        }
        Err((file, Errno::EWOULDBLOCK)) => {
            let content = read_prefix(&file).map_err(failed("read"))?;
            let pid = parse_pid(&content);
            Ok(Attempt::Held { file, pid, content })
        }
        Err((_, errno)) => Err(failed("flock")(errno.into())),
    }
}

fn is_same_file(file: &File, path: &Path) -> io::Result<bool> {
    let open = file.metadata()?;
    match std::fs::symlink_metadata(path) {
        Ok(current) => Ok(open.dev() == current.dev() && open.ino() == current.ino()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

fn read_prefix(file: &File) -> io::Result<String> {
    let mut bytes = Vec::new();
    file.take(MAX_PID_FILE_BYTES).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Parses the process id of a PID file, which must be positive. `kill` with 0 or a negative id
/// would signal a whole process group.
fn parse_pid(content: &str) -> Option<i32> {
    content.trim().parse::<i32>().ok().filter(|&pid| pid > 0)
}

/// Tells whether process `pid` exists; a process of another user counts as alive.
fn is_alive(pid: i32) -> bool {
    !matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH))
}

fn signal_holder(path: &Path, pid: i32) -> Result<(), DaemonError> {
    info!(target: TARGET_DAEMON, path = %path.display(), pid,
        "sending SIGTERM to the daemon that holds the PID file");
    match kill(Pid::from_raw(pid), Signal::SIGTERM) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(errno) => Err(DaemonError::PidFile {
            path: path.to_owned(),
            call: "kill",
            source: errno.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_parsing_rejects_group_ids() {
        assert_eq!(parse_pid("1234\n"), Some(1234));
        assert_eq!(parse_pid(" 42 "), Some(42));
        assert_eq!(parse_pid("0\n"), None);
        assert_eq!(parse_pid("-1\n"), None);
        assert_eq!(parse_pid(""), None);
        assert_eq!(parse_pid("tlspool"), None);
    }

    #[test]
    fn acquire_writes_pid_and_removes_on_drop() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = directory.path().join("tlspool.pid");
        let pid_file = PidFile::acquire(&path, false).expect("acquire PID file");
        let content = std::fs::read_to_string(&path).expect("read PID file");
        assert_eq!(content, format!("{}\n", std::process::id()));
        drop(pid_file);
        assert!(!path.exists());
    }

    #[test]
    fn acquire_truncates_longer_content() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = directory.path().join("tlspool.pid");
        std::fs::write(&path, "999999999999\nstale\n").expect("write stale file");
        let _pid_file = PidFile::acquire(&path, false).expect("acquire PID file");
        let content = std::fs::read_to_string(&path).expect("read PID file");
        assert_eq!(content, format!("{}\n", std::process::id()));
    }

    #[test]
    fn held_lock_of_live_process_is_reported() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = directory.path().join("tlspool.pid");
        let first = PidFile::acquire(&path, false).expect("acquire PID file");
        // flock locks belong to the open file, so a second open in this process conflicts.
        let error = PidFile::acquire(&path, false).expect_err("second acquire must fail");
        assert!(
            matches!(error, DaemonError::PidFileOwned { pid, .. } if pid == std::process::id() as i32),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .contains("another daemon owns the PID file")
        );
        drop(first);
    }

    #[test]
    fn held_lock_of_dead_process_is_ignored() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = directory.path().join("tlspool.pid");
        let file = File::create(&path).expect("create PID file");
        let _lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).expect("lock");
        // Process ids are at most 2^22 on Linux, so this one cannot exist.
        std::fs::write(&path, "2147483647\n").expect("write dead PID");
        let pid_file = PidFile::acquire(&path, false).expect("carry on past a dead PID");
        assert!(matches!(pid_file.hold, Hold::Unlocked(_)));
    }
}
