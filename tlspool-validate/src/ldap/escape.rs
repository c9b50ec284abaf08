//! Escaping of values placed into LDAP search filters (RFC 4515) and distinguished names
//! (RFC 4514), and the search base built from a domain name.

use std::fmt::Write as _;

/// Escapes `value` for use as an assertion value inside an RFC 4515 search filter.
///
/// RFC 4515 section 3 requires `*`, `(`, `)`, `\` and NUL to be written as `\XX`. Every other
/// byte outside printable ASCII is escaped too, so the filter text stays ASCII and a value can
/// never end the assertion or add a filter component.
pub fn escape_filter_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'*' | b'(' | b')' | b'\\' => push_hex(&mut escaped, byte),
            0x21..=0x7e => escaped.push(char::from(byte)),
            _ => push_hex(&mut escaped, byte),
        }
    }
    escaped
}

/// Escapes `value` as the value of one relative distinguished name (RFC 4514 section 2.4).
///
/// `"`, `+`, `,`, `;`, `<`, `>` and `\` get a backslash, a leading space or `#` and a trailing
/// space are escaped, and NUL and every other control or non-ASCII byte is written as `\XX`.
pub fn escape_dn_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    let last = value.len().saturating_sub(1);
    for (index, byte) in value.bytes().enumerate() {
        match byte {
            b'"' | b'+' | b',' | b';' | b'<' | b'>' | b'\\' => {
                escaped.push('\\');
                escaped.push(char::from(byte));
            }
            b' ' | b'#' if index == 0 => {
                escaped.push('\\');
                escaped.push(char::from(byte));
            }
            b' ' if index == last => escaped.push_str("\\ "),
            0x20..=0x7e => escaped.push(char::from(byte)),
            _ => push_hex(&mut escaped, byte),
        }
    }
    escaped
}

/// Builds the search base `dc=LABEL,dc=LABEL,...` of a domain, one RDN per label in order.
///
/// A trailing dot (a fully qualified name) is ignored. Returns `None` for an empty domain or one
/// with an empty label.
pub fn domain_base(domain: &str) -> Option<String> {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if domain.is_empty() {
        return None;
    }
    let mut base = String::new();
    for label in domain.split('.') {
        if label.is_empty() {
            return None;
        }
        if !base.is_empty() {
            base.push(',');
        }
        base.push_str("dc=");
        base.push_str(&escape_dn_value(label));
    }
    Some(base)
}

fn push_hex(out: &mut String, byte: u8) {
    // Writing to a String cannot fail.
    let _ = write!(out, "\\{byte:02x}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_escapes_rfc4515_specials() {
        assert_eq!(escape_filter_value("a*b"), "a\\2ab");
        assert_eq!(escape_filter_value("(x)"), "\\28x\\29");
        assert_eq!(escape_filter_value("back\\slash"), "back\\5cslash");
        assert_eq!(escape_filter_value("nul\0"), "nul\\00");
    }

    #[test]
    fn filter_escapes_space_and_non_ascii() {
        assert_eq!(escape_filter_value("a b"), "a\\20b");
        assert_eq!(escape_filter_value("é"), "\\c3\\a9");
    }

    #[test]
    fn filter_keeps_plain_values() {
        assert_eq!(escape_filter_value("alice.smith-1"), "alice.smith-1");
    }

    #[test]
    fn dn_escapes_rfc4514_specials() {
        assert_eq!(escape_dn_value("a,b"), "a\\,b");
        assert_eq!(escape_dn_value("x+y=z"), "x\\+y=z");
        assert_eq!(escape_dn_value("\"q\";<>\\"), "\\\"q\\\"\\;\\<\\>\\\\");
        assert_eq!(escape_dn_value("#lead"), "\\#lead");
        assert_eq!(escape_dn_value(" both "), "\\ both\\ ");
        assert_eq!(escape_dn_value("nul\0"), "nul\\00");
    }

    #[test]
    fn domain_base_has_one_rdn_per_label() {
        assert_eq!(
            domain_base("example.com").as_deref(),
            Some("dc=example,dc=com")
        );
        assert_eq!(
            domain_base("a.example.com.").as_deref(),
            Some("dc=a,dc=example,dc=com")
        );
        assert_eq!(domain_base("x,y.com").as_deref(), Some("dc=x\\,y,dc=com"));
    }

    #[test]
    fn domain_base_rejects_empty_labels() {
        assert_eq!(domain_base(""), None);
        assert_eq!(domain_base("a..com"), None);
        assert_eq!(domain_base(".com"), None);
    }
}
