//! CONTROL_DETACH, CONTROL_REATTACH, PRNG and INFO: the request records both client flavours
//! send and the reading of the daemon's replies.
//!
//! The requests are checked against the limits of the TLS Pool client library before they
//! are sent: a label and a context of at most 254 bytes each and 334 together, at most 350
//! bytes of keying material, and an INFO value of at most 334 bytes.

use tlspool_proto::{
    Control, CtlKey, INFO_BUF_LEN, Info, InfoKind, PRNG_BUF_LEN, Payload, PrivacyMode, Prng, Record,
};

use crate::ClientError;

/// Maximum length of a PRNG label and of a PRNG context, in bytes.
pub const MAX_PRNG_INPUT_LEN: usize = 254;
/// Maximum length of a PRNG label and context together, in bytes.
pub const MAX_PRNG_INPUTS_LEN: usize = 334;
/// Maximum bytes of keying material one PRNG request returns.
pub const MAX_PRNG_LEN: usize = PRNG_BUF_LEN;
/// Maximum length of an INFO value, in bytes.
pub const MAX_INFO_LEN: usize = INFO_BUF_LEN;

fn check_length(
    command: &'static str,
    field: &'static str,
    value: usize,
    min: usize,
    max: usize,
) -> Result<(), ClientError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ClientError::InvalidLength {
            command,
            field,
            value,
            min,
            max,
        })
    }
}

/// Builds the payload of CONTROL_DETACH.
pub(crate) fn detach_request(ctlkey: &CtlKey) -> Payload {
    Payload::ControlDetach(Control::new(*ctlkey))
}

/// Builds the payload of CONTROL_REATTACH.
pub(crate) fn reattach_request(ctlkey: &CtlKey) -> Payload {
    Payload::ControlReattach(Control::new(*ctlkey))
}

/// Reads the daemon's reply to CONTROL_DETACH or CONTROL_REATTACH.
pub(crate) fn control_reply(record: Record) -> Result<(), ClientError> {
    match record.payload {
        Payload::Success => Ok(()),
        Payload::Error(error) => Err(ClientError::from_daemon(error)),
        other => Err(ClientError::UnexpectedReply { cmd: other.cmd() }),
    }
}

/// Builds the payload of PRNG after checking the client library's limits.
pub(crate) fn prng_request(
    ctlkey: &CtlKey,
    label: &str,
    context: Option<&[u8]>,
    len: usize,
) -> Result<Payload, ClientError> {
    let context_len = context.map_or(0, <[u8]>::len);
    check_length("PRNG", "label", label.len(), 1, MAX_PRNG_INPUT_LEN)?;
    check_length("PRNG", "context", context_len, 0, MAX_PRNG_INPUT_LEN)?;
    check_length(
        "PRNG",
        "label and context",
        label.len() + context_len,
        1,
        MAX_PRNG_INPUTS_LEN,
    )?;
    check_length("PRNG", "output", len, 0, MAX_PRNG_LEN)?;
    Ok(Payload::Prng(Prng::request(
        ctlkey,
        label.as_bytes(),
        context,
        len,
    )?))
}

/// Reads the daemon's reply to PRNG: the keying material.
pub(crate) fn prng_reply(record: Record) -> Result<Vec<u8>, ClientError> {
    match record.payload {
        Payload::Prng(prng) => Ok(prng.output()?.to_vec()),
        Payload::Error(error) => Err(ClientError::from_daemon(error)),
        other => Err(ClientError::UnexpectedReply { cmd: other.cmd() }),
    }
}

/// Builds the payload of INFO: a query without `value`, a check with it.
pub(crate) fn info_request(
    ctlkey: &CtlKey,
    kind: InfoKind,
    value: Option<&[u8]>,
) -> Result<Payload, ClientError> {
    let info = match value {
        None => Info::query(*ctlkey, kind),
        Some(value) => {
            check_length("INFO", "value", value.len(), 0, MAX_INFO_LEN)?;
            Info::with_value(*ctlkey, kind, value)?
        }
    };
    Ok(Payload::Info(info))
}

