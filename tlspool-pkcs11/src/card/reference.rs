//! The `openpgp-card:` key reference: the text that names an OpenPGP card's authentication key
//! where a local identity names a PKCS #11 key with a `pkcs11:` URI.
//!
//! The form is `openpgp-card:MMMM:SSSSSSSS`, the card's ident: the manufacturer ID in 4 and
//! the serial number in 8 hexadecimal digits, as the application identifier on the card
//! carries them.

use std::fmt;
use std::str::FromStr;

use crate::error::{Pkcs11Error, UriProblem};

/// A reference to the authentication key of one OpenPGP card.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CardKeyReference {
    /// The ident in upper-case hex, `MMMM:SSSSSSSS`.
    ident: String,
}

impl CardKeyReference {
    /// The scheme prefix, `openpgp-card:`.
    pub const SCHEME: &'static str = "openpgp-card:";

    /// Builds the reference to the card with `ident` (`MMMM:SSSSSSSS`, any case).
    ///
    /// # Errors
    /// [`Pkcs11Error::InvalidUri`] on attribute `"ident"` when `ident` is not 4 and 8 hex
    /// digits around a colon.
    pub fn from_ident(ident: &str) -> Result<Self, Pkcs11Error> {
        let (manufacturer, serial) = ident.split_once(':').ok_or_else(invalid_ident)?;
        let hex = |part: &str, len: usize| {
            part.len() == len && part.bytes().all(|b| b.is_ascii_hexdigit())
        };
        if !hex(manufacturer, 4) || !hex(serial, 8) {
            return Err(invalid_ident());
        }
        Ok(Self {
            ident: ident.to_ascii_uppercase(),
        })
    }

    /// Parses `openpgp-card:MMMM:SSSSSSSS`.
    ///
    /// # Errors
    /// [`Pkcs11Error::InvalidUri`] with [`UriProblem::MissingScheme`] for another scheme, or
    /// as [`Self::from_ident`] for a malformed ident.
    pub fn parse(text: &str) -> Result<Self, Pkcs11Error> {
        let ident = text
            .strip_prefix(Self::SCHEME)
            .ok_or_else(|| Pkcs11Error::InvalidUri {
                attribute: "scheme".to_owned(),
                problem: UriProblem::MissingScheme,
            })?;
        Self::from_ident(ident)
    }

    /// Returns whether `text` uses the `openpgp-card:` scheme, so a caller can choose between
    /// this parser and the `pkcs11:` one.
    pub fn is_card_reference(text: &str) -> bool {
        text.starts_with(Self::SCHEME)
    }

    /// Returns the card's ident, `MMMM:SSSSSSSS` in upper-case hex, for
    /// [`OpenPgpCard::open`](super::OpenPgpCard::open).
    pub fn ident(&self) -> &str {
        &self.ident
    }
}

impl FromStr for CardKeyReference {
    type Err = Pkcs11Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for CardKeyReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::SCHEME, self.ident)
    }
}

fn invalid_ident() -> Pkcs11Error {
    Pkcs11Error::InvalidUri {
        attribute: "ident".to_owned(),
        problem: UriProblem::InvalidValue("expected MMMM:SSSSSSSS in hexadecimal"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_upper_case() {
        let reference = CardKeyReference::parse("openpgp-card:000f:a1b2c3d4").expect("valid");
        assert_eq!(reference.ident(), "000F:A1B2C3D4");
        assert_eq!(reference.to_string(), "openpgp-card:000F:A1B2C3D4");
    }

    #[test]
    fn rejects_other_schemes() {
        let error = CardKeyReference::parse("pkcs11:token=x").expect_err("wrong scheme");
        assert!(matches!(
            error,
            Pkcs11Error::InvalidUri {
                problem: UriProblem::MissingScheme,
                ..
            }
        ));
    }

    #[test]
    fn rejects_malformed_idents() {
        for text in [
            "openpgp-card:",
            "openpgp-card:0006",
            "openpgp-card:0006:1234567",
            "openpgp-card:0006:123456789",
            "openpgp-card:00g6:12345678",
            "openpgp-card:0006-12345678",
        ] {
            let error = CardKeyReference::parse(text).expect_err(text);
            assert!(
                matches!(error, Pkcs11Error::InvalidUri { ref attribute, .. } if attribute == "ident"),
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn detects_scheme() {
        assert!(CardKeyReference::is_card_reference(
            "openpgp-card:0006:12345678"
        ));
        assert!(!CardKeyReference::is_card_reference("pkcs11:token=x"));
    }
}
