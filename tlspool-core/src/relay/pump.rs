//! The relay's I/O loop: takes the steps [`RelayState`] allows, waits for the readiness it
//! requests, and applies the result. It also runs TLS 1.2 renegotiations, requested by the
//! application or by the peer, in the middle of the relayed data.
//!
//! # Renegotiation
//!
//! While a renegotiation runs, the relay reads nothing from the application (its bytes wait in
//! the socket) and keeps delivering the peer's application data that arrives before the
//! peer's handshake messages, so no byte is lost either way. A peer's request is accepted when
//! the last handshake negotiated secure renegotiation (RFC 5746) and the extended master secret
//! (RFC 7627) and, on a server, no other peer-requested renegotiation completed in the last
//! [`PEER_RENEGOTIATION_INTERVAL`]; otherwise it is rejected with a no_renegotiation warning
//! alert and the session continues. A renegotiation that takes longer than
//! [`RENEGOTIATION_TIMEOUT`] ends the session.

use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::error::{DescriptorRole, RelayError};
use super::handshake::{CIPHER_READ_SIZE, flush_ciphertext};
use super::query::{Query, QueryReceiver};
use super::socket::{ReadBuffer, StreamSocket};
use super::state::{Levels, PENDING_CIPHERTEXT_LIMIT, RelayState, Step, Wants};
use super::{LINGER_TIMEOUT, RelayEnd, RelayOutcome, STOP_GRACE_PERIOD};
use crate::logging::TARGET_COPYCAT;
use crate::tls::{
    MAX_RECORD_PLAINTEXT, PeerIdentity, ReadOutcome, RenegotiationStatus, Role, Session, TlsError,
};

/// Time a renegotiation may take before the relay ends the session.
pub(super) const RENEGOTIATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Minimum time between two renegotiations the peer requests. One that comes sooner is rejected.
pub(super) const PEER_RENEGOTIATION_INTERVAL: Duration = Duration::from_secs(10);

/// The application's wait for the end of a renegotiation it requested.
type RenegotiationReply = oneshot::Sender<Result<(), RelayError>>;

/// A renegotiation in progress.
struct Renegotiation {
    /// The application's request, or `None` when the peer requested it.
    reply: Option<RenegotiationReply>,
    deadline: Instant,
}

/// The result of one wait for readiness.
enum Event {
    Stop,
    CipherSent(usize),
    PlaintextSent(usize),
    CipherReceived(usize),
    PlaintextReceived(usize),
    HungUp(DescriptorRole),
    Query(Query),
    QueriesClosed,
    RenegotiationTimedOut,
}

/// One relayed session with everything it owns; dropping it frees the GnuTLS session, then
/// deregisters and closes both sockets (fields drop in declaration order).
pub(super) struct Relay {
    session: Session,
    cipher: StreamSocket,
    plaintext: StreamSocket,
    state: RelayState,
    /// Requests to run with the session between records; `None` once every sender is gone.
    queries: Option<QueryReceiver>,
    /// Plaintext read from the application, encrypted before the next read.
    plaintext_in: ReadBuffer,
    /// Ciphertext read from the TLS peer, fed to the session before the next read.
    cipher_in: ReadBuffer,
    /// One decrypted record; `out_start..out_end` is still to be sent to the application.
    plaintext_out: ReadBuffer,
    out_start: usize,
    out_end: usize,
    plaintext_to_tls: u64,
    tls_to_plaintext: u64,
    peak_buffered: usize,
    renegotiation: Option<Renegotiation>,
    /// Plaintext received before the relay started, sent to the application first.
    early_plaintext: Vec<u8>,
    /// When the last renegotiation the peer requested completed.
    last_peer_renegotiation: Option<Instant>,
    /// The peer's credential when the relay started, which the caller validated.
    validated_peer: PeerIdentity,
}

impl Relay {
    /// Prepares both descriptors; on failure, the descriptors are closed when they drop.
    pub(super) fn new(
        session: Session,
        cipher: OwnedFd,
        plaintext: OwnedFd,
        queries: QueryReceiver,
    ) -> Result<Self, RelayError> {
        let cipher = StreamSocket::new(cipher, DescriptorRole::Cipher)?;
        Self::on_socket(session, cipher, plaintext, queries)
    }

