//! `tlspool-admin trust`: trust anchors, pinned credentials and revocation lists.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail, ensure};
use argh::FromArgs;
use tlspool_core::db::{Database, DbRead, OpenMode, TrustEntry};

use super::config::DbSettings;
use super::flags::{self, TrustSpec};
use super::output::write_line;
use super::{open_env, read_input, write_output};

/// Trust anchors, pinned credentials and revocation lists.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "trust")]
pub struct TrustArgs {
    #[argh(subcommand)]
    action: TrustAction,
}

#[derive(Debug, FromArgs)]
#[argh(subcommand)]
enum TrustAction {
    Set(SetArgs),
    Get(GetArgs),
    List(ListArgs),
    Delete(DeleteArgs),
}

/// Replace the entries of one type under a key. Without a data file, only delete them.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "set")]
struct SetArgs {
    /// comma-separated words: a type (x509, pgp, revoke with x509, pinned with x509 or pgp)
    /// and roles and options (client, server, notroot)
    #[argh(positional)]
    flags: String,
    /// the key in hex: anchor key identifier, OpenPGP key id or SHA-256 fingerprint
    #[argh(positional)]
    hex_key: String,
    /// the validation expression; 1 means no constraint
    #[argh(positional)]
    valexp: String,
    /// the data: anchor certificate or key, pinning timestamps or revocation list (- for
    /// standard input)
    #[argh(positional)]
    file: Option<PathBuf>,
}

/// Print the entries under a key, optionally only those matching FLAGS.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "get")]
struct GetArgs {
    /// the key in hex
    #[argh(positional)]
    hex_key: String,
    /// comma-separated words to match: a type and roles
    #[argh(positional)]
    flags: Option<String>,
    /// write the data of the first match to this file
    #[argh(option, short = 'o')]
    output: Option<PathBuf>,
}

/// Print every entry.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "list")]
struct ListArgs {}

/// Delete the entries under a key, all of them or those matching FLAGS.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "delete")]
struct DeleteArgs {
    /// the key in hex
    #[argh(positional)]
    hex_key: String,
    /// comma-separated words to match: a type and roles
    #[argh(positional)]
    flags: Option<String>,
}

/// Runs a `trust` subcommand.
pub(crate) fn run(
    settings: &DbSettings,
    args: &TrustArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match &args.action {
        TrustAction::Set(args) => set(settings, args),
        TrustAction::Get(args) => get(settings, args, out),
        TrustAction::List(_) => list(settings, out),
        TrustAction::Delete(args) => delete(settings, args),
    }
}

fn set(settings: &DbSettings, args: &SetArgs) -> anyhow::Result<()> {
    let spec = flags::parse_trust(&args.flags)?;
    let Some(trust_type) = spec.trust_type else {
        bail!("{:?} names no trust type; add x509 or pgp", args.flags);
    };
    let key = parse_hex_key(&args.hex_key)?;
    let new_value = match &args.file {
        Some(path) => Some(
            TrustEntry {
                trust_type,
                flags: spec.flags,
                valexp: args.valexp.clone(),
                data: read_input(path)?,
            }
            .encode()?,
        ),
        None => None,
    };

    let env = open_env(settings, OpenMode::ReadWrite)?;
    let mut txn = env.write()?;
    let mut values = txn.values(Database::Trust, &key)?;
    values.retain(|value| type_bits(value) != Some(trust_type.code()));
    values.extend(new_value);
    txn.set_values(Database::Trust, &key, &values)?;
    txn.commit()?;
    Ok(())
}

fn get(settings: &DbSettings, args: &GetArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let key = parse_hex_key(&args.hex_key)?;
    let filter = args.flags.as_deref().map(flags::parse_trust).transpose()?;
    let env = open_env(settings, OpenMode::ReadOnly)?;
    let entries = env.read()?.trust_entries(&key)?;
    let matches: Vec<&TrustEntry> = entries
        .iter()
        .filter(|entry| filter.is_none_or(|spec| spec_matches(&spec, entry)))
        .collect();
    let Some(first) = matches.first() else {
        bail!("no matching trust entries under key {}", args.hex_key);
    };
    for entry in &matches {
        print_entry(out, &key, entry)?;
    }
    if let Some(path) = &args.output {
        write_output(path, &first.data)?;
    }
    Ok(())
}

fn list(settings: &DbSettings, out: &mut dyn Write) -> anyhow::Result<()> {
    let env = open_env(settings, OpenMode::ReadOnly)?;
    for (key, value) in env.export(Database::Trust)? {
        let entry = TrustEntry::decode(&value)
            .with_context(|| format!("decoding a trust entry under key {}", hex::encode(&key)))?;
        print_entry(out, &key, &entry)?;
    }
    Ok(())
}

fn delete(settings: &DbSettings, args: &DeleteArgs) -> anyhow::Result<()> {
    let key = parse_hex_key(&args.hex_key)?;
    let filter = args.flags.as_deref().map(flags::parse_trust).transpose()?;
    let env = open_env(settings, OpenMode::ReadWrite)?;
    let mut txn = env.write()?;
    let values = txn.values(Database::Trust, &key)?;
    let mut kept = Vec::new();
    for value in &values {
        let entry = TrustEntry::decode(value)
            .with_context(|| format!("decoding a trust entry under key {}", args.hex_key))?;
        if !filter.is_none_or(|spec| spec_matches(&spec, &entry)) {
            kept.push(value.clone());
        }
    }
    ensure!(
        kept.len() < values.len(),
        "no matching trust entries under key {}",
        args.hex_key
    );
    txn.set_values(Database::Trust, &key, &kept)?;
    txn.commit()?;
    Ok(())
}

fn parse_hex_key(text: &str) -> anyhow::Result<Vec<u8>> {
    let key = hex::decode(text).with_context(|| format!("invalid hex key {text:?}"))?;
    ensure!(!key.is_empty(), "the hex key is empty");
    Ok(key)
}

/// Returns the type bits of a stored value's flag word, if it has one.
fn type_bits(value: &[u8]) -> Option<u32> {
    let word = value.first_chunk::<4>()?;
    Some(u32::from_be_bytes(*word) & 0x0cff)
}

/// Tells whether `entry` has the type (if given) and every role and option bit of `spec`.
fn spec_matches(spec: &TrustSpec, entry: &TrustEntry) -> bool {
    spec.trust_type.is_none_or(|kind| kind == entry.trust_type) && entry.flags.contains(spec.flags)
}

fn print_entry(out: &mut dyn Write, key: &[u8], entry: &TrustEntry) -> anyhow::Result<()> {
    let length = entry.data.len().to_string();
    write_line(
        out,
        &[
            &hex::encode(key),
            entry.trust_type.name(),
            &flags::trust_words(entry),
            &entry.valexp,
            &length,
        ],
    )
}
