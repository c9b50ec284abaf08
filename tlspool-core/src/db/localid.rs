//! Values of the localid database: one credential of a local identity.
//!
//! Layout of a value: `flags (u32 big-endian) ‖ PKCS #11 URI ‖ 0x00 ‖ public data`. The low byte
//! of the flags is the credential type (`LID_TYPE_*`); the other bits are roles and options
//! (`LID_ROLE_*`, `LID_CHAINED`, ...). With `LID_NO_PKCS11` the URI and its NUL are absent.

use bitflags::bitflags;

use super::{Database, DbError, Role};

/// `LID_TYPE_MASK`: the credential type in the low byte of the flags.
const TYPE_MASK: u32 = 0x0000_00ff;
/// `LID_NO_PKCS11`: no URI and NUL are present.
const NO_PKCS11: u32 = 0x0000_1000;

/// Credential type of a localid value (`LID_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CredentialType {
    /// `LID_TYPE_X509` (1): a DER X.509 certificate.
    X509,
    /// `LID_TYPE_PGP` (2): a binary OpenPGP transferable public key.
    OpenPgp,
    /// `LID_TYPE_SRP` (3): reserved, without a defined format.
    Srp,
    /// `LID_TYPE_KRB5` (4): Kerberos; the public data is empty and the URI names the password.
    Kerberos,
    /// `LID_TYPE_VALEXP` (5): a validation expression in the URI position, no public data.
    Valexp,
}

bitflags! {
    /// Role and option bits of a localid value, other than the type and `LID_NO_PKCS11`
    /// (which [`LocalIdEntry::pkcs11_uri`] being `None` stands for).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct LocalIdFlags: u32 {
        /// `LID_ROLE_CLIENT`: usable when acting as TLS client.
        const ROLE_CLIENT = 0x0000_0100;
        /// `LID_ROLE_SERVER`: usable when acting as TLS server.
        const ROLE_SERVER = 0x0000_0200;
        /// `LID_CHAINED`: the public data is concatenated DER certificates, end certificate first.
        const CHAINED = 0x0000_2000;
        /// `LID_NEEDS_CHAIN`: the chain comes from central storage.
        const NEEDS_CHAIN = 0x0000_4000;
    }
}

/// One credential of a local identity, as stored in the localid database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalIdEntry {
    /// The credential type.
    pub credential_type: CredentialType,
    /// Roles and options.
    pub flags: LocalIdFlags,
    /// The PKCS #11 URI of the private key (for [`CredentialType::Valexp`], the expression), or
    /// `None` for an entry stored with `LID_NO_PKCS11`.
    pub pkcs11_uri: Option<String>,
    /// The public data: a certificate, certificate chain or OpenPGP key, depending on the type.
    pub credential: Vec<u8>,
}

impl CredentialType {
    /// Returns the `LID_TYPE_*` code.
    pub fn code(self) -> u8 {
        match self {
            Self::X509 => 1,
            Self::OpenPgp => 2,
            Self::Srp => 3,
            Self::Kerberos => 4,
            Self::Valexp => 5,
        }
    }

    /// Returns the type with the given `LID_TYPE_*` code.
    pub fn from_code(code: u8) -> Option<Self> {
        [
            Self::X509,
            Self::OpenPgp,
            Self::Srp,
            Self::Kerberos,
            Self::Valexp,
        ]
        .into_iter()
        .find(|kind| kind.code() == code)
    }

    /// Returns the lower-case name that `tlspool-admin` prints and accepts.
    pub fn name(self) -> &'static str {
        match self {
            Self::X509 => "x509",
            Self::OpenPgp => "pgp",
            Self::Srp => "srp",
            Self::Kerberos => "krb5",
            Self::Valexp => "valexp",
        }
    }
}

