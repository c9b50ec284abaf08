//! `tlspool-admin disclose`: which local identities the pool shows to which remote peers.

use std::collections::HashSet;
use std::io::Write;

use anyhow::{Context, bail, ensure};
use argh::FromArgs;
use tlspool_core::db::{Database, DbRead, Donai, OpenMode, Selector};

use super::config::DbSettings;
use super::open_env;
use super::output::write_line;

/// Selectors of remote peers and the local identities shown to them.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "disclose")]
pub struct DiscloseArgs {
    #[argh(subcommand)]
    action: DiscloseAction,
}

#[derive(Debug, FromArgs)]
#[argh(subcommand)]
enum DiscloseAction {
    Set(SetArgs),
    Get(GetArgs),
    List(ListArgs),
    Delete(DeleteArgs),
}

/// Replace the local identities listed under a selector, in order of preference; each must
/// exist in the localid database. With none, delete the selector.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "set")]
struct SetArgs {
    /// remote peers: user@domain, domain, @domain, .domain, @.domain, . or @.
    #[argh(positional)]
    selector: String,
    /// local identities, most preferred first
    #[argh(positional)]
    local_ids: Vec<String>,
}

/// Print the local identities listed under a selector.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "get")]
struct GetArgs {
    /// walk from the selector to ever more general ones, as a client handshake does, and print
    /// the first that has entries
    #[argh(switch)]
    walk: bool,
    /// the selector, or with --walk the start of the walk
    #[argh(positional)]
    selector: String,
}

/// Print every selector and local identity pair.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "list")]
struct ListArgs {}

/// Delete a selector with all its local identities.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "delete")]
struct DeleteArgs {
    /// the selector
    #[argh(positional)]
    selector: String,
}

/// Runs a `disclose` subcommand.
pub(crate) fn run(
    settings: &DbSettings,
    args: &DiscloseArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match &args.action {
        DiscloseAction::Set(args) => set(settings, args),
        DiscloseAction::Get(args) => get(settings, args, out),
        DiscloseAction::List(_) => list(settings, out),
        DiscloseAction::Delete(args) => delete(settings, args),
    }
}

fn set(settings: &DbSettings, args: &SetArgs) -> anyhow::Result<()> {
    let selector = Selector::parse(&args.selector)?;
    let mut seen = HashSet::new();
    let mut local_ids = Vec::new();
    for text in &args.local_ids {
        let local_id = Donai::parse(text)?;
        ensure!(
            seen.insert(local_id.clone()),
            "local identity {local_id} is listed twice"
        );
        local_ids.push(local_id);
    }

    let env = open_env(settings, OpenMode::ReadWrite)?;
    let mut txn = env.write()?;
    for local_id in &local_ids {
        let key = local_id.to_string();
        ensure!(
            !txn.values(Database::LocalId, key.as_bytes())?.is_empty(),
            "local identity {local_id} is not in the localid database; add it with \
             `tlspool-admin localid set` first"
        );
    }
    let values: Vec<String> = local_ids.iter().map(ToString::to_string).collect();
    txn.set_values(Database::Disclose, selector.to_string().as_bytes(), &values)?;
    txn.commit()?;
    Ok(())
}

fn get(settings: &DbSettings, args: &GetArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let start = Selector::parse(&args.selector)?;
    let env = open_env(settings, OpenMode::ReadOnly)?;
    let txn = env.read()?;
    let candidates: Vec<Selector> = if args.walk {
        start.generalisations().map(|step| step.selector).collect()
    } else {
        vec![start.clone()]
    };
    for selector in candidates {
        let local_ids = txn.disclosed_ids(&selector)?;
        if local_ids.is_empty() {
            continue;
        }
        let key = selector.to_string();
        for local_id in local_ids {
            write_line(out, &[&key, &local_id.to_string()])?;
        }
        return Ok(());
    }
    if args.walk {
        bail!("no selector from {start} up to the most general one has entries");
    }
    bail!("selector {start} has no entries")
}

fn list(settings: &DbSettings, out: &mut dyn Write) -> anyhow::Result<()> {
    let env = open_env(settings, OpenMode::ReadOnly)?;
    for (key, value) in env.export(Database::Disclose)? {
        let key = String::from_utf8_lossy(&key);
        let value = std::str::from_utf8(&value)
            .with_context(|| format!("a local identity under {key} is not valid UTF-8"))?;
        write_line(out, &[&key, value])?;
    }
    Ok(())
}

fn delete(settings: &DbSettings, args: &DeleteArgs) -> anyhow::Result<()> {
    let selector = Selector::parse(&args.selector)?;
    let env = open_env(settings, OpenMode::ReadWrite)?;
    let mut txn = env.write()?;
    ensure!(
        txn.delete(Database::Disclose, selector.to_string().as_bytes())?,
        "selector {selector} has no entries"
    );
    txn.commit()?;
    Ok(())
}
