//! The client side of one STARTTLS request without I/O: the first record, and the answer to
//! each record the daemon sends about the request. Both client flavours drive it and do the
//! sending and receiving themselves.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use tracing::debug;

use tlspool_proto::{CTLKEY_LEN, CtlKey, ErrorCode, ErrorPayload, Payload, Record, StartTls};

use rustix::net::{AddressFamily, SocketFlags, SocketType};

use super::request::{IPPROTO_TCP, IPPROTO_UDP, checked_string};
use super::{LocalIdCheck, LocalIdDecision, StartTlsRequest, TlsConnection};
use crate::ClientError;

/// What the driver does after a record from the daemon.
#[derive(Debug)]
pub(crate) enum Step {
    /// Send `record` with `fd` attached and wait for the next record.
    Reply {
        /// The answer to a callback.
        record: Record,
        /// The plaintext end handed to the daemon.
        fd: Option<OwnedFd>,
    },
    /// Send `record` to release the daemon's callback, then fail with `error`.
    Abort {
        /// The ERROR answer to the callback.
        record: Record,
        /// The failure to return to the caller.
        error: ClientError,
    },
    /// The session is established.
    Established(TlsConnection<UnixStream>),
}

/// The state of one STARTTLS request: its fields, its control key and the plaintext end the
/// client keeps once it has handed the other end to the daemon.
#[derive(Debug)]
pub(crate) struct Negotiation<'r> {
    request: &'r StartTlsRequest,
    ctlkey: CtlKey,
    plaintext: Option<UnixStream>,
}

impl<'r> Negotiation<'r> {
    /// Starts a negotiation with a fresh random control key.
    pub(crate) fn new(request: &'r StartTlsRequest) -> Result<Self, ClientError> {
        let mut ctlkey = [0u8; CTLKEY_LEN];
        getrandom::fill(&mut ctlkey).map_err(|error| ClientError::Io {
            call: "getrandom for the control key",
            source: error.into(),
        })?;
        Ok(Self {
            request,
            ctlkey,
            plaintext: None,
        })
    }

    /// Returns the STARTTLS record that opens the request `reqid`.
    pub(crate) fn request_record(&self, reqid: u16) -> Record {
        Record::new(reqid, Payload::StartTls(self.request.payload(self.ctlkey)))
    }

    /// Works out the answer to `record`, a record the daemon sent about this request.
    ///
    /// # Errors
    ///
    /// [`ClientError::Daemon`] for an ERROR record, [`ClientError::NoPlaintextRequested`] when
    /// the final record arrives before any PLAINTEXT_CONNECT, and
    /// [`ClientError::UnexpectedReply`] for a record that is neither a callback nor a final
    /// STARTTLS record.
    pub(crate) fn on_record(&mut self, record: Record) -> Result<Step, ClientError> {
        let Record {
            reqid,
            cbid,
            payload,
        } = record;
        match payload {
            Payload::Error(error) => Err(ClientError::from_daemon(error)),
            Payload::StartTlsLocalId(starttls) => Ok(self.check_local_id(reqid, cbid, starttls)),
            Payload::PlaintextConnect(starttls) => self.connect_plaintext(reqid, cbid, starttls),
            Payload::StartTls(starttls) => self.establish(starttls),
            other if cbid != 0 => {
                debug!(
                    reqid,
                    cbid,
                    cmd = other.cmd(),
                    "rejecting an unknown STARTTLS callback"
                );
                Ok(Step::Reply {
                    record: refusal(
                        reqid,
                        cbid,
                        ErrorPayload::from_code(ErrorCode::ClientRefusesCallback),
                    ),
                    fd: None,
                })
            }
            other => Err(ClientError::UnexpectedReply { cmd: other.cmd() }),
        }
    }

    /// Answers a `PIOC_STARTTLS_LOCALID_V2` callback with the request's handler.
    fn check_local_id(&self, reqid: u16, cbid: u16, mut starttls: StartTls) -> Step {
        let check = LocalIdCheck {
            local_id: starttls.localid.as_str(),
            remote_id: starttls.remoteid.as_str(),
        };
        let decision = self.request.check_local_id(&check);
        debug!(
            proposed = check.local_id,
            remote = check.remote_id,
            ?decision,
            "local identity check"
        );
        match decision {
            LocalIdDecision::Accept => {}
            LocalIdDecision::Replace(local_id) => match checked_string("localid", &local_id) {
                Ok(local_id) => starttls.localid = local_id,
                Err(error) => {
                    let message = "TLS Pool client handler returned an invalid local identity";
                    return Step::Abort {
                        record: refusal(reqid, cbid, ErrorPayload::new(EINVAL, message)),
                        error,
                    };
                }
            },
            LocalIdDecision::Reject => {
                let message = format!("TLS Pool client rejects local identity {}", check.local_id);
                return Step::Reply {
                    record: refusal(reqid, cbid, ErrorPayload::new(EACCES, &message)),
                    fd: None,
                };
            }
        }
        Step::Reply {
            record: answer(reqid, cbid, Payload::StartTlsLocalId(starttls)),
            fd: None,
        }
    }

