//! The failures of a STARTTLS request and their one mapping to the ERROR record the client
//! receives: a TLS Pool error code or an `errno` value, and a message that says what failed.
//!
//! Peer validation failures get Linux `errno` values of their own, so a client can tell them
//! apart without parsing the message: `ENOKEY` for a missing peer certificate,
//! `EKEYEXPIRED` for an expired one, `EKEYREVOKED` for a revoked one, `EACCES` for a name
//! that does not match the requested remote identity, and `EKEYREJECTED` for every other
//! reason (an untrusted chain, a bad signature, a missing key usage). The OpenPGP key of a raw
//! public key gets the same codes: `EKEYREVOKED` for a revoked key or user ID, `EKEYEXPIRED`
//! for an expired key and `EACCES` for a key without a user ID of the remote identity.

use std::time::Duration;

use tlspool_core::db::DbError;
use tlspool_core::relay::RelayError;
use tlspool_core::tls::TlsError;
use tlspool_proto::{ErrorCode, Record};
use tlspool_validate::ValidateError;

/// `EACCES`: the peer's certificate does not carry the requested remote identity.
const EACCES: i32 = 13;
/// `EINVAL`: a request field contains a value that is not an identity.
const EINVAL: i32 = 22;
/// `EPROTONOSUPPORT`: `ipproto` is not TCP, UDP or SCTP.
const EPROTONOSUPPORT: i32 = 93;
/// `ETIMEDOUT`: the handshake did not finish within the request's timeout.
const ETIMEDOUT: i32 = 110;
/// `ENOKEY`: the peer sent no certificate although one is required.
const ENOKEY: i32 = 126;
/// `EKEYEXPIRED`: a certificate of the peer's chain has expired.
const EKEYEXPIRED: i32 = 127;
/// `EKEYREVOKED`: a certificate of the peer's chain is revoked.
const EKEYREVOKED: i32 = 128;
/// `EKEYREJECTED`: the peer's chain fails validation for any other reason.
const EKEYREJECTED: i32 = 129;

