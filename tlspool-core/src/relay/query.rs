//! Requests that read a relayed session while the relay task owns it: keying material
//! exporters, channel bindings and certificates.
//!
//! The relay task runs each queued request between two records, on the same task, so it
//! needs no lock on the session. The queue is bounded, and the relay only ever takes from it,
//! so a full queue makes the requester wait, never the relay.

use tokio::sync::{mpsc, oneshot};

use super::RelayError;
use crate::tls::Session;

/// Number of requests that may wait for one relay before senders wait.
pub const QUERY_QUEUE_LEN: usize = 8;

/// A queued request: a function the relay runs with its session.
pub(super) type Query = Box<dyn FnOnce(&Session) + Send>;

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
        let boxed: Query = Box::new(move |session| {
            // The requester may have stopped waiting; then the result is dropped.
            let _ = reply.send(query(session));
        });
        self.sender
            .send(boxed)
            .await
            .map_err(|_| RelayError::SessionEnded)?;
        result.await.map_err(|_| RelayError::SessionEnded)
    }
}