    /// Answers a `PIOC_PLAINTEXT_CONNECT_V2` callback with one end of a new socket pair.
    fn connect_plaintext(
        &mut self,
        reqid: u16,
        cbid: u16,
        starttls: StartTls,
    ) -> Result<Step, ClientError> {
        let kind = match starttls.ipproto {
            IPPROTO_TCP => Some(SocketType::STREAM),
            IPPROTO_UDP => Some(SocketType::SEQPACKET),
            _ => None,
        };
        let (None, Some(kind)) = (&self.plaintext, kind) else {
            debug!(
                reqid,
                cbid,
                ipproto = starttls.ipproto,
                "rejecting a second PLAINTEXT_CONNECT, or one for neither TCP nor UDP"
            );
            return Ok(Step::Reply {
                record: refusal(
                    reqid,
                    cbid,
                    ErrorPayload::from_code(ErrorCode::ClientRefusesCallback),
                ),
                fd: None,
            });
        };

        // A UDP session's SOCK_SEQPACKET pair keeps each datagram whole. It is held in a
        // `UnixStream` because the standard library has no sequenced-packet type; `read` and
        // `write` on it move one datagram each.
        let (kept, handed) =
            rustix::net::socketpair(AddressFamily::UNIX, kind, SocketFlags::CLOEXEC, None)
                .map_err(|source| ClientError::Io {
                    call: "socketpair for the plaintext side",
                    source: source.into(),
                })?;
        self.plaintext = Some(UnixStream::from(kept));
        Ok(Step::Reply {
            record: answer(reqid, cbid, Payload::PlaintextConnect(starttls)),
            fd: Some(handed),
        })
    }

    /// Reads the final STARTTLS record.
    fn establish(&mut self, starttls: StartTls) -> Result<Step, ClientError> {
        let plaintext = self
            .plaintext
            .take()
            .ok_or(ClientError::NoPlaintextRequested)?;
        Ok(Step::Established(TlsConnection {
            plaintext,
            local_id: starttls.localid.as_str().to_owned(),
            remote_id: starttls.remoteid.as_str().to_owned(),
            ctlkey: self.ctlkey,
            flags: starttls.flags,
        }))
    }
}

/// `EACCES`: the client rejects the proposed local identity.
const EACCES: i32 = 13;
/// `EINVAL`: the client's handler returned an identity that does not fit the field.
const EINVAL: i32 = 22;

/// Builds the answer to callback `cbid` of request `reqid`.
fn answer(reqid: u16, cbid: u16, payload: Payload) -> Record {
    Record {
        reqid,
        cbid,
        payload,
    }
}

