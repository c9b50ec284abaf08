//! DTLS 1.2 sessions (RFC 6347) over in-memory datagram queues, and the server's stateless
//! cookie exchange (the HelloVerifyRequest of RFC 6347 section 4.2.1).
//!
//! A DTLS [`Session`] is sans-IO like a TLS one, but it moves whole datagrams:
//! [`Session::feed_datagram`] queues one datagram read from the socket, and
//! [`Session::next_datagram`] returns the next one to send, so record boundaries survive. GnuTLS
//! runs in non-blocking mode, so [`Session::handshake`] never waits for the peer: the caller
//! waits for a datagram or for [`Session::retransmit_timeout`], whichever comes first, and calls
//! it again, which retransmits the last flight when the timer has passed. Replay protection and
//! the discarding of records that fail to decrypt are GnuTLS's own.
//!
//! A server checks each ClientHello with [`CookieKey::check_hello`] before it creates a
//! session, so a ClientHello with a spoofed source address costs one HelloVerifyRequest and no
//! state.

use std::ffi::c_uint;
use std::fmt;
use std::time::Duration;

use tlspool_gnutls_sys as sys;
use tracing::{debug, trace};
use zeroize::Zeroizing;

use super::credentials::Credentials;
use super::error::TlsError;
use super::session::{Role, Session, SessionConfig};
use super::{ffi, ffi_x509};

/// Path MTU assumed when neither the socket nor the configuration gives one: the IPv6 minimum
/// link MTU of 1280 bytes (RFC 8200) less the 40-byte IPv6 and 8-byte UDP headers.
pub const DEFAULT_DTLS_MTU: u16 = 1232;

/// Smallest path MTU a DTLS session accepts; below this a certificate flight needs too many
/// fragments to be practical.
pub const MIN_DTLS_MTU: u16 = 256;

/// First retransmission timeout of a DTLS handshake flight (RFC 6347 section 4.2.4.1
/// recommends 1 s); GnuTLS doubles it on each retransmission.
const RETRANSMIT_TIMEOUT_MS: c_uint = 1000;

/// Largest total DTLS handshake timeout handed to GnuTLS, also used for "no timeout":
/// `i32::MAX` milliseconds, almost 25 days.
const MAX_TOTAL_TIMEOUT_MS: c_uint = i32::MAX as c_uint;

/// TLS record content type `handshake`.
const CONTENT_HANDSHAKE: u8 = 22;
/// Handshake message type `client_hello`.
const CLIENT_HELLO: u8 = 1;
/// Length of a DTLS record header (RFC 6347 section 4.1).
const DTLS_RECORD_HEADER: usize = 13;

/// The sequence numbers a verified cookie exchange leaves, for the server session that
/// continues it.
#[derive(Clone, Copy)]
pub struct CookieState {
    prestate: sys::gnutls_dtls_prestate_st,
}

impl fmt::Debug for CookieState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieState")
            .field("record_seq", &self.prestate.record_seq)
            .field("hsk_read_seq", &self.prestate.hsk_read_seq)
            .field("hsk_write_seq", &self.prestate.hsk_write_seq)
            .finish()
    }
}

/// Result of [`CookieKey::check_hello`].
#[derive(Debug)]
pub enum HelloCookie {
    /// The ClientHello carries a valid cookie: create the server session with this state and
    /// feed it the same datagram.
    Verified(CookieState),
    /// The ClientHello has no valid cookie: send this HelloVerifyRequest datagram and keep no
    /// state.
    Challenge(Vec<u8>),
    /// The datagram is not a DTLS ClientHello, so it gets no reply.
    NotClientHello,
}

/// The secret a DTLS server binds its cookies to.
pub struct CookieKey {
    key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieKey").finish_non_exhaustive()
    }
}

impl CookieKey {
    /// Generates a key from GnuTLS's random generator.
    ///
    /// # Errors
    /// [`TlsError::Library`] when `gnutls_rnd` fails.
    pub fn generate() -> Result<Self, TlsError> {
        let mut key = Zeroizing::new([0u8; 32]);
        ffi_x509::random_bytes(key.as_mut())?;
        Ok(Self { key })
    }

