//! `-u`: DTLS over UDP through the TLS Pool, one session per peer address.
//!
//! Server mode (`-s -u`) listens on the first `-l` address with `SO_REUSEPORT`. It peeks at
//! each datagram, so the datagram stays queued. For a new peer, tlstunnel binds a fresh
//! listening socket to the same address, connects the old one to that peer and hands it to
//! the daemon, which runs the DTLS server on it. The peer's first ClientHello is still queued
//! there, so the daemon's cookie exchange replies to it at once and the session does not wait for
//! the client's retransmission. The kernel delivers the peer's later datagrams to the
//! connected socket, and each plaintext datagram goes to a UDP socket connected to the first
//! `-r` address.
//!
//! NOTE: datagrams of other new peers that were queued behind the first ClientHello, or that
//! arrive while the old socket is not yet connected, go to that peer's session and are lost
//! there. Their senders retransmit, as after any loss.
//!
//! Client mode (`-c -u`) listens for plaintext datagrams on the first `-l` address. Each new
//! sender gets a UDP socket connected to the first `-r` address, on which the daemon runs the
//! DTLS client. Replies go back to the sender from the listening socket.
//!
//! A peer whose session carries no datagram for [`IDLE_TIMEOUT`] expires, and so does one
//! whose session the daemon ends (its own `dtls_idle_timeout`, or close_notify).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustix::net::{AddressFamily, SocketType, sockopt};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{UdpSocket, UnixStream};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::cli::Options;
use crate::starttls::{Identities, PoolStarttls, Role, StartRequest};
use crate::{StopSignals, TunnelError};

/// Time a peer's session lives without a datagram in either direction.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Size of every datagram buffer: the largest UDP payload.
const DATAGRAM_BUFFER: usize = 64 * 1024;

/// Plaintext datagrams queued for one client-mode session before further ones are dropped.
const SESSION_QUEUE: usize = 64;

/// The bound listening socket of a UDP tunnel, with its resolved addresses.
#[derive(Debug)]
pub(crate) struct UdpListener {
    socket: UdpSocket,
    local: SocketAddr,
    remote: SocketAddr,
}

/// Resolves the first listen and forward address and binds the listening socket.
///
/// # Errors
///
/// [`TunnelError::Io`] when an address cannot be resolved or bound, and
/// [`TunnelError::UdpNeedsInetAddress`] for a UNIX socket address.
pub(crate) fn bind_listener(options: &Options) -> Result<UdpListener, TunnelError> {
    let local = resolve(options.listen.first())?;
    let remote = resolve(options.remote.first())?;
    let socket = bind(local, options.role == Role::Server)?;
    // Port 0 binds an ephemeral port, which every later listening socket must reuse.
    let local = socket
        .local_addr()
        .map_err(TunnelError::io("reading the udp listening address"))?;
    info!(%local, %remote, role = ?options.role, "udp tunnel listening");
    Ok(UdpListener {
        socket,
        local,
        remote,
    })
}

/// Runs the UDP tunnel until SIGTERM or SIGINT.
///
/// # Errors
///
/// [`TunnelError::Io`] when the listening socket cannot be read.
pub(crate) async fn serve(
    options: Arc<Options>,
    starttls: Arc<PoolStarttls>,
    listener: UdpListener,
    mut signals: StopSignals,
) -> Result<(), TunnelError> {
    let UdpListener {
        socket: listener,
        local,
        remote,
    } = listener;
    let stop = async {
        let name = signals.wait().await;
        info!(signal = name, "stopping the udp tunnel");
    };
    let run = async {
        match options.role {
            Role::Server => serve_server(&options, &starttls, listener, local, remote).await,
            Role::Client => serve_client(&options, &starttls, listener, remote).await,
        }
    };
    tokio::select! {
        () = stop => Ok(()),
        result = run => result,
    }
}

