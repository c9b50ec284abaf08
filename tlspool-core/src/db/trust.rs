//! Values of the trust database: trust anchors, pinned credentials and revocation lists.
//!
//! Layout of a value: `flags (u32 big-endian) ‖ validation expression ‖ 0x00 ‖ type-specific
//! data`. The key is binary: the anchor's SubjectKeyIdentifier (which equals the
//! AuthorityKeyIdentifier of the certificates it issued), a 64-bit OpenPGP key id, or the SHA-256
//! fingerprint of a pinned end credential.

use bitflags::bitflags;

use super::{Database, DbError, Role};

/// The type bits of the flags: `TAD_TYPE_MASK` plus the revocation and pinning bits.
const TYPE_BITS: u32 = 0x0000_0cff;

/// Type of a trust value (`TAD_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrustType {
    /// `TAD_TYPE_X509` (0x001): the data is a DER root or anchor certificate.
    X509,
    /// `TAD_TYPE_PGP` (0x002): the data is a trusted direct-signing OpenPGP key.
    OpenPgp,
    /// `TAD_TYPE_REVOKE_X509` (0x401): the data is a revocation list.
    RevokeX509,
    /// `TAD_TYPE_PINNED_X509` (0x801): a pinned X.509 end certificate.
    PinnedX509,
    /// `TAD_TYPE_PINNED_PGP` (0x802): a pinned OpenPGP key.
    PinnedPgp,
}

bitflags! {
    /// Role and option bits of a trust value, other than its type.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct TrustFlags: u32 {
        /// `TAD_ROLE_CLIENT`: clients may trust this anchor.
        const ROLE_CLIENT = 0x0000_0100;
        /// `TAD_ROLE_SERVER`: servers may trust this anchor.
        const ROLE_SERVER = 0x0000_0200;
        /// `TAD_NOTROOT`: trusted, but not a root anchor.
        const NOT_ROOT = 0x0000_1000;
        /// The bit the original `tlspool-trust-set` wrote for `notroot` instead of
        /// `TAD_NOTROOT`; it is read as "not a root" and kept so that values round-trip.
        const NOT_ROOT_LEGACY = 0x0001_0000;
    }
}

/// One value of the trust database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustEntry {
    /// The type of anchor or entry.
    pub trust_type: TrustType,
    /// Roles and options.
    pub flags: TrustFlags,
    /// The validation expression for everything validated under this entry; `"1"` means no
    /// constraint.
    pub valexp: String,
    /// The type-specific data: a certificate or key, pinning timestamps or a revocation list.
    pub data: Vec<u8>,
}

/// Validity of a pinned credential: up to two timestamps in the data of a pinned entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinnedValidity {
    /// Hard expiry, in seconds since the UNIX epoch.
    pub expiry: Option<u32>,
    /// Seconds before the expiry from which a silent roll-over to a new credential is allowed.
    pub rollover_window: Option<u32>,
}

/// The data of a revocation entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationList {
    /// Time of this list, in seconds since the UNIX epoch.
    pub this_update: u32,
    /// Time of the next expected list, in seconds since the UNIX epoch.
    pub next_update: u32,
    /// The revoked serial numbers: the content octets of each DER INTEGER.
    pub serials: Vec<Vec<u8>>,
}

impl TrustType {
    /// Returns the type bits of the flag word.
    pub fn code(self) -> u32 {
        match self {
            Self::X509 => 0x001,
            Self::OpenPgp => 0x002,
            Self::RevokeX509 => 0x401,
            Self::PinnedX509 => 0x801,
            Self::PinnedPgp => 0x802,
        }
    }

    /// Returns the type with the given type bits.
    pub fn from_code(code: u32) -> Option<Self> {
        [
            Self::X509,
            Self::OpenPgp,
            Self::RevokeX509,
            Self::PinnedX509,
            Self::PinnedPgp,
        ]
        .into_iter()
        .find(|kind| kind.code() == code)
    }

