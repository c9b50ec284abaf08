//! STARTTLS over UDP (`ipproto` 17): DTLS 1.2 sessions on the application's connected UDP
//! socket, with the same identities and validation as TLS over TCP.
//!
//! A server first runs the stateless cookie exchange (RFC 6347 HelloVerifyRequest). A
//! ClientHello without a valid cookie gets a HelloVerifyRequest and leaves nothing behind. So
//! the daemon creates a session, and looks up credentials, only for a peer that receives
//! datagrams at its source address. The verified ClientHello then gives the server name, as
//! the first bytes of a TCP connection do. The path MTU comes from `dtls_mtu`, else from the
//! socket (`IP_MTU` less the IP and UDP headers), else [`DEFAULT_DTLS_MTU`]. The plaintext
//! side is a `SOCK_SEQPACKET` or `SOCK_DGRAM` socket, relayed by
//! [`relay::run_datagram`] with the `dtls_idle_timeout`.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{SockaddrLike as _, SockaddrStorage, getpeername, getsockopt, sockopt};
use tlspool_core::relay::{self, CipherSocket, DatagramSocket, DescriptorRole};
use tlspool_core::tls::{CookieKey, CookieState, DEFAULT_DTLS_MTU, MIN_DTLS_MTU, TlsError};
use tracing::debug;

use super::client_hello;
use super::error::StartTlsError;
use tlspool_core::logging::TARGET_TLS;

/// Bytes of IPv4 and UDP header between the path MTU and the UDP payload.
const IPV4_UDP_HEADERS: i32 = 20 + 8;
/// Bytes of IPv6 and UDP header between the path MTU and the UDP payload.
const IPV6_UDP_HEADERS: i32 = 40 + 8;

/// The settings and the cookie secret every DTLS session of the daemon shares.
#[derive(Debug)]
pub struct DtlsSettings {
    /// The GnuTLS priority string of DTLS sessions (`dtls_priority`).
    pub priority: String,
    /// The configured path MTU (`dtls_mtu`), or `None` to ask each socket.
    pub mtu: Option<u16>,
    /// How long a session lives without a datagram from its peer (`dtls_idle_timeout`).
    pub idle_timeout: Duration,
    cookie_key: CookieKey,
}

impl DtlsSettings {
    /// Creates the settings with a fresh cookie secret.
    ///
    /// # Errors
    /// [`TlsError::Library`] when GnuTLS cannot generate the secret.
    pub fn new(
        priority: String,
        mtu: Option<u16>,
        idle_timeout: Duration,
    ) -> Result<Self, TlsError> {
        Ok(Self {
            priority,
            mtu,
            idle_timeout,
            cookie_key: CookieKey::generate()?,
        })
    }

    /// Returns the path MTU for a session on `socket`.
    pub(super) fn mtu_for(&self, socket: impl AsFd) -> u16 {
        self.mtu.unwrap_or_else(|| socket_mtu(socket))
    }
}

/// The socket to the peer once the handshake is done: a TCP stream or a UDP socket.
#[derive(Debug)]
pub(super) enum CipherTransport {
    /// TLS over a stream socket.
    Stream(CipherSocket),
    /// DTLS over a connected UDP socket, with the session's idle timeout.
    Datagram {
        socket: DatagramSocket,
        idle_timeout: Duration,
    },
}

/// A verified DTLS ClientHello, read before the server session exists.
pub(super) struct VerifiedHello {
    pub(super) socket: DatagramSocket,
    pub(super) cookie: CookieState,
    pub(super) datagram: Vec<u8>,
    pub(super) server_name: Option<String>,
}

/// Runs the cookie exchange on `fd` until a ClientHello with a valid cookie arrives, and
/// returns it with its server name.
///
/// # Errors
/// [`StartTlsError::SocketSetup`] when `fd` is no connected datagram socket,
/// [`StartTlsError::NotClientHello`] when the verified ClientHello cannot be parsed, and the
/// handshake errors of a failed system call.
pub(super) async fn read_hello(
    fd: OwnedFd,
    settings: &DtlsSettings,
) -> Result<VerifiedHello, StartTlsError> {
    let peer =
        getpeername::<SockaddrStorage>(std::os::fd::AsRawFd::as_raw_fd(&fd)).map_err(|error| {
            StartTlsError::SocketSetup {
                reason: format!("getpeername on the UDP socket failed: {error}"),
            }
        })?;
    let client = peer.to_string();
    let socket =
        DatagramSocket::new(fd, DescriptorRole::Cipher).map_err(StartTlsError::from_handshake)?;
    let (cookie, datagram) =
        relay::exchange_cookie(&socket, &settings.cookie_key, client.as_bytes())
            .await
            .map_err(StartTlsError::from_handshake)?;
    debug!(target: TARGET_TLS, peer = %client, "dtls cookie verified");
    let server_name = client_hello::dtls_server_name(&datagram)
        .map_err(|reason| StartTlsError::NotClientHello { reason })?;
    Ok(VerifiedHello {
        socket,
        cookie,
        datagram,
        server_name,
    })
}

/// Registers `fd` as the UDP socket of a DTLS client.
pub(super) fn datagram_socket(fd: OwnedFd) -> Result<DatagramSocket, StartTlsError> {
    DatagramSocket::new(fd, DescriptorRole::Cipher).map_err(StartTlsError::from_handshake)
}

/// Returns the UDP payload the path MTU of `socket` allows (`IP_MTU` of a connected socket,
/// less the headers), or [`DEFAULT_DTLS_MTU`] when the socket does not know it.
fn socket_mtu(socket: impl AsFd) -> u16 {
    let fd = socket.as_fd();
    let ipv6 = getpeername::<SockaddrStorage>(std::os::fd::AsRawFd::as_raw_fd(&fd))
        .ok()
        .and_then(|address| address.family())
        .is_some_and(|family| family == nix::sys::socket::AddressFamily::Inet6);
    let headers = if ipv6 {
        IPV6_UDP_HEADERS
    } else {
        IPV4_UDP_HEADERS
    };
    // NOTE: IP_MTU is read for IPv6 sockets too; a dual-stack socket reports the IPv4 value.
    match getsockopt(&fd, sockopt::IpMtu) {
        Ok(mtu) => u16::try_from(mtu - headers)
            .map_or(DEFAULT_DTLS_MTU, |payload| payload.max(MIN_DTLS_MTU)),
        Err(_) => DEFAULT_DTLS_MTU,
    }
}
