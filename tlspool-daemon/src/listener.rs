//! The listening sockets of `socket_name` lines: a stale socket file is removed, the socket is
//! bound and listens, then gets the owner, group and mode of the `socket_*` lines before it.
//!
//! A path that exists is removed only if it is a socket on which nobody accepts connections.
//! A live socket or any other kind of file stops the start-up.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
use nix::unistd::{Gid, Group, Uid, User, chown};
use tracing::info;

use tlspool_core::config::SocketSpec;
use tlspool_core::logging::TARGET_DAEMON;

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
    let errno_error = |call| move |errno: nix::errno::Errno| socket_error(path, call)(errno.into());
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
}
