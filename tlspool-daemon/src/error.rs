//! The error type of the daemon's start-up: PID file, listening sockets, privileges and the
//! switch to the background. Each variant names the file, account or system call at fault.

use std::io;
use std::path::PathBuf;

/// A failure that stops the daemon from starting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// A system call on the PID file failed.
    #[error("{call} failed on PID file {}", path.display())]
    PidFile {
        /// The PID file.
        path: PathBuf,
        /// The failing call, such as `open` or `flock`.
        call: &'static str,
        /// The operating system error.
        #[source]
        source: io::Error,
    },

    /// A live process holds the lock of the PID file and `-k` was not given.
    #[error(
        "another daemon owns the PID file {} (process {pid}); stop it or start with -k",
        path.display()
    )]
    PidFileOwned {
        /// The PID file.
        path: PathBuf,
        /// The process id written in the PID file.
        pid: i32,
    },

    /// The lock of the PID file is held, but the file names no process to signal.
    #[error(
        "the PID file {} is locked by another process but holds no process id ({content:?})",
        path.display()
    )]
    PidFileUnreadable {
        /// The PID file.
        path: PathBuf,
        /// The first bytes of the file, lossily decoded.
        content: String,
    },

    /// With `-k`, the old daemon did not release the PID file in time.
    #[error(
        "process {pid} still holds the PID file {} {seconds} s after SIGTERM",
        path.display()
    )]
    TakeoverTimedOut {
        /// The PID file.
        path: PathBuf,
        /// The process that was signalled.
        pid: i32,
        /// How long the daemon waited, in seconds.
        seconds: u64,
    },

    /// A system call on a listening socket or its path failed.
    #[error("{call} failed on socket {}", path.display())]
    Socket {
        /// The socket path (`socket_name`).
        path: PathBuf,
        /// The failing call, such as `bind` or `chown`.
        call: &'static str,
        /// The operating system error.
        #[source]
        source: io::Error,
    },

    /// Another process accepts connections on a configured socket path.
    #[error("socket {} is in use by another process; stop it first", path.display())]
    SocketInUse {
        /// The socket path.
        path: PathBuf,
    },

    /// A configured socket path exists and is not a socket, so it is left alone.
    #[error("{} exists and is not a socket; remove it or choose another socket_name", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },

    /// A user or group name is not in the system's account database.
    #[error("{kind} {name:?} not found in the account database (key {key})")]
    UnknownAccount {
        /// `user` or `group`.
        kind: &'static str,
        /// The name as configured.
        name: String,
        /// The configuration key that names it.
        key: &'static str,
    },

    /// Looking up a user or group failed.
    #[error("looking up {kind} {name:?} failed")]
    AccountLookup {
        /// `user` or `group`.
        kind: &'static str,
        /// The name as configured.
        name: String,
        /// The operating system error.
        #[source]
        source: io::Error,
    },

    /// Changing root directory, groups, group id or user id failed.
    #[error("{call}({target}) failed")]
    Privileges {
        /// The failing call: `chroot`, `chdir`, `setgroups`, `setgid` or `setuid`.
        call: &'static str,
        /// The argument, such as the directory or the numeric id.
        target: String,
        /// The operating system error.
        #[source]
        source: io::Error,
    },

    /// A privilege change did not take effect although the call succeeded.
    #[error("{what} is {actual} after the change, expected {expected}")]
    PrivilegesUnchanged {
        /// The id checked, such as `effective user id`.
        what: &'static str,
        /// The id the daemon switched to.
        expected: u32,
        /// The id the process has.
        actual: u32,
    },

    /// Switching to the background failed.
    #[error("{call} failed while switching to the background")]
    Daemonize {
        /// The failing call, such as `fork` or `setsid`.
        call: &'static str,
        /// The operating system error.
        #[source]
        source: io::Error,
    },

    /// The process runs more than one thread, so `fork` would copy a process in an unknown
    /// state.
    #[error("cannot fork with {threads} threads running; start with -f")]
    NotSingleThreaded {
        /// Threads counted in `/proc/self/task`.
        threads: usize,
    },

    /// The background process exited before it reported that it serves.
    #[error("the background daemon exited during start-up; see its log")]
    ChildFailed,

    /// Building the async runtime or installing a signal handler failed.
    #[error("{call} failed")]
    Runtime {
        /// The failed step, such as `building the tokio runtime`.
        call: &'static str,
        /// The operating system error.
        #[source]
        source: io::Error,
    },
}
