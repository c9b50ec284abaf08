//! Non-blocking stream sockets registered with the tokio reactor: the readiness-driven `recv`,
//! `send` and `shutdown` the handshake driver and the relay use, and the public
//! [`CipherSocket`] handshakes run on.

use std::io;
use std::os::fd::{AsFd as _, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags, Shutdown, SocketType};
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::io::{Interest, Ready};
use tracing::debug;

use super::error::{DescriptorRole, RelayError};
use super::spare;
use crate::logging::TARGET_COPYCAT;

/// A non-blocking stream socket registered with the reactor of the current tokio runtime.
///
/// Each call first tries the system call, and waits for readiness only when it returns
/// `EAGAIN`. The reactor's cached readiness may be stale (see [`Self::hung_up`]), so the system
/// call, not the cache, decides whether an operation would block.
#[derive(Debug)]
pub(super) struct StreamSocket {
    fd: AsyncFd<OwnedFd>,
    role: DescriptorRole,
}

impl StreamSocket {
    /// Checks that `fd` is a stream socket, switches it to non-blocking mode and registers it
    /// with the reactor.
    ///
    /// The check comes first, so a regular file or a pipe is rejected as
    /// [`RelayError::NotStreamSocket`] before `epoll_ctl` fails on it with `EPERM`. Must run
    /// inside a tokio runtime with I/O enabled.
    pub(super) fn new(fd: OwnedFd, role: DescriptorRole) -> Result<Self, RelayError> {
        let setup = |call, source: Errno| RelayError::Setup {
            role,
            call,
            source: source.into(),
        };
        check_stream_socket(fd.as_fd(), role)?;
        rustix::io::ioctl_fionbio(&fd, true).map_err(|e| setup("ioctl(FIONBIO)", e))?;
        if role == DescriptorRole::Cipher {
            disable_nagle(fd.as_fd());
        }
        let fd = register(fd).map_err(|source| RelayError::Setup {
            role,
            call: "epoll_ctl",
            source,
        })?;
        Ok(Self { fd, role })
    }

    /// Returns the descriptor number, for logs.
    pub(super) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Deregisters the socket from the reactor and returns the descriptor, still non-blocking.
    pub(super) fn into_fd(self) -> OwnedFd {
        self.fd.into_inner()
    }

    /// Receives into `buf`, waiting until data or end of file arrives; `Ok(0)` is end of file.
    ///
    /// The reactor's read readiness is cleared only after `recv` returns `EAGAIN`, so while it
    /// is clear the socket has nothing new and this waits without a system call.
    pub(super) async fn recv(&self, buf: &mut [u8]) -> Result<usize, RelayError> {
        loop {
            let mut guard = self.readable().await?;
            match rustix::net::recv(self.fd.get_ref(), &mut *buf, RecvFlags::empty()) {
                Ok((n, _)) => {
                    clear_after_short_read(&mut guard, n, buf.len());
                    return Ok(n);
                }
                Err(Errno::AGAIN) => guard.clear_ready_matching(Ready::READABLE),
                Err(Errno::INTR) => {}
                Err(e) => return Err(self.io_error("recv", e.into())),
            }
        }
    }

    /// Receives into `buf` as [`Self::recv`] does, but allocates `buf` only once the socket is
    /// readable, and frees it first when the previous read did not fill it.
    ///
    /// A read shorter than the buffer took everything the socket had queued, so a relay that
    /// waits between two bursts of data keeps no read buffer allocated. A freed buffer goes to
    /// the thread's spare buffers, so the next read reuses its memory instead of allocating it.
    pub(super) async fn recv_into(&self, buf: &mut ReadBuffer) -> Result<usize, RelayError> {
        if buf.last_read < buf.capacity {
            buf.release();
        }
        loop {
            let mut guard = self.readable().await?;
            match rustix::net::recv(self.fd.get_ref(), buf.get_mut(), RecvFlags::empty()) {
                Ok((n, _)) => {
                    buf.last_read = n;
                    clear_after_short_read(&mut guard, n, buf.capacity);
                    return Ok(n);
                }
                Err(Errno::AGAIN) => {
                    buf.release();
                    guard.clear_ready_matching(Ready::READABLE);
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(self.io_error("recv", e.into())),
            }
        }
    }

    /// Waits until the reactor reports the socket readable or its read side closed.
    async fn readable(&self) -> Result<AsyncFdReadyGuard<'_, OwnedFd>, RelayError> {
        self.fd
            .ready(Interest::READABLE)
            .await
            .map_err(|e| self.io_error("recv", e))
    }

