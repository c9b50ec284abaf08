//! The one logged-in session this crate keeps per token, and the user login into it.
//!
//! Every operation on a token runs in that session under a mutex, so operations on one token
//! take turns while different tokens work in parallel. The session is opened read/write
//! (read-only on a write-protected token) on first use and kept, because closing the last
//! session of a token would also end its login. When the token returns
//! `CKR_SESSION_HANDLE_INVALID`, `CKR_SESSION_CLOSED` or `CKR_USER_NOT_LOGGED_IN`, the session
//! is closed, reopened, logged in again and the operation repeated once.
//!
//! Login rules: only the user (`CKU_USER`) logs in, never the security officer. A locked PIN
//! is reported without asking for a PIN. Wrong PINs are counted per token, and a PIN the
//! token rejected is never sent again in this process. At most [`MAX_PIN_REQUESTS`] PINs are
//! requested per login.

use std::sync::Mutex;
use std::sync::atomic::Ordering;

use cryptoki::context::Function;
use cryptoki::error::{Error as CryptokiError, RvError};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use tracing::{debug, info, warn};

use crate::error::Pkcs11Error;
use crate::module::{Module, lock};
use crate::pin::{PIN_PROMPT, PinFingerprint, PinRequest, PinSource};
use crate::token::TokenInfo;

/// The most PINs requested from a PIN source during one login.
pub const MAX_PIN_REQUESTS: u32 = 3;

/// The shared session of one token and the token's PIN history.
pub(crate) struct TokenSession {
    slot_id: u64,
    read_only: bool,
    state: Mutex<SessionSlot>,
}

#[derive(Default)]
struct SessionSlot {
    session: Option<Session>,
    logged_in: bool,
    history: PinHistory,
}

/// The wrong PINs a token has seen from this process since the module was loaded.
#[derive(Default)]
struct PinHistory {
    failures: u32,
    rejected: Vec<PinFingerprint>,
}

/// The result of trying one PIN.
enum PinOutcome {
    LoggedIn,
    Rejected,
}

impl TokenSession {
    pub(crate) fn new(slot_id: u64, read_only: bool) -> Self {
        Self {
            slot_id,
            read_only,
            state: Mutex::new(SessionSlot::default()),
        }
    }

    /// Runs `operation` in the shared session, logging in first when `login` is set.
    pub(crate) fn run<T>(
        &self,
        module: &Module,
        token: &TokenInfo,
        login: bool,
        pins: &dyn PinSource,
        mut operation: impl FnMut(&Session) -> Result<T, Pkcs11Error>,
    ) -> Result<T, Pkcs11Error> {
        let slot = Slot::try_from(self.slot_id)
            .map_err(|e| Pkcs11Error::from_cryptoki("converting the slot id", e))?;
        let mut state = lock(&self.state);
        let mut reopened = false;

        loop {
            let session = match state.session.take() {
                Some(session) => session,
                None => {
                    state.logged_in = false;
                    self.open(module, slot)?
                }
            };

            let mut result = Ok(());
            if login && !state.logged_in {
                result = log_in(module, slot, &session, &mut state.history, pins);
                state.logged_in = result.is_ok();
            }
            let result = result.and_then(|()| operation(&session));

            // A stale session is dropped, which closes it, and the next round opens a new one.
            let stale = matches!(&result, Err(error) if is_stale_session(error));
            if !stale {
                state.session = Some(session);
                return result;
            }
            state.logged_in = false;
            if reopened {
                return result;
            }
            warn!(token = %token.label, "token session became invalid; reopening it");
            reopened = true;
        }
    }

    fn open(&self, module: &Module, slot: Slot) -> Result<Session, Pkcs11Error> {
        module
            .counters
            .sessions_opened
            .fetch_add(1, Ordering::Relaxed);
        let context = module.context();
        let session = if self.read_only {
            context.open_ro_session(slot)
        } else {
            context.open_rw_session(slot)
        };
        let session = session.map_err(|e| Pkcs11Error::from_cryptoki("opening a session", e))?;
        debug!(
            slot = self.slot_id,
            read_only = self.read_only,
            "opened token session"
        );
        Ok(session)
    }
}

fn is_stale_session(error: &Pkcs11Error) -> bool {
    matches!(
        error.rv(),
        Some(RvError::SessionHandleInvalid | RvError::SessionClosed | RvError::UserNotLoggedIn)
    )
}

