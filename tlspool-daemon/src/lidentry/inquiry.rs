//! The callback sequence of one handshake: whether the helper may be skipped, the DB-entry
//! callbacks, the inquiry, and the reading of its answer into a [`Selection`].
//!
//! A client handshake consults the helper when the disclose database has a selector for the
//! remote identity, unless the registration's `SKIP_*` flags allow the stored list to be
//! used as it is. It also consults the helper when no selector matches, so that a first
//! contact can be answered and stored (the original TLS Pool did not). With `WANT_DBENTRY`
//! the helper first receives one DB-entry callback per local identity listed under the
//! selector, whose answers are ignored. The inquiry then proposes the first listed identity.
//! Its answer names the chosen local identity and, with `DBINSERT`, `DBAPPEND` or
//! `DBREORDER`, a disclose change for the concrete remote identity or a selector at most
//! `maxlevels` steps more general. The change is only recorded here; the handshake commits it
//! when it succeeds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;
use tracing::{debug, warn};

use tlspool_core::db::{DiscloseChange, Disclosure, Donai, Position, Selector};
use tlspool_core::logging::TARGET_UNIXSOCK;
use tlspool_proto::{ErrorCode, Identity, LidEntry, LidEntryFlags, Payload, Record};

use super::{LidEntryService, Registration};
use crate::starttls::StartTlsError;

/// The local identity the helper chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Choice {
    /// An identity of the localid database.
    Stored(String),
    /// An identity that is being created (`NEW`): the handshake waits until the localid
    /// database lists it, at most for the window.
    New(String),
    /// An identity to issue an on-the-fly certificate for (`ONTHEFLY`).
    OnTheFly(String),
    /// No identity: the client shows no certificate.
    Nothing,
}

/// The helper's answer to an inquiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selection {
    /// The chosen local identity.
    pub(crate) choice: Choice,
    /// The disclose changes the answer asks for, in order.
    pub(crate) changes: Vec<DiscloseChange>,
    /// The helper's response window, which bounds the wait for a `NEW` identity.
    pub(crate) window: Duration,
}

impl LidEntryService {
    /// Asks the helper which local identity to disclose to `remote`, whose most concrete
    /// disclose entry is `disclosure`. Returns `None` when the helper is not consulted: none
    /// is registered, its flags allow the stored list to be used, or another handshake's
    /// sequence held it for the whole window.
    ///
    /// # Errors
    ///
    /// [`StartTlsError::LocalIdSelectionTimedOut`] when the helper does not answer within its
    /// window, [`StartTlsError::LocalIdSelectionDisconnected`] when its connection closes,
    /// [`StartTlsError::LocalIdSelectionRefused`] for an ERROR answer to the inquiry,
    /// [`StartTlsError::LocalIdSelectionInvalid`] for an answer that names no DoNAI or a
    /// selector outside the allowed range, and [`StartTlsError::CallbackTableFull`].
    pub(crate) async fn consult(
        &self,
        remote: &Donai,
        disclosure: Option<&Disclosure>,
    ) -> Result<Option<Selection>, StartTlsError> {
        let Some((flags, wait)) = self.flags_and_wait() else {
            return Ok(None);
        };
        if let Some(disclosure) = disclosure
            && may_skip(flags, disclosure)
        {
            debug!(target: TARGET_UNIXSOCK, remote_id = %remote, selector = %disclosure.selector,
                "local identity selection skipped by the registration flags");
            return Ok(None);
        }
        let Ok(_sequence) = tokio::time::timeout(wait, self.sequence.lock()).await else {
            debug!(target: TARGET_UNIXSOCK, remote_id = %remote,
                "local identity selection service busy; using the disclose database");
            return Ok(None);
        };
        let Some((registration, until)) = self.take_registration() else {
            debug!(target: TARGET_UNIXSOCK, remote_id = %remote,
                "local identity selection service gone; using the disclose database");
            return Ok(None);
        };
        // The sequence before this one may have added skip flags to the registration.
        if let Some(disclosure) = disclosure
            && may_skip(registration.flags, disclosure)
        {
            let reqid = registration.reqid;
            self.renew(registration, reqid, LidEntryFlags::empty());
            return Ok(None);
        }
        self.run_sequence(registration, until, remote, disclosure)
            .await
            .map(Some)
    }