    /// Checks the cookie of the ClientHello in `datagram` for the client at `client` (its
    /// transport address in any stable encoding, such as the text of a socket address).
    ///
    /// # Errors
    /// [`TlsError::Library`] when GnuTLS cannot build the HelloVerifyRequest.
    pub fn check_hello(&self, client: &[u8], datagram: &[u8]) -> Result<HelloCookie, TlsError> {
        let is_hello = datagram.len() > DTLS_RECORD_HEADER
            && datagram[0] == CONTENT_HANDSHAKE
            && datagram[DTLS_RECORD_HEADER] == CLIENT_HELLO;
        if !is_hello {
            trace!(
                len = datagram.len(),
                "datagram before the handshake is no ClientHello"
            );
            return Ok(HelloCookie::NotClientHello);
        }
        match ffi::dtls_cookie_verify(self.key.as_ref(), client, datagram) {
            Ok(mut prestate) => {
                // The ServerHello answers with the message sequence number of this
                // ClientHello, which is above 1 after more than one HelloVerifyRequest.
                // GnuTLS continues with one above `hsk_write_seq`.
                prestate.hsk_write_seq = prestate.hsk_read_seq.saturating_sub(1);
                Ok(HelloCookie::Verified(CookieState { prestate }))
            }
            Err(code) => {
                trace!(code, "ClientHello without a valid cookie");
                let prestate = challenge_prestate(datagram);
                let mut prestate = prestate;
                let request = ffi::dtls_cookie_send(self.key.as_ref(), client, &mut prestate)?;
                Ok(HelloCookie::Challenge(request))
            }
        }
    }
}

/// Returns the sequence numbers of the HelloVerifyRequest for the ClientHello `hello`: the
/// record sequence number of the ClientHello (RFC 6347 section 4.2.1) and its handshake
/// message sequence number. A client that already received one HelloVerifyRequest, as from a
/// relay's own cookie exchange, drops a second one that repeats either as a retransmission.
/// GnuTLS keeps the low 32 bits of the 48-bit record sequence number.
fn challenge_prestate(hello: &[u8]) -> sys::gnutls_dtls_prestate_st {
    let field = |range: std::ops::Range<usize>| {
        hello.get(range).map_or(0, |bytes| {
            bytes
                .iter()
                .fold(0u32, |value, byte| value << 8 | u32::from(*byte))
        })
    };
    sys::gnutls_dtls_prestate_st {
        record_seq: field(7..11),
        hsk_read_seq: 0,
        hsk_write_seq: field(17..19),
    }
}

/// Returns the longest prefix of `datagram` that consists of whole DTLS records (RFC 6347
/// section 4.1), each a 13-byte header and as many bytes as its length field gives, at least
/// one. No valid record is empty: encrypted records carry at least the cipher's overhead, and
/// records of epoch 0 carry handshake messages, alerts or ChangeCipherSpec, which RFC 5246
/// section 6.2.1 forbids to send as empty fragments.
fn well_formed_records(datagram: &[u8]) -> &[u8] {
    let mut end = 0;
    while let Some(header) = datagram.get(end..end + DTLS_RECORD_HEADER) {
        let length = usize::from(u16::from_be_bytes([header[11], header[12]]));
        let record_end = end + DTLS_RECORD_HEADER + length;
        if length == 0 || record_end > datagram.len() {
            break;
        }
        end = record_end;
    }
    &datagram[..end]
}

/// Settings of a DTLS session beyond those of [`SessionConfig`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct DtlsConfig {
    /// Path MTU in bytes of UDP payload; records and handshake fragments never exceed it.
    pub mtu: u16,
    /// Server only: the state of the verified cookie exchange this session continues.
    pub cookie: Option<CookieState>,
}

impl DtlsConfig {
    /// Creates settings for a path MTU of `mtu` bytes and no cookie state.
    pub fn new(mtu: u16) -> Self {
        Self { mtu, cookie: None }
    }
}

