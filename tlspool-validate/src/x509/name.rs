//! Name checks: the remote identity against the names of the end certificate (RFC 6125
//! section 6 for DNS names, RFC 5280 section 4.2.1.6 for mail addresses), and names against
//! the dNSName and rfc822Name subtrees of nameConstraints (RFC 5280 section 4.2.1.10).
//!
//! All comparisons are ASCII and case-insensitive, except the local part of a mail address,
//! which is compared exactly. Internationalised names are compared in their A-label form
//! (`xn--...`); a name with non-ASCII characters matches nothing.
//!
//! [`identity_names`] lists every name that [`check_name`] compares and that the pool may
//! take as the peer's identity, so the nameConstraints check covers exactly those names.

use super::{Certificate, ValidateError};

/// A name a certificate presents for its holder, by the kind it is compared as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresentedName<'a> {
    /// A DNS name: a subjectAltName dNSName, or a commonName in host name syntax.
    Dns(&'a str),
    /// A mail address: a subjectAltName rfc822Name, a subject emailAddress, or a commonName
    /// that contains `@`.
    Mail(&'a str),
}

impl<'a> PresentedName<'a> {
    /// Returns the name as the certificate spells it.
    pub fn text(&self) -> &'a str {
        match self {
            Self::Dns(name) | Self::Mail(name) => name,
        }
    }
}

/// Returns the names of the end certificate `cert` that may identify its holder, in order
/// of preference: the dNSName and rfc822Name subjectAltName entries, the subject
/// emailAddress attributes, then the commonName attributes that [`check_name`] compares.
///
/// A commonName counts as a mail address when it contains `@` and the certificate has no
/// subjectAltName extension, and as a DNS name when it is in host name syntax and the
/// certificate has no dNSName entry. Any other commonName (`Alice Smith`) identifies nothing.
pub fn identity_names(cert: &Certificate) -> Vec<PresentedName<'_>> {
    let mut names = alt_and_email_names(cert);
    names.extend(common_name_identities(cert));
    names
}

/// Returns the subjectAltName dNSName and rfc822Name entries and the subject emailAddress
/// attributes, which name a certificate's holder wherever the certificate sits in a path.
pub(crate) fn alt_and_email_names(cert: &Certificate) -> Vec<PresentedName<'_>> {
    let mut names: Vec<PresentedName<'_>> = cert
        .dns_names()
        .into_iter()
        .map(PresentedName::Dns)
        .collect();
    names.extend(cert.email_names().into_iter().map(PresentedName::Mail));
    names.extend(
        cert.email_addresses()
            .iter()
            .map(|mail| PresentedName::Mail(mail)),
    );
    names
}

/// Returns the commonName attributes that stand in for missing subjectAltName entries, each
/// with the kind it is compared as.
fn common_name_identities(cert: &Certificate) -> Vec<PresentedName<'_>> {
    let mail_allowed = !cert.has_subject_alt_name();
    let dns_allowed = cert.dns_names().is_empty();
    cert.common_names()
        .iter()
        .filter_map(|cn| {
            if cn.contains('@') {
                mail_allowed.then_some(PresentedName::Mail(cn.as_str()))
            } else {
                (dns_allowed && is_host_name(cn)).then_some(PresentedName::Dns(cn.as_str()))
            }
        })
        .collect()
}

