//! The command line of `tlspool`.

use std::path::PathBuf;

use argh::FromArgs;

/// Configuration file read when `-c` is not given. The daemon does not consult
/// `TLSPOOL_CONFIG_FILE`, which only clients read.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/tlspool.conf";

/// The TLS Pool daemon: runs TLS on behalf of local programs that pass it their sockets over
/// a UNIX-domain socket.
#[derive(Debug, Clone, PartialEq, Eq, FromArgs)]
pub struct Options {
    /// print the version and exit
    #[argh(switch, short = 'V')]
    pub version: bool,

    /// stop the daemon that holds the PID file (SIGTERM) and take over from it
    #[argh(switch, short = 'k')]
    pub kill: bool,

    /// stay in the foreground instead of forking into the background
    #[argh(switch, short = 'f')]
    pub foreground: bool,

    /// configuration file (default /etc/tlspool.conf)
    #[argh(option, short = 'c', default = "PathBuf::from(DEFAULT_CONFIG_FILE)")]
    pub config: PathBuf,
}