    /// Prepares the plaintext descriptor and keeps `cipher`, already registered by the
    /// handshake, as it is.
    pub(super) fn on_socket(
        session: Session,
        cipher: StreamSocket,
        plaintext: OwnedFd,
        queries: QueryReceiver,
    ) -> Result<Self, RelayError> {
        let plaintext = StreamSocket::new(plaintext, DescriptorRole::Plaintext)?;
        let validated_peer = session.peer_identity();
        Ok(Self {
            session,
            cipher,
            plaintext,
            state: RelayState::default(),
            queries: Some(queries),
            plaintext_in: ReadBuffer::new(MAX_RECORD_PLAINTEXT),
            cipher_in: ReadBuffer::new(CIPHER_READ_SIZE),
            plaintext_out: ReadBuffer::new(MAX_RECORD_PLAINTEXT),
            out_start: 0,
            out_end: 0,
            plaintext_to_tls: 0,
            tls_to_plaintext: 0,
            peak_buffered: 0,
            renegotiation: None,
            early_plaintext: Vec::new(),
            last_peer_renegotiation: None,
            validated_peer,
        })
    }

    /// Relays until both directions are closed, a descriptor hangs up or fails, the session
    /// fails or `stop` is cancelled. Then it flushes pending ciphertext and frees everything.
    pub(super) async fn run(mut self, stop: &CancellationToken) -> RelayOutcome {
        debug!(
            target: TARGET_COPYCAT,
            cipher_fd = self.cipher.raw_fd(),
            plaintext_fd = self.plaintext.raw_fd(),
            "relay started"
        );
        let end = self.relay(stop).await.unwrap_or_else(RelayEnd::Failed);
        let end = self.classify_hangup(end);
        if let Some(reply) = self.renegotiation.take().and_then(|r| r.reply) {
            let _ = reply.send(Err(RelayError::SessionEnded));
        }
        if matches!(end, RelayEnd::Stopped) {
            self.close_on_stop().await;
        } else {
            self.linger(&end).await;
        }
        self.reset_unfinished_plaintext(&end);

        debug!(
            target: TARGET_COPYCAT,
            cipher_fd = self.cipher.raw_fd(),
            plaintext_fd = self.plaintext.raw_fd(),
            plaintext_to_tls = self.plaintext_to_tls,
            tls_to_plaintext = self.tls_to_plaintext,
            ?end,
            "relay ended"
        );
        RelayOutcome {
            plaintext_to_tls: self.plaintext_to_tls,
            tls_to_plaintext: self.tls_to_plaintext,
            peak_buffered: self.peak_buffered,
            end,
        }
    }

    /// Sets the plaintext to send to the application before anything decrypted.
    pub(super) fn with_early_plaintext(mut self, early: Vec<u8>) -> Self {
        self.early_plaintext = early;
        self
    }

    async fn relay(&mut self, stop: &CancellationToken) -> Result<RelayEnd, RelayError> {
        let early = std::mem::take(&mut self.early_plaintext);
        let mut sent = 0;
        while sent < early.len() {
            tokio::select! {
                biased;
                () = stop.cancelled() => return Ok(RelayEnd::Stopped),
                n = self.plaintext.send(&early[sent..]) => sent += n?,
            }
        }
        self.tls_to_plaintext += early.len() as u64;
        loop {
            self.take_steps()?;
            if self.state.is_finished() {
                return Ok(RelayEnd::Closed);
            }

            let wants = self.state.wants(self.levels());
            debug_assert!(wants.any(), "relay waits for nothing in {:?}", self.state);
            match self.next_event(wants, stop).await? {
                Event::Stop => return Ok(RelayEnd::Stopped),
                Event::HungUp(role) => return Ok(RelayEnd::HungUp(role)),
                Event::Query(Query::Read(query)) => {
                    // A renegotiation in progress may have stored a new peer certificate.
                    self.check_peer_identity()?;
                    query(&self.session);
                }
                Event::Query(Query::Renegotiate(reply)) => self.start_renegotiation(reply),
                Event::QueriesClosed => self.queries = None,
                Event::RenegotiationTimedOut => {
                    let error = RelayError::RenegotiationTimedOut {
                        timeout: RENEGOTIATION_TIMEOUT,
                    };
                    self.finish_renegotiation(Err(RelayError::RenegotiationTimedOut {
                        timeout: RENEGOTIATION_TIMEOUT,
                    }));
                    return Err(error);
                }
                event => self.apply(event)?,
            }
            self.record_peak();
        }
    }