    /// Sends the DB-entry callbacks and the inquiry, then reads the answer.
    async fn run_sequence(
        &self,
        mut registration: Registration,
        mut until: Instant,
        remote: &Donai,
        disclosure: Option<&Disclosure>,
    ) -> Result<Selection, StartTlsError> {
        let window = registration.window;
        let maxlevels = match disclosure {
            Some(disclosure) => disclosure.step,
            None => remote.generalisations().last().map_or(0, |last| last.step),
        };
        if let Some(disclosure) = disclosure
            && registration.flags.contains(LidEntryFlags::WANT_DBENTRY)
        {
            for local_id in &disclosure.local_ids {
                let entry = LidEntry {
                    flags: registration.flags | LidEntryFlags::DBENTRY,
                    maxlevels: clamp_levels(maxlevels),
                    timeout: unix_seconds(until),
                    localid: identity(&local_id.to_string())?,
                    remoteid: identity(&disclosure.selector.to_string())?,
                };
                // The answer to a DB-entry callback is ignored; only its renewal counts.
                let _ = self.callback(registration, until, entry).await?;
                (registration, until) = self
                    .take_registration()
                    .ok_or(StartTlsError::LocalIdSelectionDisconnected)?;
            }
        }

        let suggestion = disclosure
            .and_then(|disclosure| disclosure.local_ids.first())
            .map(ToString::to_string)
            .unwrap_or_default();
        let entry = LidEntry {
            flags: registration.flags,
            maxlevels: clamp_levels(maxlevels),
            timeout: unix_seconds(until),
            localid: identity(&suggestion)?,
            remoteid: identity(&remote.to_string())?,
        };
        let answer = self
            .callback(registration, until, entry)
            .await?
            .map_err(|message| StartTlsError::LocalIdSelectionRefused { message })?;
        let selection = read_answer(&answer, remote, maxlevels, window)?;
        debug!(target: TARGET_UNIXSOCK, remote_id = %remote, choice = ?selection.choice,
            changes = selection.changes.len(), "local identity selected");
        Ok(selection)
    }

    /// Sends one callback with `entry` to `registration` and waits for the answer until
    /// `until`. A LIDENTRY_CALLBACK answer or an ERROR answer renews the registration; the
    /// ERROR's message comes back as the inner error.
    async fn callback(
        &self,
        registration: Registration,
        until: Instant,
        entry: LidEntry,
    ) -> Result<Result<LidEntry, String>, StartTlsError> {
        let connection = registration.connection;
        let reqid = registration.reqid;
        let mut pending = registration
            .callbacks
            .register(connection, reqid)
            .map_err(|_| StartTlsError::CallbackTableFull)?;
        let dbentry = entry.flags.contains(LidEntryFlags::DBENTRY);
        let mut record = Record::new(reqid, Payload::LidEntryCallback(entry));
        record.cbid = pending.cbid;
        debug!(target: TARGET_UNIXSOCK, connection = connection.0, reqid, cbid = pending.cbid,
            dbentry, "sending local identity selection callback");
        if registration
            .writer
            .send_record(&record, None)
            .await
            .is_err()
        {
            return Err(StartTlsError::LocalIdSelectionDisconnected);
        }

        let response = match tokio::time::timeout_at(until, &mut pending.response).await {
            Ok(Ok(response)) => response,
            Ok(Err(_)) => return Err(StartTlsError::LocalIdSelectionDisconnected),
            Err(_) => {
                warn!(target: TARGET_UNIXSOCK, connection = connection.0,
                    window_s = registration.window.as_secs(),
                    "local identity selection service did not answer");
                return Err(StartTlsError::LocalIdSelectionTimedOut {
                    timeout: registration.window,
                });
            }
        };
        let answer = response.record;
        match answer.payload {
            Payload::LidEntryCallback(entry) => {
                self.renew(registration, answer.reqid, entry.flags);
                Ok(Ok(entry))
            }
            Payload::Error(error) if error.error_code() == Some(ErrorCode::ClientDisconnect) => {
                Err(StartTlsError::LocalIdSelectionDisconnected)
            }
            Payload::Error(error) => {
                debug!(target: TARGET_UNIXSOCK, connection = connection.0,
                    message = error.message.as_str(), "local identity selection refused");
                self.renew(registration, answer.reqid, LidEntryFlags::empty());
                Ok(Err(error.message))
            }
            other => Err(StartTlsError::BadCallbackResponse {
                callback: "PIOC_LIDENTRY_CALLBACK_V2",
                cmd: other.cmd(),
            }),
        }
    }
}

/// Decides whether the registration `flags` let the stored list of `disclosure` be used
/// without asking: `SKIP_DBENTRY` must be set, and every other `SKIP_*` flag that is set must
/// hold for the matched selector.
pub(super) fn may_skip(flags: LidEntryFlags, disclosure: &Disclosure) -> bool {
    if !flags.contains_skip(LidEntryFlags::SKIP_DBENTRY) {
        return false;
    }
    let user_removed = disclosure.levels_up & 1 == 1;
    let domain_levels = disclosure.levels_up >> 1;
    if flags.contains_skip(LidEntryFlags::SKIP_USER) && user_removed {
        return false;
    }
    // SKIP_DOMAIN_SUB is SAME | ONEUP, so with it set both tests below are set as well.
    let same = flags.contains_skip(LidEntryFlags::SKIP_DOMAIN_SAME);
    let oneup = flags.contains_skip(LidEntryFlags::SKIP_DOMAIN_ONEUP);
    let domain_allowed = match (same, oneup) {
        (false, false) => true,
        (true, false) => domain_levels == 0,
        (false, true) => domain_levels == 1,
        (true, true) => domain_levels <= 1,
    };
    if !domain_allowed {
        return false;
    }
    let root = disclosure.selector.domain() == &tlspool_core::db::SelectorDomain::Any;
    !(flags.contains_skip(LidEntryFlags::SKIP_NOTROOT) && root)
}

