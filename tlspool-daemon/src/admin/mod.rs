//! `tlspool-admin`: reads and changes the localid, disclose and trust databases.
//!
//! Each subcommand opens the LMDB environment named by `dbenv_dir` in the configuration file,
//! does its work in one transaction and exits. Listing commands print one entry per line,
//! fields separated by a tab, in a fixed order per database:
//!
//! * localid: `DONAI TYPE FLAGS PKCS11-URI CREDENTIAL-LENGTH`
//! * disclose: `SELECTOR LOCAL-ID`
//! * trust: `HEX-KEY TYPE FLAGS VALEXP DATA-LENGTH`
//!
//! `FLAGS` is a comma-separated list of flag words, or `-` for none. Inside a field, a backslash,
//! tab, newline, carriage return or other control byte is written as `\\`, `\t`, `\n`, `\r` or
//! `\xHH`, so every entry stays on one line.

mod card;
mod check_chain;
mod config;
mod db;
mod dev_init;
mod disclose;
mod flags;
mod localid;
mod output;
mod trust;
mod valexp;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use argh::FromArgs;
use tlspool_core::db::{DbEnv, OpenMode};

pub use check_chain::{ChainInvalid, CheckChainArgs};
pub use db::DbArgs;
pub use dev_init::DevInitArgs;
pub use disclose::DiscloseArgs;
pub use localid::LocalIdArgs;
pub use trust::TrustArgs;
pub use valexp::ValexpArgs;

/// Configuration file read when `-c` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/tlspool.conf";

/// Reads and changes the TLS Pool databases (localid, disclose, trust).
#[derive(Debug, FromArgs)]
pub struct AdminArgs {
    /// configuration file that sets dbenv_dir and the db_localid, db_disclose and db_trust
    /// names (default /etc/tlspool.conf)
    #[argh(option, short = 'c', default = "PathBuf::from(DEFAULT_CONFIG)")]
    pub config: PathBuf,

    /// the database to work on
    #[argh(subcommand)]
    pub command: Command,
}

/// The database subcommands.
#[derive(Debug, FromArgs)]
#[argh(subcommand)]
pub enum Command {
    /// Local identities and their credentials.
    LocalId(LocalIdArgs),
    /// Selectors of remote peers and the local identities shown to them.
    Disclose(DiscloseArgs),
    /// Trust anchors, pinned credentials and revocation lists.
    Trust(TrustArgs),
    /// Whole databases: create, export and import.
    Db(DbArgs),
    /// A development setup: token, test CA, certificates, databases and configuration.
    DevInit(DevInitArgs),
    /// Validate a peer's certificate chain and name against the trust anchors.
    CheckChain(CheckChainArgs),
    /// Print the normal form of a validation expression and trace its evaluation.
    Valexp(ValexpArgs),
}

/// Runs one `tlspool-admin` command, writing its output to `out`.
///
/// # Errors
///
/// Any failure, with the step that failed as context; the binary prints it and exits with
/// the status [`exit_code`] returns.
pub fn run(args: &AdminArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    match &args.command {
        // These do not open the databases named by the configuration: dev-init writes the
        // configuration, check-chain reads it only without --anchors, valexp never.
        Command::DevInit(cmd) => dev_init::run(cmd, out),
        Command::CheckChain(cmd) => check_chain::run(&args.config, cmd, out),
        Command::Valexp(cmd) => valexp::run(cmd, out),
        Command::LocalId(cmd) => localid::run(&config::DbSettings::load(&args.config)?, cmd, out),
        Command::Disclose(cmd) => disclose::run(&config::DbSettings::load(&args.config)?, cmd, out),
        Command::Trust(cmd) => trust::run(&config::DbSettings::load(&args.config)?, cmd, out),
        Command::Db(cmd) => db::run(&config::DbSettings::load(&args.config)?, cmd, out),
    }
}

/// Opens the environment for reading (`ReadOnly`) or for changes (`ReadWrite`, which also
/// creates missing databases).
fn open_env(settings: &config::DbSettings, mode: OpenMode) -> anyhow::Result<DbEnv> {
    let hint = match mode {
        OpenMode::ReadOnly | OpenMode::ReadWriteExisting => {
            "; `tlspool-admin db create` creates missing databases"
        }
        OpenMode::ReadWrite => "",
    };
    DbEnv::open(&settings.dbenv_dir, &settings.names, mode).with_context(|| {
        format!(
            "opening the databases in {} (dbenv_dir of {}){hint}",
            settings.dbenv_dir.display(),
            settings.config_path.display()
        )
    })
}

/// Reads a whole input file; `-` is standard input.
fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut data)
            .context("reading standard input")?;
        return Ok(data);
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Writes `data` to the output file named on the command line.
fn write_output(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, data).with_context(|| format!("writing {}", path.display()))
}

/// Returns the exit status for a failed `command`: 1, except for `check-chain`, which exits
/// with 1 for an invalid chain and 2 for a usage or I/O error.
pub fn exit_code(command: &Command, err: &anyhow::Error) -> u8 {
    match command {
        Command::CheckChain(_) => check_chain::exit_code(err),
        _ => 1,
    }
}
