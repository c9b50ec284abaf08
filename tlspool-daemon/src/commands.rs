//! Handlers of the commands that run in their own task: STARTTLS, PINENTRY, PRNG, INFO,
//! CONTROL_DETACH, CONTROL_REATTACH and LIDENTRY_REGISTER.
//!
//! None of these capabilities exists in this daemon yet, so each request gets ERROR
//! `E_TLSPOOL_COMMAND_NOTIMPL` with a message naming the command.

use std::sync::Arc;

use tracing::debug;

use tlspool_core::logging::TARGET_UNIXSOCK;
use tlspool_proto::{ErrorCode, Record};

use crate::callbacks::{CallbackTable, ConnectionId};
use crate::protocol::Request;

/// Context of a command handler besides its request.
#[derive(Debug, Clone)]
pub struct CommandContext {
    /// The connection that sent the request.
    pub connection: ConnectionId,
    /// The daemon's callback table, for handlers that call the client back.
    pub callbacks: Arc<CallbackTable>,
}

/// Runs `request` and returns its final reply.
pub async fn execute(request: Request, context: &CommandContext) -> Record {
    let reqid = request.record.reqid;
    let name = request.command.name();
    // NOTE: no command handler exists yet; STARTTLS, PRNG, INFO, CONTROL, PINENTRY and
    // LIDENTRY all reply E_TLSPOOL_COMMAND_NOTIMPL until their capability is built.
    debug!(target: TARGET_UNIXSOCK, connection = context.connection.0, reqid, command = name,
        "command not implemented");
    drop(request.fd);
    let message = format!("TLS Pool does not implement {name} yet");
    Record::error(reqid, ErrorCode::CommandNotImpl.code(), &message)
}
