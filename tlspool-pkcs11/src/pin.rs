//! The PIN seam: where user PINs come from and which of them may be tried.
//!
//! A [`PinSource`] returns a PIN for a [`PinRequest`] or declines. [`ConfiguredPin`] serves the
//! `pkcs11_pin` setting, and [`PinChain`] queries its sources in order, so the daemon can try the
//! configured PIN first and then the PIN entry service, as the TLS Pool version 2 protocol
//! requires. PINs travel in [`Zeroizing`] buffers, which wipe them when dropped, and are
//! never logged.
//!
//! The session layer remembers a keyed fingerprint of every PIN a token rejected and never
//! sends such a PIN again. A request carries those fingerprints, so a chain skips a source
//! whose PIN is already known to be wrong instead of spending one of the token's tries on it.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::OnceLock;

use tracing::debug;
use zeroize::Zeroizing;

use crate::error::Pkcs11Error;
use crate::token::TokenInfo;

/// The prompt sent with a PIN request; the original TLS Pool used this constant.
pub const PIN_PROMPT: &str = "Enter PIN: ";

/// A provider of user PINs, such as the configuration or the PIN entry service.
pub trait PinSource {
    /// Returns a PIN for the token in `request`, or `None` to decline.
    ///
    /// On a final try (`request.token.flags.final_try`), return only a PIN that a person
    /// entered for this request, because one more wrong PIN locks the token.
    ///
    /// # Errors
    ///
    /// Any error stops the login; use [`Pkcs11Error::PinSourceFailed`] for a source's own
    /// failures.
    fn pin(&self, request: &PinRequest) -> Result<Option<Zeroizing<String>>, Pkcs11Error>;
}

/// A request for the user PIN of one token.
#[derive(Clone)]
pub struct PinRequest {
    /// The token, with its PIN flags as read just before the request.
    pub token: TokenInfo,
    /// How many wrong PINs were counted for this token since the module was loaded.
    pub attempt: u32,
    /// The prompt to show.
    pub prompt: String,
    rejected: Vec<PinFingerprint>,
}

/// A PIN source that returns the `pkcs11_pin` setting.
///
/// It declines when the PIN is empty or outside the token's length limits, when the token
/// already rejected it, and on a token's final try.
pub struct ConfiguredPin {
    pin: Zeroizing<String>,
}

/// PIN sources asked in order until one returns a PIN that the token has not rejected.
#[derive(Default)]
pub struct PinChain {
    sources: Vec<Box<dyn PinSource + Send + Sync>>,
}

/// A keyed hash of a rejected PIN, so the PIN itself need not be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PinFingerprint(u64);

impl PinRequest {
    /// Creates a request with an empty list of rejected PINs.
    pub fn new(token: TokenInfo, attempt: u32, prompt: impl Into<String>) -> Self {
        Self {
            token,
            attempt,
            prompt: prompt.into(),
            rejected: Vec::new(),
        }
    }

    /// Returns whether the token already rejected `pin` in this process.
    pub fn was_rejected(&self, pin: &str) -> bool {
        self.rejected.contains(&PinFingerprint::of(pin))
    }

    /// Returns whether `pin` is non-empty and within the token's `ulMinPinLen` and
    /// `ulMaxPinLen` (a limit of 0 is taken as no limit).
    pub fn fits_token_limits(&self, pin: &str) -> bool {
        let len = pin.len();
        let max = self.token.max_pin_len;
        len > 0 && len >= self.token.min_pin_len && (max == 0 || len <= max)
    }

    pub(crate) fn with_rejected(mut self, rejected: &[PinFingerprint]) -> Self {
        self.rejected = rejected.to_vec();
        self
    }
}

impl fmt::Debug for PinRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinRequest")
            .field("token", &self.token)
            .field("attempt", &self.attempt)
            .field("prompt", &self.prompt)
            .field("rejected_pins", &self.rejected.len())
            .finish()
    }
}

impl ConfiguredPin {
    /// Wraps the configured PIN.
    pub fn new(pin: impl Into<String>) -> Self {
        Self {
            pin: Zeroizing::new(pin.into()),
        }
    }
}

impl PinSource for ConfiguredPin {
    fn pin(&self, request: &PinRequest) -> Result<Option<Zeroizing<String>>, Pkcs11Error> {
        let token = &request.token.label;
        if request.token.flags.final_try {
            debug!(token = %token, "configured PIN not tried on the token's final try");
            return Ok(None);
        }
        if !request.fits_token_limits(&self.pin) {
            debug!(token = %token, "configured PIN is empty or outside the token's length limits");
            return Ok(None);
        }
        if request.was_rejected(&self.pin) {
            debug!(token = %token, "configured PIN was already rejected by the token");
            return Ok(None);
        }
        Ok(Some(self.pin.clone()))
    }
}

