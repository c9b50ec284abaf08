//! The command line: `tlstunnel -c|-s [options] [--] [CHATARGS...]`.
//!
//! Options follow getopt conventions: short options may be clustered (`-fl ADDR`), a value
//! may be attached (`-l127.0.0.1:25`, `--local-addr=...`), and options and chat arguments
//! may be interleaved until `--`, after which every argument is a chat argument. The first
//! option selects the mode, so `-s` there means `--server`; after it `-s` means `--service`.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

use crate::chat::{ChatMode, ChatScript};
use crate::starttls::{RemoteIdPolicy, Role};
use crate::{Address, TunnelError};

/// The usage text printed by `-h`/`--help`.
pub const USAGE: &str = "\
Usage: tlstunnel -c|-s [options] [--] [CHATARGS...]

The first option selects the mode:
  -c, --client                  accept plaintext, connect out and act as TLS client
  -s, --server                  accept TLS as server, forward plaintext

Options:
  -l, --local-addr ADDR         listen address (repeatable, required)
  -r, --remote-addr ADDR        forward address (repeatable, required; tried in order)
  -L, --local-id ID             local identity (required)
  -R, --remote-id ID            remote identity (client mode: the server's name)
  -s, --service NAME            IANA service name, at most 15 characters (default generic)
      --request-remote-id       ask the peer for a certificate but accept an anonymous peer
      --ignore-remote-id        neither ask for nor validate the peer's identity
  -t, --tcp, --tcp-tls          TLS over TCP (the default)
  -u, --udp, --udp-dtls         DTLS over UDP: one session per peer, on the first -l and -r
                                addresses (HOST:PORT), expiring after 300 s without data
  -x, --sctp-stream-number N    SCTP with stream N, 0 to 65535
  -d, --sctp-dtls               DTLS over SCTP (the SCTP default)
  -D, --sctp-tls                TLS over SCTP
  -o, --sctp-tunneled           SCTP over UDP port 9899
  -O, --sctp-not-tunneled       native SCTP (the SCTP default)
  -f, --fork                    keep sessions when tlstunnel's TLS Pool connection ends
  -S, --tlspool-socket-path P   TLS Pool daemon socket
  -C, --chat-command PROG       run PROG with CHATARGS on the connection instead of the
                                built-in chat interpreter; exit status 0 proceeds
  -F, --foreground              stay in the foreground (the default)
      --daemon                  go into the background once the listeners are bound
      --pidfile PATH            write the process id to PATH
      --max-connections N       connections served at once (default 1024)
      --grace SECONDS           time open connections get after SIGTERM or SIGINT
                                (default 30)
  -h, --help                    print this help

ADDR is HOST:PORT, [IPV6]:PORT or /UNIX/SOCKET/PATH. In a forward UNIX socket path, %L
and %R expand to the local and remote identity of the session.
CHATARGS alternate expect and send strings as in chat(8), with ABORT and TIMEOUT.
";

/// The request of a command line.
#[derive(Debug)]
pub enum Command {
    /// Print [`USAGE`] and exit 0.
    Help,
    /// Run the tunnel.
    Run(Box<Options>),
}

/// The settings of a tunnel.
#[derive(Debug, Clone)]
pub struct Options {
    /// `-c` (client) or `-s` (server).
    pub role: Role,
    /// The `-l` addresses.
    pub listen: Vec<Address>,
    /// The `-r` addresses, tried in order.
    pub remote: Vec<Address>,
    /// `-L`.
    pub local_id: String,
    /// `-R`, empty when not given.
    pub remote_id: String,
    /// `-s NAME` after the mode, `generic` by default.
    pub service: String,
    /// `-f`.
    pub fork: bool,
    /// `--request-remote-id` or `--ignore-remote-id`; the peer must authenticate otherwise.
    pub remote_id_policy: RemoteIdPolicy,
    /// `-S`.
    pub socket_path: Option<PathBuf>,
    /// The built-in chat script or the `-C` program.
    pub chat: ChatMode,
    /// `--daemon`.
    pub background: bool,
    /// `--pidfile`.
    pub pidfile: Option<PathBuf>,
    /// `--max-connections`, at least 1.
    pub max_connections: u32,
    /// `--grace`.
    pub grace: Duration,
    /// Whether `-u` selects DTLS over UDP.
    pub udp: bool,
}

/// The transport options, checked once the whole command line is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Udp,
    Sctp,
}

