//! The crate's error type, `Pkcs11Error`, and the names of PKCS #11 return values.

use std::path::PathBuf;

use cryptoki::context::Function;
use cryptoki::error::{Error as CryptokiError, RvError};

/// An error from loading a PKCS #11 module, parsing a `pkcs11:` URI or using a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Pkcs11Error {
    /// The module file could not be loaded as a shared library or has no PKCS #11 entry point.
    #[error("loading PKCS #11 module {path} failed: {source}")]
    Load {
        /// Path of the module, as configured in `pkcs11_path`.
        path: PathBuf,
        /// Error from the dynamic loader or from the module's function list.
        source: CryptokiError,
    },

    /// A PKCS #11 function returned an error code.
    #[error("{} failed: {}", function_name(*.function), rv_name(.rv))]
    Call {
        /// The PKCS #11 function that failed.
        function: Function,
        /// The `CKR_*` value it returned.
        rv: RvError,
    },

    /// The cryptoki wrapper failed outside a PKCS #11 call (an integer or string conversion).
    #[error("cryptoki failed while {context}: {source}")]
    Wrapper {
        /// The step this crate was taking.
        context: &'static str,
        /// The wrapper's error.
        source: CryptokiError,
    },

    /// A `pkcs11:` URI does not follow RFC 7512.
    #[error("invalid pkcs11: URI attribute {attribute:?}: {problem}")]
    InvalidUri {
        /// The attribute that is wrong, or `"scheme"` for the `pkcs11:` prefix.
        attribute: String,
        /// The rule the attribute breaks.
        problem: UriProblem,
    },

    /// No token in any slot of the module matches the URI.
    #[error("no token matches {uri}")]
    TokenNotFound {
        /// The URI that was looked up (printed without its `pin-value`).
        uri: String,
    },

    /// The token has no object that matches the URI.
    #[error("no object on token {token:?} matches {uri}")]
    ObjectNotFound {
        /// Label of the token that was searched.
        token: String,
        /// The URI that was looked up (printed without its `pin-value`).
        uri: String,
    },

    /// More than one object matches a URI that must name exactly one key.
    #[error("{count} objects on token {token:?} match {uri}; add an id or object label")]
    AmbiguousObject {
        /// Label of the token that was searched.
        token: String,
        /// The URI that was looked up (printed without its `pin-value`).
        uri: String,
        /// How many objects matched.
        count: usize,
    },

    /// The token rejected the user PIN, and no other PIN was available.
    #[error("token {token:?} rejected the user PIN ({failures} wrong PINs so far)")]
    WrongPin {
        /// Label of the token.
        token: String,
        /// Wrong PINs counted for this token since the module was loaded.
        failures: u32,
    },

    /// The token's user PIN is locked (`CKF_USER_PIN_LOCKED` or `CKR_PIN_LOCKED`).
    #[error("the user PIN of token {token:?} is locked; unlock it with the security officer PIN")]
    PinLocked {
        /// Label of the token.
        token: String,
    },

    /// The token needs a login and no PIN source provided a usable PIN.
    #[error("no usable PIN for token {token:?}; set pkcs11_pin or register a PIN entry service")]
    PinNotProvided {
        /// Label of the token.
        token: String,
    },

    /// A PIN source failed, for example because the PIN entry service went away.
    #[error("PIN source failed: {reason}")]
    PinSourceFailed {
        /// The failure, described without the PIN.
        reason: String,
    },

    /// The token does not offer a mechanism that the operation needs.
    #[error("token {token:?} does not support {mechanism}")]
    MechanismNotSupported {
        /// Label of the token.
        token: String,
        /// The `CKM_*` name of the mechanism.
        mechanism: &'static str,
    },

    /// A key attribute read from the token could not be used to build a public key or signature.
    #[error("invalid {attribute} on token {token:?}: {reason}")]
    InvalidKeyAttribute {
        /// Label of the token.
        token: String,
        /// The `CKA_*` name of the attribute, or the output being built.
        attribute: &'static str,
        /// The defect found.
        reason: String,
    },

    /// No OpenPGP card with the requested ident is in any PC/SC reader.
    #[error("no OpenPGP card {ident} in any reader (cards found: {available:?})")]
    CardNotFound {
        /// The requested ident, `MMMM:SSSSSSSS` (manufacturer and serial number in hex).
        ident: String,
        /// Idents of the OpenPGP cards that were found.
        available: Vec<String>,
    },

    /// PC/SC or the OpenPGP card application failed during an operation.
    #[error("OpenPGP card {ident}: {operation} failed: {reason}")]
    CardFailed {
        /// The card's ident, or `"pcsc"` before a card was selected.
        ident: String,
        /// The operation, such as `"VERIFY"` or `"INTERNAL AUTHENTICATE"`.
        operation: &'static str,
        /// The error from PC/SC or the card's status word.
        reason: String,
    },

    /// The card rejected a PIN.
    #[error("OpenPGP card {ident} rejected the {pin} PIN ({retries_left} tries left)")]
    CardWrongPin {
        /// The card's ident.
        ident: String,
        /// Which PIN: `"user"` or `"admin"`.
        pin: &'static str,
        /// The card's retry counter for that PIN after the failure.
        retries_left: u8,
    },

    /// The card's retry counter for a PIN is 0, so the card rejects every try.
    #[error("the {pin} PIN of OpenPGP card {ident} is blocked; reset it with the admin PIN")]
    CardPinBlocked {
        /// The card's ident.
        ident: String,
        /// Which PIN: `"user"` or `"admin"`.
        pin: &'static str,
    },

    /// The card's authentication slot holds no key.
    #[error("OpenPGP card {ident} has no authentication key; generate or import one")]
    CardKeyMissing {
        /// The card's ident.
        ident: String,
    },

    /// The public key a card returned is malformed.
    #[error("OpenPGP card {ident} returned an invalid public key: {reason}")]
    CardKeyInvalid {
        /// The card's ident.
        ident: String,
        /// The defect found.
        reason: String,
    },

    /// The card's key uses an algorithm this crate does not sign with.
    #[error("OpenPGP card {ident}: unsupported key algorithm {algorithm}; use Ed25519 or P-256")]
    CardAlgorithmUnsupported {
        /// The card's ident.
        ident: String,
        /// The algorithm the card reported.
        algorithm: String,
    },

    /// Encoding a public key or signature failed.
    #[error("encoding the {output} failed: {reason}")]
    EncodingFailed {
        /// The structure being encoded.
        output: &'static str,
        /// The encoder's error.
        reason: String,
    },
}

