//! Bounded NUL-terminated strings of the fixed-size fields.
//!
//! Identity fields carry DoNAIs (`user@domain` or `domain`), which are ASCII in practice.
//! This crate decodes every string field as UTF-8 and rejects other bytes, because PKCS #11
//! token fields and PINs are UTF-8 (`CK_UTF8CHAR`) and internationalised domain names travel
//! as A-labels. The ERROR message is the exception: see [`crate::ErrorPayload`].

use std::fmt;
use std::ops::Deref;

use crate::ProtoError;

/// A UTF-8 string that fits an `N`-byte wire field with its NUL terminator, so it holds at
/// most `N - 1` bytes and no NUL.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FixedString<const N: usize> {
    value: String,
}

impl<const N: usize> FixedString<N> {
    /// Maximum length of the value in bytes.
    pub const MAX_LEN: usize = N - 1;

    /// Checks that `value` fits the field and contains no NUL.
    ///
    /// # Errors
    ///
    /// [`ProtoError::TooLong`] or [`ProtoError::InteriorNul`], with `field` set to `string`.
    pub fn new(value: &str) -> Result<Self, ProtoError> {
        Self::for_field("string", value)
    }

    /// Checks `value` like [`FixedString::new`], naming `field` in the error.
    ///
    /// # Errors
    ///
    /// [`ProtoError::TooLong`] or [`ProtoError::InteriorNul`].
    pub fn for_field(field: &'static str, value: &str) -> Result<Self, ProtoError> {
        if let Some(offset) = value.bytes().position(|byte| byte == 0) {
            return Err(ProtoError::InteriorNul { field, offset });
        }
        if value.len() > Self::MAX_LEN {
            return Err(ProtoError::TooLong {
                field,
                max: Self::MAX_LEN,
                len: value.len(),
            });
        }
        Ok(Self {
            value: value.to_owned(),
        })
    }

    /// Returns the empty string.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Returns the value.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// Moves the value out and leaves the empty string. The returned `String` owns the only
    /// heap copy, so a caller can wipe a secret such as a PIN without a copy left behind.
    pub fn take(&mut self) -> String {
        std::mem::take(&mut self.value)
    }

    /// Decodes a wire field: the bytes up to the first NUL, which must exist.
    ///
    /// Bytes after the NUL are ignored.
    pub(crate) fn decode(field: &'static str, bytes: &[u8; N]) -> Result<Self, ProtoError> {
        let Some(end) = bytes.iter().position(|&byte| byte == 0) else {
            return Err(ProtoError::Unterminated { field });
        };
        let value =
            std::str::from_utf8(&bytes[..end]).map_err(|error| ProtoError::InvalidUtf8 {
                field,
                offset: error.valid_up_to(),
            })?;
        Ok(Self {
            value: value.to_owned(),
        })
    }

    /// Encodes the value followed by zero bytes up to `N`.
    pub(crate) fn encode(&self, out: &mut [u8; N]) {
        out.fill(0);
        out[..self.value.len()].copy_from_slice(self.value.as_bytes());
    }
}

impl<const N: usize> Deref for FixedString<N> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.value
    }
}

impl<const N: usize> AsRef<str> for FixedString<N> {
    fn as_ref(&self) -> &str {
        &self.value
    }
}

impl<const N: usize> TryFrom<&str> for FixedString<N> {
    type Error = ProtoError;

    fn try_from(value: &str) -> Result<Self, ProtoError> {
        Self::new(value)
    }
}

impl<const N: usize> PartialEq<str> for FixedString<N> {
    fn eq(&self, other: &str) -> bool {
        self.value == other
    }
}

impl<const N: usize> PartialEq<&str> for FixedString<N> {
    fn eq(&self, other: &&str) -> bool {
        self.value == *other
    }
}

impl<const N: usize> fmt::Display for FixedString<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl<const N: usize> fmt::Debug for FixedString<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.value, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_moves_value_and_leaves_empty() {
        let mut pin = FixedString::<128>::new("1234").unwrap();
        let taken = pin.take();
        assert_eq!(taken, "1234");
        assert!(pin.is_empty());
    }

    #[test]
    fn new_accepts_value_of_max_length() {
        let value = "a".repeat(15);
        let string = FixedString::<16>::new(&value).unwrap();
        assert_eq!(string.as_str(), value);
    }

    #[test]
    fn new_rejects_value_without_room_for_nul() {
        let error = FixedString::<16>::for_field("service", &"a".repeat(16)).unwrap_err();
        assert!(
            matches!(
                error,
                ProtoError::TooLong {
                    field: "service",
                    max: 15,
                    len: 16
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn new_rejects_interior_nul() {
        let error = FixedString::<16>::new("ab\0c").unwrap_err();
        assert!(
            matches!(
                error,
                ProtoError::InteriorNul {
                    field: "string",
                    offset: 2
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn decode_ignores_bytes_after_nul() {
        let mut bytes = [0xffu8; 8];
        bytes[..4].copy_from_slice(b"abc\0");
        let string = FixedString::<8>::decode("name", &bytes).unwrap();
        assert_eq!(string, "abc");
    }

    #[test]
    fn decode_rejects_unterminated_field() {
        let error = FixedString::<4>::decode("name", b"abcd").unwrap_err();
        assert!(
            matches!(error, ProtoError::Unterminated { field: "name" }),
            "{error:?}"
        );
    }

    #[test]
    fn decode_rejects_invalid_utf8() {
        let error = FixedString::<4>::decode("name", b"a\xff\0\0").unwrap_err();
        assert!(
            matches!(
                error,
                ProtoError::InvalidUtf8 {
                    field: "name",
                    offset: 1
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn encode_zeroes_unused_bytes() {
        let mut out = [0xaau8; 6];
        FixedString::<6>::new("ab").unwrap().encode(&mut out);
        assert_eq!(out, *b"ab\0\0\0\0");
    }
}
