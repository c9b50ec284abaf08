//! The PIN entry service of the TLS Pool version 2 protocol: the one registered PINENTRY
//! connection, its exclusive window, and the callbacks that ask it for a token's user PIN.
//!
//! A helper registers with a PINENTRY record (`pio_cbid` 0) and gets no reply unless it is
//! refused with `E_TLSPOOL_PINENTRY_NOT_VACANT`. A registration is refused while another one
//! is waiting, and while a different connection has the exclusive window. When a token
//! needs a PIN that `pkcs11_pin` does not provide, [`PinEntryService::request_pin`] takes the
//! waiting registration, opens a window of `timeout_us` for that connection and sends the
//! PINENTRY callback with the token's manufacturer, model, serial and label, the count of
//! earlier wrong PINs and the prompt. The helper's PINENTRY answer carries the PIN and is also
//! its next registration. An ERROR answer declines and ends the registration.
//!
//! The original daemon waited for the answer without a time limit. This one waits until the
//! window ends (or [`DEFAULT_ANSWER_TIMEOUT`] for a window of 0), so a helper that never
//! answers cannot hold a handshake and a blocking thread for ever. PIN requests take turns:
//! one callback is outstanding at a time, and a request waits for the one before it. When the
//! helper's connection closes, its registration and window are dropped at once.
//!
//! `ServicePin` is the [`PinSource`] that the PKCS #11 login asks after `pkcs11_pin`. The
//! login runs on a blocking thread, so the source waits for the service there and never on
//! an async worker.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use tlspool_core::logging::TARGET_UNIXSOCK;
use tlspool_pkcs11::{PinRequest, PinSource, Pkcs11Error};
use tlspool_proto::tokio::RecordWriter;
use tlspool_proto::{ErrorCode, FixedString, Payload, PinEntry, Record};

use crate::callbacks::{CallbackTable, ConnectionId};
use crate::exclusive::{ExclusiveService, Registrant};

/// How long the daemon waits for a PIN when the registration's window (`timeout_us`) is 0.
/// The original `tlspool-pin-entry` tool registered with a window of this length.
pub const DEFAULT_ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// The daemon-wide PIN entry service: at most one waiting registration and one window.
#[derive(Debug, Default)]
pub struct PinEntryService {
    registration: ExclusiveService<Registration>,
    /// Held by the request whose callback is outstanding, so requests take turns.
    turn: tokio::sync::Mutex<()>,
}

/// A request for a PIN, as the service sends it to the helper: a description of the token or
/// card, the count of earlier wrong PINs and the prompt. OpenPGP cards fit the same fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinPrompt {
    /// The token or card that needs the PIN.
    pub token: TokenDescription,
    /// Wrong PINs counted for this token before this request.
    pub attempt: u32,
    /// The text to show to the person entering the PIN.
    pub prompt: String,
}

/// The PKCS #11 `CK_TOKEN_INFO` strings that identify a token to a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDescription {
    /// `manufacturerID`.
    pub manufacturer: String,
    /// `model`.
    pub model: String,
    /// `serialNumber`.
    pub serial: String,
    /// `label`.
    pub label: String,
}

/// The reason the service could not deliver a PIN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinEntryError {
    /// A registration is waiting, or another connection has the exclusive window.
    #[error("TLS Pool already has a PIN entry service")]
    NotVacant,
    /// No helper is registered, so no PIN can be requested.
    #[error("no PIN entry service is registered")]
    NotRegistered,
    /// The helper did not respond within its window.
    #[error("the PIN entry service did not answer within {} ms", .0.as_millis())]
    TimedOut(Duration),
    /// The helper's connection closed before it responded.
    #[error("the PIN entry service disconnected before it answered")]
    Disconnected,
    /// The helper responded with a record other than PINENTRY or ERROR.
    #[error("the PIN entry service answered with command code {0:#010x}")]
    BadAnswer(u32),
    /// Every callback id is in use.
    #[error("no free callback id for the PIN entry callback")]
    CallbackTableFull,
}

