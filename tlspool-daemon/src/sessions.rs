//! The daemon-wide registry of established TLS sessions, keyed by the 16-byte control key the
//! application chose.
//!
//! A registered session has a controlling connection, or none when it is detached, and a
//! forked flag. Commands that name a session succeed only on the connection it is attached
//! to. When a control connection closes, every session attached to it stops, unless it was
//! started with `FORK`: then it becomes detached and lives on. A session leaves the registry
//! when its [`Registration`] is dropped, which the relay task does when the session ends.
//!
//! DETACH and REATTACH follow the outcome table of the TLS Pool version 2 protocol
//! ([`SessionRegistry::detach`], [`SessionRegistry::reattach`]). Each entry keeps the request
//! queue of its relay, through which PRNG and INFO read the live session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tlspool_core::relay::SessionQueries;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use tlspool_core::logging::TARGET_UNIXSOCK;
use tlspool_proto::{CtlKey, ErrorCode};

use crate::callbacks::ConnectionId;

/// The registry, shared by every connection.
#[derive(Debug, Default)]
pub struct SessionRegistry {
    state: Mutex<State>,
    /// Notified each time the last live [`Registration`] is dropped.
    all_ended: Notify,
}

#[derive(Debug, Default)]
struct State {
    sessions: HashMap<CtlKey, Entry>,
    next_generation: u64,
    /// Registrations not yet dropped, including those of stopped sessions whose relays still
    /// send their last bytes after their key left the map.
    live_registrations: usize,
}

#[derive(Debug)]
struct Entry {
    owner: Option<ConnectionId>,
    forked: bool,
    generation: u64,
    stop: CancellationToken,
    queries: SessionQueries,
    /// Whether privacy mode ran in the handshake, for `PIOK_INFO_PRIVACY_MODE`.
    privacy_renegotiated: bool,
}

/// A session's place in the registry; dropping it unregisters the control key.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<SessionRegistry>,
    ctlkey: CtlKey,
    generation: u64,
    stop: CancellationToken,
}

/// The error of [`SessionRegistry::register`]: another session has the control key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the control key is registered to another session")]
pub struct CtlKeyInUse;

/// Why DETACH or REATTACH failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// No session has the control key.
    #[error("no session has the control key")]
    NotFound,
    /// DETACH of a session that is already detached.
    #[error("the session is detached")]
    Detached,
    /// DETACH of a session attached to another connection.
    #[error("the session is attached to another connection")]
    NotYours,
    /// REATTACH of a session that is attached.
    #[error("the session is attached")]
    Attached,
}

impl SessionRegistry {
    /// Creates an empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Registers `ctlkey`, attached to `owner` (or detached for `None`), surviving the
    /// owner's close if `forked`, with `queries` reaching the session's relay.
    ///
    /// # Errors
    ///
    /// [`CtlKeyInUse`] when another session has the key.
    pub fn register(
        self: &Arc<Self>,
        ctlkey: CtlKey,
        owner: Option<ConnectionId>,
        forked: bool,
        queries: SessionQueries,
    ) -> Result<Registration, CtlKeyInUse> {
        let mut state = self.lock();
        if state.sessions.contains_key(&ctlkey) {
            return Err(CtlKeyInUse);
        }
        let generation = state.next_generation;
        state.next_generation += 1;
        state.live_registrations += 1;
        let stop = CancellationToken::new();
        state.sessions.insert(
            ctlkey,
            Entry {
                owner,
                forked,
                generation,
                stop: stop.clone(),
                queries,
                privacy_renegotiated: false,
            },
        );
        Ok(Registration {
            registry: Arc::clone(self),
            ctlkey,
            generation,
            stop,
        })
    }

