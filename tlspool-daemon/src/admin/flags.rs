//! The flag words of the command line: comma-separated, case-insensitive, as the original
//! administration tools accepted them.

use anyhow::{Context, bail};
use tlspool_core::db::{
    CredentialType, LocalIdEntry, LocalIdFlags, TrustEntry, TrustFlags, TrustType,
};

/// A parsed localid TYPE argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalIdSpec {
    /// The credential type, if a type word was given.
    pub(crate) credential_type: Option<CredentialType>,
    /// Role and option words.
    pub(crate) flags: LocalIdFlags,
    /// `nop11`: the values have no PKCS #11 URI.
    pub(crate) no_pkcs11: bool,
}

/// A parsed trust FLAGS argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TrustSpec {
    /// The type, if the words name one.
    pub(crate) trust_type: Option<TrustType>,
    /// Role and option words.
    pub(crate) flags: TrustFlags,
}

/// Parses localid words: `x509`/`X.509`, `pgp`/`OpenPGP`, `krb5`/`Kerberos`, `valexp`,
/// `client`/`cli`, `server`/`srv`, `nop11`, `chained`.
pub(crate) fn parse_localid(words: &str) -> anyhow::Result<LocalIdSpec> {
    let mut spec = LocalIdSpec {
        credential_type: None,
        flags: LocalIdFlags::empty(),
        no_pkcs11: false,
    };
    for word in split_words(words)? {
        let kind = match word.as_str() {
            "x509" | "x.509" => Some(CredentialType::X509),
            "pgp" | "openpgp" => Some(CredentialType::OpenPgp),
            "krb5" | "kerberos" => Some(CredentialType::Kerberos),
            "valexp" => Some(CredentialType::Valexp),
            "client" | "cli" => {
                spec.flags |= LocalIdFlags::ROLE_CLIENT;
                None
            }
            "server" | "srv" => {
                spec.flags |= LocalIdFlags::ROLE_SERVER;
                None
            }
            "chained" => {
                spec.flags |= LocalIdFlags::CHAINED;
                None
            }
            "nop11" => {
                spec.no_pkcs11 = true;
                None
            }
            other => bail!(
                "unknown localid flag word {other:?}; expected x509, pgp, krb5, valexp, client, \
                 server, chained or nop11"
            ),
        };
        if let Some(kind) = kind {
            if spec.credential_type.is_some_and(|k| k != kind) {
                bail!("{words:?} names more than one credential type");
            }
            spec.credential_type = Some(kind);
        }
    }
    Ok(spec)
}

/// Parses trust words: `x509`, `pgp`, `client`, `server`, `revoke`, `pinned`, `notroot`.
pub(crate) fn parse_trust(words: &str) -> anyhow::Result<TrustSpec> {
    let mut type_bits = 0u32;
    let mut flags = TrustFlags::empty();
    for word in split_words(words)? {
        match word.as_str() {
            "x509" => type_bits |= 0x001,
            "pgp" => type_bits |= 0x002,
            "revoke" => type_bits |= 0x400,
            "pinned" => type_bits |= 0x800,
            "client" => flags |= TrustFlags::ROLE_CLIENT,
            "server" => flags |= TrustFlags::ROLE_SERVER,
            "notroot" => flags |= TrustFlags::NOT_ROOT,
            other => bail!(
                "unknown trust flag word {other:?}; expected x509, pgp, client, server, revoke, \
                 pinned or notroot"
            ),
        }
    }
    let trust_type = match type_bits {
        0 => None,
        bits => Some(TrustType::from_code(bits).with_context(|| {
            format!(
                "{words:?} is no trust type; use x509, pgp, revoke with x509, pinned with x509, \
                 or pinned with pgp"
            )
        })?),
    };
    Ok(TrustSpec { trust_type, flags })
}

/// Returns the flag words of a localid entry, as printed in the FLAGS field.
pub(crate) fn localid_words(entry: &LocalIdEntry) -> String {
    let mut words = Vec::new();
    for (flag, word) in [
        (LocalIdFlags::ROLE_CLIENT, "client"),
        (LocalIdFlags::ROLE_SERVER, "server"),
        (LocalIdFlags::CHAINED, "chained"),
        (LocalIdFlags::NEEDS_CHAIN, "needs-chain"),
    ] {
        if entry.flags.contains(flag) {
            words.push(word);
        }
    }
    if entry.pkcs11_uri.is_none() {
        words.push("nop11");
    }
    join_words(&words)
}

/// Returns the flag words of a trust entry, as printed in the FLAGS field.
pub(crate) fn trust_words(entry: &TrustEntry) -> String {
    let mut words = Vec::new();
    for (flag, word) in [
        (TrustFlags::ROLE_CLIENT, "client"),
        (TrustFlags::ROLE_SERVER, "server"),
        (TrustFlags::NOT_ROOT, "notroot"),
        (TrustFlags::NOT_ROOT_LEGACY, "notroot-legacy"),
    ] {
        if entry.flags.contains(flag) {
            words.push(word);
        }
    }
    join_words(&words)
}

fn split_words(words: &str) -> anyhow::Result<Vec<String>> {
    let split: Vec<String> = words.split(',').map(str::to_ascii_lowercase).collect();
    if split.iter().any(String::is_empty) {
        bail!("empty flag word in {words:?}; separate words with single commas");
    }
    Ok(split)
}

fn join_words(words: &[&str]) -> String {
    if words.is_empty() {
        "-".to_owned()
    } else {
        words.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localid_words_combine() {
        let spec = parse_localid("X.509,Client,SRV,chained").unwrap();
        assert_eq!(spec.credential_type, Some(CredentialType::X509));
        assert_eq!(
            spec.flags,
            LocalIdFlags::ROLE_CLIENT | LocalIdFlags::ROLE_SERVER | LocalIdFlags::CHAINED
        );
        assert!(!spec.no_pkcs11);
    }

    #[test]
    fn localid_aliases_name_same_type() {
        for (a, b) in [("x509", "X.509"), ("pgp", "OpenPGP"), ("krb5", "Kerberos")] {
            assert_eq!(parse_localid(a).unwrap(), parse_localid(b).unwrap());
        }
    }

    #[test]
    fn localid_rejects_two_types_and_unknown_words() {
        assert!(parse_localid("x509,pgp").is_err());
        assert!(parse_localid("x509,bogus").is_err());
        assert!(parse_localid("x509,,client").is_err());
    }

    #[test]
    fn trust_words_build_types() {
        let cases = [
            ("x509,client", TrustType::X509),
            ("pgp", TrustType::OpenPgp),
            ("revoke,x509", TrustType::RevokeX509),
            ("PINNED,X509", TrustType::PinnedX509),
            ("pinned,pgp,server", TrustType::PinnedPgp),
        ];
        for (words, expected) in cases {
            assert_eq!(
                parse_trust(words).unwrap().trust_type,
                Some(expected),
                "{words}"
            );
        }
    }

    #[test]
    fn trust_notroot_uses_tad_notroot_bit() {
        let spec = parse_trust("x509,notroot").unwrap();
        assert_eq!(spec.flags, TrustFlags::NOT_ROOT);
    }

    #[test]
    fn trust_rejects_impossible_type() {
        assert!(parse_trust("x509,pgp").is_err());
        assert!(parse_trust("revoke,pgp").is_err());
        assert!(parse_trust("revoke").is_err());
    }
}
