//! `tlspoolctl test-client` and `tlspoolctl test-server`: run one TLS session through the
//! daemon and exercise the control commands on it, as the TLS Pool's own test client and
//! server do.
//!
//! After STARTTLS each side runs the same steps. REATTACH of the attached session fails,
//! DETACH works, DETACH again fails, REATTACH works and REATTACH again fails. PRNG with label
//! `EXPERIMENTAL-tlspool-test` returns 16 bytes without context, then other 16 bytes with
//! the first as context. INFO returns the channel binding of the negotiated version
//! (`tls-unique` before TLS 1.3, `tls-exporter` under it), the subject and issuer of the
//! peer's and of the own certificate, and checks each identity as a subjectAltName. Finally
//! both sides send each other their PRNG output and channel binding and check that the peer
//! computed the same. Last, each side closes its write side and reads until the peer closes
//! too, because closing the control connection stops the session, and a session stopped
//! before the daemon relayed this side's line would lose it. Each step prints `ok STEP` or
//! `FAILED STEP: reason`, and the command fails unless every step passed.

use std::io::{BufRead, BufReader, ErrorKind, Read as _, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use argh::FromArgs;

use super::{error_message, identity_lines, stdout_error};
use crate::blocking::{self, TlsConnection};
use crate::{ClientError, CtlKey, ErrorCode, InfoKind, StartTlsFlags, StartTlsRequest};

/// Label of the PRNG steps.
pub const TEST_LABEL: &str = "EXPERIMENTAL-tlspool-test";

/// Bytes of keying material each PRNG step requests.
const PRNG_TEST_LEN: usize = 16;

/// How long the `close` step waits for the peer to close its side of the session.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(60);

/// Tag of an rfc822Name GeneralName (`[1] IMPLICIT IA5String`).
const TAG_RFC822_NAME: u8 = 0x81;
/// Tag of a dNSName GeneralName (`[2] IMPLICIT IA5String`).
const TAG_DNS_NAME: u8 = 0x82;

/// Connect to a TLS server through the TLS Pool and test the control commands on the session.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "test-client")]
pub struct TestClientCommand {
    /// host name or address of the server
    #[argh(positional)]
    pub host: String,

    /// TCP port of the server
    #[argh(positional)]
    pub port: u16,

    /// identity of the server, checked against its certificate
    #[argh(option, arg_name = "ID")]
    pub remote_id: String,

    /// local identity to request (default: the one the daemon's disclose database picks)
    #[argh(option, arg_name = "ID")]
    pub local_id: Option<String>,
}

/// Accept one TLS client through the TLS Pool and test the control commands on the session.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "test-server")]
pub struct TestServerCommand {
    /// address and port to listen on, such as 127.0.0.1:4433
    #[argh(option, arg_name = "ADDR:PORT")]
    pub listen: String,

    /// local identity whose credential the server presents
    #[argh(option, arg_name = "ID")]
    pub local_id: String,

    /// client identity to require; without it a client certificate is requested
    #[argh(option, arg_name = "ID")]
    pub remote_id: Option<String>,
}

/// Runs `tlspoolctl test-client` against the daemon at `socket`.
pub(super) fn run_client(
    socket: &Path,
    command: &TestClientCommand,
    out: &mut dyn Write,
) -> Result<(), ClientError> {
    let mut builder = StartTlsRequest::client(&command.remote_id);
    if let Some(local_id) = &command.local_id {
        builder.local_id(local_id);
    }
    let request = builder.build()?;
    let client = blocking::Client::connect(Some(socket))?;
    let address = format!("{}:{}", command.host, command.port);
    let tcp = TcpStream::connect((command.host.as_str(), command.port)).map_err(|source| {
        ClientError::Tcp {
            action: "connect to",
            address,
            source,
        }
    })?;
    let connection = client.starttls(tcp, &request)?;
    run_steps(&client, connection, out)
}

/// Runs `tlspoolctl test-server` against the daemon at `socket`: one connection.
pub(super) fn run_server(
    socket: &Path,
    command: &TestServerCommand,
    out: &mut dyn Write,
) -> Result<(), ClientError> {
    let mut builder = StartTlsRequest::server(&command.local_id);
    match &command.remote_id {
        Some(remote_id) => builder.remote_id(remote_id),
        None => builder.flags(StartTlsFlags::REQUEST_REMOTEID),
    };
    let request = builder.build()?;
    let client = blocking::Client::connect(Some(socket))?;
    let tcp_error = |action, source| ClientError::Tcp {
        action,
        address: command.listen.clone(),
        source,
    };
    let listener =
        TcpListener::bind(&command.listen).map_err(|source| tcp_error("listen on", source))?;
    let local = listener
        .local_addr()
        .map_err(|source| tcp_error("getsockname of", source))?;
    eprintln!("listening on {local}");
    let (tcp, _) = listener
        .accept()
        .map_err(|source| tcp_error("accept on", source))?;
    let connection = client.starttls(tcp, &request)?;
    run_steps(&client, connection, out)
}

/// The output of the steps and the count of failed ones.
struct Steps<'a> {
    out: &'a mut dyn Write,
    failed: usize,
}

