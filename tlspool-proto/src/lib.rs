//! Wire format of the TLS Pool version 2 protocol: the 388-byte command record, its framing
//! on a UNIX stream socket, and descriptor passing with `SCM_RIGHTS`.
//!
//! Every message in either direction is one [`Record`] of exactly [`RECORD_LEN`] bytes, with
//! native-endian integers at fixed offsets. [`Record::decode`] and [`Record::encode`] convert
//! field by field; [`RecordAssembler`] cuts a byte stream into records and keeps the
//! descriptor that arrived with each; [`blocking::RecordStream`] and, with the default
//! `tokio` feature, `tokio::RecordReader` and `tokio::RecordWriter` move records and
//! descriptors (`SCM_RIGHTS`) over a `UnixStream`.
//!
//! ```
//! use tlspool_proto::{Facilities, FixedString, IDENTITY_V2, Payload, Ping, Record};
//!
//! let ping = Record::new(
//!     7,
//!     Payload::Ping(Ping {
//!         producer: FixedString::new(IDENTITY_V2)?,
//!         facilities: Facilities::STARTTLS,
//!     }),
//! );
//! let bytes = ping.encode();
//! assert_eq!(bytes.len(), 388);
//! assert_eq!(Record::decode(&bytes)?, ping);
//! # Ok::<(), tlspool_proto::ProtoError>(())
//! ```
//!
//! # String fields
//!
//! Fixed string fields are NUL-terminated. Decoding rejects a field without NUL
//! ([`ProtoError::Unterminated`]) and one that is not UTF-8 ([`ProtoError::InvalidUtf8`]);
//! identities are DoNAIs, ASCII in practice. The ERROR message alone may fill its 128 bytes
//! without NUL and never fails to decode (see [`ErrorPayload::message`]).
//!
//! # Known limitations
//!
//! - Decoding is strict on every string field, including fields the daemon ignores (the
//!   CONTROL `name`, the token fields of a PIN entry registration). A peer that leaves
//!   garbage there gets a decoding error instead of having the field ignored.
//! - Integers are native-endian, as in the original C implementation, so both ends must run
//!   on machines of the same byte order (always true on one host).
//! - The Windows fields that the original appends after the payload union do not exist here.
//! - A descriptor sent with later bytes of a record, instead of its first bytes, is accepted
//!   as the record's descriptor when the receiver had read none of the record yet, because
//!   the kernel joins those bytes into one read.
//! - Cancelling `tokio::RecordWriter::send` after part of a record went out leaves the
//!   stream misframed for the peer.
//! - Secret fields (PINs, control keys, PRNG output) are hidden from `Debug` output but are not
//!   wiped from memory on drop.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod ancillary;
pub mod blocking;
mod command;
mod constants;
mod error;
mod error_code;
mod fixed_string;
mod flags;
mod framing;
mod payload;
mod prng_info;
mod record;
#[cfg(feature = "tokio")]
pub mod tokio;
mod wire;

pub use command::CommandCode;
pub use constants::*;
pub use error::ProtoError;
pub use error_code::ErrorCode;
pub use fixed_string::FixedString;
pub use flags::{Facilities, InfoKind, LidEntryFlags, StartTlsFlags};
pub use framing::{Frame, RecordAssembler};
pub use payload::{
    Control, CtlKey, ERROR_MESSAGE_LEN, ErrorPayload, Identity, LidEntry, PinEntry, Ping, StartTls,
};
pub use prng_info::{Info, PrivacyMode, Prng};
pub use record::{Header, Payload, Record};
