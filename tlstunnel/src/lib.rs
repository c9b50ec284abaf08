//! tlstunnel: plaintext services wrapped in TLS through the TLS Pool daemon.
//!
//! In client mode (`-c`) tlstunnel accepts plaintext connections on its listen addresses,
//! connects out to a forward address and has the TLS Pool run TLS there as client. In server
//! mode (`-s`) it accepts TLS connections and has the TLS Pool run TLS as server, with the
//! plaintext side connected to a forward address. Before STARTTLS a chat script (the expect
//! and send language of pppd's `chat`) can run on the cipher-side connection, so protocols
//! that switch to TLS in plaintext, such as SMTP, IMAP and POP3, work too.
//!
//! ```no_run
//! let args = ["-c", "-l", "127.0.0.1:2525", "-r", "mx.example.com:25", "-L", "me@example.com"];
//! let command = tlstunnel::cli::parse(args.map(Into::into))?;
//! if let tlstunnel::Command::Run(options) = command {
//!     tlstunnel::run(*options)?;
//! }
//! # Ok::<(), tlstunnel::TunnelError>(())
//! ```
//!
//! # Known limitations
//!
//! - tlstunnel relays between the daemon's plaintext end and the plaintext connection
//!   itself, because the client library replies to PLAINTEXT_CONNECT with its own socket pair.
//! - DTLS over UDP (`-u`) serves the first listen and forward address only, without chat
//!   scripts. SCTP is rejected.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod address;
pub mod background;
pub mod chat;
pub mod cli;
mod error;
mod net;
pub mod starttls;
mod tunnel;
mod udp;

pub use address::{Address, MAX_UNIX_PATH_LEN};
pub use cli::{Command, Options};
pub use error::TunnelError;
pub use net::{Listener, Peer, Stream};
pub use starttls::{PoolStarttls, RemoteIdPolicy, Starttls};
pub use tunnel::{StopSignals, Tunnel};

use std::time::Duration;

use background::PidFile;

/// How long the runtime waits for its tasks once the drain is over.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs the tunnel until SIGTERM or SIGINT and the drain that follows. With `--daemon` the
/// calling process returns as soon as the background copy has bound its listeners.
///
/// # Errors
///
/// Errors of going into the background, binding the listeners and writing the PID file.
/// Failures of single connections are logged and do not end the tunnel.
pub fn run(options: Options) -> Result<(), TunnelError> {
    let background_child = background::is_background_child();
    if options.background && !background_child {
        return background::start_in_background();
    }
    if background_child {
        background::detach_session()?;
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(TunnelError::io("starting the tokio runtime"))?;
    let result = runtime.block_on(async {
        let signals = StopSignals::register()?;
        let mut listeners = Vec::new();
        let mut udp_listener = None;
        if options.udp {
            udp_listener = Some(udp::bind_listener(&options)?);
        } else {
            for address in &options.listen {
                listeners.extend(Listener::bind(address).await?);
            }
        }
        let _pid_file = options
            .pidfile
            .as_deref()
            .map(PidFile::create)
            .transpose()?;
        if background_child {
            background::report_ready()?;
        }

        let starttls = PoolStarttls::new(options.socket_path.clone());
        if let Some(listener) = udp_listener {
            let options = std::sync::Arc::new(options);
            return udp::serve(options, std::sync::Arc::new(starttls), listener, signals).await;
        }
        Tunnel::new(options, starttls)
            .serve(listeners, signals)
            .await;
        Ok(())
    });
    runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
    result
}