impl Steps<'_> {
    /// Prints the outcome of `step`.
    fn report(&mut self, step: &str, result: Result<(), String>) -> Result<(), ClientError> {
        let line = match result {
            Ok(()) => format!("ok {step}\n"),
            Err(reason) => {
                self.failed += 1;
                format!("FAILED {step}: {reason}\n")
            }
        };
        self.out.write_all(line.as_bytes()).map_err(stdout_error)?;
        self.out.flush().map_err(stdout_error)
    }
}

/// Runs every step on the established `connection` and fails unless all passed.
fn run_steps(
    client: &blocking::Client,
    connection: TlsConnection,
    out: &mut dyn Write,
) -> Result<(), ClientError> {
    eprint!(
        "{}",
        identity_lines(&connection.local_id, &connection.remote_id)
    );
    let key = connection.ctlkey;
    let mut steps = Steps { out, failed: 0 };

    control_steps(client, &key, &mut steps)?;

    let first = client.prng(&key, TEST_LABEL, None, PRNG_TEST_LEN);
    steps.report("prng", first.as_ref().map(|_| ()).map_err(error_message))?;
    let second = match &first {
        Ok(first) => client.prng(&key, TEST_LABEL, Some(first), PRNG_TEST_LEN),
        Err(_) => client.prng(&key, TEST_LABEL, Some(&[]), PRNG_TEST_LEN),
    };
    let differs = match (&first, &second) {
        (Ok(first), Ok(second)) if first == second => {
            Err("the output with context equals the one without".to_owned())
        }
        (_, Ok(_)) => Ok(()),
        (_, Err(error)) => Err(error_message(error)),
    };
    steps.report("prng-context", differs)?;

    let binding = channel_binding(client, &key);
    steps.report(
        "chanbind",
        binding.as_ref().map(|_| ()).map_err(Clone::clone),
    )?;

    certificate_steps(client, &connection, &mut steps)?;

    let mine = format!(
        "{} {}\n",
        hex(first.as_deref().unwrap_or_default()),
        hex(binding.as_deref().unwrap_or_default())
    );
    let mut plaintext = BufReader::new(connection.plaintext);
    steps.report("peer-agrees", compare_with_peer(&mut plaintext, &mine))?;
    steps.report("close", close_with_peer(plaintext))?;

    match steps.failed {
        0 => Ok(()),
        failed => Err(ClientError::TestsFailed { failed }),
    }
}

