//! The sans-IO TLS session: configuration, handshake and record driving over in-memory buffers,
//! and what the handshake negotiated (version, suite, peer chain, SNI, exporters).

use std::ffi::{CString, c_uint};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tlspool_gnutls_sys as sys;
use tracing::{debug, trace};

use super::credentials::{Credentials, TrustAnchors};
use super::error::{TlsError, VerifyError};
use super::ffi;
use super::rawpk::CertificateTypes;

/// Largest plaintext [`Session::write_plaintext`] puts in one record (TLS's 2^14 bytes).
pub const MAX_RECORD_PLAINTEXT: usize = 16 * 1024;

/// GnuTLS's own handshake timeout (`GNUTLS_DEFAULT_HANDSHAKE_TIMEOUT`, 40 s in GnuTLS 3.7), for
/// a STARTTLS request whose timeout is 0.
pub const GNUTLS_DEFAULT_HANDSHAKE_TIMEOUT: u32 = u32::MAX;

/// `GNUTLS_INDEFINITE_TIMEOUT`: no handshake timeout.
const GNUTLS_INDEFINITE_TIMEOUT: c_uint = u32::MAX - 1;

/// The local end of the TLS connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// This side sends the ClientHello.
    Client,
    /// This side receives the ClientHello and replies.
    Server,
}

/// Client certificate policy of a server (the TLS CertificateRequest message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientCertificate {
    /// No certificate request is sent.
    Ignore,
    /// A certificate is requested, but the handshake continues without one.
    Request,
    /// A certificate is requested and the handshake fails without one.
    #[default]
    Require,
}

/// Server-side choice of credentials: receives the DNS name of the client's SNI (if any) and
/// returns the credentials to present, or `None` to fail the handshake.
pub type CredentialSelector = Arc<dyn Fn(Option<&str>) -> Option<Credentials> + Send + Sync>;

/// Settings of one session.
#[derive(Clone)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Client or server.
    pub role: Role,
    /// GnuTLS priority string, such as `NORMAL` or `NORMAL:-VERS-ALL:+VERS-TLS1.3`.
    pub priority: String,
    /// DNS name a client sends in the SNI extension; ignored by a server.
    pub sni: Option<String>,
    /// Whether a server requests a client certificate; ignored by a client.
    pub client_cert: ClientCertificate,
    /// Handshake timeout, enforced by GnuTLS on the next [`Session::handshake`] call after it
    /// passes; `None` disables it.
    pub handshake_timeout: Option<Duration>,
    /// Server only: picks credentials by the client's SNI once the ClientHello is parsed. The
    /// credentials given to [`Session::new`] apply until then, and throughout without a selector.
    pub credential_selector: Option<CredentialSelector>,
    /// Certificate types offered and accepted, in order of preference. Any mode but
    /// [`CertificateTypes::X509Only`] appends its
    /// [`priority_suffix`](CertificateTypes::priority_suffix) to `priority`.
    pub certificate_types: CertificateTypes,
}

impl SessionConfig {
    /// Creates a configuration for `role` with the `NORMAL` priority, no SNI, a required client
    /// certificate and no timeout.
    pub fn new(role: Role) -> Self {
        Self {
            role,
            priority: "NORMAL".to_owned(),
            sni: None,
            client_cert: ClientCertificate::default(),
            handshake_timeout: None,
            credential_selector: None,
            certificate_types: CertificateTypes::default(),
        }
    }
}

impl fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionConfig")
            .field("role", &self.role)
            .field("priority", &self.priority)
            .field("sni", &self.sni)
            .field("client_cert", &self.client_cert)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("credential_selector", &self.credential_selector.is_some())
            .field("certificate_types", &self.certificate_types)
            .finish()
    }
}

/// Progress of [`Session::handshake`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeStatus {
    /// The handshake is complete.
    Done,
    /// More ciphertext from the peer is needed; send the pending ciphertext first.
    WantRead,
}

/// Result of [`Session::read_plaintext`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// This many plaintext bytes were written to the buffer.
    Data(usize),
    /// No complete record is buffered; feed more ciphertext.
    WantRead,
    /// The peer sent close_notify: no more data will arrive.
    CloseNotify,
}

/// A negotiated protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolVersion {
    /// TLS 1.0.
    Tls10,
    /// TLS 1.1.
    Tls11,
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
    /// DTLS 1.0.
    Dtls10,
    /// DTLS 1.2.
    Dtls12,
    /// A `gnutls_protocol_t` value this crate does not name.
    Unknown(u32),
}