/// Reason a STARTTLS request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartTlsError {
    /// The request arrived without the ciphertext socket.
    #[error("TLS Pool needs the ciphertext socket with a STARTTLS request")]
    CipherSocketNeeded,

    /// No local role is left after the roles were normalised against the remote roles.
    #[error("TLS Pool found no local role in STARTTLS flags {flags:#010x}")]
    NoLocalRole {
        /// The flags of the request.
        flags: u32,
    },

    /// Both local roles remain: the peer-to-peer role.
    #[error("TLS Pool does not implement the peer role (local client and server at once)")]
    PeerRoleNotImplemented,

    /// `ipproto` names a transport this system cannot run STARTTLS over (SCTP).
    #[error(
        "STARTTLS over {transport} (ipproto {ipproto}) is not supported on this system; use TCP (6) or UDP (17)"
    )]
    TransportUnsupported {
        /// `SCTP`.
        transport: &'static str,
        /// The `ipproto` field.
        ipproto: u8,
    },

    /// `ipproto` is not an IP protocol STARTTLS can run over.
    #[error("TLS Pool does not know ipproto {ipproto}; expected 6 (TCP), 17 (UDP) or 132 (SCTP)")]
    UnknownTransport {
        /// The `ipproto` field.
        ipproto: u8,
    },

    /// A `RENEGOTIATE` request arrived with a descriptor, which it must not carry.
    #[error("TLS Pool takes no descriptor with a RENEGOTIATE request")]
    SuperfluousSocket,

    /// No session with the `ctlkey` of a `RENEGOTIATE` request is attached to this connection.
    #[error("TLS Pool finds no session with this ctlkey attached to this connection")]
    RenegotiationSessionNotFound,

    /// The session cannot renegotiate now: it uses TLS 1.3, or another renegotiation runs.
    #[error("TLS Pool cannot renegotiate the session: {reason}")]
    RenegotiationNotInterruptible {
        /// Why, such as the protocol version.
        reason: String,
    },

    /// The peer lacks secure renegotiation or the extended master secret; the session ends.
    #[error("TLS Pool rejects the renegotiation and ends the session: {reason}")]
    RenegotiationInsecure {
        /// The protection that is missing.
        reason: String,
    },

    /// The peer declined the renegotiation with a no_renegotiation alert; the session goes on
    /// with its earlier keys.
    #[error("TLS Pool requested a renegotiation, but the peer rejected it; the session continues")]
    RenegotiationRejected,

    /// The new handshake failed, which ended the session.
    #[error("TLS Pool and peer failed during the renegotiation, which ended the session: {detail}")]
    RenegotiationFailed {
        /// The handshake or relay error.
        detail: String,
    },

    /// A request field is not a DoNAI.
    #[error("TLS Pool rejects {field} {value:?}: {reason}")]
    InvalidIdentity {
        /// `localid` or `remoteid`, or the name source such as `server name`.
        field: &'static str,
        /// The value.
        value: String,
        /// Reason it is not a DoNAI.
        reason: String,
    },

    /// The daemon was started without `dbenv_dir`.
    #[error("TLS Pool has no databases; configure dbenv_dir")]
    NoDatabases,

    /// A database read failed.
    #[error("TLS Pool failed to read its databases: {source}")]
    Database {
        /// The database error.
        #[source]
        source: DbError,
    },

    /// A client-role request without `remoteid`, which the disclose lookup needs.
    #[error("TLS Pool needs a remoteid to choose the client identity to disclose")]
    RemoteIdNeeded,

    /// No disclose selector matches the remote identity.
    #[error("TLS Pool discloses no local identity to {remote_id}")]
    NothingDisclosed {
        /// The remote identity.
        remote_id: String,
    },

    /// The localid database has no usable X.509 credential of the identity for this role.
    #[error("TLS Pool has no local identity for {local_id}")]
    NoLocalIdentity {
        /// The local identity looked up.
        local_id: String,
    },

    /// A server without `localid` received a ClientHello without a server name.
    #[error("TLS Pool has no local identity: the client sent no server name and localid is empty")]
    NoServerName,

    /// The client's server name differs from the domain of the preset `localid`.
    #[error("TLS Pool serves {local_id}, but the client asked for {server_name}")]
    ServerNameMismatch {
        /// The preset local identity.
        local_id: String,
        /// The DNS name of the client's SNI extension.
        server_name: String,
    },

    /// A stored credential is unusable: no PKCS #11 URI, or a chain that does not split.
    #[error("TLS Pool cannot use the credential of {local_id}: {reason}")]
    InvalidCredential {
        /// The local identity.
        local_id: String,
        /// What is wrong with the stored value.
        reason: String,
    },

    /// The login to the token of a credential's key failed: no PIN, a wrong or locked PIN,
    /// or a PIN entry service that did not respond.
    #[error("TLS Pool cannot log in to the token of {local_id}: {source}")]
    TokenLogin {
        /// The local identity.
        local_id: String,
        /// The PKCS #11 error.
        #[source]
        source: tlspool_pkcs11::Pkcs11Error,
    },

    /// The OpenPGP card of a credential's key is unusable: no card with that ident, pcscd
    /// not reachable, no usable authentication key, or a user PIN that is missing, wrong or
    /// blocked.
    #[error("TLS Pool cannot use OpenPGP card {ident} for {local_id}: {source}")]
    CardFailed {
        /// The local identity.
        local_id: String,
        /// The card's ident, `MMMM:SSSSSSSS`.
        ident: String,
        /// The card error.
        #[source]
        source: tlspool_pkcs11::Pkcs11Error,
    },

    /// The card's authentication key is not the key of the identity's OpenPGP value.
    #[error(
        "the authentication key of OpenPGP card {ident} differs from the OpenPGP key of {local_id}; store the card's key with tlspool-admin localid card"
    )]
    CardKeyMismatch {
        /// The local identity.
        local_id: String,
        /// The card's ident, `MMMM:SSSSSSSS`.
        ident: String,
    },

    /// A call to an OpenPGP card, including the wait for its PIN, did not finish within
    /// `pkcs11_timeout`.
    #[error(
        "OpenPGP card {ident} timed out after {} s during {operation}; check the card and pcscd or raise pkcs11_timeout",
        timeout.as_secs()
    )]
    CardTimedOut {
        /// The card's ident, `MMMM:SSSSSSSS`.
        ident: String,
        /// The card operation.
        operation: &'static str,
        /// The `pkcs11_timeout` that passed.
        timeout: Duration,
    },

    /// GnuTLS could not load a credential, for instance because its token key did not open.
    #[error("TLS Pool cannot load the credential of {local_id}: {source}")]
    CredentialSetup {
        /// The local identity.
        local_id: String,
        /// The GnuTLS error.
        #[source]
        source: TlsError,
    },

    /// A credential lookup (localid read and token key import) did not finish within
    /// `pkcs11_timeout`.
    #[error(
        "TLS Pool timed out after {} s looking up {lookup}; check the PKCS #11 token or raise pkcs11_timeout",
        timeout.as_secs()
    )]
    CredentialLookupTimedOut {
        /// What was looked up.
        lookup: String,
        /// The `pkcs11_timeout` that passed.
        timeout: Duration,
    },

    /// The thread of a credential lookup panicked or was cancelled.
    #[error("TLS Pool failed looking up {lookup}: {reason}")]
    CredentialLookupFailed {
        /// What was looked up.
        lookup: String,
        /// The panic or cancellation.
        reason: String,
    },

    /// Creating the TLS session failed (a priority string GnuTLS rejects, for instance).
    #[error("TLS Pool cannot set up the TLS session: {source}")]
    SessionSetup {
        /// The GnuTLS error.
        #[source]
        source: TlsError,
    },

    /// The ciphertext descriptor cannot be used (not a stream socket, rejected by epoll).
    #[error("TLS Pool cannot use the ciphertext socket: {reason}")]
    SocketSetup {
        /// The failed call and its error.
        reason: String,
    },

    /// What the peer sent first is not a TLS ClientHello.
    #[error("TLS Pool received no TLS ClientHello: {reason}")]
    NotClientHello {
        /// What was wrong with the bytes.
        reason: String,
    },

    /// The handshake failed: an alert, a protocol error, a closed connection.
    #[error("TLS Pool and peer failed during the TLS handshake: {detail}")]
    HandshakeFailed {
        /// The GnuTLS alert or error text.
        detail: String,
    },

    /// The handshake did not finish in time.
    #[error("TLS Pool handshake timed out after {} ms", timeout.as_millis())]
    HandshakeTimedOut {
        /// The timeout that passed.
        timeout: Duration,
    },

    /// The peer sent no certificate, and the request did not make it optional.
    #[error("TLS Pool requires a peer certificate and the peer sent none")]
    PeerCertificateMissing,

    /// The peer's certificate chain or name was rejected.
    #[error("TLS Pool rejected the peer certificate: {source}")]
    PeerRejected {
        /// The precise reason.
        #[source]
        source: ValidateError,
    },

    /// The validation expression of the handshake is false for the peer.
    #[error("{}", validation_message(.expression, .failed_at, .reason, .cause.as_deref()))]
    ValidationFailed {
        /// The expression, all sources combined with AND in postfix.
        expression: String,
        /// The letter of the predicate that made it false, or `its end` when none did.
        failed_at: String,
        /// Reason that predicate is false, such as `no TLSA records`.
        reason: String,
        /// The certificate or OpenPGP key check behind that predicate (for `T`, `t`, `R`,
        /// `r`, `I`, `i`, and `P` and `p` of a raw public key), which picks the `errno` value.
        cause: Option<Box<PeerCause>>,
    },

    /// A source of the validation expression does not parse, which fails the handshake.
    #[error(
        "TLS Pool rejected the peer: validation expression `{expression}` of {origin} is invalid: {reason}"
    )]
    InvalidValidationExpression {
        /// `the trust anchor`, `the local identity` or `validate_default`.
        origin: &'static str,
        /// The text of the source.
        expression: String,
        /// Reason it does not parse.
        reason: String,
    },

    /// No OpenPGP key of the remote identity contains the peer's raw public key.
    #[error("TLS Pool rejected the peer's raw public key: {reason}")]
    OpenPgpKeyRejected {
        /// The class of the rejection, which picks the `errno` value.
        rejection: OpenPgpRejection,
        /// The reason the OpenPGP keys that contain the raw public key do not match.
        reason: String,
    },

    /// The authenticated identity of the peer cannot be a remote identity.
    #[error("TLS Pool found no usable identity in the peer certificate {subject:?}")]
    NoPeerIdentity {
        /// The subject of the peer's certificate.
        subject: String,
    },

    /// All 1024 callback ids are in use.
    #[error("TLS Pool has no free callback id (1024 callbacks outstanding)")]
    CallbackTableFull,

    /// The control connection closed while a callback was outstanding.
    #[error("TLS Pool client disconnected during the {callback} callback")]
    ClientDisconnected {
        /// The callback command name.
        callback: &'static str,
    },

    /// The client responded to a callback with ERROR.
    #[error("TLS Pool client refused the {callback} callback: {message}")]
    CallbackRefused {
        /// The callback command name.
        callback: &'static str,
        /// The message of the client's ERROR.
        message: String,
    },

    /// The client responded to the LOCALID callback with an empty `localid`.
    #[error("TLS Pool client accepted no local identity (proposed {proposal:?})")]
    NoLocalIdAccepted {
        /// The proposed local identity.
        proposal: String,
    },

    /// The client responded to a callback with another command.
    #[error("TLS Pool expected {callback} in the callback response, got command {cmd:#010x}")]
    BadCallbackResponse {
        /// The callback command name.
        callback: &'static str,
        /// The command code of the answer.
        cmd: u32,
    },

    /// The PLAINTEXT_CONNECT answer carried no descriptor.
    #[error("TLS Pool needs the plaintext socket with the PLAINTEXT_CONNECT response")]
    PlaintextSocketNeeded,

    /// The plaintext descriptor of the application cannot carry the session's plaintext.
    #[error("TLS Pool cannot use the plaintext descriptor: {reason}")]
    PlaintextSocketInvalid {
        /// The problem with it, such as `it is not a socket`.
        reason: String,
    },

    /// Another session has the control key.
    #[error("TLS Pool cannot register the control key: another session uses it")]
    CtlKeyInUse,

    /// The local identity selection service did not respond to a callback within its window.
    #[error(
        "TLS Pool local identity selection service did not answer within {} s",
        timeout.as_secs()
    )]
    LocalIdSelectionTimedOut {
        /// The helper's response window.
        timeout: Duration,
    },

    /// The connection of the local identity selection service closed during its callbacks.
    #[error("TLS Pool local identity selection service disconnected before it chose an identity")]
    LocalIdSelectionDisconnected,

    /// The local identity selection service responded to the inquiry with ERROR.
    #[error("TLS Pool local identity selection service refused to choose: {message}")]
    LocalIdSelectionRefused {
        /// The message of the helper's ERROR.
        message: String,
    },

    /// A field of the local identity selection service's answer is invalid.
    #[error(
        "TLS Pool local identity selection service sent an invalid {field} {value:?}: {reason}"
    )]
    LocalIdSelectionInvalid {
        /// The field of the answer: `localid` or `remoteid`.
        field: &'static str,
        /// Its text.
        value: String,
        /// The reason it cannot be used.
        reason: String,
    },

    /// The identity the selection service announced as new did not appear in time.
    #[error(
        "TLS Pool waited {} s for the new local identity {local_id} and the localid database \
         still has no client credential for it",
        timeout.as_secs()
    )]
    NewLocalIdTimedOut {
        /// The announced identity.
        local_id: String,
        /// How long the daemon waited: the helper's window.
        timeout: Duration,
    },

    /// An on-the-fly certificate was requested and no signer is configured.
    #[error(
        "TLS Pool cannot issue an on-the-fly certificate for {local_id}: configure \
         tls_onthefly_signcert and tls_onthefly_signkey"
    )]
    OnTheFlyUnavailable {
        /// The identity of the requested certificate.
        local_id: String,
    },

    /// Issuing or loading an on-the-fly certificate failed.
    #[error("TLS Pool failed to issue an on-the-fly certificate for {local_id}: {source}")]
    OnTheFlyFailed {
        /// The identity of the certificate.
        local_id: String,
        /// The GnuTLS failure, such as the signer key's token refusing to sign.
        #[source]
        source: TlsError,
    },
}

