//! DANE for a peer that sent an RFC 7250 raw public key instead of a certificate chain.
//!
//! A raw public key has no certificate, no names and no issuer, so only DANE-EE (3) records
//! with the SubjectPublicKeyInfo selector (1) can match it (RFC 7250, RFC 7671). Records of other usages or selectors are ignored for such a peer, with the
//! reason in the mismatch list.

use tracing::debug;

use super::tlsa::{Selector, TlsaRecord, Usage};
use super::{DaneMatch, DaneOutcome, Transport, lookup_usable_tlsa, tlsa_owner};
use crate::dns::Resolver;

/// The subject reported in a [`DaneMatch`] for a raw public key.
const RAW_KEY_SUBJECT: &str = "the raw public key";

/// Checks the DER SubjectPublicKeyInfo `raw_public_key` that the peer at `host`, `port` and
/// `transport` sent against the TLSA records of that service.
///
/// The lookup and the outcomes are those of [`check`](super::check). A secure DANE-EE record
/// with the SubjectPublicKeyInfo selector whose data matches the key is a
/// [`DaneOutcome::Match`]. Secure records without such a match are a
/// [`DaneOutcome::NoMatch`] with one reason per record.
pub async fn check_raw_public_key(
    resolver: &Resolver,
    host: &str,
    port: u16,
    transport: Transport,
    raw_public_key: &[u8],
) -> DaneOutcome {
    let owner = tlsa_owner(host, port, transport);
    let usable = match lookup_usable_tlsa(resolver, &owner).await {
        Ok(usable) => usable,
        Err(outcome) => return outcome,
    };
    match match_raw_key(&usable, raw_public_key) {
        Ok(found) => {
            debug!(owner = %owner, record = %found.record, "tlsa record matches the raw public key");
            DaneOutcome::Match(found)
        }
        Err(reasons) => {
            debug!(owner = %owner, reasons = ?reasons, "no tlsa record matches the raw public key");
            DaneOutcome::NoMatch(reasons)
        }
    }
}

/// Returns the first DANE-EE SubjectPublicKeyInfo record of `records` that matches
/// `raw_public_key`, or the reason each record failed.
fn match_raw_key(records: &[TlsaRecord], raw_public_key: &[u8]) -> Result<DaneMatch, Vec<String>> {
    let mut reasons = Vec::new();
    for record in records {
        if record.usage != Usage::DaneEe || record.selector != Selector::SubjectPublicKeyInfo {
            reasons.push(format!(
                "TLSA {record}: only DANE-EE records with the SubjectPublicKeyInfo selector \
                 apply to a raw public key"
            ));
            continue;
        }
        if record.matches_data(raw_public_key) {
            return Ok(DaneMatch {
                record: record.clone(),
                subject: RAW_KEY_SUBJECT.to_owned(),
            });
        }
        reasons.push(format!("TLSA {record}: the raw public key does not match"));
    }
    Err(reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256(data: &[u8]) -> Vec<u8> {
        ring::digest::digest(&ring::digest::SHA256, data)
            .as_ref()
            .to_vec()
    }

    #[test]
    fn dane_ee_spki_record_matches_raw_key() {
        let key = b"a DER SubjectPublicKeyInfo";
        let exact = TlsaRecord::from_fields(3, 1, 0, key).expect("usable record");
        let digest = TlsaRecord::from_fields(3, 1, 1, &sha256(key)).expect("usable record");
        for record in [exact, digest] {
            let found = match_raw_key(std::slice::from_ref(&record), key);
            assert_eq!(found.map(|found| found.record), Ok(record));
        }
    }

    #[test]
    fn other_usages_and_selectors_do_not_apply() {
        let key = b"a DER SubjectPublicKeyInfo";
        let digest = sha256(key);
        let records: Vec<TlsaRecord> = [(2, 1), (1, 1), (0, 1), (3, 0)]
            .into_iter()
            .map(|(usage, selector)| {
                TlsaRecord::from_fields(usage, selector, 1, &digest).expect("usable record")
            })
            .collect();
        let reasons = match_raw_key(&records, key).expect_err("no record applies");
        assert_eq!(reasons.len(), 4);
        for reason in &reasons {
            assert!(reason.contains("only DANE-EE records"), "{reason}");
        }
    }

    #[test]
    fn wrong_key_is_no_match() {
        let record =
            TlsaRecord::from_fields(3, 1, 1, &sha256(b"another key")).expect("usable record");
        let reasons = match_raw_key(&[record], b"the peer's key").expect_err("no match");
        assert_eq!(reasons.len(), 1);
        assert!(reasons[0].contains("does not match"), "{}", reasons[0]);
    }
}
