//! The STARTTLS request: its builder, the checks of every field before anything is sent, and
//! the local identity check callback a caller may install.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tlspool_proto::{
    CtlKey, FixedString, ID_FIELD_LEN, Identity, SERVICE_LEN, StartTls, StartTlsFlags,
    TIMEOUT_DEFAULT, TIMEOUT_INFINITE,
};

use crate::ClientError;

/// IP protocol number of TCP: the daemon runs TLS.
pub(crate) const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP: the daemon runs DTLS.
pub(crate) const IPPROTO_UDP: u8 = 17;

/// Service name sent when the caller sets none.
pub const DEFAULT_SERVICE: &str = "generic";

/// The local identity check handler: called for each `PIOC_STARTTLS_LOCALID_V2` callback.
type LocalIdHandler = dyn Fn(&LocalIdCheck<'_>) -> LocalIdDecision + Send + Sync;

/// How long the daemon lets the TLS handshake take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HandshakeTimeout {
    /// The TLS library's default (`TLSPOOL_TIMEOUT_DEFAULT`, 0 on the wire).
    #[default]
    Default,
    /// No limit (`TLSPOOL_TIMEOUT_INFINITE`, 0xFFFFFFFF on the wire).
    Infinite,
    /// A limit of at least 1 ms and below 0xFFFFFFFF ms (about 49.7 days), sent in whole
    /// milliseconds rounded down.
    After(Duration),
}

impl From<Duration> for HandshakeTimeout {
    fn from(duration: Duration) -> Self {
        Self::After(duration)
    }
}

impl HandshakeTimeout {
    /// Returns the wire value in milliseconds.
    fn wire_value(self) -> Result<u32, ClientError> {
        let Self::After(duration) = self else {
            return Ok(match self {
                Self::Infinite => TIMEOUT_INFINITE,
                _ => TIMEOUT_DEFAULT,
            });
        };
        let millis = duration.as_millis();
        match u32::try_from(millis) {
            Ok(value) if value != TIMEOUT_DEFAULT && value != TIMEOUT_INFINITE => Ok(value),
            _ => Err(ClientError::InvalidRequest {
                field: "timeout",
                reason: format!(
                    "{millis} ms is outside 1..=4294967294 ms; use HandshakeTimeout::Default \
                     or HandshakeTimeout::Infinite for the special values"
                ),
            }),
        }
    }
}

/// The daemon's proposal in a `PIOC_STARTTLS_LOCALID_V2` callback, passed to the handler set
/// with [`StartTlsBuilder::localid_check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalIdCheck<'a> {
    /// The proposed local identity: the requested one, or the server name the peer sent.
    pub local_id: &'a str,
    /// The remote identity as far as known, or empty.
    pub remote_id: &'a str,
}

/// The decision of a local identity check handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalIdDecision {
    /// Use the proposed local identity.
    Accept,
    /// Use this local identity instead (at most 127 bytes).
    Replace(String),
    /// Reject the proposal, which fails the handshake.
    Reject,
}

/// A checked STARTTLS request, built with [`StartTlsRequest::client`] or
/// [`StartTlsRequest::server`] and passed to `starttls()`.
///
/// A request can be used for any number of sessions, and each gets a fresh control key.
#[derive(Clone)]
pub struct StartTlsRequest {
    flags: StartTlsFlags,
    local_id: Identity,
    remote_id: Identity,
    service: FixedString<SERVICE_LEN>,
    timeout: u32,
    ipproto: u8,
    localid_check: Option<Arc<LocalIdHandler>>,
}

impl StartTlsRequest {
    /// Starts a request for the TLS client role towards the server `remote_id`, which the
    /// daemon sends as the server name and checks the server's certificate against.
    ///
    /// The flags are `LOCALROLE_CLIENT | REMOTEROLE_SERVER`.
    pub fn client(remote_id: impl Into<String>) -> StartTlsBuilder {
        let mut builder = StartTlsBuilder::new(
            StartTlsFlags::LOCALROLE_CLIENT | StartTlsFlags::REMOTEROLE_SERVER,
        );
        builder.remote_id = remote_id.into();
        builder
    }

