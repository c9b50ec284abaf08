//! The datagram relay: DTLS sessions over a connected UDP socket, relayed to a local datagram
//! socket (`SOCK_SEQPACKET` or `SOCK_DGRAM`) so that each application message stays one DTLS
//! record and one UDP datagram.
//!
//! Like the stream relay, everything runs as one task per session on the tokio runtime and no
//! call blocks a thread. The DTLS retransmission timer is a tokio sleep of
//! [`Session::retransmit_timeout`]; the handshake's total timeout is the caller's.
//!
//! - [`exchange_cookie`] replies to ClientHellos without a valid cookie with a HelloVerifyRequest
//!   and returns the first one with a valid cookie, so a server keeps no state for a
//!   ClientHello whose source address was spoofed.
//! - [`drive_dtls_handshake`] runs the handshake, retransmitting flights on the timer.
//! - [`run_datagram`] relays datagrams both ways. A plaintext datagram longer than one record
//!   can carry ([`Session::max_datagram_plaintext`]) ends the session with
//!   [`TlsError::DatagramTooLarge`]: the relay sends close_notify and closes the plaintext
//!   socket, so the application's next `recv` returns 0 and its next `send` fails with `EPIPE`.
//!   A session that receives no datagram from the peer for the idle timeout ends with
//!   [`RelayEnd::IdleTimedOut`].
//! - End of file from the application (only a `SOCK_SEQPACKET` socket reports one) sends
//!   close_notify and ends the relay; close_notify from the peer shuts down the plaintext
//!   socket's write side and ends it too, because DTLS has no half-closed state.
//!
//! `ECONNREFUSED` on the UDP socket (an ICMP port unreachable for an earlier datagram) ends a
//! client's handshake with [`RelayError::PeerUnreachable`], because no server listens on the
//! peer's port. Everywhere else it is not an error: a server's peer proved its address in the
//! cookie exchange, a spoofed ClientHello must not let an ICMP message end the wait for the
//! real one, and the idle timeout ends a session whose peer is gone.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags, Shutdown, SocketType};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace};

use super::error::{DescriptorRole, RelayError};
use super::query::{Query, QueryReceiver};
use super::socket::register;
use super::{LINGER_TIMEOUT, RelayEnd, RelayOutcome};
use crate::logging::{TARGET_COPYCAT, TARGET_TLS};
use crate::tls::{
    CookieKey, CookieState, HandshakeStatus, HelloCookie, ReadOutcome, Role, Session, TlsError,
};

/// Size of the receive buffers: the largest UDP payload, so no datagram is ever cut.
const DATAGRAM_BUFFER: usize = 64 * 1024;

/// Wait before the next handshake step when GnuTLS reports no retransmission timer.
const IDLE_HANDSHAKE_POLL: Duration = Duration::from_secs(1);

/// The handling of `ECONNREFUSED` by a receive or a send on the UDP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnRefused {
    /// Skip it: a receive waits for the next datagram and a send drops its datagram.
    Ignore,
    /// Fail with [`RelayError::PeerUnreachable`].
    Fail,
}

/// A non-blocking datagram socket (UDP, or a `SOCK_DGRAM` or `SOCK_SEQPACKET` UNIX socket)
/// registered with the reactor of the current tokio runtime.
#[derive(Debug)]
pub struct DatagramSocket {
    fd: AsyncFd<OwnedFd>,
    role: DescriptorRole,
    seqpacket: bool,
}

