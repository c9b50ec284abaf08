//! The commands that name an established session by its control key: CONTROL_DETACH,
//! CONTROL_REATTACH, PRNG and INFO.
//!
//! DETACH and REATTACH move only the control ownership in the session registry, so the relay
//! keeps running and no byte in flight is lost. PRNG and INFO run against the live session
//! through the request queue of its relay.

mod der;
mod info;
mod prng;

use std::fmt::Display;

use tracing::debug;

use tlspool_core::logging::TARGET_UNIXSOCK;
use tlspool_proto::{Control, ErrorCode, Payload, Record};

use crate::callbacks::ConnectionId;
use crate::sessions::SessionRegistry;

/// What the handlers need besides the request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ControlContext<'a> {
    /// The connection that sent the request.
    pub(crate) connection: ConnectionId,
    /// The registry of established sessions.
    pub(crate) sessions: &'a SessionRegistry,
    /// Whether the daemon offers the STARTTLS facility, which PRNG requires.
    pub(crate) starttls_offered: bool,
}

/// Serves a CONTROL, PRNG or INFO request; `None` for any other payload.
pub(crate) async fn serve(
    reqid: u16,
    payload: Payload,
    context: &ControlContext<'_>,
) -> Option<Record> {
    let reply = match payload {
        Payload::ControlDetach(control) => detach(reqid, &control, context),
        Payload::ControlReattach(control) => reattach(reqid, &control, context),
        Payload::Prng(prng) => prng::serve(reqid, prng, context).await,
        Payload::Info(info) => info::serve(reqid, info, context).await,
        _ => return None,
    };
    Some(reply)
}

fn detach(reqid: u16, control: &Control, context: &ControlContext<'_>) -> Record {
    match context.sessions.detach(&control.ctlkey, context.connection) {
        Ok(()) => {
            debug!(target: TARGET_UNIXSOCK, connection = context.connection.0, reqid,
                "session detached");
            Record::new(reqid, Payload::Success)
        }
        Err(error) => Record::error_code(reqid, error.error_code()),
    }
}

fn reattach(reqid: u16, control: &Control, context: &ControlContext<'_>) -> Record {
    match context
        .sessions
        .reattach(&control.ctlkey, context.connection)
    {
        Ok(()) => {
            debug!(target: TARGET_UNIXSOCK, connection = context.connection.0, reqid,
                "session reattached");
            Record::new(reqid, Payload::Success)
        }
        Err(error) => Record::error_code(reqid, error.error_code()),
    }
}

/// Builds the ERROR `code` with its standard message and the cause appended.
fn failure(reqid: u16, code: ErrorCode, cause: &impl Display) -> Record {
    debug!(target: TARGET_UNIXSOCK, reqid, code = code.code(), %cause, "session query failed");
    let message = format!("{}: {cause}", code.message());
    Record::error(reqid, code.code(), &message)
}