impl fmt::Debug for ConfiguredPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConfiguredPin(<redacted>)")
    }
}

impl PinChain {
    /// Creates an empty chain, which declines every request.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a source that is asked after the ones already in the chain.
    pub fn then(mut self, source: impl PinSource + Send + Sync + 'static) -> Self {
        self.sources.push(Box::new(source));
        self
    }
}

impl PinSource for PinChain {
    fn pin(&self, request: &PinRequest) -> Result<Option<Zeroizing<String>>, Pkcs11Error> {
        for (index, source) in self.sources.iter().enumerate() {
            match source.pin(request)? {
                Some(pin) if !request.was_rejected(&pin) => return Ok(Some(pin)),
                Some(_) => debug!(
                    source = index,
                    "PIN source returned an already rejected PIN"
                ),
                None => {}
            }
        }
        Ok(None)
    }
}

impl fmt::Debug for PinChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinChain")
            .field("sources", &self.sources.len())
            .finish()
    }
}

impl PinFingerprint {
    /// Hashes `pin` with SipHash under a random key drawn once per process (std's
    /// `RandomState`), so equal PINs compare equal without the PIN being stored.
    pub(crate) fn of(pin: &str) -> Self {
        static KEY: OnceLock<RandomState> = OnceLock::new();
        Self(KEY.get_or_init(RandomState::new).hash_one(pin.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::TokenFlags;

    /// A source that always returns the same PIN, standing in for a person at a PIN entry
    /// dialog who types it.
    struct TypedPin(&'static str);

    impl PinSource for TypedPin {
        fn pin(&self, _: &PinRequest) -> Result<Option<Zeroizing<String>>, Pkcs11Error> {
            Ok(Some(Zeroizing::new(self.0.to_owned())))
        }
    }

    fn request(flags: TokenFlags) -> PinRequest {
        let token = TokenInfo {
            slot_id: 1,
            slot_description: String::new(),
            slot_manufacturer: String::new(),
            label: "token".to_owned(),
            manufacturer: String::new(),
            model: String::new(),
            serial: String::new(),
            flags,
            min_pin_len: 4,
            max_pin_len: 8,
        };
        PinRequest::new(token, 0, PIN_PROMPT)
    }

    fn answer(source: &dyn PinSource, request: &PinRequest) -> Option<String> {
        match source.pin(request) {
            Ok(pin) => pin.map(|p| p.as_str().to_owned()),
            Err(error) => panic!("PIN source failed: {error}"),
        }
    }

    #[test]
    fn configured_pin_is_returned() {
        let pin = ConfiguredPin::new("1234");
        assert_eq!(
            answer(&pin, &request(TokenFlags::default())).as_deref(),
            Some("1234")
        );
    }

    #[test]
    fn configured_pin_declines_final_try() {
        let flags = TokenFlags {
            final_try: true,
            ..TokenFlags::default()
        };
        assert_eq!(answer(&ConfiguredPin::new("1234"), &request(flags)), None);
    }

    #[test]
    fn configured_pin_declines_bad_length() {
        let request = request(TokenFlags::default());
        assert_eq!(answer(&ConfiguredPin::new(""), &request), None);
        assert_eq!(answer(&ConfiguredPin::new("123"), &request), None);
        assert_eq!(answer(&ConfiguredPin::new("123456789"), &request), None);
    }

    #[test]
    fn configured_pin_declines_rejected_pin() {
        let request = request(TokenFlags::default()).with_rejected(&[PinFingerprint::of("1234")]);
        assert!(request.was_rejected("1234"));
        assert!(!request.was_rejected("4321"));
        assert_eq!(answer(&ConfiguredPin::new("1234"), &request), None);
    }

    #[test]
    fn chain_skips_rejected_pin_to_next_source() {
        let chain = PinChain::new()
            .then(ConfiguredPin::new("1234"))
            .then(TypedPin("1234"))
            .then(TypedPin("5678"));
        let fresh = request(TokenFlags::default());
        assert_eq!(answer(&chain, &fresh).as_deref(), Some("1234"));
        let after_rejection = fresh.with_rejected(&[PinFingerprint::of("1234")]);
        assert_eq!(answer(&chain, &after_rejection).as_deref(), Some("5678"));
    }

    #[test]
    fn empty_chain_declines() {
        assert_eq!(
            answer(&PinChain::new(), &request(TokenFlags::default())),
            None
        );
    }

    #[test]
    fn debug_output_hides_pin() {
        assert!(!format!("{:?}", ConfiguredPin::new("secret-pin")).contains("secret-pin"));
    }
}
