//! Multiplexing of requests on one connection: request id allocation and the routing of each
//! record from the daemon to the request it belongs to.
//!
//! Every outstanding request owns a channel of incoming records, keyed by its request id
//! (`pio_reqid`). A request receives all records the daemon sends about it, callbacks
//! (STARTTLS_LOCALID, PLAINTEXT_CONNECT) as well as the final reply, so a caller can answer
//! callbacks before the final record arrives. The connection's reader routes each record by
//! request id. A callback that no request waits for is refused with
//! `E_TLSPOOL_CLIENT_REFUSES_CALLBACK`, and when the connection closes every channel closes,
//! so each waiting caller sees [`ClientError::Disconnected`].
//!
//! The channels are tokio's unbounded channels, which need no runtime to send, so the
//! blocking and the asynchronous client share this module.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tracing::{debug, trace, warn};

use tlspool_proto::{CommandCode, ErrorCode, Frame, Header, ProtoError, Record};

use crate::ClientError;

/// A record from the daemon as delivered to a request: decoded, or the error that decoding
/// its payload raised.
pub(crate) type Incoming = Result<Record, ProtoError>;

/// The reader's next step for a record it has routed.
#[derive(Debug)]
pub(crate) enum Route {
    /// The record went to the request that waits for it.
    Delivered,
    /// No request waits for this callback, so the reader sends this refusal to the daemon.
    Refuse(Box<Record>),
    /// No request waits for this record and the daemon expects no reply to it.
    Dropped,
}

/// The table of outstanding requests of one connection.
#[derive(Debug, Default)]
pub(crate) struct Router {
    state: Mutex<RouterState>,
}

#[derive(Debug, Default)]
struct RouterState {
    pending: HashMap<u16, UnboundedSender<Incoming>>,
    /// The request id to try first for the next request.
    next_reqid: u16,
    /// Set once the connection has closed, after which no request can register.
    closed: bool,
}

impl Router {
    /// Registers a new request under a request id that no outstanding request uses.
    pub(crate) fn register(self: &Arc<Self>) -> Result<Exchange, ClientError> {
        let mut state = self.lock();
        if state.closed {
            return Err(ClientError::Disconnected);
        }

        let reqid = state.free_reqid()?;
        let (sender, receiver) = unbounded_channel();
        state.pending.insert(reqid, sender);
        trace!(reqid, "request registered");
        Ok(Exchange {
            reqid,
            receiver,
            router: Arc::clone(self),
        })
    }

    /// Delivers `incoming` to the request with the header's request id and returns what else
    /// the reader must do with it.
    pub(crate) fn route(&self, header: Header, incoming: Incoming) -> Route {
        let unclaimed = {
            let state = self.lock();
            match state.pending.get(&header.reqid) {
                Some(sender) => sender.send(incoming).err().map(|returned| returned.0),
                None => Some(incoming),
            }
        };
        if unclaimed.is_none() {
            return Route::Delivered;
        }

        // A callback record has a callback id and is not itself an ERROR. The daemon keeps the
        // callback open until it receives a record with that callback id.
        if header.cbid != 0 && header.cmd != CommandCode::Error.code() {
            debug!(
                reqid = header.reqid,
                cbid = header.cbid,
                cmd = header.cmd,
                "refusing a callback that no request waits for"
            );
            let mut refusal = Record::error_code(header.reqid, ErrorCode::ClientRefusesCallback);
            refusal.cbid = header.cbid;
            return Route::Refuse(Box::new(refusal));
        }
        debug!(
            reqid = header.reqid,
            cmd = header.cmd,
            "dropping a record that no request waits for"
        );
        Route::Dropped
    }

    /// Routes a received frame and returns the refusal to send for an unclaimed callback.
    pub(crate) fn route_frame(&self, frame: &Frame) -> Option<Box<Record>> {
        match self.route(frame.header(), frame.decode()) {
            Route::Refuse(refusal) => Some(refusal),
            Route::Delivered | Route::Dropped => None,
        }
    }

    /// Returns whether the connection has closed, so that no request can register.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Marks the connection closed and closes every request's channel, so each waiting
    /// caller sees [`ClientError::Disconnected`].
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        let outstanding = state.pending.len();
        state.pending.clear();
        debug!(
            outstanding,
            "connection closed, outstanding requests failed"
        );
    }

    fn unregister(&self, reqid: u16) {
        self.lock().pending.remove(&reqid);
        trace!(reqid, "request finished");
    }

    fn lock(&self) -> MutexGuard<'_, RouterState> {
        // The state stays consistent under a panic of another holder: every change is a single
        // map or field update.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl RouterState {
    /// Picks the next request id not in use, counting upwards from the last one and wrapping.
    fn free_reqid(&mut self) -> Result<u16, ClientError> {
        for _ in 0..=u16::MAX {
            let candidate = self.next_reqid;
            self.next_reqid = self.next_reqid.wrapping_add(1);
            if !self.pending.contains_key(&candidate) {
                return Ok(candidate);
            }
        }
        Err(ClientError::RequestIdsExhausted)
    }
}

/// One outstanding request: its request id and the records the daemon sends about it.
///
/// Dropping it frees the request id; records that arrive for it later are dropped or, for
/// callbacks, refused.
#[derive(Debug)]
pub(crate) struct Exchange {
    reqid: u16,
    receiver: UnboundedReceiver<Incoming>,
    router: Arc<Router>,
}

impl Exchange {
    /// Returns the request id to put in every record sent for this request.
    pub(crate) fn reqid(&self) -> u16 {
        self.reqid
    }

