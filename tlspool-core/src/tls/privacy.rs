//! The anonymous precursor of privacy mode (TLS 1.2): the first handshake uses anonymous
//! Diffie-Hellman (ANON-DH with an RFC 7919 group, which GnuTLS 3.7 pairs with AES-GCM, while
//! ANON-ECDH gets only CBC suites), so no certificate crosses in clear. A secure renegotiation
//! under its encryption then exchanges the certificates; see
//! [`authenticate_after_precursor`](crate::relay::authenticate_after_precursor).
//!
//! TLS 1.3 encrypts certificates in every handshake and has no renegotiation, so a precursor
//! priority keeps TLS 1.3 first and anonymous key exchange applies only when TLS 1.2 is
//! negotiated. A peer that offers no ANON-DH suite gets a normal authenticated handshake.

use std::ffi::CString;

use super::error::TlsError;
use super::ffi;
use super::session::{ProtocolVersion, Role, Session};

/// The TLS 1.2 key exchanges of a precursor priority, anonymous Diffie-Hellman first and then
/// those of GnuTLS's `NORMAL` in its order. GnuTLS orders its cipher suites by key exchange
/// first, so this order decides which suite a peer that offers both gets.
const PRECURSOR_KEY_EXCHANGES: &str = ":-KX-ALL:+ANON-DH:+ECDHE-ECDSA:+ECDHE-RSA:+RSA:+DHE-RSA";

/// Returns `priority` with anonymous Diffie-Hellman preferred among the TLS 1.2 key exchanges.
///
/// NOTE: the key exchanges after ANON-DH are those of `NORMAL`, whatever `priority` chose.
pub fn precursor_priority(priority: &str) -> String {
    format!("{priority}{PRECURSOR_KEY_EXCHANGES}")
}

impl Session {
    /// Offers the anonymous precursor in the first handshake: sets the precursor priority
    /// built from `priority` and adds anonymous credentials to the certificate credentials.
    ///
    /// # Errors
    /// [`TlsError::InvalidPriority`] or [`TlsError::Library`].
    pub fn offer_anonymous_precursor(&mut self, priority: &str) -> Result<(), TlsError> {
        self.set_priority_string(&precursor_priority(priority))?;
        self.handle
            .set_anonymous_credentials(self.role() == Role::Server)
    }

    /// Returns whether the completed handshake was the anonymous precursor: TLS 1.2 with
    /// anonymous Diffie-Hellman, so the peer sent no certificate.
    pub fn is_anonymous_precursor(&self) -> bool {
        self.protocol_version() == Some(ProtocolVersion::Tls12) && self.handle.is_anonymous_dh()
    }

    /// Replaces the priority string, so that the next handshake (a renegotiation) offers
    /// only what `priority` allows; used to drop the anonymous key exchange. The certificate
    /// types of the session's configuration are appended as at its creation, so a session
    /// with raw public keys keeps them.
    ///
    /// # Errors
    /// [`TlsError::InvalidPriority`] or [`TlsError::InteriorNul`].
    pub fn set_priority_string(&mut self, priority: &str) -> Result<(), TlsError> {
        let priority = format!("{priority}{}", self.certificate_types.priority_suffix());
        let text = CString::new(priority.as_str()).map_err(|_| TlsError::InteriorNul {
            field: "priority string",
        })?;
        self.handle
            .set_priority(&text)
            .map_err(|(code, position)| TlsError::InvalidPriority {
                priority,
                position,
                message: ffi::strerror(code),
            })
    }
}