/// Every option tlstunnel defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Client,
    Server,
    LocalAddr,
    RemoteAddr,
    LocalId,
    RemoteId,
    Service,
    RequestRemoteId,
    IgnoreRemoteId,
    Tcp,
    Udp,
    SctpStream,
    SctpDtls,
    SctpTls,
    SctpTunneled,
    SctpNotTunneled,
    Fork,
    SocketPath,
    ChatCommand,
    Foreground,
    Daemon,
    PidFile,
    MaxConnections,
    Grace,
    Help,
}

const LONG_OPTIONS: &[(&str, Opt)] = &[
    ("client", Opt::Client),
    ("server", Opt::Server),
    ("local-addr", Opt::LocalAddr),
    ("remote-addr", Opt::RemoteAddr),
    ("local-id", Opt::LocalId),
    ("remote-id", Opt::RemoteId),
    ("service", Opt::Service),
    ("request-remote-id", Opt::RequestRemoteId),
    ("ignore-remote-id", Opt::IgnoreRemoteId),
    ("tcp", Opt::Tcp),
    ("tcp-tls", Opt::Tcp),
    ("udp", Opt::Udp),
    ("udp-dtls", Opt::Udp),
    ("sctp-stream-number", Opt::SctpStream),
    ("sctp-dtls", Opt::SctpDtls),
    ("sctp-tls", Opt::SctpTls),
    ("sctp-tunneled", Opt::SctpTunneled),
    ("sctp-not-tunneled", Opt::SctpNotTunneled),
    ("fork", Opt::Fork),
    ("tlspool-socket-path", Opt::SocketPath),
    ("chat-command", Opt::ChatCommand),
    ("foreground", Opt::Foreground),
    ("daemon", Opt::Daemon),
    ("pidfile", Opt::PidFile),
    ("max-connections", Opt::MaxConnections),
    ("grace", Opt::Grace),
    ("help", Opt::Help),
];

/// The maximum identity length in bytes, because the 128-byte fields of the protocol end in NUL.
const MAX_IDENTITY_LEN: usize = 127;

/// The maximum IANA service name length in bytes.
const MAX_SERVICE_LEN: usize = 15;

impl Opt {
    /// Maps a short option letter; `s` depends on whether the mode is set yet.
    fn from_short(letter: char, mode_set: bool) -> Option<Self> {
        Some(match letter {
            'c' => Self::Client,
            's' if mode_set => Self::Service,
            's' => Self::Server,
            'l' => Self::LocalAddr,
            'r' => Self::RemoteAddr,
            'L' => Self::LocalId,
            'R' => Self::RemoteId,
            't' => Self::Tcp,
            'u' => Self::Udp,
            'x' => Self::SctpStream,
            'd' => Self::SctpDtls,
            'D' => Self::SctpTls,
            'o' => Self::SctpTunneled,
            'O' => Self::SctpNotTunneled,
            'f' => Self::Fork,
            'S' => Self::SocketPath,
            'C' => Self::ChatCommand,
            'F' => Self::Foreground,
            'h' => Self::Help,
            _ => return None,
        })
    }

    fn takes_value(self) -> bool {
        matches!(
            self,
            Self::LocalAddr
                | Self::RemoteAddr
                | Self::LocalId
                | Self::RemoteId
                | Self::Service
                | Self::SctpStream
                | Self::SocketPath
                | Self::ChatCommand
                | Self::PidFile
                | Self::MaxConnections
                | Self::Grace
        )
    }
}

