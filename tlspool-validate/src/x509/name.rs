//! Name checks: the remote identity against the names of the end certificate (RFC 6125
//! section 6 for DNS names, RFC 5280 section 4.2.1.6 for mail addresses), and names against
//! the dNSName and rfc822Name subtrees of nameConstraints (RFC 5280 section 4.2.1.10).
//!
//! All comparisons are ASCII and case-insensitive, except the local part of a mail address,
//! which is compared exactly. Internationalised names are compared in their A-label form
//! (`xn--...`); a name with non-ASCII characters matches nothing.

use super::{Certificate, ValidateError};

/// Checks that `cert` carries `remote_id`: a DNS name, or `user@domain` for a mail address.
///
/// A DNS name is looked up among the subjectAltName dNSName entries; only when the
/// certificate has none are the subject commonName attributes used. A mail address is looked
/// up among the rfc822Name entries; only when the certificate has no subjectAltName extension
/// at all are the subject emailAddress and commonName attributes used.
///
/// # Errors
///
/// [`ValidateError::NameMismatch`] with the names that were compared.
pub fn check_name(cert: &Certificate, remote_id: &str) -> Result<(), ValidateError> {
    let presented: Vec<String> = if remote_id.contains('@') {
        if cert.has_subject_alt_name() {
            cert.email_names().into_iter().map(str::to_owned).collect()
        } else {
            let mut names = cert.email_addresses().to_vec();
            names.extend_from_slice(cert.common_names());
            names
        }
    } else {
        let dns_names = cert.dns_names();
        if dns_names.is_empty() {
            cert.common_names().to_vec()
        } else {
            dns_names.into_iter().map(str::to_owned).collect()
        }
    };

    let matches = |name: &String| {
        if remote_id.contains('@') {
            mail_matches(name, remote_id)
        } else {
            dns_name_matches(name, remote_id)
        }
    };
    if presented.iter().any(matches) {
        return Ok(());
    }
    Err(ValidateError::NameMismatch {
        expected: remote_id.to_owned(),
        presented,
    })
}

/// Tells whether the presented DNS name `pattern` (possibly `*.domain`) matches `host`.
///
/// A wildcard is only a whole first label, matches exactly one label, and needs at least two
/// labels after it, so `*.com` and `f*.example.com` match nothing.
pub fn dns_name_matches(pattern: &str, host: &str) -> bool {
    let (Some(pattern), Some(host)) = (normalise_dns(pattern), normalise_dns(host)) else {
        return false;
    };
    if host.contains('*') {
        return false;
    }
    let Some(suffix) = pattern.strip_prefix("*.") else {
        return !pattern.contains('*') && pattern == host;
    };

    // NOTE: without a public suffix list, `*.co.uk` is accepted like `*.example.com`.
    if suffix.contains('*') || suffix.split('.').count() < 2 {
        return false;
    }
    match host.split_once('.') {
        Some((first, rest)) => !first.is_empty() && rest == suffix,
        None => false,
    }
}

/// Tells whether the presented mail address `presented` equals `expected`: the local part
/// exactly, the domain without regard to case.
pub fn mail_matches(presented: &str, expected: &str) -> bool {
    let (Some((local, domain)), Some((expected_local, expected_domain))) =
        (presented.rsplit_once('@'), expected.rsplit_once('@'))
    else {
        return false;
    };
    presented.is_ascii()
        && expected.is_ascii()
        && local == expected_local
        && domain.eq_ignore_ascii_case(expected_domain)
}

/// Tells whether the DNS name `name` lies in the dNSName subtree `base`: it equals `base` or
/// ends in `.base`. A base with a leading dot matches only names below it, and an empty base
/// matches every name. A wildcard name matches when any name it stands for would.
pub(crate) fn dns_in_subtree(name: &str, base: &str) -> bool {
    let (Some(name), Some(base)) = (normalise_dns(name), normalise_dns(base)) else {
        // Unreachable for IA5String names and bases; the callers pass only ASCII names.
        return true;
    };
    if base.is_empty() {
        return true;
    }
    if let Some(below) = base.strip_prefix('.') {
        return name.ends_with(&format!(".{below}"));
    }
    if name == base || name.ends_with(&format!(".{base}")) {
        return true;
    }

    // `*.example.com` stands for `a.example.com`, so it meets the subtree `a.example.com`.
    match name.strip_prefix("*.") {
        Some(suffix) => base
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => false,
    }
}

/// Tells whether the mail address `mail` lies in the rfc822Name subtree `base`: a whole
/// mailbox (`user@host`), every mailbox at one host (`host`), or every mailbox at the hosts
/// below a domain (`.domain`).
pub(crate) fn mail_in_subtree(mail: &str, base: &str) -> bool {
    if base.contains('@') {
        return mail_matches(mail, base);
    }
    let Some((_, host)) = mail.rsplit_once('@') else {
        return true;
    };
    let (Some(host), Some(base)) = (normalise_dns(host), normalise_dns(base)) else {
        return true;
    };
    match base.strip_prefix('.') {
        Some(domain) => host.ends_with(&format!(".{domain}")),
        None => host == base,
    }
}

