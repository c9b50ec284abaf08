//! The event loop: one accept task per listener, one task per connection, a semaphore that
//! bounds the connections served at once, and the drain on SIGTERM or SIGINT.
//!
//! Client mode connects out to the first forward address that accepts, runs the chat there
//! and starts TLS as client with the accepted connection as plaintext side. Server mode runs
//! the chat on the accepted connection and starts TLS as server; the plaintext side is
//! connected on the daemon's PLAINTEXT_CONNECT callback.

use std::error::Error;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::TunnelError;
use crate::cli::Options;
use crate::net::{Listener, Peer, Stream};
use crate::starttls::{Identities, Plaintext, Role, StartRequest, Starttls};

/// The pause after a failed accept, such as one for lack of descriptors, before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The signals that start the drain, registered before the listeners are bound so that none
/// is lost.
#[derive(Debug)]
pub struct StopSignals {
    terminate: Signal,
    interrupt: Signal,
}

/// A running tunnel, shared by its tasks.
#[derive(Debug)]
pub struct Tunnel<S> {
    options: Arc<Options>,
    starttls: S,
    limit: Arc<Semaphore>,
}

impl StopSignals {
    /// Registers handlers for SIGTERM and SIGINT.
    ///
    /// # Errors
    ///
    /// [`TunnelError::Io`] when a handler cannot be registered.
    pub fn register() -> Result<Self, TunnelError> {
        let register = |kind| signal(kind).map_err(TunnelError::io("registering a signal handler"));
        Ok(Self {
            terminate: register(SignalKind::terminate())?,
            interrupt: register(SignalKind::interrupt())?,
        })
    }

    /// Waits for SIGTERM or SIGINT and returns its name.
    async fn wait(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

impl<S: Starttls> Tunnel<S> {
    /// Prepares a tunnel with `options` that hands connections to `starttls`.
    pub fn new(options: Options, starttls: S) -> Arc<Self> {
        let limit = Arc::new(Semaphore::new(options.max_connections as usize));
        Arc::new(Self {
            options: Arc::new(options),
            starttls,
            limit,
        })
    }

    /// Serves `listeners` until a stop signal arrives, then stops accepting and gives the
    /// open connections the grace period to finish.
    pub async fn serve(self: Arc<Self>, listeners: Vec<Listener>, mut signals: StopSignals) {
        let (stop, stopped) = watch::channel(false);
        let mut accepting = JoinSet::new();
        for listener in listeners {
            accepting.spawn(Arc::clone(&self).accept_loop(listener, stopped.clone()));
        }

        let name = signals.wait().await;
        let grace = self.options.grace;
        info!(
            signal = name,
            grace_seconds = grace.as_secs(),
            "stopping: no new connections"
        );
        // The receivers live in the accept tasks, which end only after seeing this value.
        let _ = stop.send(true);
        while accepting.join_next().await.is_some() {}

        let max = self.options.max_connections;
        let open = max as usize - self.limit.available_permits();
        if open > 0 {
            info!(open, "waiting for open connections to finish");
        }
        match tokio::time::timeout(grace, self.limit.acquire_many(max)).await {
            Ok(_) => info!("all connections finished"),
            Err(_) => {
                let open = max as usize - self.limit.available_permits();
                warn!(open, "grace period over, closing the remaining connections");
            }
        }
    }

    /// Accepts connections on `listener` within the connection limit until the stop.
    async fn accept_loop(self: Arc<Self>, listener: Listener, mut stopped: watch::Receiver<bool>) {
        loop {
            let permit = tokio::select! {
                _ = stopped.wait_for(|stop| *stop) => break,
                permit = Arc::clone(&self.limit).acquire_owned() => permit,
            };
            let Ok(permit) = permit else {
                break;
            };
            let accepted = tokio::select! {
                _ = stopped.wait_for(|stop| *stop) => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(Arc::clone(&self).handle(stream, peer, permit));
                }
                Err(error) => {
                    warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            }
        }
        listener.remove_socket_file();
    }

    /// Sets up one connection and logs the outcome; the permit is held until it ends.
    async fn handle(self: Arc<Self>, accepted: Stream, peer: Peer, _permit: OwnedSemaphorePermit) {
        match self.set_up(accepted).await {
            Ok(negotiated) => info!(
                %peer,
                local_id = %negotiated.local_id,
                remote_id = %negotiated.remote_id,
                "tls session established"
            ),
            Err(error) => warn!(%peer, error = %chain(&error), "connection set-up failed"),
        }
    }

    /// Runs the chat and STARTTLS for one accepted connection.
    async fn set_up(&self, accepted: Stream) -> Result<Identities, TunnelError> {
        let options = &self.options;
        let requested = Identities {
            local_id: options.local_id.clone(),
            remote_id: options.remote_id.clone(),
        };
        let request = StartRequest::new(
            options.role,
            requested.clone(),
            options.service.clone(),
            options.fork,
        );

        let (mut cipher, plaintext) = match options.role {
            Role::Client => {
                // The connection precedes the handshake, so paths expand the requested ids.
                let cipher =
                    Stream::connect_any(&options.remote, &requested.local_id, &requested.remote_id)
                        .await?;
                (cipher, Plaintext::Ready(accepted.into_owned_fd()?))
            }
            Role::Server => (
                accepted,
                Plaintext::Connect(Arc::from(options.remote.as_slice())),
            ),
        };
        options.chat.run(&mut cipher).await?;
        self.starttls
            .start(cipher.into_owned_fd()?, request, plaintext)
            .await
    }
}

/// Formats an error with its causes, as `outer: inner: ...`.
fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}
