//! `tlspool-admin`: reads and changes the TLS Pool databases. See `tlspool-admin --help` and
//! tlspool-admin(8).

use std::process::ExitCode;

use tlspool_daemon::admin::{self, AdminArgs};

fn main() -> ExitCode {
    let args: AdminArgs = argh::from_env();
    let mut stdout = std::io::stdout().lock();
    match admin::run(&args, &mut stdout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tlspool-admin: {err:#}");
            ExitCode::FAILURE
        }
    }
}
