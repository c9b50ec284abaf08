//! Client library for the TLS Pool and the control tool `tlspoolctl`.
//!
//! A client has one connection to the daemon's UNIX socket and speaks the TLS Pool
//! version 2 protocol on it. Any number of requests may be outstanding at once: each gets a
//! request id unique among the outstanding ones, and a reader routes every record from the
//! daemon to the request it belongs to. Two flavours share that machinery:
//!
//! - [`Client`] is asynchronous and runs on tokio;
//! - [`blocking::Client`] blocks the calling thread and uses a reader thread.
//!
//! ```no_run
//! # async fn example() -> Result<(), tlspool_client::ClientError> {
//! let client = tlspool_client::Client::connect(None).await?;
//! let reply = client.ping().await?;
//! println!("{} offers {:?}", reply.producer, reply.facilities);
//! # Ok(())
//! # }
//! ```
//!
//! ```no_run
//! use std::path::Path;
//!
//! let client = tlspool_client::blocking::Client::connect(Some(Path::new("/run/tlspool.sock")))?;
//! let reply = client.ping()?;
//! println!("{} offers {:?}", reply.producer, reply.facilities);
//! # Ok::<(), tlspool_client::ClientError>(())
//! ```
//!
//! # STARTTLS
//!
//! `starttls()` hands a connected TCP socket to the daemon, which runs the TLS handshake with
//! keys it holds and returns the plaintext side as a UNIX socket. A [`StartTlsRequest`] names
//! the role and the identities; [`TlsConnection`] reports the identities the daemon used.
//!
//! ```no_run
//! use std::io::{Read as _, Write as _};
//! use std::net::TcpStream;
//!
//! use tlspool_client::{StartTlsRequest, blocking};
//!
//! let client = blocking::Client::connect(None)?;
//! let request = StartTlsRequest::client("peer.dev.example").service("generic").build()?;
//! let tcp = TcpStream::connect("127.0.0.1:4433").expect("connect to the server");
//! let mut connection = client.starttls(tcp, &request)?;
//! println!("{} talks to {}", connection.local_id, connection.remote_id);
//! connection.plaintext.write_all(b"hello\n").expect("send");
//! let mut reply = [0u8; 6];
//! connection.plaintext.read_exact(&mut reply).expect("receive");
//! # Ok::<(), tlspool_client::ClientError>(())
//! ```
//!
//! A server passes an accepted socket and may check the local identity the daemon proposes:
//!
//! ```no_run
//! # async fn example() -> Result<(), tlspool_client::ClientError> {
//! use tlspool_client::{Client, LocalIdDecision, StartTlsFlags, StartTlsRequest};
//! use tokio::io::AsyncWriteExt as _;
//!
//! let client = Client::connect(None).await?;
//! let request = StartTlsRequest::server("dev.example")
//!     .flags(StartTlsFlags::REQUEST_REMOTEID)
//!     .localid_check(|check| {
//!         if check.local_id.ends_with("dev.example") {
//!             LocalIdDecision::Accept
//!         } else {
//!             LocalIdDecision::Reject
//!         }
//!     })
//!     .build()?;
//! let listener = std::net::TcpListener::bind("127.0.0.1:4433").expect("bind");
//! let (tcp, _) = listener.accept().expect("accept");
//! let mut connection = client.starttls(tcp, &request).await?;
//! connection.plaintext.write_all(b"welcome\n").await.expect("send");
//! # Ok(())
//! # }
//! ```
//!
//! # Local identity selection
//!
//! A helper program chooses which local identity the daemon shows as a TLS client, for other
//! applications' handshakes: [`register_localid_select`] (or
//! [`blocking::register_localid_select`]) registers it on a connection of its own, and it
//! answers each inquiry with a [`LocalIdChoice`], which may also be stored in the disclose
//! database when the handshake succeeds.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use tlspool_client::{LidEntryFlags, LocalIdChoice, LocalIdQueryKind, blocking};
//!
//! let window = Duration::from_secs(30);
//! let flags = LidEntryFlags::WANT_DBENTRY;
//! let mut service = blocking::register_localid_select(None, flags, window)?;
//! loop {
//!     let query = service.next_query()?;
//!     match query.kind {
//!         LocalIdQueryKind::DatabaseEntry => service.acknowledge(&query)?,
//!         LocalIdQueryKind::Inquiry => {
//!             // Take the daemon's suggestion, the first identity the database lists.
//!             service.answer(&query, &LocalIdChoice::once(&query.local_id))?;
//!         }
//!     }
//! }
//! # Ok::<(), tlspool_client::ClientError>(())
//! ```
//!
//! # Socket location
//!
//! `connect(Some(path))` uses `path`. `connect(None)` uses the first `socket_name` line of the
//! configuration file named by `TLSPOOL_CONFIG_FILE`, or of `/etc/tlspool.conf` when that
//! variable is unset, and `/var/run/tlspool.sock` when there is no such line. A path longer
//! than the 107 bytes of `sun_path` is an error ([`ClientError::SocketPathTooLong`]).
//! [`resolve_socket_path`] performs this lookup, optionally with another configuration file.
//!
//! # Callbacks and disconnection
//!
//! A callback from the daemon (a record with a non-zero callback id) for a request that no
//! caller waits for is refused with ERROR `E_TLSPOOL_CLIENT_REFUSES_CALLBACK`. When the
//! connection closes, every waiting request fails with [`ClientError::Disconnected`]. A
//! client does not reconnect; connect again to continue.
//!
//! # Known limitations
//!
//! - PING and STARTTLS over TCP are implemented. UDP and SCTP sessions, renegotiation,
//!   CONTROL_DETACH/REATTACH, PRNG, INFO and the PINENTRY service are not yet.
//! - The configuration reader comes from `tlspool-core`, which also links GnuTLS and LMDB.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod blocking;
mod client;
mod control;
pub mod ctl;
mod error;
mod lidentry;
mod mux;
mod pinentry;
mod ping;
mod socket;
mod starttls;

pub use client::Client;
pub use control::{MAX_INFO_LEN, MAX_PRNG_INPUT_LEN, MAX_PRNG_INPUTS_LEN, MAX_PRNG_LEN};
pub use error::ClientError;
pub use lidentry::{
    LocalIdChoice, LocalIdQuery, LocalIdQueryKind, LocalIdSelectService, register_localid_select,
};
pub use pinentry::{MAX_PIN_LEN, PinEntryService, PinRequest, register_pin_entry};
pub use ping::PingReply;
pub use socket::{MAX_SOCKET_PATH_LEN, resolve_socket_path};
pub use starttls::{
    DEFAULT_SERVICE, HandshakeTimeout, LocalIdCheck, LocalIdDecision, StartTlsBuilder,
    StartTlsRequest, TlsConnection,
};
pub use tlspool_proto::{
    CtlKey, ErrorCode, Facilities, InfoKind, LidEntryFlags, PrivacyMode, StartTlsFlags,
};