impl StartTlsError {
    /// Returns the `tlserrno` of the ERROR record: a TLS Pool error code or an `errno` value.
    pub fn tlserrno(&self) -> i32 {
        match self {
            Self::InvalidIdentity { .. } => EINVAL,
            Self::UnknownTransport { .. } => EPROTONOSUPPORT,
            Self::HandshakeTimedOut { .. }
            | Self::CredentialLookupTimedOut { .. }
            | Self::CardTimedOut { .. }
            | Self::LocalIdSelectionTimedOut { .. }
            | Self::NewLocalIdTimedOut { .. } => ETIMEDOUT,
            Self::PeerCertificateMissing => ENOKEY,
            Self::PeerRejected { source } => validate_errno(source),
            Self::ValidationFailed {
                cause: Some(cause), ..
            } => cause.errno(),
            Self::OpenPgpKeyRejected { rejection, .. } => rejection.errno(),
            Self::ValidationFailed { .. }
            | Self::InvalidValidationExpression { .. }
            | Self::NoPeerIdentity { .. } => EKEYREJECTED,
            other => other.error_code().code(),
        }
    }

    /// Builds the ERROR record for request `reqid`.
    pub fn to_record(&self, reqid: u16) -> Record {
        Record::error(reqid, self.tlserrno(), &self.to_string())
    }

