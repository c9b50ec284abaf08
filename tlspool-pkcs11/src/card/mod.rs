//! OpenPGP cards (OpenPGP card application 3.4) behind PC/SC. This module opens a card by its
//! ident, reads and generates the authentication key, and verifies the user PIN through the
//! same [`PinSource`] seam that PKCS #11 tokens use. It signs with the authentication key
//! (INTERNAL AUTHENTICATE), the key a TLS handshake signature needs.
//!
//! Every method blocks on PC/SC and the card (a signature takes tens of milliseconds on real
//! cards), so async callers run them on a blocking thread. An [`OpenPgpCard`] holds one shared
//! PC/SC connection; each method runs in one PC/SC transaction.
//!
//! A verified user PIN stays verified for other PC/SC connections to the card too, until the
//! card is reset or powered off, because the card, not the connection, keeps that state (a test
//! checks this on the virtual card).
//!
//! NOTE: only Ed25519 and NIST P-256 authentication keys are supported, and keys are generated
//! on the card, not imported.

mod key;
mod reference;

use std::fmt;

use card_backend_pcsc::PcscBackend;
use openpgp_card::ocard::KeyType;
use openpgp_card::ocard::algorithm::AlgoSimple;
use openpgp_card::ocard::crypto::PublicKeyMaterial;
use openpgp_card::ocard::data::{Fingerprint, KeyGenerationTime};
use openpgp_card::state::{Open, Transaction};
use openpgp_card::{Card, Error as CardError};
use secrecy::SecretString;
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use crate::encoding::ecdsa_signature_der;
use crate::error::Pkcs11Error;
use crate::pin::{PIN_PROMPT, PinRequest, PinSource};
use crate::token::{TokenFlags, TokenInfo};

pub use key::{CardKeyAlgorithm, CardPublicKey};
pub use reference::CardKeyReference;

/// Minimum length of the user PIN (PW1) that OpenPGP cards accept.
const MIN_USER_PIN_LEN: usize = 6;

/// An OpenPGP card in a PC/SC reader, opened by its ident.
pub struct OpenPgpCard {
    card: Card<Open>,
    ident: String,
}

impl OpenPgpCard {
    /// Lists the idents (`MMMM:SSSSSSSS`) of the OpenPGP cards in all PC/SC readers.
    ///
    /// # Errors
    /// [`Pkcs11Error::CardFailed`] when pcscd cannot be reached or lists no readers.
    pub fn list_idents() -> Result<Vec<String>, Pkcs11Error> {
        let backends = PcscBackend::card_backends(None).map_err(|e| pcsc_error("listing", &e))?;
        let mut idents = Vec::new();
        for backend in backends.flatten() {
            let Ok(mut card) = Card::<Open>::new(backend) else {
                continue;
            };
            if let Ok(ident) = read_ident(&mut card) {
                idents.push(ident);
            }
        }
        Ok(idents)
    }

    /// Opens the card whose application identifier has the ident `ident` (case-insensitive).
    ///
    /// # Errors
    /// [`Pkcs11Error::CardNotFound`] when no reader contains that card, with the idents seen, or
    /// [`Pkcs11Error::CardFailed`] when pcscd cannot be reached.
    pub fn open(ident: &str) -> Result<Self, Pkcs11Error> {
        let wanted = ident.to_ascii_uppercase();
        let backends = PcscBackend::card_backends(None).map_err(|e| pcsc_error("listing", &e))?;
        let mut available = Vec::new();
        for backend in backends.flatten() {
            let Ok(mut card) = Card::<Open>::new(backend) else {
                continue;
            };
            match read_ident(&mut card) {
                Ok(found) if found == wanted => {
                    debug!(ident = %found, "opened openpgp card");
                    return Ok(Self { card, ident: found });
                }
                Ok(found) => available.push(found),
                Err(error) => debug!(%error, "skipping a card without a readable application id"),
            }
        }
        Err(Pkcs11Error::CardNotFound {
            ident: wanted,
            available,
        })
    }

    /// Returns the card's ident, `MMMM:SSSSSSSS` in upper-case hex.
    pub fn ident(&self) -> &str {
        &self.ident
    }

