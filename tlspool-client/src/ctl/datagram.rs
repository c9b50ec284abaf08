//! The `--udp` forms of `tlspoolctl connect` and `tlspoolctl serve`: DTLS over UDP through
//! the daemon, where each line of standard input is one datagram and each received datagram
//! is written out (or echoed) whole.
//!
//! `serve --udp` serves one peer at a time: it waits for the first datagram on the listening
//! address, connects the socket to its sender and runs STARTTLS on it, so the daemon's cookie
//! exchange receives that ClientHello. Once the session ends, it binds the same address again for
//! the next peer.

use std::io::{self, BufRead as _, Read as _, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs as _, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;

use tracing::debug;

use super::identity_lines;
use crate::{ClientError, StartTlsRequest, blocking};

/// Size of the receive buffer: the largest UDP payload, so no datagram is cut.
const DATAGRAM_BUFFER_LEN: usize = 64 * 1024;

/// Resolves `host`:`port` and returns a UDP socket connected to the first address.
pub(super) fn connect_udp(host: &str, port: u16) -> Result<UdpSocket, ClientError> {
    let address = format!("{host}:{port}");
    let udp_error = |action, source| ClientError::Tcp {
        action,
        address: address.clone(),
        source,
    };
    let peer = (host, port)
        .to_socket_addrs()
        .map_err(|source| udp_error("resolve", source))?
        .next()
        .ok_or_else(|| {
            udp_error(
                "resolve",
                io::Error::new(io::ErrorKind::NotFound, "no address"),
            )
        })?;
    let local: SocketAddr = if peer.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(local).map_err(|source| udp_error("bind a socket for", source))?;
    socket
        .connect(peer)
        .map_err(|source| udp_error("connect to", source))?;
    Ok(socket)
}

/// Sends each line of standard input as one datagram and writes each received datagram to
/// `out`, until the session ends.
pub(super) fn copy_datagrams(
    plaintext: UnixStream,
    out: &mut dyn Write,
) -> Result<(), ClientError> {
    let sender = plaintext.try_clone().map_err(|source| ClientError::Io {
        call: "dup of the plaintext socket",
        source,
    })?;
    // The thread is not joined: reading standard input may block after the session ended.
    thread::Builder::new()
        .name("tlspoolctl-stdin".to_owned())
        .spawn(move || send_lines(sender))
        .map_err(|source| ClientError::Io {
            call: "spawn of the standard input thread",
            source,
        })?;
    // A DTLS record carries at most 2^14 bytes, so the 16 KiB reads of the TCP form never
    // cut a datagram.
    super::connect::receive_to(plaintext, out)
}

/// Sends each line of standard input, newline included, as one datagram. At end of input it
/// shuts down the write side, so the daemon sends close_notify.
fn send_lines(mut plaintext: UnixStream) {
    let mut stdin = io::stdin().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        match stdin.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                debug!(%error, "reading standard input failed");
                break;
            }
        }
        if let Err(error) = plaintext.write_all(&line) {
            debug!(%error, "sending a datagram to the DTLS session failed");
            return;
        }
    }
    if let Err(error) = plaintext.shutdown(Shutdown::Write) {
        debug!(%error, "shutdown of the plaintext write side failed");
    }
}

/// Serves DTLS peers on `listen` one at a time, echoing each datagram, until a socket call
/// fails, or after the first session with `once`.
pub(super) fn serve_udp(
    socket: &Path,
    listen: &str,
    request: &StartTlsRequest,
    once: bool,
) -> Result<(), ClientError> {
    let udp_error = |action, source| ClientError::Tcp {
        action,
        address: listen.to_owned(),
        source,
    };
    let first = UdpSocket::bind(listen).map_err(|source| udp_error("listen on", source))?;
    let local = first
        .local_addr()
        .map_err(|source| udp_error("listen on", source))?;
    eprintln!("listening on {local} (udp)");
    let client = blocking::Client::connect(Some(socket))?;
    let mut next = Some(first);
    loop {
        let udp = match next.take() {
            Some(udp) => udp,
            None => UdpSocket::bind(local).map_err(|source| udp_error("listen on", source))?,
        };
        let mut probe = [0u8; 1];
        let (_, peer) = udp
            .peek_from(&mut probe)
            .map_err(|source| udp_error("receive on", source))?;
        udp.connect(peer)
            .map_err(|source| udp_error("connect to a peer on", source))?;
        let result = client.starttls(udp, request).and_then(|connection| {
            eprint!(
                "{}",
                identity_lines(&connection.local_id, &connection.remote_id)
            );
            echo_datagrams(connection.plaintext)
        });
        if once {
            return result;
        }
        if let Err(error) = result {
            eprintln!("tlspoolctl: peer {peer}: {}", super::error_message(&error));
        }
    }
}

/// Sends every datagram back until the session ends.
fn echo_datagrams(mut plaintext: UnixStream) -> Result<(), ClientError> {
    let mut buffer = vec![0u8; DATAGRAM_BUFFER_LEN];
    loop {
        let len = match plaintext.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(len) => len,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(ClientError::Io {
                    call: "read from the DTLS session",
                    source,
                });
            }
        };
        plaintext
            .write_all(&buffer[..len])
            .map_err(|source| ClientError::Io {
                call: "echo to the DTLS session",
                source,
            })?;
    }
}
