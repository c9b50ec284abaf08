//! `tlspoolctl connect`: a TLS client through the daemon that copies standard input to the
//! server and the server's data to standard output, like `gnutls-cli`.
//!
//! End of standard input shuts down the write side of the plaintext socket, so the daemon sends
//! close_notify while data from the server still arrives. The command returns once the server's
//! side has ended and everything received is written to the output.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use argh::FromArgs;
use tracing::debug;

use super::{identity_lines, privacy_line, stdout_error};
use crate::{ClientError, CtlKey, InfoKind, StartTlsRequest, blocking};

/// Size of the buffer for each copy direction.
const COPY_BUFFER_LEN: usize = 16 * 1024;

/// Connect to a TLS server over TCP through the TLS Pool and copy standard input to it and its
/// data to standard output.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "connect")]
pub struct ConnectCommand {
    /// host name or address of the server
    #[argh(positional)]
    pub host: String,

    /// TCP port of the server
    #[argh(positional)]
    pub port: u16,

    /// identity of the server, checked against its certificate and sent as the server name
    #[argh(option, arg_name = "ID")]
    pub remote_id: String,

    /// local identity to request (default: the one the daemon's disclose database picks)
    #[argh(option, arg_name = "ID")]
    pub local_id: Option<String>,

    /// IANA service name sent to the daemon, at most 15 characters (default: generic)
    #[argh(option, arg_name = "NAME")]
    pub service: Option<String>,

    /// use DTLS over UDP: each line of standard input is sent as one datagram
    #[argh(switch)]
    pub udp: bool,

    /// with --udp, seconds to keep the session open after end of input until no datagram
    /// has arrived for that long (default: 1)
    #[argh(option, arg_name = "SECONDS", default = "1.0")]
    pub linger: f64,
}

/// Runs `tlspoolctl connect` against the daemon at `socket`.
pub(super) fn run(
    socket: &Path,
    command: &ConnectCommand,
    out: &mut dyn Write,
) -> Result<(), ClientError> {
    let mut builder = StartTlsRequest::client(&command.remote_id);
    if let Some(local_id) = &command.local_id {
        builder.local_id(local_id);
    }
    if let Some(service) = &command.service {
        builder.service(service);
    }
    if command.udp {
        builder.dtls();
    }
    let request = builder.build()?;
    let linger = Duration::try_from_secs_f64(command.linger).map_err(|error| {
        ClientError::InvalidRequest {
            field: "--linger",
            reason: format!("{} is no valid number of seconds: {error}", command.linger),
        }
    })?;

    let client = blocking::Client::connect(Some(socket))?;
    if command.udp {
        let udp = super::datagram::connect_udp(&command.host, command.port)?;
        debug!(host = %command.host, port = command.port, "UDP socket connected, starting DTLS");
        let connection = client.starttls(udp, &request)?;
        eprint!(
            "{}{}",
            identity_lines(&connection.local_id, &connection.remote_id),
            session_lines(&client, &connection.ctlkey)
        );
        return super::datagram::copy_datagrams(connection.plaintext, out, linger);
    }
    let address = format!("{}:{}", command.host, command.port);
    let tcp = TcpStream::connect((command.host.as_str(), command.port)).map_err(|source| {
        ClientError::Tcp {
            action: "connect to",
            address: address.clone(),
            source,
        }
    })?;
    debug!(%address, "connected, starting TLS");

    let connection = client.starttls(tcp, &request)?;
    eprint!(
        "{}",
        identity_lines(&connection.local_id, &connection.remote_id)
    );
    eprint!("{}", session_lines(&client, &connection.ctlkey));
    copy_both_ways(connection.plaintext, out)
}

/// Describes the negotiated session from INFO: the certificate type of each side (`X.509`, or
/// `RAWPK` for an RFC 7250 raw public key such as an OpenPGP identity's), the protocol
/// version and the privacy mode (`renegotiated`, `tls1.3` or `none`). A value the daemon does
/// not return shows as `(unknown)`.
fn session_lines(client: &blocking::Client, ctlkey: &CtlKey) -> String {
    let query = |kind| {
        client
            .info(ctlkey, kind, None)
            .map(|value| String::from_utf8_lossy(&value).into_owned())
            .unwrap_or_else(|error| {
                debug!(%error, ?kind, "INFO query failed");
                "(unknown)".to_owned()
            })
    };
    format!(
        "peer-certificate-type: {}\nlocal-certificate-type: {}\nprotocol-version: {}\n{}",
        query(InfoKind::PEER_CERTIFICATE_TYPE),
        query(InfoKind::MY_CERTIFICATE_TYPE),
        query(InfoKind::PROTOCOL_VERSION),
        privacy_line(client.privacy_mode(ctlkey))
    )
}

/// Copies standard input to `plaintext` on a thread of its own and `plaintext` to `out` on
/// this one, until the peer's side ends.
fn copy_both_ways(plaintext: UnixStream, out: &mut dyn Write) -> Result<(), ClientError> {
    let sender = plaintext.try_clone().map_err(|source| ClientError::Io {
        call: "dup of the plaintext socket",
        source,
    })?;
    // The thread is not joined: reading standard input may block after the server has ended,
    // and the process exits then without waiting for it.
    thread::Builder::new()
        .name("tlspoolctl-stdin".to_owned())
        .spawn(move || send_stdin(sender))
        .map_err(|source| ClientError::Io {
            call: "spawn of the standard input thread",
            source,
        })?;
    receive_to(plaintext, out, &AtomicU64::new(0))
}

/// Copies standard input to `plaintext`, then shuts down its write side.
fn send_stdin(mut plaintext: UnixStream) {
    let mut stdin = io::stdin().lock();
    let mut buffer = vec![0u8; COPY_BUFFER_LEN];
    loop {
        let len = match stdin.read(&mut buffer) {
            Ok(0) => break,
            Ok(len) => len,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                debug!(%error, "reading standard input failed");
                break;
            }
        };
        if let Err(error) = plaintext.write_all(&buffer[..len]) {
            // The session has ended; the receiving side reports how.
            debug!(%error, "sending to the TLS session failed");
            return;
        }
    }
    if let Err(error) = plaintext.shutdown(Shutdown::Write) {
        debug!(%error, "shutdown of the plaintext write side failed");
    }
}

/// Copies `plaintext` to `out` until end of stream, flushing after each read so interactive
/// output appears at once, and counts the reads in `received`.
pub(super) fn receive_to(
    mut plaintext: UnixStream,
    out: &mut dyn Write,
    received: &AtomicU64,
) -> Result<(), ClientError> {
    let mut buffer = vec![0u8; COPY_BUFFER_LEN];
    loop {
        let len = match plaintext.read(&mut buffer) {
            Ok(0) => return out.flush().map_err(stdout_error),
            Ok(len) => len,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(ClientError::Io {
                    call: "read from the TLS session",
                    source,
                });
            }
        };
        received.fetch_add(1, Ordering::Relaxed);
        out.write_all(&buffer[..len]).map_err(stdout_error)?;
        out.flush().map_err(stdout_error)?;
    }
}
