//! Sans-IO framing: cuts a stream of bytes into 388-byte records and pairs each record with
//! the descriptor that arrived with its first bytes.
//!
//! A receiver reads into [`RecordAssembler::unfilled`], which never reaches past the end of
//! the current record. On Linux, one `recvmsg` on a stream socket returns the descriptors of
//! at most one `sendmsg` and stops after the bytes of that send. A read that ends at a record
//! boundary therefore never takes the descriptor of the next record.
//!
//! NOTE: the kernel may join bytes of earlier sends without descriptors to the front of that
//! read. A descriptor sent with later bytes of a record therefore counts as arriving with
//! its first bytes when the receiver had read none of the record yet.

use std::os::fd::OwnedFd;

use tracing::warn;

use crate::{Header, ProtoError, RECORD_LEN, Record};

/// One whole record as received, with the descriptor that arrived with its first bytes.
#[derive(Debug)]
pub struct Frame {
    /// The record bytes.
    pub bytes: [u8; RECORD_LEN],
    /// The descriptor passed with the record (`SCM_RIGHTS`), if any.
    pub fd: Option<OwnedFd>,
}

impl Frame {
    /// Decodes the header, which never fails.
    pub fn header(&self) -> Header {
        Header::decode(&self.bytes)
    }

    /// Decodes the whole record.
    ///
    /// # Errors
    ///
    /// As [`Record::decode`].
    pub fn decode(&self) -> Result<Record, ProtoError> {
        Record::decode(&self.bytes)
    }
}

/// Accumulates stream bytes into whole records.
///
/// A descriptor that arrives with bytes that do not start a record (which includes a second
/// descriptor for the same record) is closed and counted in
/// [`RecordAssembler::discarded_descriptors`].
#[derive(Debug)]
pub struct RecordAssembler {
    buffer: [u8; RECORD_LEN],
    filled: usize,
    fd: Option<OwnedFd>,
    discarded: u64,
}

impl RecordAssembler {
    /// Creates an assembler at a record boundary.
    pub fn new() -> Self {
        Self {
            buffer: [0; RECORD_LEN],
            filled: 0,
            fd: None,
            discarded: 0,
        }
    }

    /// Returns the rest of the current record, to receive the next bytes into. It is never
    /// empty.
    pub fn unfilled(&mut self) -> &mut [u8] {
        &mut self.buffer[self.filled..]
    }

    /// Returns the number of bytes of the current, incomplete record received so far.
    pub fn buffered(&self) -> usize {
        self.filled
    }

    /// Returns true if bytes of an incomplete record are buffered, so an end of stream now
    /// would cut a record short.
    pub fn is_mid_record(&self) -> bool {
        self.filled != 0
    }

    /// Returns how many received descriptors were closed instead of delivered: descriptors
    /// that did not arrive with the first bytes of a record, surplus descriptors of one
    /// control message, and descriptors that arrived with the end of the stream.
    pub fn discarded_descriptors(&self) -> u64 {
        self.discarded
    }

    /// Records that `len` bytes were written into [`RecordAssembler::unfilled`], together
    /// with the descriptor received in the same call, and returns the record they complete.
    ///
    /// A `len` beyond the unfilled space is clamped to it.
    pub fn advance(&mut self, len: usize, fd: Option<OwnedFd>) -> Option<Frame> {
        let len = len.min(RECORD_LEN - self.filled);
        if let Some(fd) = fd {
            self.accept_descriptor(len, fd);
        }
        self.filled += len;
        self.take_complete()
    }

    /// Copies `data` into records and returns the records it completes. A descriptor given
    /// here belongs to the first byte of `data`.
    pub fn push(&mut self, mut data: &[u8], mut fd: Option<OwnedFd>) -> Vec<Frame> {
        let mut frames = Vec::new();
        if data.is_empty() {
            if let Some(fd) = fd {
                self.discard(fd, "descriptor arrived without record bytes");
            }
            return frames;
        }
        while !data.is_empty() {
            let unfilled = self.unfilled();
            let len = unfilled.len().min(data.len());
            unfilled[..len].copy_from_slice(&data[..len]);
            data = &data[len..];
            if let Some(frame) = self.advance(len, fd.take()) {
                frames.push(frame);
            }
        }
        frames
    }

    /// Closes a descriptor that arrived with the end of the stream or outside any record.
    pub fn discard_descriptor(&mut self, fd: OwnedFd) {
        self.discard(fd, "descriptor arrived without record bytes");
    }

    /// Adds `count` descriptors that a transport closed before they reached the assembler.
    pub(crate) fn count_discarded(&mut self, count: usize) {
        self.discarded = self
            .discarded
            .saturating_add(u64::try_from(count).unwrap_or(u64::MAX));
    }

