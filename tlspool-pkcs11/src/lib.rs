//! PKCS #11 keys and PIN handling for the TLS Pool.
//!
//! The daemon's private keys live on PKCS #11 tokens; `localid.db` names each key by an
//! RFC 7512 `pkcs11:` URI. This crate owns everything about those tokens except the signing
//! inside TLS handshakes:
//!
//! - [`Pkcs11Uri`]: parsing, printing and matching `pkcs11:` URIs;
//! - [`Module`]: loading the module named by `pkcs11_path` once per process, listing its
//!   tokens and finding the token and key objects a URI names;
//! - logging in with PINs from a [`PinSource`] (the `pkcs11_pin` setting as
//!   [`ConfiguredPin`], then the PIN entry service, chained with [`PinChain`]) and keeping
//!   one logged-in session per token;
//! - generating key pairs for `tlspool-admin dev-init` ([`Module::generate_key_pair`]) and
//!   signing for the on-the-fly certificate signer ([`Module::sign`]).
//! - OpenPGP cards through PC/SC ([`OpenPgpCard`], named by an `openpgp-card:` reference,
//!   [`CardKeyReference`]): generating and reading the authentication key, verifying the user
//!   PIN from the same [`PinSource`] chain, and signing with that key.
//!
//! # Handshake signatures go through GnuTLS
//!
//! During a handshake GnuTLS signs by importing the key's `pkcs11:` URI itself
//! (`gnutls_privkey_import_url` after `gnutls_pkcs11_add_provider` for the same module). That
//! takes about ten lines and lets p11-kit and GnuTLS handle the RSA-PSS and ECDSA encodings
//! of every TLS version. A sign callback (`gnutls_privkey_import_ext4`) is kept for keys
//! outside PKCS #11, such as OpenPGP cards.
//!
//! Both share the module in one process, so the order matters: call [`Module::load`] before
//! GnuTLS adds the module as a provider. Then call [`Module::login`] for each token in use.
//! PKCS #11 login state belongs to the application and token, not to one session, so the
//! session this crate keeps open keeps GnuTLS's sessions on that token logged in as well.
//!
//! # Example
//!
//! ```no_run
//! use tlspool_pkcs11::{ConfiguredPin, Module, PinChain, Pkcs11Uri};
//!
//! # fn main() -> Result<(), tlspool_pkcs11::Pkcs11Error> {
//! let module = Module::load("/usr/lib/softhsm/libsofthsm2.so")?;
//! let pins = PinChain::new().then(ConfiguredPin::new("1234"));
//! let token = module.find_token(&Pkcs11Uri::parse("pkcs11:token=tlspool")?)?;
//! module.login(&token, &pins)?;
//! # Ok(())
//! # }
//! ```
//!
//! # Known limitations
//!
//! - Operations on one token take turns on its single session, so a token makes one
//!   signature at a time through this crate. GnuTLS signs in sessions of its own.
//! - Only user PINs are handled: no security-officer login, no protected authentication path
//!   (`CKF_PROTECTED_AUTHENTICATION_PATH` tokens are asked for a PIN like any other), and no
//!   PIN change.
//! - Query attributes `pin-value`, `pin-source`, `module-name` and `module-path` are parsed
//!   and printed but not acted on; the module comes from `pkcs11_path` and PINs from the
//!   configured sources.
//! - SoftHSM 2.6.1 never sets `CKF_USER_PIN_FINAL_TRY` or `CKF_USER_PIN_LOCKED`, so the
//!   final-try and locked paths are checked only by unit tests of the PIN sources.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod card;
mod encoding;
mod error;
mod keys;
mod module;
mod pin;
mod session;
mod sign;
mod token;
mod uri;

pub use card::{CardKeyAlgorithm, CardKeyReference, CardPublicKey, OpenPgpCard};
pub use cryptoki::context::Function;
pub use cryptoki::error::RvError;
pub use error::{Pkcs11Error, UriProblem};
pub use keys::{GeneratedKeyPair, KeyAlgorithm};
pub use module::{Module, ModuleStats};
pub use pin::{ConfiguredPin, PIN_PROMPT, PinChain, PinRequest, PinSource};
pub use session::MAX_PIN_REQUESTS;
pub use sign::{EcdsaFormat, HashAlgorithm, SignatureScheme};
pub use token::{KeyKind, LibraryInfo, ObjectInfo, TokenFlags, TokenInfo};
pub use uri::{LibraryVersion, ObjectType, Pkcs11Uri};
pub use zeroize::Zeroizing;