    /// Waits for the first of the wanted readiness events or the stop signal.
    ///
    /// Each branch makes its system call inside `poll`, so the branches that lose the race
    /// have moved no bytes when they are dropped.
    async fn next_event(
        &mut self,
        wants: Wants,
        stop: &CancellationToken,
    ) -> Result<Event, RelayError> {
        let Self {
            session,
            cipher,
            plaintext,
            cipher_in,
            plaintext_in,
            plaintext_out,
            out_start,
            out_end,
            queries,
            renegotiation,
            ..
        } = self;
        let unsent = &plaintext_out[*out_start..*out_end];
        let renegotiation_deadline = renegotiation.as_ref().map(|r| r.deadline);
        tokio::select! {
            biased;
            () = stop.cancelled() => Ok(Event::Stop),
            () = sleep_until(renegotiation_deadline), if renegotiation_deadline.is_some() => {
                Ok(Event::RenegotiationTimedOut)
            }
            query = next_query(queries.as_mut()), if queries.is_some() => {
                Ok(query.map_or(Event::QueriesClosed, Event::Query))
            }
            sent = cipher.send(session.pending_ciphertext()), if wants.cipher_write => {
                sent.map(Event::CipherSent)
            }
            sent = plaintext.send(unsent), if wants.plaintext_write => {
                sent.map(Event::PlaintextSent)
            }
            received = cipher.recv_into(cipher_in), if wants.cipher_read => {
                received.map(Event::CipherReceived)
            }
            received = plaintext.recv_into(plaintext_in), if wants.plaintext_read => {
                received.map(Event::PlaintextReceived)
            }
            closed = cipher.hung_up(), if wants.cipher_hangup => {
                closed.map(|()| Event::HungUp(DescriptorRole::Cipher))
            }
            closed = plaintext.hung_up(), if wants.plaintext_hangup => {
                closed.map(|()| Event::HungUp(DescriptorRole::Plaintext))
            }
        }
    }

    fn apply(&mut self, event: Event) -> Result<(), RelayError> {
        match event {
            Event::CipherSent(n) => self.session.consume(n),
            Event::PlaintextSent(n) => {
                self.out_start += n;
                self.tls_to_plaintext += n as u64;
                if self.out_start == self.out_end {
                    self.plaintext_out.release_after(self.out_end);
                    self.out_start = 0;
                    self.out_end = 0;
                }
            }
            Event::CipherReceived(0) => {
                debug!(target: TARGET_COPYCAT, fd = self.cipher.raw_fd(), "cipher side reached end of file");
                self.state.cipher_eof = true;
                self.state.needs_ciphertext = false;
                self.session.feed_eof();
            }
            Event::CipherReceived(n) => {
                self.session.feed_ciphertext(&self.cipher_in[..n]);
                self.state.needs_ciphertext = false;
            }
            Event::PlaintextReceived(0) => self.queue_close_notify()?,
            Event::PlaintextReceived(n) => self.encrypt(n)?,
            Event::Stop
            | Event::HungUp(_)
            | Event::Query(_)
            | Event::QueriesClosed
            | Event::RenegotiationTimedOut => {}
        }
        Ok(())
    }

    fn take_steps(&mut self) -> Result<(), RelayError> {
        while let Some(step) = self.state.next_step(self.levels()) {
            match step {
                Step::Decrypt => self.decrypt()?,
                Step::Handshake => self.renegotiate()?,
                Step::ShutdownPlaintextWrite => {
                    self.plaintext.shutdown_write()?;
                    self.state.plaintext_write_shut = true;
                    debug!(
                        target: TARGET_COPYCAT,
                        fd = self.plaintext.raw_fd(),
                        "peer sent close_notify, plaintext write side shut down"
                    );
                }
                Step::ShutdownCipherWrite => {
                    self.cipher.shutdown_write()?;
                    self.state.cipher_write_shut = true;
                    debug!(
                        target: TARGET_COPYCAT,
                        fd = self.cipher.raw_fd(),
                        "close_notify sent, cipher write side shut down"
                    );
                }
            }
        }
        Ok(())
    }