impl Session {
    /// Creates a DTLS session (GnuTLS in datagram mode) with `credentials`, the same priority,
    /// SNI, client certificate policy and credential selector rules as [`Session::new`].
    ///
    /// A `priority` that enables no DTLS version fails the handshake, not this call.
    ///
    /// # Errors
    /// [`TlsError::MtuTooSmall`] for an MTU below [`MIN_DTLS_MTU`], or the errors of
    /// [`Session::new`].
    pub fn new_dtls(
        config: SessionConfig,
        credentials: &Credentials,
        dtls: DtlsConfig,
    ) -> Result<Self, TlsError> {
        if dtls.mtu < MIN_DTLS_MTU {
            return Err(TlsError::MtuTooSmall {
                mtu: dtls.mtu,
                min: MIN_DTLS_MTU,
            });
        }
        let server = config.role == Role::Server;
        let timeout = config.handshake_timeout;
        let mut handle = ffi::SessionHandle::new_datagram(server)?;
        handle.set_mtu(c_uint::from(dtls.mtu));
        if let (true, Some(cookie)) = (server, dtls.cookie) {
            handle.set_prestate(cookie.prestate);
        }
        let mut session = Self::configure(handle, config, credentials)?;
        // `gnutls_handshake_set_timeout` in `configure` sets the DTLS total timeout too, and
        // GnuTLS 3.7.9 fails the first DTLS handshake step at once with its indefinite value,
        // so that is replaced by the largest total this module uses.
        let total = timeout.map_or(MAX_TOTAL_TIMEOUT_MS, |limit| {
            u32::try_from(limit.as_millis())
                .map_or(MAX_TOTAL_TIMEOUT_MS, |ms| ms.clamp(1, MAX_TOTAL_TIMEOUT_MS))
        });
        session
            .handle
            .set_dtls_timeouts(RETRANSMIT_TIMEOUT_MS, total);
        debug!(role = ?session.role(), mtu = dtls.mtu, "dtls session created");
        Ok(session)
    }

    /// Returns whether this is a DTLS session.
    pub fn is_datagram(&self) -> bool {
        self.handle.is_datagram()
    }

    /// Queues one datagram received from the DTLS peer, cut to its well-formed records
    /// (`well_formed_records`). A datagram without one is dropped here, because GnuTLS
    /// 3.7.9 loses the next datagram after a zero-length record or a record that a datagram
    /// cuts short, and ends the session on an empty datagram.
    pub fn feed_datagram(&mut self, datagram: &[u8]) {
        let records = well_formed_records(datagram);
        if records.is_empty() {
            trace!(
                len = datagram.len(),
                "datagram without a whole DTLS record dropped"
            );
            return;
        }
        if records.len() < datagram.len() {
            trace!(
                len = datagram.len(),
                kept = records.len(),
                "bytes after the last whole DTLS record dropped"
            );
        }
        self.handle.feed_datagram(records);
    }

    /// Returns the number of fed datagrams GnuTLS has not read yet.
    pub fn buffered_datagrams(&self) -> usize {
        self.handle.inbound_datagrams()
    }

    /// Takes the next datagram to send to the DTLS peer, oldest first.
    pub fn next_datagram(&mut self) -> Option<Vec<u8>> {
        self.handle.pop_outbound_datagram()
    }

    /// Returns the number of datagrams waiting to be sent.
    pub fn pending_datagrams(&self) -> usize {
        self.handle.outbound_datagrams()
    }

    /// Returns the time until [`Session::handshake`] must run again to retransmit the last
    /// flight (`gnutls_dtls_get_timeout`), or `None` once the handshake is done.
    pub fn retransmit_timeout(&self) -> Option<Duration> {
        if self.is_handshake_done() {
            return None;
        }
        Some(Duration::from_millis(u64::from(
            self.handle.dtls_timeout_ms(),
        )))
    }

    /// Returns the largest plaintext one DTLS record carries under the path MTU
    /// (`gnutls_dtls_get_data_mtu`), which depends on the negotiated cipher suite once the
    /// handshake is done.
    pub fn max_datagram_plaintext(&self) -> usize {
        self.handle.data_mtu() as usize
    }