impl DatagramSocket {
    /// Switches `fd` to non-blocking mode, registers it with the reactor and checks that it is
    /// a datagram or sequenced-packet socket.
    ///
    /// # Errors
    /// [`RelayError::Setup`] when a system call fails and [`RelayError::NotDatagramSocket`]
    /// for any other kind of descriptor.
    ///
    /// # Panics
    /// Outside a tokio runtime with I/O enabled.
    pub fn new(fd: OwnedFd, role: DescriptorRole) -> Result<Self, RelayError> {
        let setup = |call, source: Errno| RelayError::Setup {
            role,
            call,
            source: source.into(),
        };
        let seqpacket = match rustix::net::sockopt::socket_type(&fd) {
            Ok(SocketType::DGRAM) => false,
            Ok(SocketType::SEQPACKET) => true,
            Ok(_) | Err(Errno::NOTSOCK) => return Err(RelayError::NotDatagramSocket { role }),
            Err(e) => return Err(setup("getsockopt(SO_TYPE)", e)),
        };
        rustix::io::ioctl_fionbio(&fd, true).map_err(|e| setup("ioctl(FIONBIO)", e))?;
        let fd = register(fd).map_err(|source| RelayError::Setup {
            role,
            call: "epoll_ctl",
            source,
        })?;
        Ok(Self {
            fd,
            role,
            seqpacket,
        })
    }

    /// Returns the descriptor number, for logs.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Deregisters the socket and returns the descriptor, still non-blocking.
    pub fn into_fd(self) -> OwnedFd {
        self.fd.into_inner()
    }

    /// Receives one datagram into `buf` and returns its full length, which exceeds
    /// `buf.len()` when the datagram was cut (`MSG_TRUNC`). `Ok(0)` from a `SOCK_SEQPACKET`
    /// socket is end of file. `ECONNREFUSED` is skipped.
    async fn recv(&self, buf: &mut [u8]) -> Result<usize, RelayError> {
        self.recv_or_refused(buf, OnRefused::Ignore).await
    }

    async fn recv_or_refused(
        &self,
        buf: &mut [u8],
        on_refused: OnRefused,
    ) -> Result<usize, RelayError> {
        loop {
            match rustix::net::recv(self.fd.get_ref(), &mut *buf, RecvFlags::TRUNC) {
                Ok((_, full)) => return Ok(full),
                Err(Errno::AGAIN) => self.wait(Interest::READABLE, "recv").await?,
                Err(Errno::INTR) => {}
                Err(Errno::CONNREFUSED) if on_refused == OnRefused::Fail => {
                    return Err(RelayError::PeerUnreachable { call: "recv" });
                }
                Err(Errno::CONNREFUSED) => {
                    trace!(target: TARGET_COPYCAT, fd = self.raw_fd(), "recv: connection refused");
                }
                Err(e) => return Err(self.io_error("recv", e.into())),
            }
        }
    }

    /// Sends `datagram` whole, waiting until the socket has room. `ECONNREFUSED` drops it,
    /// as the network would.
    async fn send(&self, datagram: &[u8]) -> Result<(), RelayError> {
        self.send_or_refused(datagram, OnRefused::Ignore).await
    }

    async fn send_or_refused(
        &self,
        datagram: &[u8],
        on_refused: OnRefused,
    ) -> Result<(), RelayError> {
        loop {
            match rustix::net::send(self.fd.get_ref(), datagram, SendFlags::NOSIGNAL) {
                Ok(_) => return Ok(()),
                Err(Errno::AGAIN) => self.wait(Interest::WRITABLE, "send").await?,
                Err(Errno::INTR) => {}
                Err(Errno::CONNREFUSED) if on_refused == OnRefused::Fail => {
                    return Err(RelayError::PeerUnreachable { call: "send" });
                }
                Err(Errno::CONNREFUSED) => {
                    trace!(target: TARGET_COPYCAT, fd = self.raw_fd(), "send: connection refused");
                    return Ok(());
                }
                Err(e) => return Err(self.io_error("send", e.into())),
            }
        }
    }

