//! The comparison of OpenPGP keys from `pgpKey` values with the peer's key: decoding radix-64
//! (RFC 4880 section 6), walking the packets (RFC 4880 section 4.2, RFC 9580 section 4.2), and
//! finding the primary public key packet and any revocation signature, and matching the values
//! against a raw public key.

use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sequoia_openpgp::policy::StandardPolicy;
use tracing::debug;

use crate::openpgp::match_raw_public_key;

/// Packet tag of a signature packet.
const TAG_SIGNATURE: u8 = 2;
/// Packet tag of a public key packet (the primary key of a transferable public key).
const TAG_PUBLIC_KEY: u8 = 6;
/// Signature types that revoke: key revocation, subkey revocation, certification revocation.
const REVOCATION_TYPES: [u8; 3] = [0x20, 0x28, 0x30];

/// What a transferable public key contains, as far as the directory check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeySummary {
    /// Body of the first public key packet.
    pub(crate) primary_key: Vec<u8>,
    /// Whether any signature packet is a key, subkey or certification revocation.
    pub(crate) revoked: bool,
}

/// Summarises a binary transferable public key, or returns `None` when its packets do not
/// parse or the first packet is not a public key packet.
///
/// Revocation signatures are recognised by their type alone: they are not verified, so a
/// forged revocation can only make the check fail, never succeed.
pub(crate) fn summarize(mut packets: &[u8]) -> Option<KeySummary> {
    let mut primary_key = None;
    let mut revoked = false;
    while !packets.is_empty() {
        let (tag, body, rest) = next_packet(packets)?;
        match tag {
            TAG_PUBLIC_KEY if primary_key.is_none() => primary_key = Some(body.to_vec()),
            _ if primary_key.is_none() => return None,
            TAG_SIGNATURE => revoked |= is_revocation(body),
            _ => {}
        }
        packets = rest;
    }
    Some(KeySummary {
        primary_key: primary_key?,
        revoked,
    })
}

/// Tells whether one of the `pgpKey` `values` is an OpenPGP key of `remote_id` whose
/// authentication key is the raw public key `spki`, valid now under sequoia's standard policy.
pub(crate) fn holds_raw_public_key(values: &[Vec<u8>], spki: &[u8], remote_id: &str) -> bool {
    let keys: Vec<Vec<u8>> = values
        .iter()
        .filter_map(|value| decode_value(value))
        .collect();
    let policy = StandardPolicy::new();
    let found = match_raw_public_key(
        spki,
        remote_id,
        keys.iter().map(Vec::as_slice),
        &policy,
        SystemTime::now(),
    );
    match found {
        Ok(found) => {
            debug!(remote_id, key = %found.key.key, "pgpKey value matches the raw public key");
            true
        }
        Err(error) => {
            debug!(remote_id, %error, "no pgpKey value matches the raw public key");
            false
        }
    }
}

/// Decodes one `pgpKey` value: ASCII armor, bare radix-64, or binary packets.
pub(crate) fn decode_value(value: &[u8]) -> Option<Vec<u8>> {
    let first = *value.first()?;
    if first & 0x80 != 0 {
        return Some(value.to_vec());
    }
    let text = std::str::from_utf8(value).ok()?;
    let radix64: String = if text.trim_start().starts_with("-----BEGIN PGP") {
        armor_body(text)?
    } else {
        text.split_whitespace().collect()
    };
    STANDARD.decode(radix64).ok()
}

/// Returns the radix-64 text between the armor headers and the checksum line.
///
/// NOTE: the CRC-24 checksum line is skipped, not verified.
fn armor_body(text: &str) -> Option<String> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .skip_while(|line| !line.starts_with("-----BEGIN"));
    lines.next()?;
    let mut body = String::new();
    let mut in_headers = true;
    for line in lines {
        if in_headers {
            in_headers = !line.is_empty() && line.contains(": ");
            if in_headers || line.is_empty() {
                continue;
            }
        }
        if line.starts_with("-----END") || (line.starts_with('=') && line.len() == 5) {
            return Some(body);
        }
        body.push_str(line);
    }
    None
}

/// Splits the first packet off `data`: its tag, its body and the remaining bytes.
fn next_packet(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let header = *data.first()?;
    if header & 0x80 == 0 {
        return None;
    }
    let (tag, length, header_len) = if header & 0x40 != 0 {
        let (length, size) = new_format_length(data.get(1..)?)?;
        (header & 0x3f, length, 1 + size)
    } else {
        let size = match header & 0x03 {
            0 => 1,
            1 => 2,
            2 => 4,
            // Indeterminate length never occurs in a key.
            _ => return None,
        };
        let bytes = data.get(1..1 + size)?;
        let length = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        ((header >> 2) & 0x0f, length, 1 + size)
    };
    let end = header_len.checked_add(length)?;
    let body = data.get(header_len..end)?;
    Some((tag, body, &data[end..]))
}