/// The PIN source that requests PINs from the registered PIN entry service.
#[derive(Debug)]
pub(crate) struct ServicePin {
    service: Arc<PinEntryService>,
}

/// A registration that waits for the next PIN request.
#[derive(Debug)]
struct Registration {
    connection: ConnectionId,
    reqid: u16,
    flags: u32,
    timeout_us: u32,
    writer: RecordWriter,
    callbacks: Arc<CallbackTable>,
}

impl PinEntryService {
    /// Creates a service without registration.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Registers `connection` as the helper, with the flags and window of `entry`. The
    /// registration's callbacks carry request id `reqid` and use `callbacks`.
    ///
    /// # Errors
    ///
    /// [`PinEntryError::NotVacant`] when a registration is waiting or another connection
    /// holds the window.
    pub fn register(
        &self,
        connection: ConnectionId,
        reqid: u16,
        entry: &PinEntry,
        writer: RecordWriter,
        callbacks: Arc<CallbackTable>,
    ) -> Result<(), PinEntryError> {
        let registered = self.registration.register(Registration {
            connection,
            reqid,
            flags: entry.flags,
            timeout_us: entry.timeout_us,
            writer,
            callbacks,
        });
        if !registered {
            return Err(PinEntryError::NotVacant);
        }
        debug!(target: TARGET_UNIXSOCK, connection = connection.0, reqid,
            timeout_us = entry.timeout_us, "PIN entry service registered");
        Ok(())
    }

    /// Drops the registration and the window of `connection`, whose socket closed.
    pub fn release_connection(&self, connection: ConnectionId) {
        if self.registration.release_connection(connection) {
            info!(target: TARGET_UNIXSOCK, connection = connection.0,
                "PIN entry service disconnected");
        }
    }

    /// Returns whether a registration waits for a PIN request.
    pub fn is_registered(&self) -> bool {
        self.registration.is_waiting()
    }

    /// Asks the registered helper for a PIN. Returns `None` when the helper declines (an
    /// empty PIN or an ERROR answer).
    ///
    /// # Errors
    ///
    /// [`PinEntryError::NotRegistered`] at once when no helper is registered,
    /// [`PinEntryError::TimedOut`], [`PinEntryError::Disconnected`],
    /// [`PinEntryError::BadAnswer`] and [`PinEntryError::CallbackTableFull`].
    pub async fn request_pin(
        &self,
        prompt: &PinPrompt,
    ) -> Result<Option<Zeroizing<String>>, PinEntryError> {
        // A callback in progress ends within its window, and its answer re-registers.
        let _turn = self.turn.lock().await;
        let (registration, answer_timeout) = self.take_registration()?;
        let Registration {
            connection,
            reqid,
            writer,
            callbacks,
            ..
        } = &registration;

        let mut pending = callbacks
            .register(*connection, *reqid)
            .map_err(|_| PinEntryError::CallbackTableFull)?;
        let mut record = Record::new(
            *reqid,
            Payload::PinEntry(callback_payload(&registration, prompt)),
        );
        record.cbid = pending.cbid;
        debug!(target: TARGET_UNIXSOCK, connection = connection.0, reqid, cbid = pending.cbid,
            token = %prompt.token.label, attempt = prompt.attempt, "sending PIN entry callback");
        if writer.send_record(&record, None).await.is_err() {
            return Err(PinEntryError::Disconnected);
        }

        let response = match tokio::time::timeout(answer_timeout, &mut pending.response).await {
            Ok(Ok(response)) => response,
            Ok(Err(_)) => return Err(PinEntryError::Disconnected),
            Err(_) => {
                warn!(target: TARGET_UNIXSOCK, connection = connection.0,
                    timeout_ms = answer_timeout.as_millis(), "PIN entry service did not answer");
                return Err(PinEntryError::TimedOut(answer_timeout));
            }
        };
        let mut answer = response.record;
        match &mut answer.payload {
            Payload::PinEntry(entry) => {
                // The received record bytes were wiped when the answer was decoded, and the
                // decoded string moves into `pin` without a copy, so this is the only one.
                let pin = Zeroizing::new(entry.pin.take());
                // The answer is also the next registration, on the same connection.
                self.renew(registration, answer.reqid, entry);
                Ok(Some(pin).filter(|pin| !pin.is_empty()))
            }
            Payload::Error(error) if error.error_code() == Some(ErrorCode::ClientDisconnect) => {
                Err(PinEntryError::Disconnected)
            }
            Payload::Error(error) => {
                debug!(target: TARGET_UNIXSOCK, connection = connection.0,
                    message = error.message.as_str(), "PIN entry service declined");
                Ok(None)
            }
            other => Err(PinEntryError::BadAnswer(other.cmd())),
        }
    }