/// The RFC 7512 rule that one attribute of a `pkcs11:` URI breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriProblem {
    /// The text does not start with `pkcs11:`.
    #[error("the URI does not start with \"pkcs11:\"")]
    MissingScheme,
    /// A path or query component has no `=`.
    #[error("the component has no '='")]
    MissingEquals,
    /// The name is neither an RFC 7512 attribute nor a vendor attribute (which contains `-`).
    #[error("unknown attribute name")]
    UnknownAttribute,
    /// The attribute occurs twice.
    #[error("the attribute occurs more than once")]
    Duplicate,
    /// The value contains a character that RFC 7512 requires to be percent-encoded.
    #[error("character {0:?} must be percent-encoded")]
    InvalidCharacter(char),
    /// A `%` is not followed by two hexadecimal digits.
    #[error("'%' at byte {offset} of the value is not followed by two hex digits")]
    InvalidPercentEncoding {
        /// Byte offset of the `%` inside the raw value.
        offset: usize,
    },
    /// The decoded value of a text attribute is not UTF-8.
    #[error("the decoded value is not UTF-8")]
    NotUtf8,
    /// The value does not have the form the attribute requires.
    #[error("invalid value: {0}")]
    InvalidValue(&'static str),
    /// `pin-value` and `pin-source` are both present.
    #[error("pin-value and pin-source must not both be present")]
    ConflictingPinAttributes,
}

impl Pkcs11Error {
    /// Converts a cryptoki error, keeping the PKCS #11 function and `CKR_*` value of a failed
    /// call and the `context` phrase otherwise.
    pub(crate) fn from_cryptoki(context: &'static str, error: CryptokiError) -> Self {
        match error {
            CryptokiError::Pkcs11(rv, function) => Self::Call { function, rv },
            source => Self::Wrapper { context, source },
        }
    }

    /// Returns the `CKR_*` value when this is a failed PKCS #11 call.
    pub fn rv(&self) -> Option<RvError> {
        match self {
            Self::Call { rv, .. } => Some(*rv),
            _ => None,
        }
    }
}

/// Returns the C name of a PKCS #11 function, such as `C_Login`.
pub(crate) fn function_name(function: Function) -> String {
    format!("C_{function:?}")
}

/// Returns the `CKR_*` name of a return value, derived from cryptoki's variant name
/// (`PinIncorrect` becomes `CKR_PIN_INCORRECT`).
pub(crate) fn rv_name(rv: &RvError) -> String {
    match rv {
        RvError::VendorDefined(code) => format!("CKR_VENDOR_DEFINED+{code:#x}"),
        RvError::UnknownErrorCode(code) => format!("unknown CKR value {code:#x}"),
        other => {
            let camel = format!("{other:?}");
            let mut name = String::from("CKR");
            for c in camel.chars() {
                if c.is_ascii_uppercase() {
                    name.push('_');
                }
                name.push(c.to_ascii_uppercase());
            }
            name
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rv_name_follows_pkcs11_spelling() {
        assert_eq!(rv_name(&RvError::PinIncorrect), "CKR_PIN_INCORRECT");
        assert_eq!(
            rv_name(&RvError::SessionHandleInvalid),
            "CKR_SESSION_HANDLE_INVALID"
        );
        assert_eq!(rv_name(&RvError::UserNotLoggedIn), "CKR_USER_NOT_LOGGED_IN");
    }

    #[test]
    fn call_error_names_function_and_rv() {
        let error = Pkcs11Error::Call {
            function: Function::Login,
            rv: RvError::PinLocked,
        };
        assert_eq!(error.to_string(), "C_Login failed: CKR_PIN_LOCKED");
    }
}
