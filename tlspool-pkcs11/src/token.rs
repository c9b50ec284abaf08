//! Descriptions of a module, its tokens and their objects, as `pkcs11:` URIs match them.
//!
//! Strings are the PKCS #11 `CK_INFO`, `CK_SLOT_INFO` and `CK_TOKEN_INFO` fields with the
//! trailing spaces of their fixed-width padding removed, which is also the form the TLS Pool
//! version 2 protocol sends to a PIN entry service.

use cryptoki::context::Info;
use cryptoki::object::{KeyType, ObjectClass};
use cryptoki::slot::{SlotInfo, TokenInfo as CkTokenInfo};

use crate::uri::{LibraryVersion, ObjectType};

/// A module's `CK_INFO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryInfo {
    /// `manufacturerID`.
    pub manufacturer: String,
    /// `libraryDescription`.
    pub description: String,
    /// `libraryVersion`.
    pub version: LibraryVersion,
}

/// A token in a slot: its slot's and its own `CK_*_INFO` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// The `CK_SLOT_ID` of the slot the token sits in.
    pub slot_id: u64,
    /// `CK_SLOT_INFO.slotDescription`.
    pub slot_description: String,
    /// `CK_SLOT_INFO.manufacturerID`.
    pub slot_manufacturer: String,
    /// `CK_TOKEN_INFO.label`.
    pub label: String,
    /// `CK_TOKEN_INFO.manufacturerID`.
    pub manufacturer: String,
    /// `CK_TOKEN_INFO.model`.
    pub model: String,
    /// `CK_TOKEN_INFO.serialNumber`.
    pub serial: String,
    /// The login and PIN state flags.
    pub flags: TokenFlags,
    /// `ulMinPinLen`, in bytes.
    pub min_pin_len: usize,
    /// `ulMaxPinLen`, in bytes.
    pub max_pin_len: usize,
}

/// The `CK_TOKEN_INFO.flags` that decide whether and how to log in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenFlags {
    /// `CKF_LOGIN_REQUIRED`: private objects and signing need a user login.
    pub login_required: bool,
    /// `CKF_USER_PIN_INITIALIZED`.
    pub user_pin_initialized: bool,
    /// `CKF_PROTECTED_AUTHENTICATION_PATH`: the PIN is entered on the device itself.
    pub protected_authentication_path: bool,
    /// `CKF_USER_PIN_COUNT_LOW`: at least one wrong user PIN since the last success.
    pub pin_count_low: bool,
    /// `CKF_USER_PIN_FINAL_TRY`: one more wrong user PIN locks the token.
    pub final_try: bool,
    /// `CKF_USER_PIN_LOCKED`: the user PIN is locked.
    pub locked: bool,
    /// `CKF_WRITE_PROTECTED`: no objects can be created.
    pub write_protected: bool,
}

/// A token object as a URI matches it: its class, label and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// `CKA_CLASS`.
    pub object_type: ObjectType,
    /// `CKA_LABEL`, decoded as UTF-8 (invalid bytes become U+FFFD).
    pub label: String,
    /// `CKA_ID`.
    pub id: Vec<u8>,
    /// `CKA_KEY_TYPE` for keys.
    pub key_type: Option<KeyKind>,
}

/// The key types this crate generates and signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyKind {
    /// `CKK_RSA`.
    Rsa,
    /// `CKK_EC` (ECDSA).
    Ec,
    /// `CKK_EC_EDWARDS` (EdDSA).
    EcEdwards,
    /// Any other `CKK_*` value.
    Other,
}

impl LibraryInfo {
    pub(crate) fn from_cryptoki(info: &Info) -> Self {
        let version = info.library_version();
        Self {
            manufacturer: info.manufacturer_id().to_owned(),
            description: info.library_description().to_owned(),
            version: LibraryVersion {
                major: version.major(),
                minor: version.minor(),
            },
        }
    }
}

impl TokenInfo {
    /// Combines the slot and token information that cryptoki returns; cryptoki has already
    /// removed the trailing spaces.
    pub(crate) fn from_cryptoki(slot_id: u64, slot: &SlotInfo, token: &CkTokenInfo) -> Self {
        Self {
            slot_id,
            slot_description: slot.slot_description().to_owned(),
            slot_manufacturer: slot.manufacturer_id().to_owned(),
            label: token.label().to_owned(),
            manufacturer: token.manufacturer_id().to_owned(),
            model: token.model().to_owned(),
            serial: token.serial_number().to_owned(),
            flags: TokenFlags {
                login_required: token.login_required(),
                user_pin_initialized: token.user_pin_initialized(),
                protected_authentication_path: token.protected_authentication_path(),
                pin_count_low: token.user_pin_count_low(),
                final_try: token.user_pin_final_try(),
                locked: token.user_pin_locked(),
                write_protected: token.write_protected(),
            },
            min_pin_len: token.min_pin_length(),
            max_pin_len: token.max_pin_length(),
        }
    }
}

impl ObjectType {
    pub(crate) fn class(self) -> ObjectClass {
        match self {
            Self::PublicKey => ObjectClass::PUBLIC_KEY,
            Self::PrivateKey => ObjectClass::PRIVATE_KEY,
            Self::Certificate => ObjectClass::CERTIFICATE,
            Self::SecretKey => ObjectClass::SECRET_KEY,
            Self::Data => ObjectClass::DATA,
        }
    }

    pub(crate) fn from_class(class: ObjectClass) -> Option<Self> {
        [
            Self::PublicKey,
            Self::PrivateKey,
            Self::Certificate,
            Self::SecretKey,
            Self::Data,
        ]
        .into_iter()
        .find(|t| t.class() == class)
    }
}

impl KeyKind {
    pub(crate) fn from_key_type(key_type: KeyType) -> Self {
        if key_type == KeyType::RSA {
            Self::Rsa
        } else if key_type == KeyType::EC {
            Self::Ec
        } else if key_type == KeyType::EC_EDWARDS {
            Self::EcEdwards
        } else {
            Self::Other
        }
    }
}
