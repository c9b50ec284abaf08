//! The `--udp` forms of `tlspoolctl connect` and `tlspoolctl serve`: DTLS over UDP through
//! the daemon, where each line of standard input is one datagram and each received datagram
//! is written out (or echoed) whole.
//!
//! `serve --udp` serves peers concurrently, each on a UDP socket of its own, as a TCP server
//! serves each accepted connection. The listening socket and every peer's socket share the
//! address with `SO_REUSEPORT`. A datagram on the listening socket counts only as a ClientHello
//! with a valid cookie of `tlspoolctl`'s own stateless exchange (RFC 6347 HelloVerifyRequest).
//! Other datagrams are dropped, so a stray or spoofed datagram costs no session. For a
//! verified ClientHello, `serve` binds a fresh listening socket to the same address, connects
//! the old one to the peer and hands it to the daemon. The ClientHello is still queued there,
//! and the daemon replies to it with a HelloVerifyRequest of its own cookie exchange, so the
//! client sends its ClientHello once more.
//!
//! NOTE: datagrams of other new peers that were queued behind the verified ClientHello, or
//! that arrive before the old socket is connected, go to that peer's session and are lost.
//! Their senders retransmit, as after any loss.

use std::collections::HashSet;
use std::io::{self, BufRead as _, Read as _, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use rustix::net::{AddressFamily, SocketFlags, SocketType, sockopt};
use tlspool_core::tls::{CookieKey, HelloCookie};
use tracing::{debug, warn};

use super::{identity_lines, privacy_line};
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
    let peer = resolve((host, port)).map_err(|source| udp_error("resolve", source))?;
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

/// Returns the first socket address `address` resolves to.
fn resolve(address: impl ToSocketAddrs) -> io::Result<SocketAddr> {
    address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))
}

/// Sends each line of standard input as one datagram and writes each received datagram to
/// `out`, until the session ends. At end of input the session stays open until no datagram
/// has arrived for `linger`, so replies still in flight are written out.
pub(super) fn copy_datagrams(
    plaintext: UnixStream,
    out: &mut dyn Write,
    linger: Duration,
) -> Result<(), ClientError> {
    let sender = plaintext.try_clone().map_err(|source| ClientError::Io {
        call: "dup of the plaintext socket",
        source,
    })?;
    let received = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&received);
    // The thread is not joined: reading standard input may block after the session ended.
    thread::Builder::new()
        .name("tlspoolctl-stdin".to_owned())
        .spawn(move || send_lines(sender, &counter, linger))
        .map_err(|source| ClientError::Io {
            call: "spawn of the standard input thread",
            source,
        })?;
    // A DTLS record carries at most 2^14 bytes, so the 16 KiB reads of the TCP form never
    // cut a datagram.
    super::connect::receive_to(plaintext, out, &received)
}

/// Sends each line of standard input, newline included, as one datagram. At end of input it
/// waits until `received` stays unchanged for `linger`, then shuts down the write side, so
/// the daemon sends close_notify.
fn send_lines(mut plaintext: UnixStream, received: &AtomicU64, linger: Duration) {
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
    loop {
        let before = received.load(Ordering::Relaxed);
        thread::sleep(linger);
        if received.load(Ordering::Relaxed) == before {
            break;
        }
    }
    debug!(
        linger_ms = linger.as_millis(),
        "no datagram within the linger time"
    );
    if let Err(error) = plaintext.shutdown(Shutdown::Write) {
        debug!(%error, "shutdown of the plaintext write side failed");
    }
}