    /// Detaches the session of `ctlkey` from `connection`, which must be its owner.
    ///
    /// # Errors
    ///
    /// [`ControlError::NotFound`], [`ControlError::Detached`] or [`ControlError::NotYours`].
    pub fn detach(&self, ctlkey: &CtlKey, connection: ConnectionId) -> Result<(), ControlError> {
        let mut state = self.lock();
        let entry = state
            .sessions
            .get_mut(ctlkey)
            .ok_or(ControlError::NotFound)?;
        match entry.owner {
            None => Err(ControlError::Detached),
            Some(owner) if owner != connection => Err(ControlError::NotYours),
            Some(_) => {
                entry.owner = None;
                Ok(())
            }
        }
    }

    /// Attaches the detached session of `ctlkey` to `connection`.
    ///
    /// # Errors
    ///
    /// [`ControlError::NotFound`] or [`ControlError::Attached`].
    pub fn reattach(&self, ctlkey: &CtlKey, connection: ConnectionId) -> Result<(), ControlError> {
        let mut state = self.lock();
        let entry = state
            .sessions
            .get_mut(ctlkey)
            .ok_or(ControlError::NotFound)?;
        if entry.owner.is_some() {
            return Err(ControlError::Attached);
        }
        entry.owner = Some(connection);
        Ok(())
    }

    /// Tells whether the session of `ctlkey` is attached to `connection`, the condition of
    /// every command that names a session.
    pub fn is_attached_to(&self, ctlkey: &CtlKey, connection: ConnectionId) -> bool {
        self.lock()
            .sessions
            .get(ctlkey)
            .is_some_and(|entry| entry.owner == Some(connection))
    }

    /// Returns the request queue of the session of `ctlkey` if it is attached to
    /// `connection`, the condition of PRNG and INFO.
    pub fn attached_queries(
        &self,
        ctlkey: &CtlKey,
        connection: ConnectionId,
    ) -> Option<SessionQueries> {
        self.lock()
            .sessions
            .get(ctlkey)
            .filter(|entry| entry.owner == Some(connection))
            .map(|entry| entry.queries.clone())
    }

    /// Returns whether privacy mode ran for the session of `ctlkey`, or `None` if it is not
    /// attached to `connection`.
    pub fn attached_privacy_renegotiated(
        &self,
        ctlkey: &CtlKey,
        connection: ConnectionId,
    ) -> Option<bool> {
        self.lock()
            .sessions
            .get(ctlkey)
            .filter(|entry| entry.owner == Some(connection))
            .map(|entry| entry.privacy_renegotiated)
    }

    /// Stops the session of `ctlkey` if it is attached to `connection`, as a failed
    /// renegotiation requires; its relay then ends and unregisters the key. Returns whether a
    /// session was stopped.
    pub fn stop_attached(&self, ctlkey: &CtlKey, connection: ConnectionId) -> bool {
        let state = self.lock();
        let entry = state
            .sessions
            .get(ctlkey)
            .filter(|entry| entry.owner == Some(connection));
        entry.inspect(|entry| entry.stop.cancel()).is_some()
    }

    /// Applies the close of `connection`: its forked sessions become detached, the others are
    /// stopped and unregistered. Returns how many were stopped and how many detached.
    pub fn release_connection(&self, connection: ConnectionId) -> (usize, usize) {
        let mut stopped = 0;
        let mut detached = 0;
        self.lock().sessions.retain(|_, entry| {
            if entry.owner != Some(connection) {
                return true;
            }
            if entry.forked {
                entry.owner = None;
                detached += 1;
                true
            } else {
                entry.stop.cancel();
                stopped += 1;
                false
            }
        });
        if stopped + detached > 0 {
            debug!(target: TARGET_UNIXSOCK, connection = connection.0, stopped, detached,
                "applied the close of a control connection to its sessions");
        }
        (stopped, detached)
    }

    /// Stops every registered session, attached or not, for a daemon that shuts down.
    /// Returns how many were stopped. Each relay then sends close_notify and unregisters its
    /// control key when it ends.
    pub fn stop_all(&self) -> usize {
        let state = self.lock();
        for entry in state.sessions.values() {
            entry.stop.cancel();
        }
        state.sessions.len()
    }