/// Builds the ERROR record that rejects callback `cbid` of request `reqid`.
fn refusal(reqid: u16, cbid: u16, error: ErrorPayload) -> Record {
    answer(reqid, cbid, Payload::Error(error))
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use tlspool_proto::{FixedString, StartTlsFlags};

    use super::*;

    fn callback(payload: fn(StartTls) -> Payload, starttls: StartTls) -> Record {
        Record {
            reqid: 3,
            cbid: 17,
            payload: payload(starttls),
        }
    }

    fn sent_payload(negotiation: &Negotiation<'_>) -> StartTls {
        let Payload::StartTls(starttls) = negotiation.request_record(3).payload else {
            panic!("the first record is not STARTTLS");
        };
        starttls
    }

    #[test]
    fn control_keys_differ_between_requests() {
        let request = StartTlsRequest::client("peer.example").build().unwrap();
        let first = Negotiation::new(&request).unwrap();
        let second = Negotiation::new(&request).unwrap();
        assert_ne!(first.ctlkey, second.ctlkey);
        assert_eq!(sent_payload(&first).ctlkey, first.ctlkey);
    }

    #[test]
    fn plaintext_connect_hands_over_one_end_of_a_pair() {
        let request = StartTlsRequest::client("peer.example").build().unwrap();
        let mut negotiation = Negotiation::new(&request).unwrap();
        let starttls = sent_payload(&negotiation);

        let step = negotiation
            .on_record(callback(Payload::PlaintextConnect, starttls.clone()))
            .unwrap();
        let Step::Reply { record, fd } = step else {
            panic!("PLAINTEXT_CONNECT got no reply: {step:?}");
        };
        assert_eq!((record.reqid, record.cbid), (3, 17));
        assert_eq!(record.payload, Payload::PlaintextConnect(starttls.clone()));
        let mut handed = UnixStream::from(fd.expect("the reply carries a descriptor"));

        let mut done = starttls;
        done.remoteid = FixedString::new("peer.example").unwrap();
        let Step::Established(mut connection) = negotiation
            .on_record(Record::new(3, Payload::StartTls(done)))
            .unwrap()
        else {
            panic!("the final STARTTLS record did not establish the session");
        };
        assert_eq!(connection.remote_id, "peer.example");
        assert_eq!(connection.ctlkey, negotiation.ctlkey);

        handed.write_all(b"ping").unwrap();
        let mut received = [0u8; 4];
        connection.plaintext.read_exact(&mut received).unwrap();
        assert_eq!(&received, b"ping");
    }

    #[test]
    fn second_plaintext_connect_is_refused() {
        let request = StartTlsRequest::client("peer.example").build().unwrap();
        let mut negotiation = Negotiation::new(&request).unwrap();
        let starttls = sent_payload(&negotiation);
        negotiation
            .on_record(callback(Payload::PlaintextConnect, starttls.clone()))
            .unwrap();

        let step = negotiation
            .on_record(callback(Payload::PlaintextConnect, starttls))
            .unwrap();
        let Step::Reply { record, fd: None } = step else {
            panic!("the second PLAINTEXT_CONNECT was not refused: {step:?}");
        };
        assert!(matches!(record.payload, Payload::Error(_)));
        assert_eq!(record.cbid, 17);
    }

    #[test]
    fn final_record_without_plaintext_connect_fails() {
        let request = StartTlsRequest::client("peer.example").build().unwrap();
        let mut negotiation = Negotiation::new(&request).unwrap();
        let starttls = sent_payload(&negotiation);
        let result = negotiation.on_record(Record::new(3, Payload::StartTls(starttls)));
        assert!(matches!(result, Err(ClientError::NoPlaintextRequested)));
    }

    #[test]
    fn error_record_becomes_daemon_error() {
        let request = StartTlsRequest::client("peer.example").build().unwrap();
        let mut negotiation = Negotiation::new(&request).unwrap();
        let record = Record::error_code(3, ErrorCode::StirredNotShaken);
        let Err(ClientError::Daemon { known, .. }) = negotiation.on_record(record) else {
            panic!("ERROR did not become ClientError::Daemon");
        };
        assert_eq!(known, Some(ErrorCode::StirredNotShaken));
    }

    #[test]
    fn localid_handler_replaces_proposal() {
        let request = StartTlsRequest::server("dev.example")
            .localid_check(|check| {
                assert_eq!(check.local_id, "dev.example");
                LocalIdDecision::Replace("other.example".to_owned())
            })
            .build()
            .unwrap();
        let mut negotiation = Negotiation::new(&request).unwrap();
        let starttls = sent_payload(&negotiation);
        assert!(starttls.flags.contains(StartTlsFlags::LOCALID_CHECK));

        let step = negotiation
            .on_record(callback(Payload::StartTlsLocalId, starttls))
            .unwrap();
        let Step::Reply { record, fd: None } = step else {
            panic!("LOCALID got no reply without descriptor: {step:?}");
        };
        let Payload::StartTlsLocalId(answer) = record.payload else {
            panic!("the answer is not STARTTLS_LOCALID");
        };
        assert_eq!(answer.localid.as_str(), "other.example");
        assert_eq!((record.reqid, record.cbid), (3, 17));
    }

    #[test]
    fn localid_handler_rejection_sends_error() {
        let request = StartTlsRequest::server("dev.example")
            .localid_check(|_| LocalIdDecision::Reject)
            .build()
            .unwrap();
        let mut negotiation = Negotiation::new(&request).unwrap();
        let starttls = sent_payload(&negotiation);
        let step = negotiation
            .on_record(callback(Payload::StartTlsLocalId, starttls))
            .unwrap();
        let Step::Reply { record, fd: None } = step else {
            panic!("the rejection is not a plain reply: {step:?}");
        };
        let Payload::Error(error) = record.payload else {
            panic!("the rejection is not ERROR");
        };
        assert_eq!(error.tlserrno, EACCES);
        assert!(error.message.contains("dev.example"), "{}", error.message);
    }

    #[test]
    fn localid_handler_with_oversized_identity_aborts() {
        let request = StartTlsRequest::server("dev.example")
            .localid_check(|_| LocalIdDecision::Replace("x".repeat(200)))
            .build()
            .unwrap();
        let mut negotiation = Negotiation::new(&request).unwrap();
        let starttls = sent_payload(&negotiation);
        let step = negotiation
            .on_record(callback(Payload::StartTlsLocalId, starttls))
            .unwrap();
        let Step::Abort { record, error } = step else {
            panic!("an oversized identity did not abort: {step:?}");
        };
        assert!(matches!(record.payload, Payload::Error(_)));
        assert!(matches!(
            error,
            ClientError::InvalidRequest {
                field: "localid",
                ..
            }
        ));
    }

    #[test]
    fn unknown_callback_is_refused_and_unknown_reply_fails() {
        let request = StartTlsRequest::client("peer.example").build().unwrap();
        let mut negotiation = Negotiation::new(&request).unwrap();
        let mut odd = Record::success(3);
        odd.cbid = 9;
        let step = negotiation.on_record(odd).unwrap();
        assert!(matches!(step, Step::Reply { fd: None, .. }));

        let result = negotiation.on_record(Record::success(3));
        assert!(matches!(
            result,
            Err(ClientError::UnexpectedReply { cmd: 0 })
        ));
    }
}