    /// Decrypts the next record into `plaintext_out`, from plaintext already decrypted inside
    /// GnuTLS or from the fed ciphertext.
    fn decrypt(&mut self) -> Result<(), RelayError> {
        let tls_error = |source| RelayError::Tls {
            call: "read_plaintext",
            source,
        };
        let outcome = self.session.read_plaintext(self.plaintext_out.get_mut());
        if !matches!(outcome, Ok(ReadOutcome::Data(_))) {
            self.plaintext_out.release_after(0);
        }
        match outcome {
            Ok(ReadOutcome::Data(n)) => {
                self.out_start = 0;
                self.out_end = n;
            }
            Ok(ReadOutcome::WantRead) if self.state.cipher_eof => {
                return Err(tls_error(TlsError::PrematureTermination));
            }
            Ok(ReadOutcome::WantRead) => self.state.needs_ciphertext = true,
            Ok(ReadOutcome::CloseNotify) => self.state.close_notify_received = true,
            Err(TlsError::AlertReceived { alert, fatal, .. }) if !fatal => {
                debug!(target: TARGET_COPYCAT, %alert, "peer sent a warning alert");
            }
            Err(TlsError::RenegotiationRequested) => self.answer_peer_renegotiation()?,
            Err(source) => return Err(tls_error(source)),
        }
        Ok(())
    }

    /// Encrypts the `n` bytes just read from the application; `n` is at most one record.
    fn encrypt(&mut self, n: usize) -> Result<(), RelayError> {
        let mut done = 0;
        while done < n {
            done += self
                .session
                .write_plaintext(&self.plaintext_in[done..n])
                .map_err(|source| RelayError::Tls {
                    call: "write_plaintext",
                    source,
                })?;
        }
        self.plaintext_to_tls += n as u64;
        Ok(())
    }

    fn queue_close_notify(&mut self) -> Result<(), RelayError> {
        self.state.plaintext_eof = true;
        self.session
            .send_close_notify()
            .map_err(|source| RelayError::Tls {
                call: "send_close_notify",
                source,
            })?;
        debug!(
            target: TARGET_COPYCAT,
            fd = self.plaintext.raw_fd(),
            "plaintext side reached end of file, close_notify queued"
        );
        Ok(())
    }

