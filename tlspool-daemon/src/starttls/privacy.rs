//! Privacy mode for STARTTLS over TCP: whether a request may try the anonymous precursor, and
//! the authenticated renegotiation that follows it.
//!
//! With `privacy_attempt` set, a request whose service and local role the registry permits
//! offers anonymous Diffie-Hellman first in its TLS 1.2 suites. When the peer offers it too,
//! the first handshake carries no certificate, and a secure renegotiation without anonymous
//! suites exchanges the certificates under its encryption before the peer is validated
//! (predicate `A`). A peer without anonymous suites gets a normal handshake. With TLS 1.3,
//! which encrypts certificates anyway and is preferred, no precursor runs.

use tracing::debug;

use tlspool_core::config::{Config, PrivacyRoles, privacy_permitted};
use tlspool_core::logging::TARGET_TLS;
use tlspool_core::relay::{self, CipherSocket};
use tlspool_core::tls::{Role, Session};

use super::error::StartTlsError;
use super::{Deadline, drive_error};

/// The privacy mode settings of the daemon.
#[derive(Debug, Clone, Default)]
pub struct PrivacySettings {
    /// `privacy_attempt`: whether to try the precursor at all.
    pub attempt: bool,
    /// The `tls_privacy_services` entries, added to the built-in registry.
    pub services: Vec<(String, PrivacyRoles)>,
    /// `tls_maxpreauth`: bytes of application data kept before the peer is authenticated.
    pub max_preauth: usize,
}

/// What privacy mode did for one handshake, for predicates `A` and `a`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum PrivacyOutcome {
    /// Privacy mode was not permitted or not enabled.
    #[default]
    NotAttempted,
    /// The precursor was offered, but the peer chose an authenticated handshake (or TLS 1.3).
    Declined,
    /// The anonymous precursor ran and the certificates crossed under its encryption.
    Ran,
}

impl PrivacySettings {
    /// Reads `privacy_attempt`, `tls_privacy_services` and `tls_maxpreauth`.
    pub fn from_config(config: &Config) -> Self {
        Self {
            attempt: config.privacy_attempt(),
            services: config.tls_privacy_services().to_vec(),
            max_preauth: usize::try_from(config.tls_maxpreauth()).unwrap_or(usize::MAX),
        }
    }

    /// Returns whether a request for `service` in the local `role` offers the precursor.
    pub(super) fn permits(&self, service: &str, role: Role) -> bool {
        self.attempt && privacy_permitted(&self.services, service, role == Role::Server)
    }
}

/// Completes privacy mode after the first handshake of `session`: when it was the anonymous
/// precursor, renegotiates with `priority` (without anonymous suites) and returns the early
/// application data; otherwise returns at once.
///
/// # Errors
/// [`StartTlsError::HandshakeTimedOut`], [`StartTlsError::HandshakeFailed`] when the peer
/// refuses or fails the renegotiation or sends more than `max_preauth` bytes first, or
/// [`StartTlsError::SessionSetup`] for an invalid priority.
pub(super) async fn authenticate(
    session: &mut Session,
    cipher: &CipherSocket,
    priority: &str,
    max_preauth: usize,
    deadline: Option<Deadline>,
) -> Result<(PrivacyOutcome, Vec<u8>), StartTlsError> {
    if !session.is_anonymous_precursor() {
        return Ok((PrivacyOutcome::Declined, Vec::new()));
    }
    debug!(target: TARGET_TLS, role = ?session.role(),
        "anonymous precursor complete, renegotiating with certificates");
    session
        .set_priority_string(priority)
        .map_err(|source| StartTlsError::SessionSetup { source })?;
    let timeout = deadline.map(Deadline::remaining);
    match relay::authenticate_after_precursor(session, cipher, max_preauth, timeout).await {
        Ok(early) => Ok((PrivacyOutcome::Ran, early)),
        Err(error) => Err(drive_error(error, deadline)),
    }
}
