//! The command line of `tlspoolctl`: its options, its subcommands and their output.
//!
//! Each subcommand writes its result to the given output and returns a [`ClientError`] on
//! failure. The binary prints the error with [`error_message`] and picks the exit status.
//! `connect`, `serve`, `test-client` and `test-server` live in their own modules; each reports
//! the negotiated identities on standard error in the form of [`identity_lines`].

mod connect;
mod datagram;
mod localid_select;
mod pin_entry;
mod selftest;
mod serve;

use std::error::Error as _;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use argh::FromArgs;
use tracing::debug;

use tlspool_proto::Facilities;

use crate::{ClientError, PingReply, PrivacyMode, blocking, resolve_socket_path};

pub use connect::ConnectCommand;
pub use localid_select::{LocalIdSelectCommand, inquiry_lines, parse_choice};
pub use pin_entry::{PinEntryCommand, request_lines};
pub use selftest::{TEST_LABEL, TestClientCommand, TestServerCommand};
pub use serve::ServeCommand;

/// Query and control the TLS Pool daemon over its UNIX socket.
#[derive(Debug, FromArgs)]
pub struct Options {
    /// path of the daemon's UNIX socket; overrides the configuration file
    #[argh(option, arg_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// configuration file whose first socket_name line names the socket (default:
    /// $TLSPOOL_CONFIG_FILE, else /etc/tlspool.conf)
    #[argh(option, arg_name = "FILE")]
    pub config: Option<PathBuf>,

    /// the subcommand to run
    #[argh(subcommand)]
    pub command: Command,
}

/// The subcommands of `tlspoolctl`.
#[derive(Debug, FromArgs)]
#[argh(subcommand)]
#[non_exhaustive]
pub enum Command {
    /// `tlspoolctl ping`.
    Ping(PingCommand),
    /// `tlspoolctl connect`.
    Connect(ConnectCommand),
    /// `tlspoolctl serve`.
    Serve(ServeCommand),
    /// `tlspoolctl test-client`.
    TestClient(TestClientCommand),
    /// `tlspoolctl test-server`.
    TestServer(TestServerCommand),
    /// `tlspoolctl pin-entry`.
    PinEntry(PinEntryCommand),
    /// `tlspoolctl localid-select`.
    LocalIdSelect(LocalIdSelectCommand),
}

/// Print the daemon's identity and the facilities it offers.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "ping")]
pub struct PingCommand {}

/// Runs the subcommand of `options` and writes its output to `out`.
///
/// # Errors
///
/// The [`ClientError`] of locating the socket, connecting or the request, or
/// [`ClientError::Io`] when writing to `out` fails.
pub fn run(options: &Options, out: &mut dyn Write) -> Result<(), ClientError> {
    let socket = resolve_socket_path(options.socket.as_deref(), options.config.as_deref())?;
    match &options.command {
        Command::Ping(PingCommand {}) => ping(&socket, out),
        Command::Connect(command) => connect::run(&socket, command, out),
        Command::Serve(command) => serve::run(&socket, command),
        Command::TestClient(command) => selftest::run_client(&socket, command, out),
        Command::TestServer(command) => selftest::run_server(&socket, command, out),
        Command::PinEntry(command) => pin_entry::run(&socket, command, out),
        Command::LocalIdSelect(command) => localid_select::run(&socket, command, out),
    }
}

/// Sends PING to the daemon at `socket` and writes [`ping_output`] to `out`.
fn ping(socket: &Path, out: &mut dyn Write) -> Result<(), ClientError> {
    let client = blocking::Client::connect(Some(socket))?;
    let reply = client.ping()?;
    out.write_all(ping_output(&reply).as_bytes())
        .map_err(stdout_error)
}

/// Formats a PING reply as two lines: `producer: ` and the daemon's identity, then
/// `facilities: ` and [`facility_names`].
pub fn ping_output(reply: &PingReply) -> String {
    format!(
        "producer: {}\nfacilities: {}\n",
        reply.producer,
        facility_names(reply.facilities)
    )
}

/// Formats the line `privacy: ` and the privacy mode of a session from the result of its INFO
/// query, with `(unknown)` when the query failed.
pub(crate) fn privacy_line(mode: Result<PrivacyMode, ClientError>) -> String {
    let name = mode.map_or_else(
        |error| {
            debug!(%error, "INFO privacy mode query failed");
            "(unknown)"
        },
        PrivacyMode::name,
    );
    format!("privacy: {name}\n")
}

