//! The crate's error type, shared by the blocking and the asynchronous client.

use std::io;
use std::path::PathBuf;

use tlspool_proto::{ErrorCode, ErrorPayload, ProtoError};

/// Errors of locating, connecting to and talking with the TLS Pool daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The socket path does not fit `sun_path` of a UNIX socket address.
    #[error(
        "socket path {} is {len} bytes long, longer than the maximum of {max} for a UNIX socket",
        path.display()
    )]
    SocketPathTooLong {
        /// The rejected path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
        /// The longest path that fits, in bytes, without the NUL terminator.
        max: usize,
    },

    /// Connecting to the daemon's socket failed.
    #[error("cannot connect to the TLS Pool at {}", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The operating system error, such as `ECONNREFUSED` or `ENOENT`.
        #[source]
        source: io::Error,
    },

    /// The daemon replied to the request with an ERROR record.
    #[error("the TLS Pool returned an error: {message} (tlserrno {code})")]
    Daemon {
        /// The `tlserrno` value: a POSIX `errno` value or a TLS Pool error code.
        code: i32,
        /// The TLS Pool error code, or `None` when `code` is an `errno` value or unknown.
        known: Option<ErrorCode>,
        /// The daemon's message.
        message: String,
    },

    /// The connection to the daemon closed before the reply arrived.
    #[error("the connection to the TLS Pool closed before the reply arrived")]
    Disconnected,

    /// The daemon replied with a command code the request does not expect.
    #[error("the TLS Pool sent an unexpected reply with command code {cmd:#010x}")]
    UnexpectedReply {
        /// The received command code.
        cmd: u32,
    },

    /// A STARTTLS request field holds a value the request cannot carry.
    #[error("invalid STARTTLS {field}: {reason}")]
    InvalidRequest {
        /// Wire name of the field, such as `service` or `localid`.
        field: &'static str,
        /// What is wrong with the value.
        reason: String,
    },

    /// A PRNG or INFO argument is shorter or longer than the request record allows.
    #[error("{command} {field} is {value} bytes long, outside the allowed {min} to {max}")]
    InvalidLength {
        /// The command, `PRNG` or `INFO`.
        command: &'static str,
        /// The argument, such as `label` or `context`.
        field: &'static str,
        /// Its length in bytes.
        value: usize,
        /// The minimum length in bytes.
        min: usize,
        /// The maximum length in bytes.
        max: usize,
    },

    /// The daemon returned an INFO value this client cannot parse.
    #[error("the TLS Pool returned an unknown INFO value {value:?} for kind {kind:#010x}")]
    UnknownInfoValue {
        /// The `PIOK_INFO_*` kind of the query.
        kind: u32,
        /// The value, with bytes that are not UTF-8 replaced.
        value: String,
    },

    /// The daemon finished STARTTLS without asking for the plaintext socket, so the session
    /// has no plaintext side this client holds.
    #[error("the TLS Pool completed STARTTLS without a PLAINTEXT_CONNECT callback")]
    NoPlaintextRequested,

    /// A TCP operation of `tlspoolctl` failed, such as connecting to the server or binding
    /// the listening address.
    #[error("{action} {address} failed")]
    Tcp {
        /// What failed, such as `connect to` or `listen on`.
        action: &'static str,
        /// The address as given on the command line.
        address: String,
        /// The operating system error.
        #[source]
        source: io::Error,
    },

    /// Starting the command of `tlspoolctl serve --exec` failed.
    #[error("starting sh -c {command:?} failed")]
    Exec {
        /// The command line.
        command: String,
        /// The operating system error.
        #[source]
        source: io::Error,
    },

    /// Steps of `tlspoolctl test-client` or `test-server` failed; each printed its reason.
    #[error("{failed} test steps failed")]
    TestsFailed {
        /// How many steps failed.
        failed: usize,
    },

    /// Every request id is taken by an outstanding request on this connection.
    #[error("all 65536 request ids are in use by outstanding requests")]
    RequestIdsExhausted,

    /// Encoding, decoding or transporting a command record failed.
    #[error(transparent)]
    Proto(#[from] ProtoError),

    /// A system call outside the record transport failed.
    #[error("{call} failed")]
    Io {
        /// The failing call, such as `shutdown`.
        call: &'static str,
        /// The operating system error.
        #[source]
        source: io::Error,
    },
}

impl ClientError {
    /// Converts an ERROR payload from the daemon.
    pub(crate) fn from_daemon(error: ErrorPayload) -> Self {
        Self::Daemon {
            code: error.tlserrno,
            known: error.error_code(),
            message: error.message,
        }
    }
}