    /// Sends from `buf`, waiting until the socket accepts at least one byte; returns the count.
    ///
    /// `MSG_NOSIGNAL` turns a write to a closed peer into `EPIPE` instead of `SIGPIPE`.
    pub(super) async fn send(&self, buf: &[u8]) -> Result<usize, RelayError> {
        loop {
            match rustix::net::send(self.fd.get_ref(), buf, SendFlags::NOSIGNAL) {
                Ok(n) => return Ok(n),
                Err(Errno::AGAIN) => self.wait(Interest::WRITABLE, "send").await?,
                Err(Errno::INTR) => {}
                Err(e) => return Err(self.io_error("send", e.into())),
            }
        }
    }

    /// Shuts down the write direction, so the peer reads end of file.
    pub(super) fn shutdown_write(&self) -> Result<(), RelayError> {
        rustix::net::shutdown(self.fd.get_ref(), Shutdown::Write)
            .map_err(|e| self.io_error("shutdown", e.into()))
    }

    /// Receives into `buf` without waiting: `None` when nothing is queued, `Some(0)` at end
    /// of file.
    pub(super) fn try_recv(&self, buf: &mut [u8]) -> Result<Option<usize>, RelayError> {
        loop {
            match rustix::net::recv(self.fd.get_ref(), &mut *buf, RecvFlags::DONTWAIT) {
                Ok((n, _)) => return Ok(Some(n)),
                Err(Errno::AGAIN) => return Ok(None),
                Err(Errno::INTR) => {}
                Err(e) => return Err(self.io_error("recv", e.into())),
            }
        }
    }

    /// Sets `SO_LINGER` to zero, so closing the descriptor resets a TCP connection
    /// (the peer's reads fail with `ECONNRESET`) instead of ending it with a FIN.
    pub(super) fn reset_on_close(&self) -> Result<(), RelayError> {
        rustix::net::sockopt::set_socket_linger(self.fd.get_ref(), Some(Duration::ZERO))
            .map_err(|e| self.io_error("setsockopt(SO_LINGER)", e.into()))
    }

    /// Completes when the reactor reports that the socket can no longer be written to: the peer
    /// closed both directions (`EPOLLHUP`) or the connection failed (`EPOLLERR`).
    ///
    /// Readiness that reports plain writability is cleared, so this waits for the next event of
    /// the socket. That is safe for [`Self::send`] because it tries the system call before it
    /// consults the reactor.
    pub(super) async fn hung_up(&self) -> Result<(), RelayError> {
        loop {
            let mut guard = self
                .fd
                .ready(Interest::WRITABLE)
                .await
                .map_err(|e| self.io_error("epoll_wait", e))?;
            if guard.ready().is_write_closed() {
                return Ok(());
            }
            guard.clear_ready_matching(Ready::WRITABLE);
        }
    }

    /// Waits until the reactor reports `interest`, then clears that readiness so the caller's
    /// next `EAGAIN` waits for a fresh event.
    async fn wait(&self, interest: Interest, call: &'static str) -> Result<(), RelayError> {
        let mut guard = self
            .fd
            .ready(interest)
            .await
            .map_err(|e| self.io_error(call, e))?;
        let ready = guard.ready();
        let closed = if interest.is_readable() {
            ready.is_read_closed()
        } else {
            ready.is_write_closed()
        };
        // A closed direction stays reported: the next system call returns end of file or the
        // error, so keeping it cannot spin.
        if !closed {
            guard.clear_ready();
        }
        Ok(())
    }