    /// Takes the waiting registration and opens its connection's window.
    fn take_registration(&self) -> Result<(Registration, Duration), PinEntryError> {
        let window_of =
            |registration: &Registration| Duration::from_micros(u64::from(registration.timeout_us));
        let (registration, _) = self
            .registration
            .take(window_of)
            .ok_or(PinEntryError::NotRegistered)?;
        let window = window_of(&registration);
        let answer_timeout = if window.is_zero() {
            DEFAULT_ANSWER_TIMEOUT
        } else {
            window
        };
        Ok((registration, answer_timeout))
    }

    /// Stores the helper's answer as its next registration, unless its connection closed
    /// meanwhile (then the window is gone too).
    fn renew(&self, previous: Registration, reqid: u16, entry: &PinEntry) {
        self.registration.renew(Registration {
            reqid,
            flags: entry.flags,
            timeout_us: entry.timeout_us,
            ..previous
        });
    }
}

impl Registrant for Registration {
    fn connection(&self) -> ConnectionId {
        self.connection
    }
}

impl PinPrompt {
    /// Describes a PKCS #11 user PIN request.
    pub fn from_pkcs11(request: &PinRequest) -> Self {
        let token = &request.token;
        Self {
            token: TokenDescription {
                manufacturer: token.manufacturer.clone(),
                model: token.model.clone(),
                serial: token.serial.clone(),
                label: token.label.clone(),
            },
            attempt: request.attempt,
            prompt: request.prompt.clone(),
        }
    }
}

impl PinEntryError {
    /// Builds the ERROR reply that refuses a registration.
    pub fn to_record(&self, reqid: u16) -> Record {
        match self {
            Self::NotVacant => Record::error_code(reqid, ErrorCode::PinEntryNotVacant),
            other => Record::error(
                reqid,
                ErrorCode::ConnectionDriverSetup.code(),
                &other.to_string(),
            ),
        }
    }
}

impl ServicePin {
    pub(crate) fn new(service: Arc<PinEntryService>) -> Self {
        Self { service }
    }
}

impl PinSource for ServicePin {
    fn pin(&self, request: &PinRequest) -> Result<Option<Zeroizing<String>>, Pkcs11Error> {
        let failed = |reason: String| Pkcs11Error::PinSourceFailed { reason };
        // Logins run on the runtime's blocking threads, where `block_on` is allowed.
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| failed("the PIN entry service needs the daemon's runtime".into()))?;
        let prompt = PinPrompt::from_pkcs11(request);
        runtime
            .block_on(self.service.request_pin(&prompt))
            .map_err(|error| failed(error.to_string()))
    }
}

/// Builds the PINENTRY callback payload, cutting token strings that do not fit their field.
fn callback_payload(registration: &Registration, prompt: &PinPrompt) -> PinEntry {
    let token = &prompt.token;
    PinEntry {
        flags: registration.flags,
        attempt: prompt.attempt,
        timeout_us: registration.timeout_us,
        pin: FixedString::empty(),
        prompt: fitted(&prompt.prompt),
        token_manuf: fitted(&token.manufacturer),
        token_model: fitted(&token.model),
        token_serial: fitted(&token.serial),
        token_label: fitted(&token.label),
    }
}