impl ProtocolVersion {
    fn from_gnutls(value: sys::gnutls_protocol_t) -> Self {
        match value {
            sys::GNUTLS_TLS1_0 => Self::Tls10,
            sys::GNUTLS_TLS1_1 => Self::Tls11,
            sys::GNUTLS_TLS1_2 => Self::Tls12,
            sys::GNUTLS_TLS1_3 => Self::Tls13,
            sys::GNUTLS_DTLS1_0 => Self::Dtls10,
            sys::GNUTLS_DTLS1_2 => Self::Dtls12,
            other => Self::Unknown(other),
        }
    }
}

/// A negotiated certificate type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateType {
    /// X.509 certificates.
    X509,
    /// Raw public keys (RFC 7250).
    RawPublicKey,
    /// OpenPGP keys (RFC 6091).
    OpenPgp,
    /// A `gnutls_certificate_type_t` value this crate does not name.
    Unknown(u32),
}

impl CertificateType {
    fn from_gnutls(value: sys::gnutls_certificate_type_t) -> Self {
        match value {
            sys::GNUTLS_CRT_X509 => Self::X509,
            sys::GNUTLS_CRT_RAWPK => Self::RawPublicKey,
            sys::GNUTLS_CRT_OPENPGP => Self::OpenPgp,
            other => Self::Unknown(other),
        }
    }
}

/// Channel binding types (RFC 5929, RFC 9266).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelBinding {
    /// `tls-unique` (TLS 1.2 and earlier).
    TlsUnique,
    /// `tls-server-end-point`: a hash of the server certificate.
    TlsServerEndPoint,
    /// `tls-exporter` (RFC 9266).
    TlsExporter,
}

/// A TLS session that owns its GnuTLS handles and exchanges ciphertext through memory buffers.
///
/// The caller moves bytes between the socket and the session: [`feed_ciphertext`] what arrived,
/// write out [`pending_ciphertext`] and [`consume`] what was written.
///
/// [`feed_ciphertext`]: Self::feed_ciphertext
/// [`pending_ciphertext`]: Self::pending_ciphertext
/// [`consume`]: Self::consume
pub struct Session {
    pub(super) handle: ffi::SessionHandle,
    role: Role,
    handshake_done: bool,
    /// The certificate types of the configuration, kept for priority strings set later.
    pub(super) certificate_types: CertificateTypes,
}

/// Checks that GnuTLS accepts `priority` as a priority string, so a configuration error shows
/// when the daemon starts rather than at its first handshake.
///
/// # Errors
/// [`TlsError::InvalidPriority`] with the position GnuTLS reports, or the errors of
/// [`Session::new`].
pub fn check_priority(priority: &str) -> Result<(), TlsError> {
    let mut config = SessionConfig::new(Role::Client);
    config.priority = priority.to_owned();
    Session::new(config, &Credentials::anonymous_client()?).map(drop)
}

impl Session {
    /// Creates a session with `credentials` (the server's default certificate, or a client's
    /// certificate and trust anchors).
    ///
    /// # Errors
    /// [`TlsError::InvalidPriority`] for a priority string GnuTLS rejects,
    /// [`TlsError::InteriorNul`] for a string with a NUL byte, or [`TlsError::Library`].
    pub fn new(config: SessionConfig, credentials: &Credentials) -> Result<Self, TlsError> {
        let server = config.role == Role::Server;
        let handle = ffi::SessionHandle::new(server, config.certificate_types.init_flags())?;
        Self::configure(handle, config, credentials)
    }

    /// Applies `config` and `credentials` to a fresh TLS or DTLS handle.
    pub(super) fn configure(
        mut handle: ffi::SessionHandle,
        config: SessionConfig,
        credentials: &Credentials,
    ) -> Result<Self, TlsError> {
        let priority_text = format!(
            "{}{}",
            config.priority,
            config.certificate_types.priority_suffix()
        );
        let priority = CString::new(priority_text.as_str()).map_err(|_| TlsError::InteriorNul {
            field: "priority string",
        })?;
        handle
            .set_priority(&priority)
            .map_err(|(code, position)| TlsError::InvalidPriority {
                priority: priority_text.clone(),
                position,
                message: ffi::strerror(code),
            })?;
        handle.set_credentials(Arc::clone(&credentials.inner))?;
        handle.set_handshake_timeout(timeout_ms(config.handshake_timeout));

        match config.role {
            Role::Client => {
                if let Some(name) = config.sni.as_deref().filter(|n| !n.is_empty()) {
                    handle.set_server_name(name)?;
                }
            }
            Role::Server => {
                handle.set_certificate_request(match config.client_cert {
                    ClientCertificate::Ignore => sys::GNUTLS_CERT_IGNORE,
                    ClientCertificate::Request => sys::GNUTLS_CERT_REQUEST,
                    ClientCertificate::Require => sys::GNUTLS_CERT_REQUIRE,
                });
                if let Some(selector) = config.credential_selector {
                    handle.set_hello_hook(Box::new(move |name| {
                        selector(name).map(|c| Arc::clone(&c.inner))
                    }));
                }
            }
        }

        Ok(Self {
            handle,
            role: config.role,
            handshake_done: false,
            certificate_types: config.certificate_types,
        })
    }

