//! The server name of a TLS ClientHello, read from the first bytes of the ciphertext socket
//! before GnuTLS sees them (RFC 8446 section 4.1.2, RFC 6066 section 3).
//!
//! A server with `LOCALID_CHECK` proposes the client's server name to the application and
//! waits for its answer before it chooses a certificate. GnuTLS chooses certificates inside
//! `gnutls_handshake`, in a callback that cannot wait for an asynchronous answer, and
//! suspending the handshake from that callback would return the same `GNUTLS_E_AGAIN` that
//! means "feed more ciphertext". Reading the server name here instead keeps the engine's
//! handshake loop unchanged: the daemon buffers the ClientHello, asks the application, creates
//! the session with the chosen credentials and feeds the buffered bytes to it.

use std::io;
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};

use nix::sys::socket::{AddressFamily, SockaddrLike as _, SockaddrStorage, getsockname};
use tokio::io::AsyncReadExt as _;

use tlspool_core::relay::CipherSocket;

use super::error::StartTlsError;

/// Largest ClientHello accepted, in bytes of handshake message, which bounds what a peer can
/// make the daemon buffer before the handshake starts.
pub(crate) const MAX_CLIENT_HELLO: usize = 64 * 1024;

/// TLS record content type `handshake`.
const CONTENT_HANDSHAKE: u8 = 22;
/// Handshake message type `client_hello`.
const CLIENT_HELLO: u8 = 1;
/// Extension type `server_name`.
const EXTENSION_SERVER_NAME: u16 = 0;
/// Server name type `host_name`.
const NAME_TYPE_HOST: u8 = 0;

/// Result of [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HelloScan {
    /// The bytes end before the ClientHello does.
    Incomplete,
    /// The ClientHello is complete; this is its first `host_name`, if it has one.
    Complete(Option<String>),
}

/// Scans `bytes`, the first bytes received from the TLS client, for a complete ClientHello.
///
/// # Errors
///
/// A description of the first thing that is not a ClientHello: another record type, another
/// handshake message, a length that runs past its container, or a message larger than
/// [`MAX_CLIENT_HELLO`].
pub(crate) fn scan(bytes: &[u8]) -> Result<HelloScan, String> {
    let Some(message) = reassemble(bytes)? else {
        return Ok(HelloScan::Incomplete);
    };
    server_name(&message).map(HelloScan::Complete)
}

/// Joins the handshake records at the start of `bytes` until they hold the whole first
/// handshake message, and returns its body; `None` while more bytes are needed.
fn reassemble(mut bytes: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut handshake = Vec::new();
    loop {
        if handshake.len() >= 4 {
            if handshake[0] != CLIENT_HELLO {
                return Err(format!(
                    "handshake message type {} is not ClientHello",
                    handshake[0]
                ));
            }
            let length = usize::from(handshake[1]) << 16
                | usize::from(handshake[2]) << 8
                | usize::from(handshake[3]);
            if length > MAX_CLIENT_HELLO {
                return Err(format!(
                    "ClientHello of {length} bytes exceeds the limit of {MAX_CLIENT_HELLO}"
                ));
            }
            if handshake.len() >= 4 + length {
                handshake.truncate(4 + length);
                return Ok(Some(handshake.split_off(4)));
            }
        }
        if bytes.len() < 5 {
            return Ok(None);
        }
        if bytes[0] != CONTENT_HANDSHAKE {
            return Err(format!("record content type {} is not handshake", bytes[0]));
        }
        let length = usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
        if length == 0 {
            return Err("empty handshake record".to_owned());
        }
        let Some(fragment) = bytes.get(5..5 + length) else {
            return Ok(None);
        };
        handshake.extend_from_slice(fragment);
        bytes = &bytes[5 + length..];
    }
}

/// Returns the first `host_name` of the DTLS ClientHello that fills `datagram` (RFC 6347
/// section 4.3.2: a 13-byte record header, a 12-byte handshake header, and a body with a
/// `cookie` vector after the session id).
///
/// # Errors
///
/// A description of the first thing that is not a whole DTLS ClientHello.
pub(crate) fn dtls_server_name(datagram: &[u8]) -> Result<Option<String>, String> {
    let mut record = Reader(datagram);
    let [content_type] = record.array("record type")?;
    if content_type != CONTENT_HANDSHAKE {
        return Err(format!("record type {content_type} is not handshake"));
    }
    record.take(2 + 8, "record version and sequence number")?;

    let mut handshake = Reader(record.vector(2, "record")?);
    let [message_type] = handshake.array("handshake type")?;
    if message_type != CLIENT_HELLO {
        return Err(format!(
            "handshake message {message_type} is not ClientHello"
        ));
    }
    let length = handshake.take(3, "handshake length")?;
    handshake.take(2, "message sequence")?;
    let offset = handshake.take(3, "fragment offset")?;
    let fragment = handshake.take(3, "fragment length")?;

    // NOTE: a ClientHello fragmented over several datagrams is rejected, because its
    // server name could sit in a later one.
    if offset != [0, 0, 0] || fragment != length {
        return Err("the ClientHello is fragmented over several datagrams".to_owned());
    }

    let body = handshake.0;
    let mut reader = Reader(body);
    let head = reader.take(2 + 32, "version and random")?;
    let session_id = reader.vector(1, "legacy_session_id")?;
    reader.vector(1, "cookie")?;

    let mut tls_body = head.to_vec();
    tls_body.push(session_id.len() as u8);
    tls_body.extend_from_slice(session_id);
    tls_body.extend_from_slice(reader.0);
    server_name(&tls_body)
}

