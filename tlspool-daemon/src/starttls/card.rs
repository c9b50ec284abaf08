//! OpenPGP cards as the private keys of PGP local identities whose key reference is
//! `openpgp-card:MMMM:SSSSSSSS`.
//!
//! [`CardKeys`] keeps one worker thread per card ident. The thread owns the card's only PC/SC
//! connection, so the calls to one card run one after another and never on an async worker.
//! A caller waits at most `pkcs11_timeout` for its call, and a call that is still queued when
//! that time has passed is skipped. After a PC/SC failure the thread drops the connection and
//! opens the card again for the next call, so a card put back into a reader, or a restarted
//! pcscd, serves again without a daemon restart.
//!
//! The user PIN comes from `openpgp_card_pin` first and then from the PIN entry service. A
//! PIN that the card rejected is remembered as a keyed hash and never sent to that card again.
//! The configured PIN is not tried when the card has one try left, so only a PIN that a person
//! entered can spend the last try.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, RuntimeFlavor};
use tracing::{debug, info, warn};

use tlspool_core::logging::TARGET_PKCS11;
use tlspool_core::tls::{ExternalKey, ExternalKeyAlgorithm, ExternalSigner, SignInput};
use tlspool_pkcs11::{
    CardKeyAlgorithm, CardKeyReference, ConfiguredPin, OpenPgpCard, PinRequest, PinSource,
    Pkcs11Error, Zeroizing,
};

use super::error::StartTlsError;
use crate::pinentry::{PinEntryService, ServicePin};

/// The user PIN retry counter of a new OpenPGP card (OpenPGP card application 3.4, section
/// 4.3). A PIN request counts the earlier wrong PINs as this minus the card's retry counter.
const DEFAULT_USER_PIN_TRIES: u8 = 3;

/// The OpenPGP cards of the local identities, each served by its own worker thread.
pub(crate) struct CardKeys {
    timeout: Duration,
    configured_pin: Option<Zeroizing<String>>,
    pin_entry: Arc<PinEntryService>,
    workers: Mutex<HashMap<String, Arc<CardWorker>>>,
}

/// The queue of one card's worker thread.
#[derive(Debug)]
struct CardWorker {
    ident: String,
    timeout: Duration,
    jobs: mpsc::Sender<Job>,
    thread: Option<thread::JoinHandle<()>>,
}

/// A call queued for a card's worker thread.
struct Job {
    deadline: Instant,
    run: Box<dyn FnOnce(&mut WorkerState) + Send>,
}

/// The state a card's worker thread owns: the PC/SC connection, opened on demand, and the PIN
/// sources with the card's rejected PINs.
struct WorkerState {
    ident: String,
    card: Option<OpenPgpCard>,
    pins: CardPins,
}

/// The user PIN sources of one card: `openpgp_card_pin`, then the PIN entry service.
struct CardPins {
    configured: Option<ConfiguredPin>,
    service: ServicePin,
    /// Keyed hashes of the PINs this card rejected.
    rejected: RefCell<Vec<u64>>,
    /// The hash of the PIN returned last, so a rejection can be recorded against it.
    offered: Cell<Option<u64>>,
    /// The count of earlier wrong PINs sent with the next request.
    attempt: Cell<u32>,
    hasher: RandomState,
}

/// Signs handshakes with a card's authentication key through its worker thread.
#[derive(Debug)]
struct CardSigner {
    local_id: String,
    worker: Arc<CardWorker>,
    algorithm: ExternalKeyAlgorithm,
}

impl CardKeys {
    /// Creates the registry. Each card call, including the wait for a PIN, may take
    /// `timeout` (`pkcs11_timeout`).
    pub(crate) fn new(
        timeout: Duration,
        configured_pin: Option<&str>,
        pin_entry: Arc<PinEntryService>,
    ) -> Self {
        Self {
            timeout,
            configured_pin: configured_pin.map(|pin| Zeroizing::new(pin.to_owned())),
            pin_entry,
            workers: Mutex::default(),
        }
    }