    /// Waits for the next record about this request.
    pub(crate) async fn next(&mut self) -> Result<Record, ClientError> {
        Self::accept(self.receiver.recv().await)
    }

    /// Blocks the calling thread until the next record about this request arrives.
    ///
    /// # Panics
    ///
    /// When called from inside an asynchronous runtime (tokio's `blocking_recv` rule).
    pub(crate) fn next_blocking(&mut self) -> Result<Record, ClientError> {
        Self::accept(self.receiver.blocking_recv())
    }

    fn accept(incoming: Option<Incoming>) -> Result<Record, ClientError> {
        match incoming {
            Some(Ok(record)) => Ok(record),
            Some(Err(error)) => Err(ClientError::Proto(error)),
            None => Err(ClientError::Disconnected),
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.router.unregister(self.reqid);
    }
}

/// Returns the frame of a receive result, or `None` with a log line when the connection has
/// ended, by end of stream or by a receive error.
pub(crate) fn received_frame(result: Result<Option<Frame>, ProtoError>) -> Option<Frame> {
    match result {
        Ok(Some(frame)) => Some(frame),
        Ok(None) => {
            debug!("the TLS Pool closed the connection");
            None
        }
        Err(error) => {
            warn!(%error, "receiving from the TLS Pool failed, closing the connection");
            None
        }
    }
}

/// Logs a failed send of a callback refusal, which the reader has no caller to report to.
pub(crate) fn log_refusal_failure(refusal: &Record, error: &ProtoError) {
    warn!(%error, reqid = refusal.reqid, cbid = refusal.cbid, "sending a callback refusal failed");
}

#[cfg(test)]
mod tests {
    use tlspool_proto::{Facilities, FixedString, IDENTITY_V2, Payload, Ping};

    use super::*;

    fn ping(reqid: u16) -> Record {
        Record::new(
            reqid,
            Payload::Ping(Ping {
                producer: FixedString::new(IDENTITY_V2).unwrap(),
                facilities: Facilities::STARTTLS,
            }),
        )
    }

    fn deliver(router: &Router, record: Record) -> Route {
        router.route(record.header(), Ok(record))
    }

    #[test]
    fn outstanding_requests_get_distinct_reqids() {
        let router = Arc::new(Router::default());
        let first = router.register().unwrap();
        let second = router.register().unwrap();
        assert_ne!(first.reqid(), second.reqid());
    }

    #[test]
    fn reqid_is_reused_only_after_drop() {
        let router = Arc::new(Router::default());
        let held = router.register().unwrap();
        router.lock().next_reqid = held.reqid();
        let next = router.register().unwrap();
        assert_ne!(next.reqid(), held.reqid());

        let freed = held.reqid();
        drop(held);
        router.lock().next_reqid = freed;
        assert_eq!(router.register().unwrap().reqid(), freed);
    }

    #[test]
    fn reply_reaches_its_request_only() {
        let router = Arc::new(Router::default());
        let mut first = router.register().unwrap();
        let mut second = router.register().unwrap();

        assert!(matches!(
            deliver(&router, ping(second.reqid())),
            Route::Delivered
        ));
        assert_eq!(second.next_blocking().unwrap().reqid, second.reqid());
        assert!(first.receiver.try_recv().is_err());
    }

    #[test]
    fn request_receives_several_records_in_order() {
        let router = Arc::new(Router::default());
        let mut exchange = router.register().unwrap();
        let mut callback = ping(exchange.reqid());
        callback.cbid = 5;
        deliver(&router, callback);
        deliver(&router, ping(exchange.reqid()));

        assert_eq!(exchange.next_blocking().unwrap().cbid, 5);
        assert_eq!(exchange.next_blocking().unwrap().cbid, 0);
    }

    #[test]
    fn unclaimed_callback_is_refused_with_its_cbid() {
        let router = Router::default();
        let mut callback = ping(42);
        callback.cbid = 7;

        let Route::Refuse(refusal) = deliver(&router, callback) else {
            panic!("callback without a waiting request was not refused");
        };
        assert_eq!(refusal.reqid, 42);
        assert_eq!(refusal.cbid, 7);
        let Payload::Error(error) = refusal.payload else {
            panic!("refusal is not an ERROR record: {refusal:?}");
        };
        assert_eq!(error.error_code(), Some(ErrorCode::ClientRefusesCallback));
    }

    #[test]
    fn unclaimed_reply_and_error_are_dropped() {
        let router = Router::default();
        assert!(matches!(deliver(&router, ping(3)), Route::Dropped));

        let mut error = Record::error_code(3, ErrorCode::ClientDisconnect);
        error.cbid = 9;
        assert!(matches!(deliver(&router, error), Route::Dropped));
    }

    #[test]
    fn close_fails_waiting_requests_and_new_ones() {
        let router = Arc::new(Router::default());
        let mut exchange = router.register().unwrap();
        router.close();

        assert!(matches!(
            exchange.next_blocking(),
            Err(ClientError::Disconnected)
        ));
        assert!(matches!(router.register(), Err(ClientError::Disconnected)));
    }

    #[test]
    fn exhausted_reqids_are_reported() {
        let router = Arc::new(Router::default());
        let held: Vec<Exchange> = (0..=u16::MAX).map(|_| router.register().unwrap()).collect();
        assert_eq!(held.len(), 65536);
        assert!(matches!(
            router.register(),
            Err(ClientError::RequestIdsExhausted)
        ));
    }
}