    fn accept_descriptor(&mut self, len: usize, fd: OwnedFd) {
        if len == 0 {
            self.discard(fd, "descriptor arrived without record bytes");
        } else if self.filled != 0 {
            // A second descriptor for the same record always arrives here, because the first
            // one came with bytes that moved `filled` past 0.
            self.discard(fd, "descriptor arrived in the middle of a record");
        } else {
            self.fd = Some(fd);
        }
    }

    fn discard(&mut self, fd: OwnedFd, reason: &'static str) {
        warn!(
            offset = self.filled,
            reason, "closing passed file descriptor"
        );
        drop(fd);
        self.count_discarded(1);
    }

    fn take_complete(&mut self) -> Option<Frame> {
        if self.filled < RECORD_LEN {
            return None;
        }
        self.filled = 0;
        // The buffer is zeroed, so the bytes of a record that carried a PIN remain only in the frame.
        Some(Frame {
            bytes: std::mem::replace(&mut self.buffer, [0; RECORD_LEN]),
            fd: self.fd.take(),
        })
    }
}

impl Default for RecordAssembler {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn numbered_record(seed: u8) -> [u8; RECORD_LEN] {
        std::array::from_fn(|index| seed.wrapping_add(index as u8))
    }

    /// Returns a pipe's read end and write end. Reading returns EOF once every copy of the
    /// write end is closed.
    fn pipe() -> (std::fs::File, OwnedFd) {
        let (read, write) = rustix::pipe::pipe().unwrap();
        (std::fs::File::from(read), write)
    }

    fn assert_closed(mut read: std::fs::File) {
        let mut buffer = [0u8; 1];
        assert_eq!(
            read.read(&mut buffer).unwrap(),
            0,
            "write end is still open"
        );
    }

    #[test]
    fn assembler_zeroes_buffer_after_record() {
        let mut assembler = RecordAssembler::new();
        let frames = assembler.push(&numbered_record(7), None);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].bytes, numbered_record(7));
        assert!(assembler.buffer.iter().all(|&byte| byte == 0));
    }

    #[test]
    fn assembler_one_byte_at_a_time() {
        let first = numbered_record(1);
        let second = numbered_record(2);
        let mut assembler = RecordAssembler::new();
        let mut frames = Vec::new();
        for byte in first.iter().chain(second.iter()) {
            assembler.unfilled()[0] = *byte;
            frames.extend(assembler.advance(1, None));
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].bytes, first);
        assert_eq!(frames[1].bytes, second);
        assert!(!assembler.is_mid_record());
    }

    #[test]
    fn assembler_unfilled_stops_at_record_boundary() {
        let mut assembler = RecordAssembler::new();
        assert_eq!(assembler.unfilled().len(), RECORD_LEN);
        assert!(assembler.push(&[0; 100], None).is_empty());
        assert_eq!(assembler.unfilled().len(), RECORD_LEN - 100);
        assert_eq!(assembler.buffered(), 100);
        assert!(assembler.is_mid_record());
    }

    #[test]
    fn assembler_push_splits_records() {
        let mut data = numbered_record(3).to_vec();
        data.extend_from_slice(&numbered_record(4));
        data.extend_from_slice(&[9; 10]);
        let mut assembler = RecordAssembler::new();
        let frames = assembler.push(&data, None);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].bytes, numbered_record(4));
        assert_eq!(assembler.buffered(), 10);
    }

    #[test]
    fn descriptor_kept_with_first_bytes() {
        let (_read, write) = pipe();
        let mut assembler = RecordAssembler::new();
        let record = numbered_record(5);
        assert!(assembler.push(&record[..1], Some(write)).is_empty());
        let frames = assembler.push(&record[1..], None);
        assert_eq!(frames.len(), 1);
        assert!(frames[0].fd.is_some());
        assert_eq!(assembler.discarded_descriptors(), 0);
    }

    #[test]
    fn descriptor_mid_record_closed() {
        let (read, write) = pipe();
        let mut assembler = RecordAssembler::new();
        let record = numbered_record(6);
        assert!(assembler.push(&record[..10], None).is_empty());
        let frames = assembler.push(&record[10..], Some(write));
        assert_eq!(frames.len(), 1);
        assert!(frames[0].fd.is_none());
        assert_eq!(assembler.discarded_descriptors(), 1);
        assert_closed(read);
    }

    #[test]
    fn descriptor_without_bytes_closed() {
        let (read, write) = pipe();
        let mut assembler = RecordAssembler::new();
        assert!(assembler.advance(0, Some(write)).is_none());
        assert_eq!(assembler.discarded_descriptors(), 1);
        assert_closed(read);
    }

    #[test]
    fn descriptor_kept_by_first_record() {
        let (_read, write) = pipe();
        let mut data = numbered_record(7).to_vec();
        data.extend_from_slice(&numbered_record(8));
        let mut assembler = RecordAssembler::new();
        let frames = assembler.push(&data, Some(write));
        assert_eq!(frames.len(), 2);
        assert!(frames[0].fd.is_some());
        assert!(frames[1].fd.is_none());
    }
}