    /// Reads the user PIN's retry counter (0 means blocked).
    ///
    /// # Errors
    /// [`Pkcs11Error::CardFailed`] when the card cannot be read.
    pub fn user_pin_retries(&mut self) -> Result<u8, Pkcs11Error> {
        let ident = self.ident.clone();
        let mut tx = self.transaction()?;
        read_retries(&ident, &mut tx, Pin::User)
    }

    /// Reads the public key in the authentication slot.
    ///
    /// # Errors
    /// [`Pkcs11Error::CardKeyMissing`] for an empty slot, [`Pkcs11Error::CardKeyInvalid`] or
    /// [`Pkcs11Error::CardAlgorithmUnsupported`] for a key this crate cannot use, and
    /// [`Pkcs11Error::CardFailed`] when the card cannot be read.
    pub fn authentication_key(&mut self) -> Result<CardPublicKey, Pkcs11Error> {
        let ident = self.ident.clone();
        let mut tx = self.transaction()?;
        let fingerprint = tx
            .fingerprint(KeyType::Authentication)
            .map_err(|e| card_error(&ident, "reading the key fingerprints", &e))?;
        if fingerprint.is_none() {
            return Err(Pkcs11Error::CardKeyMissing { ident });
        }
        let material = tx
            .public_key_material(KeyType::Authentication)
            .map_err(|e| card_error(&ident, "reading the authentication key", &e))?;
        CardPublicKey::from_material(&ident, &material)
    }

    /// Reads the OpenPGP fingerprint the card stores for its authentication key, or `None`
    /// for an empty slot. It matches the fingerprint of the authentication subkey of the
    /// OpenPGP key the card's key belongs to.
    ///
    /// # Errors
    /// [`Pkcs11Error::CardFailed`] when the card cannot be read.
    pub fn authentication_fingerprint(&mut self) -> Result<Option<Vec<u8>>, Pkcs11Error> {
        let ident = self.ident.clone();
        let mut tx = self.transaction()?;
        let fingerprint = tx
            .fingerprint(KeyType::Authentication)
            .map_err(|e| card_error(&ident, "reading the key fingerprints", &e))?;
        Ok(fingerprint.map(|f| f.as_bytes().to_vec()))
    }

    /// Generates a new authentication key on the card after verifying `admin_pin`, sets its
    /// creation time to now and stores its OpenPGP version 4 fingerprint.
    ///
    /// # Errors
    /// [`Pkcs11Error::CardWrongPin`] or [`Pkcs11Error::CardPinBlocked`] for the admin PIN,
    /// [`Pkcs11Error::CardFailed`] when the card rejects the algorithm or the generation.
    pub fn generate_authentication_key(
        &mut self,
        admin_pin: &str,
        algorithm: CardKeyAlgorithm,
    ) -> Result<CardPublicKey, Pkcs11Error> {
        let ident = self.ident.clone();
        let mut tx = self.transaction()?;
        verify_pin(&ident, &mut tx, Pin::Admin, admin_pin)?;

        let simple = match algorithm {
            CardKeyAlgorithm::Ed25519 => AlgoSimple::Curve25519,
            CardKeyAlgorithm::EcdsaP256 => AlgoSimple::NIST256,
        };
        let mut admin = tx
            .as_admin_card(None)
            .map_err(|e| card_error(&ident, "entering the admin state", &e))?;
        admin
            .set_algorithm(KeyType::Authentication, simple)
            .map_err(|e| card_error(&ident, "PUT DATA (algorithm attributes)", &e))?;
        let (material, _) = admin
            .generate_key(fingerprint_of_material, KeyType::Authentication)
            .map_err(|e| card_error(&ident, "GENERATE ASYMMETRIC KEY PAIR", &e))?;
        info!(ident = %ident, ?algorithm, "generated authentication key on openpgp card");
        CardPublicKey::from_material(&ident, &material)
    }

