//! The sans-IO core of one client connection: it classifies each received record and returns
//! the action the connection task performs, so its rules run in tests without sockets.
//!
//! A record is the response to a callback when the callback table has that callback outstanding
//! on this connection (see [`crate::callbacks`]). Every other record is a new request. PING is answered here. Records
//! that only make sense as callback answers (STARTTLS_LOCALID, PLAINTEXT_CONNECT,
//! LIDENTRY_CALLBACK and an app's ERROR) get `E_TLSPOOL_COMMAND_BAD_CALLBACK_RESPONSE`, and
//! unknown codes get `E_TLSPOOL_COMMAND_UNKNOWN`. The remaining commands become a
//! [`Request`] for a handler task.
//!
//! Descriptors follow the carriers of the TLS Pool version 2 protocol: a STARTTLS request
//! needs one, a STARTTLS renegotiation must have none (`E_TLSPOOL_SUPERFLUOUS_SOCKET`), and any
//! other request is processed with its descriptor closed.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use tracing::debug;
use zeroize::Zeroize as _;

use tlspool_core::logging::TARGET_UNIXSOCK;
use tlspool_proto::{
    CommandCode, ErrorCode, Facilities, FixedString, Frame, Header, IDENTITY_V2, Payload, Ping,
    ProtoError, Record, StartTlsFlags,
};

use crate::callbacks::{CallbackResponse, CallbackTable, CallbackWaiter, ConnectionId};

/// `errno` value sent with an ERROR for a request whose payload does not decode.
const EINVAL: i32 = 22;

/// The step the connection task takes for one received record.
#[derive(Debug)]
pub enum Action {
    /// Send this record to the client.
    Send(Record),
    /// Run this command in its own task, which sends the reply.
    Run(Request),
    /// Hand this response to the request that awaits the callback.
    Deliver(CallbackWaiter, CallbackResponse),
}

/// A decoded request for a command handler.
#[derive(Debug)]
pub struct Request {
    /// The command code.
    pub command: CommandCode,
    /// The request record.
    pub record: Record,
    /// The descriptor passed with the request, if the command takes one.
    pub fd: Option<OwnedFd>,
}

/// The protocol state of one client connection.
#[derive(Debug)]
pub struct ConnectionProtocol {
    connection: ConnectionId,
    offered: Facilities,
    callbacks: Arc<CallbackTable>,
}

impl ConnectionProtocol {
    /// Starts the protocol of `connection`, which offers `offered` facilities in PING and
    /// shares the daemon's callback table.
    pub fn new(
        connection: ConnectionId,
        offered: Facilities,
        callbacks: Arc<CallbackTable>,
    ) -> Self {
        Self {
            connection,
            offered,
            callbacks,
        }
    }

    /// Returns the connection this protocol serves.
    pub fn connection(&self) -> ConnectionId {
        self.connection
    }

    /// Classifies one received record and returns what to do with it.
    pub fn on_frame(&mut self, frame: Frame) -> Action {
        let header = frame.header();
        let Frame { mut bytes, fd } = frame;
        if header.cbid != 0 {
            if let Some(waiter) = self.callbacks.take_answered(header.cbid, self.connection) {
                let response = self.callback_response(header, &bytes, fd);
                if header.cmd == CommandCode::PinEntry.code() {
                    // The response to a PIN entry callback carries the PIN.
                    bytes.zeroize();
                }
                return Action::Deliver(waiter, response);
            }
        }

        let record = match Record::decode(&bytes) {
            Ok(record) => record,
            Err(error) => return Action::Send(self.malformed(header, &error)),
        };
        let Some(command) = record.payload.command() else {
            self.log_rejected(header, "unknown command code");
            let message = format!("TLS Pool does not know command code {:#010x}", header.cmd);
            return Action::Send(Record::error(
                header.reqid,
                ErrorCode::CommandUnknown.code(),
                &message,
            ));
        };
        debug!(target: TARGET_UNIXSOCK, connection = self.connection.0, reqid = header.reqid,
            cbid = header.cbid, command = command.name(), descriptor = fd.is_some(), "request");
        self.dispatch(command, record, fd)
    }

