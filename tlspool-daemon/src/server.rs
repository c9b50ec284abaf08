//! The accept loop: one task per listening socket hands new connections to the server, which
//! runs one task per connection until SIGTERM, SIGINT or SIGHUP stops it.

use std::os::unix::net::UnixListener as StdUnixListener;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{info, warn};

use tlspool_core::logging::TARGET_DAEMON;
use tlspool_core::relay::STOP_GRACE_PERIOD;

use crate::callbacks::ConnectionId;
use crate::connection::{Shared, serve_connection};
use crate::error::DaemonError;
use crate::listener::AcceptFailures;

/// Time the daemon waits for stopped sessions to end: the relays' own bound for sending
/// their last plaintext and close_notify, plus one second for their tasks to run.
const SESSIONS_END_TIMEOUT: Duration = STOP_GRACE_PERIOD.saturating_add(Duration::from_secs(1));

/// Serves every listener until a stop signal arrives, then stops accepting, ends every
/// session with close_notify (waiting at most [`SESSIONS_END_TIMEOUT`]) and closes all
/// connections.
///
/// `on_ready` runs once the signal handlers are installed and the listeners accept.
///
/// # Errors
///
/// [`DaemonError::Runtime`] when a listener or a signal handler cannot be set up.
pub(crate) async fn serve(
    listeners: Vec<StdUnixListener>,
    shared: Arc<Shared>,
    on_ready: impl FnOnce(),
) -> Result<(), DaemonError> {
    let signal_error = |source| DaemonError::Runtime {
        call: "installing a signal handler",
        source,
    };
    let mut terminate = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(signal_error)?;

    let (accepted, mut incoming) = mpsc::channel(64);
    let mut acceptors = JoinSet::new();
    for listener in listeners {
        let listener = into_tokio(listener)?;
        acceptors.spawn(accept_loop(listener, accepted.clone()));
    }
    drop(accepted);
    on_ready();

    let mut connections = JoinSet::new();
    let mut next_id = 0_u64;
    let stopped_by = loop {
        tokio::select! {
            _ = terminate.recv() => break "SIGTERM",
            _ = interrupt.recv() => break "SIGINT",
            _ = hangup.recv() => break "SIGHUP",
            Some(stream) = incoming.recv() => {
                next_id += 1;
                let task = serve_connection(stream, ConnectionId(next_id), Arc::clone(&shared));
                connections.spawn(task);
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    };

    acceptors.shutdown().await;
    // NOTE: open control connections keep being served while the sessions end, so a
    // STARTTLS that completes in this window is not stopped and is dropped at exit.
    let sessions = shared.sessions.stop_all();
    info!(target: TARGET_DAEMON, signal = stopped_by, open_connections = connections.len(),
        sessions, "stopping");
    let ended = tokio::time::timeout(SESSIONS_END_TIMEOUT, shared.sessions.wait_until_all_ended());
    if ended.await.is_err() {
        warn!(target: TARGET_DAEMON, sessions = shared.sessions.live_count(),
            timeout_ms = SESSIONS_END_TIMEOUT.as_millis(),
            "sessions did not end in time, so they are closed without close_notify");
    }
    connections.shutdown().await;
    Ok(())
}

fn into_tokio(listener: StdUnixListener) -> Result<UnixListener, DaemonError> {
    let runtime_error = |source| DaemonError::Runtime {
        call: "registering a listening socket with the runtime",
        source,
    };
    listener.set_nonblocking(true).map_err(runtime_error)?;
    UnixListener::from_std(listener).map_err(runtime_error)
}

async fn accept_loop(listener: UnixListener, accepted: mpsc::Sender<UnixStream>) {
    let mut failures = AcceptFailures::default();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                failures.succeeded();
                if accepted.send(stream).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                let delay = failures.failed(&error, std::time::Instant::now());
                tokio::time::sleep(delay).await;
            }
        }
    }
}
