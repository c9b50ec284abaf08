//! Errors of the TLS session engine: library failures, failures a peer causes, and the reasons a
//! peer certificate chain fails verification.

use tlspool_gnutls_sys as sys;

use super::ffi;

/// Error of a GnuTLS call or of a TLS session.
///
/// Failures a peer causes have their own variants, so the daemon can tell a broken local setup
/// from a peer that broke off the handshake.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A GnuTLS call failed for a local reason (setup, memory, invalid argument).
    #[error("{function} failed: {message} (GnuTLS error {code})")]
    Library {
        /// The GnuTLS function that returned the error.
        function: &'static str,
        /// The negative GnuTLS error code.
        code: i32,
        /// The `gnutls_strerror` text for `code`.
        message: String,
    },
    /// The peer sent an alert.
    #[error("peer sent a {} {alert} alert during {function}", if *.fatal { "fatal" } else { "warning" })]
    AlertReceived {
        /// The GnuTLS function that reported the alert.
        function: &'static str,
        /// The alert name as GnuTLS prints it, such as `Handshake failed`.
        alert: String,
        /// Whether the alert was fatal (`GNUTLS_E_FATAL_ALERT_RECEIVED`).
        fatal: bool,
    },
    /// The handshake failed on the peer's messages (no common cipher suite, bad record, ...).
    #[error("handshake failed in {function}: {message} (GnuTLS error {code})")]
    HandshakeFailed {
        /// The GnuTLS function that returned the error.
        function: &'static str,
        /// The negative GnuTLS error code.
        code: i32,
        /// The `gnutls_strerror` text for `code`.
        message: String,
    },
    /// The peer sent no certificate although this side requires one.
    #[error("peer sent no certificate")]
    NoPeerCertificate,
    /// The handshake did not finish within the configured timeout.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// The peer ended the transport without a close_notify alert.
    #[error("peer closed the connection without close_notify")]
    PrematureTermination,
    /// The peer asked for a new handshake (a HelloRequest to a client, a ClientHello to a
    /// server); [`Session::accept_renegotiation`](super::Session::accept_renegotiation) or
    /// [`Session::reject_renegotiation`](super::Session::reject_renegotiation) answers it.
    #[error("peer requested renegotiation")]
    RenegotiationRequested,
    /// Renegotiation was requested on a session whose protocol version has none (TLS 1.3).
    #[error("renegotiation needs TLS 1.2, but the session uses {version}")]
    RenegotiationUnavailable {
        /// The negotiated protocol version, such as `TLS1.3`.
        version: String,
    },
    /// Renegotiation was requested, but the first handshake lacks RFC 5746 secure
    /// renegotiation or the RFC 7627 extended master secret.
    #[error(
        "renegotiation would be insecure: secure renegotiation (RFC 5746) {}, extended master secret (RFC 7627) {}",
        if *.secure_renegotiation { "negotiated" } else { "missing" },
        if *.extended_master_secret { "negotiated" } else { "missing" }
    )]
    RenegotiationInsecure {
        /// Whether the peer negotiated RFC 5746 secure renegotiation.
        secure_renegotiation: bool,
        /// Whether the handshake used the RFC 7627 extended master secret.
        extended_master_secret: bool,
    },
    /// The peer answered a renegotiation with a no_renegotiation warning alert; the session
    /// continues with its earlier keys.
    #[error("peer rejected renegotiation with a no_renegotiation alert")]
    RenegotiationRejected,
    /// The server's credential selection found no credentials for the name the client sent.
    #[error("no server credentials for server name {server_name:?}")]
    NoCredentialsForName {
        /// The DNS name from the client's SNI extension, if it sent one.
        server_name: Option<String>,
    },
    /// The GnuTLS priority string was rejected.
    #[error("invalid GnuTLS priority string {priority:?} at byte {position}: {message}")]
    InvalidPriority {
        /// The priority string given in the session configuration.
        priority: String,
        /// Byte offset of the first part GnuTLS could not parse.
        position: usize,
        /// The `gnutls_strerror` text.
        message: String,
    },
    /// A string handed to GnuTLS contains a NUL byte.
    #[error("{field} contains a NUL byte")]
    InteriorNul {
        /// The argument that contained the NUL byte.
        field: &'static str,
    },
    /// A buffer is larger than a GnuTLS datum can describe (4 GiB).
    #[error("{field} is {len} bytes, more than GnuTLS accepts")]
    TooLarge {
        /// The argument that was too large.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// A DTLS datagram has more plaintext than one record can carry under the path MTU.
    #[error("datagram of {len} bytes exceeds the {max}-byte plaintext limit of one DTLS record")]
    DatagramTooLarge {
        /// The datagram's length in bytes.
        len: usize,
        /// The largest plaintext one record carries (`gnutls_dtls_get_data_mtu`).
        max: usize,
    },
    /// A DTLS path MTU is too small for a handshake.
    #[error("DTLS path MTU of {mtu} bytes is below the minimum of {min} bytes")]
    MtuTooSmall {
        /// The configured MTU in bytes.
        mtu: u16,
        /// The smallest MTU accepted.
        min: u16,
    },
    /// Application data was sent or read before the handshake completed.
    #[error("{operation} called before the handshake completed")]
    HandshakeNotDone {
        /// The session method that was called.
        operation: &'static str,
    },
    /// The credentials builder was given a private key without a certificate chain, or a chain
    /// without a key.
    #[error("credentials need both a certificate chain and its private key")]
    IncompleteKeyPair,
    /// A certificate to be built is missing a field or has an invalid one.
    #[error("invalid certificate {field}: {reason}")]
    InvalidCertificateField {
        /// The field, such as `validity` or `serial`.
        field: &'static str,
        /// The problem with its value.
        reason: String,
    },
}