    /// Returns the TLS Pool error code of the failures that have one.
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::CipherSocketNeeded => ErrorCode::CipherSocketNeeded,
            Self::NoLocalRole { .. }
            | Self::PeerRoleNotImplemented
            | Self::TransportUnsupported { .. } => ErrorCode::CommandNotImpl,
            Self::SuperfluousSocket => ErrorCode::SuperfluousSocket,
            Self::RenegotiationSessionNotFound => ErrorCode::RenegotiateNotFound,
            Self::RenegotiationNotInterruptible { .. } => ErrorCode::RenegotiateNotInterruptable,
            Self::RenegotiationInsecure { .. } => ErrorCode::RenegotiateWouldBeInsecure,
            Self::RenegotiationRejected | Self::RenegotiationFailed { .. } => {
                ErrorCode::StirredNotShaken
            }
            Self::CallbackTableFull => ErrorCode::OutOfMemory,
            Self::ClientDisconnected { .. } | Self::LocalIdSelectionDisconnected => {
                ErrorCode::ClientDisconnect
            }
            Self::CallbackRefused { .. }
            | Self::NoLocalIdAccepted { .. }
            | Self::LocalIdSelectionRefused { .. } => ErrorCode::ClientRefusesCallback,
            Self::BadCallbackResponse { .. } | Self::LocalIdSelectionInvalid { .. } => {
                ErrorCode::CommandBadCallbackResponse
            }
            Self::PlaintextSocketNeeded | Self::PlaintextSocketInvalid { .. } => {
                ErrorCode::PlainSocketNeeded
            }
            Self::CtlKeyInUse => ErrorCode::CtlkeyRegistrationFailed,
            Self::SessionSetup { .. } | Self::SocketSetup { .. } => {
                ErrorCode::ConnectionHandlerSetup
            }
            Self::NotClientHello { .. } | Self::HandshakeFailed { .. } => {
                ErrorCode::StirredNotShaken
            }
            _ => ErrorCode::ConnectionDriverSetup,
        }
    }

    /// Classifies a failure of the handshake driver.
    pub fn from_handshake(error: RelayError) -> Self {
        match error {
            RelayError::HandshakeTimedOut { timeout } => Self::HandshakeTimedOut { timeout },
            RelayError::Tls { source, .. } => Self::from_tls_handshake(source),
            RelayError::Setup { .. }
            | RelayError::NotStreamSocket { .. }
            | RelayError::NotDatagramSocket { .. } => Self::SocketSetup {
                reason: error.to_string(),
            },
            other => Self::HandshakeFailed {
                detail: other.to_string(),
            },
        }
    }

    fn from_tls_handshake(error: TlsError) -> Self {
        match error {
            TlsError::NoPeerCertificate => Self::PeerCertificateMissing,
            TlsError::HandshakeTimeout => Self::HandshakeFailed {
                detail: "GnuTLS handshake timeout passed".to_owned(),
            },
            other => Self::HandshakeFailed {
                detail: other.to_string(),
            },
        }
    }
}

