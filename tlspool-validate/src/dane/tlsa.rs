//! TLSA records (RFC 6698 section 2): the usable ones among those looked up, and whether a
//! certificate matches one by its selector and matching type.

use std::fmt;

use ring::digest;

use crate::x509::Certificate;

/// A certificate usage (RFC 6698 section 2.1.1, acronyms of RFC 7218).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Usage {
    /// 0, PKIX-TA: a CA certificate of a path that also passes PKIX validation.
    PkixTa,
    /// 1, PKIX-EE: the end certificate, which also passes PKIX validation.
    PkixEe,
    /// 2, DANE-TA: a trust anchor for the path of the end certificate, sent by the peer.
    DaneTa,
    /// 3, DANE-EE: the end certificate, without name or validity checks.
    DaneEe,
}

/// A selector (RFC 6698 section 2.1.2): which part of a certificate is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Selector {
    /// 0, Cert: the whole DER certificate.
    Certificate,
    /// 1, SPKI: the DER SubjectPublicKeyInfo.
    SubjectPublicKeyInfo,
}

/// A matching type (RFC 6698 section 2.1.3): how the selected bytes are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchingType {
    /// 0, Full: the bytes themselves.
    Exact,
    /// 1, SHA2-256 of the bytes.
    Sha256,
    /// 2, SHA2-512 of the bytes.
    Sha512,
}

/// A usable TLSA record: known usage, selector and matching type, and data of the right length.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsaRecord {
    /// The certificate usage.
    pub usage: Usage,
    /// The selector.
    pub selector: Selector,
    /// The matching type.
    pub matching_type: MatchingType,
    /// The certificate association data.
    pub data: Vec<u8>,
}

impl Usage {
    /// Returns the usage for its number, or `None` for an unassigned one.
    pub fn from_number(number: u8) -> Option<Self> {
        match number {
            0 => Some(Self::PkixTa),
            1 => Some(Self::PkixEe),
            2 => Some(Self::DaneTa),
            3 => Some(Self::DaneEe),
            _ => None,
        }
    }

    /// Returns the number of the usage.
    pub fn number(self) -> u8 {
        match self {
            Self::PkixTa => 0,
            Self::PkixEe => 1,
            Self::DaneTa => 2,
            Self::DaneEe => 3,
        }
    }
}

impl Selector {
    /// Returns the selector for its number, or `None` for an unassigned one.
    pub fn from_number(number: u8) -> Option<Self> {
        match number {
            0 => Some(Self::Certificate),
            1 => Some(Self::SubjectPublicKeyInfo),
            _ => None,
        }
    }

    /// Returns the number of the selector.
    pub fn number(self) -> u8 {
        match self {
            Self::Certificate => 0,
            Self::SubjectPublicKeyInfo => 1,
        }
    }
}

impl MatchingType {
    /// Returns the matching type for its number, or `None` for an unassigned one.
    pub fn from_number(number: u8) -> Option<Self> {
        match number {
            0 => Some(Self::Exact),
            1 => Some(Self::Sha256),
            2 => Some(Self::Sha512),
            _ => None,
        }
    }

    /// Returns the number of the matching type.
    pub fn number(self) -> u8 {
        match self {
            Self::Exact => 0,
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }

    /// Returns the length of the association data this type needs, or `None` for any length.
    fn data_len(self) -> Option<usize> {
        match self {
            Self::Exact => None,
            Self::Sha256 => Some(32),
            Self::Sha512 => Some(64),
        }
    }
}

impl TlsaRecord {
    /// Returns the record for the four fields of its data, or the reason why it is unusable.
    ///
    /// A record is unusable with an unassigned usage, selector or matching type, or with
    /// association data of the wrong length for its digest (or empty for an exact match).
    /// RFC 6698 and RFC 7671 have clients ignore such records.
    ///
    /// # Errors
    ///
    /// The reason, for the log.
    pub fn from_fields(
        usage: u8,
        selector: u8,
        matching_type: u8,
        data: &[u8],
    ) -> Result<Self, String> {
        let usage = Usage::from_number(usage).ok_or_else(|| format!("unknown usage {usage}"))?;
        let selector = Selector::from_number(selector)
            .ok_or_else(|| format!("unknown selector {selector}"))?;
        let matching_type = MatchingType::from_number(matching_type)
            .ok_or_else(|| format!("unknown matching type {matching_type}"))?;
        let length_fits = match matching_type.data_len() {
            Some(length) => data.len() == length,
            None => !data.is_empty(),
        };
        if !length_fits {
            return Err(format!(
                "{} bytes of association data for matching type {}",
                data.len(),
                matching_type.number()
            ));
        }
        Ok(Self {
            usage,
            selector,
            matching_type,
            data: data.to_vec(),
        })
    }