    /// Sends the ciphertext still pending (close_notify, records encrypted before a stop or a
    /// hang-up), for at most [`LINGER_TIMEOUT`]. This replaces `SO_LINGER`, which would block
    /// the worker thread in `close`.
    async fn linger(&mut self, end: &RelayEnd) {
        let cipher_failed = matches!(end, RelayEnd::Failed(e) if e.role() == Some(DescriptorRole::Cipher))
            || matches!(end, RelayEnd::HungUp(DescriptorRole::Cipher));
        let pending = self.session.pending_ciphertext().len();
        if cipher_failed || self.state.cipher_write_shut || pending == 0 {
            return;
        }
        let flush = flush_ciphertext(&mut self.session, &self.cipher);
        let result = tokio::time::timeout(LINGER_TIMEOUT, flush).await;
        let unsent = self.session.pending_ciphertext().len();
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => debug!(target: TARGET_COPYCAT, %error, unsent, "final flush failed"),
            Err(_) => debug!(target: TARGET_COPYCAT, unsent, "final flush timed out"),
        }
    }

    /// Turns a hang-up of the cipher socket before the peer's close_notify into the
    /// truncation it is.
    fn classify_hangup(&self, end: RelayEnd) -> RelayEnd {
        match end {
            RelayEnd::HungUp(DescriptorRole::Cipher) if !self.state.close_notify_received => {
                RelayEnd::Failed(RelayError::Tls {
                    call: "recv",
                    source: TlsError::PrematureTermination,
                })
            }
            other => other,
        }
    }

    /// Ends a stopped session cleanly within [`STOP_GRACE_PERIOD`]: encrypts the plaintext
    /// the application wrote before the stop, sends close_notify and shuts down the cipher
    /// socket's write side.
    async fn close_on_stop(&mut self) {
        match tokio::time::timeout(STOP_GRACE_PERIOD, self.drain_and_close()).await {
            Ok(Ok(())) => debug!(
                target: TARGET_COPYCAT,
                fd = self.cipher.raw_fd(),
                plaintext_to_tls = self.plaintext_to_tls,
                "stopped: queued plaintext sent, then close_notify"
            ),
            Ok(Err(error)) => debug!(
                target: TARGET_COPYCAT,
                fd = self.cipher.raw_fd(),
                %error,
                "stopped: sending the queued plaintext and close_notify failed"
            ),
            Err(_) => warn!(
                target: TARGET_COPYCAT,
                fd = self.cipher.raw_fd(),
                unsent_ciphertext = self.session.pending_ciphertext().len(),
                grace_period_ms = STOP_GRACE_PERIOD.as_millis(),
                "stopped: the queued plaintext and close_notify were not sent in time"
            ),
        }
    }

    /// Reads the plaintext socket until it has nothing queued, encrypting each read, then
    /// sends close_notify. Bytes the application writes after the queue ran empty are not
    /// read.
    async fn drain_and_close(&mut self) -> Result<(), RelayError> {
        // A renegotiation in progress accepts no application data.
        while !self.state.plaintext_eof && !self.state.renegotiating {
            if self.session.pending_ciphertext().len() >= PENDING_CIPHERTEXT_LIMIT {
                flush_ciphertext(&mut self.session, &self.cipher).await?;
            }
            match self.plaintext.try_recv(self.plaintext_in.get_mut())? {
                None => break,
                Some(0) => self.queue_close_notify()?,
                Some(n) => self.encrypt(n)?,
            }
        }
        self.plaintext_in.release_after(0);
        if !self.state.cipher_write_shut {
            if !self.state.plaintext_eof {
                self.queue_close_notify()?;
            }
            flush_ciphertext(&mut self.session, &self.cipher).await?;
            self.cipher.shutdown_write()?;
            self.state.cipher_write_shut = true;
        }
        Ok(())
    }

    /// Sets the plaintext socket to reset on close unless the peer's close_notify shut it
    /// down already, so the application can tell a truncated stream from a clean end.
    fn reset_unfinished_plaintext(&self, end: &RelayEnd) {
        let clean = matches!(
            end,
            RelayEnd::Closed | RelayEnd::HungUp(DescriptorRole::Plaintext)
        );
        if clean || self.state.plaintext_write_shut {
            return;
        }
        // NOTE: a TCP reset discards bytes still in the socket's send queue. A UNIX socket,
        // the usual plaintext descriptor, keeps them readable.
        if let Err(error) = self.plaintext.reset_on_close() {
            debug!(target: TARGET_COPYCAT, %error, "resetting the plaintext socket failed");
        }
    }

    fn levels(&self) -> Levels {
        Levels {
            pending_ciphertext: self.session.pending_ciphertext().len(),
            pending_plaintext_out: self.out_end - self.out_start,
        }
    }

    /// Records the bytes buffered beyond the fixed read buffers.
    fn record_peak(&mut self) {
        let buffered = self.session.buffered_ciphertext()
            + self.session.pending_ciphertext().len()
            + self.session.pending_plaintext()
            + (self.out_end - self.out_start);
        self.peak_buffered = self.peak_buffered.max(buffered);
    }
}

/// Renegotiation: the start, the answer to the peer, the handshake steps and the end.
impl Relay {
    /// Starts the renegotiation the application requested; a check that fails is answered at
    /// once and the session continues.
    fn start_renegotiation(&mut self, reply: RenegotiationReply) {
        if self.renegotiation.is_some() {
            let _ = reply.send(Err(RelayError::RenegotiationBusy));
            return;
        }
        if let Err(source) = self.session.start_renegotiation() {
            debug!(target: TARGET_COPYCAT, %source, "renegotiation not started");
            let _ = reply.send(Err(RelayError::Tls {
                call: "start_renegotiation",
                source,
            }));
            return;
        }
        self.begin(Some(reply));
    }

    /// Accepts or rejects the peer's renegotiation request by the rule of the module docs.
    fn answer_peer_renegotiation(&mut self) -> Result<(), RelayError> {
        // Only a server limits the rate: a client answers every HelloRequest.
        let too_soon = self.session.role() == Role::Server
            && self
                .last_peer_renegotiation
                .is_some_and(|last| last.elapsed() < PEER_RENEGOTIATION_INTERVAL);
        let accepted = if too_soon {
            Err(format!(
                "another one completed less than {} s ago",
                PEER_RENEGOTIATION_INTERVAL.as_secs()
            ))
        } else {
            self.session
                .accept_renegotiation()
                .map_err(|error| error.to_string())
        };
        match accepted {
            Ok(()) => {
                self.begin(None);
                Ok(())
            }
            Err(reason) => {
                info!(target: TARGET_COPYCAT, fd = self.cipher.raw_fd(), reason,
                    "rejected the peer's renegotiation request");
                self.session
                    .reject_renegotiation()
                    .map_err(|source| RelayError::Tls {
                        call: "reject_renegotiation",
                        source,
                    })
            }
        }
    }