/// Checks that `cert` carries `remote_id`: a DNS name, or `user@domain` for a mail address.
///
/// A DNS name is looked up among the subjectAltName dNSName entries; only when the
/// certificate has none are the subject commonName attributes in host name syntax used. A
/// mail address is looked up among the rfc822Name entries. Only a certificate without any
/// subjectAltName extension has its subject emailAddress attributes and the commonName
/// attributes that contain `@` compared instead.
///
/// # Errors
///
/// [`ValidateError::NameMismatch`] with the names that were compared.
pub fn check_name(cert: &Certificate, remote_id: &str) -> Result<(), ValidateError> {
    let is_mail = remote_id.contains('@');
    let presented: Vec<String> = if is_mail && cert.has_subject_alt_name() {
        cert.email_names().into_iter().map(str::to_owned).collect()
    } else {
        identity_names(cert)
            .into_iter()
            .filter_map(|name| match name {
                PresentedName::Dns(dns) if !is_mail => Some(dns.to_owned()),
                PresentedName::Mail(mail) if is_mail => Some(mail.to_owned()),
                _ => None,
            })
            .collect()
    };

    let matches = |name: &String| {
        if is_mail {
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

/// Tells whether `name` is in host name syntax: letters, digits, `-` and `_` in non-empty
/// labels, with an optional trailing dot and an optional `*` as the whole first label.
fn is_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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
/// matches every name. A wildcard name matches when any name it stands for would. Returns
/// `None` when `name` or `base` is not ASCII, so the two cannot be compared.
pub(crate) fn dns_in_subtree(name: &str, base: &str) -> Option<bool> {
    let name = normalise_dns(name)?;
    let base = normalise_dns(base)?;
    if base.is_empty() {
        return Some(true);
    }
    if let Some(below) = base.strip_prefix('.') {
        return Some(name.ends_with(&format!(".{below}")));
    }
    if name == base || name.ends_with(&format!(".{base}")) {
        return Some(true);
    }

    // `*.example.com` stands for `a.example.com`, so it meets the subtree `a.example.com`.
    let wildcard_meets = match name.strip_prefix("*.") {
        Some(suffix) => base
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => false,
    };
    Some(wildcard_meets)
}

/// Tells whether the mail address `mail` lies in the rfc822Name subtree `base`: a whole
/// mailbox (`user@host`), every mailbox at one host (`host`), or every mailbox at the hosts
/// below a domain (`.domain`). Returns `None` when `mail` has no local part and host, or
/// either has non-ASCII characters, so the two cannot be compared.
pub(crate) fn mail_in_subtree(mail: &str, base: &str) -> Option<bool> {
    let (local, host) = mail.rsplit_once('@')?;
    if local.is_empty() || !mail.is_ascii() {
        return None;
    }
    if base.contains('@') {
        return base.is_ascii().then(|| mail_matches(mail, base));
    }
    let host = normalise_dns(host)?;
    let base = normalise_dns(base)?;
    let inside = match base.strip_prefix('.') {
        Some(domain) => host.ends_with(&format!(".{domain}")),
        None => host == base,
    };
    Some(inside)
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
        assert_eq!(dns_in_subtree("example.com", "example.com"), Some(true));
        assert_eq!(dns_in_subtree("a.Example.com", "example.COM"), Some(true));
        assert_eq!(dns_in_subtree("badexample.com", "example.com"), Some(false));
        assert_eq!(dns_in_subtree("example.com", ".example.com"), Some(false));
        assert_eq!(dns_in_subtree("a.example.com", ".example.com"), Some(true));
        assert_eq!(dns_in_subtree("anything.org", ""), Some(true));
        assert_eq!(dns_in_subtree("*.example.com", "a.example.com"), Some(true));
        assert_eq!(
            dns_in_subtree("*.example.com", "a.b.example.com"),
            Some(false)
        );

        assert_eq!(mail_in_subtree("a@example.com", "example.com"), Some(true));
        assert_eq!(
            mail_in_subtree("a@sub.example.com", "example.com"),
            Some(false)
        );
        assert_eq!(
            mail_in_subtree("a@sub.example.com", ".example.com"),
            Some(true)
        );
        assert_eq!(
            mail_in_subtree("root@example.com", "root@EXAMPLE.com"),
            Some(true)
        );
        assert_eq!(
            mail_in_subtree("admin@example.com", "root@example.com"),
            Some(false)
        );
    }

    #[test]
    fn subtree_matching_rejects_uncomparable_names() {
        assert_eq!(dns_in_subtree("bücher.example", "example"), None);
        assert_eq!(mail_in_subtree("alice@bücher.example", "example"), None);
        assert_eq!(mail_in_subtree("alice", "example.com"), None);
        assert_eq!(mail_in_subtree("@example.com", "example.com"), None);
    }

    #[test]
    fn identity_names_follow_check_name_rules() {
        let cert = self_signed(params("alice@example.com")).parsed();
        assert_eq!(
            identity_names(&cert),
            vec![PresentedName::Mail("alice@example.com")]
        );

        let cert = self_signed(params("localhost")).parsed();
        assert_eq!(identity_names(&cert), vec![PresentedName::Dns("localhost")]);

        let cert = self_signed(params("Alice Smith")).parsed();
        assert_eq!(identity_names(&cert), vec![]);

        let mut with_mail = params("alice@example.com");
        with_mail.subject_alt_names =
            vec![SanType::Rfc822Name("bob@example.com".try_into().unwrap())];
        let cert = self_signed(with_mail).parsed();
        assert_eq!(
            identity_names(&cert),
            vec![PresentedName::Mail("bob@example.com")],
            "a subjectAltName hides a mail commonName"
        );

        let cert = self_signed(server_params("cn.example.com", &["san.example.com"])).parsed();
        assert_eq!(
            identity_names(&cert),
            vec![PresentedName::Dns("san.example.com")],
            "a dNSName entry hides a DNS commonName"
        );
    }

    #[test]
    fn common_name_outside_host_syntax_matches_nothing() {
        let cert = self_signed(params("Alice Smith")).parsed();
        assert!(check_name(&cert, "alice smith").is_err());
        assert!(check_name(&cert, "Alice Smith").is_err());
    }

    #[test]
    fn host_name_syntax() {
        assert!(is_host_name("localhost"));
        assert!(is_host_name("www.example.com."));
        assert!(is_host_name("*.example.com"));
        assert!(is_host_name("_srv.example.com"));
        assert!(!is_host_name("Alice Smith"));
        assert!(!is_host_name("bücher.example"));
        assert!(!is_host_name("a..example"));
        assert!(!is_host_name("*"));
        assert!(!is_host_name(""));
    }
}