async fn serve_server(
    options: &Arc<Options>,
    starttls: &Arc<PoolStarttls>,
    listener: UdpSocket,
    local: SocketAddr,
    remote: SocketAddr,
) -> Result<(), TunnelError> {
    let peers: Arc<Mutex<HashSet<SocketAddr>>> = Arc::default();
    let mut listener = listener;
    let mut buf = vec![0u8; DATAGRAM_BUFFER];
    loop {
        let (_, peer) = listener
            .peek_from(&mut buf)
            .await
            .map_err(TunnelError::io("receiving on the udp listener"))?;
        if lock(&peers).contains(&peer) {
            // A datagram of a peer with a session that reached the listener before the
            // session's socket was connected.
            discard_datagram(&listener, &mut buf, peer);
            continue;
        }
        let next = match bind(local, true) {
            Ok(next) => next,
            Err(error) => {
                warn!(%peer, %error, "no new udp listening socket; datagram dropped");
                discard_datagram(&listener, &mut buf, peer);
                continue;
            }
        };
        let accepted = std::mem::replace(&mut listener, next);
        let socket = match accepted
            .into_std()
            .map_err(TunnelError::io("deregistering a udp socket"))
            .and_then(|socket| connect_std(socket, peer))
        {
            Ok(socket) => socket,
            Err(error) => {
                warn!(%peer, %error, "no socket for the udp peer");
                continue;
            }
        };
        lock(&peers).insert(peer);
        debug!(%peer, "new udp peer");
        let (options, starttls, peers) = (
            Arc::clone(options),
            Arc::clone(starttls),
            Arc::clone(&peers),
        );
        tokio::spawn(async move {
            if let Err(error) = server_session(&options, &starttls, socket, remote).await {
                warn!(%peer, %error, "udp session failed");
            }
            lock(&peers).remove(&peer);
            debug!(%peer, "udp peer expired");
        });
    }
}

/// Drops the datagram of `peer` at the head of the listening socket's queue.
fn discard_datagram(listener: &UdpSocket, buf: &mut [u8], peer: SocketAddr) {
    if let Err(error) = listener.try_recv_from(buf) {
        debug!(%peer, %error, "dropping a udp datagram failed");
    }
}

/// Runs the DTLS server for one peer and relays its plaintext to `remote`.
async fn server_session(
    options: &Options,
    starttls: &PoolStarttls,
    cipher: OwnedFd,
    remote: SocketAddr,
) -> Result<(), TunnelError> {
    let plaintext = start(options, starttls, cipher).await?;
    let backend = UdpSocket::bind(unspecified(remote))
        .await
        .map_err(TunnelError::io("binding the udp forward socket"))?;
    backend
        .connect(remote)
        .await
        .map_err(TunnelError::io("connecting the udp forward socket"))?;
    let mut plaintext = plaintext;
    let mut from_app = vec![0u8; DATAGRAM_BUFFER];
    let mut from_backend = vec![0u8; DATAGRAM_BUFFER];
    loop {
        tokio::select! {
            read = plaintext.read(&mut from_app) => {
                let len = read.map_err(TunnelError::io("reading the dtls plaintext"))?;
                if len == 0 {
                    return Ok(());
                }
                // A refused datagram is lost as UDP loses it; the peer retries or expires.
                if let Err(error) = backend.send(&from_app[..len]).await {
                    debug!(%error, "udp forward send failed");
                }
            }
            received = backend.recv(&mut from_backend) => {
                match received {
                    Ok(len) => plaintext
                        .write_all(&from_backend[..len])
                        .await
                        .map_err(TunnelError::io("writing the dtls plaintext"))?,
                    Err(error) => debug!(%error, "udp forward recv failed"),
                }
            }
            () = tokio::time::sleep(IDLE_TIMEOUT) => return Ok(()),
        }
    }
}

async fn serve_client(
    options: &Arc<Options>,
    starttls: &Arc<PoolStarttls>,
    listener: UdpSocket,
    remote: SocketAddr,
) -> Result<(), TunnelError> {
    let listener = Arc::new(listener);
    let sessions: Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>> = Arc::default();
    let mut buf = vec![0u8; DATAGRAM_BUFFER];
    loop {
        let (len, app) = listener
            .recv_from(&mut buf)
            .await
            .map_err(TunnelError::io("receiving on the udp listener"))?;
        let datagram = buf[..len].to_vec();
        let existing = lock(&sessions).get(&app).cloned();
        if let Some(sender) = existing {
            if sender.try_send(datagram).is_err() {
                debug!(%app, "udp session queue full; datagram dropped");
            }
            continue;
        }
        let (sender, receiver) = mpsc::channel(SESSION_QUEUE);
        let _ = sender.try_send(datagram);
        lock(&sessions).insert(app, sender);
        debug!(%app, "new udp sender");
        let (options, starttls, sessions, listener) = (
            Arc::clone(options),
            Arc::clone(starttls),
            Arc::clone(&sessions),
            Arc::clone(&listener),
        );
        tokio::spawn(async move {
            let result = client_session(&options, &starttls, &listener, app, remote, receiver);
            if let Err(error) = result.await {
                warn!(%app, %error, "udp session failed");
            }
            lock(&sessions).remove(&app);
            debug!(%app, "udp sender expired");
        });
    }
}