/// Options as they accumulate while the arguments are read.
#[derive(Debug, Default)]
struct Builder {
    role: Option<Role>,
    listen: Vec<Address>,
    remote: Vec<Address>,
    local_id: Option<String>,
    remote_id: String,
    service: Option<String>,
    remote_id_policy: RemoteIdPolicy,
    transport: Option<Transport>,
    sctp_stream: Option<u16>,
    fork: bool,
    socket_path: Option<PathBuf>,
    chat_command: Option<PathBuf>,
    background: bool,
    pidfile: Option<PathBuf>,
    max_connections: Option<u32>,
    grace: Option<Duration>,
    chat_args: Vec<OsString>,
    help: bool,
}

/// Parses the arguments after the program name.
///
/// # Errors
///
/// The usage errors of [`TunnelError`] (exit status 2): a missing or repeated mode, unknown
/// options, missing or invalid values and addresses, a missing required option, an invalid
/// chat script, [`TunnelError::UdpNeedsInetAddress`] for `-u` with a UNIX socket address, and
/// [`TunnelError::SctpUnsupported`] or [`TunnelError::SctpNotImplemented`] for `-x`.
pub fn parse<I>(args: I) -> Result<Command, TunnelError>
where
    I: IntoIterator<Item = OsString>,
{
    let mut builder = Builder::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            builder.operand(arg)?;
            continue;
        };
        if text == "--" {
            builder.chat_args.extend(args.by_ref());
            break;
        }
        if let Some(long) = text.strip_prefix("--") {
            builder.long_option(long, &mut args)?;
        } else if text.len() > 1 && text.starts_with('-') {
            builder.short_cluster(&text[1..], &mut args)?;
        } else {
            builder.operand(arg)?;
        }
        if builder.help {
            return Ok(Command::Help);
        }
    }
    builder
        .build()
        .map(|options| Command::Run(Box::new(options)))
}

impl Builder {
    fn long_option(
        &mut self,
        long: &str,
        args: &mut impl Iterator<Item = OsString>,
    ) -> Result<(), TunnelError> {
        let (name, attached) = match long.split_once('=') {
            Some((name, value)) => (name, Some(OsString::from(value))),
            None => (long, None),
        };
        let written = format!("--{name}");
        let Some(&(_, opt)) = LONG_OPTIONS.iter().find(|(long, _)| *long == name) else {
            return Err(self.unknown(written));
        };
        let value = match (opt.takes_value(), attached) {
            (true, Some(value)) => Some(value),
            (true, None) => Some(args.next().ok_or_else(|| TunnelError::MissingValue {
                option: written.clone(),
            })?),
            (false, Some(_)) => return Err(TunnelError::UnexpectedValue { option: written }),
            (false, None) => None,
        };
        self.apply(opt, &written, value)
    }

    fn short_cluster(
        &mut self,
        cluster: &str,
        args: &mut impl Iterator<Item = OsString>,
    ) -> Result<(), TunnelError> {
        for (at, letter) in cluster.char_indices() {
            let written = format!("-{letter}");
            let Some(opt) = Opt::from_short(letter, self.role.is_some()) else {
                return Err(self.unknown(written));
            };
            if !opt.takes_value() {
                self.apply(opt, &written, None)?;
                continue;
            }
            let rest = &cluster[at + letter.len_utf8()..];
            let value = if rest.is_empty() {
                args.next().ok_or_else(|| TunnelError::MissingValue {
                    option: written.clone(),
                })?
            } else {
                OsString::from(rest)
            };
            return self.apply(opt, &written, Some(value));
        }
        Ok(())
    }

    /// Builds the error for an unknown option, which as the first option reports the missing
    /// mode instead.
    fn unknown(&self, option: String) -> TunnelError {
        match self.role {
            None => TunnelError::MissingMode { found: option },
            Some(_) => TunnelError::UnknownOption { option },
        }
    }