    fn begin(&mut self, reply: Option<RenegotiationReply>) {
        self.renegotiation = Some(Renegotiation {
            reply,
            deadline: Instant::now() + RENEGOTIATION_TIMEOUT,
        });
        self.state.renegotiating = true;
        // A client sends its ClientHello, and a server reads the one already buffered.
        self.state.needs_ciphertext = false;
    }

    /// Takes one handshake step of the running renegotiation.
    fn renegotiate(&mut self) -> Result<(), RelayError> {
        let ended = self.state.cipher_eof || self.state.close_notify_received;
        match self.session.renegotiate() {
            Ok(RenegotiationStatus::Done) => {
                if let Err(error) = self.check_peer_identity() {
                    let reason = error.to_string();
                    self.finish_renegotiation(Err(error));
                    return Err(RelayError::RenegotiationFailed { reason });
                }
                if self
                    .renegotiation
                    .as_ref()
                    .is_some_and(|r| r.reply.is_none())
                {
                    self.last_peer_renegotiation = Some(Instant::now());
                }
                info!(target: TARGET_COPYCAT, fd = self.cipher.raw_fd(),
                    cipher_suite = self.session.cipher_suite().as_deref().unwrap_or("unknown"),
                    "renegotiation complete");
                self.finish_renegotiation(Ok(()));
            }
            Ok(RenegotiationStatus::WantRead) if ended => {
                self.finish_renegotiation(Err(RelayError::ClosedDuringHandshake));
                return Err(RelayError::ClosedDuringHandshake);
            }
            Ok(RenegotiationStatus::WantRead) => self.state.needs_ciphertext = true,
            // NOTE: a client renegotiation fails in GnuTLS 3.7.9 (a ServerKeyExchange
            // signature error that ends the session) when the server's data reaches it before
            // the ServerHello; only a server's renegotiation delivers such data safely.
            Ok(RenegotiationStatus::ApplicationData) => self.decrypt()?,
            Err(TlsError::RenegotiationRejected) => {
                self.finish_renegotiation(Err(RelayError::Tls {
                    call: "renegotiate",
                    source: TlsError::RenegotiationRejected,
                }));
            }
            Err(source) => {
                let reason = source.to_string();
                self.finish_renegotiation(Err(RelayError::Tls {
                    call: "renegotiate",
                    source,
                }));
                return Err(RelayError::RenegotiationFailed { reason });
            }
        }
        Ok(())
    }

    /// Checks that the peer's credential is still the one validated before the relay started.
    ///
    /// # Errors
    /// [`RelayError::PeerIdentityChanged`] when a renegotiation changed it, which must end
    /// the session.
    fn check_peer_identity(&self) -> Result<(), RelayError> {
        let current = self.session.peer_identity();
        if current == self.validated_peer {
            return Ok(());
        }
        let validated = self.validated_peer.describe();
        let presented = current.describe_replacing(&self.validated_peer);
        warn!(target: TARGET_COPYCAT, fd = self.cipher.raw_fd(), validated, presented,
            "the peer's credential changed in a renegotiation, so the session ends");
        Err(RelayError::PeerIdentityChanged {
            validated,
            presented,
        })
    }

    /// Ends the running renegotiation and answers the application's request, if any.
    fn finish_renegotiation(&mut self, result: Result<(), RelayError>) {
        self.state.renegotiating = false;
        if let Some(reply) = self.renegotiation.take().and_then(|r| r.reply) {
            // The requester may have stopped waiting; the session goes on regardless.
            let _ = reply.send(result);
        }
    }
}

/// Waits until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Receives the next queued request, or `None` when every sender is gone.
async fn next_query(queries: Option<&mut QueryReceiver>) -> Option<Query> {
    match queries {
        Some(queries) => queries.receiver.recv().await,
        None => None,
    }
}