    /// Returns the name that `tlspool-admin` prints.
    pub fn name(self) -> &'static str {
        match self {
            Self::X509 => "x509",
            Self::OpenPgp => "pgp",
            Self::RevokeX509 => "revoke-x509",
            Self::PinnedX509 => "pinned-x509",
            Self::PinnedPgp => "pinned-pgp",
        }
    }
}

impl TrustEntry {
    /// Decodes one trust value.
    ///
    /// # Errors
    ///
    /// [`DbError::InvalidEntry`] naming the field: a value under 6 bytes (`value`), an unknown
    /// type (`type`) or flag bit (`flags`), a missing NUL, empty or non-UTF-8 expression
    /// (`valexp`), or pinning or revocation data of the wrong length (`data`).
    pub fn decode(value: &[u8]) -> Result<Self, DbError> {
        let invalid = |field, reason: String| DbError::invalid(Database::Trust, field, reason);
        let Some((word, rest)) = value.split_first_chunk::<4>().filter(|_| value.len() >= 6) else {
            return Err(invalid(
                "value",
                format!("{} bytes is too short", value.len()),
            ));
        };
        let word = u32::from_be_bytes(*word);

        let trust_type = TrustType::from_code(word & TYPE_BITS)
            .ok_or_else(|| invalid("type", format!("unknown type {:#05x}", word & TYPE_BITS)))?;
        let other_bits = word & !TYPE_BITS;
        let flags = TrustFlags::from_bits(other_bits).ok_or_else(|| {
            let unknown = other_bits & !TrustFlags::all().bits();
            invalid("flags", format!("unknown flag bits {unknown:#010x}"))
        })?;

        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| invalid("valexp", "no NUL ends the expression".into()))?;
        let valexp = std::str::from_utf8(&rest[..nul])
            .map_err(|_| invalid("valexp", "not valid UTF-8".into()))?;
        let entry = Self {
            trust_type,
            flags,
            valexp: valexp.to_owned(),
            data: rest[nul + 1..].to_vec(),
        };
        entry.check()?;
        Ok(entry)
    }

    /// Encodes this entry as a trust value.
    ///
    /// # Errors
    ///
    /// [`DbError::InvalidEntry`] when the expression is empty or contains a NUL (`valexp`), or
    /// the data does not fit the type (`data`).
    pub fn encode(&self) -> Result<Vec<u8>, DbError> {
        self.check()?;
        let mut value = self.flag_word().to_be_bytes().to_vec();
        value.extend_from_slice(self.valexp.as_bytes());
        value.push(0);
        value.extend_from_slice(&self.data);
        Ok(value)
    }

    /// Returns the 32-bit flag word stored in front of the value.
    pub fn flag_word(&self) -> u32 {
        self.trust_type.code() | self.flags.bits()
    }

    /// Tells whether a handshake in `role` may trust this entry.
    pub fn applies_to(&self, role: Role) -> bool {
        match role {
            Role::Client => self.flags.contains(TrustFlags::ROLE_CLIENT),
            Role::Server => self.flags.contains(TrustFlags::ROLE_SERVER),
        }
    }

    /// Tells whether the entry is marked as not a root anchor, by either bit.
    pub fn is_not_root(&self) -> bool {
        self.flags
            .intersects(TrustFlags::NOT_ROOT | TrustFlags::NOT_ROOT_LEGACY)
    }

    /// Returns the validity timestamps of a pinned entry, or `None` for other types.
    pub fn pinned_validity(&self) -> Option<PinnedValidity> {
        if !matches!(
            self.trust_type,
            TrustType::PinnedX509 | TrustType::PinnedPgp
        ) {
            return None;
        }
        let word = |i: usize| {
            self.data
                .get(i..i + 4)
                .and_then(|bytes| bytes.try_into().ok())
                .map(u32::from_be_bytes)
        };
        Some(PinnedValidity {
            expiry: word(0),
            rollover_window: word(4),
        })
    }

    /// Parses the data of a revocation entry, or returns `None` for other types.
    pub fn revocation_list(&self) -> Option<Result<RevocationList, DbError>> {
        (self.trust_type == TrustType::RevokeX509).then(|| parse_revocation_list(&self.data))
    }

    fn check(&self) -> Result<(), DbError> {
        let invalid = |field, reason: String| DbError::invalid(Database::Trust, field, reason);
        if self.valexp.is_empty() {
            return Err(invalid("valexp", "the expression is empty".into()));
        }
        if self.valexp.contains('\0') {
            return Err(invalid(
                "valexp",
                "the expression contains a NUL byte".into(),
            ));
        }
        match self.trust_type {
            TrustType::PinnedX509 | TrustType::PinnedPgp
                if ![0, 4, 8].contains(&self.data.len()) =>
            {
                Err(invalid(
                    "data",
                    format!(
                        "pinning data is {} bytes, expected 0, 4 or 8",
                        self.data.len()
                    ),
                ))
            }
            TrustType::RevokeX509 => parse_revocation_list(&self.data).map(|_| ()),
            _ => Ok(()),
        }
    }
}

