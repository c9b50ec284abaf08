//! Payloads with a length-prefixed byte buffer: PRNG (`pioc_prng`) and INFO (`pioc_info`).
//!
//! Decoding keeps the length fields as received, because the daemon replies to bad lengths with
//! its own error codes (`E_TLSPOOL_PRNG_UNAVAILABLE`, `E_TLSPOOL_COMMAND_NOTIMPL`). The
//! accessors check them and name the field at fault.

use std::fmt;

use crate::wire::{self, RecordBytes, Redacted};
use crate::{CTLKEY_LEN, CtlKey, INFO_BUF_LEN, InfoKind, PRNG_BUF_LEN, ProtoError};

/// Payload of `PIOC_PRNG_V2` (`pioc_prng`), the RFC 5705 keying-material exporter.
///
/// A request's buffer contains `ctlkey ‖ label ‖ context`. A response carries the exporter
/// output in `buffer[..prng_len]`. `Debug` output hides the buffer.
#[derive(Clone, PartialEq, Eq)]
pub struct Prng {
    /// Label length, more than 0.
    pub in1_len: i16,
    /// Context length; negative means no context, which RFC 5705 distinguishes from an empty one.
    pub in2_len: i16,
    /// Bytes of output requested, or returned.
    pub prng_len: i16,
    /// Control key, label and context (request) or output (response).
    pub buffer: [u8; PRNG_BUF_LEN],
}

impl Prng {
    /// Builds a request for `prng_len` bytes of keying material from the session `ctlkey`.
    ///
    /// # Errors
    ///
    /// [`ProtoError::LengthOutOfRange`] if the label is empty, or the label and context do
    /// not fit the buffer after the control key, or `prng_len` exceeds the buffer.
    pub fn request(
        ctlkey: &CtlKey,
        label: &[u8],
        context: Option<&[u8]>,
        prng_len: usize,
    ) -> Result<Self, ProtoError> {
        let room = PRNG_BUF_LEN - CTLKEY_LEN;
        let in1_len = check_length("in1_len", label.len(), 1, room)?;
        let context_len = context.map_or(0, <[u8]>::len);
        check_length::<usize>("in2_len", context_len, 0, room - label.len())?;
        let in2_len = match context {
            Some(_) => i16::try_from(context_len).unwrap_or(i16::MAX),
            None => -1,
        };
        let prng_len = check_length("prng_len", prng_len, 0, PRNG_BUF_LEN)?;

        let mut buffer = [0u8; PRNG_BUF_LEN];
        buffer[..CTLKEY_LEN].copy_from_slice(ctlkey);
        buffer[CTLKEY_LEN..CTLKEY_LEN + label.len()].copy_from_slice(label);
        if let Some(context) = context {
            let start = CTLKEY_LEN + label.len();
            buffer[start..start + context.len()].copy_from_slice(context);
        }
        Ok(Self {
            in1_len,
            in2_len,
            prng_len,
            buffer,
        })
    }

    /// Returns the control key at the start of a request's buffer.
    pub fn ctlkey(&self) -> CtlKey {
        std::array::from_fn(|index| self.buffer[index])
    }

    /// Returns the label of a request.
    ///
    /// # Errors
    ///
    /// [`ProtoError::LengthOutOfRange`] naming `in1_len` if it is not positive or the label
    /// does not fit the buffer after the control key.
    pub fn label(&self) -> Result<&[u8], ProtoError> {
        let len = self.label_len()?;
        Ok(&self.buffer[CTLKEY_LEN..CTLKEY_LEN + len])
    }

    /// Returns the context of a request, or `None` if `in2_len` is negative.
    ///
    /// # Errors
    ///
    /// [`ProtoError::LengthOutOfRange`] naming `in1_len` or `in2_len` if label and context
    /// together do not fit the buffer after the control key.
    pub fn context(&self) -> Result<Option<&[u8]>, ProtoError> {
        let label_len = self.label_len()?;
        let Ok(context_len) = usize::try_from(self.in2_len) else {
            return Ok(None);
        };
        let room = PRNG_BUF_LEN - CTLKEY_LEN - label_len;
        check_length::<usize>("in2_len", context_len, 0, room)?;
        let start = CTLKEY_LEN + label_len;
        Ok(Some(&self.buffer[start..start + context_len]))
    }

