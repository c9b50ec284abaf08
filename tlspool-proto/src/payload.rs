//! Payload structs of ERROR, PING, STARTTLS, PINENTRY, LIDENTRY and CONTROL, each encoded
//! field by field at the absolute record offsets of the TLS Pool version 2 layout (the C
//! structs packed to 2-byte alignment).
//!
//! Encoding zeroes every byte a payload does not use. Decoding ignores bytes past a string's
//! NUL and bytes past the end of the payload.

use std::fmt;

use crate::wire::{self, RecordBytes, Redacted};
use crate::{
    CTLKEY_LEN, ErrorCode, Facilities, FixedString, ID_FIELD_LEN, LidEntryFlags, PRODUCER_LEN,
    ProtoError, SERVICE_LEN, StartTlsFlags, TOKEN_LABEL_LEN, TOKEN_SERIAL_LEN,
};

/// An identity field (`localid`, `remoteid`): a DoNAI of at most 127 bytes, or empty.
pub type Identity = FixedString<ID_FIELD_LEN>;

/// A control key, chosen by the app to name its session in later requests.
pub type CtlKey = [u8; CTLKEY_LEN];

/// Size of the ERROR `message` field, in bytes.
pub const ERROR_MESSAGE_LEN: usize = 128;

/// Payload of `PIOC_ERROR_V2` (`pioc_error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPayload {
    /// A POSIX `errno` value or a TLS Pool error code (see [`ErrorCode`]).
    pub tlserrno: i32,
    /// Human-readable message of at most 128 bytes.
    ///
    /// Senders fill the field with `strncpy`, so a 128-byte message arrives without NUL and
    /// decoding accepts it. Decoding replaces each byte that is not valid UTF-8 with `?`
    /// instead of failing, because the message only serves humans. Encoding writes at most
    /// 128 bytes, cut on a character boundary, and stops at an embedded NUL.
    pub message: String,
}

impl ErrorPayload {
    /// Builds an ERROR payload, cutting `message` at its first NUL and to at most 127 bytes
    /// on a character boundary, so C receivers that expect a NUL find one.
    pub fn new(tlserrno: i32, message: &str) -> Self {
        let message = message.split('\0').next().unwrap_or_default();
        Self {
            tlserrno,
            message: truncate_on_char_boundary(message, ERROR_MESSAGE_LEN - 1).to_owned(),
        }
    }

    /// Builds an ERROR payload with the standard message of `code`.
    pub fn from_code(code: ErrorCode) -> Self {
        Self::new(code.code(), code.message())
    }

    /// Returns the TLS Pool error code, or `None` if `tlserrno` is an `errno` value.
    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::from_i32(self.tlserrno)
    }

    pub(crate) fn decode(record: &RecordBytes) -> Self {
        let field: [u8; ERROR_MESSAGE_LEN] = wire::get_array(record, 12);
        let end = field
            .iter()
            .position(|&byte| byte == 0)
            .unwrap_or(field.len());
        Self {
            tlserrno: wire::get_i32(record, 8),
            message: replace_invalid_utf8(&field[..end]),
        }
    }

    pub(crate) fn encode(&self, record: &mut RecordBytes) {
        let message = self.message.split('\0').next().unwrap_or_default();
        let message = truncate_on_char_boundary(message, ERROR_MESSAGE_LEN);
        wire::put_i32(record, 8, self.tlserrno);
        wire::put_bytes(record, 12, message.as_bytes());
    }
}

/// Payload of `PIOC_PING_V2` (`pioc_ping`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    /// `YYYYMMDD_producer`: the semantics date followed by the producer's DoNAI, such as
    /// [`crate::IDENTITY_V2`].
    pub producer: FixedString<PRODUCER_LEN>,
    /// Facilities requested (app) or offered (daemon).
    pub facilities: Facilities,
}

impl Ping {
    pub(crate) fn decode(record: &RecordBytes) -> Result<Self, ProtoError> {
        Ok(Self {
            producer: wire::get_string(record, 8, "YYYYMMDD_producer")?,
            facilities: Facilities::from_bits_retain(wire::get_u32(record, 144)),
        })
    }

    pub(crate) fn encode(&self, record: &mut RecordBytes) {
        wire::put_string(record, 8, &self.producer);
        wire::put_u32(record, 144, self.facilities.bits());
    }
}

