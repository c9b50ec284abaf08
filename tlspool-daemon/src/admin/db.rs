//! `tlspool-admin db`: whole databases, created, exported and imported as raw pairs.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use argh::FromArgs;
use tlspool_core::db::{Database, OpenMode, dump};

use super::config::DbSettings;
use super::{open_env, read_input};

/// Whole databases: create, export and import.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "db")]
pub struct DbArgs {
    #[argh(subcommand)]
    action: DbAction,
}

#[derive(Debug, FromArgs)]
#[argh(subcommand)]
enum DbAction {
    Create(CreateArgs),
    Export(ExportArgs),
    Import(ImportArgs),
}

/// Create the environment files and any missing database; run once before the daemon's first
/// start.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "create")]
struct CreateArgs {}

/// Write every (key, value) pair of a database as a db_dump text dump.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "export")]
struct ExportArgs {
    /// localid, disclose or trust
    #[argh(positional)]
    database: Database,
    /// write the dump to this file instead of standard output
    #[argh(option, short = 'o')]
    output: Option<PathBuf>,
}

/// Add the (key, value) pairs of a db_dump text dump to a database, after its existing values.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "import")]
struct ImportArgs {
    /// empty the database first
    #[argh(switch)]
    replace: bool,
    /// localid, disclose or trust
    #[argh(positional)]
    database: Database,
    /// the dump (- for standard input)
    #[argh(positional)]
    file: PathBuf,
}

/// Runs a `db` subcommand.
pub(crate) fn run(settings: &DbSettings, args: &DbArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    match &args.action {
        DbAction::Create(_) => open_env(settings, OpenMode::ReadWrite).map(drop),
        DbAction::Export(args) => export(settings, args, out),
        DbAction::Import(args) => import(settings, args),
    }
}

fn export(settings: &DbSettings, args: &ExportArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let env = open_env(settings, OpenMode::ReadOnly)?;
    let pairs = env.export(args.database)?;
    match &args.output {
        Some(path) => {
            let mut file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            dump::write_dump(&mut file, &pairs)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => dump::write_dump(out, &pairs).context("writing the dump")?,
    }
    Ok(())
}

fn import(settings: &DbSettings, args: &ImportArgs) -> anyhow::Result<()> {
    let text = read_input(&args.file)?;
    let pairs = dump::read_dump(&text[..])
        .with_context(|| format!("reading the dump {}", args.file.display()))?;
    let env = open_env(settings, OpenMode::ReadWrite)?;
    env.import(args.database, pairs, args.replace)
        .with_context(|| format!("importing into the {} database", args.database))?;
    Ok(())
}