    /// Encrypts `datagram` into one DTLS record, queued as one datagram to send.
    ///
    /// # Errors
    /// [`TlsError::DatagramTooLarge`] when `datagram` exceeds
    /// [`Session::max_datagram_plaintext`] (nothing is sent),
    /// [`TlsError::HandshakeNotDone`] before the handshake completes, or the GnuTLS error.
    pub fn send_datagram(&mut self, datagram: &[u8]) -> Result<(), TlsError> {
        if !self.is_handshake_done() {
            return Err(TlsError::HandshakeNotDone {
                operation: "send_datagram",
            });
        }
        let max = self.max_datagram_plaintext();
        if datagram.len() > max {
            return Err(TlsError::DatagramTooLarge {
                len: datagram.len(),
                max,
            });
        }
        let ret = self.handle.record_send(datagram);
        if ret >= 0 {
            trace!(len = datagram.len(), "dtls record sent");
            return Ok(());
        }
        let code = i32::try_from(ret).unwrap_or(sys::GNUTLS_E_INTERNAL_ERROR);
        if code == sys::GNUTLS_E_LARGE_PACKET {
            return Err(TlsError::DatagramTooLarge {
                len: datagram.len(),
                max,
            });
        }
        Err(TlsError::from_peer_exchange(
            "gnutls_record_send",
            code,
            self.handle.last_alert(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::tests::{anonymous_client, fixture};
    use crate::tls::{HandshakeStatus, ReadOutcome};

    const MTU: u16 = 1200;

    fn move_datagrams(from: &mut Session, to: &mut Session) -> usize {
        let mut moved = 0;
        while let Some(datagram) = from.next_datagram() {
            assert!(datagram.len() <= usize::from(MTU), "datagram over the MTU");
            to.feed_datagram(&datagram);
            moved += 1;
        }
        moved
    }

    /// Runs a client and a server handshake against each other through the cookie exchange.
    fn connected_pair() -> (Session, Session) {
        let server_credentials = fixture().ecdsa_server.credentials(&fixture().ca_pem);
        let client_credentials = anonymous_client();
        let mut client_config = SessionConfig::new(Role::Client);
        client_config.sni = Some("ecdsa.example".to_owned());
        let mut client =
            Session::new_dtls(client_config, &client_credentials, DtlsConfig::new(MTU)).unwrap();
        let key = CookieKey::generate().unwrap();
        let address = b"127.0.0.1:4433";

        assert_eq!(client.handshake().unwrap(), HandshakeStatus::WantRead);
        let hello = client.next_datagram().unwrap();
        let HelloCookie::Challenge(request) = key.check_hello(address, &hello).unwrap() else {
            panic!("a ClientHello without cookie was not challenged");
        };
        client.feed_datagram(&request);
        assert_eq!(client.handshake().unwrap(), HandshakeStatus::WantRead);
        let hello = client.next_datagram().unwrap();
        let HelloCookie::Verified(state) = key.check_hello(address, &hello).unwrap() else {
            panic!("a ClientHello with its cookie was not verified");
        };

        let mut server_config = SessionConfig::new(Role::Server);
        server_config.client_cert = crate::tls::ClientCertificate::Ignore;
        let mut dtls = DtlsConfig::new(MTU);
        dtls.cookie = Some(state);
        let mut server = Session::new_dtls(server_config, &server_credentials, dtls).unwrap();
        server.feed_datagram(&hello);
        for _ in 0..20 {
            let server_done = server.handshake().unwrap() == HandshakeStatus::Done;
            move_datagrams(&mut server, &mut client);
            let client_done = client.handshake().unwrap() == HandshakeStatus::Done;
            move_datagrams(&mut client, &mut server);
            if server_done && client_done {
                return (client, server);
            }
        }
        panic!("dtls handshake did not complete in 20 rounds");
    }

    #[test]
    fn dtls_pair_preserves_datagram_boundaries() {
        let (mut client, mut server) = connected_pair();
        assert!(client.is_datagram());
        assert_eq!(
            client.protocol_version(),
            Some(crate::tls::ProtocolVersion::Dtls12)
        );
        let max = client.max_datagram_plaintext();
        assert!(max > 0 && max < usize::from(MTU), "data MTU {max}");
        for len in [1, 2, 100, max - 1, max] {
            client.send_datagram(&vec![0x5a; len]).unwrap();
        }
        assert_eq!(move_datagrams(&mut client, &mut server), 5);
        let mut buf = vec![0u8; 2048];
        for len in [1, 2, 100, max - 1, max] {
            assert_eq!(
                server.read_plaintext(&mut buf).unwrap(),
                ReadOutcome::Data(len)
            );
        }
        assert_eq!(
            server.read_plaintext(&mut buf).unwrap(),
            ReadOutcome::WantRead
        );
    }

    #[test]
    fn dtls_rejects_datagram_over_data_mtu() {
        let (mut client, _server) = connected_pair();
        let max = client.max_datagram_plaintext();
        let error = client.send_datagram(&vec![1; max + 1]).unwrap_err();
        assert!(
            matches!(error, TlsError::DatagramTooLarge { len, max: m } if len == max + 1 && m == max),
            "{error}"
        );
        assert!(!error.is_fatal());
        assert_eq!(client.pending_datagrams(), 0);
    }

    #[test]
    fn dtls_replayed_record_is_discarded() {
        let (mut client, mut server) = connected_pair();
        client.send_datagram(b"once").unwrap();
        let record = client.next_datagram().unwrap();
        server.feed_datagram(&record);
        server.feed_datagram(&record);
        let mut buf = [0u8; 64];
        assert_eq!(
            server.read_plaintext(&mut buf).unwrap(),
            ReadOutcome::Data(4)
        );
        assert_eq!(
            server.read_plaintext(&mut buf).unwrap(),
            ReadOutcome::WantRead
        );
    }

    /// Datagrams that carry no valid record of an established session, in the order of
    /// [`dtls_garbage_datagrams_are_discarded`]'s messages.
    fn garbage_datagrams() -> Vec<(&'static str, Vec<u8>)> {
        let record = |content_type: u8, epoch: u8, length: u16, body: &[u8]| {
            let mut datagram = vec![content_type, 0xfe, 0xfd, 0, epoch, 0, 0, 0, 0, 0, 99];
            datagram.extend_from_slice(&length.to_be_bytes());
            datagram.extend_from_slice(body);
            datagram
        };
        vec![
            ("empty", Vec::new()),
            ("one byte", vec![23]),
            (
                "a header cut to 12 bytes",
                record(23, 1, 40, &[])[..12].to_vec(),
            ),
            ("random bytes", vec![0x5a; 300]),
            ("an unknown content type", record(99, 1, 2, &[1, 2])),
            (
                "application data that fails to decrypt",
                record(23, 1, 40, &[0xa5; 40]),
            ),
            (
                "a handshake record of epoch 0",
                record(22, 0, 4, &[20, 0, 0, 0]),
            ),
            (
                "a length past the datagram's end",
                record(23, 1, 0x4000, &[7; 16]),
            ),
            ("a zero-length record", record(23, 1, 0, &[])),
        ]
    }

    #[test]
    fn dtls_garbage_datagrams_are_discarded() {
        let (mut client, mut server) = connected_pair();
        let mut buf = [0u8; 64];
        for (what, datagram) in garbage_datagrams() {
            server.feed_datagram(&datagram);
            assert_eq!(
                server.read_plaintext(&mut buf).unwrap(),
                ReadOutcome::WantRead,
                "reading after {what}"
            );
            client.send_datagram(b"after").unwrap();
            move_datagrams(&mut client, &mut server);
            assert_eq!(
                server.read_plaintext(&mut buf).unwrap(),
                ReadOutcome::Data(5),
                "the record after {what}"
            );
        }
    }

    #[test]
    fn well_formed_records_cut_trailing_bytes() {
        let (mut client, _server) = connected_pair();
        client.send_datagram(b"one").unwrap();
        let record = client.next_datagram().unwrap();
        let mut two = record.clone();
        two.extend_from_slice(&record);
        assert_eq!(well_formed_records(&two), &two[..]);

        let mut trailing = record.clone();
        trailing.extend_from_slice(&record[..DTLS_RECORD_HEADER + 1]);
        assert_eq!(well_formed_records(&trailing), &record[..]);
        assert_eq!(
            well_formed_records(&record[..record.len() - 1]),
            &[] as &[u8]
        );
    }

    #[test]
    fn cookie_of_other_address_is_challenged() {
        let credentials = anonymous_client();
        let mut client = Session::new_dtls(
            SessionConfig::new(Role::Client),
            &credentials,
            DtlsConfig::new(MTU),
        )
        .unwrap();
        let key = CookieKey::generate().unwrap();
        client.handshake().unwrap();
        let hello = client.next_datagram().unwrap();
        let HelloCookie::Challenge(request) = key.check_hello(b"a", &hello).unwrap() else {
            panic!("not challenged");
        };
        client.feed_datagram(&request);
        client.handshake().unwrap();
        let hello = client.next_datagram().unwrap();
        assert!(matches!(
            key.check_hello(b"b", &hello).unwrap(),
            HelloCookie::Challenge(_)
        ));
        assert!(matches!(
            key.check_hello(b"a", b"\x17garbage garbage").unwrap(),
            HelloCookie::NotClientHello
        ));
    }

    #[test]
    fn handshake_retransmits_after_timeout() {
        let credentials = anonymous_client();
        let mut client = Session::new_dtls(
            SessionConfig::new(Role::Client),
            &credentials,
            DtlsConfig::new(MTU),
        )
        .unwrap();
        client.handshake().unwrap();
        let first = client.next_datagram().unwrap();
        let wait = client.retransmit_timeout().unwrap();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        std::thread::sleep(wait + Duration::from_millis(50));
        client.handshake().unwrap();
        let again = client.next_datagram().expect("no retransmission");
        assert_eq!(again.len(), first.len());
    }
}
