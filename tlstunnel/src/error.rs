//! The crate's error type: command-line errors, set-up failures of a connection, chat script
//! outcomes and failures of the TLS Pool, with the exit status each one maps to.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

use tlspool_client::ClientError;

/// Errors of parsing the command line, running listeners and setting up a tunnel connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TunnelError {
    /// The first option is not the mode (`-c`/`--client` or `-s`/`--server`).
    #[error("the first option must be -c (--client) or -s (--server), not {found:?}")]
    MissingMode {
        /// The argument found first, or an empty string when there is none.
        found: String,
    },

    /// A mode option appears after the first option.
    #[error("{option} selects the mode and is only valid as the first option")]
    ModeRepeated {
        /// The option as written.
        option: String,
    },

    /// An option that tlstunnel does not define.
    #[error("unknown option {option:?}; see tlstunnel --help")]
    UnknownOption {
        /// The option as written.
        option: String,
    },

    /// An option that takes a value is the last argument.
    #[error("option {option} requires a value")]
    MissingValue {
        /// The option as written.
        option: String,
    },

    /// A flag option was written with `--flag=value`.
    #[error("option {option} takes no value")]
    UnexpectedValue {
        /// The option as written.
        option: String,
    },

    /// An option value is malformed or out of range.
    #[error("invalid value {value:?} for {option}: {reason}")]
    InvalidValue {
        /// The option as written.
        option: String,
        /// The rejected value.
        value: String,
        /// The expected form of the value.
        reason: String,
    },

    /// A required option is missing.
    #[error("option {option} is required")]
    MissingOption {
        /// The long and short forms of the option.
        option: &'static str,
    },

    /// An address given with `-l` or `-r` does not parse.
    #[error("invalid address {address:?}: {reason}")]
    InvalidAddress {
        /// The address as written.
        address: String,
        /// The defect found in the address.
        reason: String,
    },

    /// A chat script argument does not parse.
    #[error("invalid chat script argument {index} ({argument:?}): {reason}")]
    InvalidChat {
        /// The position among the chat arguments, counted from 1.
        index: usize,
        /// The argument as written.
        argument: String,
        /// The defect found in the argument.
        reason: String,
    },

    /// `-u` was given with an address that is not `HOST:PORT`.
    #[error("DTLS over UDP needs HOST:PORT addresses, not {address:?}")]
    UdpNeedsInetAddress {
        /// The address as written, or empty when none was given.
        address: String,
    },

    /// SCTP was selected but the kernel offers no SCTP sockets.
    #[error("SCTP is not supported on this system")]
    SctpUnsupported,

    /// SCTP was selected on a kernel with SCTP, which tlstunnel cannot tunnel yet.
    #[error("SCTP tunnels are not implemented yet")]
    SctpNotImplemented,

    /// Resolving a host name of an address failed or gave no address.
    #[error("cannot resolve {address}")]
    Resolve {
        /// The address as written.
        address: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },

    /// Binding or listening on a local address failed.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address as written.
        address: String,
        /// The operating system error.
        #[source]
        source: io::Error,
    },

    /// Connecting to a remote address failed.
    #[error("cannot connect to {address}")]
    Connect {
        /// The address as written, after `%L`/`%R` expansion.
        address: String,
        /// The operating system error.
        #[source]
        source: io::Error,
    },

    /// A `%L` or `%R` expansion in a UNIX socket path would let the identity choose the path.
    #[error("{placeholder} in {template:?} expands to {value:?}, which is {reason}")]
    UnsafeExpansion {
        /// The path template as written.
        template: String,
        /// The placeholder, `%L` or `%R`.
        placeholder: &'static str,
        /// The identity that would be inserted.
        value: String,
        /// The reason for the rejection.
        reason: &'static str,
    },

    /// The peer sent an ABORT string of the chat script.
    #[error("chat script aborted: the peer sent {pattern:?}")]
    ChatAborted {
        /// The ABORT string that matched, with escapes resolved.
        pattern: String,
    },

    /// An expect string of the chat script did not arrive in time.
    #[error("chat script timed out after {seconds} s waiting for {expect:?}")]
    ChatTimedOut {
        /// The expect string, with escapes resolved.
        expect: String,
        /// The TIMEOUT in force, in seconds.
        seconds: u64,
    },

    /// The peer closed the connection while the chat script waited for a string.
    #[error("the peer closed the connection while the chat script waited for {expect:?}")]
    ChatClosed {
        /// The expect string, with escapes resolved.
        expect: String,
    },

    /// The external chat program could not be started or waited for.
    #[error("cannot run chat program {}", program.display())]
    ChatSpawn {
        /// The program given with `-C`.
        program: PathBuf,
        /// The operating system error.
        #[source]
        source: io::Error,
    },

    /// The external chat program ended with a non-zero status or a signal.
    #[error("chat program {} failed with {status}", program.display())]
    ChatCommandFailed {
        /// The program given with `-C`.
        program: PathBuf,
        /// Its exit status.
        status: ExitStatus,
    },

    /// A system call on a connection or a file failed.
    #[error("{call} failed")]
    Io {
        /// The failing call, such as `recv` or `dup`.
        call: &'static str,
        /// The operating system error.
        #[source]
        source: io::Error,
    },

    /// Talking to the TLS Pool daemon failed.
    #[error("the TLS Pool request failed")]
    Pool(#[from] ClientError),

    /// Going into the background with `--daemon` failed.
    #[error("cannot go into the background: {step}")]
    Daemonize {
        /// The step that failed.
        step: &'static str,
        /// The operating system error.
        #[source]
        source: io::Error,
    },

    /// The background process ended before its listeners were bound.
    #[error("the background process exited with {status} before its listeners were bound")]
    DaemonChildFailed {
        /// The exit status of the background process.
        status: ExitStatus,
    },

    /// Writing or removing the PID file failed.
    #[error("cannot write the PID file {}", path.display())]
    PidFile {
        /// The path given with `--pidfile`.
        path: PathBuf,
        /// The operating system error.
        #[source]
        source: io::Error,
    },
}

impl TunnelError {
    /// Returns the process exit status for this error: 2 for command-line and configuration
    /// errors, including the transports tlstunnel cannot serve, the status of a background
    /// copy that failed, and 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::DaemonChildFailed { status } => status
                .code()
                .and_then(|code| u8::try_from(code).ok())
                .filter(|code| *code != 0)
                .unwrap_or(1),
            Self::MissingMode { .. }
            | Self::ModeRepeated { .. }
            | Self::UnknownOption { .. }
            | Self::MissingValue { .. }
            | Self::UnexpectedValue { .. }
            | Self::InvalidValue { .. }
            | Self::MissingOption { .. }
            | Self::InvalidAddress { .. }
            | Self::InvalidChat { .. }
            | Self::UdpNeedsInetAddress { .. }
            | Self::SctpUnsupported
            | Self::SctpNotImplemented => 2,
            _ => 1,
        }
    }

    /// Wraps an I/O error of `call`.
    pub(crate) fn io(call: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Io { call, source }
    }
}
