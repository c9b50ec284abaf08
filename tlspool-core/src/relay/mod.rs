//! The event-driven relay ("copycat") between a TLS peer and a local application, and the
//! handshake driver that precedes it.
//!
//! Both run as tasks on the daemon's tokio runtime: one task per session, no thread per
//! connection, and no blocking system call. Each descriptor is made non-blocking and registered
//! with the reactor through [`tokio::io::unix::AsyncFd`]. Any stream socket works (TCP, a UNIX
//! socketpair); anything else, such as a regular file that epoll rejects, is an error at setup.
//!
//! ```no_run
//! use std::os::fd::OwnedFd;
//! use std::time::Duration;
//!
//! use tlspool_core::relay::{self, CipherSocket, RelayError};
//! use tlspool_core::tls::Session;
//! use tokio_util::sync::CancellationToken;
//!
//! async fn serve(
//!     mut session: Session,
//!     peer: OwnedFd,
//!     app: OwnedFd,
//!     stop: CancellationToken,
//! ) -> Result<(), RelayError> {
//!     let cipher = CipherSocket::new(peer)?;
//!     relay::drive_handshake(&mut session, &cipher, Some(Duration::from_secs(40))).await?;
//!     let outcome = relay::run(session, cipher.into_fd(), app, stop).await;
//!     println!("{} bytes sent, {} received", outcome.plaintext_to_tls, outcome.tls_to_plaintext);
//!     Ok(())
//! }
//! ```
//!
//! # State machine
//!
//! The relay keeps one state per direction and a loop that alternates between steps that need
//! no waiting and one wait for readiness:
//!
//! - TLS → plaintext: decrypt one record (at most [`MAX_RECORD_PLAINTEXT`](crate::tls::MAX_RECORD_PLAINTEXT) bytes) into the
//!   relay's buffer, send it to the application, and only then decrypt the next. Plaintext
//!   GnuTLS already holds is decrypted without reading the cipher socket; the cipher socket is
//!   read only when GnuTLS reports that it holds no complete record.
//! - Plaintext → TLS: read up to [`MAX_RECORD_PLAINTEXT`](crate::tls::MAX_RECORD_PLAINTEXT) bytes from the application, encrypt
//!   them as one record, and read again only while less than 16 KiB of ciphertext waits to be
//!   sent.
//!
//! So a full send buffer on one side stops reading on the other (backpressure): no byte is
//! dropped, a full buffer never ends the session, and the bytes buffered per session stay
//! bounded: under 16 KiB plus one record of ciphertext to send, one incomplete record plus one
//! 32 KiB read of received ciphertext, and one decrypted record, about 100 KiB in all.
//! [`RelayOutcome::peak_buffered`] records the peak, and the tests assert it stays under
//! 128 KiB.
//!
//! # Half-close
//!
//! - End of file from the application queues close_notify; once it is sent, the cipher
//!   socket's write side is shut down. TLS → plaintext keeps flowing.
//! - close_notify from the peer (a TCP end of file after it is fine) shuts down the plaintext
//!   socket's write side once every decrypted byte is sent. Plaintext → TLS keeps flowing.
//! - The relay ends with [`RelayEnd::Closed`] when both write sides are shut down.
//! - A socket that was read to its end and then hangs up entirely (`EPOLLHUP`) ends the relay
//!   with [`RelayEnd::HungUp`], because nothing more can be delivered to it.
//!
//! A cipher socket end of file or hang-up without close_notify is a truncation: the bytes
//! decrypted before it are delivered, then the session ends with
//! [`TlsError::PrematureTermination`](crate::tls::TlsError::PrematureTermination).
//!
//! # Ending and freeing
//!
//! A fatal TLS error (a warning alert is not fatal), a failed system call on either descriptor,
//! a hang-up or the stop signal ends the relay. After the stop signal, the relay reads what the
//! application wrote up to then (until its socket has nothing queued), sends it, then sends
//! close_notify, all within [`STOP_GRACE_PERIOD`]. After any other end, ciphertext GnuTLS
//! still holds (close_notify, or records encrypted before a hang-up) is sent for at most 10 s,
//! unless the cipher socket failed; this replaces the `SO_LINGER` of 10 s the TLS Pool sets,
//! which would block a worker thread in `close`.
//!
//! The application reads end of file cleanly only after the peer's close_notify. Any other
//! end, such as a truncation, a TLS error or a stop, closes the plaintext socket with
//! `SO_LINGER` set to zero: a TCP application's reads then fail with `ECONNRESET` after the
//! delivered bytes, and a UNIX socket reports `POLLHUP` and fails writes with `EPIPE`.
//!
//! Then the GnuTLS session is deinitialised, and both descriptors are deregistered and
//! closed, on every path. When the future of [`run`] is dropped instead, at any await point,
//! dropping it frees the same things, without the final flush.

mod datagram;
mod error;
mod handshake;
mod privacy;
mod pump;
mod query;
mod socket;
mod spare;
mod state;