    /// Returns the output of a response, `buffer[..prng_len]`.
    ///
    /// # Errors
    ///
    /// [`ProtoError::LengthOutOfRange`] naming `prng_len` if it is negative or exceeds the
    /// buffer.
    pub fn output(&self) -> Result<&[u8], ProtoError> {
        let len = signed_length("prng_len", self.prng_len, 0, PRNG_BUF_LEN)?;
        Ok(&self.buffer[..len])
    }

    fn label_len(&self) -> Result<usize, ProtoError> {
        signed_length("in1_len", self.in1_len, 1, PRNG_BUF_LEN - CTLKEY_LEN)
    }

    pub(crate) fn decode(record: &RecordBytes) -> Self {
        Self {
            in1_len: wire::get_i16(record, 8),
            in2_len: wire::get_i16(record, 10),
            prng_len: wire::get_i16(record, 12),
            buffer: wire::get_array(record, 14),
        }
    }

    pub(crate) fn encode(&self, record: &mut RecordBytes) {
        wire::put_i16(record, 8, self.in1_len);
        wire::put_i16(record, 10, self.in2_len);
        wire::put_i16(record, 12, self.prng_len);
        wire::put_bytes(record, 14, &self.buffer);
    }
}

impl fmt::Debug for Prng {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prng")
            .field("in1_len", &self.in1_len)
            .field("in2_len", &self.in2_len)
            .field("prng_len", &self.prng_len)
            .field("buffer", &Redacted(self.buffer.len()))
            .finish()
    }
}

/// Payload of `PIOC_INFO_V2` (`pioc_info`).
#[derive(Clone, PartialEq, Eq)]
pub struct Info {
    /// Control key of the session.
    pub ctlkey: CtlKey,
    /// Kind of information to query or check.
    pub kind: InfoKind,
    /// Value length in `buffer`, or [`Info::QUERY_LEN`] for a query.
    pub len: u16,
    /// Value to check, or returned value.
    pub buffer: [u8; INFO_BUF_LEN],
}

impl Info {
    /// `len` of a query, which supplies no value.
    pub const QUERY_LEN: u16 = 0xFFFF;

    /// Builds a query of `kind` for the session `ctlkey`.
    pub fn query(ctlkey: CtlKey, kind: InfoKind) -> Self {
        Self {
            ctlkey,
            kind,
            len: Self::QUERY_LEN,
            buffer: [0; INFO_BUF_LEN],
        }
    }

    /// Builds a check of `value` (or a response carrying `value`) for the session `ctlkey`.
    ///
    /// # Errors
    ///
    /// [`ProtoError::LengthOutOfRange`] naming `len` if `value` exceeds 334 bytes.
    pub fn with_value(ctlkey: CtlKey, kind: InfoKind, value: &[u8]) -> Result<Self, ProtoError> {
        let len = check_length("len", value.len(), 0, INFO_BUF_LEN)?;
        let mut buffer = [0u8; INFO_BUF_LEN];
        buffer[..value.len()].copy_from_slice(value);
        Ok(Self {
            ctlkey,
            kind,
            len,
            buffer,
        })
    }

    /// Returns true if the record is a query (`len` is 0xFFFF).
    pub fn is_query(&self) -> bool {
        self.len == Self::QUERY_LEN
    }

    /// Returns the supplied value, or `None` for a query.
    ///
    /// # Errors
    ///
    /// [`ProtoError::LengthOutOfRange`] naming `len` if it exceeds 334 and is not 0xFFFF.
    pub fn value(&self) -> Result<Option<&[u8]>, ProtoError> {
        if self.is_query() {
            return Ok(None);
        }
        let len: usize = check_length("len", usize::from(self.len), 0, INFO_BUF_LEN)?;
        Ok(Some(&self.buffer[..len]))
    }

    pub(crate) fn decode(record: &RecordBytes) -> Self {
        Self {
            ctlkey: wire::get_array(record, 8),
            kind: InfoKind(wire::get_u32(record, 24)),
            len: wire::get_u16(record, 28),
            buffer: wire::get_array(record, 30),
        }
    }

    pub(crate) fn encode(&self, record: &mut RecordBytes) {
        wire::put_bytes(record, 8, &self.ctlkey);
        wire::put_u32(record, 24, self.kind.0);
        wire::put_u16(record, 28, self.len);
        wire::put_bytes(record, 30, &self.buffer);
    }
}

