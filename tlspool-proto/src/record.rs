//! The 388-byte command record: its header, the payload selected by the command code, and
//! their encoding.
//!
//! Layout: `pio_reqid` (u16, offset 0), `pio_cbid` (u16, offset 2), `pio_cmd` (u32, offset 4)
//! and the payload union at offset 8, all integers in native byte order.

use crate::payload::{Control, ErrorPayload, LidEntry, PinEntry, Ping, StartTls};
use crate::prng_info::{Info, Prng};
use crate::wire::{self, RecordBytes};
use crate::{CommandCode, ErrorCode, ProtoError, RECORD_LEN};

/// The record header, which decodes from any 388 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Request id chosen by the app and echoed in every record about that request.
    pub reqid: u16,
    /// Callback id (1..=1024), or 0 for a record that is not a callback or its response.
    pub cbid: u16,
    /// Command code; see [`CommandCode`].
    pub cmd: u32,
}

impl Header {
    /// Decodes the header fields.
    pub fn decode(record: &[u8; RECORD_LEN]) -> Self {
        Self {
            reqid: wire::get_u16(record, 0),
            cbid: wire::get_u16(record, 2),
            cmd: wire::get_u32(record, 4),
        }
    }

    /// Returns the command code, or `None` if it is unknown.
    pub fn command(&self) -> Option<CommandCode> {
        CommandCode::from_u32(self.cmd)
    }
}

/// A decoded payload, selected by the command code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// `PIOC_SUCCESS_V2`; the payload bytes carry no meaning.
    Success,
    /// `PIOC_ERROR_V2`.
    Error(ErrorPayload),
    /// `PIOC_PING_V2`.
    Ping(Ping),
    /// `PIOC_STARTTLS_V2`.
    StartTls(StartTls),
    /// `PIOC_STARTTLS_LOCALID_V2`.
    StartTlsLocalId(StartTls),
    /// `PIOC_PLAINTEXT_CONNECT_V2`.
    PlaintextConnect(StartTls),
    /// `PIOC_PINENTRY_V2`.
    PinEntry(PinEntry),
    /// `PIOC_PRNG_V2`.
    Prng(Prng),
    /// `PIOC_INFO_V2`.
    Info(Info),
    /// `PIOC_CONTROL_DETACH_V2`.
    ControlDetach(Control),
    /// `PIOC_CONTROL_REATTACH_V2`.
    ControlReattach(Control),
    /// `PIOC_LIDENTRY_REGISTER_V2`.
    LidEntryRegister(LidEntry),
    /// `PIOC_LIDENTRY_CALLBACK_V2`.
    LidEntryCallback(LidEntry),
    /// A command code this crate does not know; the daemon replies to it with
    /// `E_TLSPOOL_COMMAND_UNKNOWN`. Encoding writes the code with a zero payload.
    Unknown {
        /// The command code as received.
        cmd: u32,
    },
}

impl Payload {
    /// Returns the wire command code.
    pub fn cmd(&self) -> u32 {
        match (self, self.command()) {
            (Self::Unknown { cmd }, _) => *cmd,
            (_, Some(code)) => code.code(),
            (_, None) => CommandCode::Success.code(),
        }
    }

    /// Returns the command code, or `None` for [`Payload::Unknown`].
    ///
    /// An `Unknown` payload whose `cmd` happens to be a known code still returns `None`.
    pub fn command(&self) -> Option<CommandCode> {
        let code = match self {
            Self::Success => CommandCode::Success,
            Self::Error(_) => CommandCode::Error,
            Self::Ping(_) => CommandCode::Ping,
            Self::StartTls(_) => CommandCode::StartTls,
            Self::StartTlsLocalId(_) => CommandCode::StartTlsLocalId,
            Self::PlaintextConnect(_) => CommandCode::PlaintextConnect,
            Self::PinEntry(_) => CommandCode::PinEntry,
            Self::Prng(_) => CommandCode::Prng,
            Self::Info(_) => CommandCode::Info,
            Self::ControlDetach(_) => CommandCode::ControlDetach,
            Self::ControlReattach(_) => CommandCode::ControlReattach,
            Self::LidEntryRegister(_) => CommandCode::LidEntryRegister,
            Self::LidEntryCallback(_) => CommandCode::LidEntryCallback,
            Self::Unknown { .. } => return None,
        };
        Some(code)
    }

