//! The task that drives one client connection: it reads records, passes each to the
//! connection's [`ConnectionProtocol`] and carries out the action, with command handlers
//! running concurrently in a task set that ends with the connection.
//!
//! A STARTTLS request negotiates in a task set of its own, so a client that disconnects aborts
//! its handshakes. The connection keeps reading while handshakes run, because a handshake may
//! wait for a callback response on this connection or for a peer whose request arrives on
//! another connection. The relay of an established session runs in a task of its own, which the
//! session registry stops when this connection closes, unless the session was detached or
//! started with `FORK`.

use std::sync::Arc;

use tokio::net::UnixStream;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use tlspool_core::logging::TARGET_UNIXSOCK;
use tlspool_proto::tokio::{RecordWriter, split};
use tlspool_proto::{CommandCode, ErrorCode, Facilities, ProtoError, Record};

use crate::callbacks::{CallbackTable, ConnectionId};
use crate::commands::{self, CommandContext};
use crate::protocol::{Action, ConnectionProtocol};
use crate::sessions::SessionRegistry;
use crate::starttls::{self, TlsResources};

/// Maximum requests other than STARTTLS of one connection that run at once. At the limit the
/// connection stops reading until one finishes, so a client that sends requests and reads no
/// replies cannot make the daemon buffer without limit.
pub const MAX_CONCURRENT_REQUESTS: usize = 256;

/// Maximum STARTTLS requests of one connection that negotiate at once. A request over the
/// limit gets ERROR `E_TLSPOOL_OUT_OF_MEMORY` at once, so the connection never stops reading
/// the callback responses that the running handshakes wait for. Each request in progress keeps
/// the ciphertext descriptor it brought open, so the daemon's descriptor limit bounds them too.
// NOTE: an estimate of what one client may need, not a measured bound.
pub const MAX_CONCURRENT_HANDSHAKES: usize = 4096;

/// State shared by every connection.
#[derive(Debug)]
pub struct Shared {
    /// Facilities offered in PING.
    pub offered: Facilities,
    /// The daemon-wide callback table.
    pub callbacks: Arc<CallbackTable>,
    /// The databases and TLS settings of STARTTLS.
    pub tls: Arc<TlsResources>,
    /// The daemon-wide registry of established sessions.
    pub sessions: Arc<SessionRegistry>,
}