    /// Waits until every [`Registration`] is dropped, which each relay task does when its
    /// session has ended, stopped ones included.
    pub async fn wait_until_all_ended(&self) {
        loop {
            let all_ended = self.all_ended.notified();
            if self.lock().live_registrations == 0 {
                return;
            }
            all_ended.await;
        }
    }

    /// Returns the number of live [`Registration`]s: the registered sessions plus stopped
    /// ones that are still ending.
    pub fn live_count(&self) -> usize {
        self.lock().live_registrations
    }

    /// Returns the number of registered sessions.
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Tells whether no session is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the map consistent, so a panic elsewhere cannot corrupt it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Registration {
    /// Returns the signal that stops the session: it is cancelled when the control
    /// connection of an attached session without `FORK` closes.
    pub fn stop_signal(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Records that privacy mode ran in the handshake of this session.
    ///
    /// A later renegotiation keeps the mark, because it runs under the encryption of the
    /// established session and so also sends its certificates encrypted.
    pub fn set_privacy_renegotiated(&self) {
        let mut state = self.registry.lock();
        let entry = state
            .sessions
            .get_mut(&self.ctlkey)
            .filter(|entry| entry.generation == self.generation);
        if let Some(entry) = entry {
            entry.privacy_renegotiated = true;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut state = self.registry.lock();
        let current = state
            .sessions
            .get(&self.ctlkey)
            .is_some_and(|entry| entry.generation == self.generation);
        if current {
            state.sessions.remove(&self.ctlkey);
        }
        state.live_registrations -= 1;
        if state.live_registrations == 0 {
            self.registry.all_ended.notify_waiters();
        }
    }
}

impl ControlError {
    /// Returns the TLS Pool error code of the ERROR reply.
    pub fn error_code(self) -> ErrorCode {
        match self {
            Self::NotFound => ErrorCode::CtlkeyNotFound,
            Self::Detached => ErrorCode::CtlkeyDetached,
            Self::NotYours => ErrorCode::CtlkeyNotYours,
            Self::Attached => ErrorCode::CtlkeyAttached,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINE: ConnectionId = ConnectionId(1);

    fn queries() -> SessionQueries {
        tlspool_core::relay::query_channel().0
    }
    const OTHER: ConnectionId = ConnectionId(2);

    #[test]
    fn duplicate_key_is_rejected() {
        let registry = SessionRegistry::new();
        let _first = registry
            .register([1; 16], Some(MINE), false, queries())
            .unwrap();
        assert_eq!(
            registry
                .register([1; 16], Some(OTHER), false, queries())
                .unwrap_err(),
            CtlKeyInUse
        );
        assert!(
            registry
                .register([2; 16], Some(MINE), false, queries())
                .is_ok()
        );
    }

    #[test]
    fn dropped_registration_frees_key() {
        let registry = SessionRegistry::new();
        let first = registry
            .register([1; 16], Some(MINE), false, queries())
            .unwrap();
        drop(first);
        assert!(registry.is_empty());
        assert!(
            registry
                .register([1; 16], Some(MINE), false, queries())
                .is_ok()
        );
    }

    #[test]
    fn close_stops_attached_and_detaches_forked() {
        let registry = SessionRegistry::new();
        let plain = registry
            .register([1; 16], Some(MINE), false, queries())
            .unwrap();
        let forked = registry
            .register([2; 16], Some(MINE), true, queries())
            .unwrap();
        let elsewhere = registry
            .register([3; 16], Some(OTHER), false, queries())
            .unwrap();
        assert_eq!(registry.release_connection(MINE), (1, 1));
        assert!(plain.stop_signal().is_cancelled());
        assert!(!forked.stop_signal().is_cancelled());
        assert!(!elsewhere.stop_signal().is_cancelled());
        assert_eq!(registry.len(), 2);
        assert!(!registry.is_attached_to(&[2; 16], MINE));
        assert_eq!(registry.reattach(&[2; 16], OTHER), Ok(()));
        assert!(registry.is_attached_to(&[2; 16], OTHER));
        assert!(registry.attached_queries(&[2; 16], OTHER).is_some());
        assert!(registry.attached_queries(&[2; 16], MINE).is_none());
        assert!(registry.attached_queries(&[9; 16], OTHER).is_none());
    }

    #[test]
    fn stopped_key_can_be_reused_before_relay_ends() {
        let registry = SessionRegistry::new();
        let old = registry
            .register([1; 16], Some(MINE), false, queries())
            .unwrap();
        registry.release_connection(MINE);
        let new = registry
            .register([1; 16], Some(OTHER), false, queries())
            .unwrap();
        drop(old);
        assert!(registry.is_attached_to(&[1; 16], OTHER));
        drop(new);
        assert!(registry.is_empty());
    }

    #[test]
    fn privacy_mark_reaches_attached_owner() {
        let registry = SessionRegistry::new();
        let marked = registry
            .register([1; 16], Some(MINE), false, queries())
            .unwrap();
        let _plain = registry
            .register([2; 16], Some(MINE), false, queries())
            .unwrap();
        marked.set_privacy_renegotiated();

        assert_eq!(
            registry.attached_privacy_renegotiated(&[1; 16], MINE),
            Some(true)
        );
        assert_eq!(
            registry.attached_privacy_renegotiated(&[2; 16], MINE),
            Some(false)
        );
        assert_eq!(
            registry.attached_privacy_renegotiated(&[1; 16], OTHER),
            None
        );
        assert_eq!(registry.attached_privacy_renegotiated(&[3; 16], MINE), None);
    }

    #[test]
    fn detach_and_reattach_outcomes() {
        let registry = SessionRegistry::new();
        let _session = registry
            .register([1; 16], Some(MINE), false, queries())
            .unwrap();
        let key = [1; 16];
        assert_eq!(registry.detach(&[9; 16], MINE), Err(ControlError::NotFound));
        assert_eq!(registry.detach(&key, OTHER), Err(ControlError::NotYours));
        assert_eq!(registry.reattach(&key, OTHER), Err(ControlError::Attached));
        assert_eq!(registry.detach(&key, MINE), Ok(()));
        assert_eq!(registry.detach(&key, MINE), Err(ControlError::Detached));
        assert_eq!(
            registry.reattach(&[9; 16], MINE),
            Err(ControlError::NotFound)
        );
        assert_eq!(registry.reattach(&key, OTHER), Ok(()));
        assert_eq!(
            ControlError::NotYours.error_code(),
            ErrorCode::CtlkeyNotYours
        );
    }

    #[tokio::test]
    async fn stop_all_stops_every_session() {
        let registry = SessionRegistry::new();
        let attached = registry
            .register([1; 16], Some(MINE), false, queries())
            .unwrap();
        let detached = registry.register([2; 16], None, true, queries()).unwrap();

        assert_eq!(registry.stop_all(), 2);
        assert!(attached.stop_signal().is_cancelled());
        assert!(detached.stop_signal().is_cancelled());

        let waiter = tokio::spawn({
            let registry = Arc::clone(&registry);
            async move { registry.wait_until_all_ended().await }
        });
        tokio::task::yield_now().await;
        drop(attached);
        registry.release_connection(MINE);
        registry.stop_all();
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one registration is still live");
        drop(detached);
        tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .expect("the wait ends once every registration is dropped")
            .unwrap();
    }

    #[test]
    fn detached_session_survives_close() {
        let registry = SessionRegistry::new();
        let session = registry.register([1; 16], None, false, queries()).unwrap();
        assert_eq!(registry.release_connection(MINE), (0, 0));
        assert!(!session.stop_signal().is_cancelled());
    }
}