    /// Returns the local role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Appends ciphertext received from the peer to the inbound buffer.
    pub fn feed_ciphertext(&mut self, bytes: &[u8]) {
        self.handle.feed(bytes);
    }

    /// Records that the peer's side of the transport reached end of file. Reads that run out of
    /// buffered ciphertext then fail with [`TlsError::PrematureTermination`] instead of
    /// returning [`ReadOutcome::WantRead`].
    pub fn feed_eof(&mut self) {
        self.handle.feed_eof();
    }

    /// Returns the number of fed ciphertext bytes GnuTLS has not consumed yet.
    pub fn buffered_ciphertext(&self) -> usize {
        self.handle.inbound_len()
    }

    /// Returns the ciphertext waiting to be written to the socket.
    pub fn pending_ciphertext(&self) -> &[u8] {
        self.handle.outbound()
    }

    /// Drops `n` bytes written to the socket from the front of [`Self::pending_ciphertext`].
    pub fn consume(&mut self, n: usize) {
        self.handle.consume_outbound(n);
    }

    /// Takes all ciphertext waiting to be written to the socket.
    pub fn take_ciphertext(&mut self) -> Vec<u8> {
        self.handle.take_outbound()
    }

    /// Advances the handshake with the ciphertext fed so far.
    ///
    /// After every call, write out [`Self::pending_ciphertext`], whatever the result: it may
    /// hold handshake messages or the alert for a failure.
    ///
    /// # Errors
    /// A peer-caused [`TlsError`] variant when the handshake fails, or
    /// [`TlsError::NoCredentialsForName`] when the server's selector rejects the client's SNI.
    pub fn handshake(&mut self) -> Result<HandshakeStatus, TlsError> {
        if self.handshake_done {
            return Ok(HandshakeStatus::Done);
        }
        let ret = self.handle.handshake();
        if ret == 0 {
            self.handshake_done = true;
            debug!(
                role = ?self.role,
                version = ?self.protocol_version(),
                cipher_suite = self.cipher_suite().as_deref().unwrap_or("unknown"),
                "tls handshake complete"
            );
            return Ok(HandshakeStatus::Done);
        }
        if ret == sys::GNUTLS_E_AGAIN || ret == sys::GNUTLS_E_INTERRUPTED {
            return Ok(HandshakeStatus::WantRead);
        }

        // Tell the peer why, unless it was the peer that ended the handshake with an alert.
        if ffi::error_is_fatal(ret) && ret != sys::GNUTLS_E_FATAL_ALERT_RECEIVED {
            self.handle.send_appropriate_alert(ret);
        }
        let error = if self.handle.hello_rejected() {
            TlsError::NoCredentialsForName {
                server_name: self.handle.received_server_name(),
            }
        } else {
            TlsError::from_peer_exchange("gnutls_handshake", ret, self.handle.last_alert())
        };
        debug!(role = ?self.role, %error, "tls handshake failed");
        Err(error)
    }

    /// Returns whether the handshake has completed.
    pub fn is_handshake_done(&self) -> bool {
        self.handshake_done
    }

    /// Encrypts up to [`MAX_RECORD_PLAINTEXT`] bytes of `data` into one record and returns how
    /// many bytes it took; call again with the rest.
    ///
    /// # Errors
    /// [`TlsError::HandshakeNotDone`] before the handshake completes, or the GnuTLS error.
    pub fn write_plaintext(&mut self, data: &[u8]) -> Result<usize, TlsError> {
        self.require_handshake("write_plaintext")?;
        if data.is_empty() {
            return Ok(0);
        }
        let chunk = &data[..data.len().min(MAX_RECORD_PLAINTEXT)];
        let ret = self.handle.record_send(chunk);
        trace!(len = chunk.len(), ret, "tls record sent");
        if let Ok(sent) = usize::try_from(ret) {
            return Ok(sent);
        }
        let code = i32::try_from(ret).unwrap_or(sys::GNUTLS_E_INTERNAL_ERROR);
        Err(TlsError::from_peer_exchange(
            "gnutls_record_send",
            code,
            self.handle.last_alert(),
        ))
    }

