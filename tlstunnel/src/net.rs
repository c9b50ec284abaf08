//! Stream sockets of both families behind one type: listeners bound with `SO_REUSEADDR`,
//! outgoing connections, and the reads a chat script needs, which peek first so that no byte
//! after the end of the script is taken from the socket.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::net::RecvFlags;
use tokio::io::{AsyncWriteExt as _, Interest};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UnixListener, UnixStream};
use tracing::{debug, info};

use crate::{Address, TunnelError};

/// The backlog of each listening socket.
const BACKLOG: u32 = 1024;

/// A connected stream socket.
#[derive(Debug)]
pub enum Stream {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A UNIX stream connection.
    Unix(UnixStream),
}

/// The address of a peer, as logged.
#[derive(Debug, Clone)]
pub enum Peer {
    /// A TCP peer.
    Inet(SocketAddr),
    /// A UNIX socket peer, named by the listening path since such peers are mostly unnamed.
    Unix(PathBuf),
}

/// A listening socket on one address.
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A UNIX stream listener with the path it created.
    Unix(UnixListener, PathBuf),
}

impl Stream {
    /// Connects to each socket address of `address` in turn and returns the first
    /// connection; a UNIX socket path is expanded with the identities first.
    ///
    /// # Errors
    ///
    /// [`TunnelError::UnsafeExpansion`] from the expansion, [`TunnelError::Resolve`], and
    /// [`TunnelError::Connect`] with the error of the last attempt.
    pub async fn connect(
        address: &Address,
        local_id: &str,
        remote_id: &str,
    ) -> Result<Self, TunnelError> {
        if let Some(path) = address.unix_path(local_id, remote_id)? {
            let stream =
                UnixStream::connect(&path)
                    .await
                    .map_err(|source| TunnelError::Connect {
                        address: path.display().to_string(),
                        source,
                    })?;
            return Ok(Self::Unix(stream));
        }

        let mut last_error = None;
        for socket_address in address.resolve().await? {
            match TcpStream::connect(socket_address).await {
                Ok(stream) => return Ok(Self::Tcp(stream)),
                Err(error) => {
                    debug!(address = %socket_address, %error, "connect failed");
                    last_error = Some(error);
                }
            }
        }
        Err(TunnelError::Connect {
            address: address.to_string(),
            source: last_error.unwrap_or_else(|| io::ErrorKind::NotFound.into()),
        })
    }

    /// Connects to the first of `addresses` that accepts, trying them in order.
    ///
    /// # Errors
    ///
    /// The error of the last address tried; see [`Stream::connect`].
    pub async fn connect_any(
        addresses: &[Address],
        local_id: &str,
        remote_id: &str,
    ) -> Result<Self, TunnelError> {
        let mut last_error = None;
        for address in addresses {
            match Self::connect(address, local_id, remote_id).await {
                Ok(stream) => return Ok(stream),
                Err(error) => {
                    debug!(%address, %error, "forward address failed");
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or(TunnelError::MissingOption {
            option: "-r/--remote-addr",
        }))
    }

    /// Waits for input and copies it into `buffer` without taking it from the socket.
    /// Returns 0 at the end of input.
    pub(crate) async fn peek(&self, buffer: &mut [u8]) -> io::Result<usize> {
        self.read_with(buffer, RecvFlags::PEEK).await
    }

    /// Takes `count` bytes from the socket that an earlier [`Stream::peek`] returned.
    pub(crate) async fn discard(&self, mut count: usize) -> io::Result<()> {
        let mut scratch = [0u8; 512];
        while count > 0 {
            let want = count.min(scratch.len());
            let got = self
                .read_with(&mut scratch[..want], RecvFlags::empty())
                .await?;
            if got == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            count -= got;
        }
        Ok(())
    }

    /// Writes all of `bytes`.
    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Tcp(stream) => stream.write_all(bytes).await,
            Self::Unix(stream) => stream.write_all(bytes).await,
        }
    }

    /// Converts the socket into a descriptor in blocking mode, as another process expects.
    ///
    /// # Errors
    ///
    /// [`TunnelError::Io`] when the socket cannot leave the runtime or switch modes.
    pub fn into_owned_fd(self) -> Result<OwnedFd, TunnelError> {
        let fd: OwnedFd = match self {
            Self::Tcp(stream) => stream.into_std().map(OwnedFd::from),
            Self::Unix(stream) => stream.into_std().map(OwnedFd::from),
        }
        .map_err(TunnelError::io("deregistering a socket from the runtime"))?;
        set_blocking(&fd, true)?;
        Ok(fd)
    }