/// Runs the DETACH and REATTACH steps.
fn control_steps(
    client: &blocking::Client,
    key: &CtlKey,
    steps: &mut Steps<'_>,
) -> Result<(), ClientError> {
    steps.report(
        "reattach-attached",
        expect_error(client.reattach(key), ErrorCode::CtlkeyAttached),
    )?;
    steps.report("detach", client.detach(key).map_err(|e| error_message(&e)))?;
    steps.report(
        "detach-again",
        expect_error(client.detach(key), ErrorCode::CtlkeyDetached),
    )?;
    steps.report(
        "reattach",
        client.reattach(key).map_err(|e| error_message(&e)),
    )?;
    steps.report(
        "reattach-again",
        expect_error(client.reattach(key), ErrorCode::CtlkeyAttached),
    )
}

/// Runs the INFO steps on the peer's and the own certificate.
fn certificate_steps(
    client: &blocking::Client,
    connection: &TlsConnection,
    steps: &mut Steps<'_>,
) -> Result<(), ClientError> {
    let key = &connection.ctlkey;
    let sides = [
        ("peer", &connection.remote_id, InfoKind::PEERCERT_SUBJECT),
        ("my", &connection.local_id, InfoKind::MYCERT_SUBJECT),
    ];
    for (side, identity, subject_kind) in sides {
        let issuer_kind = InfoKind(subject_kind.0 + 1);
        let san_kind = InfoKind(subject_kind.0 + 2);
        for (name, kind) in [("subject", subject_kind), ("issuer", issuer_kind)] {
            let result = client
                .info(key, kind, None)
                .map_err(|e| error_message(&e))
                .and_then(|value| match value.first() {
                    Some(0x30) => Ok(()),
                    _ => Err("the value is not a DER Name".to_owned()),
                });
            steps.report(&format!("{side}-{name}"), result)?;
        }
        let name = general_name(identity);
        let result = client
            .info(key, san_kind, Some(&name))
            .map_err(|e| error_message(&e))
            .and_then(|echo| {
                (echo == name)
                    .then_some(())
                    .ok_or_else(|| "the reply does not echo the name".to_owned())
            });
        steps.report(&format!("{side}-san {identity}"), result)?;
    }
    Ok(())
}

/// Returns the channel binding of the negotiated version.
fn channel_binding(client: &blocking::Client, key: &CtlKey) -> Result<Vec<u8>, String> {
    let version = client
        .info(key, InfoKind::PROTOCOL_VERSION, None)
        .map_err(|e| error_message(&e))?;
    let kind = if version == b"TLS1.3" {
        InfoKind::CHANBIND_TLS_EXPORTER
    } else {
        InfoKind::CHANBIND_TLS_UNIQUE
    };
    let value = client
        .info(key, kind, None)
        .map_err(|e| error_message(&e))?;
    if value.is_empty() {
        return Err("the channel binding is empty".to_owned());
    }
    Ok(value)
}

/// Builds the DER GeneralName of `identity`: an rfc822Name for a user identity with `@`, a
/// dNSName for a domain.
fn general_name(identity: &str) -> Vec<u8> {
    let tag = if identity.contains('@') {
        TAG_RFC822_NAME
    } else {
        TAG_DNS_NAME
    };
    let mut name = vec![tag, u8::try_from(identity.len()).unwrap_or(u8::MAX)];
    name.extend_from_slice(identity.as_bytes());
    name
}

/// Checks that `result` is the daemon's ERROR `expected`.
fn expect_error(result: Result<(), ClientError>, expected: ErrorCode) -> Result<(), String> {
    match result {
        Err(ClientError::Daemon {
            known: Some(code), ..
        }) if code == expected => Ok(()),
        Err(error) => Err(format!(
            "expected {}, got {}",
            expected.name(),
            error_message(&error)
        )),
        Ok(()) => Err(format!("succeeded, expected {}", expected.name())),
    }
}

/// Sends `mine` to the peer over the session and reads the peer's line, which must be equal.
fn compare_with_peer(plaintext: &mut BufReader<UnixStream>, mine: &str) -> Result<(), String> {
    plaintext
        .get_ref()
        .write_all(mine.as_bytes())
        .map_err(|e| format!("sending to the peer failed: {e}"))?;
    let mut theirs = String::new();
    plaintext
        .read_line(&mut theirs)
        .map_err(|e| format!("reading from the peer failed: {e}"))?;
    if theirs == mine {
        Ok(())
    } else {
        Err(format!(
            "the peer sent {:?}, expected {:?}",
            theirs.trim_end(),
            mine.trim_end()
        ))
    }
}

