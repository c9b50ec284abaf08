//! PING: the request record both client flavours send and the reading of the daemon's reply.
//!
//! The app sends its identity (`TLSPOOL_IDENTITY_V2`) and the facilities it requests. The
//! daemon replaces the identity with its own and keeps only the facilities it offers.

use tlspool_proto::{Facilities, FixedString, IDENTITY_V2, Payload, Ping, Record};

use crate::ClientError;

/// The daemon's reply to PING.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingReply {
    /// The daemon's identity: an 8-digit semantics date followed by the producer's DoNAI, such
    /// as `20151111api@tlspool.arpa2.net`.
    pub producer: String,
    /// The facilities the daemon offers out of those requested.
    pub facilities: Facilities,
}

/// Returns the facilities a PING requests: every facility bit this crate defines, so the reply
/// shows all that the daemon offers.
pub(crate) fn requested_facilities() -> Facilities {
    Facilities::all()
}

/// Builds the PING request payload.
pub(crate) fn request() -> Result<Payload, ClientError> {
    Ok(Payload::Ping(Ping {
        producer: FixedString::new(IDENTITY_V2)?,
        facilities: requested_facilities(),
    }))
}

/// Reads the daemon's final record for a PING request.
pub(crate) fn reply(record: Record) -> Result<PingReply, ClientError> {
    match record.payload {
        Payload::Ping(ping) => Ok(PingReply {
            producer: ping.producer.as_str().to_owned(),
            facilities: ping.facilities,
        }),
        Payload::Error(error) => Err(ClientError::from_daemon(error)),
        other => Err(ClientError::UnexpectedReply { cmd: other.cmd() }),
    }
}

#[cfg(test)]
mod tests {
    use tlspool_proto::ErrorCode;

    use super::*;

    #[test]
    fn request_carries_identity_and_all_known_facilities() {
        let Payload::Ping(ping) = request().unwrap() else {
            panic!("request is not a PING payload");
        };
        assert_eq!(ping.producer.as_str(), IDENTITY_V2);
        assert!(ping.facilities.contains(Facilities::STARTTLS));
        assert!(ping.facilities.contains(Facilities::STARTGSS));
        assert!(ping.facilities.contains(Facilities::STARTSSH));
    }

    #[test]
    fn ping_reply_yields_producer_and_facilities() {
        let record = Record::new(
            1,
            Payload::Ping(Ping {
                producer: FixedString::new("20151111api@example.org").unwrap(),
                facilities: Facilities::STARTTLS,
            }),
        );
        let reply = reply(record).unwrap();
        assert_eq!(reply.producer, "20151111api@example.org");
        assert_eq!(reply.facilities, Facilities::STARTTLS);
    }

    #[test]
    fn error_reply_becomes_daemon_error() {
        let record = Record::error_code(1, ErrorCode::CommandNotImpl);
        let Err(ClientError::Daemon {
            code,
            known,
            message,
        }) = reply(record)
        else {
            panic!("ERROR reply did not become ClientError::Daemon");
        };
        assert_eq!(code, ErrorCode::CommandNotImpl.code());
        assert_eq!(known, Some(ErrorCode::CommandNotImpl));
        assert_eq!(message, ErrorCode::CommandNotImpl.message());
    }

    #[test]
    fn other_reply_is_unexpected() {
        let result = reply(Record::success(1));
        assert!(matches!(
            result,
            Err(ClientError::UnexpectedReply { cmd: 0 })
        ));
    }
}
