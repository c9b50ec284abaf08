//! The daemon-wide callback table: 1024 slots whose index plus one is the callback id
//! (`pio_cbid`) of a callback the daemon sent and awaits.
//!
//! An incoming record is the response to a callback if and only if its `pio_cbid` is in
//! 1..=1024, a callback with that id is outstanding, and it was sent over the same
//! connection. Ids are reused once the callback completes or its request gives up. A full
//! table is an error for the one request that needed a slot; the original TLS Pool terminated
//! the daemon instead.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;
use tracing::debug;

use tlspool_core::logging::TARGET_UNIXSOCK;
use tlspool_proto::{ErrorCode, MAX_CALLBACK_ID, Record};

/// Number of slots, one per callback id.
pub const CALLBACK_SLOTS: usize = MAX_CALLBACK_ID as usize;

/// Identifies one client connection for the lifetime of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionId(pub u64);

/// The response to a callback: the record the client sent and the descriptor that came with it.
#[derive(Debug)]
pub struct CallbackResponse {
    /// The response record. It is an ERROR record when the client refused, disconnected or
    /// sent a record whose payload does not decode.
    pub record: Record,
    /// The descriptor passed with the response, if any.
    pub fd: Option<OwnedFd>,
}

/// A registered callback whose response a request awaits. Dropping it frees the slot.
#[derive(Debug)]
pub struct PendingCallback {
    /// The callback id to send in `pio_cbid`.
    pub cbid: u16,
    /// Receives the response, at most once.
    pub response: oneshot::Receiver<CallbackResponse>,
    table: Arc<CallbackTable>,
    generation: u64,
}

/// The error of [`CallbackTable::register`] when all 1024 slots are in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("all {CALLBACK_SLOTS} callback slots are in use")]
pub struct CallbackTableFull;

/// The callback table, shared by every connection of the daemon.
#[derive(Debug)]
pub struct CallbackTable {
    slots: Mutex<Slots>,
}

#[derive(Debug)]
struct Slots {
    entries: Vec<Option<Waiting>>,
    /// Indexes of free entries; the most recently freed one is reused first.
    free: Vec<usize>,
    next_generation: u64,
}

#[derive(Debug)]
struct Waiting {
    connection: ConnectionId,
    reqid: u16,
    generation: u64,
    reply: oneshot::Sender<CallbackResponse>,
}

/// The waiting side of a callback, taken out of the table by its response.
#[derive(Debug)]
pub struct CallbackWaiter {
    reply: oneshot::Sender<CallbackResponse>,
}

