//! The listening sockets of `socket_name` lines: a stale socket file is removed, the socket is
//! bound and listens, then gets the owner, group and mode of the `socket_*` lines before it.
//!
//! A path that exists is removed only if it is a socket on which nobody accepts connections.
//! A live socket or any other kind of file stops the start-up.
//!
//! `AcceptFailures` paces the accept loop after a failed `accept`, and logs the failures at
//! most once per second.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
use nix::unistd::{Gid, Group, Uid, User, chown};
use tracing::{info, warn};

use tlspool_core::config::SocketSpec;
use tlspool_core::logging::{TARGET_DAEMON, TARGET_UNIXSOCK};

use crate::cleanup::RemoveOnDrop;
use crate::error::DaemonError;

/// Pending connections the kernel queues per socket before connecting clients wait or see
/// `EAGAIN`: `SOMAXCONN` (4096 in the Linux headers), which the kernel lowers to
/// `net.core.somaxconn`. The original TLS Pool used 5, which a burst of clients connecting at
/// once overflows while the daemon is busy with handshakes.
const LISTEN_BACKLOG: Backlog = Backlog::MAXCONN;

/// A bound, listening socket whose file is removed when it is dropped.
#[derive(Debug)]
pub struct Listener {
    socket: UnixListener,
    file: SocketFile,
}

/// The file of a listening socket, removed when dropped.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    _removal: RemoveOnDrop,
}

impl Listener {
    /// Creates the listening socket of `spec`.
    ///
    /// # Errors
    ///
    /// [`DaemonError::SocketInUse`] when another process listens on the path,
    /// [`DaemonError::NotASocket`] when the path is another kind of file,
    /// [`DaemonError::UnknownAccount`] when `socket_user` or `socket_group` does not exist,
    /// and [`DaemonError::Socket`] naming the call that failed.
    pub fn bind(spec: &SocketSpec) -> Result<Self, DaemonError> {
        let path = spec.path.as_path();
        let owner = spec
            .user
            .as_deref()
            .map(|name| lookup_user(name, "socket_user").map(|user| user.uid))
            .transpose()?;
        let group = spec
            .group
            .as_deref()
            .map(|name| lookup_group(name, "socket_group"))
            .transpose()?;

        remove_stale_socket(path)?;
        let socket = bind_and_listen(path)?;
        let removal = RemoveOnDrop::new(path, "socket").map_err(socket_error(path, "fstatat"))?;
        let listener = Self {
            socket,
            file: SocketFile {
                path: path.to_owned(),
                _removal: removal,
            },
        };

        if owner.is_some() || group.is_some() {
            chown(path, owner, group).map_err(|errno| socket_error(path, "chown")(errno.into()))?;
        }
        if let Some(mode) = spec.mode {
            let permissions = std::fs::Permissions::from_mode(mode);
            std::fs::set_permissions(path, permissions).map_err(socket_error(path, "chmod"))?;
        }
        info!(target: TARGET_DAEMON, path = %path.display(), line = spec.line,
            mode = ?spec.mode.map(|mode| format!("{mode:04o}")), "socket listening");
        Ok(listener)
    }

    /// Returns the socket path.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Splits the listener into its socket and the guard that removes its file, so the file
    /// can outlive the socket until every connection is closed.
    pub fn into_parts(self) -> (UnixListener, SocketFile) {
        (self.socket, self.file)
    }
}

impl SocketFile {
    /// Returns the socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Looks up a user by name, or takes a number as a user id when no user has that name.
pub(crate) fn lookup_user(name: &str, key: &'static str) -> Result<User, DaemonError> {
    let found = User::from_name(name).map_err(|errno| DaemonError::AccountLookup {
        kind: "user",
        name: name.to_owned(),
        source: errno.into(),
    })?;
    let by_number = || {
        let uid = name.parse().ok()?;
        User::from_uid(Uid::from_raw(uid)).ok().flatten()
    };
    found
        .or_else(by_number)
        .ok_or_else(|| DaemonError::UnknownAccount {
            kind: "user",
            name: name.to_owned(),
            key,
        })
}

/// Looks up a group by name, or takes a number as a group id when no group has that name.
pub(crate) fn lookup_group(name: &str, key: &'static str) -> Result<Gid, DaemonError> {
    let found = Group::from_name(name).map_err(|errno| DaemonError::AccountLookup {
        kind: "group",
        name: name.to_owned(),
        source: errno.into(),
    })?;
    if let Some(group) = found {
        return Ok(group.gid);
    }
    name.parse()
        .map(Gid::from_raw)
        .map_err(|_| DaemonError::UnknownAccount {
            kind: "group",
            name: name.to_owned(),
            key,
        })
}

/// Removes `path` if it is a socket nobody accepts on; leaves a missing path alone.
fn remove_stale_socket(path: &Path) -> Result<(), DaemonError> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(socket_error(path, "lstat")(error)),
    };
    if !metadata.file_type().is_socket() {
        return Err(DaemonError::NotASocket {
            path: path.to_owned(),
        });
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(DaemonError::SocketInUse {
            path: path.to_owned(),
        }),
        Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
            info!(target: TARGET_DAEMON, path = %path.display(), "removing stale socket file");
            std::fs::remove_file(path).map_err(socket_error(path, "unlink"))
        }
        Err(error) => Err(socket_error(path, "connect")(error)),
    }
}