/// Returns the first `host_name` of the server_name extension of a ClientHello body.
fn server_name(body: &[u8]) -> Result<Option<String>, String> {
    let mut reader = Reader(body);
    reader.take(2 + 32, "version and random")?;
    reader.vector(1, "legacy_session_id")?;
    reader.vector(2, "cipher_suites")?;
    reader.vector(1, "legacy_compression_methods")?;
    if reader.0.is_empty() {
        return Ok(None);
    }
    let mut extensions = Reader(reader.vector(2, "extensions")?);
    while !extensions.0.is_empty() {
        let kind = u16::from_be_bytes(extensions.array("extension type")?);
        let data = extensions.vector(2, "extension data")?;
        if kind != EXTENSION_SERVER_NAME {
            continue;
        }
        let mut list = Reader(Reader(data).vector(2, "server_name_list")?);
        while !list.0.is_empty() {
            let [name_type] = list.array("server name type")?;
            let name = list.vector(2, "server name")?;
            if name_type == NAME_TYPE_HOST {
                return String::from_utf8(name.to_vec())
                    .map(Some)
                    .map_err(|_| "server name is not UTF-8".to_owned());
            }
        }
        return Ok(None);
    }
    Ok(None)
}

/// A cursor over a byte slice that fails with the name of the field that runs short.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!("ClientHello field {field} is truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], String> {
        let bytes = self.take(N, field)?;
        let mut array = [0u8; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    /// Takes a vector with a big-endian length prefix of `prefix` bytes (1 or 2).
    fn vector(&mut self, prefix: usize, field: &str) -> Result<&'a [u8], String> {
        let length = self
            .take(prefix, field)?
            .iter()
            .fold(0usize, |length, &byte| length << 8 | usize::from(byte));
        self.take(length, field)
    }
}

/// Reads from `fd` until the ClientHello is complete, and returns the descriptor, every byte
/// read (to be fed to the TLS session) and the server name.
///
/// # Errors
///
/// [`StartTlsError::NotClientHello`] when the bytes are no ClientHello,
/// [`StartTlsError::HandshakeFailed`] when the peer closes the connection first, and
/// [`StartTlsError::SocketSetup`] when the descriptor cannot be read.
pub(crate) async fn read(fd: OwnedFd) -> Result<(OwnedFd, Vec<u8>, Option<String>), StartTlsError> {
    let mut socket = Socket::new(fd)?;
    let mut received = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let server_name = loop {
        match scan(&received) {
            Ok(HelloScan::Complete(name)) => break name,
            Ok(HelloScan::Incomplete) => {}
            Err(reason) => return Err(StartTlsError::NotClientHello { reason }),
        }
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Err(StartTlsError::HandshakeFailed {
                detail: "the TLS peer closed the connection before its ClientHello ended"
                    .to_owned(),
            });
        }
        received.extend_from_slice(&buf[..n]);
    };
    Ok((socket.into_fd()?, received, server_name))
}

/// The ciphertext socket while the ClientHello is read: a TCP socket, or a UNIX socket (as
/// the tests and local peers pass).
enum Socket {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Socket {
    fn new(fd: OwnedFd) -> Result<Self, StartTlsError> {
        CipherSocket::check(fd.as_fd()).map_err(StartTlsError::from_handshake)?;
        let setup = |call: &str, error: io::Error| StartTlsError::SocketSetup {
            reason: format!("{call} failed: {error}"),
        };
        let address = getsockname::<SockaddrStorage>(fd.as_raw_fd())
            .map_err(|error| setup("getsockname", error.into()))?;
        let socket = if address.family() == Some(AddressFamily::Unix) {
            let stream = std::os::unix::net::UnixStream::from(fd);
            stream
                .set_nonblocking(true)
                .map_err(|error| setup("fcntl", error))?;
            tokio::net::UnixStream::from_std(stream).map(Self::Unix)
        } else {
            let stream = std::net::TcpStream::from(fd);
            stream
                .set_nonblocking(true)
                .map_err(|error| setup("fcntl", error))?;
            tokio::net::TcpStream::from_std(stream).map(Self::Tcp)
        };
        socket.map_err(|error| setup("epoll_ctl", error))
    }

    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, StartTlsError> {
        let result = match self {
            Self::Tcp(stream) => stream.read(buf).await,
            Self::Unix(stream) => stream.read(buf).await,
        };
        result.map_err(|error| StartTlsError::SocketSetup {
            reason: format!("read failed: {error}"),
        })
    }

