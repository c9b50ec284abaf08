//! `tlspool-admin localid`: local identities and their credentials.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail, ensure};
use argh::FromArgs;
use tlspool_core::db::{CredentialType, Database, DbRead, Donai, LocalIdEntry, OpenMode};
use tlspool_pkcs11::CardKeyReference;
use tlspool_validate::valexp::Valexp;

use super::card::CardArgs;
use super::config::DbSettings;
use super::flags::{self, LocalIdSpec};
use super::output::write_line;
use super::{open_env, read_input, write_output};

/// Maximum size of one stored localid value in bytes, the limit of the original tool.
const MAX_VALUE_LEN: usize = 5000;

/// Local identities and their credentials.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "localid")]
pub struct LocalIdArgs {
    #[argh(subcommand)]
    action: LocalIdAction,
}

#[derive(Debug, FromArgs)]
#[argh(subcommand)]
enum LocalIdAction {
    Set(SetArgs),
    Get(GetArgs),
    List(ListArgs),
    Delete(DeleteArgs),
    Card(CardArgs),
}

/// Replace the credentials of one type of a local identity. With no URI and file pairs, only
/// delete them. A pgp value may name an OpenPGP card key as openpgp-card:MMMM:SSSSSSSS.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "set")]
struct SetArgs {
    /// the local identity, user@domain or domain
    #[argh(positional)]
    local_id: String,
    /// comma-separated words: one type (x509, pgp, krb5, valexp) and roles and options
    /// (client, server, chained, nop11)
    #[argh(positional)]
    flags: String,
    /// pairs of PKCS #11 URI (openpgp-card:MMMM:SSSSSSSS for a pgp key on an OpenPGP card,
    /// the expression for valexp, empty with nop11) and credential file (- for standard input)
    #[argh(positional)]
    pairs: Vec<String>,
}

/// Print the credentials of a local identity, optionally only those matching TYPE.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "get")]
struct GetArgs {
    /// the local identity
    #[argh(positional)]
    local_id: String,
    /// comma-separated words to match: a type and roles
    #[argh(positional)]
    flags: Option<String>,
    /// write the credential of the first match to this file
    #[argh(option, short = 'o')]
    output: Option<PathBuf>,
}

/// Print every credential of every local identity.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "list")]
struct ListArgs {}

/// Delete the credentials of a local identity, all of them or those matching TYPE.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "delete")]
struct DeleteArgs {
    /// the local identity
    #[argh(positional)]
    local_id: String,
    /// comma-separated words to match: a type and roles
    #[argh(positional)]
    flags: Option<String>,
}

/// Runs a `localid` subcommand.
pub(crate) fn run(
    settings: &DbSettings,
    args: &LocalIdArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match &args.action {
        LocalIdAction::Set(args) => set(settings, args),
        LocalIdAction::Get(args) => get(settings, args, out),
        LocalIdAction::List(_) => list(settings, out),
        LocalIdAction::Delete(args) => delete(settings, args),
        LocalIdAction::Card(args) => super::card::run(settings, args, out),
    }
}

fn set(settings: &DbSettings, args: &SetArgs) -> anyhow::Result<()> {
    let local_id = Donai::parse(&args.local_id)?;
    let spec = flags::parse_localid(&args.flags)?;
    let Some(credential_type) = spec.credential_type else {
        bail!(
            "{:?} names no credential type; add x509, pgp, krb5 or valexp",
            args.flags
        );
    };
    ensure!(
        args.pairs.len() % 2 == 0,
        "expected pairs of PKCS #11 URI and credential file, found {} arguments",
        args.pairs.len()
    );
    let mut new_values = Vec::new();
    for pair in args.pairs.chunks_exact(2) {
        new_values.push(build_value(&spec, credential_type, &pair[0], &pair[1])?);
    }
    replace_values(settings, &local_id, credential_type, new_values)
}

/// Replaces the values of `credential_type` of `local_id` with `new_values` in one write
/// transaction.
pub(super) fn replace_values(
    settings: &DbSettings,
    local_id: &Donai,
    credential_type: CredentialType,
    new_values: Vec<Vec<u8>>,
) -> anyhow::Result<()> {
    let env = open_env(settings, OpenMode::ReadWrite)?;
    let mut txn = env.write()?;
    let key = local_id.to_string();
    let mut values = txn.values(Database::LocalId, key.as_bytes())?;
    values.retain(|value| type_byte(value) != Some(credential_type.code()));
    values.extend(new_values);
    txn.set_values(Database::LocalId, key.as_bytes(), &values)?;
    txn.commit()?;
    Ok(())
}

