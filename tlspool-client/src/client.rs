//! The asynchronous client on tokio: one connection to the daemon, shared by any number of
//! tasks.
//!
//! Two tasks serve each connection. The reader task receives every record from the daemon and
//! routes it by request id to the task that waits for it (see the `mux` module). The writer
//! task sends the records that callers queue, so a caller that drops its future half-way never
//! leaves a partly sent record on the stream.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::debug;

use tlspool_proto::tokio::{RecordReader, RecordWriter, split};
use tlspool_proto::{Payload, ProtoError, Record};

use crate::mux::{self, Router};
use crate::socket::{self, connect_error};
use crate::starttls::{Negotiation, Step};
use crate::{
    ClientError, CtlKey, InfoKind, PingReply, PrivacyMode, StartTlsRequest, TlsConnection, control,
    ping,
};
#[cfg(doc)]
use crate::{MAX_INFO_LEN, MAX_PRNG_INPUT_LEN, MAX_PRNG_INPUTS_LEN, MAX_PRNG_LEN};

/// An asynchronous connection to the TLS Pool daemon.
///
/// Cloning is cheap and yields another handle on the same connection. Requests from several
/// tasks run concurrently on it. The connection closes when the last handle is dropped.
///
/// The connection's tasks run on the tokio runtime that was current in
/// [`Client::connect`].
#[derive(Debug, Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    router: Arc<Router>,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    reader: JoinHandle<()>,
    path: PathBuf,
}

/// A record queued for the writer task, with the descriptor to attach and where to report
/// the result of the send.
#[derive(Debug)]
struct Outgoing {
    record: Record,
    fd: Option<OwnedFd>,
    sent: oneshot::Sender<Result<(), ProtoError>>,
}

impl Client {
    /// Connects to the daemon at `path`, or at the configured socket when `path` is `None`
    /// (see [`resolve_socket_path`](crate::resolve_socket_path)), and starts the connection's
    /// reader and writer tasks.
    ///
    /// # Errors
    ///
    /// [`ClientError::SocketPathTooLong`] from locating the socket, and
    /// [`ClientError::Connect`] when no daemon accepts the connection.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub async fn connect(path: Option<&Path>) -> Result<Self, ClientError> {
        // Reading the small configuration file blocks only briefly.
        let path = socket::resolve_socket_path(path, None)?;
        let stream = connect_waiting(&path, CONNECT_QUEUE_WAIT).await?;
        debug!(path = %path.display(), "connected to the TLS Pool");

        let (reader, writer) = split(stream);
        let router = Arc::new(Router::default());
        let (outgoing, queue) = mpsc::unbounded_channel();
        tokio::spawn(write_queued(queue, writer.clone()));
        let reader = tokio::spawn(route_incoming(reader, writer, Arc::clone(&router)));

