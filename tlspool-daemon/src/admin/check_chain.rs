//! `tlspool-admin check-chain`: validates a certificate chain and its name as the daemon
//! would, without the daemon, and prints the outcome for an operator.
//!
//! Exit status: 0 when the chain is valid for the name, 1 when it is invalid, 2 for a usage
//! or I/O error (see [`exit_code`]).

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, bail};
use argh::FromArgs;
use tlspool_core::db::OpenMode;
use tlspool_validate::x509::{
    AnchorSet, Certificate, PathValidator, PeerRole, TrustDb, TrustStore, check_name,
};

use super::config::DbSettings;
use super::{open_env, read_input};

/// Validate a peer's certificate chain and name against the trust anchors.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "check-chain")]
pub struct CheckChainArgs {
    /// the chain, PEM or DER, end certificate first and the rest in any order (- for standard
    /// input)
    #[argh(option)]
    chain: PathBuf,
    /// the remote identity to check: a DNS name, or user@domain for a mail address
    #[argh(option)]
    name: String,
    /// the role of the peer that sent the chain: server (default; anchors marked client
    /// apply and serverAuth is required) or client (anchors marked server, clientAuth)
    #[argh(option, default = "String::from(\"server\")")]
    role: String,
    /// validation time, as RFC 3339 (2025-06-01T12:00:00Z) or seconds since the epoch
    /// (default now)
    #[argh(option)]
    at: Option<String>,
    /// PEM bundle of trust anchors to use instead of the trust database of the configuration
    #[argh(option)]
    anchors: Option<PathBuf>,
}

/// The error that marks an invalid chain, after its reasons have been printed.
#[derive(Debug, thiserror::Error)]
#[error("the chain is not valid for {name}")]
pub struct ChainInvalid {
    name: String,
}

/// Returns the exit status for an error of `tlspool-admin check-chain`: 1 for an invalid
/// chain, 2 for any other failure.
pub(super) fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<ChainInvalid>().is_some() {
        1
    } else {
        2
    }
}

/// Runs `check-chain`, reading the trust database named by `config` unless `--anchors` is
/// given.
pub(crate) fn run(
    config: &std::path::Path,
    args: &CheckChainArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let role = match args.role.as_str() {
        "server" => PeerRole::Server,
        "client" => PeerRole::Client,
        other => bail!("invalid --role {other:?}; expected server or client"),
    };
    let at = match &args.at {
        Some(text) => parse_time(text)?,
        None => SystemTime::now(),
    };
    let input = read_input(&args.chain)?;
    let chain = Certificate::parse_chain(&input)
        .with_context(|| format!("reading the chain {}", args.chain.display()))?;
    if chain.is_empty() {
        bail!(
            "{} contains no certificate; expected a PEM or DER X.509 chain",
            args.chain.display()
        );
    }

    if let Some(path) = &args.anchors {
        let mut anchors = AnchorSet::new();
        anchors
            .add_bundle(&read_input(path)?)
            .with_context(|| format!("reading the anchors {}", path.display()))?;
        return check(&anchors, &chain, role, at, &args.name, out);
    }
    let settings = DbSettings::load(config)?;
    let env = open_env(&settings, OpenMode::ReadOnly)?;
    let txn = env.read().context("reading the trust database")?;
    check(&TrustDb(&txn), &chain, role, at, &args.name, out)
}

/// Validates the chain and the name and prints `valid: ...` or `invalid: ...`, with one
/// `other path:` line per further reason when several candidate paths failed.
fn check(
    store: &dyn TrustStore,
    chain: &[Certificate],
    role: PeerRole,
    at: SystemTime,
    name: &str,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let validator = PathValidator::new(store, role, at);
    let outcome = validator.validate_all(chain).and_then(|path| {
        check_name(&chain[0], name).map_err(|err| vec![err])?;
        Ok(path)
    });
    match outcome {
        Ok(path) => {
            let anchor = path.anchor.certificate.subject();
            writeln!(out, "valid: chain to {anchor:?} for {name}")?;
            Ok(())
        }
        Err(reasons) => {
            let mut reasons = reasons.iter();
            if let Some(first) = reasons.next() {
                writeln!(out, "invalid: {first}")?;
            }
            for other in reasons {
                writeln!(out, "  other path: {other}")?;
            }
            Err(ChainInvalid { name: name.into() }.into())
        }
    }
}

