//! Handlers of the commands that run in their own task: STARTTLS, PINENTRY, PRNG, INFO,
//! CONTROL_DETACH, CONTROL_REATTACH and LIDENTRY_REGISTER.
//!
//! STARTTLS runs in [`crate::starttls`], which sends its callbacks and final reply itself.
//! CONTROL_DETACH, CONTROL_REATTACH, PRNG and INFO run in the private `control` module.
//! A PINENTRY registration is stored by [`crate::pinentry`] and gets no reply unless it is
//! refused, and so is a LIDENTRY_REGISTER registration, stored by [`crate::lidentry`].

use std::sync::Arc;

use tracing::debug;

use tlspool_core::logging::TARGET_UNIXSOCK;
use tlspool_proto::tokio::RecordWriter;
use tlspool_proto::{ErrorCode, Facilities, Payload, Record};

use crate::callbacks::{CallbackTable, ConnectionId};
use crate::control::{self, ControlContext};
use crate::protocol::Request;
use crate::sessions::SessionRegistry;
use crate::starttls::TlsResources;

/// Context of a command handler besides its request.
#[derive(Debug, Clone)]
pub struct CommandContext {
    /// The connection that sent the request.
    pub connection: ConnectionId,
    /// The daemon's callback table, for handlers that call the client back.
    pub callbacks: Arc<CallbackTable>,
    /// The sending half of the connection, shared with the connection task.
    pub writer: RecordWriter,
    /// The databases and TLS settings of STARTTLS.
    pub tls: Arc<TlsResources>,
    /// The registry of established sessions.
    pub sessions: Arc<SessionRegistry>,
    /// The facilities the daemon offers.
    pub offered: Facilities,
}

/// Runs `request` and returns its final reply, or `None` for an accepted registration, which
/// gets no reply.
pub async fn execute(request: Request, context: &CommandContext) -> Option<Record> {
    let reqid = request.record.reqid;
    let name = request.command.name();
    drop(request.fd);
    let control_context = ControlContext {
        connection: context.connection,
        sessions: &context.sessions,
        starttls_offered: context.offered.contains(Facilities::STARTTLS),
    };
    if let Payload::PinEntry(entry) = &request.record.payload {
        let registered = context.tls.pin_entry.register(
            context.connection,
            reqid,
            entry,
            context.writer.clone(),
            Arc::clone(&context.callbacks),
        );
        return registered.err().map(|error| error.to_record(reqid));
    }
    if let Payload::LidEntryRegister(entry) = &request.record.payload {
        let writer = context.writer.clone();
        let callbacks = Arc::clone(&context.callbacks);
        return context
            .tls
            .lidentry
            .register(context.connection, reqid, entry, writer, callbacks);
    }
    if let Some(reply) = control::serve(reqid, request.record.payload, &control_context).await {
        return Some(reply);
    }
    debug!(target: TARGET_UNIXSOCK, connection = context.connection.0, reqid, command = name,
        "command not implemented");
    let message = format!("TLS Pool does not implement {name} yet");
    Some(Record::error(
        reqid,
        ErrorCode::CommandNotImpl.code(),
        &message,
    ))
}
