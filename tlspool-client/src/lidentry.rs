//! The local identity selection service of a helper program: registration, the daemon's
//! callbacks and the answers, over a private connection to the daemon, in blocking and async
//! forms.
//!
//! The helper sends LIDENTRY_REGISTER with its registration flags (`SKIP_*`,
//! `WANT_DBENTRY`) and its response window in seconds. The daemon sends no reply unless it
//! refuses the registration with ERROR `E_TLSPOOL_LIDENTRY_NOT_VACANT`, which then arrives
//! where the next query is awaited. For each client handshake that needs a choice, the daemon
//! sends zero or more DB-entry callbacks (the identities the disclose database lists, with
//! `WANT_DBENTRY`) and then one inquiry. Every callback needs an answer within the window,
//! and each answer is also the next registration.

use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::UnixStream;
use tracing::debug;

use tlspool_proto::blocking::RecordStream;
use tlspool_proto::tokio::{RecordReader, RecordWriter, split};
use tlspool_proto::{Frame, Identity, LidEntry, LidEntryFlags, Payload, Record};

use crate::error::ClientError;
use crate::socket::{self, connect_error, send_error};

/// Request id of the registration; the connection carries no other request.
const REGISTRATION_REQID: u16 = 0;

/// What a callback of the daemon asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalIdQueryKind {
    /// A local identity that the disclose database lists under the matched selector; the
    /// answer is ignored, so [`acknowledge`](LocalIdSelectService::acknowledge) it.
    DatabaseEntry,
    /// The question which local identity to disclose; answer it with a [`LocalIdChoice`].
    Inquiry,
}

/// A callback of the daemon to the local identity selection service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalIdQuery {
    /// Whether this callback lists a database entry or asks for a choice.
    pub kind: LocalIdQueryKind,
    /// For a database entry the selector it is listed under, for an inquiry the concrete
    /// remote identity.
    pub remote_id: String,
    /// For a database entry the listed local identity, for an inquiry the daemon's
    /// suggestion (the first listed identity), empty when there is none.
    pub local_id: String,
    /// Generalisation steps between the concrete remote identity and the matched selector,
    /// the most an answer's selector may go up.
    pub maxlevels: u16,
    /// When the daemon stops waiting for the answer.
    pub deadline: SystemTime,
    /// The flags of the callback: the registration flags, plus `DBENTRY` on database
    /// entries.
    pub flags: LidEntryFlags,
    reqid: u16,
    cbid: u16,
}

/// The answer to an inquiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalIdChoice {
    /// The chosen local identity; empty to disclose none.
    pub local_id: String,
    /// The selector to store the choice under with `DBINSERT`, `DBAPPEND` or `DBREORDER`:
    /// empty for the concrete remote identity, or a selector at most `maxlevels` steps more
    /// general, such as `@.example.com`.
    pub selector: String,
    /// `DBINSERT`, `DBAPPEND`, `DBREORDER`, `NEW` or `ONTHEFLY`, or empty to use the
    /// choice once. Registration bits set here are added to the registration.
    pub flags: LidEntryFlags,
}

impl LocalIdQuery {
    /// Builds an inquiry as the daemon would send it, for unit tests.
    #[cfg(test)]
    pub(crate) fn inquiry_for_test(remote_id: &str, suggestion: &str) -> Self {
        Self {
            kind: LocalIdQueryKind::Inquiry,
            remote_id: remote_id.to_owned(),
            local_id: suggestion.to_owned(),
            maxlevels: 0,
            deadline: UNIX_EPOCH,
            flags: LidEntryFlags::empty(),
            reqid: 0,
            cbid: 1,
        }
    }
}

impl LocalIdChoice {
    /// Chooses `local_id` for this handshake only, without storing the choice.
    pub fn once(local_id: &str) -> Self {
        Self {
            local_id: local_id.to_owned(),
            selector: String::new(),
            flags: LidEntryFlags::empty(),
        }
    }