/// Payload of STARTTLS, STARTTLS_LOCALID and PLAINTEXT_CONNECT (`pioc_starttls`).
#[derive(Clone, PartialEq, Eq)]
pub struct StartTls {
    /// Roles and options of the session.
    pub flags: StartTlsFlags,
    /// Locally defined bits; apps send 0.
    pub local: u32,
    /// IP protocol number: 6 for TCP, 17 for UDP, 132 for SCTP.
    pub ipproto: u8,
    /// SCTP stream number.
    pub streamid: u16,
    /// Local identity, or empty.
    pub localid: Identity,
    /// Remote identity, or empty.
    pub remoteid: Identity,
    /// Control key of the session.
    pub ctlkey: CtlKey,
    /// IANA service name such as `smtp`, at most 15 bytes.
    pub service: FixedString<SERVICE_LEN>,
    /// Handshake timeout in milliseconds, or [`crate::TIMEOUT_DEFAULT`] or
    /// [`crate::TIMEOUT_INFINITE`].
    pub timeout: u32,
}

impl StartTls {
    pub(crate) fn decode(record: &RecordBytes) -> Result<Self, ProtoError> {
        Ok(Self {
            flags: StartTlsFlags::from_bits_retain(wire::get_u32(record, 8)),
            local: wire::get_u32(record, 12),
            ipproto: wire::get_u8(record, 16),
            streamid: wire::get_u16(record, 18),
            localid: wire::get_string(record, 20, "localid")?,
            remoteid: wire::get_string(record, 148, "remoteid")?,
            ctlkey: wire::get_array(record, 276),
            service: wire::get_string(record, 292, "service")?,
            timeout: wire::get_u32(record, 308),
        })
    }

    pub(crate) fn encode(&self, record: &mut RecordBytes) {
        wire::put_u32(record, 8, self.flags.bits());
        wire::put_u32(record, 12, self.local);
        wire::put_u8(record, 16, self.ipproto);
        wire::put_u16(record, 18, self.streamid);
        wire::put_string(record, 20, &self.localid);
        wire::put_string(record, 148, &self.remoteid);
        wire::put_bytes(record, 276, &self.ctlkey);
        wire::put_string(record, 292, &self.service);
        wire::put_u32(record, 308, self.timeout);
    }
}

impl fmt::Debug for StartTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StartTls")
            .field("flags", &self.flags)
            .field("local", &self.local)
            .field("ipproto", &self.ipproto)
            .field("streamid", &self.streamid)
            .field("localid", &self.localid)
            .field("remoteid", &self.remoteid)
            .field("ctlkey", &Redacted(self.ctlkey.len()))
            .field("service", &self.service)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Payload of `PIOC_PINENTRY_V2` (`pioc_pinentry`).
#[derive(Clone, PartialEq, Eq)]
pub struct PinEntry {
    /// No flags are defined; senders send 0.
    pub flags: u32,
    /// Number of earlier failed attempts for this PIN.
    pub attempt: u32,
    /// Exclusive window of the PIN entry service, in microseconds.
    pub timeout_us: u32,
    /// The PIN; empty means no PIN or cancel. `Debug` output hides it.
    pub pin: FixedString<ID_FIELD_LEN>,
    /// Prompt chosen by the daemon.
    pub prompt: FixedString<ID_FIELD_LEN>,
    /// PKCS #11 token manufacturer, trailing spaces removed.
    pub token_manuf: FixedString<TOKEN_LABEL_LEN>,
    /// PKCS #11 token model, trailing spaces removed.
    pub token_model: FixedString<TOKEN_SERIAL_LEN>,
    /// PKCS #11 token serial number, trailing spaces removed.
    pub token_serial: FixedString<TOKEN_SERIAL_LEN>,
    /// PKCS #11 token label, trailing spaces removed.
    pub token_label: FixedString<TOKEN_LABEL_LEN>,
}

impl PinEntry {
    pub(crate) fn decode(record: &RecordBytes) -> Result<Self, ProtoError> {
        Ok(Self {
            flags: wire::get_u32(record, 8),
            attempt: wire::get_u32(record, 12),
            timeout_us: wire::get_u32(record, 16),
            pin: wire::get_string(record, 20, "pin")?,
            prompt: wire::get_string(record, 148, "prompt")?,
            token_manuf: wire::get_string(record, 276, "token_manuf")?,
            token_model: wire::get_string(record, 312, "token_model")?,
            token_serial: wire::get_string(record, 332, "token_serial")?,
            token_label: wire::get_string(record, 352, "token_label")?,
        })
    }