    /// Decides on a request that is not a callback response.
    fn dispatch(&self, command: CommandCode, record: Record, fd: Option<OwnedFd>) -> Action {
        let reqid = record.reqid;
        match &record.payload {
            Payload::Ping(ping) => {
                self.close_unexpected(record.header(), fd);
                Action::Send(self.ping_reply(reqid, ping))
            }
            Payload::StartTlsLocalId(_)
            | Payload::PlaintextConnect(_)
            | Payload::LidEntryCallback(_)
            | Payload::Error(_) => {
                self.log_rejected(
                    record.header(),
                    "callback response without outstanding callback",
                );
                drop(fd);
                let message = format!(
                    "TLS Pool has no outstanding callback {} for this {}",
                    record.cbid,
                    command.name()
                );
                Action::Send(Record::error(
                    reqid,
                    ErrorCode::CommandBadCallbackResponse.code(),
                    &message,
                ))
            }
            Payload::Success => {
                self.log_rejected(record.header(), "SUCCESS is not a request");
                drop(fd);
                Action::Send(Record::error(
                    reqid,
                    ErrorCode::CommandUnknown.code(),
                    "TLS Pool does not accept PIOC_SUCCESS_V2 as a request",
                ))
            }
            Payload::StartTls(starttls) => {
                let renegotiate = starttls.flags.contains(StartTlsFlags::RENEGOTIATE);
                match (renegotiate, fd) {
                    (true, Some(fd)) => {
                        self.log_rejected(record.header(), "descriptor on a renegotiation");
                        drop(fd);
                        Action::Send(Record::error_code(reqid, ErrorCode::SuperfluousSocket))
                    }
                    (false, None) => {
                        self.log_rejected(record.header(), "STARTTLS without ciphertext socket");
                        Action::Send(Record::error_code(reqid, ErrorCode::CipherSocketNeeded))
                    }
                    (_, fd) => Action::Run(Request {
                        command,
                        record,
                        fd,
                    }),
                }
            }
            _ => {
                self.close_unexpected(record.header(), fd);
                Action::Run(Request {
                    command,
                    record,
                    fd: None,
                })
            }
        }
    }

    /// Answers PING with the protocol identity and the requested facilities that are offered.
    fn ping_reply(&self, reqid: u16, ping: &Ping) -> Record {
        let producer = FixedString::new(IDENTITY_V2).unwrap_or_else(|_| FixedString::empty());
        Record::new(
            reqid,
            Payload::Ping(Ping {
                producer,
                facilities: ping.facilities & self.offered,
            }),
        )
    }

    /// Builds the answer to callback `header.cbid` from the received bytes.
    fn callback_response(
        &self,
        header: Header,
        bytes: &[u8; tlspool_proto::RECORD_LEN],
        fd: Option<OwnedFd>,
    ) -> CallbackResponse {
        debug!(target: TARGET_UNIXSOCK, connection = self.connection.0, reqid = header.reqid,
            cbid = header.cbid, cmd = header.cmd, descriptor = fd.is_some(), "callback response");
        let record = match Record::decode(bytes) {
            Ok(record) => record,
            Err(error) => {
                self.log_rejected(header, &error.to_string());
                let message = format!("TLS Pool received an invalid callback response: {error}");
                Record::error(
                    header.reqid,
                    ErrorCode::CommandBadCallbackResponse.code(),
                    &message,
                )
            }
        };
        CallbackResponse { record, fd }
    }

    /// Builds the ERROR for a request whose payload does not decode.
    fn malformed(&self, header: Header, error: &ProtoError) -> Record {
        self.log_rejected(header, &error.to_string());
        let message = match error.field() {
            Some(field) => format!("TLS Pool rejects field {field}: {error}"),
            None => format!("TLS Pool rejects the request: {error}"),
        };
        Record::error(header.reqid, EINVAL, &message)
    }