/// Serves DTLS peers on `listen`, each on a socket of its own and a thread of its own, echoing
/// each datagram, until a socket call on the listening address fails, or after the first
/// session with `once`.
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
    let requested = resolve(listen).map_err(|source| udp_error("resolve", source))?;
    let mut listener = bind_shared(requested).map_err(|source| udp_error("listen on", source))?;
    // Port 0 binds an ephemeral port, which every later listening socket must reuse.
    let local = listener
        .local_addr()
        .map_err(|source| udp_error("listen on", source))?;
    eprintln!("listening on {local} (udp)");
    let client = blocking::Client::connect(Some(socket))?;
    let cookie_key = CookieKey::generate().map_err(|error| ClientError::Io {
        call: "generation of the DTLS cookie secret",
        source: io::Error::other(error),
    })?;
    let active: Arc<Mutex<HashSet<SocketAddr>>> = Arc::default();
    let mut buffer = vec![0u8; DATAGRAM_BUFFER_LEN];
    loop {
        let (len, peer) = listener
            .peek_from(&mut buffer)
            .map_err(|source| udp_error("receive on", source))?;
        if lock(&active).contains(&peer) {
            // A datagram of a peer with a session that reached the listening socket before
            // the session's socket was connected.
            discard_datagram(&listener, peer);
            continue;
        }
        if !is_verified_hello(&listener, &cookie_key, &buffer[..len], peer) {
            continue;
        }
        // The verified ClientHello stays queued on `accepted`, so the daemon's own cookie
        // exchange replies to it at once.
        let next = bind_shared(local).map_err(|source| udp_error("listen on", source))?;
        let accepted = std::mem::replace(&mut listener, next);
        accepted
            .connect(peer)
            .map_err(|source| udp_error("connect to a peer on", source))?;
        debug!(%peer, "verified ClientHello, starting DTLS");
        if once {
            return serve_peer(&client, accepted, request, peer);
        }
        lock(&active).insert(peer);
        let (client, request, peers) = (client.clone(), request.clone(), Arc::clone(&active));
        let spawned = thread::Builder::new()
            .name("tlspoolctl-peer".to_owned())
            .spawn(move || {
                if let Err(error) = serve_peer(&client, accepted, &request, peer) {
                    eprintln!(
                        "tlspoolctl: connection from {peer}: {}",
                        super::error_message(&error)
                    );
                }
                lock(&peers).remove(&peer);
            });
        if let Err(error) = spawned {
            eprintln!("tlspoolctl: connection from {peer}: spawn of its thread failed: {error}");
            lock(&active).remove(&peer);
        }
    }
}

/// Checks the datagram at the head of `listener`'s queue, `datagram` from `peer`, with the
/// stateless cookie exchange of RFC 6347. Returns `true` for a ClientHello with a valid
/// cookie, which stays queued. Any other datagram is removed from the queue, and a ClientHello
/// without a valid cookie gets a HelloVerifyRequest, so a spoofed source address never claims
/// the listening socket.
fn is_verified_hello(
    listener: &UdpSocket,
    cookie_key: &CookieKey,
    datagram: &[u8],
    peer: SocketAddr,
) -> bool {
    match cookie_key.check_hello(peer.to_string().as_bytes(), datagram) {
        Ok(HelloCookie::Verified(_)) => return true,
        Ok(HelloCookie::Challenge(request)) => {
            discard_datagram(listener, peer);
            if let Err(error) = listener.send_to(&request, peer) {
                debug!(%peer, %error, "sending a HelloVerifyRequest failed");
            }
        }
        Ok(HelloCookie::NotClientHello) => {
            debug!(%peer, len = datagram.len(), "datagram is no DTLS ClientHello; dropped");
            discard_datagram(listener, peer);
        }
        Err(error) => {
            warn!(%peer, %error, "building a HelloVerifyRequest failed; datagram dropped");
            discard_datagram(listener, peer);
        }
    }
    false
}

/// Runs STARTTLS as DTLS server on `udp`, connected to `peer`, and echoes its datagrams.
fn serve_peer(
    client: &blocking::Client,
    udp: UdpSocket,
    request: &StartTlsRequest,
    peer: SocketAddr,
) -> Result<(), ClientError> {
    let connection = client.starttls(udp, request)?;
    eprint!(
        "connection from {peer}\n{}{}",
        identity_lines(&connection.local_id, &connection.remote_id),
        privacy_line(client.privacy_mode(&connection.ctlkey))
    );
    echo_datagrams(connection.plaintext)
}

/// Drops the datagram of `peer` at the head of the listening socket's queue.
fn discard_datagram(listener: &UdpSocket, peer: SocketAddr) {
    let mut probe = [0u8; 1];
    if let Err(error) = listener.recv_from(&mut probe) {
        debug!(%peer, %error, "dropping a datagram failed");
    }
}

/// Binds a UDP socket to `local` with `SO_REUSEADDR` and `SO_REUSEPORT`, so the sockets of
/// every peer's session share the listening address. The kernel delivers a datagram to the
/// socket connected to its sender, and only those of other senders to the unconnected one.
fn bind_shared(local: SocketAddr) -> io::Result<UdpSocket> {
    let family = if local.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = rustix::net::socket_with(family, SocketType::DGRAM, SocketFlags::CLOEXEC, None)?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    sockopt::set_socket_reuseport(&fd, true)?;
    rustix::net::bind(&fd, &local)?;
    Ok(UdpSocket::from(fd))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