    /// Chooses `local_id` and stores it under `selector` (empty for the concrete remote
    /// identity) with the `DBINSERT`, `DBAPPEND` or `DBREORDER` bits of `flags`.
    pub fn stored(local_id: &str, selector: &str, flags: LidEntryFlags) -> Self {
        Self {
            local_id: local_id.to_owned(),
            selector: selector.to_owned(),
            flags,
        }
    }
}

/// A registered local identity selection service on a blocking connection of its own.
#[derive(Debug)]
pub struct BlockingLocalIdSelectService {
    stream: RecordStream,
    window_s: u32,
}

/// A registered local identity selection service on an async connection of its own.
#[derive(Debug)]
pub struct LocalIdSelectService {
    reader: RecordReader,
    writer: RecordWriter,
    window_s: u32,
}

/// Connects to the daemon at `path` (or the configured socket) and registers a local identity
/// selection service with registration `flags` and a response window of `window` (whole
/// seconds), blocking the calling thread.
///
/// # Errors
///
/// [`ClientError::SocketPathTooLong`], [`ClientError::Connect`], and
/// [`ClientError::Disconnected`] or [`ClientError::Proto`] when the registration cannot be
/// sent. A refusal arrives from [`BlockingLocalIdSelectService::next_query`].
pub fn register_localid_select_blocking(
    path: Option<&Path>,
    flags: LidEntryFlags,
    window: Duration,
) -> Result<BlockingLocalIdSelectService, ClientError> {
    let path = socket::resolve_socket_path(path, None)?;
    let stream = StdUnixStream::connect(&path).map_err(|source| connect_error(&path, source))?;
    debug!(path = %path.display(), "registering a local identity selection service");
    let service = BlockingLocalIdSelectService {
        stream: RecordStream::new(stream),
        window_s: window_seconds(window),
    };
    let record = registration(flags, service.window_s);
    service
        .stream
        .send(&record.encode(), None)
        .map_err(send_error)?;
    Ok(service)
}

/// Connects to the daemon at `path` (or the configured socket) and registers a local identity
/// selection service with registration `flags` and a response window of `window`.
///
/// # Errors
///
/// As [`register_localid_select_blocking`]. A refusal arrives from
/// [`LocalIdSelectService::next_query`].
///
/// # Panics
///
/// When called outside a tokio runtime.
pub async fn register_localid_select(
    path: Option<&Path>,
    flags: LidEntryFlags,
    window: Duration,
) -> Result<LocalIdSelectService, ClientError> {
    let path = socket::resolve_socket_path(path, None)?;
    let stream = UnixStream::connect(&path)
        .await
        .map_err(|source| connect_error(&path, source))?;
    debug!(path = %path.display(), "registering a local identity selection service");
    let (reader, writer) = split(stream);
    let service = LocalIdSelectService {
        reader,
        writer,
        window_s: window_seconds(window),
    };
    let record = registration(flags, service.window_s);
    service
        .writer
        .send(&record.encode(), None)
        .await
        .map_err(send_error)?;
    Ok(service)
}

impl BlockingLocalIdSelectService {
    /// Waits for the daemon's next callback.
    ///
    /// # Errors
    ///
    /// [`ClientError::Daemon`] when the daemon refused the registration (code
    /// `E_TLSPOOL_LIDENTRY_NOT_VACANT`) or rejected a late answer,
    /// [`ClientError::Disconnected`] when the daemon closed the connection,
    /// [`ClientError::UnexpectedReply`] for any other record, and [`ClientError::Proto`] when
    /// receiving fails.
    pub fn next_query(&mut self) -> Result<LocalIdQuery, ClientError> {
        query_of(self.stream.recv()?)
    }

    /// Answers the inquiry `query` with `choice`, which also registers for the next one.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidRequest`] for a local identity or selector that does not fit
    /// its field, and [`ClientError::Disconnected`] or [`ClientError::Proto`] when sending
    /// fails.
    pub fn answer(
        &mut self,
        query: &LocalIdQuery,
        choice: &LocalIdChoice,
    ) -> Result<(), ClientError> {
        let record = answer_record(query, choice, self.window_s)?;
        self.stream.send(&record.encode(), None).map_err(send_error)
    }

