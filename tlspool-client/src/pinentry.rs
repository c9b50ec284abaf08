//! The PIN entry service of a helper program: registration, the daemon's PIN requests and
//! the answers, over a private connection to the daemon, in blocking and async forms.
//!
//! The helper sends a PINENTRY registration with its exclusive window in microseconds. The
//! daemon sends no reply unless it refuses the registration with ERROR
//! `E_TLSPOOL_PINENTRY_NOT_VACANT`. To learn the outcome, registering sends a PING right
//! after the registration and waits for its reply. This daemon registers before it reads the
//! next record, so a refusal arrives before the PING reply and registration returns it.
//! Each PIN request is a PINENTRY callback, and its answer is also the next registration.
//!
//! The PIN is written straight into the encoded record, which is wiped once sent, so no
//! copy of it stays in this process's memory after [`answer`](PinEntryService::answer).

use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;
use std::time::Duration;

use tokio::net::UnixStream;
use tracing::debug;
use zeroize::Zeroizing;

use tlspool_proto::blocking::RecordStream;
use tlspool_proto::tokio::{RecordReader, RecordWriter, split};
use tlspool_proto::{FixedString, Frame, ID_FIELD_LEN, Payload, PinEntry, RECORD_LEN, Record};

use crate::error::ClientError;
use crate::ping;
use crate::socket::{self, connect_error, send_error};

/// Request id of the registration and of the PIN requests that answer it.
const REGISTRATION_REQID: u16 = 0;

/// Request id of the PING that confirms the registration.
const CONFIRMATION_REQID: u16 = 1;

/// Offset of the `pin` field in a PINENTRY record.
const PIN_OFFSET: usize = 20;

/// The longest PIN a PINENTRY record carries, in bytes.
pub const MAX_PIN_LEN: usize = ID_FIELD_LEN - 1;

/// A request from the daemon for the PIN of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRequest {
    /// The token's `CK_TOKEN_INFO.manufacturerID`.
    pub token_manufacturer: String,
    /// The token's `CK_TOKEN_INFO.model`.
    pub token_model: String,
    /// The token's `CK_TOKEN_INFO.serialNumber`.
    pub token_serial: String,
    /// The token's `CK_TOKEN_INFO.label`.
    pub token_label: String,
    /// Wrong PINs the daemon counted for this token before this request.
    pub attempt: u32,
    /// The prompt to show, such as `Enter PIN: `.
    pub prompt: String,
    reqid: u16,
    cbid: u16,
}

/// A registered PIN entry service on a blocking connection of its own.
#[derive(Debug)]
pub struct BlockingPinEntryService {
    stream: RecordStream,
    timeout_us: u32,
    /// A PIN request that arrived before the PING reply.
    early: Option<PinRequest>,
}

/// A registered PIN entry service on an async connection of its own.
#[derive(Debug)]
pub struct PinEntryService {
    reader: RecordReader,
    writer: RecordWriter,
    timeout_us: u32,
    /// A PIN request that arrived before the PING reply.
    early: Option<PinRequest>,
}

/// Connects to the daemon at `path` (or the configured socket) and registers a PIN entry
/// service whose exclusive window lasts `window`, blocking the calling thread.
///
/// # Errors
///
/// [`ClientError::SocketPathTooLong`], [`ClientError::Connect`], [`ClientError::Daemon`]
/// when the daemon refuses the registration (code `E_TLSPOOL_PINENTRY_NOT_VACANT`), and
/// [`ClientError::Disconnected`] or [`ClientError::Proto`] when sending or receiving fails.
pub fn register_pin_entry_blocking(
    path: Option<&Path>,
    window: Duration,
) -> Result<BlockingPinEntryService, ClientError> {
    let path = socket::resolve_socket_path(path, None)?;
    let stream = StdUnixStream::connect(&path).map_err(|source| connect_error(&path, source))?;
    debug!(path = %path.display(), "registering a PIN entry service");
    let mut service = BlockingPinEntryService {
        stream: RecordStream::new(stream),
        timeout_us: window_us(window),
        early: None,
    };
    let record = registration(REGISTRATION_REQID, 0, service.timeout_us);
    service.stream.send(&record, None).map_err(send_error)?;
    let ping = Record::new(CONFIRMATION_REQID, ping::request()?);
    service
        .stream
        .send_record(&ping, None)
        .map_err(send_error)?;
    loop {
        match confirmation_step(service.stream.recv()?)? {
            Confirmation::Confirmed => return Ok(service),
            Confirmation::Early(request) => service.early = Some(request),
        }
    }
}