use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use datagram::{DatagramSocket, drive_dtls_handshake, exchange_cookie, run_datagram};
pub use error::{DescriptorRole, RelayError};
pub use handshake::drive_handshake;
pub use privacy::authenticate_after_precursor;
pub use query::{QUERY_QUEUE_LEN, QueryReceiver, SessionQueries, query_channel};
pub use socket::CipherSocket;

use crate::tls::Session;

/// Time the final flush of ciphertext may take, the linger time of the TLS Pool.
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(10);

/// Time a stopped session may take to send the plaintext the application wrote before the
/// stop, then close_notify. Both the control connection's close and the daemon's SIGTERM
/// stop a session this way.
pub const STOP_GRACE_PERIOD: Duration = Duration::from_secs(2);

/// How a relayed session ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum RelayEnd {
    /// Both directions were closed: close_notify went each way.
    Closed,
    /// The peer of this descriptor closed it entirely after its data was read.
    HungUp(DescriptorRole),
    /// The stop signal was cancelled.
    Stopped,
    /// No datagram arrived from the DTLS peer for this long.
    IdleTimedOut {
        /// The idle timeout that passed.
        idle: Duration,
    },
    /// A system call or the TLS session failed.
    Failed(RelayError),
}

/// Result of [`run`]: the bytes relayed each way and how the session ended.
#[derive(Debug)]
#[non_exhaustive]
pub struct RelayOutcome {
    /// Plaintext bytes read from the application and encrypted towards the TLS peer.
    pub plaintext_to_tls: u64,
    /// Plaintext bytes decrypted from the TLS peer and sent to the application.
    pub tls_to_plaintext: u64,
    /// Largest number of bytes buffered at once, beyond the relay's fixed 64 KiB of read
    /// buffers: ciphertext fed to GnuTLS and not yet decrypted, ciphertext waiting to be sent,
    /// plaintext GnuTLS holds decrypted, and decrypted bytes waiting to be sent.
    pub peak_buffered: usize,
    /// Why the relay ended.
    pub end: RelayEnd,
}

/// Relays between `cipher` (the socket to the TLS peer) and `plaintext` (the socket to the
/// application) through `session`, whose handshake must be complete, until both directions
/// are closed, either descriptor fails or hangs up, the session fails or `stop` is cancelled.
///
/// Both descriptors are closed when this returns. A setup failure (a descriptor that is not a
/// stream socket, or one epoll rejects) returns at once as [`RelayEnd::Failed`].
///
/// # Panics
/// Outside a tokio runtime with I/O and time enabled.
pub async fn run(
    session: Session,
    cipher: OwnedFd,
    plaintext: OwnedFd,
    stop: CancellationToken,
) -> RelayOutcome {
    let (_, queries) = query_channel();
    run_with_queries(session, cipher, plaintext, stop, queries).await
}

/// Relays as [`run`] does, and between records runs the requests that arrive through the
/// [`SessionQueries`] of `queries`.
///
/// # Panics
/// Outside a tokio runtime with I/O and time enabled.
pub async fn run_with_queries(
    session: Session,
    cipher: OwnedFd,
    plaintext: OwnedFd,
    stop: CancellationToken,
    queries: QueryReceiver,
) -> RelayOutcome {
    run_with_early_plaintext(session, cipher, plaintext, stop, queries, Vec::new()).await
}

/// Relays as [`run_with_queries`] does, and first sends `early` to the application: the
/// plaintext that [`authenticate_after_precursor`] received before the relay started.
///
/// # Panics
/// Outside a tokio runtime with I/O and time enabled.
pub async fn run_with_early_plaintext(
    session: Session,
    cipher: OwnedFd,
    plaintext: OwnedFd,
    stop: CancellationToken,
    queries: QueryReceiver,
    early: Vec<u8>,
) -> RelayOutcome {
    let relay = pump::Relay::new(session, cipher, plaintext, queries);
    run_prepared(relay, early, &stop).await
}

/// Relays as [`run_with_early_plaintext`] does, over the `cipher` socket the handshake ran
/// on, which stays registered with the reactor in between.
///
/// # Panics
/// Outside a tokio runtime with I/O and time enabled.
pub async fn run_on_socket(
    session: Session,
    cipher: CipherSocket,
    plaintext: OwnedFd,
    stop: CancellationToken,
    queries: QueryReceiver,
    early: Vec<u8>,
) -> RelayOutcome {
    let relay = pump::Relay::on_socket(session, cipher.socket, plaintext, queries);
    run_prepared(relay, early, &stop).await
}

async fn run_prepared(
    relay: Result<pump::Relay, RelayError>,
    early: Vec<u8>,
    stop: &CancellationToken,
) -> RelayOutcome {
    match relay {
        Ok(relay) => relay.with_early_plaintext(early).run(stop).await,
        Err(error) => RelayOutcome {
            plaintext_to_tls: 0,
            tls_to_plaintext: 0,
            peak_buffered: 0,
            end: RelayEnd::Failed(error),
        },
    }
}

#[cfg(test)]
mod tests;