/// Lowercases an ASCII DNS name and drops one trailing dot; `None` for non-ASCII text.
fn normalise_dns(name: &str) -> Option<String> {
    if !name.is_ascii() {
        return None;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    Some(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use rcgen::SanType;

    use super::*;
    use crate::x509::testing::{params, self_signed, server_params};

    #[test]
    fn wildcard_matches_one_label() {
        assert!(dns_name_matches("*.example.com", "a.example.com"));
        assert!(dns_name_matches("*.EXAMPLE.com", "A.example.COM."));
        assert!(!dns_name_matches("*.example.com", "example.com"));
        assert!(!dns_name_matches("*.example.com", "a.b.example.com"));
        assert!(!dns_name_matches("*.example.com", ".example.com"));
    }

    #[test]
    fn wildcard_rejected_in_bad_positions() {
        assert!(!dns_name_matches("*.com", "example.com"));
        assert!(!dns_name_matches("*", "com"));
        assert!(!dns_name_matches("f*.example.com", "foo.example.com"));
        assert!(!dns_name_matches("*o.example.com", "foo.example.com"));
        assert!(!dns_name_matches("a.*.example.com", "a.b.example.com"));
        assert!(!dns_name_matches("*.*.example.com", "a.b.example.com"));
        assert!(!dns_name_matches("www.example.com", "*.example.com"));
    }

    #[test]
    fn exact_names_compare_ascii_case_insensitively() {
        assert!(dns_name_matches("WWW.Example.COM", "www.example.com"));
        assert!(dns_name_matches(
            "xn--bcher-kva.example",
            "XN--BCHER-KVA.example"
        ));
        assert!(!dns_name_matches("bücher.example", "bücher.example"));
        assert!(!dns_name_matches("www.example.com", "www.example.org"));
    }

    #[test]
    fn mail_local_part_is_exact() {
        assert!(mail_matches("Alice@Example.COM", "Alice@example.com"));
        assert!(!mail_matches("alice@example.com", "Alice@example.com"));
        assert!(!mail_matches("alice@example.com", "alice@example.org"));
    }

    #[test]
    fn san_dns_names_hide_common_name() {
        let cert = self_signed(server_params("cn.example.com", &["san.example.com"])).parsed();
        assert!(check_name(&cert, "san.example.com").is_ok());
        let err = check_name(&cert, "cn.example.com").unwrap_err();
        assert_eq!(
            err,
            ValidateError::NameMismatch {
                expected: "cn.example.com".into(),
                presented: vec!["san.example.com".into()],
            }
        );
    }

    #[test]
    fn common_name_used_without_san_dns_names() {
        let cert = self_signed(server_params("cn.example.com", &[])).parsed();
        assert!(check_name(&cert, "CN.example.com").is_ok());

        let mut with_mail = server_params("mail.example.com", &[]);
        with_mail.subject_alt_names =
            vec![SanType::Rfc822Name("a@example.com".try_into().unwrap())];
        let cert = self_signed(with_mail).parsed();
        assert!(check_name(&cert, "mail.example.com").is_ok());
    }

    #[test]
    fn mail_identity_uses_rfc822_names() {
        let mut with_mail = params("Alice");
        with_mail.subject_alt_names =
            vec![SanType::Rfc822Name("alice@Example.com".try_into().unwrap())];
        let cert = self_signed(with_mail).parsed();
        assert!(check_name(&cert, "alice@example.com").is_ok());
        assert!(check_name(&cert, "Alice@example.com").is_err());
    }

    #[test]
    fn mail_identity_without_san_uses_subject() {
        let mut subject = params("alice@example.com");
        subject.distinguished_name.push(
            rcgen::DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
            "bob@example.com",
        );
        let cert = self_signed(subject).parsed();
        assert!(check_name(&cert, "alice@EXAMPLE.com").is_ok(), "commonName");
        assert!(check_name(&cert, "bob@example.com").is_ok(), "emailAddress");
        assert!(check_name(&cert, "carol@example.com").is_err());

        let mut with_dns_san = server_params("alice@example.com", &["www.example.com"]);
        with_dns_san.key_usages = vec![];
        let cert = self_signed(with_dns_san).parsed();
        assert!(
            check_name(&cert, "alice@example.com").is_err(),
            "SAN hides the subject"
        );
    }

    #[test]
    fn subtree_matching_of_dns_and_mail() {
        assert!(dns_in_subtree("example.com", "example.com"));
        assert!(dns_in_subtree("a.Example.com", "example.COM"));
        assert!(!dns_in_subtree("badexample.com", "example.com"));
        assert!(!dns_in_subtree("example.com", ".example.com"));
        assert!(dns_in_subtree("a.example.com", ".example.com"));
        assert!(dns_in_subtree("anything.org", ""));
        assert!(dns_in_subtree("*.example.com", "a.example.com"));
        assert!(!dns_in_subtree("*.example.com", "a.b.example.com"));

        assert!(mail_in_subtree("a@example.com", "example.com"));
        assert!(!mail_in_subtree("a@sub.example.com", "example.com"));
        assert!(mail_in_subtree("a@sub.example.com", ".example.com"));
        assert!(mail_in_subtree("root@example.com", "root@EXAMPLE.com"));
        assert!(!mail_in_subtree("admin@example.com", "root@example.com"));
    }
}