    /// Verifies `pin` as the user PIN (PW1 for INTERNAL AUTHENTICATE and decryption).
    ///
    /// # Errors
    /// [`Pkcs11Error::CardWrongPin`] with the retries left, [`Pkcs11Error::CardPinBlocked`]
    /// when no tries are left, or [`Pkcs11Error::CardFailed`].
    pub fn verify_user_pin(&mut self, pin: &str) -> Result<(), Pkcs11Error> {
        let ident = self.ident.clone();
        let mut tx = self.transaction()?;
        verify_pin(&ident, &mut tx, Pin::User, pin)
    }

    /// Verifies the user PIN unless the card reports it verified, asking `pins` for it.
    ///
    /// The request names the card as a token (label and serial are the ident, model
    /// "OpenPGP card") and sets `final_try` when one try is left, so a [`ConfiguredPin`]
    /// declines then and only a PIN a person enters is tried.
    ///
    /// [`ConfiguredPin`]: crate::ConfiguredPin
    ///
    /// # Errors
    /// [`Pkcs11Error::PinNotProvided`] when every source declines, the errors of
    /// [`Self::verify_user_pin`], and any error a source returns.
    pub fn login(&mut self, pins: &dyn PinSource) -> Result<(), Pkcs11Error> {
        let ident = self.ident.clone();
        let mut tx = self.transaction()?;
        login_in(&ident, &mut tx, pins)
    }

    /// Signs `input` with the authentication key (INTERNAL AUTHENTICATE), first verifying the
    /// user PIN from `pins` when the card needs it.
    ///
    /// For Ed25519, `input` is the whole message and the result is the 64-byte RFC 8032
    /// signature. For P-256, `input` is the message digest and the result is a DER
    /// `Ecdsa-Sig-Value`. Both are the forms TLS and GnuTLS use.
    ///
    /// # Errors
    /// The errors of [`Self::login`] and [`Self::authentication_key`], and
    /// [`Pkcs11Error::CardFailed`] when the card refuses to sign.
    pub fn sign_with_authentication_key(
        &mut self,
        input: &[u8],
        pins: &dyn PinSource,
    ) -> Result<Vec<u8>, Pkcs11Error> {
        let algorithm = self.authentication_key()?.algorithm();
        let ident = self.ident.clone();
        let mut tx = self.transaction()?;
        login_in(&ident, &mut tx, pins)?;

        let raw = tx
            .card()
            .internal_authenticate(input.to_vec())
            .map_err(|e| card_error(&ident, "INTERNAL AUTHENTICATE", &e))?;
        debug!(ident = %ident, ?algorithm, input_len = input.len(), "openpgp card signed");
        match algorithm {
            CardKeyAlgorithm::Ed25519 => Ok(raw),
            CardKeyAlgorithm::EcdsaP256 => {
                ecdsa_signature_der(&raw).ok_or_else(|| Pkcs11Error::EncodingFailed {
                    output: "Ecdsa-Sig-Value",
                    reason: format!("the card returned {} signature bytes", raw.len()),
                })
            }
        }
    }

    fn transaction(&mut self) -> Result<Card<Transaction<'_>>, Pkcs11Error> {
        let ident = self.ident.clone();
        self.card
            .transaction()
            .map_err(|e| card_error(&ident, "starting a transaction", &e))
    }
}

impl fmt::Debug for OpenPgpCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenPgpCard")
            .field("ident", &self.ident)
            .finish_non_exhaustive()
    }
}

/// The two PINs of an OpenPGP card this module verifies.
#[derive(Debug, Clone, Copy)]
enum Pin {
    /// PW1, for INTERNAL AUTHENTICATE and decryption.
    User,
    /// PW3, for key generation and card administration.
    Admin,
}

impl Pin {
    fn name(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
        }
    }
}

fn read_ident(card: &mut Card<Open>) -> Result<String, CardError> {
    let tx = card.transaction()?;
    Ok(tx.application_identifier()?.ident())
}

/// Reads a PIN's retry counter, bypassing the cached application data.
fn read_retries(ident: &str, tx: &mut Card<Transaction<'_>>, pin: Pin) -> Result<u8, Pkcs11Error> {
    let read = tx
        .invalidate_cache()
        .and_then(|()| tx.pw_status_bytes())
        .map_err(|e| card_error(ident, "reading the PIN status bytes", &e))?;
    Ok(match pin {
        Pin::User => read.err_count_pw1(),
        Pin::Admin => read.err_count_pw3(),
    })
}

