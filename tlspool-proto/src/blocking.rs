//! Blocking transport: whole records with descriptor passing over a
//! `std::os::unix::net::UnixStream`.

use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use crate::ancillary::{self, send_error};
use crate::framing::{Frame, RecordAssembler};
use crate::{ProtoError, RECORD_LEN, Record};

/// A UNIX stream socket that carries whole records.
///
/// Sending takes `&self` and holds an internal lock for the whole record, so threads that
/// share the stream never interleave their records. Receiving takes `&mut self`.
#[derive(Debug)]
pub struct RecordStream {
    stream: UnixStream,
    assembler: RecordAssembler,
    write_lock: Mutex<()>,
}

impl RecordStream {
    /// Wraps a connected stream.
    pub fn new(stream: UnixStream) -> Self {
        Self {
            stream,
            assembler: RecordAssembler::new(),
            write_lock: Mutex::new(()),
        }
    }

    /// Connects to the daemon socket at `path`.
    ///
    /// # Errors
    ///
    /// [`ProtoError::Io`] naming `connect`.
    pub fn connect(path: impl AsRef<Path>) -> Result<Self, ProtoError> {
        let stream = UnixStream::connect(path).map_err(|source| ProtoError::Io {
            call: "connect",
            source,
        })?;
        Ok(Self::new(stream))
    }

    /// Returns the underlying stream.
    pub fn get_ref(&self) -> &UnixStream {
        &self.stream
    }

    /// Returns the underlying stream, dropping any partly received record.
    pub fn into_inner(self) -> UnixStream {
        self.stream
    }

    /// Returns how many received descriptors were closed instead of delivered.
    pub fn discarded_descriptors(&self) -> u64 {
        self.assembler.discarded_descriptors()
    }

    /// Encodes and sends `record`, with `fd` attached to its first bytes.
    ///
    /// # Errors
    ///
    /// As [`RecordStream::send`].
    pub fn send_record(
        &self,
        record: &Record,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), ProtoError> {
        self.send(&record.encode(), fd)
    }

    /// Sends one record, with `fd` attached to its first bytes. Short writes are continued
    /// until the whole record is sent.
    ///
    /// # Errors
    ///
    /// [`ProtoError::DescriptorPassing`] if the call that carried `fd` failed, otherwise
    /// [`ProtoError::Io`] naming `sendmsg`.
    pub fn send(
        &self,
        bytes: &[u8; RECORD_LEN],
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), ProtoError> {
        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut fd = fd;
        let mut sent = 0;
        while sent < RECORD_LEN {
            match ancillary::send_chunk(self.stream.as_fd(), &bytes[sent..], fd) {
                Ok(0) => return Err(send_error(io::ErrorKind::WriteZero.into(), fd)),
                Ok(len) => {
                    sent += len;
                    fd = None;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(send_error(error, fd)),
            }
        }
        Ok(())
    }

    /// Receives one record and the descriptor that came with it.
    ///
    /// Returns `None` when the peer closed the stream at a record boundary.
    ///
    /// # Errors
    ///
    /// [`ProtoError::UnexpectedEof`] if the stream ends inside a record, or
    /// [`ProtoError::Io`] naming `recvmsg`.
    pub fn recv(&mut self) -> Result<Option<Frame>, ProtoError> {
        loop {
            let result = ancillary::recv_chunk(self.stream.as_fd(), self.assembler.unfilled());
            if let ControlFlow::Break(frame) = ancillary::feed(&mut self.assembler, result)? {
                return Ok(frame);
            }
        }
    }
}
