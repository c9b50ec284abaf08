//! One `sendmsg` or `recvmsg` call on a UNIX stream socket with `SCM_RIGHTS` descriptor
//! passing, shared by the blocking and the tokio transport.
//!
//! A received control message is accepted only if it is the first one and carries exactly one
//! descriptor, as the TLS Pool version 2 protocol requires (`CMSG_LEN(sizeof(int))`). All
//! other received descriptors are closed.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::ops::ControlFlow;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use tracing::debug;

use crate::ProtoError;
use crate::framing::{Frame, RecordAssembler};

/// Number of descriptors one received control message has room for. Room for more than one
/// lets surplus descriptors arrive, so this side closes them. The kernel closes any beyond
/// this room itself and sets `MSG_CTRUNC`.
const RECV_FD_ROOM: usize = 8;

/// Result of one `recvmsg` call.
pub(crate) struct Received {
    /// Bytes received.
    pub(crate) len: usize,
    /// The one descriptor of the first control message, if it carried exactly one.
    pub(crate) fd: Option<OwnedFd>,
    /// Descriptors closed here (or, for a truncated control message, at least one).
    pub(crate) discarded: usize,
}

/// Receives up to `buffer.len()` bytes and their descriptors, with `MSG_CMSG_CLOEXEC`.
pub(crate) fn recv_chunk(socket: BorrowedFd<'_>, buffer: &mut [u8]) -> io::Result<Received> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(RECV_FD_ROOM))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let message = rustix::net::recvmsg(
        socket,
        &mut [IoSliceMut::new(buffer)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;

    let mut fd = None;
    let mut discarded = 0;
    for (index, message) in control.drain().enumerate() {
        let RecvAncillaryMessage::ScmRights(fds) = message else {
            continue;
        };
        let mut fds: Vec<OwnedFd> = fds.collect();
        if index == 0 && fds.len() == 1 {
            fd = fds.pop();
        } else {
            discarded += fds.len();
        }
    }
    if message.flags.contains(ReturnFlags::CTRUNC) {
        // The kernel closed what did not fit, so the count is a lower bound.
        discarded = discarded.max(1);
        fd = None;
    }
    // Debug level, because a peer decides how often this happens: the daemon warns once per
    // connection from `RecordReader::discarded_descriptors`.
    if discarded > 0 {
        debug!(discarded, "closing surplus passed file descriptors");
    }
    Ok(Received {
        len: message.bytes,
        fd,
        discarded,
    })
}

/// Sends `data` with `fd` attached, if given, and returns the bytes sent. It never raises
/// `SIGPIPE` (`MSG_NOSIGNAL`).
pub(crate) fn send_chunk(
    socket: BorrowedFd<'_>,
    data: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<usize> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other(
            "control buffer too small for one descriptor",
        ));
    }
    Ok(rustix::net::sendmsg(
        socket,
        &[IoSlice::new(data)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?)
}

/// Feeds one `recvmsg` result to `assembler`. Returns `Break` with a complete record, or with
/// `None` when the peer closed the stream at a record boundary, and `Continue` when more
/// bytes are needed or the call was interrupted by a signal.
///
/// # Errors
///
/// [`ProtoError::UnexpectedEof`] if the stream ended inside a record, or [`ProtoError::Io`]
/// naming `recvmsg`.
pub(crate) fn feed(
    assembler: &mut RecordAssembler,
    result: io::Result<Received>,
) -> Result<ControlFlow<Option<Frame>>, ProtoError> {
    let received = match result {
        Ok(received) => received,
        Err(error) if error.kind() == io::ErrorKind::Interrupted => {
            return Ok(ControlFlow::Continue(()));
        }
        Err(source) => {
            return Err(ProtoError::Io {
                call: "recvmsg",
                source,
            });
        }
    };
    assembler.count_discarded(received.discarded);
    if received.len == 0 {
        if let Some(fd) = received.fd {
            assembler.discard_descriptor(fd);
        }
        if assembler.is_mid_record() {
            return Err(ProtoError::UnexpectedEof {
                received: assembler.buffered(),
            });
        }
        return Ok(ControlFlow::Break(None));
    }
    Ok(match assembler.advance(received.len, received.fd) {
        Some(frame) => ControlFlow::Break(Some(frame)),
        None => ControlFlow::Continue(()),
    })
}

/// Maps a failed send to the error variant for whether it carried a descriptor.
pub(crate) fn send_error(source: io::Error, fd: Option<BorrowedFd<'_>>) -> ProtoError {
    match fd {
        Some(_) => ProtoError::DescriptorPassing { source },
        None => ProtoError::Io {
            call: "sendmsg",
            source,
        },
    }
}