    fn operand(&mut self, arg: OsString) -> Result<(), TunnelError> {
        if self.role.is_none() {
            return Err(TunnelError::MissingMode {
                found: arg.to_string_lossy().into_owned(),
            });
        }
        self.chat_args.push(arg);
        Ok(())
    }

    fn apply(
        &mut self,
        opt: Opt,
        written: &str,
        value: Option<OsString>,
    ) -> Result<(), TunnelError> {
        match (opt, self.role) {
            (Opt::Help, _) => {
                self.help = true;
                return Ok(());
            }
            (Opt::Client | Opt::Server, Some(_)) => {
                return Err(TunnelError::ModeRepeated {
                    option: written.to_owned(),
                });
            }
            (Opt::Client, None) => self.role = Some(Role::Client),
            (Opt::Server, None) => self.role = Some(Role::Server),
            (_, None) => {
                return Err(TunnelError::MissingMode {
                    found: written.to_owned(),
                });
            }
            (_, Some(_)) => match value {
                Some(value) => self.apply_value(opt, written, value)?,
                None => self.apply_flag(opt),
            },
        }
        Ok(())
    }

    fn apply_flag(&mut self, opt: Opt) {
        match opt {
            Opt::Tcp => self.transport = Some(Transport::Tcp),
            Opt::Udp => self.transport = Some(Transport::Udp),
            // These only refine SCTP, which -x selects.
            Opt::SctpDtls | Opt::SctpTls | Opt::SctpTunneled | Opt::SctpNotTunneled => {}
            Opt::Fork => self.fork = true,
            // The later of the two options wins, as with -F and --daemon.
            Opt::RequestRemoteId => self.remote_id_policy = RemoteIdPolicy::Requested,
            Opt::IgnoreRemoteId => self.remote_id_policy = RemoteIdPolicy::Ignored,
            Opt::Foreground => self.background = false,
            Opt::Daemon => self.background = true,
            _ => {}
        }
    }

    fn apply_value(&mut self, opt: Opt, written: &str, value: OsString) -> Result<(), TunnelError> {
        let invalid = |value: &OsStr, reason: &str| TunnelError::InvalidValue {
            option: written.to_owned(),
            value: value.to_string_lossy().into_owned(),
            reason: reason.to_owned(),
        };
        match opt {
            Opt::SocketPath => self.socket_path = Some(value.into()),
            Opt::ChatCommand => self.chat_command = Some(value.into()),
            Opt::PidFile => self.pidfile = Some(value.into()),
            Opt::LocalAddr | Opt::RemoteAddr => {
                let text = value
                    .to_str()
                    .ok_or_else(|| invalid(&value, "not valid UTF-8"))?;
                let address = Address::parse(text)?;
                match opt {
                    Opt::LocalAddr => self.listen.push(address),
                    _ => self.remote.push(address),
                }
            }
            _ => {
                let text = value
                    .to_str()
                    .ok_or_else(|| invalid(&value, "not valid UTF-8"))?;
                self.apply_text(opt, text)
                    .map_err(|reason| invalid(&value, reason))?;
            }
        }
        Ok(())
    }