impl TlsError {
    /// Builds the error for a failed GnuTLS call outside the handshake and record layer.
    pub(crate) fn library(function: &'static str, code: i32) -> Self {
        Self::Library {
            function,
            code,
            message: ffi::strerror(code),
        }
    }

    /// Classifies an error code returned while talking to the peer (handshake, record layer).
    ///
    /// `alert` is the last alert received on the session (`gnutls_alert_get`).
    pub(crate) fn from_peer_exchange(function: &'static str, code: i32, alert: u32) -> Self {
        match code {
            sys::GNUTLS_E_FATAL_ALERT_RECEIVED | sys::GNUTLS_E_WARNING_ALERT_RECEIVED => {
                Self::AlertReceived {
                    function,
                    alert: ffi::alert_name(alert),
                    fatal: code == sys::GNUTLS_E_FATAL_ALERT_RECEIVED,
                }
            }
            sys::GNUTLS_E_NO_CERTIFICATE_FOUND | sys::GNUTLS_E_CERTIFICATE_REQUIRED => {
                Self::NoPeerCertificate
            }
            sys::GNUTLS_E_TIMEDOUT => Self::HandshakeTimeout,
            sys::GNUTLS_E_PREMATURE_TERMINATION => Self::PrematureTermination,
            sys::GNUTLS_E_REHANDSHAKE => Self::RenegotiationRequested,
            sys::GNUTLS_E_MEMORY_ERROR | sys::GNUTLS_E_INTERNAL_ERROR => {
                Self::library(function, code)
            }
            _ => Self::HandshakeFailed {
                function,
                code,
                message: ffi::strerror(code),
            },
        }
    }

    /// Returns the GnuTLS error code behind this error, where there is one.
    pub fn code(&self) -> Option<i32> {
        match self {
            Self::Library { code, .. } | Self::HandshakeFailed { code, .. } => Some(*code),
            Self::AlertReceived { fatal: true, .. } => Some(sys::GNUTLS_E_FATAL_ALERT_RECEIVED),
            Self::AlertReceived { fatal: false, .. } => Some(sys::GNUTLS_E_WARNING_ALERT_RECEIVED),
            Self::NoPeerCertificate => Some(sys::GNUTLS_E_CERTIFICATE_REQUIRED),
            Self::HandshakeTimeout => Some(sys::GNUTLS_E_TIMEDOUT),
            Self::PrematureTermination => Some(sys::GNUTLS_E_PREMATURE_TERMINATION),
            Self::RenegotiationRequested => Some(sys::GNUTLS_E_REHANDSHAKE),
            _ => None,
        }
    }

    /// Returns whether the session cannot continue after this error.
    ///
    /// A warning alert, a renegotiation request and a call made before the handshake completed
    /// leave the session usable. Configuration errors count as fatal because the session was
    /// never set up.
    pub fn is_fatal(&self) -> bool {
        match self {
            Self::AlertReceived { fatal, .. } => *fatal,
            Self::RenegotiationRequested
            | Self::RenegotiationRejected
            | Self::RenegotiationUnavailable { .. }
            | Self::HandshakeNotDone { .. }
            | Self::DatagramTooLarge { .. } => false,
            Self::Library { code, .. } | Self::HandshakeFailed { code, .. } => {
                ffi::error_is_fatal(*code)
            }
            _ => true,
        }
    }