/// Parses `this_update ‖ next_update ‖ DER INTEGER...`.
fn parse_revocation_list(data: &[u8]) -> Result<RevocationList, DbError> {
    let invalid = |reason: String| DbError::invalid(Database::Trust, "data", reason);
    let Some((times, mut rest)) = data.split_first_chunk::<8>() else {
        return Err(invalid(format!(
            "revocation data is {} bytes, shorter than its two timestamps",
            data.len()
        )));
    };
    let this_update = u32::from_be_bytes([times[0], times[1], times[2], times[3]]);
    let next_update = u32::from_be_bytes([times[4], times[5], times[6], times[7]]);

    let mut serials = Vec::new();
    while !rest.is_empty() {
        let offset = data.len() - rest.len();
        let (serial, tail) = split_der_integer(rest)
            .ok_or_else(|| invalid(format!("no valid DER INTEGER at offset {offset}")))?;
        serials.push(serial.to_vec());
        rest = tail;
    }
    Ok(RevocationList {
        this_update,
        next_update,
        serials,
    })
}

/// Splits one DER INTEGER off `input`, returning its content octets and the rest.
fn split_der_integer(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag != 0x02 {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (length_bytes, rest) = rest.split_at(count);
        let length = length_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (length, rest)
    };
    if length == 0 || rest.len() < length {
        return None;
    }
    Some(rest.split_at(length))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(word: u32, valexp: &[u8], data: &[u8]) -> Vec<u8> {
        let mut v = word.to_be_bytes().to_vec();
        v.extend_from_slice(valexp);
        v.push(0);
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn x509_anchor_round_trips() {
        let raw = value(0x0301, b"1", b"\x30\x82DER");
        let entry = TrustEntry::decode(&raw).unwrap();
        assert_eq!(entry.trust_type, TrustType::X509);
        assert_eq!(
            entry.flags,
            TrustFlags::ROLE_CLIENT | TrustFlags::ROLE_SERVER
        );
        assert_eq!(entry.valexp, "1");
        assert_eq!(entry.data, b"\x30\x82DER");
        assert!(entry.applies_to(Role::Client));
        assert!(!entry.is_not_root());
        assert_eq!(entry.encode().unwrap(), raw);
    }

    #[test]
    fn both_notroot_bits_mean_not_root() {
        for bit in [0x1000, 0x10000] {
            let raw = value(0x0102 | bit, b"1", b"");
            let entry = TrustEntry::decode(&raw).unwrap();
            assert!(entry.is_not_root());
            assert_eq!(entry.encode().unwrap(), raw, "bit {bit:#x} kept");
        }
    }

    #[test]
    fn pinned_data_lengths() {
        for (data, expiry, window) in [
            (&b""[..], None, None),
            (b"\x00\x00\x01\x00", Some(256), None),
            (b"\x00\x00\x01\x00\x00\x00\x00\x10", Some(256), Some(16)),
        ] {
            let entry = TrustEntry::decode(&value(0x0901, b"1", data)).unwrap();
            assert_eq!(entry.trust_type, TrustType::PinnedX509);
            let validity = entry.pinned_validity().unwrap();
            assert_eq!(validity.expiry, expiry);
            assert_eq!(validity.rollover_window, window);
        }
        let err = TrustEntry::decode(&value(0x0802, b"1", b"123")).unwrap_err();
        assert!(
            matches!(err, DbError::InvalidEntry { field: "data", .. }),
            "{err}"
        );
    }

    #[test]
    fn revocation_list_parses_serials() {
        let data = b"\x00\x00\x00\x01\x00\x00\x00\x02\x02\x01\x05\x02\x02\x01\x00";
        let entry = TrustEntry::decode(&value(0x0601, b"1", data)).unwrap();
        let list = entry.revocation_list().unwrap().unwrap();
        assert_eq!(list.this_update, 1);
        assert_eq!(list.next_update, 2);
        assert_eq!(list.serials, [vec![5], vec![1, 0]]);
    }

    #[test]
    fn revocation_list_with_long_length_parses() {
        let mut data = vec![0; 8];
        data.extend_from_slice(&[0x02, 0x81, 0x81]);
        data.extend(std::iter::repeat_n(7, 0x81));
        let entry = TrustEntry::decode(&value(0x0401, b"1", &data)).unwrap();
        let list = entry.revocation_list().unwrap().unwrap();
        assert_eq!(list.serials[0].len(), 0x81);
    }

    #[test]
    fn revocation_list_rejects_bad_der() {
        for data in [
            &b"\x00\x00\x00\x01"[..],
            b"\x00\x00\x00\x01\x00\x00\x00\x02\x04\x01\x05",
        ] {
            let err = TrustEntry::decode(&value(0x0401, b"1", data)).unwrap_err();
            assert!(
                matches!(err, DbError::InvalidEntry { field: "data", .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn short_value_is_rejected() {
        let err = TrustEntry::decode(b"\x00\x00\x01\x01\0").unwrap_err();
        assert!(
            matches!(err, DbError::InvalidEntry { field: "value", .. }),
            "{err}"
        );
    }

    #[test]
    fn empty_expression_is_rejected() {
        let err = TrustEntry::decode(&value(0x0101, b"", b"x")).unwrap_err();
        assert!(
            matches!(
                err,
                DbError::InvalidEntry {
                    field: "valexp",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn missing_nul_is_rejected() {
        let err = TrustEntry::decode(b"\x00\x00\x01\x01abc").unwrap_err();
        assert!(
            matches!(
                err,
                DbError::InvalidEntry {
                    field: "valexp",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn unknown_type_and_flag_are_rejected() {
        let err = TrustEntry::decode(&value(0x0103, b"1", b"")).unwrap_err();
        assert!(
            matches!(err, DbError::InvalidEntry { field: "type", .. }),
            "{err}"
        );
        let err = TrustEntry::decode(&value(0x2101, b"1", b"")).unwrap_err();
        assert!(
            matches!(err, DbError::InvalidEntry { field: "flags", .. }),
            "{err}"
        );
    }

    #[test]
    fn encode_rejects_nul_in_expression() {
        let entry = TrustEntry {
            trust_type: TrustType::X509,
            flags: TrustFlags::empty(),
            valexp: "a\0b".into(),
            data: vec![],
        };
        let err = entry.encode().unwrap_err();
        assert!(matches!(
            err,
            DbError::InvalidEntry {
                field: "valexp",
                ..
            }
        ));
    }
}