    /// Decrypts the next plaintext into `buf`, from data GnuTLS has already decrypted
    /// (`gnutls_record_check_pending`) or from fed ciphertext.
    ///
    /// Call until it returns [`ReadOutcome::WantRead`]. An empty `buf` returns `Data(0)`.
    ///
    /// # Errors
    /// [`TlsError::HandshakeNotDone`], [`TlsError::AlertReceived`],
    /// [`TlsError::PrematureTermination`],
    /// [`TlsError::RenegotiationRequested`] (not fatal) or another peer-caused error.
    pub fn read_plaintext(&mut self, buf: &mut [u8]) -> Result<ReadOutcome, TlsError> {
        self.require_handshake("read_plaintext")?;
        if buf.is_empty() {
            return Ok(ReadOutcome::Data(0));
        }
        // GnuTLS 3.7.9 returns GNUTLS_E_AGAIN after a TLS 1.3 post-handshake message (such as
        // a NewSessionTicket) even when more records are buffered, which stalled relays to
        // gnutls-serv and openssl s_server. So it is called again while it consumes input.
        let mut buffered = self.handle.inbound_len();
        let mut ret = self.handle.record_recv(buf);
        while (ret == sys::GNUTLS_E_AGAIN as isize || ret == sys::GNUTLS_E_INTERRUPTED as isize)
            && self.handle.inbound_len() < buffered
        {
            buffered = self.handle.inbound_len();
            ret = self.handle.record_recv(buf);
        }
        if ret > 0 {
            trace!(len = ret, "tls record received");
            return Ok(ReadOutcome::Data(ret as usize));
        }
        if ret == 0 {
            debug!(role = ?self.role, "peer sent close_notify");
            return Ok(ReadOutcome::CloseNotify);
        }
        let code = i32::try_from(ret).unwrap_or(sys::GNUTLS_E_INTERNAL_ERROR);
        if code == sys::GNUTLS_E_AGAIN || code == sys::GNUTLS_E_INTERRUPTED {
            return Ok(ReadOutcome::WantRead);
        }
        Err(TlsError::from_peer_exchange(
            "gnutls_record_recv",
            code,
            self.handle.last_alert(),
        ))
    }

    /// Returns the number of decrypted bytes inside GnuTLS that [`Self::read_plaintext`]
    /// returns without more ciphertext.
    pub fn pending_plaintext(&self) -> usize {
        self.handle.record_pending()
    }

    /// Enables TLS 1.3 session tickets on a server, encrypted under `key`.
    #[cfg(test)]
    pub(crate) fn enable_session_tickets(&mut self, key: &[u8; 64]) -> Result<(), TlsError> {
        self.handle.enable_session_tickets(key)
    }

    /// Queues `count` more NewSessionTicket messages from a server whose handshake is done.
    #[cfg(test)]
    pub(crate) fn send_session_tickets(&mut self, count: u32) -> Result<(), TlsError> {
        self.handle.send_session_tickets(count)
    }

    /// Queues close_notify and shuts down the write direction; reading continues to work.
    ///
    /// # Errors
    /// [`TlsError::Library`] when GnuTLS cannot send the alert.
    pub fn send_close_notify(&mut self) -> Result<(), TlsError> {
        let ret = self.handle.bye_write();
        if ret < 0 {
            return Err(TlsError::library("gnutls_bye", ret));
        }
        Ok(())
    }

