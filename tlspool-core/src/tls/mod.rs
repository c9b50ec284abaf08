//! The TLS session engine: GnuTLS sessions driven without I/O.
//!
//! # Sans-IO
//!
//! A [`Session`] never touches a socket. Its GnuTLS push and pull functions move bytes to and
//! from two buffers the session owns: [`Session::feed_ciphertext`] appends what the caller read
//! from the network, and [`Session::pending_ciphertext`] (with [`Session::consume`]) or
//! [`Session::take_ciphertext`] hands back what GnuTLS wants sent. When the inbound buffer runs
//! dry, the pull function reports `EAGAIN`, so [`Session::handshake`] returns
//! [`HandshakeStatus::WantRead`] and [`Session::read_plaintext`] returns
//! [`ReadOutcome::WantRead`]. The caller (the daemon's relay) waits for socket readiness on its
//! own terms and calls again; after each call it writes out the pending ciphertext.
//!
//! ```no_run
//! use tlspool_core::tls::{Credentials, HandshakeStatus, Role, Session, SessionConfig};
//!
//! # fn main() -> Result<(), tlspool_core::tls::TlsError> {
//! let mut config = SessionConfig::new(Role::Client);
//! config.sni = Some("example.com".to_owned());
//! let mut session = Session::new(config, &Credentials::anonymous_client()?)?;
//! while session.handshake()? == HandshakeStatus::WantRead {
//!     let to_send = session.take_ciphertext();
//!     // Write `to_send` to the socket, read what arrives, then:
//!     # let received: Vec<u8> = to_send;
//!     session.feed_ciphertext(&received);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Ownership
//!
//! A [`Session`] owns its `gnutls_session_t` and the buffers, and keeps an [`Arc`](std::sync::Arc) to every
//! [`Credentials`] it was given (at creation or by the server's [`CredentialSelector`]), so the
//! credentials outlive the session's `gnutls_deinit` in `Drop`. [`Credentials`] owns a
//! `gnutls_certificate_credentials_t` with the chain and private key handed to it;
//! [`TrustAnchors`] owns a `gnutls_x509_trust_list_t`. Every `unsafe` call sits in the private
//! `ffi` and `ffi_x509` modules.
//!
//! # Certificates
//!
//! [`CertificateBuilder`] issues X.509 certificates (a test CA, server and client
//! certificates, on-the-fly certificates) signed by a [`SigningKey`] on a token or in memory.
//!
//! # Known limitations
//!
//! - TLS 1.2 renegotiation runs only after a handshake with secure renegotiation and the
//!   extended master secret (see [`Session::start_renegotiation`]); a peer's request surfaces
//!   as [`TlsError::RenegotiationRequested`] for the caller to accept or reject. TLS 1.3 key
//!   updates requested by this side are not offered.
//! - The server's [`CredentialSelector`] runs synchronously inside the handshake, so it cannot
//!   wait for an application callback (the TLS Pool's LOCALID_CHECK).
//! - X.509 credentials and RFC 7250 raw public keys are set up (see [`CertificateTypes`]);
//!   RFC 6091 OpenPGP certificates are not. Anonymous Diffie-Hellman serves only as the
//!   privacy-mode precursor ([`Session::offer_anonymous_precursor`]). DTLS sessions are made
//!   by [`Session::new_dtls`].
//! - The handshake timeout is checked by GnuTLS when [`Session::handshake`] runs, so a caller
//!   that waits for the peer still needs its own timer.
//! - PKCS#11 modules and the PIN callback are process-wide, as GnuTLS keeps them.

mod certgen;
mod credentials;
mod dtls;
mod error;
#[allow(
    unsafe_code,
    reason = "the GnuTLS external-key FFI boundary; each block states its invariant"
)]
mod extkey;
#[allow(
    unsafe_code,
    reason = "the GnuTLS FFI boundary; each block states its invariant"
)]
mod ffi;
#[allow(
    unsafe_code,
    reason = "the GnuTLS X.509 writing FFI boundary; each block states its invariant"
)]
mod ffi_x509;
mod privacy;
#[allow(
    unsafe_code,
    reason = "the GnuTLS raw public key FFI boundary; each block states its invariant"
)]
mod rawpk;
mod renegotiate;
mod session;

pub use certgen::{
    Certificate, CertificateBuilder, ExtendedKeyUsage, Issuer, KeyType, KeyUsage, SigningKey,
};
pub use credentials::{
    Credentials, CredentialsBuilder, Encoding, PinCallback, PinRequest, PrivateKeySource,
    TrustAnchors, pkcs11_add_provider, set_pin_callback,
};
pub use dtls::{CookieKey, CookieState, DEFAULT_DTLS_MTU, DtlsConfig, HelloCookie, MIN_DTLS_MTU};
pub use error::{TlsError, VerifyError};
pub use extkey::{ExternalKey, ExternalKeyAlgorithm, ExternalSigner, SignInput};
pub use privacy::precursor_priority;
pub use rawpk::CertificateTypes;
pub use renegotiate::{PeerIdentity, RenegotiationSecurity, RenegotiationStatus};
pub use session::{
    CertificateType, ChannelBinding, ClientCertificate, CredentialSelector,
    GNUTLS_DEFAULT_HANDSHAKE_TIMEOUT, HandshakeStatus, MAX_RECORD_PLAINTEXT, ProtocolVersion,
    ReadOutcome, Role, Session, SessionConfig, check_priority,
};

#[cfg(test)]
pub(crate) mod tests;
