//! The handshake driver: runs [`Session::handshake`] against a [`CipherSocket`] on the tokio
//! runtime, sending each flight and waiting for the peer's, within an optional timeout.

use std::time::Duration;

use tracing::debug;

use super::LINGER_TIMEOUT;
use super::error::RelayError;
use super::socket::{CipherSocket, StreamSocket};
use crate::logging::TARGET_TLS;
use crate::tls::{HandshakeStatus, Session};

/// Size of one read from the cipher socket; a TLS record is at most 16 KiB plus 2 KiB of
/// expansion and its 5-byte header, so this holds one at a time or more.
pub(super) const CIPHER_READ_SIZE: usize = 32 * 1024;

/// Runs the TLS handshake of `session` over `cipher` until it completes.
///
/// The task waits for socket readiness on the runtime's reactor and never blocks a worker
/// thread. Ciphertext that arrives together with the peer's last flight (early application
/// data, TLS 1.3 session tickets) stays in the session for [`run`](super::run) to deliver.
///
/// When the handshake fails, the alert GnuTLS queued is sent before the error returns, bounded
/// by `timeout` and by the 10 s linger time.
///
/// # Errors
/// [`RelayError::HandshakeTimedOut`] when `timeout` passes first, [`RelayError::Tls`] when the
/// handshake fails, [`RelayError::ClosedDuringHandshake`] when the peer closes the connection,
/// and [`RelayError::Io`] when a system call fails.
pub async fn drive_handshake(
    session: &mut Session,
    cipher: &CipherSocket,
    timeout: Option<Duration>,
) -> Result<(), RelayError> {
    let exchange = exchange_flights(session, &cipher.socket);
    let result = match timeout {
        None => exchange.await,
        Some(limit) => tokio::time::timeout(limit, exchange)
            .await
            .unwrap_or(Err(RelayError::HandshakeTimedOut { timeout: limit })),
    };
    if let Err(error) = &result {
        debug!(target: TARGET_TLS, %error, fd = cipher.socket.raw_fd(), "handshake ended");
    }
    result
}

/// Alternates between [`Session::handshake`] and the socket until the handshake is done.
async fn exchange_flights(session: &mut Session, cipher: &StreamSocket) -> Result<(), RelayError> {
    let mut buf = vec![0u8; CIPHER_READ_SIZE];
    let mut eof = false;
    loop {
        let status = session.handshake();
        if status.is_err() {
            // Send the alert that tells the peer why; a failure to send changes nothing.
            let flush = flush_ciphertext(session, cipher);
            let _ = tokio::time::timeout(LINGER_TIMEOUT, flush).await;
        }
        let status = status.map_err(|source| RelayError::Tls {
            call: "handshake",
            source,
        })?;
        flush_ciphertext(session, cipher).await?;

        if status == HandshakeStatus::Done {
            return Ok(());
        }
        if eof {
            return Err(RelayError::ClosedDuringHandshake);
        }
        let n = cipher.recv(&mut buf).await?;
        if n == 0 {
            // GnuTLS reports the truncated handshake on its next call.
            session.feed_eof();
            eof = true;
        }
        session.feed_ciphertext(&buf[..n]);
    }
}

/// Sends all of the session's pending ciphertext.
pub(super) async fn flush_ciphertext(
    session: &mut Session,
    cipher: &StreamSocket,
) -> Result<(), RelayError> {
    while !session.pending_ciphertext().is_empty() {
        let sent = cipher.send(session.pending_ciphertext()).await?;
        session.consume(sent);
    }
    Ok(())
}