        let shared = Arc::new(Shared {
            router,
            outgoing,
            reader,
            path,
        });
        Ok(Self { shared })
    }

    /// Returns the path of the socket this client is connected to.
    pub fn socket_path(&self) -> &Path {
        &self.shared.path
    }

    /// Returns whether the daemon has closed the connection, after which every request fails
    /// with [`ClientError::Disconnected`] and a new [`Client::connect`] is needed.
    pub fn is_closed(&self) -> bool {
        self.shared.router.is_closed()
    }

    /// Sends PING with the identity `TLSPOOL_IDENTITY_V2` and every facility bit this crate
    /// defines, and returns the daemon's identity and the facilities it offers.
    ///
    /// # Errors
    ///
    /// [`ClientError::Daemon`] when the daemon replies with ERROR,
    /// [`ClientError::UnexpectedReply`] for another command code,
    /// [`ClientError::Disconnected`] when the connection closes first, and
    /// [`ClientError::Proto`] when sending fails or the reply does not decode.
    pub async fn ping(&self) -> Result<PingReply, ClientError> {
        let record = self.call(ping::request()?).await?;
        ping::reply(record)
    }

    /// Hands the connected ciphertext `socket` to the daemon with a STARTTLS request, answers
    /// the daemon's callbacks, and returns the established session with its plaintext side
    /// as a tokio [`UnixStream`].
    ///
    /// `socket` is any descriptor of a connected TCP socket, such as a
    /// [`std::net::TcpStream`]. The daemon receives a copy with the request, and `socket`
    /// itself is dropped once the daemon's first record arrives. Callbacks are answered as
    /// [`blocking::Client::starttls`](crate::blocking::Client::starttls) describes; the local
    /// identity check handler runs on the task that awaits this call.
    ///
    /// # Errors
    ///
    /// As [`blocking::Client::starttls`](crate::blocking::Client::starttls), and
    /// [`ClientError::Io`] when the plaintext socket cannot be registered with tokio.
    pub async fn starttls<S: AsFd>(
        &self,
        socket: S,
        request: &StartTlsRequest,
    ) -> Result<TlsConnection<UnixStream>, ClientError> {
        let mut negotiation = Negotiation::new(request)?;
        let mut exchange = self.shared.router.register()?;
        let first = negotiation.request_record(exchange.reqid());
        self.send(first, Some(duplicate(socket.as_fd())?)).await?;

        // The writer task closes the duplicates it sends. The caller's socket closes here
        // after the first reply, a plaintext end handed over after the reply that follows it.
        let mut cipher = Some(socket);
        let mut handed: Option<OwnedFd> = None;
        loop {
            let record = exchange.next().await?;
            drop(cipher.take());
            drop(handed.take());
            match negotiation.on_record(record)? {
                Step::Reply { record, fd } => {
                    let copy = fd.as_ref().map(|fd| duplicate(fd.as_fd())).transpose()?;
                    self.send(record, copy).await?;
                    handed = fd;
                }
                Step::Abort { record, error } => {
                    self.send(record, None).await?;
                    return Err(error);
                }
                Step::Established(connection) => return into_async(connection),
            }
        }
    }

    /// Detaches the session of `ctlkey` from this connection (CONTROL_DETACH), so that it
    /// outlives the connection and another connection may reattach it.
    ///
    /// # Errors
    ///
    /// [`ClientError::Daemon`] with `E_TLSPOOL_CTLKEY_NOT_FOUND`, `E_TLSPOOL_CTLKEY_DETACHED`
    /// or `E_TLSPOOL_CTLKEY_NOT_YOURS`, and the transport errors of [`Self::ping`].
    pub async fn detach(&self, ctlkey: &CtlKey) -> Result<(), ClientError> {
        control::control_reply(self.call(control::detach_request(ctlkey)).await?)
    }

    /// Attaches the detached session of `ctlkey` to this connection (CONTROL_REATTACH).
    ///
    /// # Errors
    ///
    /// [`ClientError::Daemon`] with `E_TLSPOOL_CTLKEY_NOT_FOUND` or
    /// `E_TLSPOOL_CTLKEY_ATTACHED`, and the transport errors of [`Self::ping`].
    pub async fn reattach(&self, ctlkey: &CtlKey) -> Result<(), ClientError> {
        control::control_reply(self.call(control::reattach_request(ctlkey)).await?)
    }

    /// Returns `len` bytes of keying material from the exporter of the session of `ctlkey`
    /// (PRNG) for `label` and `context`. RFC 5705 distinguishes no context (`None`) from an
    /// empty one (`Some(&[])`).
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidLength`] beyond the limits of [`MAX_PRNG_INPUT_LEN`],
    /// [`MAX_PRNG_INPUTS_LEN`] and [`MAX_PRNG_LEN`], [`ClientError::Daemon`] with
    /// `E_TLSPOOL_PRNG_UNAVAILABLE` for a label the daemon does not allow, and the errors of
    /// [`Self::detach`].
    pub async fn prng(
        &self,
        ctlkey: &CtlKey,
        label: &str,
        context: Option<&[u8]>,
        len: usize,
    ) -> Result<Vec<u8>, ClientError> {
        let request = control::prng_request(ctlkey, label, context, len)?;
        control::prng_reply(self.call(request).await?)
    }

    /// Queries (`value` is `None`) or checks (`value` is `Some`) information of `kind` about
    /// the session of `ctlkey` (INFO), and returns the value the daemon sent, which for a
    /// check that matched is the checked value.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidLength`] for a value longer than [`MAX_INFO_LEN`],
    /// [`ClientError::Daemon`] with `E_TLSPOOL_INFO_NOT_FOUND` when the information is
    /// absent or the check fails, and the errors of [`Self::detach`].
    pub async fn info(
        &self,
        ctlkey: &CtlKey,
        kind: InfoKind,
        value: Option<&[u8]>,
    ) -> Result<Vec<u8>, ClientError> {
        let request = control::info_request(ctlkey, kind, value)?;
        control::info_reply(self.call(request).await?)
    }

    /// Queries how the certificates of the session of `ctlkey` crossed the network
    /// (INFO `PIOK_INFO_PRIVACY_MODE`).
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownInfoValue`] for a mode this client does not know, and the errors
    /// of [`Self::info`].
    pub async fn privacy_mode(&self, ctlkey: &CtlKey) -> Result<PrivacyMode, ClientError> {
        let value = self.info(ctlkey, InfoKind::PRIVACY_MODE, None).await?;
        control::privacy_mode(&value)
    }

    /// Sends a request that has no callbacks and returns the daemon's final record.
    async fn call(&self, payload: Payload) -> Result<Record, ClientError> {
        let mut exchange = self.shared.router.register()?;
        let record = Record::new(exchange.reqid(), payload);
        self.send(record, None).await?;
        exchange.next().await
    }

    /// Queues `record` with `fd` attached for the writer task and waits until it is sent.
    async fn send(&self, record: Record, fd: Option<OwnedFd>) -> Result<(), ClientError> {
        let (sent, result) = oneshot::channel();
        let outgoing = Outgoing { record, fd, sent };
        self.shared
            .outgoing
            .send(outgoing)
            .map_err(|_| ClientError::Disconnected)?;
        match result.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(socket::send_error(error)),
            Err(_) => Err(ClientError::Disconnected),
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The writer task ends when `outgoing` drops with this struct. Stopping the reader
        // drops its handles on the socket, and the last one closes it.
        self.reader.abort();
    }
}

/// Duplicates `fd` for the writer task, which closes its copy after sending.
fn duplicate(fd: std::os::fd::BorrowedFd<'_>) -> Result<OwnedFd, ClientError> {
    fd.try_clone_to_owned().map_err(|source| ClientError::Io {
        call: "dup of a descriptor to pass",
        source,
    })
}

/// Registers the plaintext side of an established session with tokio.
fn into_async(
    connection: TlsConnection<std::os::unix::net::UnixStream>,
) -> Result<TlsConnection<UnixStream>, ClientError> {
    let register_error = |source| ClientError::Io {
        call: "registering the plaintext socket with tokio",
        source,
    };
    connection
        .plaintext
        .set_nonblocking(true)
        .map_err(register_error)?;
    let plaintext = UnixStream::from_std(connection.plaintext).map_err(register_error)?;
    Ok(TlsConnection {
        plaintext,
        local_id: connection.local_id,
        remote_id: connection.remote_id,
        ctlkey: connection.ctlkey,
        flags: connection.flags,
    })
}

/// Sends queued records in order until every [`Client`] handle is gone.
async fn write_queued(mut queue: mpsc::UnboundedReceiver<Outgoing>, writer: RecordWriter) {
    while let Some(outgoing) = queue.recv().await {
        let fd = outgoing.fd.as_ref().map(|fd| fd.as_fd());
        let result = writer.send_record(&outgoing.record, fd).await;
        if let Err(error) = &result {
            debug!(%error, reqid = outgoing.record.reqid, "sending a record failed");
        }
        // The caller may have stopped waiting; the record was sent all the same.
        let _ = outgoing.sent.send(result);
    }
}

/// Routes each record from the daemon to its request until the connection ends, then fails
/// the requests still waiting.
async fn route_incoming(mut reader: RecordReader, writer: RecordWriter, router: Arc<Router>) {
    while let Some(frame) = mux::received_frame(reader.recv().await) {
        if let Some(refusal) = router.route_frame(&frame)
            && let Err(error) = writer.send_record(&refusal, None).await
        {
            mux::log_refusal_failure(&refusal, &error);
        }
    }
    router.close();
}

/// Maximum time [`Client::connect`] waits for room in the daemon's queue of pending
/// connections, as a blocking `connect(2)` on a UNIX socket would.
const CONNECT_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Connects to `path`, retrying with backoff for up to `wait` while the daemon's listen queue
/// is full.
///
/// A non-blocking `connect(2)` to a UNIX socket whose backlog is full fails with `EAGAIN`
/// instead of waiting, so a burst of clients would otherwise see spurious errors.
async fn connect_waiting(
    path: &Path,
    wait: std::time::Duration,
) -> Result<UnixStream, ClientError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        match UnixStream::connect(path).await {
            Ok(stream) => return Ok(stream),
            Err(err)
                if err.kind() == std::io::ErrorKind::WouldBlock
                    && tokio::time::Instant::now() + pause < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_millis(100));
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(socket::queue_full_error(path, wait));
            }
            Err(source) => return Err(connect_error(path, source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn connect_to_full_listen_queue_fails_clearly() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("full.sock");
        // The listener never accepts, so the connections fill its queue until connect fails with
        // EAGAIN.
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let mut queued = Vec::new();
        loop {
            match UnixStream::connect(&path).await {
                Ok(stream) => queued.push(stream),
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(error) => panic!("connect failed before the queue was full: {error}"),
            }
            assert!(queued.len() < 10_000, "the listen queue never filled");
        }

        let result = connect_waiting(&path, Duration::from_millis(300)).await;

        let Err(error) = result else {
            panic!("connected to a full listen queue");
        };
        let ClientError::Connect { source, .. } = &error else {
            panic!("not a connect error: {error}");
        };
        assert_eq!(source.kind(), std::io::ErrorKind::WouldBlock);
        assert_eq!(
            source.to_string(),
            "the daemon's queue of pending connections stayed full for 300 ms; \
             the daemon is overloaded or does not accept connections"
        );
    }
}
