//! The TLS Pool daemon `tlspool` and its database tool `tlspool-admin`.
//!
//! [`run`] is the whole daemon. It loads the configuration, sets up logging, locks the PID
//! file, creates the listening sockets in file order and drops privileges. Then it switches to
//! the background unless `-f` was given, and serves the TLS Pool version 2 protocol until
//! SIGTERM, SIGINT or SIGHUP. Each client connection is one task on a small tokio runtime. Its
//! protocol rules live in the sans-IO [`protocol::ConnectionProtocol`]; each STARTTLS request
//! runs in a task of [`starttls`], and established sessions sit in a
//! [`sessions::SessionRegistry`].
//!
//! ```no_run
//! use tlspool_daemon::Options;
//!
//! let options = Options {
//!     version: false,
//!     kill: false,
//!     foreground: true,
//!     config: "/etc/tlspool.conf".into(),
//! };
//! tlspool_daemon::run(options)?;
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! # Known limitations
//!
//! - STARTTLS serves TLS over TCP and DTLS over UDP in the client and server roles (see
//!   [`starttls`]), and renegotiates TLS 1.2 sessions; the peer role and SCTP get ERROR
//!   `E_TLSPOOL_COMMAND_NOTIMPL`, as does an INFO value over 334 bytes. Every other command
//!   of the version 2 protocol, PIOC_LIDENTRY_REGISTER_V2 included, is served.
//! - Socket and PID files are removed at exit through directories opened before `chroot`, but
//!   after `daemon_user` the daemon may lack the permission to remove them.

#![warn(missing_docs)]

pub mod admin;
pub mod callbacks;
mod cleanup;
pub mod commands;
pub mod connection;
mod control;
pub mod daemonize;
mod error;
mod exclusive;
pub mod lidentry;
pub mod listener;
mod options;
pub mod pidfile;
pub mod pinentry;
pub mod privileges;
pub mod protocol;
mod server;
pub mod sessions;
pub mod starttls;
mod startup;
mod tokens;

pub use error::DaemonError;
pub use options::{DEFAULT_CONFIG_FILE, Options};
pub use startup::run;
