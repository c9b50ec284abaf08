//! Checks of the plaintext descriptor that an application passes with its LOCALID or
//! PLAINTEXT_CONNECT response, made before the final STARTTLS reply so that a descriptor the
//! relay cannot use never gets a success.
//!
//! The descriptor must be a connected socket of the kind the transport needs (a stream socket
//! for TLS, a datagram or sequenced-packet socket for DTLS), not a listening socket, and not
//! connected to the daemon's own control socket, which would loop the plaintext back into the
//! protocol.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    SockType, SockaddrLike, SockaddrStorage, UnixAddr, getpeername, getsockname, getsockopt,
    sockopt,
};

use super::error::StartTlsError;

/// Checks that `plaintext` can carry the plaintext of a session: of the socket kind that
/// `datagram` (DTLS) or stream (TLS) needs, connected, and not connected to the socket the
/// control connection `control` was accepted on.
///
/// # Errors
///
/// [`StartTlsError::PlaintextSocketInvalid`] naming what is wrong with the descriptor.
pub(super) fn check(
    plaintext: BorrowedFd<'_>,
    datagram: bool,
    control: BorrowedFd<'_>,
) -> Result<(), StartTlsError> {
    let kind = match getsockopt(&plaintext, sockopt::SockType) {
        Ok(kind) => kind,
        Err(Errno::ENOTSOCK) => return Err(invalid("it is not a socket")),
        Err(errno) => return Err(invalid(format!("getsockopt(SO_TYPE) failed: {errno}"))),
    };
    let expected = if datagram {
        "a datagram or sequenced-packet socket for DTLS"
    } else {
        "a stream socket for TLS"
    };
    let fits = match kind {
        SockType::Stream => !datagram,
        SockType::Datagram | SockType::SeqPacket => datagram,
        _ => false,
    };
    if !fits {
        return Err(invalid(format!("it is a {kind:?} socket, not {expected}")));
    }
    if getsockopt(&plaintext, sockopt::AcceptConn).unwrap_or(false) {
        return Err(invalid("it is a listening socket"));
    }
    let peer = match getpeername::<SockaddrStorage>(plaintext.as_raw_fd()) {
        Ok(peer) => peer,
        Err(Errno::ENOTCONN) => return Err(invalid("it is not connected")),
        Err(errno) => return Err(invalid(format!("getpeername failed: {errno}"))),
    };
    let daemon = getsockname::<SockaddrStorage>(control.as_raw_fd()).ok();
    let daemon = daemon.as_ref().and_then(SockaddrStorage::as_unix_addr);
    if let (Some(peer), Some(daemon)) = (peer.as_unix_addr(), daemon)
        && is_named(daemon)
        && same_address(peer, daemon)
    {
        return Err(invalid("it is connected to the TLS Pool control socket"));
    }
    Ok(())
}

/// Tells whether `address` is a path or an abstract name, which two unrelated sockets cannot
/// share, unlike the unnamed address of a socketpair.
fn is_named(address: &UnixAddr) -> bool {
    address.path().is_some() || address.as_abstract().is_some()
}

fn same_address(left: &UnixAddr, right: &UnixAddr) -> bool {
    left.len() == right.len()
        && left.path() == right.path()
        && left.as_abstract() == right.as_abstract()
}

fn invalid(reason: impl Into<String>) -> StartTlsError {
    StartTlsError::PlaintextSocketInvalid {
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};

    use super::*;

    fn reason(result: Result<(), StartTlsError>) -> String {
        match result {
            Err(StartTlsError::PlaintextSocketInvalid { reason }) => reason,
            other => panic!("expected PlaintextSocketInvalid, got {other:?}"),
        }
    }

    #[test]
    fn stream_pair_passes_for_tls() {
        let (plaintext, _application) = UnixStream::pair().expect("socketpair");
        let (control, _client) = UnixStream::pair().expect("socketpair");
        check(plaintext.as_fd(), false, control.as_fd()).expect("a stream pair is usable");
    }

    #[test]
    fn datagram_pair_passes_for_dtls_only() {
        let (plaintext, _application) = UnixDatagram::pair().expect("socketpair");
        let (control, _client) = UnixStream::pair().expect("socketpair");
        check(plaintext.as_fd(), true, control.as_fd()).expect("a datagram pair is usable");
        let message = reason(check(plaintext.as_fd(), false, control.as_fd()));
        assert!(message.contains("not a stream socket"), "{message}");
    }

    #[test]
    fn non_sockets_are_rejected() {
        let (control, _client) = UnixStream::pair().expect("socketpair");
        let null = std::fs::File::open("/dev/null").expect("open /dev/null");
        let message = reason(check(null.as_fd(), false, control.as_fd()));
        assert_eq!(message, "it is not a socket");
        let (read_end, _write_end) = nix::unistd::pipe().expect("pipe");
        let message = reason(check(read_end.as_fd(), false, control.as_fd()));
        assert_eq!(message, "it is not a socket");
    }

    #[test]
    fn control_socket_is_rejected() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = directory.path().join("tlspool.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let client = UnixStream::connect(&path).expect("connect");
        let (control, _) = listener.accept().expect("accept");
        let message = reason(check(client.as_fd(), false, control.as_fd()));
        assert!(message.contains("control socket"), "{message}");
        let message = reason(check(listener.as_fd(), false, control.as_fd()));
        assert_eq!(message, "it is a listening socket");
    }
}
