//! STARTTLS: the request a client builds, the exchange of callbacks with the daemon that both
//! client flavours drive, and the established connection they return.
//!
//! The flow follows the TLS Pool version 2 protocol. The app sends STARTTLS with the connected
//! ciphertext socket attached, and the daemon may then call back on the same request id:
//! `PIOC_STARTTLS_LOCALID_V2` when the request asked to check the local identity, and
//! `PIOC_PLAINTEXT_CONNECT_V2` for the plaintext descriptor. The final STARTTLS record carries
//! the identities that were used, and an ERROR record may end the request at any point.

mod exchange;
mod request;

pub(crate) use exchange::{Negotiation, Step};
pub use request::{
    DEFAULT_SERVICE, HandshakeTimeout, LocalIdCheck, LocalIdDecision, StartTlsBuilder,
    StartTlsRequest,
};

use std::fmt;

use tlspool_proto::{CtlKey, StartTlsFlags};

/// An established TLS session run by the daemon, as [`Client::starttls`](crate::Client::starttls)
/// and [`blocking::Client::starttls`](crate::blocking::Client::starttls) return it.
///
/// `P` is the plaintext socket: a tokio `UnixStream` for the asynchronous client and a
/// standard library `UnixStream` for the blocking one.
pub struct TlsConnection<P> {
    /// The plaintext side: bytes written here leave as TLS application data, and data from the
    /// peer arrives here. Shutting down its write side makes the daemon send close_notify.
    pub plaintext: P,
    /// The local identity the daemon used, or empty when the daemon reported none.
    pub local_id: String,
    /// The authenticated remote identity, or empty when the peer presented none.
    pub remote_id: String,
    /// The control key that names the session in later requests on the same connection.
    pub ctlkey: CtlKey,
    /// The flags as the daemon normalised them (roles possibly reduced, `FORK` cleared).
    pub flags: StartTlsFlags,
}

impl<P: fmt::Debug> fmt::Debug for TlsConnection<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The control key lets the controlling connection act on the session, so it stays out
        // of logs.
        f.debug_struct("TlsConnection")
            .field("plaintext", &self.plaintext)
            .field("local_id", &self.local_id)
            .field("remote_id", &self.remote_id)
            .field("ctlkey", &"<redacted>")
            .field("flags", &self.flags)
            .finish()
    }
}
