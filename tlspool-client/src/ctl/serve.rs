//! `tlspoolctl serve`: a TLS server through the daemon that accepts TCP connections, runs
//! STARTTLS as server for each, and echoes the plaintext or hands it to a shell command.
//!
//! Connections run concurrently on tokio and share one connection to the daemon. Each one's
//! identities go to standard error in one write, so lines of different connections do not mix.
//! When the daemon has closed that connection, as after a restart, the next accepted
//! connection first reconnects with backoff, and `serve` exits with the connect error when
//! every attempt fails.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use argh::FromArgs;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::Mutex;
use tracing::debug;

use tlspool_proto::StartTlsFlags;

use super::{error_message, identity_lines, privacy_line};
use crate::{Client, ClientError, StartTlsRequest};

/// Accept TCP connections and run TLS on them as server through the TLS Pool.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "serve")]
pub struct ServeCommand {
    /// address and port to listen on, such as 127.0.0.1:4433 (port 0 picks a free one)
    #[argh(option, arg_name = "ADDR:PORT")]
    pub listen: String,

    /// local identity whose credential the server presents
    #[argh(option, arg_name = "ID")]
    pub local_id: String,

    /// client identity to require; without it a client certificate is optional
    #[argh(option, arg_name = "ID")]
    pub remote_id: Option<String>,

    /// IANA service name sent to the daemon, at most 15 characters (default: generic)
    #[argh(option, arg_name = "NAME")]
    pub service: Option<String>,

    /// send the plaintext of each connection back to its client
    #[argh(switch)]
    pub echo: bool,

    /// run CMD with sh -c, with the plaintext as its standard input and output
    #[argh(option, arg_name = "CMD")]
    pub exec: Option<String>,

    /// exit after the first connection has ended
    #[argh(switch)]
    pub once: bool,

    /// use DTLS over UDP, each peer on a socket of its own; only with --echo, which returns
    /// each datagram
    #[argh(switch)]
    pub udp: bool,
}

/// Connection attempts to a daemon that closed the connection before `serve` gives up.
const RECONNECT_ATTEMPTS: u32 = 8;

/// Wait after the first failed reconnection attempt, doubled after each one up to
/// [`RECONNECT_MAX_WAIT`], so the eight attempts span about 9 s.
const RECONNECT_FIRST_WAIT: Duration = Duration::from_millis(100);

/// Maximum wait between two reconnection attempts.
const RECONNECT_MAX_WAIT: Duration = Duration::from_secs(2);

/// What a server does with the plaintext of a connection.
#[derive(Debug, Clone)]
enum Handler {
    Echo,
    Exec(String),
}

/// Runs `tlspoolctl serve` against the daemon at `socket` on a tokio runtime of its own.
pub(super) fn run(socket: &Path, command: &ServeCommand) -> Result<(), ClientError> {
    let handler = match (command.echo, &command.exec) {
        (true, None) => Handler::Echo,
        (false, Some(line)) => Handler::Exec(line.clone()),
        _ => {
            return Err(ClientError::InvalidRequest {
                field: "handler",
                reason: "serve needs exactly one of --echo and --exec CMD".to_owned(),
            });
        }
    };
    let request = server_request(command)?;
    if command.udp {
        if !matches!(handler, Handler::Echo) {
            return Err(ClientError::InvalidRequest {
                field: "handler",
                reason: "serve --udp supports --echo only".to_owned(),
            });
        }
        return super::datagram::serve_udp(socket, &command.listen, &request, command.once);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| ClientError::Io {
            call: "start of the tokio runtime",
            source,
        })?;
    runtime.block_on(serve(socket, command, Arc::new(request), handler))
}

/// Builds the STARTTLS request every connection uses.
fn server_request(command: &ServeCommand) -> Result<StartTlsRequest, ClientError> {
    let mut builder = StartTlsRequest::server(&command.local_id);
    match &command.remote_id {
        Some(remote_id) => builder.remote_id(remote_id),
        None => builder.flags(StartTlsFlags::REQUEST_REMOTEID),
    };
    if let Some(service) = &command.service {
        builder.service(service);
    }
    if command.udp {
        builder.dtls();
    }
    builder.build()
}

/// Accepts connections until an accept or a reconnection fails, or after the first with
/// `--once`.
async fn serve(
    socket: &Path,
    command: &ServeCommand,
    request: Arc<StartTlsRequest>,
    handler: Handler,
) -> Result<(), ClientError> {
    let link = DaemonLink {
        socket: socket.to_owned(),
        client: Mutex::new(Client::connect(Some(socket)).await?),
    };
    let listener = TcpListener::bind(&command.listen)
        .await
        .map_err(|source| tcp_error("listen on", &command.listen, source))?;
    let local = listener
        .local_addr()
        .map_err(|source| tcp_error("listen on", &command.listen, source))?;
    eprintln!("listening on {local}");

    loop {
        let (tcp, peer) = listener
            .accept()
            .await
            .map_err(|source| tcp_error("accept on", &command.listen, source))?;
        let client = link.client().await?;
        if command.once {
            return handle(&client, tcp, peer, &request, &handler).await;
        }
        let request = Arc::clone(&request);
        let handler = handler.clone();
        tokio::spawn(async move {
            if let Err(error) = handle(&client, tcp, peer, &request, &handler).await {
                eprintln!(
                    "tlspoolctl: connection from {peer}: {}",
                    error_message(&error)
                );
            }
        });
    }
}

