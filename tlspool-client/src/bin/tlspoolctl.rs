//! `tlspoolctl`: queries and controls the TLS Pool daemon over its UNIX socket.
//!
//! Exit status 0 on success and 1 on any failure, with the reason on standard error.

use std::io::{self, Write as _};
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

use tlspool_client::ctl::{self, Options};

fn main() -> ExitCode {
    let options: Options = argh::from_env();
    init_logging();

    let mut stdout = io::stdout().lock();
    let result = ctl::run(&options, &mut stdout).and_then(|()| {
        stdout
            .flush()
            .map_err(|source| tlspool_client::ClientError::Io {
                call: "write to standard output",
                source,
            })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tlspoolctl: {}", ctl::error_message(&error));
            ExitCode::FAILURE
        }
    }
}

/// Logs to standard error as `RUST_LOG` selects; nothing when it is unset, because every
/// failure is reported as the one error message.
fn init_logging() {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::OFF.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .init();
}