    fn io_error(&self, call: &'static str, source: io::Error) -> RelayError {
        RelayError::Io {
            role: self.role,
            call,
            source,
        }
    }
}

/// Checks that `fd` is a stream socket, as a TLS session over TCP and its relay need.
fn check_stream_socket(fd: BorrowedFd<'_>, role: DescriptorRole) -> Result<(), RelayError> {
    match rustix::net::sockopt::socket_type(fd) {
        Ok(SocketType::STREAM) => Ok(()),
        Ok(_) | Err(Errno::NOTSOCK) => Err(RelayError::NotStreamSocket { role }),
        Err(e) => Err(RelayError::Setup {
            role,
            call: "getsockopt(SO_TYPE)",
            source: e.into(),
        }),
    }
}

/// Clears the read readiness after a read of `n` bytes that did not fill `len`: a stream
/// socket that returns less than was asked for has nothing more queued, so the next read waits
/// for the reactor's next event instead of returning `EAGAIN`. An event that arrived since
/// `guard` was taken is kept, and end of file (`n` of 0) keeps the readiness set.
fn clear_after_short_read(guard: &mut AsyncFdReadyGuard<'_, OwnedFd>, n: usize, len: usize) {
    if n > 0 && n < len {
        guard.clear_ready_matching(Ready::READABLE);
    }
}

/// Sets `TCP_NODELAY` on a TCP socket, so a record shorter than the segment size goes out at
/// once instead of waiting for the peer to acknowledge the previous one. The relay writes whole
/// TLS records, so bulk data still fills its segments. Other sockets are left alone, and a
/// failure only costs latency, so it is logged and the session goes on.
fn disable_nagle(fd: BorrowedFd<'_>) {
    let is_tcp = matches!(
        rustix::net::sockopt::socket_protocol(fd),
        Ok(Some(protocol)) if protocol == rustix::net::ipproto::TCP
    );
    if !is_tcp {
        return;
    }
    if let Err(error) = rustix::net::sockopt::set_tcp_nodelay(fd, true) {
        debug!(target: TARGET_COPYCAT, %error, "setsockopt(TCP_NODELAY) failed");
    }
}

/// A relay buffer of a fixed capacity whose memory is allocated only while data moves through
/// it, so an idle session does not hold its 16 to 32 KiB. It reads as an empty slice while it
/// is not allocated, and its memory comes from and returns to the thread's spare buffers.
#[derive(Debug)]
pub(super) struct ReadBuffer {
    data: Vec<u8>,
    capacity: usize,
    /// The length of the last read by [`StreamSocket::recv_into`].
    last_read: usize,
}

impl ReadBuffer {
    /// Creates an unallocated buffer of `capacity` bytes.
    pub(super) const fn new(capacity: usize) -> Self {
        Self {
            data: Vec::new(),
            capacity,
            last_read: 0,
        }
    }

    /// Returns the whole buffer, allocating it first when it is not allocated.
    pub(super) fn get_mut(&mut self) -> &mut [u8] {
        if self.data.is_empty() {
            self.data = spare::take(self.capacity);
        }
        &mut self.data
    }

    /// Frees the memory when `filled`, the bytes of the last use, did not fill the buffer.
    pub(super) fn release_after(&mut self, filled: usize) {
        if filled < self.capacity {
            self.release();
        }
    }

    fn release(&mut self) {
        spare::give(std::mem::take(&mut self.data));
    }

    #[cfg(test)]
    fn is_allocated(&self) -> bool {
        !self.data.is_empty()
    }
}

impl Drop for ReadBuffer {
    fn drop(&mut self) {
        self.release();
    }
}

impl std::ops::Deref for ReadBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.data
    }
}