    fn decode(cmd: u32, record: &RecordBytes) -> Result<Self, ProtoError> {
        let Some(code) = CommandCode::from_u32(cmd) else {
            return Ok(Self::Unknown { cmd });
        };
        let payload = match code {
            CommandCode::Success => Self::Success,
            CommandCode::Error => Self::Error(ErrorPayload::decode(record)),
            CommandCode::Ping => Self::Ping(Ping::decode(record)?),
            CommandCode::StartTls => Self::StartTls(StartTls::decode(record)?),
            CommandCode::StartTlsLocalId => Self::StartTlsLocalId(StartTls::decode(record)?),
            CommandCode::PlaintextConnect => Self::PlaintextConnect(StartTls::decode(record)?),
            CommandCode::PinEntry => Self::PinEntry(PinEntry::decode(record)?),
            CommandCode::Prng => Self::Prng(Prng::decode(record)),
            CommandCode::Info => Self::Info(Info::decode(record)),
            CommandCode::ControlDetach => Self::ControlDetach(Control::decode(record)?),
            CommandCode::ControlReattach => Self::ControlReattach(Control::decode(record)?),
            CommandCode::LidEntryRegister => Self::LidEntryRegister(LidEntry::decode(record)?),
            CommandCode::LidEntryCallback => Self::LidEntryCallback(LidEntry::decode(record)?),
        };
        Ok(payload)
    }

    fn encode(&self, record: &mut RecordBytes) {
        match self {
            Self::Success | Self::Unknown { .. } => {}
            Self::Error(error) => error.encode(record),
            Self::Ping(ping) => ping.encode(record),
            Self::StartTls(starttls)
            | Self::StartTlsLocalId(starttls)
            | Self::PlaintextConnect(starttls) => starttls.encode(record),
            Self::PinEntry(pinentry) => pinentry.encode(record),
            Self::Prng(prng) => prng.encode(record),
            Self::Info(info) => info.encode(record),
            Self::ControlDetach(control) | Self::ControlReattach(control) => {
                control.encode(record);
            }
            Self::LidEntryRegister(lidentry) | Self::LidEntryCallback(lidentry) => {
                lidentry.encode(record);
            }
        }
    }
}

/// A decoded command record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Request id; see [`Header::reqid`].
    pub reqid: u16,
    /// Callback id; see [`Header::cbid`].
    pub cbid: u16,
    /// The payload, which also determines the command code.
    pub payload: Payload,
}

impl Record {
    /// Builds a record that is not a callback (`cbid` 0).
    pub fn new(reqid: u16, payload: Payload) -> Self {
        Self {
            reqid,
            cbid: 0,
            payload,
        }
    }

    /// Builds a SUCCESS response to `reqid`.
    pub fn success(reqid: u16) -> Self {
        Self::new(reqid, Payload::Success)
    }

    /// Builds an ERROR response to `reqid` with `code` (an `errno` value or a TLS Pool error
    /// code) and `message`, cut to at most 127 bytes on a character boundary.
    pub fn error(reqid: u16, code: i32, message: &str) -> Self {
        Self::new(reqid, Payload::Error(ErrorPayload::new(code, message)))
    }

    /// Builds an ERROR response to `reqid` with `code` and its standard message.
    pub fn error_code(reqid: u16, code: ErrorCode) -> Self {
        Self::new(reqid, Payload::Error(ErrorPayload::from_code(code)))
    }

    /// Decodes a record.
    ///
    /// An unknown command code yields [`Payload::Unknown`].
    ///
    /// # Errors
    ///
    /// A [`ProtoError`] naming the malformed payload field: an unterminated string
    /// ([`ProtoError::Unterminated`]) or a string that is not UTF-8
    /// ([`ProtoError::InvalidUtf8`]). [`Header::decode`] still reads the header of such a
    /// record, so the daemon can reply to it.
    pub fn decode(record: &[u8; RECORD_LEN]) -> Result<Self, ProtoError> {
        let header = Header::decode(record);
        Ok(Self {
            reqid: header.reqid,
            cbid: header.cbid,
            payload: Payload::decode(header.cmd, record)?,
        })
    }

    /// Decodes a record from a slice that must be exactly [`RECORD_LEN`] bytes long.
    ///
    /// # Errors
    ///
    /// [`ProtoError::ShortRecord`] for a slice of another length, otherwise as
    /// [`Record::decode`].
    pub fn decode_slice(bytes: &[u8]) -> Result<Self, ProtoError> {
        let record: &RecordBytes = bytes
            .try_into()
            .map_err(|_| ProtoError::ShortRecord { len: bytes.len() })?;
        Self::decode(record)
    }

    /// Encodes the record, zeroing every byte the payload does not use.
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut record = [0u8; RECORD_LEN];
        wire::put_u16(&mut record, 0, self.reqid);
        wire::put_u16(&mut record, 2, self.cbid);
        wire::put_u32(&mut record, 4, self.payload.cmd());
        self.payload.encode(&mut record);
        record
    }

    /// Returns the header of the encoded record.
    pub fn header(&self) -> Header {
        Header {
            reqid: self.reqid,
            cbid: self.cbid,
            cmd: self.payload.cmd(),
        }
    }
}
