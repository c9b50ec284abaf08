//! `tlspool-admin localid card`: a PGP local identity whose private key is the authentication
//! key of an OpenPGP card.
//!
//! The command reads the public key in the card's authentication slot through PC/SC and builds
//! a version 4 OpenPGP key around it with sequoia. The primary key only certifies: it is an
//! Ed25519 key generated in memory that signs the user ID `<LOCALID>` and the binding of the
//! card's key as the authentication subkey, and it is then dropped. The stored pgp value names
//! the card as `openpgp-card:MMMM:SSSSSSSS`, so the daemon signs its handshakes on the card.
//!
//! NOTE: the subkey's creation time is the time of this command, not the card's key generation
//! time, so its OpenPGP fingerprint differs from the one the card stores for the key.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, ensure};
use argh::FromArgs;
use tlspool_core::db::{CredentialType, Donai, LocalIdEntry};
use tlspool_pkcs11::{CardKeyReference, OpenPgpCard};

use super::config::DbSettings;
use super::dev_init::{OpenPgpVersion, issue_openpgp_key_for};
use super::flags;
use super::localid::{encode_value, replace_values};
use super::output::write_line;
use super::write_output;

/// Store a pgp value for a local identity whose key is the authentication key of an OpenPGP
/// card, replacing its other pgp values. Needs the card in a reader and pcscd running.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "card")]
pub(super) struct CardArgs {
    /// the local identity, user@domain or domain
    #[argh(positional)]
    local_id: String,
    /// the card's ident, MMMM:SSSSSSSS in hexadecimal (manufacturer and serial number)
    #[argh(positional)]
    ident: String,
    /// comma-separated roles of the value: client, server or both (default client,server)
    #[argh(option, default = "String::from(\"client,server\")")]
    roles: String,
    /// also write the binary OpenPGP public key to this file
    #[argh(option, short = 'o')]
    output: Option<PathBuf>,
}

/// Runs `localid card` and prints the stored value: identity, type, key reference and the
/// fingerprint of the new OpenPGP key.
pub(super) fn run(
    settings: &DbSettings,
    args: &CardArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let local_id = Donai::parse(&args.local_id)?;
    let reference = CardKeyReference::from_ident(&args.ident)
        .with_context(|| format!("invalid card ident {:?}", args.ident))?;
    let spec = flags::parse_localid(&format!("pgp,{}", args.roles))?;
    ensure!(
        spec.credential_type == Some(CredentialType::OpenPgp) && !spec.no_pkcs11,
        "--roles {:?} may contain only client and server",
        args.roles
    );

    let spki = read_card_key(&reference)?;
    let user_id = format!("<{local_id}>");
    let address = local_id.to_string();
    let issued = issue_openpgp_key_for(&user_id, &address, &spki, OpenPgpVersion::V4)?;

    let entry = LocalIdEntry {
        credential_type: CredentialType::OpenPgp,
        flags: spec.flags,
        pkcs11_uri: Some(reference.to_string()),
        credential: issued.transferable_public_key.clone(),
    };
    let value = encode_value(&entry, &format!("the OpenPGP key of {reference}"))?;
    replace_values(settings, &local_id, CredentialType::OpenPgp, vec![value])?;
    if let Some(path) = &args.output {
        write_output(path, &issued.transferable_public_key)?;
    }
    write_line(
        out,
        &[&address, "pgp", &reference.to_string(), &issued.fingerprint],
    )
}

/// Reads the DER SubjectPublicKeyInfo of the card's authentication key.
fn read_card_key(reference: &CardKeyReference) -> anyhow::Result<Vec<u8>> {
    let ident = reference.ident();
    let mut card = OpenPgpCard::open(ident)
        .with_context(|| format!("opening OpenPGP card {ident}; is pcscd running?"))?;
    let key = card
        .authentication_key()
        .with_context(|| format!("reading the authentication key of OpenPGP card {ident}"))?;
    Ok(key.to_subject_public_key_info()?)
}