    /// Starts a request for the TLS server role with the local identity `local_id`.
    ///
    /// The flags are `LOCALROLE_SERVER | REMOTEROLE_CLIENT`. Without further flags the daemon
    /// requires a client certificate; add `REQUEST_REMOTEID` to make it optional.
    pub fn server(local_id: impl Into<String>) -> StartTlsBuilder {
        let mut builder = StartTlsBuilder::new(
            StartTlsFlags::LOCALROLE_SERVER | StartTlsFlags::REMOTEROLE_CLIENT,
        );
        builder.local_id = local_id.into();
        builder
    }

    /// Returns the flags the request sends.
    pub fn flags(&self) -> StartTlsFlags {
        self.flags
    }

    /// Returns the requested local identity, or empty.
    pub fn local_id(&self) -> &str {
        self.local_id.as_str()
    }

    /// Returns the requested remote identity, or empty.
    pub fn remote_id(&self) -> &str {
        self.remote_id.as_str()
    }

    /// Returns the service name.
    pub fn service(&self) -> &str {
        self.service.as_str()
    }

    /// Returns the IP protocol of the ciphertext socket: 6 (TCP) or 17 (UDP, DTLS).
    pub fn ipproto(&self) -> u8 {
        self.ipproto
    }

    /// Builds the STARTTLS payload for a new session with control key `ctlkey`.
    pub(crate) fn payload(&self, ctlkey: CtlKey) -> StartTls {
        StartTls {
            flags: self.flags,
            local: 0,
            ipproto: self.ipproto,
            streamid: 0,
            localid: self.local_id.clone(),
            remoteid: self.remote_id.clone(),
            ctlkey,
            service: self.service.clone(),
            timeout: self.timeout,
        }
    }

    /// Runs the local identity check handler, or accepts the proposal when there is none.
    pub(crate) fn check_local_id(&self, check: &LocalIdCheck<'_>) -> LocalIdDecision {
        match &self.localid_check {
            Some(handler) => handler(check),
            None => LocalIdDecision::Accept,
        }
    }
}

impl fmt::Debug for StartTlsRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StartTlsRequest")
            .field("flags", &self.flags)
            .field("local_id", &self.local_id)
            .field("remote_id", &self.remote_id)
            .field("service", &self.service)
            .field("timeout", &self.timeout)
            .field("localid_check", &self.localid_check.is_some())
            .finish()
    }
}

/// The builder of a [`StartTlsRequest`]; [`StartTlsBuilder::build`] checks every field.
#[derive(Clone)]
pub struct StartTlsBuilder {
    flags: StartTlsFlags,
    local_id: String,
    remote_id: String,
    service: String,
    timeout: HandshakeTimeout,
    ipproto: u8,
    localid_check: Option<Arc<LocalIdHandler>>,
}

impl StartTlsBuilder {
    fn new(roles: StartTlsFlags) -> Self {
        Self {
            flags: roles,
            local_id: String::new(),
            remote_id: String::new(),
            service: DEFAULT_SERVICE.to_owned(),
            timeout: HandshakeTimeout::Default,
            ipproto: IPPROTO_TCP,
            localid_check: None,
        }
    }

    /// Asks for DTLS over a connected UDP socket: `ipproto` 17 and the `DTLS` flag. The
    /// plaintext side is then a `SOCK_SEQPACKET` socket, where each write is one datagram.
    pub fn dtls(&mut self) -> &mut Self {
        self.ipproto = IPPROTO_UDP;
        self.flags(StartTlsFlags::DTLS)
    }

    /// Sets the local identity (a DoNAI such as `example.com` or `user@example.com`, at most
    /// 127 bytes). A client's daemon picks its credential through the remote identity, so the
    /// client's value mainly serves a local identity check.
    pub fn local_id(&mut self, local_id: impl Into<String>) -> &mut Self {
        self.local_id = local_id.into();
        self
    }

    /// Sets the remote identity (at most 127 bytes): the server's name for a client, or the
    /// client identity a server requires.
    pub fn remote_id(&mut self, remote_id: impl Into<String>) -> &mut Self {
        self.remote_id = remote_id.into();
        self
    }

    /// Sets the IANA service name, such as `smtp` or `http` (at most 15 bytes; default
    /// `generic`).
    pub fn service(&mut self, service: impl Into<String>) -> &mut Self {
        self.service = service.into();
        self
    }

