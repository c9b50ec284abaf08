//! The stored form of one key's values: an ordered list in a single LMDB value.
//!
//! LMDB keeps the duplicates of a `DUP_SORT` database sorted by their bytes, but the TLS Pool
//! databases need several values per key in insertion order (the first listed identity is the
//! preferred one). So each key has exactly one LMDB value, which is the concatenation of records
//! `length (u32 big-endian) ‖ value bytes`, in order. An empty list is never stored: the key is
//! deleted instead.

use super::{Database, DbError};

/// Encodes `values` as one stored record list.
pub(crate) fn encode<V: AsRef<[u8]>>(values: &[V]) -> Vec<u8> {
    let total = values.iter().map(|v| 4 + v.as_ref().len()).sum();
    let mut out = Vec::with_capacity(total);
    for value in values {
        let value = value.as_ref();
        // LMDB cannot store a value of 4 GiB or more, so every length fits in u32.
        let length = u32::try_from(value.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(value);
    }
    out
}

/// Decodes a stored record list back into its values, in order.
pub(crate) fn decode(
    database: Database,
    key: &[u8],
    mut stored: &[u8],
) -> Result<Vec<Vec<u8>>, DbError> {
    let corrupt = |reason| DbError::CorruptValueList {
        database,
        key_hex: hex::encode(key),
        reason,
    };
    let mut values = Vec::new();
    while !stored.is_empty() {
        let Some((length, rest)) = stored.split_first_chunk::<4>() else {
            return Err(corrupt("a record length is cut short"));
        };
        let length = u32::from_be_bytes(*length) as usize;
        if rest.len() < length {
            return Err(corrupt("a record is longer than the stored value"));
        }
        let (value, rest) = rest.split_at(length);
        values.push(value.to_vec());
        stored = rest;
    }
    if values.is_empty() {
        return Err(corrupt("the list is empty"));
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_order_and_empty_values() {
        let values: Vec<&[u8]> = vec![b"second", b"", b"first", b"\x00\x01"];
        let stored = encode(&values);
        let decoded = decode(Database::LocalId, b"k", &stored).unwrap();
        assert_eq!(decoded, values);
    }

    #[test]
    fn truncated_length_is_rejected() {
        let err = decode(Database::Trust, b"k", &[0, 0, 1]).unwrap_err();
        assert!(
            matches!(err, DbError::CorruptValueList { reason, .. } if reason.contains("length"))
        );
    }

    #[test]
    fn overlong_record_is_rejected() {
        let err = decode(Database::Disclose, b"k", &[0, 0, 0, 9, b'a']).unwrap_err();
        assert!(matches!(err, DbError::CorruptValueList { .. }));
    }

    #[test]
    fn empty_stored_value_is_rejected() {
        assert!(decode(Database::Disclose, b"k", &[]).is_err());
    }
}