    fn close_unexpected(&self, header: Header, fd: Option<OwnedFd>) {
        if let Some(fd) = fd {
            self.log_rejected(header, "closed a descriptor the command does not take");
            drop(fd);
        }
    }

    fn log_rejected(&self, header: Header, reason: &str) {
        debug!(target: TARGET_UNIXSOCK, connection = self.connection.0, reqid = header.reqid,
            cbid = header.cbid, cmd = header.cmd, reason, "bad input from client");
    }
}

impl Drop for ConnectionProtocol {
    /// Answers the callbacks still awaited on this connection, as a closed connection must.
    fn drop(&mut self) {
        self.callbacks.release_connection(self.connection);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use tlspool_proto::{Control, ErrorPayload, Identity, PinEntry, RECORD_LEN, StartTls};

    use super::*;

    const CONNECTION: ConnectionId = ConnectionId(1);

    fn protocol(offered: Facilities) -> (ConnectionProtocol, Arc<CallbackTable>) {
        let table = CallbackTable::new();
        let protocol = ConnectionProtocol::new(CONNECTION, offered, Arc::clone(&table));
        (protocol, table)
    }

    fn frame(record: &Record, fd: Option<OwnedFd>) -> Frame {
        Frame {
            bytes: record.encode(),
            fd,
        }
    }

    /// Returns a descriptor and a socket that reads EOF once that descriptor is closed.
    fn descriptor() -> (OwnedFd, UnixStream) {
        let (passed, peer) = UnixStream::pair().expect("socketpair");
        (OwnedFd::from(passed), peer)
    }

    fn assert_closed(peer: &UnixStream) {
        use std::io::Read as _;
        let mut byte = [0u8; 1];
        assert_eq!(
            (&*peer).read(&mut byte).expect("read"),
            0,
            "descriptor still open"
        );
    }

    fn expect_error(action: Action) -> (u16, ErrorPayload) {
        match action {
            Action::Send(Record {
                reqid,
                payload: Payload::Error(error),
                ..
            }) => (reqid, error),
            other => panic!("expected an ERROR reply, got {other:?}"),
        }
    }

    fn ping(reqid: u16, facilities: Facilities) -> Record {
        Record::new(
            reqid,
            Payload::Ping(Ping {
                producer: FixedString::new("20151111api@client.example").expect("producer"),
                facilities,
            }),
        )
    }

    fn starttls(flags: StartTlsFlags) -> StartTls {
        StartTls {
            flags,
            local: 0,
            ipproto: 6,
            streamid: 0,
            localid: Identity::empty(),
            remoteid: Identity::empty(),
            ctlkey: [0; 16],
            service: FixedString::new("generic").expect("service"),
            timeout: 0,
        }
    }

    #[test]
    fn ping_returns_identity_and_masked_facilities() {
        let (mut protocol, _) = protocol(Facilities::STARTTLS);
        let requested = Facilities::STARTTLS | Facilities::STARTGSS;
        let Action::Send(reply) = protocol.on_frame(frame(&ping(41, requested), None)) else {
            panic!("PING is answered inline");
        };
        assert_eq!(reply.reqid, 41);
        assert_eq!(reply.cbid, 0);
        let Payload::Ping(answer) = reply.payload else {
            panic!("expected PING, got {:?}", reply.payload);
        };
        assert_eq!(answer.producer.as_str(), IDENTITY_V2);
        assert_eq!(answer.facilities, Facilities::STARTTLS);
    }

    #[test]
    fn ping_offers_nothing_when_nothing_is_offered() {
        let (mut protocol, _) = protocol(Facilities::empty());
        let Action::Send(reply) = protocol.on_frame(frame(&ping(1, Facilities::all()), None))
        else {
            panic!("PING is answered inline");
        };
        let Payload::Ping(answer) = reply.payload else {
            panic!("expected PING");
        };
        assert_eq!(answer.facilities, Facilities::empty());
    }

    #[test]
    fn ping_with_descriptor_closes_it() {
        let (mut protocol, _) = protocol(Facilities::empty());
        let (fd, peer) = descriptor();
        let action = protocol.on_frame(frame(&ping(2, Facilities::empty()), Some(fd)));
        assert!(matches!(
            action,
            Action::Send(Record {
                payload: Payload::Ping(_),
                ..
            })
        ));
        assert_closed(&peer);
    }

    #[test]
    fn unknown_command_is_rejected() {
        let (mut protocol, _) = protocol(Facilities::empty());
        let record = Record::new(5, Payload::Unknown { cmd: 0x99 });
        let (reqid, error) = expect_error(protocol.on_frame(frame(&record, None)));
        assert_eq!(reqid, 5);
        assert_eq!(error.error_code(), Some(ErrorCode::CommandUnknown));
        assert!(error.message.contains("0x00000099"), "{}", error.message);
    }

    #[test]
    fn stray_callback_answers_are_rejected() {
        let (mut protocol, _) = protocol(Facilities::empty());
        let payloads = [
            Payload::PlaintextConnect(starttls(StartTlsFlags::empty())),
            Payload::StartTlsLocalId(starttls(StartTlsFlags::empty())),
            Payload::Error(ErrorPayload::new(1, "refused")),
        ];
        for payload in payloads {
            let mut record = Record::new(6, payload);
            record.cbid = 17;
            let (fd, peer) = descriptor();
            let (reqid, error) = expect_error(protocol.on_frame(frame(&record, Some(fd))));
            assert_eq!(reqid, 6);
            assert_eq!(
                error.error_code(),
                Some(ErrorCode::CommandBadCallbackResponse)
            );
            assert_closed(&peer);
        }
    }

    #[test]
    fn callback_answer_reaches_its_request() {
        let (mut protocol, table) = protocol(Facilities::empty());
        let mut pending = table.register(CONNECTION, 8).expect("free slot");
        let mut record = Record::new(
            8,
            Payload::PlaintextConnect(starttls(StartTlsFlags::empty())),
        );
        record.cbid = pending.cbid;
        let (fd, _peer) = descriptor();
        let Action::Deliver(waiter, response) = protocol.on_frame(frame(&record, Some(fd))) else {
            panic!("an answer to an outstanding callback is delivered");
        };
        waiter.deliver(response);
        let response = pending.response.try_recv().expect("delivered");
        assert_eq!(response.record, record);
        assert!(response.fd.is_some());
        assert_eq!(table.outstanding(), 0);
    }

    #[test]
    fn callback_of_other_connection_is_a_new_request() {
        let (mut protocol, table) = protocol(Facilities::empty());
        let pending = table.register(ConnectionId(99), 8).expect("free slot");
        let mut record = Record::new(
            8,
            Payload::PlaintextConnect(starttls(StartTlsFlags::empty())),
        );
        record.cbid = pending.cbid;
        let (_, error) = expect_error(protocol.on_frame(frame(&record, None)));
        assert_eq!(
            error.error_code(),
            Some(ErrorCode::CommandBadCallbackResponse)
        );
        assert_eq!(
            table.outstanding(),
            1,
            "the other connection's callback stays outstanding"
        );
    }

    #[test]
    fn malformed_callback_answer_becomes_error() {
        let (mut protocol, table) = protocol(Facilities::empty());
        let mut pending = table.register(CONNECTION, 3).expect("free slot");
        let mut record = Record::new(
            3,
            Payload::PlaintextConnect(starttls(StartTlsFlags::empty())),
        );
        record.cbid = pending.cbid;
        let mut bytes = record.encode();
        bytes[20..148].fill(b'x'); // localid without NUL
        let Action::Deliver(waiter, response) = protocol.on_frame(Frame { bytes, fd: None }) else {
            panic!("an answer to an outstanding callback is delivered");
        };
        waiter.deliver(response);
        let response = pending.response.try_recv().expect("delivered");
        let Payload::Error(error) = response.record.payload else {
            panic!("expected ERROR");
        };
        assert_eq!(
            error.error_code(),
            Some(ErrorCode::CommandBadCallbackResponse)
        );
    }

    #[test]
    fn unterminated_field_is_named() {
        let (mut protocol, _) = protocol(Facilities::empty());
        let record = Record::new(
            4,
            Payload::StartTls(starttls(StartTlsFlags::LOCALROLE_CLIENT)),
        );
        let mut bytes = record.encode();
        bytes[148..276].fill(b'y'); // remoteid without NUL
        let (reqid, error) = expect_error(protocol.on_frame(Frame { bytes, fd: None }));
        assert_eq!(reqid, 4);
        assert_eq!(error.tlserrno, EINVAL);
        assert!(error.message.contains("remoteid"), "{}", error.message);
    }

    #[test]
    fn starttls_without_descriptor_needs_cipher_socket() {
        let (mut protocol, _) = protocol(Facilities::empty());
        let record = Record::new(
            9,
            Payload::StartTls(starttls(StartTlsFlags::LOCALROLE_CLIENT)),
        );
        let (_, error) = expect_error(protocol.on_frame(frame(&record, None)));
        assert_eq!(error.error_code(), Some(ErrorCode::CipherSocketNeeded));
    }

    #[test]
    fn renegotiation_with_descriptor_is_superfluous() {
        let (mut protocol, _) = protocol(Facilities::empty());
        let record = Record::new(10, Payload::StartTls(starttls(StartTlsFlags::RENEGOTIATE)));
        let (fd, peer) = descriptor();
        let (_, error) = expect_error(protocol.on_frame(frame(&record, Some(fd))));
        assert_eq!(error.error_code(), Some(ErrorCode::SuperfluousSocket));
        assert_closed(&peer);
    }

    #[test]
    fn other_commands_run_with_descriptor_closed() {
        let (mut protocol, _) = protocol(Facilities::empty());
        let record = Record::new(11, Payload::ControlDetach(Control::new([7; 16])));
        let (fd, peer) = descriptor();
        let Action::Run(request) = protocol.on_frame(frame(&record, Some(fd))) else {
            panic!("CONTROL_DETACH goes to its handler");
        };
        assert_eq!(request.command, CommandCode::ControlDetach);
        assert!(request.fd.is_none());
        assert_closed(&peer);
    }

    #[test]
    fn pinentry_with_unknown_cbid_is_a_registration() {
        let (mut protocol, _) = protocol(Facilities::empty());
        let mut record = Record::new(
            12,
            Payload::PinEntry(PinEntry {
                flags: 0,
                attempt: 0,
                timeout_us: 0,
                pin: FixedString::empty(),
                prompt: FixedString::empty(),
                token_manuf: FixedString::empty(),
                token_model: FixedString::empty(),
                token_serial: FixedString::empty(),
                token_label: FixedString::empty(),
            }),
        );
        record.cbid = 5;
        let action = protocol.on_frame(frame(&record, None));
        assert!(
            matches!(
                action,
                Action::Run(Request {
                    command: CommandCode::PinEntry,
                    ..
                })
            ),
            "{action:?}"
        );
    }

    #[test]
    fn garbage_bytes_never_panic() {
        let (mut protocol, _) = protocol(Facilities::STARTTLS);
        let mut state = 0x1234_5678_u32;
        for _ in 0..2000 {
            let bytes: [u8; RECORD_LEN] = std::array::from_fn(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state.to_le_bytes()[0]
            });
            let _ = protocol.on_frame(Frame { bytes, fd: None });
        }
    }

    #[test]
    fn dropping_protocol_answers_its_callbacks() {
        let (protocol, table) = protocol(Facilities::empty());
        let mut pending = table.register(CONNECTION, 13).expect("free slot");
        drop(protocol);
        let response = pending.response.try_recv().expect("answered at close");
        let Payload::Error(error) = response.record.payload else {
            panic!("expected ERROR");
        };
        assert_eq!(error.error_code(), Some(ErrorCode::ClientDisconnect));
    }
}
