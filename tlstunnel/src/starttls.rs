//! The point where a prepared connection is handed to the TLS Pool: the [`Starttls`] trait,
//! the request it carries, and the plaintext side the daemon relays to.
//!
//! In client mode the plaintext side is the accepted connection, known before the handshake.
//! In server mode it is opened on the daemon's PLAINTEXT_CONNECT callback, after the
//! handshake, so a UNIX socket path can use the negotiated identities.

use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Mutex;
use tracing::debug;

use tlspool_client::Client;
use tlspool_proto::StartTlsFlags;

use crate::net::Stream;
use crate::{Address, TunnelError};

/// The TLS role of tlstunnel on the cipher-side connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// tlstunnel connects out and acts as TLS client (`-c`).
    Client,
    /// tlstunnel accepts and acts as TLS server (`-s`).
    Server,
}

/// The local and remote identity of a session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identities {
    /// The local identity (a DoNAI such as `smtp.example.com`), or empty.
    pub local_id: String,
    /// The remote identity, or empty when the peer is anonymous or unknown.
    pub remote_id: String,
}

/// The STARTTLS request tlstunnel sends to the TLS Pool for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartRequest {
    /// The local TLS role.
    pub role: Role,
    /// The requested identities: `-L`, and `-R` or empty.
    pub identities: Identities,
    /// The IANA service name, at most 15 bytes.
    pub service: String,
    /// The role flags plus `FORK` when `-f` was given.
    pub flags: StartTlsFlags,
    /// The handshake timeout in milliseconds; 0 lets the daemon choose.
    pub timeout_ms: u32,
}

/// The plaintext side of a session.
#[derive(Debug)]
pub enum Plaintext {
    /// A descriptor that is ready now: the accepted connection in client mode.
    Ready(OwnedFd),
    /// Forward addresses to connect to once the identities are known, in server mode.
    Connect(Arc<[Address]>),
}

/// Runs STARTTLS on a prepared cipher-side connection.
pub trait Starttls: Send + Sync + 'static {
    /// Hands `cipher` to the TLS Pool with `request`; on the daemon's PLAINTEXT_CONNECT
    /// callback, opens the plaintext side with [`Plaintext::open`]. Returns the negotiated identities.
    fn start(
        &self,
        cipher: OwnedFd,
        request: StartRequest,
        plaintext: Plaintext,
    ) -> impl Future<Output = Result<Identities, TunnelError>> + Send;
}

/// [`Starttls`] through the TLS Pool daemon, over one client connection that all tunnel
/// connections share and that is opened on first use.
#[derive(Debug)]
pub struct PoolStarttls {
    socket_path: Option<PathBuf>,
    client: Mutex<Option<Client>>,
}

impl StartRequest {
    /// Builds the request for `role` with the flags the role needs.
    pub fn new(role: Role, identities: Identities, service: String, fork: bool) -> Self {
        let mut flags = match role {
            Role::Client => StartTlsFlags::LOCALROLE_CLIENT | StartTlsFlags::REMOTEROLE_SERVER,
            Role::Server => StartTlsFlags::LOCALROLE_SERVER | StartTlsFlags::REMOTEROLE_CLIENT,
        };
        if fork {
            flags |= StartTlsFlags::FORK;
        }
        Self {
            role,
            identities,
            service,
            flags,
            timeout_ms: 0,
        }
    }
}

impl Plaintext {
    /// Returns the plaintext descriptor: the ready one, or a connection to the first forward
    /// address that accepts, with `%L` and `%R` expanded from `identities`.
    ///
    /// # Errors
    ///
    /// See [`Stream::connect_any`].
    pub async fn open(self, identities: &Identities) -> Result<OwnedFd, TunnelError> {
        match self {
            Self::Ready(fd) => Ok(fd),
            Self::Connect(addresses) => {
                let stream =
                    Stream::connect_any(&addresses, &identities.local_id, &identities.remote_id)
                        .await?;
                stream.into_owned_fd()
            }
        }
    }
}

impl PoolStarttls {
    /// Uses the daemon socket at `socket_path`, or the configured one when it is `None`.
    pub fn new(socket_path: Option<PathBuf>) -> Self {
        Self {
            socket_path,
            client: Mutex::new(None),
        }
    }

    /// Returns the shared client, connecting when there is none yet.
    async fn client(&self) -> Result<Client, TunnelError> {
        let mut client = self.client.lock().await;
        if let Some(client) = client.as_ref() {
            return Ok(client.clone());
        }
        let connected = Client::connect(self.socket_path.as_deref()).await?;
        debug!(path = %connected.socket_path().display(), "connected to the TLS Pool");
        Ok(client.insert(connected).clone())
    }
}

impl Starttls for PoolStarttls {
    async fn start(
        &self,
        cipher: OwnedFd,
        request: StartRequest,
        plaintext: Plaintext,
    ) -> Result<Identities, TunnelError> {
        let _client = self.client().await?;
        debug!(role = ?request.role, service = %request.service, "requesting STARTTLS");

        // NOTE: the client library offers no STARTTLS call yet; once it does, this sends
        // `request` with `cipher`, replies to PLAINTEXT_CONNECT with `plaintext.open(..)` and
        // returns the negotiated identities. Until then every connection ends here.
        drop((cipher, plaintext));
        Err(TunnelError::StarttlsUnavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_request_flags() {
        let request = StartRequest::new(Role::Client, Identities::default(), "smtp".into(), false);
        assert_eq!(request.flags.bits(), 0x0000_0009);
        let forked = StartRequest::new(Role::Client, Identities::default(), "smtp".into(), true);
        assert_eq!(forked.flags.bits(), 0x0000_4009);
    }

    #[test]
    fn server_request_flags() {
        let request = StartRequest::new(Role::Server, Identities::default(), "http".into(), false);
        assert_eq!(request.flags.bits(), 0x0000_0006);
    }

    #[tokio::test]
    async fn plaintext_connects_by_remote_identity() {
        let directory = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let socket = directory.path().join("alice@example.com.sock");
        let listener = tokio::net::UnixListener::bind(&socket)
            .unwrap_or_else(|e| panic!("bind {}: {e}", socket.display()));
        let template = format!("{}/%R.sock", directory.path().display());
        let address = Address::parse(&template).unwrap_or_else(|e| panic!("{e}"));
        let identities = Identities {
            local_id: "mail.example.com".into(),
            remote_id: "alice@example.com".into(),
        };

        let plaintext = Plaintext::Connect(Arc::from(vec![address.clone()]));
        let opened = plaintext.open(&identities).await;
        assert!(opened.is_ok(), "{opened:?}");
        assert!(listener.accept().await.is_ok());

        let hostile = Identities {
            local_id: String::new(),
            remote_id: "../alice@example.com".into(),
        };
        let refused = Plaintext::Connect(Arc::from(vec![address]))
            .open(&hostile)
            .await;
        assert!(
            matches!(refused, Err(TunnelError::UnsafeExpansion { .. })),
            "{refused:?}"
        );
    }
}
