//! `tlspool`: the TLS Pool daemon. Parses the command line and runs the daemon; every error
//! is printed with its chain of causes and ends the process with exit status 1.

use std::process::ExitCode;

use tlspool_daemon::Options;

fn main() -> ExitCode {
    // SIGPIPE needs no handler here: the Rust runtime sets it to SIG_IGN before `main`, so a
    // client that closes its end makes a write fail with EPIPE instead of ending the daemon.
    let options: Options = argh::from_env();
    match tlspool_daemon::run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tlspool: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