    /// Returns whether the peer caused this error rather than the local setup.
    pub fn is_peer_caused(&self) -> bool {
        matches!(
            self,
            Self::AlertReceived { .. }
                | Self::HandshakeFailed { .. }
                | Self::NoPeerCertificate
                | Self::HandshakeTimeout
                | Self::PrematureTermination
                | Self::RenegotiationRequested
                | Self::RenegotiationRejected
                | Self::RenegotiationInsecure { .. }
                | Self::NoCredentialsForName { .. }
        )
    }
}

/// Reason why [`verify_peer_x509`](super::Session::verify_peer_x509) rejected a peer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The peer presented no certificate.
    #[error("peer presented no certificate")]
    NoPeerCertificate,
    /// The peer presented a certificate that is not X.509 (a raw public key, for instance).
    #[error("peer certificate is not X.509")]
    NotX509,
    /// The chain does not end at one of the trust anchors.
    #[error("peer certificate chain has an unknown issuer: {status_text}")]
    UnknownIssuer {
        /// GnuTLS's description of all status bits.
        status_text: String,
    },
    /// An issuer in the chain is not a CA or breaks its constraints.
    #[error("an issuer in the peer chain is not a valid CA: {status_text}")]
    IssuerNotCa {
        /// GnuTLS's description of all status bits.
        status_text: String,
    },
    /// A certificate in the chain has expired.
    #[error("peer certificate chain has expired: {status_text}")]
    Expired {
        /// GnuTLS's description of all status bits.
        status_text: String,
    },
    /// A certificate in the chain is not valid yet.
    #[error("peer certificate chain is not yet valid: {status_text}")]
    NotYetValid {
        /// GnuTLS's description of all status bits.
        status_text: String,
    },
    /// A certificate in the chain has been revoked.
    #[error("peer certificate has been revoked: {status_text}")]
    Revoked {
        /// GnuTLS's description of all status bits.
        status_text: String,
    },
    /// The leaf certificate is not issued to the expected name.
    #[error("peer certificate does not match the expected name {expected:?}")]
    NameMismatch {
        /// The host name or email address that was expected.
        expected: String,
    },
    /// The leaf certificate's extended key usage does not allow this TLS role.
    #[error("peer certificate is not valid for this TLS role: {status_text}")]
    PurposeMismatch {
        /// GnuTLS's description of all status bits.
        status_text: String,
    },
    /// A signature in the chain is invalid or uses an insecure algorithm.
    #[error("peer certificate chain has an invalid or insecure signature: {status_text}")]
    BadSignature {
        /// GnuTLS's description of all status bits.
        status_text: String,
    },
    /// Verification failed for a reason not listed above.
    #[error("peer certificate chain rejected (status {status:#x}): {status_text}")]
    Other {
        /// The raw `gnutls_certificate_status_t` bits.
        status: u32,
        /// GnuTLS's description of all status bits.
        status_text: String,
    },
    /// GnuTLS could not run the verification.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl VerifyError {
    /// Picks the most specific reason from `gnutls_x509_trust_list_verify_crt2` status bits.
    ///
    /// Returns `None` when `status` reports no failure.
    pub(crate) fn from_status(status: u32, expected: Option<&str>) -> Option<Self> {
        if status == 0 {
            return None;
        }
        let status_text = ffi::verification_status_text(status);

        // A name mismatch is checked first because the rest of the chain may be fine.
        if status & sys::GNUTLS_CERT_UNEXPECTED_OWNER != 0 {
            return Some(Self::NameMismatch {
                expected: expected.unwrap_or_default().to_owned(),
            });
        }
        let reason = if status & sys::GNUTLS_CERT_REVOKED != 0 {
            Self::Revoked { status_text }
        } else if status & sys::GNUTLS_CERT_SIGNER_NOT_FOUND != 0 {
            Self::UnknownIssuer { status_text }
        } else if status
            & (sys::GNUTLS_CERT_SIGNER_NOT_CA | sys::GNUTLS_CERT_SIGNER_CONSTRAINTS_FAILURE)
            != 0
        {
            Self::IssuerNotCa { status_text }
        } else if status & sys::GNUTLS_CERT_EXPIRED != 0 {
            Self::Expired { status_text }
        } else if status & sys::GNUTLS_CERT_NOT_ACTIVATED != 0 {
            Self::NotYetValid { status_text }
        } else if status & sys::GNUTLS_CERT_PURPOSE_MISMATCH != 0 {
            Self::PurposeMismatch { status_text }
        } else if status
            & (sys::GNUTLS_CERT_SIGNATURE_FAILURE | sys::GNUTLS_CERT_INSECURE_ALGORITHM)
            != 0
        {
            Self::BadSignature { status_text }
        } else {
            Self::Other {
                status,
                status_text,
            }
        };
        Some(reason)
    }
}