    /// Acknowledges a database entry callback, which also registers for the next callback.
    ///
    /// # Errors
    ///
    /// As [`Self::answer`].
    pub fn acknowledge(&mut self, query: &LocalIdQuery) -> Result<(), ClientError> {
        let record = acknowledgement(query, self.window_s)?;
        self.stream.send(&record.encode(), None).map_err(send_error)
    }
}

impl LocalIdSelectService {
    /// Waits for the daemon's next callback.
    ///
    /// # Errors
    ///
    /// As [`BlockingLocalIdSelectService::next_query`].
    pub async fn next_query(&mut self) -> Result<LocalIdQuery, ClientError> {
        query_of(self.reader.recv().await?)
    }

    /// Answers the inquiry `query` with `choice`, which also registers for the next one.
    ///
    /// # Errors
    ///
    /// As [`BlockingLocalIdSelectService::answer`].
    pub async fn answer(
        &mut self,
        query: &LocalIdQuery,
        choice: &LocalIdChoice,
    ) -> Result<(), ClientError> {
        let record = answer_record(query, choice, self.window_s)?;
        self.writer
            .send(&record.encode(), None)
            .await
            .map_err(send_error)
    }

    /// Acknowledges a database entry callback, which also registers for the next callback.
    ///
    /// # Errors
    ///
    /// As [`BlockingLocalIdSelectService::answer`].
    pub async fn acknowledge(&mut self, query: &LocalIdQuery) -> Result<(), ClientError> {
        let record = acknowledgement(query, self.window_s)?;
        self.writer
            .send(&record.encode(), None)
            .await
            .map_err(send_error)
    }
}

/// Converts `window` to the wire's whole seconds, rounding up and saturating at `u32::MAX`.
fn window_seconds(window: Duration) -> u32 {
    let seconds = window
        .as_secs()
        .saturating_add(u64::from(window.subsec_nanos() > 0));
    u32::try_from(seconds).unwrap_or(u32::MAX)
}

fn registration(flags: LidEntryFlags, window_s: u32) -> Record {
    let entry = LidEntry {
        flags: flags.registration(),
        maxlevels: 0,
        timeout: window_s,
        localid: Identity::empty(),
        remoteid: Identity::empty(),
    };
    Record::new(REGISTRATION_REQID, Payload::LidEntryRegister(entry))
}

/// Builds the answer record of `query`: a LIDENTRY_CALLBACK with the same ids.
fn answer_record(
    query: &LocalIdQuery,
    choice: &LocalIdChoice,
    window_s: u32,
) -> Result<Record, ClientError> {
    let field = |field: &'static str, value: &str| {
        Identity::for_field(field, value).map_err(|error| ClientError::InvalidRequest {
            field,
            reason: error.to_string(),
        })
    };
    let entry = LidEntry {
        flags: choice.flags,
        maxlevels: query.maxlevels,
        timeout: window_s,
        localid: field("localid", &choice.local_id)?,
        remoteid: field("remoteid", &choice.selector)?,
    };
    let mut record = Record::new(query.reqid, Payload::LidEntryCallback(entry));
    record.cbid = query.cbid;
    Ok(record)
}

fn acknowledgement(query: &LocalIdQuery, window_s: u32) -> Result<Record, ClientError> {
    let echo = LocalIdChoice {
        local_id: query.local_id.clone(),
        selector: query.remote_id.clone(),
        flags: LidEntryFlags::empty(),
    };
    answer_record(query, &echo, window_s)
}

/// Classifies a record received on the selection service's connection.
fn query_of(frame: Option<Frame>) -> Result<LocalIdQuery, ClientError> {
    let frame = frame.ok_or(ClientError::Disconnected)?;
    let record = frame.decode()?;
    match record.payload {
        Payload::LidEntryCallback(entry) if record.cbid != 0 => {
            let kind = if entry.flags.contains(LidEntryFlags::DBENTRY) {
                LocalIdQueryKind::DatabaseEntry
            } else {
                LocalIdQueryKind::Inquiry
            };
            Ok(LocalIdQuery {
                kind,
                remote_id: entry.remoteid.as_str().to_owned(),
                local_id: entry.localid.as_str().to_owned(),
                maxlevels: entry.maxlevels,
                deadline: UNIX_EPOCH + Duration::from_secs(u64::from(entry.timeout)),
                flags: entry.flags,
                reqid: record.reqid,
                cbid: record.cbid,
            })
        }
        Payload::Error(error) => Err(ClientError::from_daemon(error)),
        other => Err(ClientError::UnexpectedReply { cmd: other.cmd() }),
    }
}