impl fmt::Debug for Info {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Info")
            .field("ctlkey", &Redacted(self.ctlkey.len()))
            .field("kind", &self.kind)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// The value of `PIOK_INFO_PRIVACY_MODE`: whether the certificates of a session crossed the
/// network encrypted, and by what.
///
/// The value travels as the ASCII name of [`Self::name`], without a terminating NUL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrivacyMode {
    /// The certificates crossed in clear: a TLS 1.2 or DTLS handshake without privacy mode.
    None,
    /// Privacy mode ran: an anonymous TLS 1.2 handshake, then a renegotiation under its
    /// encryption that exchanged the certificates.
    Renegotiated,
    /// TLS 1.3 (RFC 8446), which encrypts every handshake message after the ServerHello, the
    /// certificates included.
    Tls13,
}

impl PrivacyMode {
    /// Every mode.
    pub const ALL: [Self; 3] = [Self::None, Self::Renegotiated, Self::Tls13];

    /// Returns the wire name: `none`, `renegotiated` or `tls1.3`.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Renegotiated => "renegotiated",
            Self::Tls13 => "tls1.3",
        }
    }

    /// Parses a wire name, or returns `None` for a name this version does not define.
    pub fn from_name(name: &[u8]) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|mode| mode.name().as_bytes() == name)
    }
}

impl fmt::Display for PrivacyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Checks `min <= len <= max` and converts `len` to the wire integer type.
fn check_length<T: TryFrom<usize>>(
    field: &'static str,
    len: usize,
    min: usize,
    max: usize,
) -> Result<T, ProtoError> {
    let out_of_range = || ProtoError::LengthOutOfRange {
        field,
        value: i64::try_from(len).unwrap_or(i64::MAX),
        min: i64::try_from(min).unwrap_or(i64::MAX),
        max: i64::try_from(max).unwrap_or(i64::MAX),
    };
    if len < min || len > max {
        return Err(out_of_range());
    }
    T::try_from(len).map_err(|_| out_of_range())
}

/// Checks a signed wire length against `min..=max`.
fn signed_length(
    field: &'static str,
    value: i16,
    min: usize,
    max: usize,
) -> Result<usize, ProtoError> {
    match usize::try_from(value) {
        Ok(len) => check_length(field, len, min, max),
        Err(_) => Err(ProtoError::LengthOutOfRange {
            field,
            value: i64::from(value),
            min: i64::try_from(min).unwrap_or(i64::MAX),
            max: i64::try_from(max).unwrap_or(i64::MAX),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Payload, Record};

    const KEY: CtlKey = [7; 16];

    #[test]
    fn privacy_mode_reply_encoding() {
        let info = Info::with_value(KEY, InfoKind::PRIVACY_MODE, b"renegotiated").unwrap();
        let bytes = Record::new(5, Payload::Info(info)).encode();

        assert_eq!(bytes[24..28], 0x7470_0002u32.to_ne_bytes());
        assert_eq!(bytes[28..30], 12u16.to_ne_bytes());
        assert_eq!(&bytes[30..42], b"renegotiated");
        let Payload::Info(decoded) = Record::decode(&bytes).unwrap().payload else {
            panic!("not an INFO payload");
        };
        assert_eq!(decoded.kind, InfoKind::PRIVACY_MODE);
        let value = decoded.value().unwrap().unwrap();
        assert_eq!(
            PrivacyMode::from_name(value),
            Some(PrivacyMode::Renegotiated)
        );
    }

    #[test]
    fn privacy_mode_names_round_trip() {
        for mode in PrivacyMode::ALL {
            assert_eq!(PrivacyMode::from_name(mode.name().as_bytes()), Some(mode));
        }
        assert_eq!(PrivacyMode::from_name(b"NONE"), None);
        assert_eq!(PrivacyMode::from_name(b"none\0"), None);
        assert_eq!(PrivacyMode::from_name(b""), None);
    }

    #[test]
    fn privacy_mode_kind_is_not_local() {
        assert!(InfoKind::PRIVACY_MODE.is_known());
        assert!(!InfoKind::PRIVACY_MODE.is_local_certificate());
    }
}