/// Reads the daemon's reply to INFO: the value returned, or the checked value echoed.
pub(crate) fn info_reply(record: Record) -> Result<Vec<u8>, ClientError> {
    match record.payload {
        Payload::Info(info) => Ok(info.value()?.map(<[u8]>::to_vec).unwrap_or_default()),
        Payload::Error(error) => Err(ClientError::from_daemon(error)),
        other => Err(ClientError::UnexpectedReply { cmd: other.cmd() }),
    }
}

/// Parses the value of a `PIOK_INFO_PRIVACY_MODE` reply.
pub(crate) fn privacy_mode(value: &[u8]) -> Result<PrivacyMode, ClientError> {
    PrivacyMode::from_name(value).ok_or_else(|| ClientError::UnknownInfoValue {
        kind: InfoKind::PRIVACY_MODE.0,
        value: String::from_utf8_lossy(value).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: CtlKey = [3; 16];

    fn rejected_field(result: Result<Payload, ClientError>) -> &'static str {
        match result {
            Err(ClientError::InvalidLength { field, .. }) => field,
            other => panic!("expected a length error, got {other:?}"),
        }
    }

    #[test]
    fn prng_limits_are_checked() {
        let long = "E".repeat(255);
        let context = [0u8; 255];
        assert_eq!(rejected_field(prng_request(&KEY, "", None, 16)), "label");
        assert_eq!(rejected_field(prng_request(&KEY, &long, None, 16)), "label");
        assert_eq!(
            rejected_field(prng_request(&KEY, "EXPERIMENTAL-x", Some(&context), 16)),
            "context"
        );
        let label = "E".repeat(254);
        assert_eq!(
            rejected_field(prng_request(&KEY, &label, Some(&context[..81]), 16)),
            "label and context"
        );
        assert!(prng_request(&KEY, &label, Some(&context[..80]), 16).is_ok());
        assert_eq!(
            rejected_field(prng_request(&KEY, "EXPERIMENTAL-x", None, 351)),
            "output"
        );
        assert!(prng_request(&KEY, "EXPERIMENTAL-x", None, 350).is_ok());
    }

    #[test]
    fn prng_context_absence_is_kept() {
        let Payload::Prng(none) = prng_request(&KEY, "EXPERIMENTAL-x", None, 16).unwrap() else {
            panic!("not a PRNG payload");
        };
        assert_eq!(none.in2_len, -1);
        let Payload::Prng(empty) = prng_request(&KEY, "EXPERIMENTAL-x", Some(&[]), 16).unwrap()
        else {
            panic!("not a PRNG payload");
        };
        assert_eq!(empty.in2_len, 0);
        assert_eq!(empty.ctlkey(), KEY);
    }

    #[test]
    fn info_value_limit_is_checked() {
        let value = [0u8; 335];
        assert_eq!(
            rejected_field(info_request(
                &KEY,
                InfoKind::PEERCERT_SUBJECTALTNAME,
                Some(&value)
            )),
            "value"
        );
        let Payload::Info(query) = info_request(&KEY, InfoKind::PEERCERT_SUBJECT, None).unwrap()
        else {
            panic!("not an INFO payload");
        };
        assert!(query.is_query());
        assert!(info_request(&KEY, InfoKind::PEERCERT_SUBJECTALTNAME, Some(&value[..334])).is_ok());
    }

    #[test]
    fn privacy_mode_unknown_value_is_named() {
        assert_eq!(privacy_mode(b"tls1.3").unwrap(), PrivacyMode::Tls13);
        match privacy_mode(b"opportunistic") {
            Err(ClientError::UnknownInfoValue { kind, value }) => {
                assert_eq!(kind, InfoKind::PRIVACY_MODE.0);
                assert_eq!(value, "opportunistic");
            }
            other => panic!("expected an unknown value error, got {other:?}"),
        }
    }
}