    /// Opens the card of `reference` for `local_id`, checks that its authentication key is
    /// the identity's raw public key `spki`, verifies the user PIN and returns the key that
    /// signs on the card. Blocks, so call it on a blocking thread.
    ///
    /// # Errors
    ///
    /// [`StartTlsError::CardFailed`] when the card is absent, pcscd is not reachable, the key
    /// is unusable or no PIN works, [`StartTlsError::CardKeyMismatch`] for another key, and
    /// [`StartTlsError::CardTimedOut`].
    pub(crate) fn open_key(
        &self,
        local_id: &str,
        reference: &CardKeyReference,
        spki: &[u8],
    ) -> Result<ExternalKey, StartTlsError> {
        let worker = self.worker(reference.ident());
        let public_key = worker.call(local_id, "reading the authentication key", |state| {
            state.card()?.authentication_key()
        })?;
        let card_spki = public_key
            .to_subject_public_key_info()
            .map_err(|source| worker.failed(local_id, source))?;
        if card_spki != spki {
            return Err(StartTlsError::CardKeyMismatch {
                local_id: local_id.to_owned(),
                ident: worker.ident.clone(),
            });
        }
        let algorithm = match public_key.algorithm() {
            CardKeyAlgorithm::Ed25519 => ExternalKeyAlgorithm::Ed25519,
            CardKeyAlgorithm::EcdsaP256 => ExternalKeyAlgorithm::EcdsaP256,
            other => {
                let source = Pkcs11Error::CardAlgorithmUnsupported {
                    ident: worker.ident.clone(),
                    algorithm: format!("{other:?}"),
                };
                return Err(worker.failed(local_id, source));
            }
        };

        worker.call(local_id, "verifying the user PIN", |state| {
            state.with_user_pin(|card, pins| card.login(pins))
        })?;
        let signer = CardSigner {
            local_id: local_id.to_owned(),
            worker,
            algorithm,
        };
        Ok(ExternalKey::new(Arc::new(signer)))
    }

    /// Returns the worker of the card `ident`, starting one when there is none or when the
    /// previous one stopped.
    fn worker(&self, ident: &str) -> Arc<CardWorker> {
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(worker) = workers.get(ident)
            && worker.is_running()
        {
            return Arc::clone(worker);
        }
        let pins = CardPins {
            configured: self.configured_pin.as_deref().map(ConfiguredPin::new),
            service: ServicePin::new(Arc::clone(&self.pin_entry)),
            rejected: RefCell::default(),
            offered: Cell::default(),
            attempt: Cell::default(),
            hasher: RandomState::new(),
        };
        let worker = Arc::new(CardWorker::start(ident, self.timeout, pins));
        workers.insert(ident.to_owned(), Arc::clone(&worker));
        worker
    }
}

impl fmt::Debug for CardKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardKeys")
            .field("timeout", &self.timeout)
            .field("configured_pin", &self.configured_pin.is_some())
            .finish_non_exhaustive()
    }
}

impl CardWorker {
    /// Starts the worker thread of card `ident`. The thread enters the current tokio
    /// runtime, if any, because the PIN entry service needs it, and ends when every
    /// [`CardWorker`] of the card is dropped.
    fn start(ident: &str, timeout: Duration, pins: CardPins) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let runtime = Handle::try_current().ok();
        let state_ident = ident.to_owned();
        let thread = thread::Builder::new()
            .name(format!("openpgp-card-{ident}"))
            .spawn(move || {
                let _runtime = runtime.as_ref().map(Handle::enter);
                let mut state = WorkerState {
                    ident: state_ident,
                    card: None,
                    pins,
                };
                for job in queue {
                    if Instant::now() >= job.deadline {
                        debug!(target: TARGET_PKCS11, ident = %state.ident,
                            "skipped an OpenPGP card call whose caller timed out");
                        continue;
                    }
                    (job.run)(&mut state);
                }
            });
        let thread = match thread {
            Ok(thread) => Some(thread),
            Err(error) => {
                // The queue's receiver is gone with the closure, so every call fails at once.
                warn!(target: TARGET_PKCS11, ident, %error,
                    "starting the OpenPGP card thread failed");
                None
            }
        };
        Self {
            ident: ident.to_owned(),
            timeout,
            jobs,
            thread,
        }
    }

    /// Returns whether the worker thread still takes calls.
    fn is_running(&self) -> bool {
        self.thread
            .as_ref()
            .is_some_and(|thread| !thread.is_finished())
    }

    /// Runs `operation` on the worker thread and waits for it at most `pkcs11_timeout`.
    /// A PC/SC failure drops the card's connection, so the next call opens the card again.
    fn call<T, F>(
        &self,
        local_id: &str,
        operation: &'static str,
        run: F,
    ) -> Result<T, StartTlsError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WorkerState) -> Result<T, Pkcs11Error> + Send + 'static,
    {
        let (reply, result) = mpsc::sync_channel(1);
        let job = Job {
            deadline: Instant::now() + self.timeout,
            run: Box::new(move |state| {
                let outcome = run(state);
                if let Err(error) = &outcome
                    && matches!(
                        error,
                        Pkcs11Error::CardFailed { .. } | Pkcs11Error::CardNotFound { .. }
                    )
                {
                    warn!(target: TARGET_PKCS11, ident = %state.ident, %error,
                        "OpenPGP card call failed; the card is opened again for the next call");
                    state.card = None;
                }
                // The caller stops waiting after its timeout, and then the result is dropped.
                let _ = reply.send(outcome);
            }),
        };
        let stopped = || {
            self.failed(
                local_id,
                Pkcs11Error::CardFailed {
                    ident: self.ident.clone(),
                    operation,
                    reason: "the card's worker thread stopped".to_owned(),
                },
            )
        };
        self.jobs.send(job).map_err(|_| stopped())?;
        match result.recv_timeout(self.timeout) {
            Ok(outcome) => outcome.map_err(|source| self.failed(local_id, source)),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(StartTlsError::CardTimedOut {
                ident: self.ident.clone(),
                operation,
                timeout: self.timeout,
            }),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(stopped()),
        }
    }

    fn failed(&self, local_id: &str, source: Pkcs11Error) -> StartTlsError {
        StartTlsError::CardFailed {
            local_id: local_id.to_owned(),
            ident: self.ident.clone(),
            source,
        }
    }
}

