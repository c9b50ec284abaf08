//! PRNG: keying material from the RFC 5705 exporter of a session attached to the requesting
//! connection (the RFC 8446 exporter under TLS 1.3, which `gnutls_prf_rfc5705` selects).

use tlspool_core::tls::Session;
use tlspool_proto::{CTLKEY_LEN, ErrorCode, PRNG_BUF_LEN, Payload, Prng, Record};
use tracing::debug;
use zeroize::Zeroize;

use tlspool_core::logging::TARGET_UNIXSOCK;

use super::{ControlContext, failure};

/// Labels registered for the exporter (IANA "TLS Exporter Labels") that PRNG accepts.
const REGISTERED_LABELS: [&str; 12] = [
    "client EAP encryption",
    "ttls keying material",
    "ttls challenge",
    "EXTRACTOR-dtls_srtp",
    "EXPORTER_DTLS_OVER_SCTP",
    "EXPORTER-ETSI-TC-M2M-Bootstrap",
    "EXPORTER-ETSI-TC-M2M-Connection",
    "TLS_MK_Extr",
    "EXPORTER_GBA_Digest",
    "EXPORTER: teap session key seed",
    "EXPORTER-oneM2M-Bootstrap",
    "EXPORTER-oneM2M-Connection",
];

/// Labels RFC 5705 forbids because the TLS key schedule uses them.
const FORBIDDEN_LABELS: [&str; 4] = [
    "client finished",
    "server finished",
    "master secret",
    "key expansion",
];

/// Prefix of the labels for experiments; a label must be longer than the prefix.
const EXPERIMENTAL_PREFIX: &str = "EXPERIMENTAL";

/// Tells whether PRNG accepts `label`: a registered label, or a longer one that starts with
/// `EXPERIMENTAL`.
fn label_allowed(label: &[u8]) -> bool {
    if FORBIDDEN_LABELS.iter().any(|l| l.as_bytes() == label) {
        return false;
    }
    REGISTERED_LABELS.iter().any(|l| l.as_bytes() == label)
        || (label.len() > EXPERIMENTAL_PREFIX.len()
            && label.starts_with(EXPERIMENTAL_PREFIX.as_bytes()))
}

/// A checked PRNG request, copied out of the record.
struct ExportRequest {
    label: String,
    context: Option<Vec<u8>>,
    len: usize,
}

impl Drop for ExportRequest {
    fn drop(&mut self) {
        self.label.zeroize();
        if let Some(context) = &mut self.context {
            context.zeroize();
        }
    }
}

/// Checks the lengths and the label of `prng`; `None` when they are out of range.
fn check_request(prng: &Prng) -> Option<ExportRequest> {
    let label_len = usize::try_from(prng.in1_len).ok().filter(|&len| len > 0)?;
    let len = usize::try_from(prng.prng_len)
        .ok()
        .filter(|&len| len <= PRNG_BUF_LEN)?;
    let context_len = usize::try_from(prng.in2_len).unwrap_or(0);
    if CTLKEY_LEN + label_len + context_len > PRNG_BUF_LEN {
        return None;
    }
    let label = &prng.buffer[CTLKEY_LEN..CTLKEY_LEN + label_len];
    if !label_allowed(label) {
        return None;
    }
    // NOTE: a label that is not UTF-8 is rejected, because the session's exporter takes a
    // `&str`; every registered label is ASCII.
    let label = std::str::from_utf8(label).ok()?.to_owned();
    let start = CTLKEY_LEN + label_len;
    let context = (prng.in2_len >= 0).then(|| prng.buffer[start..start + context_len].to_vec());
    Some(ExportRequest {
        label,
        context,
        len,
    })
}

/// Serves PRNG: facility, lengths and label, then the session's attachment, in that order.
/// The request's buffer is wiped before any reply.
pub(super) async fn serve(reqid: u16, mut prng: Prng, context: &ControlContext<'_>) -> Record {
    let ctlkey = prng.ctlkey();
    let checked = check_request(&prng);
    // NOTE: this wipes the decoded request; the received 388-byte frame it was decoded from
    // is dropped by the connection layer without wiping.
    prng.buffer.zeroize();
    if !context.starttls_offered {
        return Record::error_code(reqid, ErrorCode::FacilityStartTls);
    }
    let Some(request) = checked else {
        debug!(target: TARGET_UNIXSOCK, connection = context.connection.0, reqid,
            in1_len = prng.in1_len, in2_len = prng.in2_len, prng_len = prng.prng_len,
            "PRNG lengths or label rejected");
        return Record::error_code(reqid, ErrorCode::PrngUnavailable);
    };
    let Some(queries) = context
        .sessions
        .attached_queries(&ctlkey, context.connection)
    else {
        return Record::error_code(reqid, ErrorCode::CtlkeyNotFound);
    };
    let len = request.len;
    let exported = queries
        .run(move |session: &Session| {
            let mut out = vec![0u8; request.len];
            session
                .export_keying_material(&request.label, request.context.as_deref(), &mut out)
                .map(|()| out)
        })
        .await;
    match exported {
        Ok(Ok(mut out)) => {
            prng.buffer[..len].copy_from_slice(&out);
            out.zeroize();
            Record::new(reqid, Payload::Prng(prng))
        }
        Ok(Err(error)) => failure(reqid, ErrorCode::PrngUnavailable, &error),
        Err(error) => failure(reqid, ErrorCode::CtlkeyNotFound, &error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(label: &[u8], in2_len: i16, prng_len: i16) -> Prng {
        let mut prng = Prng::request(&[7; 16], label, None, 16).unwrap();
        prng.in2_len = in2_len;
        prng.prng_len = prng_len;
        prng
    }

    #[test]
    fn registered_labels_are_allowed() {
        for label in REGISTERED_LABELS {
            assert!(label_allowed(label.as_bytes()), "{label}");
        }
        assert!(label_allowed(b"EXPERIMENTAL-x"));
    }

    #[test]
    fn other_labels_are_rejected() {
        for label in FORBIDDEN_LABELS {
            assert!(!label_allowed(label.as_bytes()), "{label}");
        }
        assert!(!label_allowed(b"EXPERIMENTAL"));
        assert!(!label_allowed(b"experimental-x"));
        assert!(!label_allowed(b"ttls challenge "));
        assert!(!label_allowed(b"EXPORTER-my-protocol"));
    }

    #[test]
    fn lengths_are_checked() {
        let label = b"EXPERIMENTAL-tlspool-test";
        assert!(check_request(&request(label, -1, 350)).is_some());
        assert!(check_request(&request(label, -1, 351)).is_none());
        assert!(check_request(&request(label, -1, -1)).is_none());
        let room = i16::try_from(PRNG_BUF_LEN - CTLKEY_LEN - label.len()).unwrap();
        assert!(check_request(&request(label, room, 16)).is_some());
        assert!(check_request(&request(label, room + 1, 16)).is_none());
        let mut empty = request(label, -1, 16);
        empty.in1_len = 0;
        assert!(check_request(&empty).is_none());
    }

    #[test]
    fn negative_context_length_means_no_context() {
        let label = b"EXPERIMENTAL-tlspool-test";
        let none = check_request(&request(label, -1, 16)).unwrap();
        assert_eq!(none.context, None);
        let empty = check_request(&request(label, 0, 16)).unwrap();
        assert_eq!(empty.context, Some(Vec::new()));
    }
}
