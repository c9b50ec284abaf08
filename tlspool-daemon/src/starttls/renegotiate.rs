//! STARTTLS with `RENEGOTIATE`: a new TLS 1.2 handshake on an established session that is
//! attached to the requesting connection, then validation of the peer against the new
//! request's flags and identities, and a final reply. There is no PLAINTEXT_CONNECT callback,
//! no new control key and no handshake timeout; the relay keeps its descriptors throughout.
//!
//! Errors:
//!
//! - a descriptor with the request: `E_TLSPOOL_SUPERFLUOUS_SOCKET`;
//! - an unknown, detached or foreign `ctlkey`: `E_TLSPOOL_RENOGIATE_NOT_FOUND`;
//! - a TLS 1.3 session, or a renegotiation that already runs:
//!   `E_TLSPOOL_RENOGIATE_NOT_INTERRUPTABLE`;
//! - no RFC 5746 secure renegotiation or no RFC 7627 extended master secret:
//!   `E_TLSPOOL_RENOGIATE_WOULD_BE_INSECURE`, and the session ends;
//! - a peer that rejects it with a no_renegotiation alert: `E_TLSPOOL_STIRRED_NOT_SHAKEN`, and
//!   the session continues;
//! - a failed handshake or validation: `E_TLSPOOL_STIRRED_NOT_SHAKEN`, and the session ends.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use tracing::info;

use tlspool_core::logging::TARGET_TLS;
use tlspool_core::relay::RelayError;
use tlspool_core::tls::{Session, TlsError};
use tlspool_proto::{Payload, Record, StartTls, StartTlsFlags};

use super::error::StartTlsError;
use super::privacy::PrivacyOutcome;
use super::{TlsResources, identity_field, peer};
use crate::commands::CommandContext;

/// Serves a `RENEGOTIATE` request and returns its final reply or ERROR record.
pub(super) async fn serve(
    reqid: u16,
    params: StartTls,
    fd: Option<OwnedFd>,
    context: &CommandContext,
) -> Record {
    let connection = context.connection;
    let ctlkey = params.ctlkey;
    match renegotiate(params, fd, context).await {
        Ok(reply) => {
            info!(target: TARGET_TLS, connection = connection.0, reqid,
                remote_id = reply.remoteid.as_str(), "tls session renegotiated");
            Record::new(reqid, Payload::StartTls(reply))
        }
        Err(error) => {
            info!(target: TARGET_TLS, connection = connection.0, reqid, %error,
                "renegotiation failed");
            if ends_session(&error) {
                context.sessions.stop_attached(&ctlkey, connection);
            }
            error.to_record(reqid)
        }
    }
}

/// Runs the renegotiation and the validation; returns the final reply.
async fn renegotiate(
    mut params: StartTls,
    fd: Option<OwnedFd>,
    context: &CommandContext,
) -> Result<StartTls, StartTlsError> {
    if fd.is_some() {
        return Err(StartTlsError::SuperfluousSocket);
    }
    params.flags.remove(StartTlsFlags::FORK);
    let queries = context
        .sessions
        .attached_queries(&params.ctlkey, context.connection)
        .ok_or(StartTlsError::RenegotiationSessionNotFound)?;
    queries.renegotiate().await.map_err(classify)?;

    // Validate the peer of the new handshake as the request describes it.
    let resources = Arc::clone(&context.tls);
    let flags = params.flags;
    let remote_id = params.remoteid.as_str().to_owned();
    let local_id = params.localid.as_str().to_owned();
    let prepared = queries
        .run(move |session: &Session| prepare(&resources, session, flags, &remote_id, &local_id))
        .await
        .map_err(classify)??;
    let remote_id = peer::decide(prepared, &context.tls.validation).await?;
    params.remoteid = identity_field("remoteid", &remote_id)?;
    // NOTE: the local credential of the first handshake stays in use, and the reply echoes
    // the request's localid without checking that it names that credential.
    Ok(params)
}

/// Gathers the facts about the renegotiated peer on the relay task.
fn prepare(
    resources: &TlsResources,
    session: &Session,
    flags: StartTlsFlags,
    remote_id: &str,
    local_id: &str,
) -> Result<peer::Peer, StartTlsError> {
    let databases = resources
        .databases
        .as_ref()
        .ok_or(StartTlsError::NoDatabases)?;
    let request = peer::PeerRequest {
        flags,
        remote_id,
        local_id,
        // NOTE: the relay owns the cipher socket, so the peer's port, which DANE needs, is
        // unknown here and `D` is false after a renegotiation.
        peer_port: None,
        // NOTE: `A` and `a` describe this handshake only, so they are false after the
        // renegotiation of a session that started in privacy mode.
        privacy: PrivacyOutcome::NotAttempted,
    };
    peer::prepare(databases, &resources.validation, session, &request)
}

/// Returns whether `error` leaves a session that must end: every failure after the new
/// handshake started, except the peer's refusal, which keeps the earlier keys.
fn ends_session(error: &StartTlsError) -> bool {
    !matches!(
        error,
        StartTlsError::SuperfluousSocket
            | StartTlsError::RenegotiationSessionNotFound
            | StartTlsError::RenegotiationNotInterruptible { .. }
            | StartTlsError::RenegotiationRejected
    )
}

/// Maps the relay's answer to the renegotiation errors of the protocol.
fn classify(error: RelayError) -> StartTlsError {
    match error {
        RelayError::SessionEnded => StartTlsError::RenegotiationSessionNotFound,
        RelayError::RenegotiationBusy => StartTlsError::RenegotiationNotInterruptible {
            reason: error.to_string(),
        },
        RelayError::Tls { source, .. } => match source {
            TlsError::RenegotiationUnavailable { .. } | TlsError::HandshakeNotDone { .. } => {
                StartTlsError::RenegotiationNotInterruptible {
                    reason: source.to_string(),
                }
            }
            TlsError::RenegotiationInsecure { .. } => StartTlsError::RenegotiationInsecure {
                reason: source.to_string(),
            },
            TlsError::RenegotiationRejected => StartTlsError::RenegotiationRejected,
            other => StartTlsError::RenegotiationFailed {
                detail: other.to_string(),
            },
        },
        other => StartTlsError::RenegotiationFailed {
            detail: other.to_string(),
        },
    }
}
