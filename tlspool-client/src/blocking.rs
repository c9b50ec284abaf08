//! The blocking client: one connection to the daemon, shared by any number of threads.
//!
//! A reader thread per [`Client`] receives every record from the daemon and routes it by
//! request id to the thread that waits for it (see the `mux` module). Sending holds the
//! stream's write lock for one whole record, so threads never interleave their records.

use std::net::Shutdown;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use tracing::debug;

use tlspool_proto::blocking::RecordStream;
use tlspool_proto::{Payload, Record};

use crate::mux::{self, Router};
use crate::socket::{self, connect_error};
use crate::starttls::{Negotiation, Step};
use crate::{
    ClientError, CtlKey, InfoKind, PingReply, PrivacyMode, StartTlsRequest, control, ping,
};
#[cfg(doc)]
use crate::{MAX_INFO_LEN, MAX_PRNG_INPUT_LEN, MAX_PRNG_INPUTS_LEN, MAX_PRNG_LEN};

pub use crate::lidentry::{
    BlockingLocalIdSelectService as LocalIdSelectService,
    register_localid_select_blocking as register_localid_select,
};
pub use crate::pinentry::{
    BlockingPinEntryService as PinEntryService, register_pin_entry_blocking as register_pin_entry,
};

/// An established TLS session with a blocking plaintext socket.
pub type TlsConnection = crate::TlsConnection<UnixStream>;

/// A blocking connection to the TLS Pool daemon.
///
/// Cloning is cheap and yields another handle on the same connection. Requests from several
/// threads run concurrently on it. The connection closes when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    router: Arc<Router>,
    writer: Arc<RecordStream>,
    path: PathBuf,
}

impl Client {
    /// Connects to the daemon at `path`, or at the configured socket when `path` is `None`
    /// (see [`resolve_socket_path`](crate::resolve_socket_path)), and starts the reader
    /// thread.
    ///
    /// # Errors
    ///
    /// [`ClientError::SocketPathTooLong`] from locating the socket,
    /// [`ClientError::Connect`] when no daemon accepts the connection, and
    /// [`ClientError::Io`] when the reader thread cannot start.
    pub fn connect(path: Option<&Path>) -> Result<Self, ClientError> {
        let path = socket::resolve_socket_path(path, None)?;
        let stream = UnixStream::connect(&path).map_err(|source| connect_error(&path, source))?;
        let reader_stream = stream.try_clone().map_err(|source| ClientError::Io {
            call: "dup of the TLS Pool socket",
            source,
        })?;
        debug!(path = %path.display(), "connected to the TLS Pool");

        let router = Arc::new(Router::default());
        let writer = Arc::new(RecordStream::new(stream));
        let reader = Reader {
            stream: RecordStream::new(reader_stream),
            router: Arc::clone(&router),
            writer: Arc::clone(&writer),
        };
        thread::Builder::new()
            .name("tlspool-client-reader".to_owned())
            .spawn(move || reader.run())
            .map_err(|source| ClientError::Io {
                call: "spawn of the reader thread",
                source,
            })?;

        let shared = Arc::new(Shared {
            router,
            writer,
            path,
        });
        Ok(Self { shared })
    }