    /// Adds `flags` to the request's flags, which start with the roles of
    /// [`StartTlsRequest::client`] or [`StartTlsRequest::server`].
    pub fn flags(&mut self, flags: StartTlsFlags) -> &mut Self {
        self.flags |= flags;
        self
    }

    /// Sets the handshake timeout.
    pub fn timeout(&mut self, timeout: impl Into<HandshakeTimeout>) -> &mut Self {
        self.timeout = timeout.into();
        self
    }

    /// Adds `FORK`: the session outlives the control connection and then becomes detached.
    pub fn fork(&mut self) -> &mut Self {
        self.flags(StartTlsFlags::FORK)
    }

    /// Adds `DETACH`: the daemon registers the session detached from the control connection.
    pub fn detach(&mut self) -> &mut Self {
        self.flags(StartTlsFlags::DETACH)
    }

    /// Adds `LOCALID_CHECK` and installs `handler`, which the client calls for each local
    /// identity the daemon proposes before it uses that identity's credential.
    ///
    /// The handler runs on the task or thread that waits in `starttls()`, so it should return
    /// quickly. Without a handler, `LOCALID_CHECK` set through [`StartTlsBuilder::flags`]
    /// accepts every proposal.
    pub fn localid_check<F>(&mut self, handler: F) -> &mut Self
    where
        F: Fn(&LocalIdCheck<'_>) -> LocalIdDecision + Send + Sync + 'static,
    {
        self.localid_check = Some(Arc::new(handler));
        self.flags(StartTlsFlags::LOCALID_CHECK)
    }

    /// Checks the fields and returns the request.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidRequest`] when an identity is longer than 127 bytes, the service
    /// name longer than 15 bytes, a string contains a NUL byte, the timeout is out of range,
    /// or the flags contain `RENEGOTIATE`, which names an existing session instead of
    /// starting one.
    pub fn build(&self) -> Result<StartTlsRequest, ClientError> {
        if self.flags.contains(StartTlsFlags::RENEGOTIATE) {
            return Err(ClientError::InvalidRequest {
                field: "flags",
                reason: "RENEGOTIATE redoes the handshake of an existing session and cannot \
                         start a new one"
                    .to_owned(),
            });
        }
        Ok(StartTlsRequest {
            flags: self.flags,
            local_id: checked_string::<ID_FIELD_LEN>("localid", &self.local_id)?,
            remote_id: checked_string::<ID_FIELD_LEN>("remoteid", &self.remote_id)?,
            service: checked_string::<SERVICE_LEN>("service", &self.service)?,
            timeout: self.timeout.wire_value()?,
            ipproto: self.ipproto,
            localid_check: self.localid_check.clone(),
        })
    }
}

impl fmt::Debug for StartTlsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StartTlsBuilder")
            .field("flags", &self.flags)
            .field("local_id", &self.local_id)
            .field("remote_id", &self.remote_id)
            .field("service", &self.service)
            .field("timeout", &self.timeout)
            .field("localid_check", &self.localid_check.is_some())
            .finish()
    }
}

