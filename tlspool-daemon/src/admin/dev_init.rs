//! `tlspool-admin dev-init`: a self-contained development setup in one directory.
//!
//! The directory receives a SoftHSM2 token (`softhsm2.conf`, `tokens/`) and a test CA whose key
//! is generated on the token. Per `--domain`, the CA issues a server and a client certificate,
//! each for its own token key. The databases in `db/` list them, `tlspool.conf` configures the
//! daemon, and a file-based external peer identity serves tests. Per `--openpgp ADDRESS`, an
//! OpenPGP identity gets its authentication key on the token (see `identities::openpgp`), and
//! an external OpenPGP peer with its key in a file serves raw public key tests. The work runs
//! in two stages:
//!
//! 1. This process checks the arguments, creates the directory, writes `softhsm2.conf`,
//!    initialises the token with `softhsm2-util` and writes `tlspool.conf`.
//! 2. A child `tlspool-admin dev-init --token-stage` (see [`identities`]) generates the keys,
//!    issues the certificates and fills the databases.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` from the process environment when the module is loaded, and
//! both cryptoki and GnuTLS load it into the process that uses the token. Setting the variable
//! in this process would take `std::env::set_var`, which edition 2024 makes unsafe because
//! another thread may read the environment at the same time. Re-executing `tlspool-admin` with
//! the variable in the child's environment avoids that, and keeps the token work on the same
//! code the daemon uses (tlspool-pkcs11 and the GnuTLS certificate builder), which running
//! `p11tool` and `certtool` in subprocesses would not.

mod identities;

pub(super) use identities::{OpenPgpVersion, issue_openpgp_key_for};

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};
use argh::FromArgs;
use tlspool_core::Config;
use tlspool_core::tls::KeyType;
use tlspool_pkcs11::KeyAlgorithm;

/// The SoftHSM2 PKCS #11 module of Debian's softhsm2 package.
const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// Label of the token that dev-init creates.
const TOKEN_LABEL: &str = "tlspool-dev";

/// PIN lengths SoftHSM2 2.6 accepts.
const PIN_LENGTHS: std::ops::RangeInclusive<usize> = 4..=255;

/// Create a development setup in DIR. It contains a SoftHSM2 token with a test CA and a server
/// and a client certificate per domain, the databases that list them, and a tlspool.conf.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "dev-init")]
pub struct DevInitArgs {
    /// directory to create the setup in; it must be absent or empty
    #[argh(positional)]
    dir: PathBuf,
    /// domain to issue a server and a client certificate for (repeat for several, at least
    /// one)
    #[argh(option)]
    domain: Vec<String>,
    /// user PIN of the new token, stored as pkcs11_pin in DIR/tlspool.conf (default: 16
    /// random hexadecimal digits)
    #[argh(option)]
    pin: Option<String>,
    /// key type of every key: rsa2048, rsa3072, p256, p384 or ed25519 (default p256)
    #[argh(option, default = "KeySpec::P256", from_str_fn(parse_key_spec))]
    key_type: KeySpec,
    /// user@domain address to create an OpenPGP identity for (repeat for several). It is sent
    /// as a raw public key, its authentication key is on the token, and the other identities
    /// trust it. Key types rsa2048, rsa3072, p256 and ed25519 only
    #[argh(option)]
    openpgp: Vec<String>,
    /// version of the OpenPGP keys: 4 (RFC 4880) or 6 (RFC 9580) (default 4)
    #[argh(
        option,
        default = "OpenPgpVersion::V4",
        from_str_fn(parse_openpgp_version)
    )]
    openpgp_version: OpenPgpVersion,
    /// internal: run the token stage (dev-init starts it with SOFTHSM2_CONF set)
    #[argh(switch, hidden_help)]
    token_stage: bool,
}

/// A `--key-type` word with the key types it stands for on the token and in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KeySpec {
    name: &'static str,
    token: KeyAlgorithm,
    memory: KeyType,
    /// Whether TLS 1.2 RSA key transport may use the key (keyEncipherment).
    encipherment: bool,
    /// Whether the key can be the authentication subkey of an `--openpgp` identity.
    openpgp: bool,
}

impl KeySpec {
    const P256: Self = Self {
        name: "p256",
        token: KeyAlgorithm::EcdsaP256,
        memory: KeyType::EcdsaP256,
        encipherment: false,
        openpgp: true,
    };