/// Parses `--at`: RFC 3339, or whole seconds since the epoch.
fn parse_time(text: &str) -> anyhow::Result<SystemTime> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(seconds));
    }
    let time = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .with_context(|| {
            format!("invalid --at {text:?}; expected RFC 3339 such as 2025-06-01T12:00:00Z")
        })?;
    Ok(time.into())
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

    use super::*;

    struct Issued {
        cert: rcgen::Certificate,
        key: KeyPair,
    }

    fn params(cn: &str, ca: bool) -> CertificateParams {
        let mut params = CertificateParams::new(if ca { vec![] } else { vec![cn.to_owned()] })
            .expect("DNS name");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2030, 1, 1);
        params.use_authority_key_identifier_extension = true;
        if ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        }
        params
    }

    fn create(params: CertificateParams, issuer: Option<&Issued>) -> Issued {
        let key = KeyPair::generate().expect("key generation");
        let cert = match issuer {
            Some(issuer) => params.signed_by(&key, &issuer.cert, &issuer.key),
            None => params.self_signed(&key),
        }
        .expect("signing");
        Issued { cert, key }
    }

    /// Writes a root bundle and a chain (end certificate, intermediate) to files and returns
    /// the arguments for `www.example.com`.
    fn setup(dir: &std::path::Path) -> CheckChainArgs {
        let root = create(params("Root", true), None);
        let intermediate = create(params("Intermediate", true), Some(&root));
        let leaf = create(params("www.example.com", false), Some(&intermediate));
        std::fs::write(dir.join("anchors.pem"), root.cert.pem()).unwrap();
        let chain = format!("{}{}", leaf.cert.pem(), intermediate.cert.pem());
        std::fs::write(dir.join("chain.pem"), chain).unwrap();
        CheckChainArgs {
            chain: dir.join("chain.pem"),
            name: "www.example.com".into(),
            role: "server".into(),
            at: Some("2025-06-01T00:00:00Z".into()),
            anchors: Some(dir.join("anchors.pem")),
        }
    }

    fn output(args: &CheckChainArgs) -> (String, Option<u8>) {
        let mut out = Vec::new();
        let result = run(std::path::Path::new("/nonexistent.conf"), args, &mut out);
        let code = result.err().map(|err| exit_code(&err));
        (String::from_utf8(out).unwrap(), code)
    }

    #[test]
    fn valid_chain_prints_anchor_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let args = setup(dir.path());
        let (text, code) = output(&args);
        assert_eq!(text, "valid: chain to \"CN=Root\" for www.example.com\n");
        assert_eq!(code, None);
    }

    #[test]
    fn wrong_name_prints_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let mut args = setup(dir.path());
        args.name = "mail.example.com".into();
        let (text, code) = output(&args);
        assert_eq!(
            text,
            "invalid: certificate names \"www.example.com\" do not match \"mail.example.com\"\n"
        );
        assert_eq!(code, Some(1));
    }

    #[test]
    fn expired_chain_prints_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut args = setup(dir.path());
        args.at = Some("2031-01-01T00:00:00Z".into());
        let (text, code) = output(&args);
        assert!(
            text.starts_with(
                "invalid: certificate \"CN=Intermediate\" expired at 2030-01-01T00:00:00Z, \
                 before the validation time 2031-01-01T00:00:00Z\n"
            ),
            "{text}"
        );
        assert_eq!(code, Some(1));
    }

    #[test]
    fn client_role_rejects_server_only_chain() {
        let dir = tempfile::tempdir().unwrap();
        let mut args = setup(dir.path());
        args.role = "client".into();
        // rcgen sets no extendedKeyUsage by default, so the chain also serves a client.
        assert_eq!(output(&args).1, None);
        args.role = "peer".into();
        assert_eq!(output(&args).1, Some(2), "an unknown role is a usage error");
    }

    #[test]
    fn missing_files_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut args = setup(dir.path());
        args.chain = dir.path().join("absent.pem");
        assert_eq!(output(&args).1, Some(2));
        let mut args = setup(dir.path());
        args.anchors = None;
        assert_eq!(output(&args).1, Some(2), "no configuration file");
    }

    #[test]
    fn text_file_is_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut args = setup(dir.path());
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "just some text\n").unwrap();
        args.chain = path;
        let (text, code) = output(&args);
        assert_eq!(text, "", "nothing is printed as a validation outcome");
        assert_eq!(code, Some(2));
    }

    #[test]
    fn at_accepts_epoch_seconds() {
        let at = parse_time("1748736000").unwrap();
        assert_eq!(at, parse_time("2025-06-01T00:00:00Z").unwrap());
        assert!(parse_time("yesterday").is_err());
    }
}
