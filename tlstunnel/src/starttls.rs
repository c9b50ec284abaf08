//! The point where a prepared connection is handed to the TLS Pool: the [`Starttls`] trait,
//! the request it carries, and the session it returns.
//!
//! The daemon runs the handshake on the cipher-side connection and relays its application
//! data to the plaintext end of the [`Session`], a socket pair end that the client library
//! hands over in reply to the daemon's PLAINTEXT_CONNECT callback.

use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use tokio::net::UnixStream;
use tokio::sync::Mutex;
use tracing::debug;

use tlspool_client::{Client, ClientError, StartTlsBuilder, StartTlsFlags, StartTlsRequest};

use crate::TunnelError;

/// The TLS role of tlstunnel on the cipher-side connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// tlstunnel connects out and acts as TLS client (`-c`).
    Client,
    /// tlstunnel accepts and acts as TLS server (`-s`).
    Server,
}

/// What the TLS Pool demands of the peer's identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RemoteIdPolicy {
    /// The peer must authenticate with a certificate that validates (the default).
    #[default]
    Required,
    /// The peer is asked for a certificate but may stay anonymous (`--request-remote-id`,
    /// `PIOF_STARTTLS_REQUEST_REMOTEID`). A certificate it does send must validate.
    Requested,
    /// The peer is not asked for an identity and nothing is validated (`--ignore-remote-id`,
    /// `PIOF_STARTTLS_IGNORE_REMOTEID`).
    Ignored,
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
    /// Whether to set `PIOF_STARTTLS_FORK` (`-f`).
    pub fork: bool,
    /// The demand on the peer's identity.
    pub remote_id_policy: RemoteIdPolicy,
}

/// An established TLS session.
#[derive(Debug)]
pub struct Session {
    /// The identities the daemon reports: the local identity it used and the authenticated
    /// remote identity, each empty when there is none.
    pub identities: Identities,
    /// The plaintext end: bytes written here leave as TLS application data.
    pub plaintext: UnixStream,
}

/// Runs STARTTLS on a prepared cipher-side connection.
pub trait Starttls: Send + Sync + 'static {
    /// Hands `cipher` to the TLS Pool with `request` and returns the established session.
    fn start(
        &self,
        cipher: OwnedFd,
        request: StartRequest,
    ) -> impl Future<Output = Result<Session, TunnelError>> + Send;
}

/// [`Starttls`] through the TLS Pool daemon, over one client connection that all tunnel
/// connections share. It is opened on first use and again after the daemon closed it.
#[derive(Debug)]
pub struct PoolStarttls {
    socket_path: Option<PathBuf>,
    client: Mutex<Option<Client>>,
}

impl StartRequest {
    /// Converts the request into the client library's form: the role flags, `FORK` and the
    /// remote identity flags when requested, the identities and the service, and the daemon's
    /// default handshake timeout.
    ///
    /// # Errors
    ///
    /// [`TunnelError::Pool`] when a field does not fit the protocol.
    pub fn to_pool_request(&self) -> Result<StartTlsRequest, TunnelError> {
        Ok(self.pool_builder().build()?)
    }

    /// Converts the request as [`Self::to_pool_request`] does, for DTLS over UDP.
    ///
    /// # Errors
    ///
    /// [`TunnelError::Pool`] when a field does not fit the protocol.
    pub fn to_dtls_pool_request(&self) -> Result<StartTlsRequest, TunnelError> {
        Ok(self.pool_builder().dtls().build()?)
    }

    fn pool_builder(&self) -> StartTlsBuilder {
        let Identities {
            local_id,
            remote_id,
        } = &self.identities;
        let mut builder = match self.role {
            Role::Client => StartTlsRequest::client(remote_id.as_str()),
            Role::Server => StartTlsRequest::server(local_id.as_str()),
        };
        builder
            .local_id(local_id.as_str())
            .remote_id(remote_id.as_str())
            .service(self.service.as_str());
        if self.fork {
            builder.fork();
        }
        match self.remote_id_policy {
            RemoteIdPolicy::Required => {}
            RemoteIdPolicy::Requested => {
                builder.flags(StartTlsFlags::REQUEST_REMOTEID);
            }
            RemoteIdPolicy::Ignored => {
                builder.flags(StartTlsFlags::IGNORE_REMOTEID);
            }
        }
        builder
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

    /// Drops the shared client after the daemon closed its connection, so the next request
    /// connects again.
    async fn forget_client(&self) {
        *self.client.lock().await = None;
    }
}

impl Starttls for PoolStarttls {
    async fn start(&self, cipher: OwnedFd, request: StartRequest) -> Result<Session, TunnelError> {
        let pool_request = request.to_pool_request()?;
        debug!(role = ?request.role, service = %request.service, "requesting STARTTLS");
        self.start_request(cipher, &pool_request).await
    }
}

impl PoolStarttls {
    /// Hands `cipher` to the TLS Pool with the prepared `pool_request`.
    pub(crate) async fn start_request(
        &self,
        cipher: OwnedFd,
        pool_request: &StartTlsRequest,
    ) -> Result<Session, TunnelError> {
        let client = self.client().await?;

        let connection = match client.starttls(cipher, pool_request).await {
            Ok(connection) => connection,
            Err(ClientError::Disconnected) => {
                self.forget_client().await;
                return Err(ClientError::Disconnected.into());
            }
            Err(error) => return Err(error.into()),
        };
        Ok(Session {
            identities: Identities {
                local_id: connection.local_id,
                remote_id: connection.remote_id,
            },
            plaintext: connection.plaintext,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_with(role: Role, fork: bool, remote_id_policy: RemoteIdPolicy) -> StartTlsRequest {
        let identities = Identities {
            local_id: "me@example.com".into(),
            remote_id: "mx.example.com".into(),
        };
        let request = StartRequest {
            role,
            identities,
            service: "smtp".into(),
            fork,
            remote_id_policy,
        };
        request
            .to_pool_request()
            .unwrap_or_else(|error| panic!("{error}"))
    }

    fn request(role: Role, fork: bool) -> StartTlsRequest {
        request_with(role, fork, RemoteIdPolicy::Required)
    }

    #[test]
    fn client_request_fields() {
        let plain = request(Role::Client, false);
        assert_eq!(plain.flags().bits(), 0x0000_0009);
        assert_eq!(plain.local_id(), "me@example.com");
        assert_eq!(plain.remote_id(), "mx.example.com");
        assert_eq!(plain.service(), "smtp");
        assert_eq!(request(Role::Client, true).flags().bits(), 0x0000_4009);
    }

    #[test]
    fn server_request_flags() {
        assert_eq!(request(Role::Server, false).flags().bits(), 0x0000_0006);
    }

    #[test]
    fn remote_id_policy_flags() {
        let requested = request_with(Role::Server, false, RemoteIdPolicy::Requested);
        assert_eq!(requested.flags().bits(), 0x0000_0806);
        let ignored = request_with(Role::Client, false, RemoteIdPolicy::Ignored);
        assert_eq!(ignored.flags().bits(), 0x0000_1009);
    }
}