impl From<DbError> for StartTlsError {
    fn from(source: DbError) -> Self {
        Self::Database { source }
    }
}

/// The check behind a false predicate: a certificate check, or the match of a raw public
/// key with OpenPGP keys.
#[derive(Debug, Clone)]
pub enum PeerCause {
    /// A check of the X.509 chain or of its name.
    Certificate(ValidateError),
    /// The OpenPGP keys that hold the raw public key do not match.
    OpenPgp(OpenPgpRejection),
}

impl PeerCause {
    fn errno(&self) -> i32 {
        match self {
            Self::Certificate(error) => validate_errno(error),
            Self::OpenPgp(rejection) => rejection.errno(),
        }
    }

    /// Names what was rejected, for the ERROR message.
    fn subject(&self) -> &'static str {
        match self {
            Self::Certificate(_) => "the peer certificate",
            Self::OpenPgp(_) => "the peer's raw public key",
        }
    }
}

/// The reason no OpenPGP key of the remote identity contains a raw public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenPgpRejection {
    /// The key that contains it, or the user ID of the remote identity, is revoked.
    Revoked,
    /// The key that holds it expired.
    Expired,
    /// The key that holds it has no valid user ID with the remote identity as email address.
    UserIdMismatch,
    /// No OpenPGP key holds it, or it is not the authentication key.
    Other,
}

