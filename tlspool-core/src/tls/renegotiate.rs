//! TLS 1.2 renegotiation of an established [`Session`]: the security checks that must pass
//! first, the start (a HelloRequest from a server, a new ClientHello from a client), the answer
//! to a peer's request, and the handshake steps in between.
//!
//! A renegotiation runs only when the first handshake negotiated RFC 5746 secure renegotiation
//! and the RFC 7627 extended master secret, so that neither a renegotiation splice nor the
//! triple handshake attack applies. TLS 1.3 has no renegotiation.
//!
//! GnuTLS rejects a peer certificate that changes during renegotiation (the session is
//! created without `GNUTLS_ALLOW_ID_CHANGE`), but not one that appears where the earlier
//! handshake had none. So the caller takes a [`PeerIdentity`] of the validated handshake and
//! compares it after every renegotiation: the relay ends a session whose peer changed.

use tlspool_gnutls_sys as sys;
use tracing::debug;

use super::error::TlsError;
use super::session::{CertificateType, ProtocolVersion, Role, Session};

/// The credential the peer presented in a handshake: its certificate type and its end
/// certificate or raw public key, compared byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerIdentity {
    /// The peer presented no certificate.
    None,
    /// The peer presented this credential.
    Credential {
        /// The negotiated certificate type of the peer.
        certificate_type: CertificateType,
        /// The DER end certificate, the DER SubjectPublicKeyInfo of a raw public key, or
        /// the OpenPGP key.
        end_entity: Vec<u8>,
    },
}

impl PeerIdentity {
    /// Describes the identity for logs and errors, such as `no certificate` or
    /// `an X.509 certificate`.
    pub fn describe(&self) -> String {
        match self {
            Self::None => "no certificate".to_owned(),
            Self::Credential {
                certificate_type, ..
            } => match certificate_type {
                CertificateType::X509 => "an X.509 certificate".to_owned(),
                CertificateType::RawPublicKey => "a raw public key".to_owned(),
                CertificateType::OpenPgp => "an OpenPGP key".to_owned(),
                CertificateType::Unknown(value) => {
                    format!("a credential of GnuTLS certificate type {value}")
                }
            },
        }
    }

    /// Describes `self`, which replaced `validated`, for logs and errors: a credential that
    /// replaced another one is `another ...`.
    pub fn describe_replacing(&self, validated: &Self) -> String {
        let text = self.describe();
        match (validated, self) {
            (Self::Credential { .. }, Self::Credential { .. }) => match text.split_once(' ') {
                Some((_article, noun)) => format!("another {noun}"),
                None => text,
            },
            _ => text,
        }
    }
}

/// Progress of [`Session::renegotiate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenegotiationStatus {
    /// The new handshake is complete; the session uses its keys.
    Done,
    /// More ciphertext from the peer is needed; send the pending ciphertext first.
    WantRead,
    /// The peer sent application data before its handshake messages. Read it with
    /// [`Session::read_plaintext`], then call [`Session::renegotiate`] again.
    ApplicationData,
}

/// The protections of the session's last handshake that a renegotiation relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenegotiationSecurity {
    /// The peer negotiated RFC 5746 secure renegotiation.
    pub secure_renegotiation: bool,
    /// The handshake used the RFC 7627 extended master secret.
    pub extended_master_secret: bool,
}

impl RenegotiationSecurity {
    /// Returns whether both protections are in place.
    pub fn is_secure(self) -> bool {
        self.secure_renegotiation && self.extended_master_secret
    }
}

impl Session {
    /// Returns the credential the peer presented in the last handshake that processed its
    /// Certificate message.
    pub fn peer_identity(&self) -> PeerIdentity {
        match self.peer_certificates().into_iter().next() {
            None => PeerIdentity::None,
            Some(end_entity) => PeerIdentity::Credential {
                certificate_type: self.peer_certificate_type(),
                end_entity,
            },
        }
    }

    /// Returns the renegotiation protections of the last completed handshake.
    pub fn renegotiation_security(&self) -> RenegotiationSecurity {
        RenegotiationSecurity {
            secure_renegotiation: self.handle.safe_renegotiation(),
            extended_master_secret: self.handle.extended_master_secret(),
        }
    }

