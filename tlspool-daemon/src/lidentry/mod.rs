//! The local identity selection service (LIDENTRY) of the TLS Pool version 2 protocol: the one
//! registered helper connection, its exclusive window, and the callback sequence that asks it
//! which local identity a TLS client discloses to a remote peer.
//!
//! A helper registers with LIDENTRY_REGISTER (`pio_cbid` 0), carrying its `SKIP_*` and
//! `WANT_DBENTRY` flags and its response window in seconds. It gets no reply unless it is
//! refused with `E_TLSPOOL_LIDENTRY_NOT_VACANT`: a registration is refused while another one
//! is waiting, and while a different connection holds the exclusive window. Each callback
//! takes the waiting registration and opens a window of that many seconds for its connection.
//! The helper's answer to a callback is also its next registration, with the registration
//! bits of the answer's flags added. When the helper's connection closes, its registration
//! and window are dropped at once, and an outstanding callback fails with
//! `E_TLSPOOL_CLIENT_DISCONNECT`.
//!
//! The callbacks of one handshake form an exclusive sequence: DB-entry callbacks, then the
//! inquiry. Another handshake that needs the helper waits for the sequence until the window
//! ends, and then uses the disclose database alone.
//!
//! # Known limitations
//!
//! - An answer that arrives after the window ended is no longer a callback response, so the
//!   daemon rejects it with `E_TLSPOOL_COMMAND_BAD_CALLBACK_RESPONSE` and the helper has to
//!   register again.

mod inquiry;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info};

use tlspool_core::logging::TARGET_UNIXSOCK;
use tlspool_proto::tokio::RecordWriter;
use tlspool_proto::{ErrorCode, LidEntry, LidEntryFlags, Record};

pub(crate) use inquiry::{Choice, Selection};

use crate::callbacks::{CallbackTable, ConnectionId};
use crate::exclusive::{ExclusiveService, Registrant};

/// The response window of a registration whose `timeout` is 0.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

/// The daemon-wide local identity selection service: at most one waiting registration, one
/// window and one callback sequence at a time.
#[derive(Debug, Default)]
pub struct LidEntryService {
    registration: ExclusiveService<Registration>,
    /// Held by the handshake whose callback sequence runs.
    sequence: tokio::sync::Mutex<()>,
}

/// A helper connection that waits for its next callback.
#[derive(Debug)]
struct Registration {
    connection: ConnectionId,
    /// The request id of the registration record, which its callbacks carry.
    reqid: u16,
    /// The registration flags (`SKIP_*`, `WANT_DBENTRY`), masked with `PIOF_LIDENTRY_REGFLAGS`.
    flags: LidEntryFlags,
    /// The response window.
    window: Duration,
    writer: RecordWriter,
    callbacks: Arc<CallbackTable>,
}

impl LidEntryService {
    /// Creates a service without registration.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `connection` as the helper with the flags and window of `entry`. Its
    /// callbacks carry request id `reqid` and use `callbacks`. Returns `None` when registered,
    /// or the ERROR record `E_TLSPOOL_LIDENTRY_NOT_VACANT` to send when refused.
    pub fn register(
        &self,
        connection: ConnectionId,
        reqid: u16,
        entry: &LidEntry,
        writer: RecordWriter,
        callbacks: Arc<CallbackTable>,
    ) -> Option<Record> {
        let window = window_of(entry.timeout);
        let registered = self.registration.register(Registration {
            connection,
            reqid,
            flags: entry.flags.registration(),
            window,
            writer,
            callbacks,
        });
        if !registered {
            debug!(target: TARGET_UNIXSOCK, connection = connection.0, reqid,
                "local identity selection service registration refused");
            return Some(Record::error_code(reqid, ErrorCode::LidEntryNotVacant));
        }
        info!(target: TARGET_UNIXSOCK, connection = connection.0, reqid,
            flags = entry.flags.bits(), window_s = window.as_secs(),
            "local identity selection service registered");
        None
    }

    /// Drops the registration and the window of `connection`, whose socket closed.
    pub fn release_connection(&self, connection: ConnectionId) {
        if self.registration.release_connection(connection) {
            info!(target: TARGET_UNIXSOCK, connection = connection.0,
                "local identity selection service disconnected");
        }
    }

    /// Returns whether a helper is registered or has an open window, so that a handshake
    /// should consult it.
    pub fn is_available(&self) -> bool {
        self.registration
            .inspect(|waiting, open| waiting.is_some() || open.is_some())
    }

    /// Returns the registration flags of the waiting helper and how long a handshake may
    /// wait for the sequence in progress: the rest of the open window, or the waiting
    /// registration's window.
    fn flags_and_wait(&self) -> Option<(LidEntryFlags, Duration)> {
        self.registration
            .inspect(|waiting, open| match (waiting, open) {
                (Some(waiting), rest) => Some((waiting.flags, rest.unwrap_or(waiting.window))),
                (None, Some(rest)) => Some((LidEntryFlags::empty(), rest)),
                (None, None) => None,
            })
    }

    /// Takes the waiting registration and opens its connection's window; returns the end
    /// of the window.
    fn take_registration(&self) -> Option<(Registration, Instant)> {
        self.registration.take(|registration| registration.window)
    }

    /// Stores the helper's answer as its next registration, unless its connection closed
    /// meanwhile (then the window is gone too).
    fn renew(&self, previous: Registration, reqid: u16, answer_flags: LidEntryFlags) {
        self.registration.renew(Registration {
            reqid,
            flags: previous.flags | answer_flags.registration(),
            ..previous
        });
    }
}

impl Registrant for Registration {
    fn connection(&self) -> ConnectionId {
        self.connection
    }
}

/// Converts a registration's `timeout` (seconds) to its window; 0 is [`DEFAULT_WINDOW`].
fn window_of(timeout_s: u32) -> Duration {
    match timeout_s {
        0 => DEFAULT_WINDOW,
        seconds => Duration::from_secs(u64::from(seconds)),
    }
}

#[cfg(test)]
mod tests;