/// Logs the user in to `session` unless the token needs no login or a session of this
/// process already logged in.
fn log_in(
    module: &Module,
    slot: Slot,
    session: &Session,
    history: &mut PinHistory,
    pins: &dyn PinSource,
) -> Result<(), Pkcs11Error> {
    let token = module.token_info(slot)?;
    if !token.flags.login_required || already_logged_in(session)? {
        return Ok(());
    }
    log_in_with_pins(module, slot, session, history, token, pins)
}

/// Asks `pins` for at most [`MAX_PIN_REQUESTS`] PINs and tries each on the token.
fn log_in_with_pins(
    module: &Module,
    slot: Slot,
    session: &Session,
    history: &mut PinHistory,
    mut token: TokenInfo,
    pins: &dyn PinSource,
) -> Result<(), Pkcs11Error> {
    let mut rejected_now = false;
    for _ in 0..MAX_PIN_REQUESTS {
        if token.flags.locked {
            warn!(token = %token.label, "user PIN is locked");
            return Err(Pkcs11Error::PinLocked { token: token.label });
        }
        let request = PinRequest::new(token.clone(), history.failures, PIN_PROMPT)
            .with_rejected(&history.rejected);
        let pin = pins.pin(&request)?;
        let Some(pin) = pin.filter(|p| request.fits_token_limits(p)) else {
            return Err(no_pin_error(&token, history, rejected_now));
        };

        match try_pin(module, session, history, &token, &pin)? {
            PinOutcome::LoggedIn => return Ok(()),
            PinOutcome::Rejected => rejected_now = true,
        }
        // The flags change with each wrong PIN (count low, final try, locked).
        token = module.token_info(slot)?;
    }
    Err(no_pin_error(&token, history, rejected_now))
}

fn try_pin(
    module: &Module,
    session: &Session,
    history: &mut PinHistory,
    token: &TokenInfo,
    pin: &str,
) -> Result<PinOutcome, Pkcs11Error> {
    let fingerprint = PinFingerprint::of(pin);
    if history.rejected.contains(&fingerprint) {
        // Counted as a wrong PIN without spending one of the token's tries.
        history.failures += 1;
        warn!(token = %token.label, failures = history.failures, "PIN source repeated a rejected PIN");
        return Ok(PinOutcome::Rejected);
    }

    module
        .counters
        .login_attempts
        .fetch_add(1, Ordering::Relaxed);
    // `AuthPin` is a `SecretString`, which wipes its copy of the PIN when dropped.
    let secret = AuthPin::from(pin);
    match session.login(UserType::User, Some(&secret)) {
        Ok(()) | Err(CryptokiError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
            info!(token = %token.label, "logged in to token");
            Ok(PinOutcome::LoggedIn)
        }
        Err(CryptokiError::Pkcs11(RvError::PinIncorrect, _)) => {
            history.failures += 1;
            history.rejected.push(fingerprint);
            warn!(token = %token.label, failures = history.failures, "token rejected the user PIN");
            Ok(PinOutcome::Rejected)
        }
        Err(CryptokiError::Pkcs11(RvError::PinLocked, _)) => {
            warn!(token = %token.label, "user PIN is locked");
            Err(Pkcs11Error::PinLocked {
                token: token.label.clone(),
            })
        }
        Err(error) => Err(Pkcs11Error::from_cryptoki("logging in", error)),
    }
}

/// Fails with `CKR_USER_NOT_LOGGED_IN` when `session` lost its user login, for example because
/// another session of the process logged out. The caller then reopens the session.
pub(crate) fn check_logged_in(session: &Session) -> Result<(), Pkcs11Error> {
    if already_logged_in(session)? {
        return Ok(());
    }
    Err(Pkcs11Error::Call {
        function: Function::FindObjects,
        rv: RvError::UserNotLoggedIn,
    })
}

fn already_logged_in(session: &Session) -> Result<bool, Pkcs11Error> {
    let info = session
        .get_session_info()
        .map_err(|e| Pkcs11Error::from_cryptoki("reading session information", e))?;
    Ok(matches!(
        info.session_state(),
        SessionState::RoUser | SessionState::RwUser
    ))
}

fn no_pin_error(token: &TokenInfo, history: &PinHistory, rejected_now: bool) -> Pkcs11Error {
    if rejected_now {
        Pkcs11Error::WrongPin {
            token: token.label.clone(),
            failures: history.failures,
        }
    } else {
        Pkcs11Error::PinNotProvided {
            token: token.label.clone(),
        }
    }
}