/// Builds one stored value from a URI and credential file argument.
fn build_value(
    spec: &LocalIdSpec,
    credential_type: CredentialType,
    uri: &str,
    file: &str,
) -> anyhow::Result<Vec<u8>> {
    if credential_type == CredentialType::Valexp {
        check_valexp(spec, uri)?;
    }
    let pkcs11_uri = if spec.no_pkcs11 {
        ensure!(
            uri.is_empty(),
            "with nop11 the URI argument must be empty, found {uri:?}"
        );
        None
    } else if CardKeyReference::is_card_reference(uri) {
        ensure!(
            credential_type == CredentialType::OpenPgp,
            "the OpenPGP card key {uri:?} can only be used by a pgp value"
        );
        CardKeyReference::parse(uri).with_context(|| format!("invalid card key {uri:?}"))?;
        Some(uri.to_owned())
    } else {
        ensure!(
            credential_type == CredentialType::Valexp || uri.starts_with("pkcs11:"),
            "the PKCS #11 URI {uri:?} does not start with pkcs11:"
        );
        Some(uri.to_owned())
    };
    let entry = LocalIdEntry {
        credential_type,
        flags: spec.flags,
        pkcs11_uri,
        credential: read_input(file.as_ref())?,
    };
    encode_value(&entry, file)
}

/// Checks the expression of a valexp value, because the daemon rejects every peer of an
/// identity whose stored expression is empty or does not parse.
fn check_valexp(spec: &LocalIdSpec, expression: &str) -> anyhow::Result<()> {
    ensure!(
        !spec.no_pkcs11,
        "a valexp value stores its expression in the URI position, so it cannot be nop11"
    );
    ensure!(
        !expression.trim().is_empty(),
        "the validation expression is empty; give a postfix expression such as IT& \
         (the peer carries the remote identity and its chain validates to a trust anchor)"
    );
    Valexp::parse(expression.trim())
        .with_context(|| format!("invalid validation expression {expression:?}"))?;
    Ok(())
}

/// Encodes `entry`, whose credential came from `source`, within [`MAX_VALUE_LEN`].
pub(super) fn encode_value(entry: &LocalIdEntry, source: &str) -> anyhow::Result<Vec<u8>> {
    let value = entry.encode()?;
    ensure!(
        value.len() <= MAX_VALUE_LEN,
        "the value for {source} is {} bytes, over the maximum of {MAX_VALUE_LEN}",
        value.len()
    );
    Ok(value)
}

fn get(settings: &DbSettings, args: &GetArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let local_id = Donai::parse(&args.local_id)?;
    let filter = args
        .flags
        .as_deref()
        .map(flags::parse_localid)
        .transpose()?;
    let env = open_env(settings, OpenMode::ReadOnly)?;
    let entries = env.read()?.localid_entries(&local_id)?;
    let matches: Vec<&LocalIdEntry> = entries
        .iter()
        .filter(|entry| filter.is_none_or(|spec| spec_matches(&spec, entry)))
        .collect();
    let Some(first) = matches.first() else {
        bail!("no matching credentials for local identity {local_id}");
    };
    for entry in &matches {
        print_entry(out, &local_id.to_string(), entry)?;
    }
    if let Some(path) = &args.output {
        write_output(path, &first.credential)?;
    }
    Ok(())
}

fn list(settings: &DbSettings, out: &mut dyn Write) -> anyhow::Result<()> {
    let env = open_env(settings, OpenMode::ReadOnly)?;
    for (key, value) in env.export(Database::LocalId)? {
        let key = String::from_utf8_lossy(&key);
        let entry = LocalIdEntry::decode(&value)
            .with_context(|| format!("decoding a credential of {key}"))?;
        print_entry(out, &key, &entry)?;
    }
    Ok(())
}

fn delete(settings: &DbSettings, args: &DeleteArgs) -> anyhow::Result<()> {
    let local_id = Donai::parse(&args.local_id)?;
    let filter = args
        .flags
        .as_deref()
        .map(flags::parse_localid)
        .transpose()?;
    let env = open_env(settings, OpenMode::ReadWrite)?;
    let mut txn = env.write()?;
    let key = local_id.to_string();
    let values = txn.values(Database::LocalId, key.as_bytes())?;
    let mut kept = Vec::new();
    for value in &values {
        let entry = LocalIdEntry::decode(value)
            .with_context(|| format!("decoding a credential of {local_id}"))?;
        if !filter.is_none_or(|spec| spec_matches(&spec, &entry)) {
            kept.push(value.clone());
        }
    }
    ensure!(
        kept.len() < values.len(),
        "no matching credentials for local identity {local_id}"
    );
    txn.set_values(Database::LocalId, key.as_bytes(), &kept)?;
    txn.commit()?;
    Ok(())
}

/// Tells whether `entry` has the type (if given) and every role and option bit of `spec`.
fn spec_matches(spec: &LocalIdSpec, entry: &LocalIdEntry) -> bool {
    spec.credential_type
        .is_none_or(|kind| kind == entry.credential_type)
        && entry.flags.contains(spec.flags)
        && (!spec.no_pkcs11 || entry.pkcs11_uri.is_none())
}

fn type_byte(value: &[u8]) -> Option<u8> {
    value.get(3).copied()
}

fn print_entry(out: &mut dyn Write, local_id: &str, entry: &LocalIdEntry) -> anyhow::Result<()> {
    let length = entry.credential.len().to_string();
    write_line(
        out,
        &[
            local_id,
            entry.credential_type.name(),
            &flags::localid_words(entry),
            entry.pkcs11_uri.as_deref().unwrap_or(""),
            &length,
        ],
    )
}