    /// Applies an option whose value must be text; `Err` carries the reason it is invalid.
    fn apply_text(&mut self, opt: Opt, text: &str) -> Result<(), &'static str> {
        match opt {
            Opt::LocalId => self.local_id = Some(identity(text)?.to_owned()),
            Opt::RemoteId => self.remote_id = identity(text)?.to_owned(),
            Opt::Service => self.service = Some(service(text)?.to_owned()),
            Opt::SctpStream => {
                let stream = text
                    .parse()
                    .map_err(|_| "expected a stream number, 0 to 65535")?;
                self.sctp_stream = Some(stream);
                self.transport = Some(Transport::Sctp);
            }
            Opt::MaxConnections => match text.parse::<u32>() {
                Ok(count) if count > 0 => self.max_connections = Some(count),
                _ => return Err("expected a whole number from 1 to 4294967295"),
            },
            Opt::Grace => {
                let seconds = text
                    .parse()
                    .map_err(|_| "expected a whole number of seconds")?;
                self.grace = Some(Duration::from_secs(seconds));
            }
            _ => {}
        }
        Ok(())
    }

    fn build(self) -> Result<Options, TunnelError> {
        let Some(role) = self.role else {
            return Err(TunnelError::MissingMode {
                found: String::new(),
            });
        };
        match self.transport {
            Some(Transport::Sctp) => return Err(sctp_error()),
            Some(Transport::Udp | Transport::Tcp) | None => {}
        }

        let (listen, remote) = (self.listen, self.remote);
        if listen.is_empty() {
            return Err(TunnelError::MissingOption {
                option: "-l/--local-addr",
            });
        }
        if remote.is_empty() {
            return Err(TunnelError::MissingOption {
                option: "-r/--remote-addr",
            });
        }
        let local_id = self.local_id.ok_or(TunnelError::MissingOption {
            option: "-L/--local-id",
        })?;
        let udp = self.transport == Some(Transport::Udp);
        if udp {
            // The UDP tunnel serves the first listen and forward address only.
            for address in [&listen[0], &remote[0]] {
                if !matches!(address, Address::Inet { .. }) {
                    return Err(TunnelError::UdpNeedsInetAddress {
                        address: address.to_string(),
                    });
                }
            }
        }

        Ok(Options {
            role,
            listen,
            remote,
            local_id,
            remote_id: self.remote_id,
            service: self.service.unwrap_or_else(|| "generic".to_owned()),
            fork: self.fork,
            remote_id_policy: self.remote_id_policy,
            socket_path: self.socket_path,
            chat: chat_mode(self.chat_command, self.chat_args)?,
            background: self.background,
            pidfile: self.pidfile,
            max_connections: self.max_connections.unwrap_or(1024),
            grace: self.grace.unwrap_or(Duration::from_secs(30)),
            udp,
        })
    }
}

fn identity(text: &str) -> Result<&str, &'static str> {
    if text.len() > MAX_IDENTITY_LEN {
        return Err("an identity has at most 127 bytes");
    }
    if text.contains('\0') {
        return Err("an identity must not contain NUL");
    }
    Ok(text)
}

fn service(text: &str) -> Result<&str, &'static str> {
    let valid = !text.is_empty()
        && text.len() <= MAX_SERVICE_LEN
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if valid {
        Ok(text)
    } else {
        Err("expected an IANA service name: 1 to 15 letters, digits or dashes")
    }
}

/// Chooses the external chat program or parses the built-in script.
fn chat_mode(program: Option<PathBuf>, args: Vec<OsString>) -> Result<ChatMode, TunnelError> {
    if let Some(program) = program {
        return Ok(ChatMode::Program { program, args });
    }
    let mut texts = Vec::with_capacity(args.len());
    for (index, arg) in args.iter().enumerate() {
        let text = arg.to_str().ok_or_else(|| TunnelError::InvalidChat {
            index: index + 1,
            argument: arg.to_string_lossy().into_owned(),
            reason: "not valid UTF-8".into(),
        })?;
        texts.push(text);
    }
    let script = ChatScript::parse(&texts).map_err(|(index, reason)| TunnelError::InvalidChat {
        index: index + 1,
        argument: texts.get(index).copied().unwrap_or_default().to_owned(),
        reason,
    })?;
    Ok(ChatMode::Builtin(script))
}