    /// Returns the negotiated protocol version, once the handshake is done.
    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.handshake_done
            .then(|| ProtocolVersion::from_gnutls(self.handle.protocol()))
    }

    /// Returns the negotiated cipher suite name, such as `TLS_AES_256_GCM_SHA384`.
    pub fn cipher_suite(&self) -> Option<String> {
        self.handshake_done
            .then(|| self.handle.ciphersuite())
            .flatten()
    }

    /// Returns the certificate type of the peer's credentials (`gnutls_certificate_type_get2`).
    pub fn peer_certificate_type(&self) -> CertificateType {
        CertificateType::from_gnutls(self.handle.certificate_type(sys::GNUTLS_CTYPE_PEERS))
    }

    /// Returns the certificate type of this side's credentials.
    pub fn local_certificate_type(&self) -> CertificateType {
        CertificateType::from_gnutls(self.handle.certificate_type(sys::GNUTLS_CTYPE_OURS))
    }

    /// Returns the certificate chain the peer sent, leaf first, as DER (empty when it sent
    /// none).
    pub fn peer_certificates(&self) -> Vec<Vec<u8>> {
        self.handle.peer_certificates()
    }

    /// Returns the DER SubjectPublicKeyInfo the peer sent as its RFC 7250 raw public key, or
    /// `None` when the peer's certificate type is not a raw public key or it sent none.
    pub fn peer_raw_public_key(&self) -> Option<Vec<u8>> {
        if self.peer_certificate_type() != CertificateType::RawPublicKey {
            return None;
        }
        self.peer_certificates().into_iter().next()
    }

    /// Returns the certificate this side sent in the handshake as DER, or `None` when it sent
    /// none (an anonymous client, or a raw public key).
    pub fn local_certificate(&self) -> Option<Vec<u8>> {
        self.handle.local_certificate()
    }

    /// Returns the DER OCSP response the peer stapled for its end certificate (RFC 6066
    /// `status_request`), or `None` when it stapled none.
    pub fn stapled_ocsp_response(&self) -> Option<Vec<u8>> {
        self.handle.stapled_ocsp_response()
    }

    /// Returns, on the server side, the first DNS name of the client's SNI extension.
    pub fn server_name(&self) -> Option<String> {
        match self.role {
            Role::Server => self.handle.received_server_name(),
            Role::Client => None,
        }
    }

    /// Fills `out` with keying material from the RFC 5705 exporter.
    ///
    /// # Errors
    /// [`TlsError::Library`] before the handshake or for a label GnuTLS rejects.
    pub fn export_keying_material(
        &self,
        label: &str,
        context: Option<&[u8]>,
        out: &mut [u8],
    ) -> Result<(), TlsError> {
        let ret = self
            .handle
            .export_keying_material(label.as_bytes(), context, out);
        if ret < 0 {
            return Err(TlsError::library("gnutls_prf_rfc5705", ret));
        }
        Ok(())
    }

    /// Returns channel binding data of `kind`.
    ///
    /// # Errors
    /// [`TlsError::Library`] when the binding is unavailable (for example `tls-unique` under
    /// TLS 1.3).
    pub fn channel_binding(&self, kind: ChannelBinding) -> Result<Vec<u8>, TlsError> {
        let kind = match kind {
            ChannelBinding::TlsUnique => sys::GNUTLS_CB_TLS_UNIQUE,
            ChannelBinding::TlsServerEndPoint => sys::GNUTLS_CB_TLS_SERVER_END_POINT,
            ChannelBinding::TlsExporter => sys::GNUTLS_CB_TLS_EXPORTER,
        };
        self.handle
            .channel_binding(kind)
            .map_err(|code| TlsError::library("gnutls_session_channel_binding", code))
    }

    /// Verifies the peer's X.509 chain against `anchors`, and its name when `expected_name` is
    /// given: an address with `@` is matched as an email address, anything else as a DNS name.
    /// The leaf must allow TLS server use when this side is the client, and TLS client use when
    /// it is the server.
    ///
    /// # Errors
    /// The precise [`VerifyError`] reason; with several faults the name mismatch comes first,
    /// then revocation, unknown issuer, issuer not a CA, expiry, purpose and signature.
    pub fn verify_peer_x509(
        &self,
        anchors: &TrustAnchors,
        expected_name: Option<&str>,
    ) -> Result<(), VerifyError> {
        if self.peer_certificate_type() != CertificateType::X509 {
            return Err(VerifyError::NotX509);
        }
        let chain = self.peer_certificates();
        if chain.is_empty() {
            return Err(VerifyError::NoPeerCertificate);
        }
        let purpose = match self.role {
            Role::Client => c"1.3.6.1.5.5.7.3.1",
            Role::Server => c"1.3.6.1.5.5.7.3.2",
        };
        let status = anchors.list.verify(&chain, expected_name, purpose)?;
        match VerifyError::from_status(status, expected_name) {
            None => Ok(()),
            Some(reason) => {
                debug!(role = ?self.role, status, %reason, "peer certificate rejected");
                Err(reason)
            }
        }
    }
}

impl Session {
    fn require_handshake(&self, operation: &'static str) -> Result<(), TlsError> {
        if self.handshake_done {
            Ok(())
        } else {
            Err(TlsError::HandshakeNotDone { operation })
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.role)
            .field("handshake_done", &self.handshake_done)
            .finish_non_exhaustive()
    }
}

/// Converts the configured timeout into GnuTLS milliseconds.
fn timeout_ms(timeout: Option<Duration>) -> c_uint {
    match timeout {
        None => GNUTLS_INDEFINITE_TIMEOUT,
        // Clamp below GnuTLS's two reserved values.
        Some(t) => u32::try_from(t.as_millis()).map_or(u32::MAX - 2, |ms| ms.min(u32::MAX - 2)),
    }
}
