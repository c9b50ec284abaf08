//! `tlstunnel`: parses the command line, sets up logging to standard error and runs the
//! tunnel. Command-line errors exit with status 2, other errors with status 1.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

use tlstunnel::{Command, TunnelError};

fn main() -> ExitCode {
    let command = match tlstunnel::cli::parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(error) => return fail(&error),
    };
    let options = match command {
        Command::Help => {
            print!("{}", tlstunnel::cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Command::Run(options) => options,
    };

    // RUST_LOG overrides the default of info lines and above.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    match tlstunnel::run(*options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

/// Prints `error` with its causes and returns its exit status.
fn fail(error: &TunnelError) -> ExitCode {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    eprintln!("tlstunnel: error: {message}");
    ExitCode::from(error.exit_code())
}