/// Tells whether this kernel offers SCTP sockets at all.
fn sctp_error() -> TunnelError {
    use rustix::net::{AddressFamily, SocketType, ipproto, socket};
    match socket(
        AddressFamily::INET,
        SocketType::SEQPACKET,
        Some(ipproto::SCTP),
    ) {
        Ok(_) => TunnelError::SctpNotImplemented,
        Err(_) => TunnelError::SctpUnsupported,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words<S: AsRef<str>>(words: &[S]) -> Result<Command, TunnelError> {
        parse(words.iter().map(|word| OsString::from(word.as_ref())))
    }

    fn options<S: AsRef<str> + std::fmt::Debug>(words: &[S]) -> Options {
        match parse_words(words) {
            Ok(Command::Run(options)) => *options,
            other => panic!("{words:?} gave {other:?}"),
        }
    }

    const BASE: [&str; 6] = [
        "-l",
        "127.0.0.1:2525",
        "-r",
        "[::1]:25",
        "-L",
        "me@example.com",
    ];

    fn with_base(first: &[&str], last: &[&str]) -> Vec<&'static str> {
        let mut words: Vec<&str> = first.to_vec();
        words.extend(BASE);
        words.extend(last);
        words
            .into_iter()
            .map(|word| &*word.to_owned().leak())
            .collect()
    }

    #[test]
    fn s_is_server_first_and_service_later() {
        let server = options(&with_base(&["-s"], &["-s", "smtp"]));
        assert_eq!(server.role, Role::Server);
        assert_eq!(server.service, "smtp");

        let client = options(&with_base(&["-c", "-s", "imap"], &[]));
        assert_eq!(client.role, Role::Client);
        assert_eq!(client.service, "imap");
        assert_eq!(client.max_connections, 1024);
        assert_eq!(client.grace, Duration::from_secs(30));
        assert!(!client.background);
        assert_eq!(client.remote_id_policy, RemoteIdPolicy::Required);
    }

    #[test]
    fn remote_id_policy_last_option_wins() {
        let requested = options(&with_base(&["-s", "--request-remote-id"], &[]));
        assert_eq!(requested.remote_id_policy, RemoteIdPolicy::Requested);
        let ignored = options(&with_base(&["-c"], &["--ignore-remote-id"]));
        assert_eq!(ignored.remote_id_policy, RemoteIdPolicy::Ignored);
        let both = ["-s", "--ignore-remote-id", "--request-remote-id"];
        let last = options(&with_base(&both, &[]));
        assert_eq!(last.remote_id_policy, RemoteIdPolicy::Requested);
    }

    #[test]
    fn long_forms_and_attached_values() {
        let parsed = options(&[
            "--client",
            "--local-addr=127.0.0.1:1",
            "--local-addr",
            "/tmp/a.sock",
            "--remote-addr=host.example:2",
            "--local-id=a@example.com",
            "--remote-id",
            "b@example.com",
            "--service=pop3",
            "--tcp-tls",
            "--fork",
            "--tlspool-socket-path=/run/pool.sock",
            "--daemon",
            "--pidfile=/run/t.pid",
            "--max-connections=7",
            "--grace=3",
            "--sctp-dtls",
            "--sctp-not-tunneled",
        ]);
        assert_eq!(parsed.listen.len(), 2);
        assert_eq!(parsed.remote_id, "b@example.com");
        assert!(parsed.fork);
        assert!(parsed.background);
        assert_eq!(parsed.socket_path, Some(PathBuf::from("/run/pool.sock")));
        assert_eq!(parsed.pidfile, Some(PathBuf::from("/run/t.pid")));
        assert_eq!(parsed.max_connections, 7);
        assert_eq!(parsed.grace, Duration::from_secs(3));
    }

    #[test]
    fn clustered_short_options() {
        let parsed = options(&["-cf", "-l127.0.0.1:1", "-r", "[::1]:2", "-tDOoFL", "x"]);
        assert!(parsed.fork);
        assert_eq!(parsed.local_id, "x");
        assert!(!parsed.background);
    }

    #[test]
    fn chat_arguments_interleave_until_double_dash() {
        let parsed = options(&with_base(&["-c", ""], &["EHLO", "--", "-f", "x"]));
        let ChatMode::Builtin(script) = parsed.chat else {
            panic!("expected the built-in chat");
        };
        assert!(!script.is_empty());
        assert!(!parsed.fork, "-f after -- is a chat argument");

        let program = options(&with_base(&["-c", "-C", "/bin/chat"], &["a", "b"]));
        assert_eq!(
            program.chat,
            ChatMode::Program {
                program: PathBuf::from("/bin/chat"),
                args: vec!["a".into(), "b".into()],
            }
        );
    }

    #[test]
    fn help_anywhere() {
        assert!(matches!(parse_words(&["-h"]), Ok(Command::Help)));
        assert!(matches!(parse_words(&["-c", "--help"]), Ok(Command::Help)));
    }

    #[test]
    fn usage_errors() {
        type Check = fn(&TunnelError) -> bool;
        let cases: Vec<(Vec<&str>, Check)> = vec![
            (vec![], |e| matches!(e, TunnelError::MissingMode { .. })),
            (vec!["-l", "x:1"], |e| {
                matches!(e, TunnelError::MissingMode { .. })
            }),
            (vec!["-c", "-c"], |e| {
                matches!(e, TunnelError::ModeRepeated { .. })
            }),
            (vec!["-c", "--bogus"], |e| {
                matches!(e, TunnelError::UnknownOption { .. })
            }),
            (vec!["-c", "-l"], |e| {
                matches!(e, TunnelError::MissingValue { .. })
            }),
            (vec!["-c", "--fork=1"], |e| {
                matches!(e, TunnelError::UnexpectedValue { .. })
            }),
            (vec!["-c", "-l", "::1:80"], |e| {
                matches!(e, TunnelError::InvalidAddress { .. })
            }),
            (vec!["-c", "-s", "a-very-long-service"], |e| {
                matches!(e, TunnelError::InvalidValue { .. })
            }),
            (vec!["-c", "-x", "65536"], |e| {
                matches!(e, TunnelError::InvalidValue { .. })
            }),
            (vec!["-c", "--max-connections", "0"], |e| {
                matches!(e, TunnelError::InvalidValue { .. })
            }),
            (vec!["-c", "-r", "h:1", "-L", "x"], |e| {
                matches!(
                    e,
                    TunnelError::MissingOption {
                        option: "-l/--local-addr"
                    }
                )
            }),
            (vec!["-c", "-l", "h:1", "-L", "x"], |e| {
                matches!(
                    e,
                    TunnelError::MissingOption {
                        option: "-r/--remote-addr"
                    }
                )
            }),
            (vec!["-c", "-l", "h:1", "-r", "h:2"], |e| {
                matches!(
                    e,
                    TunnelError::MissingOption {
                        option: "-L/--local-id"
                    }
                )
            }),
            (
                vec!["-c", "-u", "-l", "/tmp/plain.sock", "-r", "h:2", "-L", "me"],
                |e| matches!(e, TunnelError::UdpNeedsInetAddress { .. }),
            ),
            (vec!["-c", "-x", "1"], |e| {
                matches!(
                    e,
                    TunnelError::SctpUnsupported | TunnelError::SctpNotImplemented
                )
            }),
        ];
        for (words, check) in cases {
            match parse_words(&words) {
                Err(error) => {
                    assert!(check(&error), "{words:?} gave {error:?}");
                    assert_eq!(error.exit_code(), 2, "{words:?}");
                }
                Ok(command) => panic!("{words:?} was accepted as {command:?}"),
            }
        }
    }

    #[test]
    fn invalid_chat_names_argument() {
        let error = parse_words(&with_base(&["-c"], &["ok", "bad\\K"])).err();
        let Some(TunnelError::InvalidChat {
            index, argument, ..
        }) = error
        else {
            panic!("expected a chat error, got {error:?}");
        };
        assert_eq!(index, 2);
        assert_eq!(argument, "bad\\K");
    }
}
