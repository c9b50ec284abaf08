//! The event loop: one accept task per listener, one task per connection, a semaphore that
//! bounds the connections served at once, and the drain on SIGTERM or SIGINT.
//!
//! Client mode connects out to the first forward address that accepts, runs the chat there
//! and starts TLS as client with the accepted connection as plaintext side. Server mode runs
//! the chat on the accepted connection and starts TLS as server; the plaintext side is
//! connected on the daemon's PLAINTEXT_CONNECT callback.

use std::error::Error;
use std::fmt::Write as _;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::copy_bidirectional;
use tokio::net::UnixStream;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::TunnelError;
use crate::cli::Options;
use crate::net::{Listener, Peer, Stream};
use crate::starttls::{Identities, Role, Session, StartRequest, Starttls};

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
    pub(crate) async fn wait(&mut self) -> &'static str {
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

    /// Sets up one connection, relays it and logs the outcome. The permit is held until the
    /// session ends, so the limit counts relayed sessions too.
    async fn handle(self: Arc<Self>, accepted: Stream, peer: Peer, _permit: OwnedSemaphorePermit) {
        let (session, plaintext) = match self.set_up(accepted).await {
            Ok(established) => established,
            Err(error) => {
                warn!(%peer, error = %chain(&error), "connection set-up failed");
                return;
            }
        };
        info!(
            %peer,
            local_id = %session.identities.local_id,
            remote_id = %session.identities.remote_id,
            "tls session established"
        );
        match relay(session.plaintext, plaintext).await {
            Ok((to_plaintext, from_plaintext)) => {
                debug!(%peer, to_plaintext, from_plaintext, "tls session ended");
            }
            Err(error) => warn!(%peer, %error, "relaying the tls session failed"),
        }
    }

    /// Runs the chat and STARTTLS for one accepted connection and opens its plaintext side.
    async fn set_up(&self, accepted: Stream) -> Result<(Session, Stream), TunnelError> {
        let options = &self.options;
        let request = StartRequest {
            role: options.role,
            identities: Identities {
                local_id: options.local_id.clone(),
                remote_id: options.remote_id.clone(),
            },
            service: options.service.clone(),
            fork: options.fork,
            remote_id_policy: options.remote_id_policy,
        };
        let requested = &request.identities;

        let (mut cipher, client_plaintext) = match options.role {
            Role::Client => {
                // The connection precedes the handshake, so paths expand the requested ids.
                let cipher =
                    Stream::connect_any(&options.remote, &requested.local_id, &requested.remote_id)
                        .await?;
                (cipher, Some(accepted))
            }
            Role::Server => (accepted, None),
        };
        options.chat.run(&mut cipher).await?;
        let session = self
            .starttls
            .start(cipher.into_owned_fd()?, request)
            .await?;

        // A server forwards to an address that may depend on the negotiated identities.
        let plaintext = match client_plaintext {
            Some(accepted) => accepted,
            None => {
                let negotiated = &session.identities;
                Stream::connect_any(&options.remote, &negotiated.local_id, &negotiated.remote_id)
                    .await?
            }
        };
        Ok((session, plaintext))
    }
}

/// Copies between the session's plaintext end and the plaintext connection until both
/// directions reach end of file, and returns the byte counts towards and from the plaintext
/// connection.
async fn relay(mut session: UnixStream, plaintext: Stream) -> io::Result<(u64, u64)> {
    let (from_plaintext, to_plaintext) = match plaintext {
        Stream::Tcp(mut stream) => copy_bidirectional(&mut stream, &mut session).await?,
        Stream::Unix(mut stream) => copy_bidirectional(&mut stream, &mut session).await?,
    };
    Ok((to_plaintext, from_plaintext))
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