/// Connects to the daemon at `path` (or the configured socket) and registers a PIN entry
/// service whose exclusive window lasts `window`.
///
/// # Errors
///
/// As [`register_pin_entry_blocking`].
///
/// # Panics
///
/// When called outside a tokio runtime.
pub async fn register_pin_entry(
    path: Option<&Path>,
    window: Duration,
) -> Result<PinEntryService, ClientError> {
    let path = socket::resolve_socket_path(path, None)?;
    let stream = UnixStream::connect(&path)
        .await
        .map_err(|source| connect_error(&path, source))?;
    debug!(path = %path.display(), "registering a PIN entry service");
    let (reader, writer) = split(stream);
    let mut service = PinEntryService {
        reader,
        writer,
        timeout_us: window_us(window),
        early: None,
    };
    let record = registration(REGISTRATION_REQID, 0, service.timeout_us);
    service
        .writer
        .send(&record, None)
        .await
        .map_err(send_error)?;
    let ping = Record::new(CONFIRMATION_REQID, ping::request()?);
    service
        .writer
        .send_record(&ping, None)
        .await
        .map_err(send_error)?;
    loop {
        match confirmation_step(service.reader.recv().await?)? {
            Confirmation::Confirmed => return Ok(service),
            Confirmation::Early(request) => service.early = Some(request),
        }
    }
}

impl PinRequest {
    /// Builds a request as the daemon would send it, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_test(
        manufacturer: &str,
        model: &str,
        serial: &str,
        label: &str,
        attempt: u32,
    ) -> Self {
        Self {
            token_manufacturer: manufacturer.to_owned(),
            token_model: model.to_owned(),
            token_serial: serial.to_owned(),
            token_label: label.to_owned(),
            attempt,
            prompt: "Enter PIN: ".to_owned(),
            reqid: 0,
            cbid: 1,
        }
    }
}

impl BlockingPinEntryService {
    /// Waits for the daemon's next PIN request.
    ///
    /// # Errors
    ///
    /// [`ClientError::Daemon`] when the daemon sends ERROR, [`ClientError::Disconnected`]
    /// when it closed the connection, [`ClientError::UnexpectedReply`] for any other record,
    /// and [`ClientError::Proto`] when receiving fails.
    pub fn next_request(&mut self) -> Result<PinRequest, ClientError> {
        if let Some(request) = self.early.take() {
            return Ok(request);
        }
        let frame = self.stream.recv()?;
        request_of(frame)
    }

    /// Answers `request` with `pin`, or declines it with an empty `pin`, and registers for
    /// the next request.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidRequest`] for a PIN longer than [`MAX_PIN_LEN`] or with a NUL
    /// byte, and [`ClientError::Disconnected`] or [`ClientError::Proto`] when sending fails.
    pub fn answer(&mut self, request: &PinRequest, pin: &str) -> Result<(), ClientError> {
        let record = answer_record(request, pin, self.timeout_us)?;
        self.stream.send(&record, None).map_err(send_error)
    }
}

impl PinEntryService {
    /// Waits for the daemon's next PIN request.
    ///
    /// # Errors
    ///
    /// As [`BlockingPinEntryService::next_request`].
    pub async fn next_request(&mut self) -> Result<PinRequest, ClientError> {
        if let Some(request) = self.early.take() {
            return Ok(request);
        }
        let frame = self.reader.recv().await?;
        request_of(frame)
    }

    /// Answers `request` with `pin`, or declines it with an empty `pin`, and registers for
    /// the next request.
    ///
    /// # Errors
    ///
    /// As [`BlockingPinEntryService::answer`].
    pub async fn answer(&mut self, request: &PinRequest, pin: &str) -> Result<(), ClientError> {
        let record = answer_record(request, pin, self.timeout_us)?;
        self.writer.send(&record, None).await.map_err(send_error)
    }
}

/// Converts `window` to the wire's microseconds, saturating at `u32::MAX` (about 71 minutes).
fn window_us(window: Duration) -> u32 {
    u32::try_from(window.as_micros()).unwrap_or(u32::MAX)
}

/// Encodes a PINENTRY record without PIN.
fn registration(reqid: u16, cbid: u16, timeout_us: u32) -> Zeroizing<[u8; RECORD_LEN]> {
    let entry = PinEntry {
        flags: 0,
        attempt: 0,
        timeout_us,
        pin: FixedString::empty(),
        prompt: FixedString::empty(),
        token_manuf: FixedString::empty(),
        token_model: FixedString::empty(),
        token_serial: FixedString::empty(),
        token_label: FixedString::empty(),
    };
    let mut record = Record::new(reqid, Payload::PinEntry(entry));
    record.cbid = cbid;
    Zeroizing::new(record.encode())
}

