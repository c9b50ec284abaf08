//! Pairs of the disclose database: a selector of remote peers and one local identity that may
//! be shown to them.
//!
//! The key is the selector text and each value is a local identity DoNAI (a key of the localid
//! database), both without NUL. The values of one selector are kept in order of preference.

use super::{Database, DbError, Donai, Selector};

/// One selector → local identity pair of the disclose database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscloseEntry {
    /// The remote peers this pair applies to.
    pub selector: Selector,
    /// The local identity that may be disclosed to them.
    pub local_id: Donai,
}

impl DiscloseEntry {
    /// Decodes a stored key and one of its values.
    ///
    /// # Errors
    ///
    /// [`DbError::InvalidEntry`] when the key is not a selector (`selector`) or the value is
    /// not a DoNAI (`local_id`).
    pub fn decode(key: &[u8], value: &[u8]) -> Result<Self, DbError> {
        Ok(Self {
            selector: decode_selector(key)?,
            local_id: decode_local_id(value)?,
        })
    }

    /// Encodes this pair as its key and value bytes.
    pub fn encode(&self) -> (Vec<u8>, Vec<u8>) {
        (
            self.selector.to_string().into_bytes(),
            self.local_id.to_string().into_bytes(),
        )
    }
}

/// Decodes a disclose key.
pub(crate) fn decode_selector(key: &[u8]) -> Result<Selector, DbError> {
    let text = std::str::from_utf8(key)
        .map_err(|_| DbError::invalid(Database::Disclose, "selector", "not valid UTF-8"))?;
    Selector::parse(text)
        .map_err(|err| DbError::invalid(Database::Disclose, "selector", err.to_string()))
}

/// Decodes a disclose value.
pub(crate) fn decode_local_id(value: &[u8]) -> Result<Donai, DbError> {
    let text = std::str::from_utf8(value)
        .map_err(|_| DbError::invalid(Database::Disclose, "local_id", "not valid UTF-8"))?;
    Donai::parse(text)
        .map_err(|err| DbError::invalid(Database::Disclose, "local_id", err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_round_trips() {
        let entry = DiscloseEntry::decode(b"@.example.com", b"me@example.org").unwrap();
        assert_eq!(entry.selector.to_string(), "@.example.com");
        assert_eq!(entry.local_id.to_string(), "me@example.org");
        let (key, value) = entry.encode();
        assert_eq!(key, b"@.example.com");
        assert_eq!(value, b"me@example.org");
    }

    #[test]
    fn bad_selector_names_field() {
        let err = DiscloseEntry::decode(b"@", b"me@example.org").unwrap_err();
        assert!(
            matches!(
                err,
                DbError::InvalidEntry {
                    field: "selector",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn pattern_as_local_id_is_rejected() {
        let err = DiscloseEntry::decode(b".", b"@example.org").unwrap_err();
        assert!(
            matches!(
                err,
                DbError::InvalidEntry {
                    field: "local_id",
                    ..
                }
            ),
            "{err}"
        );
        let err = DiscloseEntry::decode(b".", b"\xff").unwrap_err();
        assert!(
            matches!(
                err,
                DbError::InvalidEntry {
                    field: "local_id",
                    ..
                }
            ),
            "{err}"
        );
    }
}