    async fn wait(&self, interest: Interest, call: &'static str) -> Result<(), RelayError> {
        let mut guard = self
            .fd
            .ready(interest)
            .await
            .map_err(|e| self.io_error(call, e))?;
        guard.clear_ready();
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

/// Waits for a ClientHello with a valid cookie on `cipher` and returns the cookie state and
/// the datagram, to be fed to a server session created with that state.
///
/// `client` identifies the peer in the cookie (its address). Each ClientHello without a valid
/// cookie gets a HelloVerifyRequest and is forgotten, and other datagrams are dropped.
/// This never ends by itself, so the caller bounds it with the handshake timeout.
///
/// # Errors
/// [`RelayError::Io`] when a system call fails and [`RelayError::Tls`] when GnuTLS cannot
/// build a HelloVerifyRequest.
pub async fn exchange_cookie(
    cipher: &DatagramSocket,
    key: &CookieKey,
    client: &[u8],
) -> Result<(CookieState, Vec<u8>), RelayError> {
    let mut buf = vec![0u8; DATAGRAM_BUFFER];
    loop {
        let len = cipher.recv(&mut buf).await?.min(buf.len());
        let datagram = &buf[..len];
        let verdict = key
            .check_hello(client, datagram)
            .map_err(|source| RelayError::Tls {
                call: "check_hello",
                source,
            })?;
        match verdict {
            HelloCookie::Verified(state) => return Ok((state, datagram.to_vec())),
            HelloCookie::Challenge(request) => {
                trace!(target: TARGET_TLS, fd = cipher.raw_fd(), "HelloVerifyRequest sent");
                cipher.send(&request).await?;
            }
            HelloCookie::NotClientHello => {}
        }
    }
}

/// Runs the DTLS handshake of `session` over `cipher` until it completes, retransmitting each
/// flight when [`Session::retransmit_timeout`] passes without a reply.
///
/// # Errors
/// [`RelayError::HandshakeTimedOut`] when `timeout` passes first, [`RelayError::Tls`] when the
/// handshake fails (GnuTLS's own total DTLS timeout is `TlsError::HandshakeTimeout`),
/// [`RelayError::PeerUnreachable`] when an ICMP port unreachable reaches a client, and
/// [`RelayError::Io`] when a system call fails.
pub async fn drive_dtls_handshake(
    session: &mut Session,
    cipher: &DatagramSocket,
    timeout: Option<Duration>,
) -> Result<(), RelayError> {
    let exchange = exchange_dtls_flights(session, cipher);
    let result = match timeout {
        None => exchange.await,
        Some(limit) => tokio::time::timeout(limit, exchange)
            .await
            .unwrap_or(Err(RelayError::HandshakeTimedOut { timeout: limit })),
    };
    if let Err(error) = &result {
        debug!(target: TARGET_TLS, %error, fd = cipher.raw_fd(), "dtls handshake ended");
    }
    result
}

async fn exchange_dtls_flights(
    session: &mut Session,
    cipher: &DatagramSocket,
) -> Result<(), RelayError> {
    let on_refused = if session.role() == Role::Client {
        OnRefused::Fail
    } else {
        OnRefused::Ignore
    };
    let mut buf = vec![0u8; DATAGRAM_BUFFER];
    loop {
        let status = session.handshake();
        if status.is_err() {
            // Send the alert that tells the peer why; a failure to send changes nothing.
            let _ = flush_datagrams(session, cipher).await;
        }
        let status = status.map_err(|source| RelayError::Tls {
            call: "handshake",
            source,
        })?;
        while let Some(datagram) = session.next_datagram() {
            cipher.send_or_refused(&datagram, on_refused).await?;
        }
        if status == HandshakeStatus::Done {
            return Ok(());
        }
        let wait = session
            .retransmit_timeout()
            .filter(|wait| !wait.is_zero())
            .unwrap_or(IDLE_HANDSHAKE_POLL);
        tokio::select! {
            received = cipher.recv_or_refused(&mut buf, on_refused) => {
                let len = received?.min(buf.len());
                session.feed_datagram(&buf[..len]);
            }
            () = tokio::time::sleep(wait) => {
                trace!(target: TARGET_TLS, fd = cipher.raw_fd(), "dtls retransmission timer");
            }
        }
    }
}

/// Sends every datagram the session has queued.
async fn flush_datagrams(session: &mut Session, cipher: &DatagramSocket) -> Result<(), RelayError> {
    while let Some(datagram) = session.next_datagram() {
        cipher.send(&datagram).await?;
    }
    Ok(())
}

/// Result of one wait of the datagram relay.
enum Event {
    Stop,
    Idle,
    CipherReceived(usize),
    PlaintextReceived(usize),
    Query(Option<Query>),
}

/// Relays datagrams between `cipher` (the UDP socket to the DTLS peer) and `plaintext` (the
/// application's datagram socket) through `session`, whose handshake must be complete, until
/// either side closes, a datagram is over-long, the session fails, no datagram arrives from
/// the peer for `idle_timeout`, or `stop` is cancelled. Between datagrams it runs the requests
/// of `queries`.
///
/// Both descriptors are closed when this returns. In the outcome, `peak_buffered` is 0,
/// because the relay holds at most one datagram each way in its fixed buffers.
///
/// # Panics
/// Outside a tokio runtime with I/O and time enabled.
pub async fn run_datagram(
    session: Session,
    cipher: DatagramSocket,
    plaintext: OwnedFd,
    stop: CancellationToken,
    queries: QueryReceiver,
    idle_timeout: Option<Duration>,
) -> RelayOutcome {
    let plaintext = match DatagramSocket::new(plaintext, DescriptorRole::Plaintext) {
        Ok(socket) => socket,
        Err(error) => {
            return RelayOutcome {
                plaintext_to_tls: 0,
                tls_to_plaintext: 0,
                peak_buffered: 0,
                end: RelayEnd::Failed(error),
            };
        }
    };
    let mut relay = DatagramRelay {
        session,
        cipher,
        plaintext,
        queries: Some(queries),
        cipher_in: vec![0; DATAGRAM_BUFFER].into_boxed_slice(),
        plaintext_in: vec![0; DATAGRAM_BUFFER].into_boxed_slice(),
        plaintext_out: vec![0; DATAGRAM_BUFFER].into_boxed_slice(),
        plaintext_to_tls: 0,
        tls_to_plaintext: 0,
    };
    debug!(target: TARGET_COPYCAT, cipher_fd = relay.cipher.raw_fd(),
        plaintext_fd = relay.plaintext.raw_fd(), ?idle_timeout, "datagram relay started");
    let end = relay
        .relay(&stop, idle_timeout)
        .await
        .unwrap_or_else(RelayEnd::Failed);
    if !matches!(
        &end,
        RelayEnd::Failed(RelayError::Io {
            role: DescriptorRole::Cipher,
            ..
        })
    ) {
        if !matches!(end, RelayEnd::Closed) {
            let _ = relay.session.send_close_notify();
        }
        let flush = flush_datagrams(&mut relay.session, &relay.cipher);
        let _ = tokio::time::timeout(LINGER_TIMEOUT, flush).await;
    }
    debug!(target: TARGET_COPYCAT, cipher_fd = relay.cipher.raw_fd(),
        plaintext_to_tls = relay.plaintext_to_tls, tls_to_plaintext = relay.tls_to_plaintext,
        ?end, "datagram relay ended");
    RelayOutcome {
        plaintext_to_tls: relay.plaintext_to_tls,
        tls_to_plaintext: relay.tls_to_plaintext,
        peak_buffered: 0,
        end,
    }
}

/// One relayed DTLS session with its sockets and buffers; dropping it frees the GnuTLS
/// session, then deregisters and closes both sockets.
struct DatagramRelay {
    session: Session,
    cipher: DatagramSocket,
    plaintext: DatagramSocket,
    /// Requests to run with the session between datagrams; `None` once every sender is gone.
    queries: Option<QueryReceiver>,
    cipher_in: Box<[u8]>,
    plaintext_in: Box<[u8]>,
    plaintext_out: Box<[u8]>,
    plaintext_to_tls: u64,
    tls_to_plaintext: u64,
}

impl DatagramRelay {
    async fn relay(
        &mut self,
        stop: &CancellationToken,
        idle_timeout: Option<Duration>,
    ) -> Result<RelayEnd, RelayError> {
        let mut idle_deadline = idle_timeout.map(|idle| Instant::now() + idle);
        loop {
            if self.deliver_plaintext().await? {
                // close_notify from the peer: the application reads end of file.
                if self.plaintext.seqpacket {
                    let _ = rustix::net::shutdown(self.plaintext.fd.get_ref(), Shutdown::Write);
                }
                return Ok(RelayEnd::Closed);
            }
            flush_datagrams(&mut self.session, &self.cipher).await?;

            match self.next_event(stop, idle_deadline).await? {
                Event::Stop => return Ok(RelayEnd::Stopped),
                Event::Idle => {
                    return Ok(RelayEnd::IdleTimedOut {
                        idle: idle_timeout.unwrap_or_default(),
                    });
                }
                Event::Query(Some(Query::Read(query))) => query(&self.session),
                Event::Query(Some(Query::Renegotiate(reply))) => {
                    // NOTE: DTLS sessions are not renegotiated; the request fails and the
                    // session continues.
                    let version = format!("{:?}", self.session.protocol_version());
                    let refusal = RelayError::Tls {
                        call: "renegotiate",
                        source: TlsError::RenegotiationUnavailable { version },
                    };
                    let _ = reply.send(Err(refusal));
                }
                Event::Query(None) => self.queries = None,
                Event::CipherReceived(len) => {
                    idle_deadline = idle_timeout.map(|idle| Instant::now() + idle);
                    let len = len.min(self.cipher_in.len());
                    self.session.feed_datagram(&self.cipher_in[..len]);
                }
                // NOTE: `recv` returns 0 for both end of file and a zero-length datagram on a
                // `SOCK_SEQPACKET` socket, so a zero-length datagram ends the session too.
                Event::PlaintextReceived(0) if self.plaintext.seqpacket => {
                    self.session
                        .send_close_notify()
                        .map_err(|source| RelayError::Tls {
                            call: "send_close_notify",
                            source,
                        })?;
                    flush_datagrams(&mut self.session, &self.cipher).await?;
                    return Ok(RelayEnd::Closed);
                }
                Event::PlaintextReceived(len) => {
                    let datagram = self.plaintext_in.get(..len).unwrap_or(&self.plaintext_in);
                    let sent = if len > self.plaintext_in.len() {
                        Err(TlsError::DatagramTooLarge {
                            len,
                            max: self.session.max_datagram_plaintext(),
                        })
                    } else {
                        self.session.send_datagram(datagram)
                    };
                    sent.map_err(|source| RelayError::Tls {
                        call: "send_datagram",
                        source,
                    })?;
                    self.plaintext_to_tls += len as u64;
                }
            }
        }
    }

    /// Decrypts every fed datagram and sends each record's plaintext to the application as one
    /// datagram. Returns whether the peer sent close_notify.
    async fn deliver_plaintext(&mut self) -> Result<bool, RelayError> {
        loop {
            match self.session.read_plaintext(&mut self.plaintext_out) {
                Ok(ReadOutcome::Data(len)) => {
                    self.plaintext.send(&self.plaintext_out[..len]).await?;
                    self.tls_to_plaintext += len as u64;
                }
                Ok(ReadOutcome::CloseNotify) => return Ok(true),
                Ok(ReadOutcome::WantRead) if self.session.buffered_datagrams() == 0 => {
                    return Ok(false);
                }
                // GnuTLS discarded a datagram (a replay, or one that failed to decrypt) and
                // more are queued.
                Ok(ReadOutcome::WantRead) => {}
                Err(error) if !error.is_fatal() => {
                    debug!(target: TARGET_COPYCAT, %error, "non-fatal dtls record error");
                }
                Err(source) => {
                    return Err(RelayError::Tls {
                        call: "read_plaintext",
                        source,
                    });
                }
            }
        }
    }

    async fn next_event(
        &mut self,
        stop: &CancellationToken,
        idle_deadline: Option<Instant>,
    ) -> Result<Event, RelayError> {
        let idle = async {
            match idle_deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let query = async {
            match self.queries.as_mut() {
                Some(queries) => queries.receiver.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = stop.cancelled() => Ok(Event::Stop),
            query = query => Ok(Event::Query(query)),
            received = self.cipher.recv(&mut self.cipher_in) => {
                received.map(Event::CipherReceived)
            }
            received = self.plaintext.recv(&mut self.plaintext_in) => {
                received.map(Event::PlaintextReceived)
            }
            () = idle => Ok(Event::Idle),
        }
    }
}