/// Shuts down the write side of the session, which the daemon sends as close_notify, and
/// reads until end of file. A `tlspoolctl` peer shuts down its side only after it read this
/// side's line, so once end of file arrives, closing the control connection cannot lose it.
fn close_with_peer(mut plaintext: BufReader<UnixStream>) -> Result<(), String> {
    let socket = plaintext.get_ref();
    socket
        .shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown of the plaintext socket failed: {e}"))?;
    socket
        .set_read_timeout(Some(CLOSE_TIMEOUT))
        .map_err(|e| format!("setting the read timeout failed: {e}"))?;
    let mut rest = Vec::new();
    match plaintext.read_to_end(&mut rest) {
        Ok(_) if rest.is_empty() => Ok(()),
        Ok(_) => Err(format!(
            "the peer sent {} more bytes after its line",
            rest.len()
        )),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Err(format!(
            "the peer did not close the session within {} s",
            CLOSE_TIMEOUT.as_secs()
        )),
        Err(e) => Err(format!("reading from the peer failed: {e}")),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn general_name_picks_tag_by_identity() {
        assert_eq!(general_name("a@b"), [0x81, 3, b'a', b'@', b'b']);
        assert_eq!(general_name("b.c"), [0x82, 3, b'b', b'.', b'c']);
    }

    #[test]
    fn expected_error_must_match_code() {
        let error = |code: ErrorCode| ClientError::Daemon {
            code: code.code(),
            known: Some(code),
            message: String::new(),
        };
        assert!(
            expect_error(
                Err(error(ErrorCode::CtlkeyAttached)),
                ErrorCode::CtlkeyAttached
            )
            .is_ok()
        );
        assert!(
            expect_error(
                Err(error(ErrorCode::CtlkeyNotFound)),
                ErrorCode::CtlkeyAttached
            )
            .is_err()
        );
        assert!(expect_error(Ok(()), ErrorCode::CtlkeyAttached).is_err());
    }

    #[test]
    fn exchange_then_close_passes() {
        let (mine, theirs) = UnixStream::pair().expect("socket pair");
        let peer = std::thread::spawn(move || {
            let mut peer = BufReader::new(theirs);
            let result = compare_with_peer(&mut peer, "ab 01\n");
            (result, close_with_peer(peer))
        });
        let mut plaintext = BufReader::new(mine);
        assert_eq!(compare_with_peer(&mut plaintext, "ab 01\n"), Ok(()));
        assert_eq!(close_with_peer(plaintext), Ok(()));
        let (peer_agrees, peer_close) = peer.join().expect("peer thread");
        assert_eq!(peer_agrees, Ok(()));
        assert_eq!(peer_close, Ok(()));
    }

    #[test]
    fn close_reports_bytes_after_line() {
        let (mine, mut theirs) = UnixStream::pair().expect("socket pair");
        theirs.write_all(b"ab 01\nextra").expect("write");
        theirs.shutdown(Shutdown::Write).expect("shutdown");
        let mut plaintext = BufReader::new(mine);
        assert_eq!(compare_with_peer(&mut plaintext, "ab 01\n"), Ok(()));
        let close = close_with_peer(plaintext);
        assert_eq!(
            close,
            Err("the peer sent 5 more bytes after its line".to_owned())
        );
    }

    #[test]
    fn compare_reports_different_line() {
        let (mine, mut theirs) = UnixStream::pair().expect("socket pair");
        theirs.write_all(b"cd 02\n").expect("write");
        let mut plaintext = BufReader::new(mine);
        let result = compare_with_peer(&mut plaintext, "ab 01\n");
        assert_eq!(
            result,
            Err("the peer sent \"cd 02\", expected \"ab 01\"".to_owned())
        );
    }
}
