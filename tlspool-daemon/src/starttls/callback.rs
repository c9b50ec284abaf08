//! Callbacks of a STARTTLS request to its application: STARTTLS_LOCALID and
//! PLAINTEXT_CONNECT, sent over the request's connection and answered through the callback
//! table. No timeout applies to the response, and a closed connection completes the callback
//! with `E_TLSPOOL_CLIENT_DISCONNECT`.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use tracing::debug;

use tlspool_core::logging::TARGET_UNIXSOCK;
use tlspool_proto::tokio::RecordWriter;
use tlspool_proto::{ErrorCode, Payload, Record, StartTls};

use super::error::StartTlsError;
use crate::callbacks::{CallbackTable, ConnectionId};

/// Name of the LOCALID callback in messages.
const LOCALID: &str = "PIOC_STARTTLS_LOCALID_V2";
/// Name of the PLAINTEXT_CONNECT callback in messages.
const PLAINTEXT_CONNECT: &str = "PIOC_PLAINTEXT_CONNECT_V2";

/// Sends callbacks for one request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) connection: ConnectionId,
    pub(crate) callbacks: Arc<CallbackTable>,
    pub(crate) writer: RecordWriter,
}

/// The application's response to the LOCALID callback.
#[derive(Debug)]
pub(crate) struct LocalIdResponse {
    /// The request id of the response, which later records of the request carry.
    pub(crate) reqid: u16,
    /// The accepted local identity.
    pub(crate) local_id: String,
    /// The plaintext descriptor, if the response carried one.
    pub(crate) plaintext: Option<OwnedFd>,
}

impl Caller {
    /// Proposes `params.localid` to the application and returns the identity it accepts. A
    /// response with a descriptor and an empty `localid` accepts the proposal.
    ///
    /// # Errors
    ///
    /// [`StartTlsError::NoLocalIdAccepted`] for an empty response without descriptor, and the
    /// errors of [`Self::call`].
    pub(crate) async fn localid(
        &self,
        reqid: u16,
        params: &StartTls,
    ) -> Result<LocalIdResponse, StartTlsError> {
        let proposal = params.localid.as_str().to_owned();
        let (record, fd) = self
            .call(reqid, Payload::StartTlsLocalId(params.clone()), LOCALID)
            .await?;
        let Payload::StartTlsLocalId(answer) = record.payload else {
            return Err(unexpected(&record, LOCALID));
        };
        let local_id = match (answer.localid.as_str(), &fd) {
            ("", None) => return Err(StartTlsError::NoLocalIdAccepted { proposal }),
            ("", Some(_)) => proposal,
            (chosen, _) => chosen.to_owned(),
        };
        Ok(LocalIdResponse {
            reqid: record.reqid,
            local_id,
            plaintext: fd,
        })
    }

    /// Asks the application for the plaintext descriptor; returns the request id of the
    /// response and the descriptor.
    ///
    /// # Errors
    ///
    /// [`StartTlsError::PlaintextSocketNeeded`] for a response without descriptor,
    /// [`StartTlsError::BadCallbackResponse`] for any other command (ERROR included), and the
    /// errors of [`Self::call`].
    pub(crate) async fn plaintext_connect(
        &self,
        reqid: u16,
        params: &StartTls,
    ) -> Result<(u16, OwnedFd), StartTlsError> {
        let (record, fd) = self
            .call(
                reqid,
                Payload::PlaintextConnect(params.clone()),
                PLAINTEXT_CONNECT,
            )
            .await?;
        match (&record.payload, fd) {
            (Payload::PlaintextConnect(_), Some(fd)) => Ok((record.reqid, fd)),
            (Payload::PlaintextConnect(_), None) => Err(StartTlsError::PlaintextSocketNeeded),
            _ => Err(StartTlsError::BadCallbackResponse {
                callback: PLAINTEXT_CONNECT,
                cmd: record.payload.cmd(),
            }),
        }
    }

    /// Sends callback `payload` about request `reqid` and waits for the response.
    ///
    /// # Errors
    ///
    /// [`StartTlsError::CallbackTableFull`], [`StartTlsError::ClientDisconnected`] when the
    /// callback cannot be sent or the connection closes, and for a LOCALID callback
    /// [`StartTlsError::CallbackRefused`] when the application responds with ERROR.
    async fn call(
        &self,
        reqid: u16,
        payload: Payload,
        callback: &'static str,
    ) -> Result<(Record, Option<OwnedFd>), StartTlsError> {
        let mut pending = self
            .callbacks
            .register(self.connection, reqid)
            .map_err(|_| StartTlsError::CallbackTableFull)?;
        let mut record = Record::new(reqid, payload);
        record.cbid = pending.cbid;
        debug!(target: TARGET_UNIXSOCK, connection = self.connection.0, reqid,
            cbid = pending.cbid, callback, "sending callback");
        let disconnected = StartTlsError::ClientDisconnected { callback };
        if self.writer.send_record(&record, None).await.is_err() {
            return Err(disconnected);
        }
        let Ok(response) = (&mut pending.response).await else {
            return Err(disconnected);
        };
        if let Payload::Error(error) = &response.record.payload {
            if error.error_code() == Some(ErrorCode::ClientDisconnect) {
                return Err(disconnected);
            }
            if callback == LOCALID {
                return Err(StartTlsError::CallbackRefused {
                    callback,
                    message: error.message.clone(),
                });
            }
        }
        Ok((response.record, response.fd))
    }
}

fn unexpected(record: &Record, callback: &'static str) -> StartTlsError {
    StartTlsError::BadCallbackResponse {
        callback,
        cmd: record.payload.cmd(),
    }
}
