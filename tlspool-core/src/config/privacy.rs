//! The registry of services and local roles for which privacy mode, the anonymous precursor
//! handshake, is permitted: the built-in entries of the TLS Pool and the entries an
//! administrator adds with `tls_privacy_services`.

use super::value::Reason;

/// Local roles of a registry entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivacyRoles {
    /// The daemon is the TLS client.
    Client,
    /// The daemon is the TLS server.
    Server,
    /// Either role.
    Both,
}

impl PrivacyRoles {
    /// Returns whether the entry covers the local role `server` (true) or client (false).
    pub fn covers(self, server: bool) -> bool {
        match self {
            Self::Both => true,
            Self::Server => server,
            Self::Client => !server,
        }
    }
}

/// The built-in entries, those the TLS Pool designed. `imap` has both roles because renegotiation
/// here always requires the RFC 7627 extended master secret.
pub const BUILT_IN_PRIVACY_SERVICES: &[(&str, PrivacyRoles)] = &[
    ("generic_anonpre", PrivacyRoles::Both),
    ("http", PrivacyRoles::Client),
    ("imap", PrivacyRoles::Both),
    ("pop3", PrivacyRoles::Both),
    ("smtp", PrivacyRoles::Both),
];

/// Parses a `tls_privacy_services` value: comma-separated entries `SERVICE` (either role),
/// `SERVICE:client` or `SERVICE:server`, with IANA service names of at most 15 bytes.
pub(crate) fn privacy_services(value: &str) -> Result<Vec<(String, PrivacyRoles)>, Reason> {
    value.split(',').map(privacy_entry).collect()
}

fn privacy_entry(entry: &str) -> Result<(String, PrivacyRoles), Reason> {
    let (service, roles) = match entry.split_once(':') {
        None => (entry, PrivacyRoles::Both),
        Some((service, "client")) => (service, PrivacyRoles::Client),
        Some((service, "server")) => (service, PrivacyRoles::Server),
        Some((_, role)) => {
            return Err(format!(
                "entry {entry:?} has role {role:?}; expected client or server"
            ));
        }
    };
    let valid = !service.is_empty()
        && service.len() <= 15
        && service
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(format!(
            "entry {entry:?} needs a service name of 1 to 15 letters, digits, - or _"
        ));
    }
    Ok((service.to_owned(), roles))
}

/// Returns whether privacy mode is permitted for `service` in the local role `server`, by the
/// built-in entries and `configured`.
pub fn privacy_permitted(
    configured: &[(String, PrivacyRoles)],
    service: &str,
    server: bool,
) -> bool {
    let built_in = BUILT_IN_PRIVACY_SERVICES
        .iter()
        .map(|(name, roles)| (*name, *roles));
    let added = configured
        .iter()
        .map(|(name, roles)| (name.as_str(), *roles));
    built_in
        .chain(added)
        .any(|(name, roles)| name == service && roles.covers(server))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_with_roles() {
        let parsed = privacy_services("xmpp,ldap:server,ftp:client").expect("valid");

        assert_eq!(
            parsed,
            [
                ("xmpp".to_owned(), PrivacyRoles::Both),
                ("ldap".to_owned(), PrivacyRoles::Server),
                ("ftp".to_owned(), PrivacyRoles::Client),
            ]
        );
    }

    #[test]
    fn invalid_entries_are_rejected() {
        for value in ["", "xmpp,", "ldap:peer", "a b", "sixteen-letters-"] {
            assert!(privacy_services(value).is_err(), "{value:?}");
        }
    }

    #[test]
    fn registry_follows_role() {
        let added = privacy_services("ldap:server").expect("valid");

        assert!(privacy_permitted(&added, "http", false));
        assert!(!privacy_permitted(&added, "http", true));
        assert!(privacy_permitted(&added, "generic_anonpre", true));
        assert!(privacy_permitted(&added, "ldap", true));
        assert!(!privacy_permitted(&added, "ldap", false));
        assert!(!privacy_permitted(&added, "generic", false));
    }
}