fn bind_and_listen(path: &Path) -> Result<UnixListener, DaemonError> {
    let errno_error = |call| move |errno: Errno| socket_error(path, call)(errno.into());
    let address = UnixAddr::new(path).map_err(errno_error("sockaddr_un"))?;
    let socket: OwnedFd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(errno_error("socket"))?;
    socket::bind(std::os::fd::AsRawFd::as_raw_fd(&socket), &address)
        .map_err(errno_error("bind"))?;
    socket::listen(&socket, LISTEN_BACKLOG).map_err(errno_error("listen"))?;
    Ok(UnixListener::from(socket))
}

fn socket_error<'a>(path: &'a Path, call: &'static str) -> impl Fn(io::Error) -> DaemonError + 'a {
    move |source| DaemonError::Socket {
        path: path.to_owned(),
        call,
        source,
    }
}

/// Pause after a failed `accept` other than a descriptor limit.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);
/// Longest pause after repeated `EMFILE` or `ENFILE`: a descriptor frees only when a
/// connection or session ends, and retrying sooner only fails again.
const MAX_DESCRIPTOR_LIMIT_DELAY: Duration = Duration::from_secs(1);
/// Shortest time between two log lines about failed accepts.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// The failed accepts of one listening socket: how long to pause before the next `accept` and
/// when to log.
///
/// The first failure is logged at once. Later ones are counted and logged with that count at
/// most once per [`ACCEPT_LOG_INTERVAL`]. `EMFILE` and `ENFILE` double the pause from
/// [`ACCEPT_RETRY_DELAY`] up to [`MAX_DESCRIPTOR_LIMIT_DELAY`]; a successful accept resets it.
#[derive(Debug, Default)]
pub(crate) struct AcceptFailures {
    /// When the last line was logged.
    last_logged: Option<Instant>,
    /// Failures since the last line.
    unlogged: u64,
    /// Failures in a row since the last successful accept.
    consecutive: u32,
}

impl AcceptFailures {
    /// Counts a failed accept at `now`, logs it if a line is due, and returns the pause before
    /// the next `accept`.
    pub(crate) fn failed(&mut self, error: &io::Error, now: Instant) -> Duration {
        self.consecutive = self.consecutive.saturating_add(1);
        self.unlogged += 1;
        let due = self
            .last_logged
            .is_none_or(|last| now.duration_since(last) >= ACCEPT_LOG_INTERVAL);
        if due {
            warn!(target: TARGET_UNIXSOCK, %error, failures = self.unlogged,
                consecutive = self.consecutive, "accepting a connection failed");
            self.last_logged = Some(now);
            self.unlogged = 0;
        }
        self.delay(error)
    }

    /// Resets the pause after a successful accept, and logs the failures not logged yet.
    pub(crate) fn succeeded(&mut self) {
        if self.unlogged > 0 {
            info!(target: TARGET_UNIXSOCK, failures = self.unlogged,
                consecutive = self.consecutive,
                "accepting connections again after failed accepts");
        }
        self.unlogged = 0;
        self.consecutive = 0;
    }

