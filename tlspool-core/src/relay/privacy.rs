//! The second step of privacy mode: after the anonymous precursor handshake, the secure
//! renegotiation that exchanges the certificates under its encryption, run on the cipher
//! socket before the relay starts.
//!
//! The server sends a HelloRequest at once, and the client replies with its ClientHello. Application data the
//! peer sends before the authenticated handshake completes is kept, up to a limit, for the
//! relay to deliver first.

use std::time::Duration;

use tracing::debug;

use super::error::RelayError;
use super::handshake::{CIPHER_READ_SIZE, flush_ciphertext};
use super::socket::CipherSocket;
use crate::logging::TARGET_TLS;
use crate::tls::{MAX_RECORD_PLAINTEXT, ReadOutcome, RenegotiationStatus, Role, Session, TlsError};

/// Renegotiates `session`, whose handshake was the anonymous precursor, with the
/// certificates, within `timeout`. Set the priority without anonymous key exchange first.
///
/// Returns the application data that arrived before the new handshake completed, at most
/// `max_preauth` bytes; deliver it to the application before anything the relay decrypts.
///
/// # Errors
/// [`RelayError::PreauthDataTooLarge`] when the peer sends more than `max_preauth` bytes
/// first, [`RelayError::Tls`] when the peer rejects or fails the renegotiation,
/// [`RelayError::HandshakeTimedOut`], [`RelayError::ClosedDuringHandshake`] or
/// [`RelayError::Io`].
pub async fn authenticate_after_precursor(
    session: &mut Session,
    cipher: &CipherSocket,
    max_preauth: usize,
    timeout: Option<Duration>,
) -> Result<Vec<u8>, RelayError> {
    let mut early = Vec::new();
    let exchange = exchange(session, cipher, max_preauth, &mut early);
    let result = match timeout {
        None => exchange.await,
        Some(limit) => tokio::time::timeout(limit, exchange)
            .await
            .unwrap_or(Err(RelayError::HandshakeTimedOut { timeout: limit })),
    };
    match result {
        Ok(()) => {
            debug!(target: TARGET_TLS, early = early.len(), "privacy mode renegotiation complete");
            Ok(early)
        }
        Err(error) => {
            debug!(target: TARGET_TLS, %error, "privacy mode renegotiation failed");
            Err(error)
        }
    }
}

async fn exchange(
    session: &mut Session,
    cipher: &CipherSocket,
    max_preauth: usize,
    early: &mut Vec<u8>,
) -> Result<(), RelayError> {
    let tls = |call, source| RelayError::Tls { call, source };
    let mut started = session.role() == Role::Server;
    if started {
        session
            .start_renegotiation()
            .map_err(|source| tls("start_renegotiation", source))?;
    }
    let mut plaintext = vec![0u8; MAX_RECORD_PLAINTEXT];
    let mut received = vec![0u8; CIPHER_READ_SIZE];
    loop {
        // A client reads until the server's HelloRequest shows up as a renegotiation request.
        // It cannot start the renegotiation itself, because a GnuTLS 3.7.9 client fails on a
        // HelloRequest that crosses its ClientHello.
        // NOTE: a server that takes ANON-DH but never sends a HelloRequest (not a TLS Pool)
        // keeps the client waiting until the handshake timeout.
        let wants_input = if started {
            match session.renegotiate() {
                Ok(RenegotiationStatus::Done) => {
                    flush_ciphertext(session, &cipher.socket).await?;
                    return Ok(());
                }
                Ok(RenegotiationStatus::WantRead) => true,
                Ok(RenegotiationStatus::ApplicationData) => false,
                Err(source) => {
                    flush_ciphertext(session, &cipher.socket).await?;
                    return Err(tls("renegotiate", source));
                }
            }
        } else {
            false
        };
        if !wants_input {
            match session.read_plaintext(&mut plaintext) {
                Ok(ReadOutcome::Data(n)) => {
                    early.extend_from_slice(&plaintext[..n]);
                    if early.len() > max_preauth {
                        return Err(RelayError::PreauthDataTooLarge { limit: max_preauth });
                    }
                    continue;
                }
                Ok(ReadOutcome::WantRead) => {}
                Ok(ReadOutcome::CloseNotify) => return Err(RelayError::ClosedDuringHandshake),
                Err(TlsError::RenegotiationRequested) if !started => {
                    session
                        .accept_renegotiation()
                        .map_err(|source| tls("accept_renegotiation", source))?;
                    started = true;
                    continue;
                }
                Err(source) => return Err(tls("read_plaintext", source)),
            }
        }
        flush_ciphertext(session, &cipher.socket).await?;
        let n = cipher.socket.recv(&mut received).await?;
        if n == 0 {
            return Err(RelayError::ClosedDuringHandshake);
        }
        session.feed_ciphertext(&received[..n]);
    }
}