impl OpenPgpRejection {
    fn errno(self) -> i32 {
        match self {
            Self::Revoked => EKEYREVOKED,
            Self::Expired => EKEYEXPIRED,
            Self::UserIdMismatch => EACCES,
            Self::Other => EKEYREJECTED,
        }
    }
}

/// Words the rejection by a validation expression. The reason of a certificate or OpenPGP key
/// check comes first, because the ERROR message field truncates long texts.
fn validation_message(
    expression: &str,
    failed_at: &str,
    reason: &str,
    cause: Option<&PeerCause>,
) -> String {
    if let Some(cause) = cause {
        let subject = cause.subject();
        format!("TLS Pool rejected {subject}: {reason}; `{expression}` failed at {failed_at}")
    } else {
        format!(
            "TLS Pool rejected the peer: validation expression `{expression}` failed at {failed_at} ({reason})"
        )
    }
}

/// Picks the `errno` value of a peer validation failure.
fn validate_errno(error: &ValidateError) -> i32 {
    match error {
        ValidateError::EmptyChain => ENOKEY,
        ValidateError::Expired { .. } => EKEYEXPIRED,
        ValidateError::Revoked { .. } => EKEYREVOKED,
        ValidateError::NameMismatch { .. } => EACCES,
        _ => EKEYREJECTED,
    }
}

#[cfg(test)]
mod tests {
    use tlspool_proto::Payload;

    use super::*;

    #[test]
    fn record_carries_code_and_message() {
        let error = StartTlsError::NoLocalIdentity {
            local_id: "server.example".to_owned(),
        };
        let record = error.to_record(7);
        assert_eq!(record.reqid, 7);
        assert_eq!(record.cbid, 0);
        let Payload::Error(payload) = record.payload else {
            panic!("expected ERROR, got {:?}", record.payload);
        };
        assert_eq!(payload.error_code(), Some(ErrorCode::ConnectionDriverSetup));
        assert_eq!(
            payload.message,
            "TLS Pool has no local identity for server.example"
        );
    }