    /// Returns the pause after the current run of failures that ended with `error`.
    fn delay(&self, error: &io::Error) -> Duration {
        let descriptor_limit = matches!(
            error.raw_os_error(),
            Some(code) if code == Errno::EMFILE as i32 || code == Errno::ENFILE as i32
        );
        if !descriptor_limit {
            return ACCEPT_RETRY_DELAY;
        }
        let doublings = self.consecutive.saturating_sub(1).min(16);
        ACCEPT_RETRY_DELAY
            .saturating_mul(1 << doublings)
            .min(MAX_DESCRIPTOR_LIMIT_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    fn spec(path: &Path, mode: Option<u32>) -> SocketSpec {
        SocketSpec {
            path: path.to_owned(),
            user: None,
            group: None,
            mode,
            line: 1,
        }
    }

    #[test]
    fn bind_sets_mode_and_removes_file_on_drop() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = directory.path().join("pool.sock");
        let listener = Listener::bind(&spec(&path, Some(0o600))).expect("bind");
        let metadata = std::fs::symlink_metadata(&path).expect("socket file");
        assert!(metadata.file_type().is_socket());
        assert_eq!(metadata.mode() & 0o7777, 0o600);
        UnixStream::connect(&path).expect("connect to the listener");
        drop(listener);
        assert!(!path.exists());
    }

    #[test]
    fn stale_socket_is_replaced() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = directory.path().join("pool.sock");
        drop(UnixListener::bind(&path).expect("bind stale socket"));
        assert!(path.exists());
        let _listener = Listener::bind(&spec(&path, None)).expect("bind over stale socket");
        UnixStream::connect(&path).expect("connect to the new listener");
    }

    #[test]
    fn live_socket_is_not_replaced() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = directory.path().join("pool.sock");
        let _other = UnixListener::bind(&path).expect("bind live socket");
        let error = Listener::bind(&spec(&path, None)).expect_err("path in use");
        assert!(matches!(error, DaemonError::SocketInUse { .. }), "{error}");
    }

    #[test]
    fn regular_file_is_not_replaced() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = directory.path().join("pool.sock");
        std::fs::write(&path, "data").expect("write file");
        let error = Listener::bind(&spec(&path, None)).expect_err("not a socket");
        assert!(matches!(error, DaemonError::NotASocket { .. }), "{error}");
        assert_eq!(std::fs::read_to_string(&path).expect("file kept"), "data");
    }

    #[test]
    fn socket_gets_configured_owner_and_group() {
        if !Uid::effective().is_root() {
            eprintln!("skipped: changing a file's owner needs root");
            return;
        }
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = directory.path().join("pool.sock");
        let mut spec = spec(&path, None);
        spec.user = Some("nobody".to_owned());
        spec.group = Some("65533".to_owned());
        let _listener = Listener::bind(&spec).expect("bind");
        let metadata = std::fs::symlink_metadata(&path).expect("socket file");
        assert_eq!(metadata.uid(), 65534);
        assert_eq!(metadata.gid(), 65533);
    }

    #[test]
    fn unknown_socket_user_is_an_error() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let mut spec = spec(&directory.path().join("pool.sock"), None);
        spec.user = Some("no-such-user-tlspool".to_owned());
        let error = Listener::bind(&spec).expect_err("unknown user");
        assert!(
            matches!(
                error,
                DaemonError::UnknownAccount {
                    kind: "user",
                    key: "socket_user",
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn descriptor_limit_backs_off_to_maximum() {
        let mut failures = AcceptFailures::default();
        let error = io::Error::from_raw_os_error(Errno::EMFILE as i32);
        let start = Instant::now();
        let delays: Vec<Duration> = (0..6).map(|_| failures.failed(&error, start)).collect();
        let millis: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
        assert_eq!(millis, [100, 200, 400, 800, 1000, 1000]);
        failures.succeeded();
        assert_eq!(failures.failed(&error, start), ACCEPT_RETRY_DELAY);
    }

    #[test]
    fn other_accept_errors_keep_short_delay() {
        let mut failures = AcceptFailures::default();
        let error = io::Error::from_raw_os_error(Errno::ECONNABORTED as i32);
        let start = Instant::now();
        for _ in 0..5 {
            assert_eq!(failures.failed(&error, start), ACCEPT_RETRY_DELAY);
        }
    }

    #[test]
    fn accept_failures_log_once_per_second() {
        let mut failures = AcceptFailures::default();
        let error = io::Error::from_raw_os_error(Errno::ENFILE as i32);
        let start = Instant::now();
        failures.failed(&error, start);
        assert_eq!(failures.last_logged, Some(start));
        assert_eq!(failures.unlogged, 0);
        for step in 1..=9 {
            failures.failed(&error, start + Duration::from_millis(100 * step));
        }
        assert_eq!(
            failures.last_logged,
            Some(start),
            "no line within the second"
        );
        assert_eq!(failures.unlogged, 9);
        let later = start + ACCEPT_LOG_INTERVAL;
        failures.failed(&error, later);
        assert_eq!(failures.last_logged, Some(later));
        assert_eq!(failures.unlogged, 0, "the line carries the count");
    }
}