    async fn read_with(&self, buffer: &mut [u8], flags: RecvFlags) -> io::Result<usize> {
        loop {
            let result = match self {
                Self::Tcp(stream) => {
                    stream.readable().await?;
                    stream.try_io(Interest::READABLE, || recv(stream.as_fd(), buffer, flags))
                }
                Self::Unix(stream) => {
                    stream.readable().await?;
                    stream.try_io(Interest::READABLE, || recv(stream.as_fd(), buffer, flags))
                }
            };
            match result {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Tcp(stream) => stream.as_fd(),
            Self::Unix(stream) => stream.as_fd(),
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inet(address) => address.fmt(f),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl Listener {
    /// Binds listeners on every socket address of `address`, with `SO_REUSEADDR` for TCP.
    /// A UNIX socket path left behind by a process that is gone is replaced.
    ///
    /// # Errors
    ///
    /// [`TunnelError::Resolve`] and [`TunnelError::Bind`].
    pub async fn bind(address: &Address) -> Result<Vec<Self>, TunnelError> {
        let bind_error = |source| TunnelError::Bind {
            address: address.to_string(),
            source,
        };
        if let Address::Unix { template } = address {
            let path = PathBuf::from(template);
            let listener = bind_unix(&path).await.map_err(bind_error)?;
            info!(address = %path.display(), "listening");
            return Ok(vec![Self::Unix(listener, path)]);
        }

        let mut listeners = Vec::new();
        for socket_address in address.resolve().await? {
            let socket = match socket_address {
                SocketAddr::V4(_) => TcpSocket::new_v4(),
                SocketAddr::V6(_) => TcpSocket::new_v6(),
            }
            .map_err(bind_error)?;
            socket.set_reuseaddr(true).map_err(bind_error)?;
            socket.bind(socket_address).map_err(bind_error)?;
            let listener = socket.listen(BACKLOG).map_err(bind_error)?;
            info!(address = %socket_address, "listening");
            listeners.push(Self::Tcp(listener));
        }
        Ok(listeners)
    }

    /// Accepts the next connection.
    pub(crate) async fn accept(&self) -> io::Result<(Stream, Peer)> {
        match self {
            Self::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                Ok((Stream::Tcp(stream), Peer::Inet(peer)))
            }
            Self::Unix(listener, path) => {
                let (stream, _) = listener.accept().await?;
                Ok((Stream::Unix(stream), Peer::Unix(path.clone())))
            }
        }
    }

    /// Removes the socket file of a UNIX listener.
    pub(crate) fn remove_socket_file(&self) {
        if let Self::Unix(_, path) = self
            && let Err(error) = std::fs::remove_file(path)
        {
            debug!(path = %path.display(), %error, "removing the socket file failed");
        }
    }
}

/// Binds a UNIX listener, replacing a stale socket file on which no process accepts.
async fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    match UnixListener::bind(path) {
        Err(error) if error.kind() == io::ErrorKind::AddrInUse => {
            let is_socket = std::os::unix::fs::FileTypeExt::is_socket(
                &std::fs::symlink_metadata(path)?.file_type(),
            );
            if !is_socket || UnixStream::connect(path).await.is_ok() {
                return Err(error);
            }
            debug!(path = %path.display(), "replacing a stale socket file");
            std::fs::remove_file(path)?;
            UnixListener::bind(path)
        }
        other => other,
    }
}

/// Receives into `buffer` without waiting.
fn recv(fd: BorrowedFd<'_>, buffer: &mut [u8], flags: RecvFlags) -> io::Result<usize> {
    let (received, _) = rustix::net::recv(fd, buffer, flags | RecvFlags::DONTWAIT)?;
    Ok(received)
}

/// Switches a descriptor between blocking and non-blocking mode.
pub(crate) fn set_blocking(fd: &impl AsFd, blocking: bool) -> Result<(), TunnelError> {
    rustix::io::ioctl_fionbio(fd, !blocking).map_err(|errno| TunnelError::Io {
        call: "ioctl FIONBIO",
        source: errno.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connects_by_remote_identity() {
        let directory = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let socket = directory.path().join("alice@example.com.sock");
        let listener = UnixListener::bind(&socket)
            .unwrap_or_else(|e| panic!("bind {}: {e}", socket.display()));
        let template = format!("{}/%R.sock", directory.path().display());
        let address = Address::parse(&template).unwrap_or_else(|e| panic!("{e}"));
        let addresses = [address];

        let opened = Stream::connect_any(&addresses, "mx.example.com", "alice@example.com").await;
        assert!(matches!(opened, Ok(Stream::Unix(_))), "{opened:?}");
        assert!(listener.accept().await.is_ok());

        let hostile = Stream::connect_any(&addresses, "", "../alice@example.com").await;
        assert!(
            matches!(hostile, Err(TunnelError::UnsafeExpansion { .. })),
            "{hostile:?}"
        );
    }

    #[tokio::test]
    async fn tries_forward_addresses_in_order() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .unwrap_or_else(|e| panic!("free port: {e}"));
        let open = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let open_address = open.local_addr().unwrap_or_else(|e| panic!("address: {e}"));
        let addresses = [
            Address::parse(&closed.to_string()).unwrap_or_else(|e| panic!("{e}")),
            Address::parse(&open_address.to_string()).unwrap_or_else(|e| panic!("{e}")),
        ];

        let stream = Stream::connect_any(&addresses, "", "").await;
        assert!(matches!(stream, Ok(Stream::Tcp(_))), "{stream:?}");
        assert!(open.accept().await.is_ok());

        let failed = Stream::connect_any(&addresses[..1], "", "").await;
        assert!(
            matches!(failed, Err(TunnelError::Connect { .. })),
            "{failed:?}"
        );
    }
}