    #[test]
    fn validation_failures_have_distinct_codes() {
        let rejected = |source| StartTlsError::PeerRejected { source }.tlserrno();
        let mismatch = rejected(ValidateError::NameMismatch {
            expected: "a.example".to_owned(),
            presented: vec!["b.example".to_owned()],
        });
        let missing = StartTlsError::PeerCertificateMissing.tlserrno();
        let empty = rejected(ValidateError::EmptyChain);
        assert_eq!(mismatch, EACCES);
        assert_eq!(missing, ENOKEY);
        assert_eq!(empty, ENOKEY);
        assert_ne!(mismatch, StartTlsError::CtlKeyInUse.tlserrno());
    }

    #[test]
    fn openpgp_rejections_have_distinct_codes() {
        let cases = [
            (OpenPgpRejection::Revoked, EKEYREVOKED),
            (OpenPgpRejection::Expired, EKEYEXPIRED),
            (OpenPgpRejection::UserIdMismatch, EACCES),
            (OpenPgpRejection::Other, EKEYREJECTED),
        ];
        for (rejection, errno) in cases {
            let failed = StartTlsError::ValidationFailed {
                expression: "IT&".to_owned(),
                failed_at: "I".to_owned(),
                reason: "the OpenPGP key is revoked".to_owned(),
                cause: Some(Box::new(PeerCause::OpenPgp(rejection))),
            };
            assert_eq!(
                failed.tlserrno(),
                errno,
                "{rejection:?} through the expression"
            );
            let rejected = StartTlsError::OpenPgpKeyRejected {
                rejection,
                reason: "the OpenPGP key is revoked".to_owned(),
            };
            assert_eq!(rejected.tlserrno(), errno, "{rejection:?} as the identity");
        }
    }

    #[test]
    fn renegotiation_failures_have_protocol_codes() {
        let cases = [
            (
                StartTlsError::SuperfluousSocket,
                ErrorCode::SuperfluousSocket,
            ),
            (
                StartTlsError::RenegotiationSessionNotFound,
                ErrorCode::RenegotiateNotFound,
            ),
            (
                StartTlsError::RenegotiationNotInterruptible {
                    reason: "TLS 1.3".to_owned(),
                },
                ErrorCode::RenegotiateNotInterruptable,
            ),
            (
                StartTlsError::RenegotiationInsecure {
                    reason: "no RFC 5746".to_owned(),
                },
                ErrorCode::RenegotiateWouldBeInsecure,
            ),
            (
                StartTlsError::RenegotiationRejected,
                ErrorCode::StirredNotShaken,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.tlserrno(), code.code(), "{error}");
        }
    }

    #[test]
    fn role_and_transport_gaps_are_notimpl() {
        for error in [
            StartTlsError::PeerRoleNotImplemented,
            StartTlsError::NoLocalRole { flags: 0 },
            StartTlsError::TransportUnsupported {
                transport: "SCTP",
                ipproto: 132,
            },
        ] {
            assert_eq!(
                error.tlserrno(),
                ErrorCode::CommandNotImpl.code(),
                "{error}"
            );
        }
        let unknown = StartTlsError::UnknownTransport { ipproto: 99 };
        assert_eq!(unknown.tlserrno(), EPROTONOSUPPORT);
    }

    #[test]
    fn handshake_timeout_is_etimedout() {
        let error = StartTlsError::from_handshake(RelayError::HandshakeTimedOut {
            timeout: Duration::from_millis(250),
        });
        assert_eq!(error.tlserrno(), ETIMEDOUT);
        assert_eq!(
            error.to_string(),
            "TLS Pool handshake timed out after 250 ms"
        );
    }

    #[test]
    fn non_datagram_cipher_is_socket_setup() {
        let error = StartTlsError::from_handshake(RelayError::NotDatagramSocket {
            role: tlspool_core::relay::DescriptorRole::Cipher,
        });
        assert!(
            matches!(error, StartTlsError::SocketSetup { .. }),
            "{error}"
        );
    }
}