/// Returns `text` cut at a character boundary to fit an `N`-byte field, without NUL bytes.
fn fitted<const N: usize>(text: &str) -> FixedString<N> {
    let mut value: String = text.chars().filter(|&c| c != '\0').collect();
    while value.len() > FixedString::<N>::MAX_LEN {
        value.pop();
    }
    FixedString::new(&value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    use tlspool_proto::tokio::{RecordReader, split};
    use tokio::net::UnixStream;

    const HELPER: ConnectionId = ConnectionId(1);
    const OTHER: ConnectionId = ConnectionId(2);

    fn registration(timeout_us: u32) -> PinEntry {
        PinEntry {
            flags: 0,
            attempt: 0,
            timeout_us,
            pin: FixedString::empty(),
            prompt: FixedString::empty(),
            token_manuf: FixedString::empty(),
            token_model: FixedString::empty(),
            token_serial: FixedString::empty(),
            token_label: FixedString::empty(),
        }
    }

    fn prompt(attempt: u32) -> PinPrompt {
        PinPrompt {
            token: TokenDescription {
                manufacturer: "SoftHSM project".into(),
                model: "SoftHSM v2".into(),
                serial: "0123456789abcdef".into(),
                label: "tlspool".into(),
            },
            attempt,
            prompt: "Enter PIN: ".into(),
        }
    }

    /// Returns the daemon's writer and the helper's reader of one socket pair.
    fn helper_socket() -> (RecordWriter, RecordReader, RecordWriter) {
        let (daemon, helper) = UnixStream::pair().expect("socket pair");
        let (_, daemon_writer) = split(daemon);
        let (helper_reader, helper_writer) = split(helper);
        (daemon_writer, helper_reader, helper_writer)
    }

    #[tokio::test]
    async fn second_registration_is_not_vacant() {
        let service = PinEntryService::new();
        let callbacks = CallbackTable::new();
        let (writer, _reader, _) = helper_socket();
        let entry = registration(1_000_000);
        service
            .register(HELPER, 1, &entry, writer.clone(), Arc::clone(&callbacks))
            .expect("first registration");
        let same = service.register(HELPER, 2, &entry, writer.clone(), Arc::clone(&callbacks));
        assert_eq!(same, Err(PinEntryError::NotVacant));
        let other = service.register(OTHER, 3, &entry, writer, callbacks);
        assert_eq!(other, Err(PinEntryError::NotVacant));
    }

    #[tokio::test]
    async fn release_frees_registration() {
        let service = PinEntryService::new();
        let callbacks = CallbackTable::new();
        let (writer, _reader, _) = helper_socket();
        let entry = registration(1_000_000);
        service
            .register(HELPER, 1, &entry, writer.clone(), Arc::clone(&callbacks))
            .expect("first registration");
        service.release_connection(HELPER);
        assert!(!service.is_registered());
        service
            .register(OTHER, 1, &entry, writer, callbacks)
            .expect("registration after release");
    }

    #[tokio::test]
    async fn request_without_registration_fails() {
        let service = PinEntryService::new();
        let result = service.request_pin(&prompt(0)).await;
        assert_eq!(result, Err(PinEntryError::NotRegistered));
    }

    #[tokio::test]
    async fn answer_returns_pin_and_renews_registration() {
        let service = PinEntryService::new();
        let callbacks = CallbackTable::new();
        let (writer, mut reader, helper_writer) = helper_socket();
        service
            .register(
                HELPER,
                7,
                &registration(30_000_000),
                writer.clone(),
                Arc::clone(&callbacks),
            )
            .expect("registration");

        let helper_callbacks = Arc::clone(&callbacks);
        let helper = tokio::spawn(async move {
            let frame = reader
                .recv()
                .await
                .expect("receive")
                .expect("callback record");
            let record = frame.decode().expect("decodes");
            let Payload::PinEntry(mut entry) = record.payload else {
                panic!("expected PINENTRY, got {:?}", record.payload);
            };
            let callback = entry.clone();
            entry.pin = FixedString::new("1234").expect("fits");
            let mut answer = Record::new(record.reqid, Payload::PinEntry(entry));
            answer.cbid = record.cbid;
            // The connection task would deliver the answer; this does the same.
            let waiter = helper_callbacks
                .take_answered(record.cbid, HELPER)
                .expect("callback outstanding");
            waiter.deliver(crate::callbacks::CallbackResponse {
                record: answer,
                fd: None,
            });
            drop(helper_writer);
            (record.reqid, callback)
        });

        let pin = service
            .request_pin(&prompt(2))
            .await
            .expect("PIN delivered");
        assert_eq!(pin.as_deref().map(String::as_str), Some("1234"));
        let (reqid, callback) = helper.await.expect("helper task");
        assert_eq!(reqid, 7);
        assert_eq!(callback.attempt, 2);
        assert_eq!(callback.token_label.as_str(), "tlspool");
        assert_eq!(callback.token_manuf.as_str(), "SoftHSM project");
        assert_eq!(callback.token_model.as_str(), "SoftHSM v2");
        assert_eq!(callback.token_serial.as_str(), "0123456789abcdef");
        assert_eq!(callback.prompt.as_str(), "Enter PIN: ");
        assert!(callback.pin.is_empty());
        assert!(service.is_registered(), "the answer registers again");
        let other = service.register(OTHER, 1, &registration(0), writer, callbacks);
        assert_eq!(other, Err(PinEntryError::NotVacant), "window still open");
    }

    #[tokio::test]
    async fn silent_helper_times_out() {
        let service = PinEntryService::new();
        let callbacks = CallbackTable::new();
        let (writer, _reader, _helper_writer) = helper_socket();
        service
            .register(
                HELPER,
                7,
                &registration(200_000),
                writer,
                Arc::clone(&callbacks),
            )
            .expect("registration");
        let result = service.request_pin(&prompt(0)).await;
        assert_eq!(
            result,
            Err(PinEntryError::TimedOut(Duration::from_millis(200)))
        );
        assert_eq!(callbacks.outstanding(), 0, "the callback id is freed");
        assert!(!service.is_registered());
    }

    #[tokio::test]
    async fn disconnect_during_request_is_reported() {
        let service = PinEntryService::new();
        let callbacks = CallbackTable::new();
        let (writer, _reader, _helper_writer) = helper_socket();
        service
            .register(
                HELPER,
                7,
                &registration(30_000_000),
                writer,
                Arc::clone(&callbacks),
            )
            .expect("registration");
        let request = {
            let service = Arc::clone(&service);
            tokio::spawn(async move { service.request_pin(&prompt(0)).await })
        };
        while callbacks.outstanding() == 0 {
            tokio::task::yield_now().await;
        }
        callbacks.release_connection(HELPER);
        service.release_connection(HELPER);
        let result = request.await.expect("request task");
        assert_eq!(result, Err(PinEntryError::Disconnected));
    }

    #[test]
    fn fitted_cuts_long_text_at_character_boundary() {
        let cut: FixedString<5> = fitted("ab\u{e9}cd");
        assert_eq!(cut.as_str(), "ab\u{e9}");
        let clean: FixedString<8> = fitted("a\0b");
        assert_eq!(clean.as_str(), "ab");
    }

    #[test]
    fn refusal_record_carries_not_vacant_code() {
        let record = PinEntryError::NotVacant.to_record(4);
        let Payload::Error(error) = record.payload else {
            panic!("expected ERROR, got {:?}", record.payload);
        };
        assert_eq!(error.tlserrno, ErrorCode::PinEntryNotVacant.code());
        assert_eq!(record.reqid, 4);
    }
}