impl CallbackTable {
    /// Creates an empty table.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            slots: Mutex::new(Slots {
                entries: (0..CALLBACK_SLOTS).map(|_| None).collect(),
                free: (0..CALLBACK_SLOTS).rev().collect(),
                next_generation: 0,
            }),
        })
    }

    /// Reserves a callback id for a callback about request `reqid`, sent over `connection`.
    ///
    /// # Errors
    ///
    /// [`CallbackTableFull`] when every id is outstanding.
    pub fn register(
        self: &Arc<Self>,
        connection: ConnectionId,
        reqid: u16,
    ) -> Result<PendingCallback, CallbackTableFull> {
        let (reply, response) = oneshot::channel();
        let mut slots = self.lock();
        let index = slots.free.pop().ok_or(CallbackTableFull)?;
        let generation = slots.next_generation;
        slots.next_generation += 1;
        slots.entries[index] = Some(Waiting {
            connection,
            reqid,
            generation,
            reply,
        });
        Ok(PendingCallback {
            cbid: cbid_of(index),
            response,
            table: Arc::clone(self),
            generation,
        })
    }

    /// Takes the waiter of callback `cbid` if it is outstanding on `connection`, so the
    /// record that carries `cbid` is its response. Otherwise the table is unchanged and the
    /// record is a new request.
    pub fn take_answered(&self, cbid: u16, connection: ConnectionId) -> Option<CallbackWaiter> {
        let index = index_of(cbid)?;
        let mut slots = self.lock();
        let entry = &mut slots.entries[index];
        if entry.as_ref()?.connection != connection {
            return None;
        }
        let waiting = entry.take()?;
        slots.free.push(index);
        Some(CallbackWaiter {
            reply: waiting.reply,
        })
    }

    /// Answers every callback outstanding on `connection` with ERROR
    /// `E_TLSPOOL_CLIENT_DISCONNECT` and frees their ids; returns how many there were.
    pub fn release_connection(&self, connection: ConnectionId) -> usize {
        let mut released = Vec::new();
        {
            let mut slots = self.lock();
            for index in 0..CALLBACK_SLOTS {
                let owned = slots.entries[index]
                    .as_ref()
                    .is_some_and(|waiting| waiting.connection == connection);
                if let Some(waiting) = owned.then(|| slots.entries[index].take()).flatten() {
                    slots.free.push(index);
                    released.push(waiting);
                }
            }
        }
        let count = released.len();
        for waiting in released {
            let message = format!("TLS Pool client connection {} closed", connection.0);
            let record = Record::error(waiting.reqid, ErrorCode::ClientDisconnect.code(), &message);
            // The request may have given up already; then nobody needs the answer.
            let _ = waiting.reply.send(CallbackResponse { record, fd: None });
        }
        if count > 0 {
            debug!(target: TARGET_UNIXSOCK, connection = connection.0, count,
                "answered outstanding callbacks of a closed connection");
        }
        count
    }

    /// Returns the number of outstanding callbacks.
    pub fn outstanding(&self) -> usize {
        CALLBACK_SLOTS - self.lock().free.len()
    }

    /// Frees slot `cbid` if it still belongs to the registration `generation`.
    fn cancel(&self, cbid: u16, generation: u64) {
        let Some(index) = index_of(cbid) else { return };
        let mut slots = self.lock();
        let current = slots.entries[index]
            .as_ref()
            .is_some_and(|waiting| waiting.generation == generation);
        if current {
            slots.entries[index] = None;
            slots.free.push(index);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        // Every update leaves the slots consistent, so a panic elsewhere cannot corrupt them.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl CallbackWaiter {
    /// Hands `response` to the request. A descriptor in it is closed if the request has
    /// given up meanwhile.
    pub fn deliver(self, response: CallbackResponse) {
        // A failed send returns the response, which is dropped here with its descriptor.
        let _ = self.reply.send(response);
    }
}

impl CallbackTableFull {
    /// Builds the ERROR reply for the request that could not send its callback.
    pub fn to_record(self, reqid: u16) -> Record {
        Record::error(
            reqid,
            ErrorCode::OutOfMemory.code(),
            "TLS Pool has no free callback id (1024 callbacks outstanding)",
        )
    }
}

impl Drop for PendingCallback {
    fn drop(&mut self) {
        self.table.cancel(self.cbid, self.generation);
    }
}

fn cbid_of(index: usize) -> u16 {
    // The index is below CALLBACK_SLOTS (1024), so index + 1 fits a u16.
    u16::try_from(index + 1).unwrap_or(MAX_CALLBACK_ID)
}

fn index_of(cbid: u16) -> Option<usize> {
    (1..=MAX_CALLBACK_ID)
        .contains(&cbid)
        .then(|| usize::from(cbid) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONNECTION: ConnectionId = ConnectionId(1);
    const OTHER: ConnectionId = ConnectionId(2);

    #[test]
    fn ids_run_from_one_to_1024() {
        let table = CallbackTable::new();
        let pending: Vec<_> = (0..CALLBACK_SLOTS)
            .map(|_| table.register(CONNECTION, 7).expect("free slot"))
            .collect();
        let mut ids: Vec<u16> = pending.iter().map(|callback| callback.cbid).collect();
        ids.sort_unstable();
        assert_eq!(ids.first(), Some(&1));
        assert_eq!(ids.last(), Some(&1024));
        ids.dedup();
        assert_eq!(ids.len(), CALLBACK_SLOTS);
    }

    #[test]
    fn full_table_rejects_registration() {
        let table = CallbackTable::new();
        let _pending: Vec<_> = (0..CALLBACK_SLOTS)
            .map(|_| table.register(CONNECTION, 7).expect("free slot"))
            .collect();
        let error = table.register(CONNECTION, 8).expect_err("table is full");
        assert_eq!(error, CallbackTableFull);
        let reply = error.to_record(8);
        assert_eq!(reply.reqid, 8);
        assert!(matches!(reply.payload, tlspool_proto::Payload::Error(_)));
    }

    #[test]
    fn dropped_registration_frees_its_id() {
        let table = CallbackTable::new();
        let first = table.register(CONNECTION, 1).expect("free slot");
        let cbid = first.cbid;
        drop(first);
        assert_eq!(table.outstanding(), 0);
        let again = table.register(CONNECTION, 2).expect("free slot");
        assert_eq!(again.cbid, cbid, "the freed id is reused");
    }

    #[test]
    fn answer_only_from_same_connection() {
        let table = CallbackTable::new();
        let pending = table.register(CONNECTION, 3).expect("free slot");
        assert!(table.take_answered(pending.cbid, OTHER).is_none());
        assert!(table.take_answered(0, CONNECTION).is_none());
        assert!(table.take_answered(1025, CONNECTION).is_none());
        assert!(table.take_answered(pending.cbid, CONNECTION).is_some());
        assert!(
            table.take_answered(pending.cbid, CONNECTION).is_none(),
            "answered once"
        );
    }

    #[test]
    fn late_drop_keeps_reused_slot() {
        let table = CallbackTable::new();
        let first = table.register(CONNECTION, 1).expect("free slot");
        let cbid = first.cbid;
        table.take_answered(cbid, CONNECTION).expect("outstanding");
        let second = table.register(OTHER, 2).expect("free slot");
        assert_eq!(second.cbid, cbid);
        drop(first);
        assert!(
            table.take_answered(cbid, OTHER).is_some(),
            "second registration survives"
        );
    }

    #[test]
    fn closed_connection_answers_with_disconnect() {
        let table = CallbackTable::new();
        let mut mine = table.register(CONNECTION, 9).expect("free slot");
        let _theirs = table.register(OTHER, 10).expect("free slot");
        assert_eq!(table.release_connection(CONNECTION), 1);
        assert_eq!(table.outstanding(), 1);
        let response = mine.response.try_recv().expect("answered");
        assert_eq!(response.record.reqid, 9);
        let tlspool_proto::Payload::Error(error) = response.record.payload else {
            panic!("expected ERROR, got {:?}", response.record.payload);
        };
        assert_eq!(error.tlserrno, ErrorCode::ClientDisconnect.code());
    }
}