#[cfg(test)]
mod tests {
    use tlspool_proto::ErrorCode;

    use super::*;

    fn inquiry() -> LocalIdQuery {
        LocalIdQuery {
            kind: LocalIdQueryKind::Inquiry,
            remote_id: "peer.dev.example".to_owned(),
            local_id: "dev.example".to_owned(),
            maxlevels: 1,
            deadline: UNIX_EPOCH,
            flags: LidEntryFlags::empty(),
            reqid: 4,
            cbid: 12,
        }
    }

    fn frame(record: &Record) -> Option<Frame> {
        Some(Frame {
            bytes: record.encode(),
            fd: None,
        })
    }

    #[test]
    fn answer_carries_choice_and_callback_id() {
        let choice =
            LocalIdChoice::stored("other.example", ".dev.example", LidEntryFlags::DBINSERT);
        let record = answer_record(&inquiry(), &choice, 30).expect("fits");
        assert_eq!(record.reqid, 4);
        assert_eq!(record.cbid, 12);
        let Payload::LidEntryCallback(entry) = record.payload else {
            panic!("expected LIDENTRY_CALLBACK, got {:?}", record.payload);
        };
        assert_eq!(entry.localid.as_str(), "other.example");
        assert_eq!(entry.remoteid.as_str(), ".dev.example");
        assert_eq!(entry.flags, LidEntryFlags::DBINSERT);
        assert_eq!(entry.timeout, 30);
    }

    #[test]
    fn answer_rejects_long_identity() {
        let choice = LocalIdChoice::once(&"a".repeat(200));
        let error = answer_record(&inquiry(), &choice, 30).expect_err("too long");
        assert!(matches!(
            error,
            ClientError::InvalidRequest {
                field: "localid",
                ..
            }
        ));
    }

    #[test]
    fn callback_becomes_query() {
        let entry = LidEntry {
            flags: LidEntryFlags::WANT_DBENTRY | LidEntryFlags::DBENTRY,
            maxlevels: 2,
            timeout: 1_800_000_000,
            localid: Identity::for_field("localid", "dev.example").expect("fits"),
            remoteid: Identity::for_field("remoteid", ".dev.example").expect("fits"),
        };
        let mut record = Record::new(0, Payload::LidEntryCallback(entry));
        record.cbid = 3;
        let query = query_of(frame(&record)).expect("a query");
        assert_eq!(query.kind, LocalIdQueryKind::DatabaseEntry);
        assert_eq!(query.remote_id, ".dev.example");
        assert_eq!(query.local_id, "dev.example");
        assert_eq!(query.maxlevels, 2);
        assert_eq!(
            query.deadline,
            UNIX_EPOCH + Duration::from_secs(1_800_000_000)
        );
        assert_eq!(query.cbid, 3);
    }

    #[test]
    fn refusal_becomes_daemon_error() {
        let refusal = Record::error_code(0, ErrorCode::LidEntryNotVacant);
        let error = query_of(frame(&refusal)).expect_err("refused");
        assert!(matches!(
            error,
            ClientError::Daemon {
                known: Some(ErrorCode::LidEntryNotVacant),
                ..
            }
        ));
    }

    #[test]
    fn closed_connection_is_disconnected() {
        assert!(matches!(query_of(None), Err(ClientError::Disconnected)));
    }

    #[test]
    fn window_rounds_up_to_seconds() {
        assert_eq!(window_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(window_seconds(Duration::from_secs(30)), 30);
        assert_eq!(window_seconds(Duration::MAX), u32::MAX);
    }
}