/// Formats the identities of an established session as two lines, `local-id: ` and the local
/// identity, then `remote-id: ` and the remote identity, with `(none)` for an empty one.
pub fn identity_lines(local_id: &str, remote_id: &str) -> String {
    let shown = |id: &str| {
        if id.is_empty() {
            "(none)".to_owned()
        } else {
            id.to_owned()
        }
    };
    format!(
        "local-id: {}\nremote-id: {}\n",
        shown(local_id),
        shown(remote_id)
    )
}

/// Wraps a failed write to standard output.
fn stdout_error(source: io::Error) -> ClientError {
    ClientError::Io {
        call: "write to standard output",
        source,
    }
}

/// Names the facilities in `facilities`, separated by single spaces and in bit order:
/// `starttls`, `startgss`, `startssh`, and an unknown bit as its hexadecimal value such as
/// `0x00000010`. An empty set is `none`.
pub fn facility_names(facilities: Facilities) -> String {
    let mut names: Vec<String> = facilities
        .iter_names()
        .map(|(name, _)| name.to_ascii_lowercase())
        .collect();
    let unknown = facilities.bits() & !Facilities::all().bits();
    for bit in 0..u32::BITS {
        let mask = 1u32 << bit;
        if unknown & mask != 0 {
            names.push(format!("{mask:#010x}"));
        }
    }
    if names.is_empty() {
        return "none".to_owned();
    }
    names.join(" ")
}

/// Formats `error` with its chain of causes for a one-line message, each cause after `: `.
/// Operating system errors appear as their lower-case description without the error number,
/// such as `connection refused`.
pub fn error_message(error: &ClientError) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        match cause.downcast_ref::<io::Error>() {
            Some(io_error) => message.push_str(&describe_io_error(io_error)),
            None => message.push_str(&cause.to_string()),
        }
        source = cause.source();
    }
    message
}

/// Describes an I/O error as `strerror` does, lower-cased, without Rust's `(os error N)`.
fn describe_io_error(error: &io::Error) -> String {
    let text = error.to_string();
    let text = match text.find(" (os error ") {
        Some(end) => &text[..end],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facility_names_of_empty_set_is_none() {
        assert_eq!(facility_names(Facilities::empty()), "none");
    }

    #[test]
    fn facility_names_lists_known_bits_in_order() {
        assert_eq!(facility_names(Facilities::STARTTLS), "starttls");
        assert_eq!(
            facility_names(Facilities::STARTTLS | Facilities::STARTSSH),
            "starttls startssh"
        );
    }

    #[test]
    fn facility_names_shows_unknown_bits_in_hex() {
        let facilities = Facilities::from_bits_retain(0x0000_0011);
        assert_eq!(facility_names(facilities), "starttls 0x00000010");
    }

    #[test]
    fn ping_output_has_producer_and_facilities_lines() {
        let reply = PingReply {
            producer: "20151111api@tlspool.arpa2.net".to_owned(),
            facilities: Facilities::empty(),
        };
        assert_eq!(
            ping_output(&reply),
            "producer: 20151111api@tlspool.arpa2.net\nfacilities: none\n"
        );
    }

    #[test]
    fn identity_lines_show_both_identities() {
        assert_eq!(
            identity_lines("dev.example", "peer.dev.example"),
            "local-id: dev.example\nremote-id: peer.dev.example\n"
        );
    }

    #[test]
    fn privacy_line_names_mode_or_unknown() {
        assert_eq!(
            privacy_line(Ok(PrivacyMode::Renegotiated)),
            "privacy: renegotiated\n"
        );
        assert_eq!(
            privacy_line(Err(ClientError::Disconnected)),
            "privacy: (unknown)\n"
        );
    }

    #[test]
    fn identity_lines_mark_empty_identity() {
        assert_eq!(
            identity_lines("dev.example", ""),
            "local-id: dev.example\nremote-id: (none)\n"
        );
    }

    #[test]
    fn connect_error_message_names_path_and_reason() {
        let error = ClientError::Connect {
            path: PathBuf::from("/run/x.sock"),
            source: io::Error::from_raw_os_error(111),
        };
        assert_eq!(
            error_message(&error),
            "cannot connect to the TLS Pool at /run/x.sock: connection refused"
        );
    }

    #[test]
    fn options_parse_global_options_and_ping() {
        let options = Options::from_args(
            &["tlspoolctl"],
            &["--socket", "/tmp/a.sock", "--config", "/tmp/p.conf", "ping"],
        )
        .unwrap();
        assert_eq!(options.socket.as_deref(), Some(Path::new("/tmp/a.sock")));
        assert_eq!(options.config.as_deref(), Some(Path::new("/tmp/p.conf")));
        assert!(matches!(options.command, Command::Ping(PingCommand {})));
    }
}