    const ALL: [Self; 5] = [
        Self {
            name: "rsa2048",
            token: KeyAlgorithm::Rsa2048,
            memory: KeyType::Rsa2048,
            encipherment: true,
            openpgp: true,
        },
        Self {
            name: "rsa3072",
            token: KeyAlgorithm::Rsa3072,
            memory: KeyType::Rsa3072,
            encipherment: true,
            openpgp: true,
        },
        Self::P256,
        Self {
            name: "p384",
            token: KeyAlgorithm::EcdsaP384,
            memory: KeyType::EcdsaP384,
            encipherment: false,
            openpgp: false,
        },
        Self {
            name: "ed25519",
            token: KeyAlgorithm::Ed25519,
            memory: KeyType::Ed25519,
            encipherment: false,
            openpgp: true,
        },
    ];
}

fn parse_openpgp_version(text: &str) -> Result<OpenPgpVersion, String> {
    match text {
        "4" => Ok(OpenPgpVersion::V4),
        "6" => Ok(OpenPgpVersion::V6),
        _ => Err(format!(
            "invalid OpenPGP key version {text:?}, expected 4 or 6"
        )),
    }
}

fn parse_key_spec(text: &str) -> Result<KeySpec, String> {
    KeySpec::ALL
        .into_iter()
        .find(|spec| spec.name == text)
        .ok_or_else(|| {
            format!("invalid key type {text:?}, expected rsa2048, rsa3072, p256, p384 or ed25519")
        })
}

/// The files of a setup directory.
#[derive(Debug, Clone)]
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn softhsm_conf(&self) -> PathBuf {
        self.dir.join("softhsm2.conf")
    }

    fn tokens(&self) -> PathBuf {
        self.dir.join("tokens")
    }

    fn db(&self) -> PathBuf {
        self.dir.join("db")
    }

    fn config(&self) -> PathBuf {
        self.dir.join("tlspool.conf")
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Runs `dev-init`: the first stage, or the token stage when `--token-stage` is given.
pub(crate) fn run(args: &DevInitArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    check_domains(&args.domain)?;
    check_openpgp_addresses(&args.openpgp)?;
    ensure!(
        args.openpgp.is_empty() || args.key_type.openpgp,
        "--key-type {} cannot be used with --openpgp: OpenPGP identities take rsa2048, \
         rsa3072, p256 or ed25519",
        args.key_type.name
    );
    if args.token_stage {
        return identities::run(args, out);
    }
    let pin = match &args.pin {
        Some(pin) => {
            check_pin(pin)?;
            pin.clone()
        }
        None => random_hex(8).context("drawing a random token PIN")?,
    };

    let layout = create_directory(&args.dir)?;
    write_softhsm_conf(&layout)?;
    init_token(&layout, &pin)?;
    write_config(&layout, &pin)?;
    run_token_stage(&layout, args, out)
}

/// Checks the `--domain` values: at least one, no duplicates, each a DNS name that can also
/// be a file name part.
fn check_domains(domains: &[String]) -> anyhow::Result<()> {
    ensure!(
        !domains.is_empty(),
        "dev-init needs at least one --domain NAME"
    );
    for (index, domain) in domains.iter().enumerate() {
        let valid_labels = domain.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
        ensure!(
            valid_labels && domain.len() <= 253,
            "invalid --domain {domain:?}: expected a DNS name such as dev.example.com \
             (letters, digits and hyphens in dot-separated labels, at most 253 characters)"
        );
        ensure!(
            !domains[..index].contains(domain),
            "--domain {domain:?} is given twice"
        );
    }
    Ok(())
}

/// Checks the `--openpgp` values: no duplicates, each `user@domain` with a plain user part and
/// a DNS name, as an OpenPGP user ID's email address and a file name part.
fn check_openpgp_addresses(addresses: &[String]) -> anyhow::Result<()> {
    for (index, address) in addresses.iter().enumerate() {
        let valid = address.split_once('@').is_some_and(|(user, domain)| {
            !user.is_empty()
                && user
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
                && check_domains(&[domain.to_owned()]).is_ok()
        });
        ensure!(
            valid,
            "invalid --openpgp {address:?}: expected user@domain such as alice@dev.example \
             (letters, digits and ._+- before the @)"
        );
        ensure!(
            !addresses[..index].contains(address),
            "--openpgp {address:?} is given twice"
        );
    }
    Ok(())
}

fn check_pin(pin: &str) -> anyhow::Result<()> {
    ensure!(
        PIN_LENGTHS.contains(&pin.len()),
        "invalid --pin: SoftHSM2 accepts {} to {} characters, the PIN has {}",
        PIN_LENGTHS.start(),
        PIN_LENGTHS.end(),
        pin.len()
    );
    ensure!(
        !pin.contains(['\n', '\r', '\0']),
        "invalid --pin: a line break or NUL byte cannot be stored in tlspool.conf"
    );
    Ok(())
}

/// Returns `bytes` random bytes from the kernel as lower-case hexadecimal.
fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(hex::encode(buf))
}