impl LocalIdEntry {
    /// Decodes one localid value.
    ///
    /// # Errors
    ///
    /// [`DbError::InvalidEntry`] naming the field: a value of 4 bytes or less (`value`), an
    /// unknown type (`type`) or flag bit (`flags`), or a URI without NUL or not in UTF-8
    /// (`pkcs11_uri`).
    pub fn decode(value: &[u8]) -> Result<Self, DbError> {
        let invalid = |field, reason: String| DbError::invalid(Database::LocalId, field, reason);
        let Some((word, rest)) = value.split_first_chunk::<4>().filter(|_| value.len() > 4) else {
            return Err(invalid(
                "value",
                format!("{} bytes is too short", value.len()),
            ));
        };
        let word = u32::from_be_bytes(*word);

        let code = (word & TYPE_MASK) as u8;
        let credential_type = CredentialType::from_code(code)
            .ok_or_else(|| invalid("type", format!("unknown credential type {code}")))?;
        let other_bits = word & !TYPE_MASK & !NO_PKCS11;
        let flags = LocalIdFlags::from_bits(other_bits).ok_or_else(|| {
            let unknown = other_bits & !LocalIdFlags::all().bits();
            invalid("flags", format!("unknown flag bits {unknown:#010x}"))
        })?;

        let (pkcs11_uri, credential) = if word & NO_PKCS11 != 0 {
            (None, rest)
        } else {
            let nul = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| invalid("pkcs11_uri", "no NUL ends the URI".into()))?;
            let uri = std::str::from_utf8(&rest[..nul])
                .map_err(|_| invalid("pkcs11_uri", "not valid UTF-8".into()))?;
            (Some(uri.to_owned()), &rest[nul + 1..])
        };
        Ok(Self {
            credential_type,
            flags,
            pkcs11_uri,
            credential: credential.to_vec(),
        })
    }

    /// Encodes this entry as a localid value.
    ///
    /// # Errors
    ///
    /// [`DbError::InvalidEntry`] when the URI contains a NUL byte (`pkcs11_uri`), or an entry
    /// without URI has no public data and would be too short to decode (`credential`).
    pub fn encode(&self) -> Result<Vec<u8>, DbError> {
        let mut value = self.flag_word().to_be_bytes().to_vec();
        match &self.pkcs11_uri {
            Some(uri) if uri.contains('\0') => {
                return Err(DbError::invalid(
                    Database::LocalId,
                    "pkcs11_uri",
                    "the URI contains a NUL byte",
                ));
            }
            Some(uri) => {
                value.extend_from_slice(uri.as_bytes());
                value.push(0);
            }
            None if self.credential.is_empty() => {
                return Err(DbError::invalid(
                    Database::LocalId,
                    "credential",
                    "an entry without PKCS #11 URI needs public data",
                ));
            }
            None => {}
        }
        value.extend_from_slice(&self.credential);
        Ok(value)
    }

    /// Returns the 32-bit flag word stored in front of the value.
    pub fn flag_word(&self) -> u32 {
        let no_pkcs11 = if self.pkcs11_uri.is_none() {
            NO_PKCS11
        } else {
            0
        };
        u32::from(self.credential_type.code()) | self.flags.bits() | no_pkcs11
    }

    /// Tells whether a handshake in `role` may use this entry: the role bit is set and a
    /// PKCS #11 URI is present.
    pub fn is_usable_for(&self, role: Role) -> bool {
        let role_bit = match role {
            Role::Client => LocalIdFlags::ROLE_CLIENT,
            Role::Server => LocalIdFlags::ROLE_SERVER,
        };
        self.flags.contains(role_bit) && self.pkcs11_uri.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn historic_client_value_decodes() {
        let mut value = vec![0x00, 0x00, 0x01, 0x01];
        value.extend_from_slice(b"pkcs11:token=t;object=k\0");
        value.extend_from_slice(&[0x30, 0x82, 0x01]);
        let entry = LocalIdEntry::decode(&value).unwrap();
        assert_eq!(entry.credential_type, CredentialType::X509);
        assert_eq!(entry.flags, LocalIdFlags::ROLE_CLIENT);
        assert_eq!(entry.pkcs11_uri.as_deref(), Some("pkcs11:token=t;object=k"));
        assert_eq!(entry.credential, [0x30, 0x82, 0x01]);
        assert_eq!(entry.encode().unwrap(), value);
    }

    #[test]
    fn historic_chained_server_value_decodes() {
        let value = b"\x00\x00\x22\x01pkcs11:x\0DER".to_vec();
        let entry = LocalIdEntry::decode(&value).unwrap();
        assert_eq!(
            entry.flags,
            LocalIdFlags::ROLE_SERVER | LocalIdFlags::CHAINED
        );
        assert_eq!(entry.flag_word(), 0x2201);
        assert_eq!(entry.encode().unwrap(), value);
    }

    #[test]
    fn valexp_value_has_expression_and_no_data() {
        let value = b"\x00\x00\x03\x051\0".to_vec();
        let entry = LocalIdEntry::decode(&value).unwrap();
        assert_eq!(entry.credential_type, CredentialType::Valexp);
        assert_eq!(entry.pkcs11_uri.as_deref(), Some("1"));
        assert!(entry.credential.is_empty());
        assert_eq!(entry.encode().unwrap(), value);
    }

    #[test]
    fn no_pkcs11_value_has_no_uri() {
        let value = b"\x00\x00\x11\x01DER".to_vec();
        let entry = LocalIdEntry::decode(&value).unwrap();
        assert_eq!(entry.pkcs11_uri, None);
        assert_eq!(entry.credential, b"DER");
        assert!(!entry.is_usable_for(Role::Client));
        assert_eq!(entry.encode().unwrap(), value);
    }

    #[test]
    fn short_value_is_rejected() {
        for value in [&b""[..], b"\x00\x00\x01", b"\x00\x00\x01\x01"] {
            let err = LocalIdEntry::decode(value).unwrap_err();
            assert!(
                matches!(err, DbError::InvalidEntry { field: "value", .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn missing_nul_is_rejected() {
        let err = LocalIdEntry::decode(b"\x00\x00\x01\x01pkcs11:x").unwrap_err();
        assert!(
            matches!(
                err,
                DbError::InvalidEntry {
                    field: "pkcs11_uri",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn unknown_type_is_rejected() {
        let err = LocalIdEntry::decode(b"\x00\x00\x01\x06x\0").unwrap_err();
        assert!(
            matches!(err, DbError::InvalidEntry { field: "type", .. }),
            "{err}"
        );
        let err = LocalIdEntry::decode(b"\x00\x00\x01\x00x\0").unwrap_err();
        assert!(
            matches!(err, DbError::InvalidEntry { field: "type", .. }),
            "{err}"
        );
    }

    #[test]
    fn unknown_flag_is_rejected() {
        let err = LocalIdEntry::decode(b"\x00\x01\x01\x01x\0").unwrap_err();
        assert!(
            matches!(err, DbError::InvalidEntry { field: "flags", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("0x00010000"), "{err}");
    }

    #[test]
    fn invalid_utf8_uri_is_rejected() {
        let err = LocalIdEntry::decode(b"\x00\x00\x01\x01\xff\0").unwrap_err();
        assert!(
            matches!(
                err,
                DbError::InvalidEntry {
                    field: "pkcs11_uri",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn encode_rejects_nul_in_uri() {
        let entry = LocalIdEntry {
            credential_type: CredentialType::X509,
            flags: LocalIdFlags::ROLE_CLIENT,
            pkcs11_uri: Some("pkcs11:\0".into()),
            credential: vec![1],
        };
        let err = entry.encode().unwrap_err();
        assert!(matches!(
            err,
            DbError::InvalidEntry {
                field: "pkcs11_uri",
                ..
            }
        ));
    }

    #[test]
    fn encode_rejects_empty_entry_without_uri() {
        let entry = LocalIdEntry {
            credential_type: CredentialType::X509,
            flags: LocalIdFlags::empty(),
            pkcs11_uri: None,
            credential: vec![],
        };
        let err = entry.encode().unwrap_err();
        assert!(matches!(
            err,
            DbError::InvalidEntry {
                field: "credential",
                ..
            }
        ));
    }

    #[test]
    fn usability_follows_role_bit() {
        let entry = LocalIdEntry::decode(b"\x00\x00\x02\x01pkcs11:x\0D").unwrap();
        assert!(entry.is_usable_for(Role::Server));
        assert!(!entry.is_usable_for(Role::Client));
    }

    #[test]
    fn type_codes_round_trip() {
        for code in 1..=5 {
            let kind = CredentialType::from_code(code).unwrap();
            assert_eq!(kind.code(), code);
        }
        assert_eq!(CredentialType::from_code(0), None);
        assert_eq!(CredentialType::from_code(6), None);
    }
}