/// Decodes a new-format body length and returns it with the number of octets it took.
fn new_format_length(data: &[u8]) -> Option<(usize, usize)> {
    let first = usize::from(*data.first()?);
    match first {
        0..=191 => Some((first, 1)),
        192..=223 => {
            let second = usize::from(*data.get(1)?);
            Some((((first - 192) << 8) + second + 192, 2))
        }
        255 => {
            let bytes = data.get(1..5)?;
            let length = bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            Some((length, 5))
        }
        // Partial body lengths are only allowed for data packets, never in a key.
        _ => None,
    }
}

/// Whether a signature packet body has a revocation signature type.
fn is_revocation(body: &[u8]) -> bool {
    let signature_type = match body.first() {
        // Version 3: version, hashed length 5, signature type.
        Some(3) => body.get(2),
        // Versions 4, 5 and 6: version, signature type.
        Some(4..=6) => body.get(1),
        _ => None,
    };
    signature_type.is_some_and(|kind| REVOCATION_TYPES.contains(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![0xc0 | tag, u8::try_from(body.len()).unwrap()];
        out.extend_from_slice(body);
        out
    }

    fn key(extra: &[u8]) -> Vec<u8> {
        let mut out = packet(TAG_PUBLIC_KEY, &[4, 0, 0, 0, 1, 22, 9, 9]);
        out.extend(packet(13, b"Alice <alice@example.com>"));
        out.extend_from_slice(extra);
        out
    }

    #[test]
    fn summary_finds_primary_key() {
        let summary = summarize(&key(&packet(TAG_SIGNATURE, &[4, 0x13, 22, 8]))).unwrap();
        assert_eq!(summary.primary_key, [4, 0, 0, 0, 1, 22, 9, 9]);
        assert!(!summary.revoked);
    }

    #[test]
    fn summary_sees_revocations() {
        for kind in REVOCATION_TYPES {
            let summary = summarize(&key(&packet(TAG_SIGNATURE, &[4, kind, 22, 8]))).unwrap();
            assert!(
                summary.revoked,
                "signature type {kind:#x} not seen as revocation"
            );
        }
        let v3 = summarize(&key(&packet(TAG_SIGNATURE, &[3, 5, 0x20]))).unwrap();
        assert!(v3.revoked);
    }

    #[test]
    fn summary_reads_old_format_headers() {
        let mut data = vec![0x99, 0, 3, 4, 1, 2];
        data.extend([0x88, 2, 4, 0x20]);
        let summary = summarize(&data).unwrap();
        assert_eq!(summary.primary_key, [4, 1, 2]);
        assert!(summary.revoked);
    }

    #[test]
    fn summary_rejects_truncated_and_foreign_packets() {
        let data = key(&[]);
        assert_eq!(summarize(&data[..data.len() - 1]), None);
        assert_eq!(summarize(&packet(13, b"no key first")), None);
        assert_eq!(summarize(&[0xc6, 0xe0, 1]), None);
        assert_eq!(summarize(&[]), None);
    }

    #[test]
    fn raw_public_key_found_in_values() {
        use sequoia_openpgp::cert::{CertBuilder, CipherSuite};
        use sequoia_openpgp::serialize::SerializeInto as _;

        let generate = |user_id: &str| {
            let (cert, _) = CertBuilder::new()
                .set_cipher_suite(CipherSuite::P256)
                .add_userid(user_id)
                .add_authentication_subkey()
                .generate()
                .expect("generate an OpenPGP key");
            cert.to_vec().expect("serialize the key")
        };
        let hugh = generate("Hugh <hugh@example.com>");
        let other = generate("Other <other@example.com>");
        let policy = StandardPolicy::new();
        let spki = crate::openpgp::AuthenticationKey::from_bytes(&hugh, &policy, SystemTime::now())
            .expect("an authentication key")
            .subject_public_key_info;
        let radix64 = STANDARD.encode(&hugh).into_bytes();

        assert!(holds_raw_public_key(
            &[other.clone(), radix64],
            &spki,
            "hugh@example.com"
        ));
        assert!(!holds_raw_public_key(
            std::slice::from_ref(&hugh),
            &spki,
            "other@example.com"
        ));
        assert!(!holds_raw_public_key(&[other], &spki, "hugh@example.com"));
        assert!(!holds_raw_public_key(&[], &spki, "hugh@example.com"));
    }

    #[test]
    fn value_decodes_armor_and_bare_radix64() {
        let binary = key(&[]);
        let radix64 = STANDARD.encode(&binary);
        let armored = format!(
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\nComment: test\n\n{}\n{}\n=abcd\n\
             -----END PGP PUBLIC KEY BLOCK-----\n",
            &radix64[..20],
            &radix64[20..]
        );
        assert_eq!(decode_value(armored.as_bytes()), Some(binary.clone()));
        assert_eq!(decode_value(radix64.as_bytes()), Some(binary.clone()));
        assert_eq!(decode_value(&binary), Some(binary));
        assert_eq!(decode_value(b"not radix-64!"), None);
    }
}