/// Creates `dir` (or accepts it empty) with the `tokens` and `db` subdirectories, mode 0700,
/// and returns its absolute layout.
fn create_directory(dir: &Path) -> anyhow::Result<Layout> {
    let step = || format!("creating the setup directory {}", dir.display());
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} is not empty; dev-init writes only into an empty or absent directory",
                    dir.display()
                );
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(dir)
                .with_context(step)?;
        }
        Err(err) => return Err(err).with_context(step),
    }
    let layout = Layout {
        dir: fs::canonicalize(dir).with_context(step)?,
    };
    for sub in [layout.tokens(), layout.db()] {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&sub)
            .with_context(|| format!("creating {}", sub.display()))?;
    }
    Ok(layout)
}

fn write_softhsm_conf(layout: &Layout) -> anyhow::Result<()> {
    let text = format!(
        "# SoftHSM2 configuration written by tlspool-admin dev-init.\n\
         directories.tokendir = {}\n\
         objectstore.backend = file\n",
        layout.tokens().display()
    );
    write_new_file(&layout.softhsm_conf(), text.as_bytes(), 0o644)
}

/// Initialises the token in the first free slot with `softhsm2-util`.
///
/// The security officer PIN is random and not kept, because nothing in a development setup
/// needs it; to start over, remove the directory.
fn init_token(layout: &Layout, pin: &str) -> anyhow::Result<()> {
    let so_pin = random_hex(8).context("drawing a random security officer PIN")?;
    // NOTE: softhsm2-util takes both PINs as arguments, so other local users can read them
    // in the process list while it runs (a few milliseconds).
    let output = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", TOKEN_LABEL])
        .args(["--so-pin", &so_pin, "--pin", pin])
        .env("SOFTHSM2_CONF", layout.softhsm_conf())
        .output()
        .context("initialising the token: starting softhsm2-util (package softhsm2) failed")?;
    ensure!(
        output.status.success(),
        "initialising the token: softhsm2-util failed with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// Writes `tlspool.conf` (mode 0600, because it contains the PIN) and checks that the
/// daemon's parser accepts it.
fn write_config(layout: &Layout, pin: &str) -> anyhow::Result<()> {
    let path = layout.config();
    let text = format!(
        "# TLS Pool development configuration written by tlspool-admin dev-init.\n\
         # Start the daemon with SOFTHSM2_CONF={softhsm} in its environment.\n\
         daemon_pidfile {pidfile}\n\
         socket_name {socket}\n\
         pkcs11_path {SOFTHSM_MODULE}\n\
         pkcs11_pin {pin}\n\
         pkcs11_token pkcs11:token={TOKEN_LABEL}\n\
         dbenv_dir {db}\n\
         log_level INFO\n\
         log_stderr YES\n",
        softhsm = layout.softhsm_conf().display(),
        pidfile = layout.file("tlspool.pid").display(),
        socket = layout.file("tlspool.sock").display(),
        db = layout.db().display(),
    );
    write_new_file(&path, text.as_bytes(), 0o600)?;
    Config::load(&path).with_context(|| {
        format!(
            "checking the written configuration {} (a shorter DIR may be needed for the \
             socket path)",
            path.display()
        )
    })?;
    Ok(())
}

/// Re-executes `tlspool-admin dev-init --token-stage` with `SOFTHSM2_CONF` set and copies
/// its output to `out`.
fn run_token_stage(layout: &Layout, args: &DevInitArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the tlspool-admin executable")?;
    let mut child_args: Vec<OsString> = vec!["dev-init".into(), layout.dir.clone().into()];
    for domain in &args.domain {
        child_args.extend(["--domain".into(), domain.into()]);
    }
    for address in &args.openpgp {
        child_args.extend(["--openpgp".into(), address.into()]);
    }
    child_args.extend([
        "--openpgp-version".into(),
        args.openpgp_version.number().to_string().into(),
        "--key-type".into(),
        args.key_type.name.into(),
        "--token-stage".into(),
    ]);

    let output = Command::new(&exe)
        .args(&child_args)
        .env("SOFTHSM2_CONF", layout.softhsm_conf())
        .output()
        .with_context(|| format!("starting the token stage ({})", exe.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message = stderr.trim().trim_start_matches("tlspool-admin: ");
        bail!(
            "{message}\n{} is left as it is; remove it before running dev-init again",
            layout.dir.display()
        );
    }
    out.write_all(&output.stdout)
        .context("writing the dev-init summary")
}

/// Creates `path` with `mode`, failing if it exists, and writes `data`.
fn write_new_file(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut file| file.write_all(data))
        .with_context(|| format!("writing {}", path.display()))
}

/// Quotes `text` for a POSIX shell unless it consists only of characters that need no quoting.
fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=:,+@%".contains(&b));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn domains_accept_dns_names() {
        assert!(check_domains(&domains(&["dev.example", "a-b.example.com", "localhost"])).is_ok());
    }

    #[test]
    fn domains_reject_invalid_names() {
        for name in [
            "",
            ".example",
            "example.",
            "a..b",
            "user@example",
            "a/b",
            "-a.example",
            "a b",
        ] {
            assert!(check_domains(&domains(&[name])).is_err(), "{name:?}");
        }
    }

    #[test]
    fn domains_reject_empty_list_and_duplicates() {
        assert!(check_domains(&[]).is_err());
        let error = check_domains(&domains(&["a.example", "a.example"])).unwrap_err();
        assert!(error.to_string().contains("twice"), "{error}");
    }

    #[test]
    fn openpgp_addresses_need_user_and_domain() {
        assert!(check_openpgp_addresses(&domains(&["alice@dev.example", "b.o+b@x"])).is_ok());
        for address in [
            "dev.example",
            "@dev.example",
            "alice@",
            "a b@dev.example",
            "a@b@c",
        ] {
            assert!(
                check_openpgp_addresses(&domains(&[address])).is_err(),
                "{address:?}"
            );
        }
        let error = check_openpgp_addresses(&domains(&["a@x.example", "a@x.example"])).unwrap_err();
        assert!(error.to_string().contains("twice"), "{error}");
    }

    #[test]
    fn openpgp_version_words_parse() {
        assert_eq!(parse_openpgp_version("4"), Ok(OpenPgpVersion::V4));
        assert_eq!(parse_openpgp_version("6"), Ok(OpenPgpVersion::V6));
        assert!(parse_openpgp_version("5").is_err());
    }

    #[test]
    fn pin_limits() {
        assert!(check_pin("1234").is_ok());
        assert!(check_pin("123").is_err());
        assert!(check_pin(&"1".repeat(256)).is_err());
        assert!(check_pin("12\n34").is_err());
    }

    #[test]
    fn key_type_words_parse() {
        for spec in KeySpec::ALL {
            assert_eq!(parse_key_spec(spec.name), Ok(spec));
        }
        assert!(parse_key_spec("rsa1024").is_err());
    }

    #[test]
    fn shell_quote_cases() {
        assert_eq!(shell_quote("/tmp/dev/ca.pem"), "/tmp/dev/ca.pem");
        assert_eq!(
            shell_quote("pkcs11:token=a;object=b"),
            "'pkcs11:token=a;object=b'"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn openpgp_with_p384_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("dev");
        let args = DevInitArgs {
            dir: target.clone(),
            domain: vec!["dev.example".into()],
            pin: None,
            key_type: parse_key_spec("p384").unwrap(),
            openpgp: vec!["alice@dev.example".into()],
            openpgp_version: OpenPgpVersion::V4,
            token_stage: false,
        };
        let error = run(&args, &mut Vec::new()).unwrap_err();
        assert!(error.to_string().contains("--key-type p384"), "{error}");
        assert!(!target.exists(), "no directory is created");
    }

    #[test]
    fn non_empty_directory_rejected() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("file"), b"x").unwrap();
        let error = create_directory(dir.path()).unwrap_err();
        assert!(error.to_string().contains("is not empty"), "{error}");
    }

    #[test]
    fn absent_directory_created_with_subdirectories() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a/b");
        let layout = create_directory(&target).unwrap();
        assert!(layout.dir.is_absolute());
        assert!(layout.tokens().is_dir());
        assert!(layout.db().is_dir());
    }
}
