//! The registration state that the PIN entry and local identity selection services share: at
//! most one helper registration waiting for a callback, and the exclusive window of the
//! connection that was sent the last callback.
//!
//! A registration is rejected while another one waits, and while a different connection
//! has an open window. Taking the waiting registration for a callback opens its
//! connection's window, and the helper's answer, which is also its next registration, is
//! stored only while that window still belongs to the same connection. When a connection
//! closes, its registration and its window are dropped.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::callbacks::ConnectionId;

/// A helper registration that belongs to one control connection.
pub(crate) trait Registrant {
    /// The control connection the registration came in on.
    fn connection(&self) -> ConnectionId;
}

/// The waiting registration of type `R` and the exclusive window of one service.
#[derive(Debug)]
pub(crate) struct ExclusiveService<R> {
    state: Mutex<State<R>>,
}

#[derive(Debug)]
struct State<R> {
    waiting: Option<R>,
    window: Option<Window>,
}

/// The exclusive window of the connection that was last sent a callback.
#[derive(Debug, Clone, Copy)]
struct Window {
    connection: ConnectionId,
    until: Instant,
}

impl<R: Registrant> ExclusiveService<R> {
    /// Creates a service without registration or window.
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                waiting: None,
                window: None,
            }),
        }
    }

    /// Stores `registration` as the waiting one. Returns `false` and drops it when another
    /// registration waits, or when a different connection has an open window.
    #[must_use]
    pub(crate) fn register(&self, registration: R) -> bool {
        let mut state = self.lock();
        let connection = registration.connection();
        let now = Instant::now();
        let window_of_other = state
            .window
            .is_some_and(|window| window.connection != connection && window.until > now);
        if state.waiting.is_some() || window_of_other {
            return false;
        }
        state.waiting = Some(registration);
        true
    }

    /// Drops the registration and the window of `connection`, whose socket closed. Returns
    /// whether a waiting registration was dropped.
    pub(crate) fn release_connection(&self, connection: ConnectionId) -> bool {
        let mut state = self.lock();
        let dropped = state
            .waiting
            .as_ref()
            .is_some_and(|waiting| waiting.connection() == connection);
        if dropped {
            state.waiting = None;
        }
        if state
            .window
            .is_some_and(|window| window.connection == connection)
        {
            state.window = None;
        }
        dropped
    }

    /// Returns whether a registration waits for a callback.
    pub(crate) fn is_waiting(&self) -> bool {
        self.lock().waiting.is_some()
    }

    /// Calls `inspect` with the waiting registration and the rest of an open window, under
    /// one lock, so that both describe the same moment.
    pub(crate) fn inspect<T>(&self, inspect: impl FnOnce(Option<&R>, Option<Duration>) -> T) -> T {
        let state = self.lock();
        let now = Instant::now();
        let rest = state
            .window
            .map(|window| window.until.saturating_duration_since(now))
            .filter(|rest| !rest.is_zero());
        inspect(state.waiting.as_ref(), rest)
    }

    /// Takes the waiting registration and opens a window of the length `window_of` returns
    /// for it. Returns the registration and the end of its window, or `None` when none waits.
    pub(crate) fn take(&self, window_of: impl FnOnce(&R) -> Duration) -> Option<(R, Instant)> {
        let mut state = self.lock();
        let registration = state.waiting.take()?;
        let until = Instant::now() + window_of(&registration);
        state.window = Some(Window {
            connection: registration.connection(),
            until,
        });
        Some((registration, until))
    }

    /// Stores the helper's answer as its next registration, unless its connection closed
    /// meanwhile (which also dropped the window) or another registration waits.
    pub(crate) fn renew(&self, registration: R) {
        let mut state = self.lock();
        let connection = registration.connection();
        let open = state
            .window
            .is_some_and(|window| window.connection == connection);
        if open && state.waiting.is_none() {
            state.waiting = Some(registration);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<R>> {
        // Every update leaves the state consistent, so a panic elsewhere cannot corrupt it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<R: Registrant> Default for ExclusiveService<R> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELPER: ConnectionId = ConnectionId(1);
    const OTHER: ConnectionId = ConnectionId(2);

    #[derive(Debug, PartialEq, Eq)]
    struct Helper(ConnectionId, u16);

    impl Registrant for Helper {
        fn connection(&self) -> ConnectionId {
            self.0
        }
    }

    const WINDOW: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn second_registration_is_rejected() {
        let service = ExclusiveService::new();
        assert!(service.register(Helper(HELPER, 1)));
        assert!(!service.register(Helper(HELPER, 2)));
        assert!(!service.register(Helper(OTHER, 3)));
    }

    #[tokio::test]
    async fn open_window_rejects_other_connection() {
        let service = ExclusiveService::new();
        assert!(service.register(Helper(HELPER, 1)));
        let (taken, _) = service.take(|_| WINDOW).expect("waiting registration");
        assert_eq!(taken, Helper(HELPER, 1));
        assert!(!service.is_waiting());
        assert!(!service.register(Helper(OTHER, 2)), "window of HELPER");
        assert!(service.register(Helper(HELPER, 3)), "own window");
    }

    #[tokio::test]
    async fn ended_window_admits_other_connection() {
        let service = ExclusiveService::new();
        assert!(service.register(Helper(HELPER, 1)));
        let _ = service
            .take(|_| Duration::ZERO)
            .expect("waiting registration");
        assert!(service.register(Helper(OTHER, 2)));
    }

    #[tokio::test]
    async fn renewal_needs_own_open_window() {
        let service = ExclusiveService::new();
        assert!(service.register(Helper(HELPER, 1)));
        let _ = service.take(|_| WINDOW).expect("waiting registration");
        service.renew(Helper(OTHER, 2));
        assert!(!service.is_waiting(), "the window is HELPER's");
        service.renew(Helper(HELPER, 3));
        let (renewed, _) = service.take(|_| WINDOW).expect("renewed registration");
        assert_eq!(renewed, Helper(HELPER, 3));
    }

    #[tokio::test]
    async fn release_drops_registration_and_window() {
        let service = ExclusiveService::new();
        assert!(service.register(Helper(HELPER, 1)));
        assert!(!service.release_connection(OTHER));
        assert!(service.is_waiting());
        let _ = service.take(|_| WINDOW).expect("waiting registration");
        assert!(!service.release_connection(HELPER), "nothing waited");
        service.renew(Helper(HELPER, 2));
        assert!(!service.is_waiting(), "no renewal after the close");
        assert!(service.register(Helper(OTHER, 3)), "the window is gone");
        assert!(service.release_connection(OTHER));
    }

    #[tokio::test]
    async fn inspect_sees_rest_of_window() {
        let service = ExclusiveService::new();
        assert!(service.register(Helper(HELPER, 1)));
        let before = service.inspect(|waiting, rest| (waiting.map(|h| h.1), rest));
        assert_eq!(before, (Some(1), None));
        let _ = service.take(|_| WINDOW).expect("waiting registration");
        let (waiting, rest) = service.inspect(|waiting, rest| (waiting.is_some(), rest));
        assert!(!waiting);
        assert!(rest.is_some_and(|rest| rest <= WINDOW && !rest.is_zero()));
    }
}