/// Encodes the answer to `request`: a registration with `pin` written into its `pin` field.
fn answer_record(
    request: &PinRequest,
    pin: &str,
    timeout_us: u32,
) -> Result<Zeroizing<[u8; RECORD_LEN]>, ClientError> {
    let invalid = |reason: String| ClientError::InvalidRequest {
        field: "pin",
        reason,
    };
    if pin.len() > MAX_PIN_LEN {
        return Err(invalid(format!(
            "the PIN is {} bytes long, longer than the maximum of {MAX_PIN_LEN}",
            pin.len()
        )));
    }
    if pin.as_bytes().contains(&0) {
        return Err(invalid("the PIN contains a NUL byte".to_owned()));
    }
    let mut record = registration(request.reqid, request.cbid, timeout_us);
    record[PIN_OFFSET..PIN_OFFSET + pin.len()].copy_from_slice(pin.as_bytes());
    Ok(record)
}

/// A record received while registration waits for the PING reply.
enum Confirmation {
    /// The PING reply: the registration is in place.
    Confirmed,
    /// A PIN request that the daemon sent before the PING reply.
    Early(PinRequest),
}

/// Classifies a record received before the PING reply. A refusal ERROR becomes the error.
fn confirmation_step(frame: Option<Frame>) -> Result<Confirmation, ClientError> {
    let frame = frame.ok_or(ClientError::Disconnected)?;
    let header = frame.header();
    if header.reqid == CONFIRMATION_REQID && header.cbid == 0 {
        ping::reply(frame.decode()?)?;
        return Ok(Confirmation::Confirmed);
    }
    request_of(Some(frame)).map(Confirmation::Early)
}

/// Classifies a record received on the PIN entry connection.
fn request_of(frame: Option<Frame>) -> Result<PinRequest, ClientError> {
    let frame = frame.ok_or(ClientError::Disconnected)?;
    let record = frame.decode()?;
    match record.payload {
        Payload::PinEntry(entry) if record.cbid != 0 => Ok(PinRequest {
            token_manufacturer: entry.token_manuf.as_str().to_owned(),
            token_model: entry.token_model.as_str().to_owned(),
            token_serial: entry.token_serial.as_str().to_owned(),
            token_label: entry.token_label.as_str().to_owned(),
            attempt: entry.attempt,
            prompt: entry.prompt.as_str().to_owned(),
            reqid: record.reqid,
            cbid: record.cbid,
        }),
        Payload::Error(error) => Err(ClientError::from_daemon(error)),
        other => Err(ClientError::UnexpectedReply { cmd: other.cmd() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> PinRequest {
        PinRequest {
            token_manufacturer: String::new(),
            token_model: String::new(),
            token_serial: String::new(),
            token_label: "tlspool".to_owned(),
            attempt: 1,
            prompt: "Enter PIN: ".to_owned(),
            reqid: 9,
            cbid: 17,
        }
    }

    #[test]
    fn answer_carries_pin_and_callback_id() {
        let bytes = answer_record(&request(), "1234", 5_000_000).expect("valid PIN");
        let record = Record::decode(&bytes).expect("decodes");
        assert_eq!(record.reqid, 9);
        assert_eq!(record.cbid, 17);
        let Payload::PinEntry(entry) = record.payload else {
            panic!("expected PINENTRY, got {:?}", record.payload);
        };
        assert_eq!(entry.pin.as_str(), "1234");
        assert_eq!(entry.timeout_us, 5_000_000);
    }

    #[test]
    fn answer_rejects_long_pin() {
        let pin = "1".repeat(MAX_PIN_LEN + 1);
        let error = answer_record(&request(), &pin, 0).expect_err("too long");
        assert!(matches!(
            error,
            ClientError::InvalidRequest { field: "pin", .. }
        ));
        assert!(answer_record(&request(), &"1".repeat(MAX_PIN_LEN), 0).is_ok());
    }

    #[test]
    fn answer_rejects_nul_in_pin() {
        let error = answer_record(&request(), "12\u{0}4", 0).expect_err("NUL byte");
        assert!(matches!(
            error,
            ClientError::InvalidRequest { field: "pin", .. }
        ));
    }

    #[test]
    fn window_saturates_at_u32() {
        assert_eq!(window_us(Duration::from_secs(60)), 60_000_000);
        assert_eq!(window_us(Duration::from_secs(100_000)), u32::MAX);
    }

    #[test]
    fn ping_reply_confirms_registration() {
        let reply = Record::new(CONFIRMATION_REQID, ping::request().expect("PING payload"));
        let frame = Frame {
            bytes: reply.encode(),
            fd: None,
        };
        let step = confirmation_step(Some(frame)).expect("confirmed");
        assert!(matches!(step, Confirmation::Confirmed));
    }

    #[test]
    fn refusal_becomes_daemon_error() {
        let refusal = Record::error_code(0, tlspool_proto::ErrorCode::PinEntryNotVacant);
        let frame = Frame {
            bytes: refusal.encode(),
            fd: None,
        };
        let error = request_of(Some(frame)).expect_err("refused");
        let ClientError::Daemon { known, .. } = error else {
            panic!("expected a daemon error, got {error:?}");
        };
        assert_eq!(known, Some(tlspool_proto::ErrorCode::PinEntryNotVacant));
    }
}
