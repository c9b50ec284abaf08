//! Errors of the handshake driver and the relay, each naming the failing call and the
//! descriptor it failed on.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::tls::TlsError;

/// Which of the two descriptors of a session an event or error concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DescriptorRole {
    /// The socket to the TLS peer, which carries ciphertext.
    Cipher,
    /// The socket to the local application, which carries plaintext.
    Plaintext,
}

impl fmt::Display for DescriptorRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cipher => "cipher",
            Self::Plaintext => "plaintext",
        })
    }
}

/// Error of [`drive_handshake`](super::drive_handshake) or [`run`](super::run).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// Preparing a descriptor failed: switching it to non-blocking mode, registering it with the
    /// event loop (epoll rejects regular files, for example) or querying its socket type.
    #[error("setting up the {role} descriptor failed in {call}: {source}")]
    Setup {
        /// The descriptor that was being set up.
        role: DescriptorRole,
        /// The system call that failed, such as `epoll_ctl`.
        call: &'static str,
        /// The error the call returned.
        source: io::Error,
    },
    /// A descriptor is not a stream socket, so it has no `shutdown` for half-closing.
    #[error("the {role} descriptor is not a stream socket")]
    NotStreamSocket {
        /// The descriptor that was rejected.
        role: DescriptorRole,
    },
    /// A descriptor of a DTLS session is neither a datagram nor a sequenced-packet socket, so
    /// it cannot keep message boundaries.
    #[error("the {role} descriptor is not a datagram or sequenced-packet socket")]
    NotDatagramSocket {
        /// The descriptor that was rejected.
        role: DescriptorRole,
    },
    /// A system call on a descriptor failed while relaying or handshaking.
    #[error("{call} on the {role} descriptor failed: {source}")]
    Io {
        /// The descriptor the call was made on.
        role: DescriptorRole,
        /// The system call that failed (`recv`, `send` or `shutdown`).
        call: &'static str,
        /// The error the call returned.
        source: io::Error,
    },
    /// The TLS session failed: a fatal alert, a record that does not decrypt, a truncated
    /// connection, or a failed handshake.
    #[error("{call} failed: {source}")]
    Tls {
        /// The session method that failed, such as `read_plaintext`.
        call: &'static str,
        /// The TLS engine's error.
        source: TlsError,
    },
    /// The TLS peer closed the connection before the handshake completed.
    #[error("the TLS peer closed the connection during the handshake")]
    ClosedDuringHandshake,
    /// An ICMP port unreachable came back for a datagram of a DTLS client's handshake
    /// (`ECONNREFUSED` on the connected UDP socket), so nothing listens on the peer's port.
    // The ERROR record's message field has 128 bytes, and the daemon puts its own prefix first.
    #[error("no DTLS server listens on the peer's UDP port (ICMP port unreachable)")]
    PeerUnreachable {
        /// The system call that reported it (`recv` or `send`).
        call: &'static str,
    },
    /// The handshake did not complete within the timeout.
    #[error("the TLS handshake timed out after {} ms", .timeout.as_millis())]
    HandshakeTimedOut {
        /// The timeout that passed.
        timeout: Duration,
    },
    /// A [`SessionQueries`](super::SessionQueries) request found the relay ended, so the
    /// session is gone.
    #[error("the relayed session has ended")]
    SessionEnded,
    /// A renegotiation was requested while another one runs on the session.
    #[error("a renegotiation is already running on the session")]
    RenegotiationBusy,
    /// A renegotiation failed, which ended the session; the requester received the TLS error.
    #[error("renegotiation failed: {reason}")]
    RenegotiationFailed {
        /// The text of the TLS error.
        reason: String,
    },
    /// The peer sent more application data before the authenticated handshake of privacy
    /// mode completed than `tls_maxpreauth` allows.
    #[error("the peer sent more than {limit} bytes before privacy mode authenticated it")]
    PreauthDataTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A renegotiation changed the peer's credential from the one validated before the relay
    /// started (including from none to some), so the session ended.
    #[error("the peer presented {presented} in a renegotiation, but {validated} was validated")]
    PeerIdentityChanged {
        /// The credential validated before the relay started, as [`PeerIdentity::describe`]
        /// gives it.
        ///
        /// [`PeerIdentity::describe`]: crate::tls::PeerIdentity::describe
        validated: String,
        /// The credential the peer presented in the renegotiation, as
        /// [`PeerIdentity::describe_replacing`] gives it.
        ///
        /// [`PeerIdentity::describe_replacing`]: crate::tls::PeerIdentity::describe_replacing
        presented: String,
    },
    /// The peer did not finish a renegotiation in time.
    #[error("the renegotiation did not finish within {} s", .timeout.as_secs())]
    RenegotiationTimedOut {
        /// The time the renegotiation may take.
        timeout: Duration,
    },
}

impl RelayError {
    /// Returns the descriptor the error concerns, or `None` for errors of the TLS session.
    pub fn role(&self) -> Option<DescriptorRole> {
        match self {
            Self::Setup { role, .. }
            | Self::NotStreamSocket { role }
            | Self::NotDatagramSocket { role }
            | Self::Io { role, .. } => Some(*role),
            Self::ClosedDuringHandshake
            | Self::HandshakeTimedOut { .. }
            | Self::PeerUnreachable { .. } => Some(DescriptorRole::Cipher),
            Self::RenegotiationTimedOut { .. } | Self::PreauthDataTooLarge { .. } => {
                Some(DescriptorRole::Cipher)
            }
            Self::Tls { .. }
            | Self::SessionEnded
            | Self::RenegotiationBusy
            | Self::RenegotiationFailed { .. }
            | Self::PeerIdentityChanged { .. } => None,
        }
    }
}