/// The connection to the daemon that accepted connections share, replaced when the daemon
/// has closed it.
#[derive(Debug)]
struct DaemonLink {
    socket: PathBuf,
    client: Mutex<Client>,
}

impl DaemonLink {
    /// Returns the shared client, after connecting again when the daemon closed the old one.
    ///
    /// # Errors
    ///
    /// The [`ClientError::Connect`] of the last attempt when all
    /// [`RECONNECT_ATTEMPTS`] fail.
    async fn client(&self) -> Result<Client, ClientError> {
        let mut client = self.client.lock().await;
        if client.is_closed() {
            eprintln!(
                "tlspoolctl: the TLS Pool closed the connection; reconnecting to {}",
                self.socket.display()
            );
            *client = reconnect(&self.socket).await?;
            eprintln!(
                "tlspoolctl: reconnected to the TLS Pool at {}",
                self.socket.display()
            );
        }
        Ok(client.clone())
    }
}

/// Connects to `socket`, retrying with exponential backoff up to [`RECONNECT_ATTEMPTS`] times.
async fn reconnect(socket: &Path) -> Result<Client, ClientError> {
    let mut wait = RECONNECT_FIRST_WAIT;
    let mut attempt = 1;
    loop {
        match Client::connect(Some(socket)).await {
            Ok(client) => return Ok(client),
            Err(error) if attempt < RECONNECT_ATTEMPTS => {
                debug!(attempt, %error, wait_ms = wait.as_millis(), "reconnecting failed");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RECONNECT_MAX_WAIT);
                attempt += 1;
            }
            Err(error) => {
                eprintln!(
                    "tlspoolctl: giving up after {RECONNECT_ATTEMPTS} attempts to reconnect to \
                     the TLS Pool at {}",
                    socket.display()
                );
                return Err(error);
            }
        }
    }
}

/// Runs STARTTLS on one accepted connection and serves its plaintext.
async fn handle(
    client: &Client,
    tcp: TcpStream,
    peer: SocketAddr,
    request: &StartTlsRequest,
    handler: &Handler,
) -> Result<(), ClientError> {
    let address = peer.to_string();
    let tcp = tcp
        .into_std()
        .and_then(|tcp| tcp.set_nonblocking(false).map(|()| tcp))
        .map_err(|source| tcp_error("set up the connection from", &address, source))?;
    let connection = client.starttls(tcp, request).await?;
    let privacy = client.privacy_mode(&connection.ctlkey).await;
    eprint!(
        "connection from {peer}\n{}{}",
        identity_lines(&connection.local_id, &connection.remote_id),
        privacy_line(privacy)
    );

    match handler {
        Handler::Echo => echo(connection.plaintext).await,
        Handler::Exec(line) => exec(line, connection.plaintext).await,
    }
}

/// Sends everything read from `plaintext` back, then shuts down its write side.
async fn echo(plaintext: UnixStream) -> Result<(), ClientError> {
    let (mut reader, mut writer) = plaintext.into_split();
    let io_error = |source| ClientError::Io {
        call: "echo on the TLS session",
        source,
    };
    tokio::io::copy(&mut reader, &mut writer)
        .await
        .map_err(io_error)?;
    writer.shutdown().await.map_err(io_error)
}

/// Runs `sh -c LINE` with `plaintext` as its standard input and output and waits for it.
async fn exec(line: &str, plaintext: UnixStream) -> Result<(), ClientError> {
    let exec_error = |source| ClientError::Exec {
        command: line.to_owned(),
        source,
    };
    let output = plaintext
        .into_std()
        .and_then(|stream| {
            stream.set_nonblocking(false)?;
            Ok(OwnedFd::from(stream))
        })
        .map_err(exec_error)?;
    let input = output.try_clone().map_err(exec_error)?;

    // The child holds the only copies of the plaintext socket, so its exit ends the session.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(line)
        .stdin(Stdio::from(input))
        .stdout(Stdio::from(output))
        .spawn()
        .map_err(exec_error)?;
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .map_err(|error| exec_error(std::io::Error::other(error)))?
        .map_err(exec_error)?;
    debug!(command = line, %status, "command finished");
    if !status.success() {
        eprintln!("tlspoolctl: sh -c {line:?} exited with {status}");
    }
    Ok(())
}

fn tcp_error(action: &'static str, address: &str, source: std::io::Error) -> ClientError {
    ClientError::Tcp {
        action,
        address: address.to_owned(),
        source,
    }
}