impl WorkerState {
    /// Returns the open card, opening it first when there is no connection.
    fn card(&mut self) -> Result<&mut OpenPgpCard, Pkcs11Error> {
        open_card(&self.ident, &mut self.card)
    }

    /// Runs `operation`, which verifies the user PIN from the given source when the card
    /// needs it. After a rejected PIN it records the PIN and runs `operation` again, so the
    /// next source is asked. It stops at the first other outcome, such as a blocked PIN or
    /// every source declining.
    fn with_user_pin<T>(
        &mut self,
        mut operation: impl FnMut(&mut OpenPgpCard, &dyn PinSource) -> Result<T, Pkcs11Error>,
    ) -> Result<T, Pkcs11Error> {
        let Self { ident, card, pins } = self;
        let card = open_card(ident, card)?;
        loop {
            let retries = card.user_pin_retries()?;
            pins.attempt
                .set(u32::from(DEFAULT_USER_PIN_TRIES.saturating_sub(retries)));
            pins.offered.set(None);
            match operation(card, pins) {
                Err(error @ Pkcs11Error::CardWrongPin { .. }) => {
                    // Every PIN returned is recorded in `offered`, so this is always set.
                    let Some(rejected) = pins.offered.take() else {
                        return Err(error);
                    };
                    pins.rejected.borrow_mut().push(rejected);
                    warn!(target: TARGET_PKCS11, ident = %ident, %error,
                        "OpenPGP card rejected the user PIN; asking the next PIN source");
                }
                other => return other,
            }
        }
    }
}

/// Returns the card in `slot`, opening the card `ident` first when the slot is empty.
fn open_card<'a>(
    ident: &str,
    slot: &'a mut Option<OpenPgpCard>,
) -> Result<&'a mut OpenPgpCard, Pkcs11Error> {
    match slot {
        Some(card) => Ok(card),
        None => {
            let card = OpenPgpCard::open(ident)?;
            info!(target: TARGET_PKCS11, ident, "opened OpenPGP card");
            Ok(slot.insert(card))
        }
    }
}

impl PinSource for CardPins {
    fn pin(&self, request: &PinRequest) -> Result<Option<Zeroizing<String>>, Pkcs11Error> {
        let request = PinRequest::new(
            request.token.clone(),
            self.attempt.get(),
            request.prompt.clone(),
        );
        let configured = self.configured.as_ref().map(|pin| pin as &dyn PinSource);
        let sources = [configured, Some(&self.service as &dyn PinSource)];
        for source in sources.into_iter().flatten() {
            let Some(pin) = source.pin(&request)? else {
                continue;
            };
            let fingerprint = self.hasher.hash_one(pin.as_bytes());
            if self.rejected.borrow().contains(&fingerprint) {
                debug!(target: TARGET_PKCS11, card = %request.token.label,
                    "skipped a PIN that the OpenPGP card already rejected");
                continue;
            }
            self.offered.set(Some(fingerprint));
            return Ok(Some(pin));
        }
        Ok(None)
    }
}

impl ExternalSigner for CardSigner {
    fn algorithm(&self) -> ExternalKeyAlgorithm {
        self.algorithm
    }

    fn sign(&self, input: SignInput<'_>) -> Result<Vec<u8>, String> {
        let bytes = match input {
            SignInput::Message(bytes) | SignInput::Digest(bytes) => bytes.to_vec(),
        };
        let call = || {
            self.worker
                .call(&self.local_id, "INTERNAL AUTHENTICATE", move |state| {
                    state
                        .with_user_pin(|card, pins| card.sign_with_authentication_key(&bytes, pins))
                })
        };
        // GnuTLS calls this on the thread that drives the handshake, which may be an async
        // worker, so that worker hands its other tasks away while it waits for the card.
        let on_multi_thread_runtime = Handle::try_current()
            .is_ok_and(|runtime| runtime.runtime_flavor() == RuntimeFlavor::MultiThread);
        let result = if on_multi_thread_runtime {
            tokio::task::block_in_place(call)
        } else {
            call()
        };
        result.map_err(|error| {
            warn!(target: TARGET_PKCS11, local_id = %self.local_id, %error,
                "OpenPGP card signature failed");
            error.to_string()
        })
    }
}