    fn into_fd(self) -> Result<OwnedFd, StartTlsError> {
        let fd = match self {
            Self::Tcp(stream) => stream.into_std().map(OwnedFd::from),
            Self::Unix(stream) => stream.into_std().map(OwnedFd::from),
        };
        fd.map_err(|error| StartTlsError::SocketSetup {
            reason: format!("deregistering the socket failed: {error}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a ClientHello record with `extensions` (type, data) pairs.
    fn client_hello(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01]);
        body.extend_from_slice(&[1, 0]);
        let mut encoded = Vec::new();
        for (kind, data) in extensions {
            encoded.extend_from_slice(&kind.to_be_bytes());
            encoded.extend_from_slice(&(data.len() as u16).to_be_bytes());
            encoded.extend_from_slice(data);
        }
        body.extend_from_slice(&(encoded.len() as u16).to_be_bytes());
        body.extend_from_slice(&encoded);

        let mut message = vec![CLIENT_HELLO, 0];
        message.extend_from_slice(&(body.len() as u16).to_be_bytes());
        message.extend_from_slice(&body);
        let mut record = vec![CONTENT_HANDSHAKE, 3, 1];
        record.extend_from_slice(&(message.len() as u16).to_be_bytes());
        record.extend_from_slice(&message);
        record
    }

    fn sni(name: &str) -> (u16, Vec<u8>) {
        let mut entry = vec![NAME_TYPE_HOST];
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name.as_bytes());
        let mut data = (entry.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&entry);
        (EXTENSION_SERVER_NAME, data)
    }

    #[test]
    fn finds_server_name_after_other_extensions() {
        let hello = client_hello(&[(10, vec![0, 2, 0, 23]), sni("server.example")]);
        assert_eq!(
            scan(&hello),
            Ok(HelloScan::Complete(Some("server.example".to_owned())))
        );
    }

    #[test]
    fn hello_without_server_name() {
        let hello = client_hello(&[(10, vec![0, 2, 0, 23])]);
        assert_eq!(scan(&hello), Ok(HelloScan::Complete(None)));
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let hello = client_hello(&[sni("server.example")]);
        for end in 0..hello.len() {
            assert_eq!(
                scan(&hello[..end]),
                Ok(HelloScan::Incomplete),
                "prefix {end}"
            );
        }
    }

    #[test]
    fn message_split_over_records() {
        let hello = client_hello(&[sni("split.example")]);
        let message = &hello[5..];
        let (first, second) = message.split_at(20);
        let mut records = Vec::new();
        for fragment in [first, second] {
            records.extend_from_slice(&[CONTENT_HANDSHAKE, 3, 1]);
            records.extend_from_slice(&(fragment.len() as u16).to_be_bytes());
            records.extend_from_slice(fragment);
        }
        assert_eq!(
            scan(&records),
            Ok(HelloScan::Complete(Some("split.example".to_owned())))
        );
    }

    #[test]
    fn rejects_other_records_and_messages() {
        let mut alert = client_hello(&[]);
        alert[0] = 21;
        assert!(scan(&alert).unwrap_err().contains("content type 21"));
        let mut server_hello = client_hello(&[]);
        server_hello[5] = 2;
        assert!(scan(&server_hello).unwrap_err().contains("type 2"));
        assert!(scan(b"GET / HTTP/1.1\r\n").is_err());
    }

    #[test]
    fn rejects_lengths_past_their_container() {
        let mut hello = client_hello(&[sni("server.example")]);
        // The server name's own length, two bytes before the name at the end.
        let at = hello.len() - "server.example".len() - 2;
        hello[at] = 0xff;
        assert!(scan(&hello).unwrap_err().contains("truncated"));
    }

    #[test]
    fn rejects_oversized_hello() {
        let record = [CONTENT_HANDSHAKE, 3, 1, 0, 4, CLIENT_HELLO, 0x10, 0, 0];
        assert!(scan(&record).unwrap_err().contains("exceeds"));
    }

    /// Returns the first datagram of a GnuTLS DTLS client: its ClientHello without cookie.
    fn dtls_client_hello(sni: Option<&str>) -> Vec<u8> {
        use tlspool_core::tls::{Credentials, DtlsConfig, Role, Session, SessionConfig};
        let mut config = SessionConfig::new(Role::Client);
        config.sni = sni.map(str::to_owned);
        let credentials = Credentials::anonymous_client().unwrap();
        let mut session = Session::new_dtls(config, &credentials, DtlsConfig::new(1200)).unwrap();
        session.handshake().unwrap();
        session.next_datagram().unwrap()
    }

    #[test]
    fn dtls_hello_server_name() {
        let hello = dtls_client_hello(Some("dtls.example"));
        assert_eq!(
            dtls_server_name(&hello),
            Ok(Some("dtls.example".to_owned()))
        );
        assert_eq!(dtls_server_name(&dtls_client_hello(None)), Ok(None));
    }

    #[test]
    fn dtls_hello_rejects_fragments_and_truncation() {
        let mut hello = dtls_client_hello(Some("dtls.example"));
        assert!(dtls_server_name(&hello[..hello.len() - 1]).is_err());
        // A fragment offset other than 0 (bytes 19 to 21 of the datagram).
        hello[21] = 1;
        assert!(dtls_server_name(&hello).is_err());
        assert!(dtls_server_name(&[23; 40]).is_err());
    }
}