/// Serves the client on `stream` until it closes the connection or the task is aborted.
pub async fn serve_connection(stream: UnixStream, connection: ConnectionId, shared: Arc<Shared>) {
    let (mut reader, writer) = split(stream);
    let mut protocol =
        ConnectionProtocol::new(connection, shared.offered, Arc::clone(&shared.callbacks));
    let context = CommandContext {
        connection,
        callbacks: Arc::clone(&shared.callbacks),
        writer: writer.clone(),
        tls: Arc::clone(&shared.tls),
        sessions: Arc::clone(&shared.sessions),
        offered: shared.offered,
    };
    let mut requests = JoinSet::new();
    let mut handshakes = JoinSet::new();
    let mut discarded = DiscardedDescriptors::default();
    debug!(target: TARGET_UNIXSOCK, connection = connection.0, "client connected");

    loop {
        // Only requests other than STARTTLS stop the reading, and they wait for nothing but
        // this client reading their replies.
        while requests.len() >= MAX_CONCURRENT_REQUESTS {
            requests.join_next().await;
        }
        let received = tokio::select! {
            received = reader.recv() => received,
            Some(_) = requests.join_next(), if !requests.is_empty() => continue,
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => continue,
        };
        if let Some(total) = discarded.update(reader.discarded_descriptors()) {
            warn!(target: TARGET_UNIXSOCK, connection = connection.0, total,
                "closed descriptors the client passed beyond one per record; \
                 later ones on this connection are counted when it closes");
        }
        let frame = match received {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                debug!(target: TARGET_UNIXSOCK, connection = connection.0, "client disconnected");
                break;
            }
            Err(ProtoError::UnexpectedEof { received }) => {
                debug!(target: TARGET_UNIXSOCK, connection = connection.0, received,
                    "bad input from client: disconnected in the middle of a record");
                break;
            }
            Err(error) => {
                debug!(target: TARGET_UNIXSOCK, connection = connection.0, %error,
                    "receiving from client failed");
                break;
            }
        };

        match protocol.on_frame(frame) {
            Action::Send(record) => {
                if !send(&writer, connection, &record).await {
                    break;
                }
            }
            Action::Run(request) if request.command == CommandCode::StartTls => {
                if handshakes.len() >= MAX_CONCURRENT_HANDSHAKES {
                    let reqid = request.record.reqid;
                    drop(request);
                    if !send(&writer, connection, &handshake_limit_error(reqid)).await {
                        break;
                    }
                    continue;
                }
                handshakes.spawn(starttls::serve(request, context.clone()));
            }
            Action::Run(request) if request.command == CommandCode::PinEntry => {
                // Registered before the next record is read, so a PING sent after the
                // registration is answered only once the registration is in place.
                if let Some(reply) = commands::execute(request, &context).await
                    && !send(&writer, connection, &reply).await
                {
                    break;
                }
            }
            Action::Run(request) => {
                let writer = writer.clone();
                let context = context.clone();
                requests.spawn(async move {
                    if let Some(reply) = commands::execute(request, &context).await {
                        send(&writer, context.connection, &reply).await;
                    }
                });
            }
            Action::Deliver(waiter, response) => waiter.deliver(response),
        }
    }

    if discarded.total > 0 {
        warn!(target: TARGET_UNIXSOCK, connection = connection.0, total = discarded.total,
            "closed descriptors the client passed beyond one per record");
    }
    // Requests in progress are abandoned; dropping the protocol completes their callbacks.
    requests.shutdown().await;
    handshakes.shutdown().await;
    // Released before the callbacks are answered, so a request that fails on this
    // disconnect finds the PIN entry window free.
    shared.tls.pin_entry.release_connection(connection);
    drop(protocol);
    shared.sessions.release_connection(connection);
    shared.tls.lidentry.release_connection(connection);
    debug!(target: TARGET_UNIXSOCK, connection = connection.0, "connection closed");
}

/// Sends `record`; returns false when the connection is unusable.
async fn send(writer: &RecordWriter, connection: ConnectionId, record: &Record) -> bool {
    match writer.send_record(record, None).await {
        Ok(()) => true,
        Err(error) => {
            debug!(target: TARGET_UNIXSOCK, connection = connection.0, reqid = record.reqid,
                %error, "sending to client failed");
            false
        }
    }
}

/// Builds the ERROR reply to a STARTTLS request over [`MAX_CONCURRENT_HANDSHAKES`].
fn handshake_limit_error(reqid: u16) -> Record {
    let message = format!(
        "TLS Pool has {MAX_CONCURRENT_HANDSHAKES} STARTTLS requests in progress on this \
         connection, the maximum; retry later"
    );
    Record::error(reqid, ErrorCode::OutOfMemory.code(), &message)
}

/// The count of surplus descriptors a connection closed, which is logged as a warning the
/// first time it grows and as a total when the connection closes, so a client that passes
/// many cannot flood the log.
#[derive(Debug, Default)]
struct DiscardedDescriptors {
    total: u64,
    warned: bool,
}

impl DiscardedDescriptors {
    /// Records the reader's running count and returns it when this is the first increase.
    fn update(&mut self, count: u64) -> Option<u64> {
        self.total = count;
        if count == 0 || self.warned {
            return None;
        }
        self.warned = true;
        Some(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discarded_descriptors_warn_once() {
        let mut discarded = DiscardedDescriptors::default();
        assert_eq!(discarded.update(0), None);
        assert_eq!(discarded.update(2), Some(2));
        assert_eq!(discarded.update(5), None);
        assert_eq!(discarded.update(90), None);
        assert_eq!(discarded.total, 90);
    }

    #[test]
    fn handshake_limit_error_names_limit() {
        let record = handshake_limit_error(7);
        assert_eq!(record.reqid, 7);
        let tlspool_proto::Payload::Error(payload) = &record.payload else {
            panic!("not an ERROR record: {record:?}");
        };
        assert_eq!(payload.error_code(), Some(ErrorCode::OutOfMemory));
        assert!(payload.message.contains("4096"), "{}", payload.message);
        assert!(
            payload.message.ends_with("retry later"),
            "{}",
            payload.message
        );
    }
}
