//! Asynchronous transport over one `tokio::net::UnixStream`, split into a reader and any
//! number of cloned writers that share the socket.
//!
//! The reader waits with `readable()` and the writers with `writable()`, and both call
//! `recvmsg`/`sendmsg` through `try_io`, so a connection task can wait for the next record
//! while other tasks send.

use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use ::tokio::io::Interest;
use ::tokio::net::UnixStream;
use ::tokio::sync::Mutex;

use crate::ancillary::{self, send_error};
use crate::framing::{Frame, RecordAssembler};
use crate::{ProtoError, RECORD_LEN, Record};

/// Splits `stream` into its receiving and sending halves.
pub fn split(stream: UnixStream) -> (RecordReader, RecordWriter) {
    let stream = Arc::new(stream);
    let reader = RecordReader {
        stream: Arc::clone(&stream),
        assembler: RecordAssembler::new(),
    };
    let writer = RecordWriter {
        stream,
        write_lock: Arc::new(Mutex::new(())),
    };
    (reader, writer)
}

/// Receiving half: whole records with their descriptors.
#[derive(Debug)]
pub struct RecordReader {
    stream: Arc<UnixStream>,
    assembler: RecordAssembler,
}

impl RecordReader {
    /// Receives one record and the descriptor that came with it.
    ///
    /// Returns `None` when the peer closed the stream at a record boundary. Cancelling the
    /// future loses nothing: bytes already received stay in the reader.
    ///
    /// # Errors
    ///
    /// [`ProtoError::UnexpectedEof`] if the stream ends inside a record, or
    /// [`ProtoError::Io`] naming `readable` or `recvmsg`.
    pub async fn recv(&mut self) -> Result<Option<Frame>, ProtoError> {
        loop {
            self.stream
                .readable()
                .await
                .map_err(|source| ProtoError::Io {
                    call: "readable",
                    source,
                })?;
            let stream = &self.stream;
            let buffer = self.assembler.unfilled();
            let result = stream.try_io(Interest::READABLE, || {
                ancillary::recv_chunk(stream.as_fd(), buffer)
            });
            if matches!(&result, Err(error) if error.kind() == io::ErrorKind::WouldBlock) {
                continue;
            }
            if let ControlFlow::Break(frame) = ancillary::feed(&mut self.assembler, result)? {
                return Ok(frame);
            }
        }
    }

    /// Returns how many received descriptors were closed instead of delivered.
    pub fn discarded_descriptors(&self) -> u64 {
        self.assembler.discarded_descriptors()
    }

    /// Returns the shared stream.
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }
}

/// Sending half; clones share the socket and one lock, so records of different tasks never
/// interleave.
#[derive(Debug, Clone)]
pub struct RecordWriter {
    stream: Arc<UnixStream>,
    write_lock: Arc<Mutex<()>>,
}

impl RecordWriter {
    /// Encodes and sends `record`, with `fd` attached to its first bytes.
    ///
    /// # Errors
    ///
    /// As [`RecordWriter::send`].
    pub async fn send_record(
        &self,
        record: &Record,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), ProtoError> {
        self.send(&record.encode(), fd).await
    }

    /// Sends one record, with `fd` attached to its first bytes, holding the writers' lock
    /// until the whole record is sent.
    ///
    /// # Errors
    ///
    /// [`ProtoError::DescriptorPassing`] if the call that carried `fd` failed, otherwise
    /// [`ProtoError::Io`] naming `writable` or `sendmsg`.
    pub async fn send(
        &self,
        bytes: &[u8; RECORD_LEN],
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), ProtoError> {
        // NOTE: cancelling this future after part of a record was sent leaves the stream
        // misframed for the peer; callers must drive sends to completion.
        let _guard = self.write_lock.lock().await;
        let mut fd = fd;
        let mut sent = 0;
        while sent < RECORD_LEN {
            self.stream
                .writable()
                .await
                .map_err(|source| ProtoError::Io {
                    call: "writable",
                    source,
                })?;
            let stream = &self.stream;
            let chunk = &bytes[sent..];
            let result = stream.try_io(Interest::WRITABLE, || {
                ancillary::send_chunk(stream.as_fd(), chunk, fd)
            });
            match result {
                Ok(0) => return Err(send_error(io::ErrorKind::WriteZero.into(), fd)),
                Ok(len) => {
                    sent += len;
                    fd = None;
                }
                Err(error) if is_retry(&error) => {}
                Err(error) => return Err(send_error(error, fd)),
            }
        }
        Ok(())
    }

    /// Returns the shared stream.
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }
}

/// Returns true for errors after which the same call should simply be made again.
fn is_retry(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}
