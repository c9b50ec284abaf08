//! `tlspool-admin`: reads and changes the TLS Pool databases. See `tlspool-admin --help` and
//! tlspool-admin(8).

use std::process::ExitCode;

use argh::FromArgs;
use tlspool_daemon::admin::{self, AdminArgs};

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(code) => return code,
    };
    let mut stdout = std::io::stdout().lock();
    match admin::run(&args, &mut stdout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if err.downcast_ref::<admin::ChainInvalid>().is_none() {
                eprintln!("tlspool-admin: {err:#}");
            }
            ExitCode::from(admin::exit_code(&args.command, &err))
        }
    }
}

/// Parses the command line as `argh::from_env` does, but exits with status 2 for a usage
/// error of `check-chain`, whose status 1 means an invalid chain.
fn parse_args() -> Result<AdminArgs, ExitCode> {
    let strings: Vec<String> = std::env::args().collect();
    let Some((program, rest)) = strings.split_first() else {
        return Err(ExitCode::from(2));
    };
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    AdminArgs::from_args(&[program.as_str()], &rest).map_err(|early| match early.status {
        Ok(()) => {
            println!("{}", early.output);
            ExitCode::SUCCESS
        }
        Err(()) => {
            eprintln!(
                "{}\nRun {program} --help for more information.",
                early.output
            );
            ExitCode::from(if rest.contains(&"check-chain") { 2 } else { 1 })
        }
    })
}
