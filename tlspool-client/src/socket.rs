//! Location of the daemon's socket and the mapping of socket errors to [`ClientError`].
//!
//! The lookup order is the TLS Pool's: an explicit path; else the first `socket_name` line of
//! the configuration file (`$TLSPOOL_CONFIG_FILE`, else `/etc/tlspool.conf`); else
//! `/var/run/tlspool.sock`. The path must fit `sun_path` of a UNIX socket address.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tlspool_core::config::{self, DEFAULT_SOCKET_PATH};
use tlspool_proto::ProtoError;

use crate::ClientError;

/// Maximum length in bytes of a socket path, the size of `sun_path` on Linux (108 bytes)
/// minus its NUL terminator.
pub const MAX_SOCKET_PATH_LEN: usize = 107;

/// Returns the socket path a client connects to.
///
/// `explicit` wins when given. Otherwise the first `socket_name` line of `config_file` is
/// used, or of `$TLSPOOL_CONFIG_FILE` (else `/etc/tlspool.conf`) when `config_file` is `None`.
/// A configuration file that cannot be read, has no `socket_name` line or has a syntax error
/// before the first one yields `/var/run/tlspool.sock`, as in the TLS Pool's client library.
///
/// # Errors
///
/// [`ClientError::SocketPathTooLong`] when the path does not fit `sun_path`.
pub fn resolve_socket_path(
    explicit: Option<&Path>,
    config_file: Option<&Path>,
) -> Result<PathBuf, ClientError> {
    let path = match (explicit, config_file) {
        (Some(path), _) => path.to_owned(),
        (None, Some(file)) => config::configvar(Some(file), "socket_name")
            .map_or_else(|| PathBuf::from(DEFAULT_SOCKET_PATH), PathBuf::from),
        (None, None) => config::client_socket_path(None),
    };
    check_length(path)
}

fn check_length(path: PathBuf) -> Result<PathBuf, ClientError> {
    let len = path.as_os_str().as_bytes().len();
    if len > MAX_SOCKET_PATH_LEN {
        return Err(ClientError::SocketPathTooLong {
            path,
            len,
            max: MAX_SOCKET_PATH_LEN,
        });
    }
    Ok(path)
}

/// Wraps a failed `connect` to `path`.
pub(crate) fn connect_error(path: &Path, source: io::Error) -> ClientError {
    ClientError::Connect {
        path: path.to_owned(),
        source,
    }
}

/// Builds the error of a `connect` to `path` that kept failing with `EAGAIN` for `waited`,
/// because the daemon accepted no connection from its full listen queue.
pub(crate) fn queue_full_error(path: &Path, waited: Duration) -> ClientError {
    let message = format!(
        "the daemon's queue of pending connections stayed full for {} ms; \
         the daemon is overloaded or does not accept connections",
        waited.as_millis()
    );
    connect_error(path, io::Error::new(io::ErrorKind::WouldBlock, message))
}

/// Maps a failed send: a socket the daemon has closed means the connection is gone.
pub(crate) fn send_error(error: ProtoError) -> ClientError {
    let closed = match &error {
        ProtoError::Io { source, .. } | ProtoError::DescriptorPassing { source } => matches!(
            source.kind(),
            io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::NotConnected
        ),
        _ => false,
    };
    if closed {
        ClientError::Disconnected
    } else {
        ClientError::Proto(error)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn config_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    #[test]
    fn explicit_path_wins_over_config_file() {
        let file = config_file("socket_name /tmp/from-config.sock\n");
        let path = resolve_socket_path(Some(Path::new("/tmp/x.sock")), Some(file.path()));
        assert_eq!(path.unwrap(), Path::new("/tmp/x.sock"));
    }

    #[test]
    fn config_file_gives_first_socket_name() {
        let file = config_file("log_level ERR\nsocket_name /tmp/a.sock\nsocket_name /tmp/b.sock\n");
        let path = resolve_socket_path(None, Some(file.path()));
        assert_eq!(path.unwrap(), Path::new("/tmp/a.sock"));
    }

    #[test]
    fn config_file_without_socket_name_gives_default() {
        let file = config_file("log_level ERR\n");
        let path = resolve_socket_path(None, Some(file.path()));
        assert_eq!(path.unwrap(), Path::new(DEFAULT_SOCKET_PATH));
    }

    #[test]
    fn missing_config_file_gives_default() {
        let directory = tempfile::tempdir().unwrap();
        let missing = directory.path().join("absent.conf");
        let path = resolve_socket_path(None, Some(&missing));
        assert_eq!(path.unwrap(), Path::new(DEFAULT_SOCKET_PATH));
    }

    #[test]
    fn path_of_107_bytes_fits() {
        let path = PathBuf::from(format!("/{}", "a".repeat(106)));
        assert_eq!(resolve_socket_path(Some(&path), None).unwrap(), path);
    }

    #[test]
    fn path_of_108_bytes_is_rejected() {
        let path = PathBuf::from(format!("/{}", "a".repeat(107)));
        let Err(ClientError::SocketPathTooLong { len, max, .. }) =
            resolve_socket_path(Some(&path), None)
        else {
            panic!("a 108-byte socket path was accepted");
        };
        assert_eq!(len, 108);
        assert_eq!(max, 107);
    }

    #[test]
    fn too_long_socket_name_in_config_is_rejected() {
        let file = config_file(&format!("socket_name /{}\n", "b".repeat(200)));
        let result = resolve_socket_path(None, Some(file.path()));
        assert!(matches!(
            result,
            Err(ClientError::SocketPathTooLong { len: 201, .. })
        ));
    }

    #[test]
    fn broken_pipe_on_send_is_disconnected() {
        let error = ProtoError::Io {
            call: "sendmsg",
            source: io::ErrorKind::BrokenPipe.into(),
        };
        assert!(matches!(send_error(error), ClientError::Disconnected));
    }
}
