//! Requests that read a relayed session while the relay task owns it (keying material
//! exporters, channel bindings and certificates) or renegotiate it.
//!
//! The relay task runs each queued request between two records, on the same task, so it
//! needs no lock on the session. The queue is bounded, and the relay only ever takes from it,
//! so a full queue makes the requester wait, never the relay.

use tokio::sync::{mpsc, oneshot};

use super::RelayError;
use crate::tls::Session;

/// Number of requests that may wait for one relay before senders wait.
pub const QUERY_QUEUE_LEN: usize = 8;

/// A queued request.
pub(super) enum Query {
    /// A function the relay runs with its session.
    Read(Box<dyn FnOnce(&Session) + Send>),
    /// A TLS 1.2 renegotiation requested by the application, answered when it ends.
    Renegotiate(oneshot::Sender<Result<(), RelayError>>),
}

/// The sending side of a relay's request queue; cloning yields another sender.
#[derive(Debug, Clone)]
pub struct SessionQueries {
    sender: mpsc::Sender<Query>,
}

/// The receiving side of a relay's request queue, handed to
/// [`run_with_queries`](super::run_with_queries).
#[derive(Debug)]
pub struct QueryReceiver {
    pub(super) receiver: mpsc::Receiver<Query>,
}

/// Creates the request queue of one relay.
pub fn query_channel() -> (SessionQueries, QueryReceiver) {
    let (sender, receiver) = mpsc::channel(QUERY_QUEUE_LEN);
    (SessionQueries { sender }, QueryReceiver { receiver })
}

impl SessionQueries {
    /// Runs `query` with the relayed session between two records and returns its result.
    ///
    /// `query` runs on the relay task, so it must not block; the session methods that read
    /// state (exporters, channel bindings, certificates) are fine.
    ///
    /// # Errors
    ///
    /// [`RelayError::SessionEnded`] when the relay ended before it ran `query`.
    pub async fn run<T, F>(&self, query: F) -> Result<T, RelayError>
    where
        T: Send + 'static,
        F: FnOnce(&Session) -> T + Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        let boxed: Query = Query::Read(Box::new(move |session| {
            // The requester may have stopped waiting; then the result is dropped.
            let _ = reply.send(query(session));
        }));
        self.sender
            .send(boxed)
            .await
            .map_err(|_| RelayError::SessionEnded)?;
        result.await.map_err(|_| RelayError::SessionEnded)
    }

    /// Renegotiates the relayed TLS 1.2 session: the relay stops reading the application,
    /// runs the new handshake while it keeps delivering the peer's data, and resumes.
    ///
    /// # Errors
    ///
    /// [`RelayError::Tls`] with [`TlsError::RenegotiationUnavailable`],
    /// [`TlsError::RenegotiationInsecure`] or [`TlsError::RenegotiationRejected`], after which
    /// the session continues; [`RelayError::Tls`] with another error when the handshake failed
    /// and the session ended; [`RelayError::RenegotiationBusy`] while another renegotiation
    /// runs; [`RelayError::SessionEnded`] when the relay has ended.
    ///
    /// [`TlsError::RenegotiationUnavailable`]: crate::tls::TlsError::RenegotiationUnavailable
    /// [`TlsError::RenegotiationInsecure`]: crate::tls::TlsError::RenegotiationInsecure
    /// [`TlsError::RenegotiationRejected`]: crate::tls::TlsError::RenegotiationRejected
    pub async fn renegotiate(&self) -> Result<(), RelayError> {
        let (reply, result) = oneshot::channel();
        self.sender
            .send(Query::Renegotiate(reply))
            .await
            .map_err(|_| RelayError::SessionEnded)?;
        result.await.map_err(|_| RelayError::SessionEnded)?
    }
}
