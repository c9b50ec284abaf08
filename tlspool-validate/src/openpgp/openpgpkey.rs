//! The DNS owner name of an OPENPGPKEY record (RFC 7929 section 3).

use std::fmt::Write;

/// Octets of the SHA-256 digest of the local part that form the first label.
const DIGEST_OCTETS: usize = 28;

/// Returns the owner name of the OPENPGPKEY record for `local_part@domain`.
///
/// The first label is the SHA-256 digest of the local part's UTF-8 octets, truncated to 28
/// octets and written as 56 lower-case hexadecimal digits. It is followed by `_openpgpkey` and
/// `domain` as given. The local part is hashed exactly as given: RFC 7929 leaves any case
/// folding to the caller, who may retry with a lower-cased local part.
///
/// ```
/// use tlspool_validate::openpgp::openpgpkey_owner_name;
///
/// assert_eq!(
///     openpgpkey_owner_name("hugh", "example.com"),
///     "c93f1e400f26708f98cb19d936620da35eec8f72e57f9eec01c1afd6._openpgpkey.example.com"
/// );
/// ```
pub fn openpgpkey_owner_name(local_part: &str, domain: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, local_part.as_bytes());
    let mut name = String::with_capacity(2 * DIGEST_OCTETS + "._openpgpkey.".len() + domain.len());
    for octet in &digest.as_ref()[..DIGEST_OCTETS] {
        // `fmt::Write` for `String` always returns `Ok`.
        let _ = write!(name, "{octet:02x}");
    }
    name.push_str("._openpgpkey.");
    name.push_str(domain);
    name
}
