//! INFO: certificate fields, channel bindings, the certificate type, the protocol version and
//! the privacy mode of a session attached to the requesting connection.

use tlspool_core::tls::{CertificateType, ChannelBinding, ProtocolVersion, Session};
use tlspool_proto::{ErrorCode, INFO_BUF_LEN, Info, InfoKind, Payload, PrivacyMode, Record};

use super::der::CertificateFields;
use super::{ControlContext, failure};

/// What an INFO kind asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Query {
    Subject,
    Issuer,
    SubjectAltName,
    Binding(ChannelBinding),
    CertificateType,
    ProtocolVersion,
    /// The privacy mode, given whether privacy mode ran in the handshake.
    PrivacyMode {
        renegotiated: bool,
    },
}

/// The outcome of reading the session: a value to return, a matched check, or nothing.
#[derive(Debug)]
enum Answer {
    Value(Vec<u8>),
    Matched,
    NotFound,
}

fn query_of(kind: InfoKind) -> Option<Query> {
    let query = match kind {
        InfoKind::PEERCERT_SUBJECT | InfoKind::MYCERT_SUBJECT => Query::Subject,
        InfoKind::PEERCERT_ISSUER | InfoKind::MYCERT_ISSUER => Query::Issuer,
        InfoKind::PEERCERT_SUBJECTALTNAME | InfoKind::MYCERT_SUBJECTALTNAME => {
            Query::SubjectAltName
        }
        InfoKind::CHANBIND_TLS_UNIQUE => Query::Binding(ChannelBinding::TlsUnique),
        InfoKind::CHANBIND_TLS_SERVER_END_POINT => {
            Query::Binding(ChannelBinding::TlsServerEndPoint)
        }
        InfoKind::CHANBIND_TLS_EXPORTER => Query::Binding(ChannelBinding::TlsExporter),
        InfoKind::PEER_CERTIFICATE_TYPE | InfoKind::MY_CERTIFICATE_TYPE => Query::CertificateType,
        InfoKind::PROTOCOL_VERSION => Query::ProtocolVersion,
        InfoKind::PRIVACY_MODE => Query::PrivacyMode {
            renegotiated: false,
        },
        _ => return None,
    };
    Some(query)
}

/// Serves INFO with the order of checks of the TLS Pool version 2 protocol: the session's
/// attachment, the value length, the kind, then the kind's own conditions.
pub(super) async fn serve(reqid: u16, info: Info, context: &ControlContext<'_>) -> Record {
    let Some(queries) = context
        .sessions
        .attached_queries(&info.ctlkey, context.connection)
    else {
        return Record::error_code(reqid, ErrorCode::CtlkeyNotFound);
    };
    let Ok(value) = info.value() else {
        return Record::error_code(reqid, ErrorCode::CommandNotImpl);
    };
    let Some(mut query) = query_of(info.kind) else {
        return Record::error_code(reqid, ErrorCode::InfoKindUnknown);
    };
    if let Query::PrivacyMode { renegotiated } = &mut query {
        let Some(ran) = context
            .sessions
            .attached_privacy_renegotiated(&info.ctlkey, context.connection)
        else {
            return Record::error_code(reqid, ErrorCode::CtlkeyNotFound);
        };
        *renegotiated = ran;
    }
    let value = value.map(<[u8]>::to_vec);
    let local = info.kind.is_local_certificate();
    let answer = queries
        .run(move |session: &Session| answer(session, query, local, value.as_deref()))
        .await;
    match answer {
        Ok(Answer::Matched) => Record::new(reqid, Payload::Info(info)),
        Ok(Answer::Value(bytes)) if bytes.len() <= INFO_BUF_LEN => {
            match Info::with_value(info.ctlkey, info.kind, &bytes) {
                Ok(reply) => Record::new(reqid, Payload::Info(reply)),
                Err(error) => failure(reqid, ErrorCode::InfoNotFound, &error),
            }
        }
        Ok(_) => Record::error_code(reqid, ErrorCode::InfoNotFound),
        Err(error) => failure(reqid, ErrorCode::CtlkeyNotFound, &error),
    }
}

/// Reads what `query` asks of `session`; `value` is the value of a check, `None` for a query.
fn answer(session: &Session, query: Query, local: bool, value: Option<&[u8]>) -> Answer {
    match (query, value) {
        (Query::SubjectAltName, Some(name)) if name.len() < INFO_BUF_LEN => {
            let certificate = certificate(session, local);
            let fields = certificate.as_deref().and_then(CertificateFields::parse);
            match fields {
                Some(fields) if fields.has_subject_alt_name(name) => Answer::Matched,
                _ => Answer::NotFound,
            }
        }
        (Query::SubjectAltName, _) | (_, Some(_)) => Answer::NotFound,
        (Query::Subject | Query::Issuer, None) => {
            let Some(certificate) = certificate(session, local) else {
                return Answer::NotFound;
            };
            match CertificateFields::parse(&certificate) {
                Some(fields) if query == Query::Subject => Answer::Value(fields.subject.to_vec()),
                Some(fields) => Answer::Value(fields.issuer.to_vec()),
                None => Answer::NotFound,
            }
        }
        (Query::Binding(binding), None) => channel_binding(session, binding),
        (Query::CertificateType, None) => {
            let kind = if local {
                session.local_certificate_type()
            } else {
                session.peer_certificate_type()
            };
            certificate_type_name(kind).map_or(Answer::NotFound, |name| {
                Answer::Value(name.as_bytes().to_vec())
            })
        }
        (Query::PrivacyMode { renegotiated }, None) => {
            let mode = privacy_mode(renegotiated, session.protocol_version());
            Answer::Value(mode.name().as_bytes().to_vec())
        }
        (Query::ProtocolVersion, None) => session
            .protocol_version()
            .and_then(protocol_version_name)
            .map_or(Answer::NotFound, |name| {
                Answer::Value(name.as_bytes().to_vec())
            }),
    }
}