    pub(crate) fn encode(&self, record: &mut RecordBytes) {
        wire::put_u32(record, 8, self.flags);
        wire::put_u32(record, 12, self.attempt);
        wire::put_u32(record, 16, self.timeout_us);
        wire::put_string(record, 20, &self.pin);
        wire::put_string(record, 148, &self.prompt);
        wire::put_string(record, 276, &self.token_manuf);
        wire::put_string(record, 312, &self.token_model);
        wire::put_string(record, 332, &self.token_serial);
        wire::put_string(record, 352, &self.token_label);
    }
}

impl fmt::Debug for PinEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinEntry")
            .field("flags", &self.flags)
            .field("attempt", &self.attempt)
            .field("timeout_us", &self.timeout_us)
            .field("pin", &Redacted(self.pin.len()))
            .field("prompt", &self.prompt)
            .field("token_manuf", &self.token_manuf)
            .field("token_model", &self.token_model)
            .field("token_serial", &self.token_serial)
            .field("token_label", &self.token_label)
            .finish()
    }
}

/// Payload of LIDENTRY_REGISTER and LIDENTRY_CALLBACK (`pioc_lidentry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LidEntry {
    /// Registration, callback or response flags.
    pub flags: LidEntryFlags,
    /// Generalisation steps between the concrete remote identity and the matched selector.
    pub maxlevels: u16,
    /// Registration: response window in seconds. Callback: absolute UNIX time in seconds.
    pub timeout: u32,
    /// Local identity.
    pub localid: Identity,
    /// Remote identity or selector.
    pub remoteid: Identity,
}

impl LidEntry {
    pub(crate) fn decode(record: &RecordBytes) -> Result<Self, ProtoError> {
        Ok(Self {
            flags: LidEntryFlags::from_bits_retain(wire::get_u32(record, 8)),
            maxlevels: wire::get_u16(record, 12),
            timeout: wire::get_u32(record, 14),
            localid: wire::get_string(record, 18, "localid")?,
            remoteid: wire::get_string(record, 146, "remoteid")?,
        })
    }

    pub(crate) fn encode(&self, record: &mut RecordBytes) {
        wire::put_u32(record, 8, self.flags.bits());
        wire::put_u16(record, 12, self.maxlevels);
        wire::put_u32(record, 14, self.timeout);
        wire::put_string(record, 18, &self.localid);
        wire::put_string(record, 146, &self.remoteid);
    }
}

/// Payload of CONTROL_DETACH and CONTROL_REATTACH (`pioc_control`).
#[derive(Clone, PartialEq, Eq)]
pub struct Control {
    /// No flags are defined; senders send 0.
    pub flags: u32,
    /// Control key of the session.
    pub ctlkey: CtlKey,
    /// Unused name field.
    pub name: FixedString<ID_FIELD_LEN>,
}

impl Control {
    /// Builds a CONTROL payload for `ctlkey` with no flags and an empty name.
    pub fn new(ctlkey: CtlKey) -> Self {
        Self {
            flags: 0,
            ctlkey,
            name: FixedString::empty(),
        }
    }

    pub(crate) fn decode(record: &RecordBytes) -> Result<Self, ProtoError> {
        Ok(Self {
            flags: wire::get_u32(record, 8),
            ctlkey: wire::get_array(record, 12),
            name: wire::get_string(record, 28, "name")?,
        })
    }

    pub(crate) fn encode(&self, record: &mut RecordBytes) {
        wire::put_u32(record, 8, self.flags);
        wire::put_bytes(record, 12, &self.ctlkey);
        wire::put_string(record, 28, &self.name);
    }
}

impl fmt::Debug for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Control")
            .field("flags", &self.flags)
            .field("ctlkey", &Redacted(self.ctlkey.len()))
            .field("name", &self.name)
            .finish()
    }
}

/// Cuts `value` to at most `max` bytes without splitting a character.
fn truncate_on_char_boundary(value: &str, max: usize) -> &str {
    if value.len() <= max {
        return value;
    }
    let mut end = max;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// Decodes `bytes` as UTF-8, replacing each invalid byte with `?` so the length never grows.
fn replace_invalid_utf8(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        text.extend(std::iter::repeat_n('?', chunk.invalid().len()));
    }
    text
}