/// Runs the DTLS client towards `remote` for the plaintext sender `app`.
async fn client_session(
    options: &Options,
    starttls: &PoolStarttls,
    listener: &UdpSocket,
    app: SocketAddr,
    remote: SocketAddr,
    mut datagrams: mpsc::Receiver<Vec<u8>>,
) -> Result<(), TunnelError> {
    let cipher = std::net::UdpSocket::bind(unspecified(remote))
        .and_then(|socket| socket.connect(remote).map(|()| socket))
        .map_err(TunnelError::io(
            "opening the udp socket to the forward address",
        ))?;
    let mut plaintext = start(options, starttls, OwnedFd::from(cipher)).await?;
    let mut from_pool = vec![0u8; DATAGRAM_BUFFER];
    loop {
        tokio::select! {
            datagram = datagrams.recv() => {
                let Some(datagram) = datagram else { return Ok(()) };
                plaintext
                    .write_all(&datagram)
                    .await
                    .map_err(TunnelError::io("writing the dtls plaintext"))?;
            }
            read = plaintext.read(&mut from_pool) => {
                let len = read.map_err(TunnelError::io("reading the dtls plaintext"))?;
                if len == 0 {
                    return Ok(());
                }
                if let Err(error) = listener.send_to(&from_pool[..len], app).await {
                    debug!(%app, %error, "udp reply send failed");
                }
            }
            () = tokio::time::sleep(IDLE_TIMEOUT) => return Ok(()),
        }
    }
}

/// Runs STARTTLS with DTLS on `cipher` and returns the plaintext side.
async fn start(
    options: &Options,
    starttls: &PoolStarttls,
    cipher: OwnedFd,
) -> Result<UnixStream, TunnelError> {
    let request = StartRequest {
        role: options.role,
        identities: Identities {
            local_id: options.local_id.clone(),
            remote_id: options.remote_id.clone(),
        },
        service: options.service.clone(),
        fork: options.fork,
        remote_id_policy: options.remote_id_policy,
    };
    let pool_request = request.to_dtls_pool_request()?;
    let session = starttls.start_request(cipher, &pool_request).await?;
    info!(local_id = %session.identities.local_id, remote_id = %session.identities.remote_id,
        "dtls session established");
    Ok(session.plaintext)
}

/// Returns the first socket address of `address`, which must be `HOST:PORT`.
fn resolve(address: Option<&crate::Address>) -> Result<SocketAddr, TunnelError> {
    match address {
        Some(crate::Address::Inet { host, port }) => {
            std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), *port))
                .map_err(TunnelError::io("resolving a udp address"))?
                .next()
                .ok_or_else(|| TunnelError::UdpNeedsInetAddress {
                    address: format!("{host}:{port}"),
                })
        }
        Some(other) => Err(TunnelError::UdpNeedsInetAddress {
            address: other.to_string(),
        }),
        None => Err(TunnelError::UdpNeedsInetAddress {
            address: String::new(),
        }),
    }
}

/// Binds a UDP socket to `local`, with `SO_REUSEADDR` and `SO_REUSEPORT` when `shared`, so
/// per-peer sockets can share the listening address.
fn bind(local: SocketAddr, shared: bool) -> Result<UdpSocket, TunnelError> {
    let socket = bind_std(local, shared)?;
    UdpSocket::from_std(socket).map_err(TunnelError::io("registering a udp socket"))
}

fn bind_std(local: SocketAddr, shared: bool) -> Result<std::net::UdpSocket, TunnelError> {
    let family = if local.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let io = |what| move |error: rustix::io::Errno| TunnelError::io(what)(error.into());
    let fd = rustix::net::socket_with(
        family,
        SocketType::DGRAM,
        rustix::net::SocketFlags::CLOEXEC | rustix::net::SocketFlags::NONBLOCK,
        None,
    )
    .map_err(io("creating a udp socket"))?;
    if shared {
        sockopt::set_socket_reuseaddr(&fd, true).map_err(io("setting SO_REUSEADDR"))?;
        sockopt::set_socket_reuseport(&fd, true).map_err(io("setting SO_REUSEPORT"))?;
    }
    rustix::net::bind(&fd, &local).map_err(io("binding a udp socket"))?;
    Ok(std::net::UdpSocket::from(fd))
}

/// Connects the socket that received the first datagram of `peer` to it and returns its
/// descriptor.
fn connect_std(socket: std::net::UdpSocket, peer: SocketAddr) -> Result<OwnedFd, TunnelError> {
    socket
        .connect(peer)
        .map_err(TunnelError::io("connecting a udp socket to its peer"))?;
    Ok(OwnedFd::from(socket))
}

/// Returns the unspecified address of the family of `peer`, port 0.
fn unspecified(peer: SocketAddr) -> SocketAddr {
    if peer.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