/// Verifies one PIN and turns a rejection into the PIN error with the card's retry counter.
fn verify_pin(
    ident: &str,
    tx: &mut Card<Transaction<'_>>,
    pin: Pin,
    value: &str,
) -> Result<(), Pkcs11Error> {
    if read_retries(ident, tx, pin)? == 0 {
        return Err(Pkcs11Error::CardPinBlocked {
            ident: ident.to_owned(),
            pin: pin.name(),
        });
    }

    let secret = SecretString::from(value.to_owned());
    let result = match pin {
        Pin::User => tx.verify_user_pin(secret),
        Pin::Admin => tx.verify_admin_pin(secret),
    };
    match result {
        Ok(()) => Ok(()),
        Err(CardError::CardStatus(status)) => {
            let retries_left = read_retries(ident, tx, pin)?;
            warn!(ident = %ident, pin = pin.name(), retries_left, %status, "card rejected PIN");
            if retries_left == 0 {
                Err(Pkcs11Error::CardPinBlocked {
                    ident: ident.to_owned(),
                    pin: pin.name(),
                })
            } else {
                Err(Pkcs11Error::CardWrongPin {
                    ident: ident.to_owned(),
                    pin: pin.name(),
                    retries_left,
                })
            }
        }
        Err(error) => Err(card_error(ident, "VERIFY", &error)),
    }
}

/// Verifies the user PIN from `pins` unless the card already has it verified.
fn login_in(
    ident: &str,
    tx: &mut Card<Transaction<'_>>,
    pins: &dyn PinSource,
) -> Result<(), Pkcs11Error> {
    // VERIFY without data returns 9000 when PW1 is verified, without spending a try.
    if tx.check_user_verified().is_ok() {
        return Ok(());
    }

    let retries = read_retries(ident, tx, Pin::User)?;
    let request = PinRequest::new(card_token_info(ident, retries), 0, PIN_PROMPT);
    let pin: Zeroizing<String> =
        pins.pin(&request)?
            .ok_or_else(|| Pkcs11Error::PinNotProvided {
                token: ident.to_owned(),
            })?;
    verify_pin(ident, tx, Pin::User, &pin)
}

/// Describes the card as a token for a [`PinRequest`].
fn card_token_info(ident: &str, retries: u8) -> TokenInfo {
    TokenInfo {
        slot_id: 0,
        slot_description: String::new(),
        slot_manufacturer: String::new(),
        label: ident.to_owned(),
        manufacturer: String::new(),
        model: "OpenPGP card".to_owned(),
        serial: ident.to_owned(),
        flags: TokenFlags {
            login_required: true,
            user_pin_initialized: true,
            protected_authentication_path: false,
            pin_count_low: false,
            final_try: retries == 1,
            locked: retries == 0,
            write_protected: false,
        },
        min_pin_len: MIN_USER_PIN_LEN,
        // The PIN status bytes give PW1's maximum length in 7 bits, so no card allows more.
        max_pin_len: 127,
    }
}

/// Computes the fingerprint the card stores for a key it generated (openpgp-card passes this
/// function to GENERATE ASYMMETRIC KEY PAIR).
fn fingerprint_of_material(
    material: &PublicKeyMaterial,
    created: KeyGenerationTime,
    _slot: KeyType,
) -> Result<Fingerprint, CardError> {
    let key = CardPublicKey::from_material("generated key", material)
        .map_err(|e| CardError::UnsupportedAlgo(e.to_string()))?;
    Ok(Fingerprint::from(
        key.openpgp_v4_fingerprint(u32::from(&created)),
    ))
}

fn card_error(ident: &str, operation: &'static str, error: &CardError) -> Pkcs11Error {
    Pkcs11Error::CardFailed {
        ident: ident.to_owned(),
        operation,
        reason: error.to_string(),
    }
}

fn pcsc_error(operation: &'static str, error: &impl fmt::Display) -> Pkcs11Error {
    Pkcs11Error::CardFailed {
        ident: "pcsc".to_owned(),
        operation,
        reason: error.to_string(),
    }
}
