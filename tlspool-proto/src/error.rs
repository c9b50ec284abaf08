//! The crate's error type.

use std::io;

/// Errors of decoding, encoding and transporting command records.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// A string field has no NUL terminator within its bytes.
    #[error("string field `{field}` is not NUL-terminated")]
    Unterminated {
        /// Wire name of the field, such as `localid`.
        field: &'static str,
    },

    /// A string value does not fit its field (the NUL terminator included).
    #[error("string field `{field}` is {len} bytes long, longer than the maximum of {max}")]
    TooLong {
        /// Wire name of the field, or `string` for a value not yet placed in a field.
        field: &'static str,
        /// Maximum length of the value in bytes, without the NUL terminator.
        max: usize,
        /// Length of the rejected value in bytes.
        len: usize,
    },

    /// A string value contains a NUL byte, which would cut it short on the wire.
    #[error("string field `{field}` contains a NUL byte at offset {offset}")]
    InteriorNul {
        /// Wire name of the field, or `string` for a value not yet placed in a field.
        field: &'static str,
        /// Offset of the first NUL byte within the value.
        offset: usize,
    },

    /// A string field is not valid UTF-8.
    #[error("string field `{field}` is not valid UTF-8 (first invalid byte at offset {offset})")]
    InvalidUtf8 {
        /// Wire name of the field.
        field: &'static str,
        /// Offset of the first invalid byte within the field.
        offset: usize,
    },

    /// A length field is outside the range its buffer allows.
    #[error("length field `{field}` is {value}, outside the valid range {min}..={max}")]
    LengthOutOfRange {
        /// Wire name of the field, such as `in1_len`.
        field: &'static str,
        /// The rejected value.
        value: i64,
        /// Smallest valid value.
        min: i64,
        /// Largest valid value.
        max: i64,
    },

    /// A byte slice given as a record is not exactly one record long.
    #[error("record is {len} bytes long, expected exactly 388")]
    ShortRecord {
        /// Length of the slice.
        len: usize,
    },

    /// The peer closed the stream in the middle of a record.
    #[error("connection closed after {received} of 388 bytes of a record")]
    UnexpectedEof {
        /// Bytes of the incomplete record that had arrived.
        received: usize,
    },

    /// A system call on the socket failed.
    #[error("{call} failed on the TLS Pool socket")]
    Io {
        /// The failing call, such as `recvmsg`.
        call: &'static str,
        /// The operating system error.
        #[source]
        source: io::Error,
    },

    /// Sending a record with a file descriptor attached failed.
    #[error("sendmsg with a file descriptor attached failed")]
    DescriptorPassing {
        /// The operating system error, such as `EBADF` for a closed descriptor.
        #[source]
        source: io::Error,
    },
}

impl ProtoError {
    /// Returns true if the error is a malformed field of an otherwise well-framed record, so
    /// the connection can continue after replying to the request with an ERROR.
    pub fn is_malformed_field(&self) -> bool {
        matches!(
            self,
            Self::Unterminated { .. }
                | Self::TooLong { .. }
                | Self::InteriorNul { .. }
                | Self::InvalidUtf8 { .. }
                | Self::LengthOutOfRange { .. }
        )
    }

    /// Returns the wire name of the field at fault, if the error concerns one field.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Unterminated { field }
            | Self::TooLong { field, .. }
            | Self::InteriorNul { field, .. }
            | Self::InvalidUtf8 { field, .. }
            | Self::LengthOutOfRange { field, .. } => Some(field),
            _ => None,
        }
    }
}