/// Checks that `value` fits an `N`-byte wire field, naming `field` in the error.
pub(crate) fn checked_string<const N: usize>(
    field: &'static str,
    value: &str,
) -> Result<FixedString<N>, ClientError> {
    FixedString::for_field(field, value).map_err(|error| ClientError::InvalidRequest {
        field,
        reason: format!("{value:?}: {error}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_request_has_client_roles_and_remote_id() {
        let request = StartTlsRequest::client("peer.example").build().unwrap();
        assert_eq!(request.flags().bits(), 0x0000_0009);
        assert_eq!(request.remote_id(), "peer.example");
        assert_eq!(request.local_id(), "");
        assert_eq!(request.service(), DEFAULT_SERVICE);
    }

    #[test]
    fn server_request_has_server_roles_and_local_id() {
        let request = StartTlsRequest::server("dev.example").build().unwrap();
        assert_eq!(request.flags().bits(), 0x0000_0006);
        assert_eq!(request.local_id(), "dev.example");
        assert_eq!(request.remote_id(), "");
    }

    #[test]
    fn builder_adds_fork_detach_and_flags() {
        let request = StartTlsRequest::client("peer.example")
            .fork()
            .detach()
            .flags(StartTlsFlags::WITHOUT_SNI)
            .build()
            .unwrap();
        let flags = request.flags();
        assert!(flags.contains(StartTlsFlags::FORK));
        assert!(flags.contains(StartTlsFlags::DETACH));
        assert!(flags.contains(StartTlsFlags::WITHOUT_SNI));
        assert!(flags.contains(StartTlsFlags::LOCALROLE_CLIENT));
    }

    #[test]
    fn service_of_15_bytes_fits() {
        let request = StartTlsRequest::client("peer.example")
            .service("a".repeat(15))
            .build()
            .unwrap();
        assert_eq!(request.service().len(), 15);
    }

    #[test]
    fn service_of_16_bytes_is_rejected() {
        let result = StartTlsRequest::client("peer.example")
            .service("a".repeat(16))
            .build();
        let Err(ClientError::InvalidRequest { field, reason }) = result else {
            panic!("a 16-byte service name was accepted");
        };
        assert_eq!(field, "service");
        assert!(reason.contains("maximum of 15"), "{reason}");
    }

    #[test]
    fn identity_of_128_bytes_is_rejected() {
        let result = StartTlsRequest::client("a".repeat(128)).build();
        assert!(matches!(
            result,
            Err(ClientError::InvalidRequest {
                field: "remoteid",
                ..
            })
        ));
    }

    #[test]
    fn identity_with_nul_is_rejected() {
        let result = StartTlsRequest::server("dev\0example").build();
        assert!(matches!(
            result,
            Err(ClientError::InvalidRequest {
                field: "localid",
                ..
            })
        ));
    }

    #[test]
    fn renegotiate_flag_is_rejected() {
        let result = StartTlsRequest::client("peer.example")
            .flags(StartTlsFlags::RENEGOTIATE)
            .build();
        assert!(matches!(
            result,
            Err(ClientError::InvalidRequest { field: "flags", .. })
        ));
    }

    #[test]
    fn timeout_values_map_to_wire() {
        let wire = |timeout: HandshakeTimeout| {
            let request = StartTlsRequest::client("p").timeout(timeout).build();
            request.map(|request| request.payload([0; 16]).timeout)
        };
        assert_eq!(wire(HandshakeTimeout::Default).unwrap(), 0);
        assert_eq!(wire(HandshakeTimeout::Infinite).unwrap(), 0xFFFF_FFFF);
        assert_eq!(wire(Duration::from_millis(1500).into()).unwrap(), 1500);
        assert!(wire(Duration::ZERO.into()).is_err());
        assert!(wire(Duration::from_micros(999).into()).is_err());
        assert!(wire(Duration::from_millis(0xFFFF_FFFF).into()).is_err());
    }

    #[test]
    fn localid_check_sets_flag_and_handler() {
        let request = StartTlsRequest::server("dev.example")
            .localid_check(|_| LocalIdDecision::Replace("other.example".to_owned()))
            .build()
            .unwrap();
        assert!(request.flags().contains(StartTlsFlags::LOCALID_CHECK));
        let check = LocalIdCheck {
            local_id: "dev.example",
            remote_id: "",
        };
        assert_eq!(
            request.check_local_id(&check),
            LocalIdDecision::Replace("other.example".to_owned())
        );
    }

    #[test]
    fn missing_handler_accepts_proposal() {
        let request = StartTlsRequest::server("dev.example")
            .flags(StartTlsFlags::LOCALID_CHECK)
            .build()
            .unwrap();
        let check = LocalIdCheck {
            local_id: "dev.example",
            remote_id: "",
        };
        assert_eq!(request.check_local_id(&check), LocalIdDecision::Accept);
    }

    #[test]
    fn payload_carries_fields_and_ctlkey() {
        let request = StartTlsRequest::client("peer.example")
            .local_id("dev.example")
            .service("smtp")
            .build()
            .unwrap();
        let payload = request.payload([7; 16]);
        assert_eq!(payload.ipproto, IPPROTO_TCP);
        assert_eq!(payload.local, 0);
        assert_eq!(payload.ctlkey, [7; 16]);
        assert_eq!(payload.localid.as_str(), "dev.example");
        assert_eq!(payload.remoteid.as_str(), "peer.example");
        assert_eq!(payload.service.as_str(), "smtp");
    }
}