    /// Tells whether the selected part of `certificate`, compared by the matching type,
    /// equals the association data.
    pub fn matches(&self, certificate: &Certificate) -> bool {
        let selected = match self.selector {
            Selector::Certificate => certificate.der(),
            Selector::SubjectPublicKeyInfo => certificate.spki_der(),
        };
        self.matches_data(selected)
    }

    /// Tells whether `selected` (the DER of what the selector picks), compared by the
    /// matching type, equals the association data.
    pub fn matches_data(&self, selected: &[u8]) -> bool {
        match self.matching_type {
            MatchingType::Exact => selected == self.data.as_slice(),
            MatchingType::Sha256 => {
                digest::digest(&digest::SHA256, selected).as_ref() == self.data.as_slice()
            }
            MatchingType::Sha512 => {
                digest::digest(&digest::SHA512, selected).as_ref() == self.data.as_slice()
            }
        }
    }
}

impl fmt::Display for TlsaRecord {
    /// Formats the record as in a zone file, with the data shortened to its first 8 bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} ",
            self.usage.number(),
            self.selector.number(),
            self.matching_type.number()
        )?;
        for byte in self.data.iter().take(8) {
            write!(f, "{byte:02x}")?;
        }
        if self.data.len() > 8 {
            f.write_str("...")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TlsaRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TlsaRecord({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_fields_rejects_unassigned_numbers() {
        let digest = [0u8; 32];
        assert!(TlsaRecord::from_fields(4, 0, 1, &digest).is_err());
        assert!(TlsaRecord::from_fields(255, 0, 1, &digest).is_err());
        assert!(TlsaRecord::from_fields(3, 2, 1, &digest).is_err());
        assert!(TlsaRecord::from_fields(3, 0, 3, &digest).is_err());
        assert!(TlsaRecord::from_fields(3, 0, 255, &digest).is_err());
    }

    #[test]
    fn from_fields_checks_digest_length() {
        assert!(TlsaRecord::from_fields(3, 1, 1, &[0; 32]).is_ok());
        assert!(TlsaRecord::from_fields(3, 1, 1, &[0; 31]).is_err());
        assert!(TlsaRecord::from_fields(3, 1, 1, &[0; 64]).is_err());
        assert!(TlsaRecord::from_fields(3, 1, 2, &[0; 64]).is_ok());
        assert!(TlsaRecord::from_fields(3, 1, 2, &[0; 32]).is_err());
        assert!(TlsaRecord::from_fields(3, 0, 0, &[0x30]).is_ok());
        assert!(TlsaRecord::from_fields(3, 0, 0, &[]).is_err());
    }

    #[test]
    fn numbers_round_trip() {
        for number in 0..=3 {
            let usage = Usage::from_number(number).expect("assigned usage");
            assert_eq!(usage.number(), number);
        }
        for number in 0..=1 {
            let selector = Selector::from_number(number).expect("assigned selector");
            assert_eq!(selector.number(), number);
        }
        for number in 0..=2 {
            let matching = MatchingType::from_number(number).expect("assigned matching type");
            assert_eq!(matching.number(), number);
        }
    }

    #[test]
    fn display_shortens_data() {
        let record = TlsaRecord::from_fields(3, 1, 1, &[0xab; 32]).expect("usable record");
        assert_eq!(record.to_string(), "3 1 1 abababababababab...");
    }
}
