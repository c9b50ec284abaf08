//! Native-endian field access at fixed offsets of a 388-byte record.
//!
//! Offsets are absolute (from the record start). They are constants in the callers, so an
//! out-of-range offset is a programming error that panics in the first test that runs it.

use std::fmt;

use crate::{FixedString, ProtoError, RECORD_LEN};

/// A whole command record.
pub(crate) type RecordBytes = [u8; RECORD_LEN];

pub(crate) fn get_u8(record: &RecordBytes, offset: usize) -> u8 {
    record[offset]
}

pub(crate) fn get_u16(record: &RecordBytes, offset: usize) -> u16 {
    u16::from_ne_bytes(get_array(record, offset))
}

pub(crate) fn get_i16(record: &RecordBytes, offset: usize) -> i16 {
    i16::from_ne_bytes(get_array(record, offset))
}

pub(crate) fn get_u32(record: &RecordBytes, offset: usize) -> u32 {
    u32::from_ne_bytes(get_array(record, offset))
}

pub(crate) fn get_i32(record: &RecordBytes, offset: usize) -> i32 {
    i32::from_ne_bytes(get_array(record, offset))
}

pub(crate) fn get_array<const N: usize>(record: &RecordBytes, offset: usize) -> [u8; N] {
    std::array::from_fn(|index| record[offset + index])
}

pub(crate) fn get_string<const N: usize>(
    record: &RecordBytes,
    offset: usize,
    field: &'static str,
) -> Result<FixedString<N>, ProtoError> {
    FixedString::decode(field, &get_array(record, offset))
}

pub(crate) fn put_u8(record: &mut RecordBytes, offset: usize, value: u8) {
    record[offset] = value;
}

pub(crate) fn put_u16(record: &mut RecordBytes, offset: usize, value: u16) {
    put_bytes(record, offset, &value.to_ne_bytes());
}

pub(crate) fn put_i16(record: &mut RecordBytes, offset: usize, value: i16) {
    put_bytes(record, offset, &value.to_ne_bytes());
}

pub(crate) fn put_u32(record: &mut RecordBytes, offset: usize, value: u32) {
    put_bytes(record, offset, &value.to_ne_bytes());
}

pub(crate) fn put_i32(record: &mut RecordBytes, offset: usize, value: i32) {
    put_bytes(record, offset, &value.to_ne_bytes());
}

pub(crate) fn put_bytes(record: &mut RecordBytes, offset: usize, value: &[u8]) {
    record[offset..offset + value.len()].copy_from_slice(value);
}

pub(crate) fn put_string<const N: usize>(
    record: &mut RecordBytes,
    offset: usize,
    value: &FixedString<N>,
) {
    let mut field = [0u8; N];
    value.encode(&mut field);
    put_bytes(record, offset, &field);
}

/// Debug stand-in for secret bytes (control keys, PINs, exporter output): shows only the
/// length, so records can be logged with `{:?}`.
pub(crate) struct Redacted(pub(crate) usize);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes redacted>", self.0)
    }
}