    /// Returns the path of the socket this client is connected to.
    pub fn socket_path(&self) -> &Path {
        &self.shared.path
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
    ///
    /// # Panics
    ///
    /// When called from inside an asynchronous runtime; use [`crate::Client`] there.
    pub fn ping(&self) -> Result<PingReply, ClientError> {
        let record = self.call(ping::request()?)?;
        ping::reply(record)
    }

    /// Hands the connected ciphertext `socket` to the daemon with a STARTTLS request, answers
    /// the daemon's callbacks, and returns the established session with its plaintext side.
    ///
    /// `socket` is any descriptor of a connected TCP socket; a TLS client has usually just
    /// connected it, a server accepted it. The daemon receives a copy with the request, and
    /// `socket` itself is dropped once the daemon's first record arrives, so pass a
    /// [`TcpStream`](std::net::TcpStream) by value to close it then, or by reference to keep
    /// it. The daemon's `PIOC_STARTTLS_LOCALID_V2` callbacks go to the request's handler (see
    /// [`StartTlsBuilder::localid_check`](crate::StartTlsBuilder::localid_check)), and for
    /// `PIOC_PLAINTEXT_CONNECT_V2` the client creates a UNIX socket pair, hands one end to the
    /// daemon and returns the other as [`TlsConnection::plaintext`](crate::TlsConnection).
    ///
    /// # Errors
    ///
    /// [`ClientError::Daemon`] when the daemon replies with ERROR, for example because the
    /// handshake or the peer's validation failed, [`ClientError::InvalidRequest`] when the
    /// local identity check handler returns an identity that does not fit,
    /// [`ClientError::UnexpectedReply`] or [`ClientError::NoPlaintextRequested`] for a reply
    /// out of protocol, [`ClientError::Disconnected`] when the connection closes first,
    /// [`ClientError::Io`] when the control key or the socket pair cannot be made, and
    /// [`ClientError::Proto`] when sending fails or a record does not decode.
    ///
    /// # Panics
    ///
    /// When called from inside an asynchronous runtime; use [`crate::Client`] there.
    pub fn starttls<S: AsFd>(
        &self,
        socket: S,
        request: &StartTlsRequest,
    ) -> Result<TlsConnection, ClientError> {
        let mut negotiation = Negotiation::new(request)?;
        let mut exchange = self.shared.router.register()?;
        let first = negotiation.request_record(exchange.reqid());
        self.send(&first, Some(socket.as_fd()))?;

        // The copies the daemon holds stay open: the cipher socket closes here after the
        // first reply, a plaintext end handed over after the reply that follows it.
        let mut cipher = Some(socket);
        let mut handed: Option<OwnedFd> = None;
        loop {
            let record = exchange.next_blocking()?;
            drop(cipher.take());
            drop(handed.take());
            match negotiation.on_record(record)? {
                Step::Reply { record, fd } => {
                    self.send(&record, fd.as_ref().map(AsFd::as_fd))?;
                    handed = fd;
                }
                Step::Abort { record, error } => {
                    self.send(&record, None)?;
                    return Err(error);
                }
                Step::Established(connection) => return Ok(connection),
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
    ///
    /// # Panics
    ///
    /// When called from inside an asynchronous runtime; use [`crate::Client`] there.
    pub fn detach(&self, ctlkey: &CtlKey) -> Result<(), ClientError> {
        control::control_reply(self.call(control::detach_request(ctlkey))?)
    }

    /// Attaches the detached session of `ctlkey` to this connection (CONTROL_REATTACH).
    ///
    /// # Errors
    ///
    /// [`ClientError::Daemon`] with `E_TLSPOOL_CTLKEY_NOT_FOUND` or
    /// `E_TLSPOOL_CTLKEY_ATTACHED`, and the transport errors of [`Self::ping`].
    ///
    /// # Panics
    ///
    /// When called from inside an asynchronous runtime; use [`crate::Client`] there.
    pub fn reattach(&self, ctlkey: &CtlKey) -> Result<(), ClientError> {
        control::control_reply(self.call(control::reattach_request(ctlkey))?)
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
    ///
    /// # Panics
    ///
    /// When called from inside an asynchronous runtime; use [`crate::Client`] there.
    pub fn prng(
        &self,
        ctlkey: &CtlKey,
        label: &str,
        context: Option<&[u8]>,
        len: usize,
    ) -> Result<Vec<u8>, ClientError> {
        let request = control::prng_request(ctlkey, label, context, len)?;
        control::prng_reply(self.call(request)?)
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
    ///
    /// # Panics
    ///
    /// When called from inside an asynchronous runtime; use [`crate::Client`] there.
    pub fn info(
        &self,
        ctlkey: &CtlKey,
        kind: InfoKind,
        value: Option<&[u8]>,
    ) -> Result<Vec<u8>, ClientError> {
        let request = control::info_request(ctlkey, kind, value)?;
        control::info_reply(self.call(request)?)
    }

    /// Queries how the certificates of the session of `ctlkey` crossed the network
    /// (INFO `PIOK_INFO_PRIVACY_MODE`).
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownInfoValue`] for a mode this client does not know, and the errors
    /// of [`Self::info`].
    ///
    /// # Panics
    ///
    /// When called from inside an asynchronous runtime; use [`crate::Client`] there.
    pub fn privacy_mode(&self, ctlkey: &CtlKey) -> Result<PrivacyMode, ClientError> {
        let value = self.info(ctlkey, InfoKind::PRIVACY_MODE, None)?;
        control::privacy_mode(&value)
    }

    fn send(
        &self,
        record: &Record,
        fd: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> Result<(), ClientError> {
        self.shared
            .writer
            .send_record(record, fd)
            .map_err(socket::send_error)
    }

    /// Sends a request that has no callbacks and returns the daemon's final record.
    fn call(&self, payload: Payload) -> Result<Record, ClientError> {
        let mut exchange = self.shared.router.register()?;
        let record = Record::new(exchange.reqid(), payload);
        self.send(&record, None)?;
        exchange.next_blocking()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Shutting down both directions ends the reader thread's receive with end of stream,
        // which makes it exit and close its copy of the socket.
        if let Err(error) = self.writer.get_ref().shutdown(Shutdown::Both) {
            debug!(%error, "shutdown of the TLS Pool socket failed");
        }
    }
}

/// The reader thread's state: the receiving stream and what it routes records to.
struct Reader {
    stream: RecordStream,
    router: Arc<Router>,
    writer: Arc<RecordStream>,
}

impl Reader {
    fn run(mut self) {
        while let Some(frame) = mux::received_frame(self.stream.recv()) {
            if let Some(refusal) = self.router.route_frame(&frame)
                && let Err(error) = self.writer.send_record(&refusal, None)
            {
                mux::log_refusal_failure(&refusal, &error);
            }
        }
        self.router.close();
    }
}