/// Registers `fd` with the reactor of the current runtime for reading and writing.
#[expect(
    unsafe_code,
    reason = "tokio's registration requires the caller to keep the descriptor open"
)]
pub(super) fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` stays open and returns the same number from `as_raw_fd` until it is
    // dropped, and neither `StreamSocket` nor `DatagramSocket` replaces it, so the descriptor
    // outlives the registration, which `AsyncFd` removes before it drops or returns the
    // `OwnedFd`.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE | Interest::WRITABLE) }
        .map_err(|e| e.into_parts().1)
}

/// The socket to the TLS peer, prepared for [`drive_handshake`](super::drive_handshake).
///
/// [`CipherSocket::into_fd`] hands the descriptor back for [`run`](super::run).
#[derive(Debug)]
pub struct CipherSocket {
    pub(super) socket: StreamSocket,
}

impl CipherSocket {
    /// Checks that `fd` is a stream socket, switches it to non-blocking mode and registers it
    /// with the reactor of the current tokio runtime.
    ///
    /// # Errors
    /// [`RelayError::NotStreamSocket`] for anything but a stream socket, such as a regular
    /// file, and [`RelayError::Setup`] when a system call fails.
    ///
    /// # Panics
    /// Outside a tokio runtime with I/O enabled.
    pub fn new(fd: OwnedFd) -> Result<Self, RelayError> {
        StreamSocket::new(fd, DescriptorRole::Cipher).map(|socket| Self { socket })
    }

    /// Checks that `fd` is a stream socket, for code that reads from the descriptor before it
    /// creates the [`CipherSocket`].
    ///
    /// # Errors
    /// [`RelayError::NotStreamSocket`] for anything but a stream socket, such as a regular
    /// file, and [`RelayError::Setup`] when `getsockopt` fails.
    pub fn check(fd: BorrowedFd<'_>) -> Result<(), RelayError> {
        check_stream_socket(fd, DescriptorRole::Cipher)
    }

    /// Deregisters the socket and returns the descriptor, which stays in non-blocking mode.
    pub fn into_fd(self) -> OwnedFd {
        self.socket.into_fd()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use super::*;

    /// Returns the receiving end as a registered socket and the sending end.
    fn socket_pair() -> (StreamSocket, UnixStream) {
        let (receiver, sender) = UnixStream::pair().unwrap();
        let socket = StreamSocket::new(receiver.into(), DescriptorRole::Cipher).unwrap();
        (socket, sender)
    }

    /// Runs `recv_into` until it has waited for 50 ms without data, then drops it.
    async fn wait_without_data(socket: &StreamSocket, buf: &mut ReadBuffer) {
        let waited = tokio::time::timeout(Duration::from_millis(50), socket.recv_into(buf)).await;
        assert!(
            waited.is_err(),
            "recv_into returned {waited:?} without data"
        );
    }

    #[tokio::test]
    async fn read_buffer_is_unallocated_while_waiting() {
        let (socket, mut sender) = socket_pair();
        let mut buf = ReadBuffer::new(8);

        wait_without_data(&socket, &mut buf).await;
        assert!(!buf.is_allocated());

        sender.write_all(b"abc").unwrap();
        assert_eq!(socket.recv_into(&mut buf).await.unwrap(), 3);
        assert_eq!(&buf[..3], b"abc");

        wait_without_data(&socket, &mut buf).await;
        assert!(
            !buf.is_allocated(),
            "a short read left the buffer allocated"
        );
    }

    #[tokio::test]
    async fn read_buffer_stays_allocated_after_full_read() {
        let (socket, mut sender) = socket_pair();
        let mut buf = ReadBuffer::new(8);
        sender.write_all(b"12345678xyz").unwrap();

        assert_eq!(socket.recv_into(&mut buf).await.unwrap(), 8);
        assert_eq!(&buf[..8], b"12345678");
        assert!(buf.is_allocated());

        assert_eq!(socket.recv_into(&mut buf).await.unwrap(), 3);
        assert_eq!(&buf[..3], b"xyz");
    }

    #[test]
    fn read_buffer_releases_after_short_use_only() {
        let mut buf = ReadBuffer::new(4);
        assert!(buf.is_empty());

        buf.get_mut().copy_from_slice(b"full");
        buf.release_after(4);
        assert_eq!(&buf[..], b"full");

        buf.release_after(3);
        assert!(!buf.is_allocated());
        assert!(buf.is_empty());
    }
}