/// Reads the inquiry answer `answer` for the concrete `remote` identity.
pub(super) fn read_answer(
    answer: &LidEntry,
    remote: &Donai,
    maxlevels: u32,
    window: Duration,
) -> Result<Selection, StartTlsError> {
    let local_id = answer.localid.as_str();
    let flags = answer.flags;
    let parsed =
        match local_id {
            "" => None,
            text => Some(Donai::parse(text).map_err(|error| {
                StartTlsError::LocalIdSelectionInvalid {
                    field: "localid",
                    value: text.to_owned(),
                    reason: error.to_string(),
                }
            })?),
        };
    let choice = match &parsed {
        None => Choice::Nothing,
        Some(_) if flags.contains(LidEntryFlags::ONTHEFLY) => Choice::OnTheFly(local_id.to_owned()),
        Some(_) if flags.contains(LidEntryFlags::NEW) => Choice::New(local_id.to_owned()),
        Some(_) => Choice::Stored(local_id.to_owned()),
    };

    let store = LidEntryFlags::DBINSERT | LidEntryFlags::DBAPPEND | LidEntryFlags::DBREORDER;
    let changes = match &parsed {
        // An on-the-fly identity has no localid entry, so the disclose database cannot list it.
        Some(donai) if flags.intersects(store) && !matches!(choice, Choice::OnTheFly(_)) => {
            let selector = answer_selector(answer.remoteid.as_str(), remote, maxlevels)?;
            disclose_changes(flags, &selector, donai)
        }
        _ => Vec::new(),
    };
    Ok(Selection {
        choice,
        changes,
        window,
    })
}

/// Parses the selector of an answer: empty is the concrete remote identity, and any other
/// text must be one of the first `maxlevels` generalisations of `remote`.
fn answer_selector(text: &str, remote: &Donai, maxlevels: u32) -> Result<Selector, StartTlsError> {
    if text.is_empty() {
        return Ok(remote.to_selector());
    }
    let invalid = |reason: String| StartTlsError::LocalIdSelectionInvalid {
        field: "remoteid",
        value: text.to_owned(),
        reason,
    };
    let selector = Selector::parse(text).map_err(|error| invalid(error.to_string()))?;
    let allowed = remote
        .generalisations()
        .take_while(|step| step.step <= maxlevels)
        .any(|step| step.selector == selector);
    if !allowed {
        return Err(invalid(format!(
            "it is not {remote} or a selector at most {maxlevels} steps more general"
        )));
    }
    Ok(selector)
}

/// Turns the `DB*` flags of an answer into disclose changes of `local_id` under `selector`.
/// `DBREORDER` moves the identity to the head, or to the tail with `DBAPPEND`, and adds it
/// there when it is not listed yet.
fn disclose_changes(
    flags: LidEntryFlags,
    selector: &Selector,
    local_id: &Donai,
) -> Vec<DiscloseChange> {
    let position = if flags.contains(LidEntryFlags::DBAPPEND) {
        Position::Tail
    } else {
        Position::Head
    };
    let mut changes = Vec::new();
    if flags.intersects(LidEntryFlags::DBINSERT | LidEntryFlags::DBAPPEND)
        || flags.contains(LidEntryFlags::DBREORDER)
    {
        changes.push(DiscloseChange::Insert {
            selector: selector.clone(),
            local_id: local_id.clone(),
            position,
        });
    }
    if flags.contains(LidEntryFlags::DBREORDER) {
        changes.push(DiscloseChange::Move {
            selector: selector.clone(),
            local_id: local_id.clone(),
            position,
        });
    }
    changes
}

fn identity(text: &str) -> Result<Identity, StartTlsError> {
    Identity::for_field("localid", text).map_err(|error| StartTlsError::InvalidIdentity {
        field: "localid",
        value: text.to_owned(),
        reason: error.to_string(),
    })
}

fn clamp_levels(levels: u32) -> u16 {
    u16::try_from(levels).unwrap_or(u16::MAX)
}

/// Converts the end of a window to the absolute UNIX time in seconds of a callback's
/// `timeout` field (32 bits, so it wraps in 2106).
fn unix_seconds(until: Instant) -> u32 {
    let rest = until.saturating_duration_since(Instant::now());
    let at = SystemTime::now() + rest;
    let seconds = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    u32::try_from(seconds).unwrap_or(u32::MAX)
}