/// Returns the X.509 end certificate of the peer, or of this side when `local` is set.
///
/// The relay runs INFO only while the peer's credential is the one validated at the
/// handshake: a renegotiation that changed it ends the session before INFO can read it.
fn certificate(session: &Session, local: bool) -> Option<Vec<u8>> {
    if local {
        (session.local_certificate_type() == CertificateType::X509)
            .then(|| session.local_certificate())
            .flatten()
    } else {
        (session.peer_certificate_type() == CertificateType::X509)
            .then(|| session.peer_certificates().into_iter().next())
            .flatten()
    }
}

/// Returns a channel binding where it is defined: `tls-unique` before TLS 1.3,
/// `tls-exporter` under TLS 1.3 only, `tls-server-end-point` with an X.509 server certificate
/// (GnuTLS hashes it with its signature's hash, SHA-256 for MD5 and SHA-1, as RFC 5929 says).
fn channel_binding(session: &Session, binding: ChannelBinding) -> Answer {
    let tls13 = session.protocol_version() == Some(ProtocolVersion::Tls13);
    let defined = match binding {
        ChannelBinding::TlsUnique => !tls13,
        ChannelBinding::TlsExporter => tls13,
        _ => true,
    };
    if !defined {
        return Answer::NotFound;
    }
    session
        .channel_binding(binding)
        .map_or(Answer::NotFound, Answer::Value)
}

/// Returns how the certificates of the handshake crossed the network. A renegotiation of a
/// TLS 1.2 session has the protocol version of TLS 1.2, so `renegotiated` decides first.
fn privacy_mode(renegotiated: bool, version: Option<ProtocolVersion>) -> PrivacyMode {
    if renegotiated {
        PrivacyMode::Renegotiated
    } else if version == Some(ProtocolVersion::Tls13) {
        PrivacyMode::Tls13
    } else {
        PrivacyMode::None
    }
}

/// Returns the GnuTLS name of a certificate type (`gnutls_certificate_type_get_name`).
fn certificate_type_name(kind: CertificateType) -> Option<&'static str> {
    match kind {
        CertificateType::X509 => Some("X.509"),
        CertificateType::RawPublicKey => Some("RAWPK"),
        CertificateType::OpenPgp => Some("OPENPGP"),
        _ => None,
    }
}

/// Returns the GnuTLS name of a protocol version (`gnutls_protocol_get_name`).
fn protocol_version_name(version: ProtocolVersion) -> Option<&'static str> {
    match version {
        ProtocolVersion::Tls10 => Some("TLS1.0"),
        ProtocolVersion::Tls11 => Some("TLS1.1"),
        ProtocolVersion::Tls12 => Some("TLS1.2"),
        ProtocolVersion::Tls13 => Some("TLS1.3"),
        ProtocolVersion::Dtls10 => Some("DTLS1.0"),
        ProtocolVersion::Dtls12 => Some("DTLS1.2"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_kind_has_a_query() {
        for kind in InfoKind::ALL {
            assert!(query_of(kind).is_some(), "{kind:?}");
        }
        assert_eq!(query_of(InfoKind(0x5280_0003)), None);
    }

    #[test]
    fn privacy_mode_from_handshake() {
        let tls12 = Some(ProtocolVersion::Tls12);
        let tls13 = Some(ProtocolVersion::Tls13);
        assert_eq!(privacy_mode(true, tls12), PrivacyMode::Renegotiated);
        assert_eq!(privacy_mode(false, tls13), PrivacyMode::Tls13);
        assert_eq!(privacy_mode(false, tls12), PrivacyMode::None);
        assert_eq!(
            privacy_mode(false, Some(ProtocolVersion::Dtls12)),
            PrivacyMode::None
        );
        assert_eq!(privacy_mode(false, None), PrivacyMode::None);
    }

    #[test]
    fn local_kinds_set_the_local_bit() {
        assert!(InfoKind::MY_CERTIFICATE_TYPE.is_local_certificate());
        assert!(!InfoKind::PEER_CERTIFICATE_TYPE.is_local_certificate());
        assert!(!InfoKind::PROTOCOL_VERSION.is_local_certificate());
        assert!(!InfoKind::CHANBIND_TLS_EXPORTER.is_local_certificate());
    }
}