    /// Checks that the session can renegotiate securely: TLS 1.2 with secure renegotiation
    /// and the extended master secret.
    ///
    /// # Errors
    /// [`TlsError::HandshakeNotDone`], [`TlsError::RenegotiationUnavailable`] for another
    /// protocol version, or [`TlsError::RenegotiationInsecure`].
    pub fn check_renegotiation(&self) -> Result<(), TlsError> {
        let version = self.protocol_version().ok_or(TlsError::HandshakeNotDone {
            operation: "renegotiation",
        })?;
        if version != ProtocolVersion::Tls12 {
            return Err(TlsError::RenegotiationUnavailable {
                version: format!("{version:?}"),
            });
        }
        let security = self.renegotiation_security();
        if !security.is_secure() {
            return Err(TlsError::RenegotiationInsecure {
                secure_renegotiation: security.secure_renegotiation,
                extended_master_secret: security.extended_master_secret,
            });
        }
        Ok(())
    }

    /// Starts a renegotiation this side requests. A server queues a HelloRequest; a client
    /// sends its ClientHello on the first [`Self::renegotiate`] call.
    ///
    /// # Errors
    /// The errors of [`Self::check_renegotiation`], or [`TlsError::Library`] when GnuTLS cannot
    /// queue the HelloRequest.
    pub fn start_renegotiation(&mut self) -> Result<(), TlsError> {
        self.check_renegotiation()?;
        if self.role() == Role::Server {
            let ret = self.handle.rehandshake();
            if ret < 0 {
                return Err(TlsError::library("gnutls_rehandshake", ret));
            }
        }
        debug!(role = ?self.role(), "renegotiation started");
        Ok(())
    }

    /// Accepts the peer's renegotiation request that [`Self::read_plaintext`] reported as
    /// [`TlsError::RenegotiationRequested`]; continue with [`Self::renegotiate`].
    ///
    /// # Errors
    /// The errors of [`Self::check_renegotiation`], after which the caller rejects the request.
    pub fn accept_renegotiation(&mut self) -> Result<(), TlsError> {
        self.check_renegotiation()?;
        debug!(role = ?self.role(), "peer's renegotiation request accepted");
        Ok(())
    }

    /// Refuses the peer's renegotiation request with a no_renegotiation warning alert; the
    /// session continues with its current keys.
    ///
    /// # Errors
    /// [`TlsError::Library`] when GnuTLS cannot queue the alert.
    pub fn reject_renegotiation(&mut self) -> Result<(), TlsError> {
        let ret = self
            .handle
            .send_warning_alert(sys::GNUTLS_A_NO_RENEGOTIATION);
        if ret < 0 {
            return Err(TlsError::library("gnutls_alert_send", ret));
        }
        debug!(role = ?self.role(), "peer's renegotiation request rejected");
        Ok(())
    }

    /// Advances a renegotiation started by [`Self::start_renegotiation`] or
    /// [`Self::accept_renegotiation`] with the ciphertext fed so far. Write out
    /// [`Self::pending_ciphertext`] after every call.
    ///
    /// # Errors
    /// [`TlsError::RenegotiationRejected`] when the peer declines (the session stays usable), or
    /// the peer-caused [`TlsError`] that failed the handshake (the session is unusable).
    pub fn renegotiate(&mut self) -> Result<RenegotiationStatus, TlsError> {
        let ret = self.handle.handshake();
        match ret {
            0 => {
                debug!(
                    role = ?self.role(),
                    cipher_suite = self.cipher_suite().as_deref().unwrap_or("unknown"),
                    "renegotiation complete"
                );
                Ok(RenegotiationStatus::Done)
            }
            sys::GNUTLS_E_AGAIN | sys::GNUTLS_E_INTERRUPTED => Ok(RenegotiationStatus::WantRead),
            sys::GNUTLS_E_GOT_APPLICATION_DATA => Ok(RenegotiationStatus::ApplicationData),
            sys::GNUTLS_E_WARNING_ALERT_RECEIVED
                if self.handle.last_alert() == sys::GNUTLS_A_NO_RENEGOTIATION =>
            {
                debug!(role = ?self.role(), "peer rejected renegotiation");
                Err(TlsError::RenegotiationRejected)
            }
            code => {
                if super::ffi::error_is_fatal(code) && code != sys::GNUTLS_E_FATAL_ALERT_RECEIVED {
                    self.handle.send_appropriate_alert(code);
                }
                let error = TlsError::from_peer_exchange(
                    "gnutls_handshake",
                    code,
                    self.handle.last_alert(),
                );
                debug!(role = ?self.role(), %error, "renegotiation failed");
                Err(error)
            }
        }
    }
}
