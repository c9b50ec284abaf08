//! The token stage of `dev-init`: key pairs on the token, the test CA and the certificates it
//! issues, the external peer identity, the database entries and the summary.
//!
//! It runs in a child `tlspool-admin` whose environment names the setup's `softhsm2.conf` in
//! `SOFTHSM2_CONF`, and reads the module and PIN from the `tlspool.conf` of the first stage.
//!
//! # Database entries
//!
//! - localid: per domain NAME, one X.509 value with the server role and one with the client
//!   role, each with its private key's `pkcs11:` URI and the chain leaf ‖ CA (`chained`).
//! - disclose: the selectors `NAME` (that domain) and `.NAME` (its subdomains, such as the
//!   external peer `peer.NAME`) both list NAME, so a pool client talking to a remote peer in
//!   NAME shows the client identity NAME.
//! - trust: the CA's subjectKeyIdentifier (the authorityKeyIdentifier of what it issues) maps
//!   to an X.509 anchor for both roles with the expression `1` and the CA certificate.
//! - per `--openpgp` ADDRESS: one OpenPGP localid value for both roles with the key's
//!   `pkcs11:` URI and the transferable public key, and a `pgp` trust entry for both roles
//!   under the primary key's 64-bit key ID. The external OpenPGP peer `peer@DOMAIN` (DOMAIN of
//!   the first address) gets a `pgp` trust entry too. Per domain of the addresses, the
//!   disclose selector `@DOMAIN` (every user of that domain) lists the first address in it, so
//!   a pool client talking to a user there shows that OpenPGP identity.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail, ensure};
use tlspool_core::Config;
use tlspool_core::db::{
    CredentialType, Database, DbEnv, DbNames, LocalIdEntry, LocalIdFlags, OpenMode, TrustEntry,
    TrustFlags, TrustType,
};
use tlspool_core::tls::{
    Certificate, CertificateBuilder, ExtendedKeyUsage, Issuer, KeyUsage, SigningKey,
    pkcs11_add_provider, set_pin_callback,
};
use tlspool_pkcs11::{ConfiguredPin, GeneratedKeyPair, Module, Pkcs11Uri, Zeroizing};

use super::{
    DevInitArgs, KeySpec, Layout, SOFTHSM_MODULE, TOKEN_LABEL, shell_quote, write_new_file,
};

mod openpgp;

use openpgp::{OpenPgpKey, issue_openpgp_key};
pub(in crate::admin) use openpgp::{OpenPgpVersion, issue_openpgp_key_for};

/// Validity of the test CA.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
/// Validity of the certificates the CA issues: 825 days, the maximum many TLS clients accept.
const LEAF_VALIDITY: Duration = Duration::from_secs(825 * 86_400);
/// How far notBefore lies in the past, for peers whose clocks run behind.
const BACKDATE: Duration = Duration::from_secs(3_600);
const ORGANIZATION: &str = "TLS Pool development";
/// Port in the printed example commands.
const EXAMPLE_PORT: u16 = 4433;

/// The token, its PIN and the key type, shared by every key generation.
struct Token<'a> {
    module: &'a Module,
    uri: Pkcs11Uri,
    pins: ConfiguredPin,
    spec: KeySpec,
    next_id: u8,
}

/// The server and client identities of one domain.
struct DomainIdentities {
    name: String,
    server: Issued,
    client: Issued,
}

/// A certificate with its token key.
struct Issued {
    certificate: Certificate,
    key: GeneratedKeyPair,
}

/// An OpenPGP identity whose authentication key is on the token.
struct OpenPgpIdentity {
    address: String,
    key: GeneratedKeyPair,
    issued: OpenPgpKey,
}

/// The external OpenPGP peer, whose key is in memory and then in a file.
struct OpenPgpPeer {
    address: String,
    key: SigningKey,
    spki: Vec<u8>,
    issued: OpenPgpKey,
}

/// The test CA: certificate and token key.
struct TestCa {
    certificate: Certificate,
    key: SigningKey,
    key_uri: Pkcs11Uri,
    key_id: Vec<u8>,
}

/// Runs the token stage.
pub(super) fn run(args: &DevInitArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let layout = Layout {
        dir: args.dir.clone(),
    };
    check_environment(&layout)?;
    let config = Config::load(&layout.config())
        .with_context(|| format!("reading {}", layout.config().display()))?;
    let module_path = config
        .pkcs11_path()
        .unwrap_or_else(|| Path::new(SOFTHSM_MODULE));
    let Some(pin) = config.pkcs11_pin() else {
        bail!("{} sets no pkcs11_pin", layout.config().display());
    };

    // cryptoki initialises the module first, then GnuTLS adds it as a provider.
    let module = Module::load(module_path)
        .with_context(|| format!("loading the PKCS #11 module {}", module_path.display()))?;
    let pin_for_gnutls = pin.to_owned();
    pkcs11_add_provider(&module_path.to_string_lossy())
        .context("adding the PKCS #11 module to GnuTLS")?;
    set_pin_callback(Box::new(move |_| {
        Some(Zeroizing::new(pin_for_gnutls.clone()))
    }));
    let mut token = Token {
        module: &module,
        uri: Pkcs11Uri::parse(&format!("pkcs11:token={TOKEN_LABEL}"))?,
        pins: ConfiguredPin::new(pin),
        spec: args.key_type,
        next_id: 1,
    };

    let ca = issue_ca(&mut token)?;
    let mut domains = Vec::with_capacity(args.domain.len());
    for name in &args.domain {
        domains.push(DomainIdentities {
            name: name.clone(),
            server: issue_leaf(&mut token, &ca, name, ExtendedKeyUsage::ServerAuth)?,
            client: issue_leaf(&mut token, &ca, name, ExtendedKeyUsage::ClientAuth)?,
        });
    }
    let peer_name = format!("peer.{}", args.domain[0]);
    let (peer_certificate, peer_key) = issue_peer(&ca, &args.domain, &peer_name, args.key_type)?;
    let mut openpgp = Vec::with_capacity(args.openpgp.len());
    for address in &args.openpgp {
        let key = token.generate(&format!("{address}-openpgp"))?;
        let issued = issue_openpgp_key(address, &key.spki_der, args.openpgp_version)?;
        openpgp.push(OpenPgpIdentity {
            address: address.clone(),
            key,
            issued,
        });
    }
    let openpgp_peer = args
        .openpgp
        .first()
        .map(|address| issue_openpgp_peer(address, args))
        .transpose()?;

    write_databases(&layout, &ca, &domains, &openpgp, openpgp_peer.as_ref())?;
    write_openpgp_files(&layout, &openpgp, openpgp_peer.as_ref())?;
    write_pem(&layout.file("ca.pem"), &[&ca.certificate])?;
    for domain in &domains {
        let name = &domain.name;
        write_pem(
            &layout.file(&format!("{name}-server.pem")),
            &[&domain.server.certificate],
        )?;
        write_pem(
            &layout.file(&format!("{name}-client.pem")),
            &[&domain.client.certificate],
        )?;
    }
    write_pem(
        &layout.file("peer-cert.pem"),
        &[&peer_certificate, &ca.certificate],
    )?;
    let key_pem = peer_key
        .to_pkcs8_pem()
        .context("exporting the external peer key")?;
    write_new_file(&layout.file("peer-key.pem"), &key_pem, 0o600)?;

    print_summary(out, &layout, &ca, &domains, &peer_name)
        .context("writing the dev-init summary")?;
    print_openpgp_summary(out, &layout, &openpgp, openpgp_peer.as_ref())
        .context("writing the dev-init summary")
}

/// Issues the external OpenPGP peer `peer@DOMAIN` for the domain of `address`, with a key
/// generated in memory.
fn issue_openpgp_peer(address: &str, args: &DevInitArgs) -> anyhow::Result<OpenPgpPeer> {
    let peer = format!("peer@{}", domain_of(address));
    let key = SigningKey::generate(args.key_type.memory)
        .context("generating the external OpenPGP peer key")?;
    let spki = key
        .public_key_der()
        .context("exporting the external OpenPGP peer's public key")?;
    let issued = issue_openpgp_key(&peer, &spki, args.openpgp_version)?;
    Ok(OpenPgpPeer {
        address: peer,
        key,
        spki,
        issued,
    })
}

/// Writes each OpenPGP identity's key as issued, revoked and expired, and the external peer's
/// key, public key and OpenPGP keys.
fn write_openpgp_files(
    layout: &Layout,
    identities: &[OpenPgpIdentity],
    peer: Option<&OpenPgpPeer>,
) -> anyhow::Result<()> {
    for identity in identities {
        let address = &identity.address;
        let issued = &identity.issued;
        write_new_file(
            &layout.file(&format!("{address}.pgp")),
            &issued.transferable_public_key,
            0o644,
        )?;
        write_new_file(
            &layout.file(&format!("{address}-revoked.pgp")),
            &issued.revoked,
            0o644,
        )?;
        write_new_file(
            &layout.file(&format!("{address}-expired.pgp")),
            &issued.expired,
            0o644,
        )?;
    }
    let Some(peer) = peer else {
        return Ok(());
    };
    let key_pem = peer
        .key
        .to_pkcs8_pem()
        .context("exporting the external OpenPGP peer key")?;
    write_new_file(&layout.file("peer-openpgp-key.pem"), &key_pem, 0o600)?;
    write_new_file(
        &layout.file("peer-openpgp-spki.pem"),
        public_key_pem(&peer.spki).as_bytes(),
        0o644,
    )?;
    write_new_file(
        &layout.file("peer-openpgp.pgp"),
        &peer.issued.transferable_public_key,
        0o644,
    )?;
    write_new_file(
        &layout.file("peer-openpgp-revoked.pgp"),
        &peer.issued.revoked,
        0o644,
    )?;
    write_new_file(
        &layout.file("peer-openpgp-expired.pgp"),
        &peer.issued.expired,
        0o644,
    )
}

/// Returns the domain of a `user@domain` address.
fn domain_of(address: &str) -> &str {
    address
        .rsplit_once('@')
        .map_or(address, |(_, domain)| domain)
}

/// Encodes a DER SubjectPublicKeyInfo as a PEM `PUBLIC KEY` block, as `gnutls-cli
/// --rawpkfile` reads it.
fn public_key_pem(spki: &[u8]) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(spki);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem
}

/// Prints the OpenPGP identities and the external OpenPGP peer.
fn print_openpgp_summary(
    out: &mut dyn Write,
    layout: &Layout,
    identities: &[OpenPgpIdentity],
    peer: Option<&OpenPgpPeer>,
) -> std::io::Result<()> {
    let Some(peer) = peer else {
        return Ok(());
    };
    let path = |name: &str| shell_quote(&layout.file(name).to_string_lossy());
    writeln!(out, "\nOpenPGP identities (raw public keys):")?;
    for identity in identities {
        writeln!(
            out,
            "  {}   OpenPGP key {}, version {}, authentication key {}",
            identity.address,
            identity.issued.fingerprint,
            identity.issued.version,
            identity.key.private_key_uri
        )?;
        writeln!(
            out,
            "      localid pgp client and server, trust pgp {}; {}, {} and {}",
            hex::encode(&identity.issued.key_id),
            path(&format!("{}.pgp", identity.address)),
            path(&format!("{}-revoked.pgp", identity.address)),
            path(&format!("{}-expired.pgp", identity.address))
        )?;
    }
    writeln!(
        out,
        "  {}   external OpenPGP peer, key in a file, trust pgp {}",
        peer.address,
        hex::encode(&peer.issued.key_id)
    )?;
    writeln!(
        out,
        "  disclose @{}: {}",
        domain_of(&peer.address),
        identities
            .first()
            .map_or("", |identity| identity.address.as_str())
    )?;
    writeln!(
        out,
        "\nRun the external OpenPGP peer with its raw public key:"
    )?;
    writeln!(
        out,
        "  gnutls-serv --rawpkkeyfile {} --rawpkfile {} --priority \
         NORMAL:+CTYPE-CLI-RAWPK:+CTYPE-SRV-RAWPK --port {EXAMPLE_PORT}",
        path("peer-openpgp-key.pem"),
        path("peer-openpgp-spki.pem")
    )
}

/// Fails unless `SOFTHSM2_CONF` names this setup's SoftHSM2 configuration, because the module
/// would otherwise open another token directory.
fn check_environment(layout: &Layout) -> anyhow::Result<()> {
    let expected = layout.softhsm_conf();
    let actual = std::env::var_os("SOFTHSM2_CONF");
    ensure!(
        actual.as_deref() == Some(expected.as_os_str()),
        "the dev-init token stage needs SOFTHSM2_CONF={} (found {:?}); run dev-init without \
         --token-stage",
        expected.display(),
        actual
    );
    Ok(())
}

impl Token<'_> {
    /// Generates a key pair labelled `label` on the token, with the next CKA_ID.
    fn generate(&mut self, label: &str) -> anyhow::Result<GeneratedKeyPair> {
        let id = [self.next_id];
        self.next_id = self
            .next_id
            .checked_add(1)
            .context("more than 255 keys requested on the token")?;
        self.module
            .generate_key_pair(&self.uri, self.spec.token, label, &id, &self.pins)
            .with_context(|| {
                format!(
                    "generating the {} key pair {label:?} on token {TOKEN_LABEL}",
                    self.spec.name
                )
            })
    }
}

/// Generates the CA key on the token and self-signs the CA certificate with it.
fn issue_ca(token: &mut Token<'_>) -> anyhow::Result<TestCa> {
    let pair = token.generate("tlspool-dev-ca")?;
    let uri = pair.private_key_uri.to_string();
    let key = SigningKey::from_pkcs11_uri(&uri)
        .with_context(|| format!("opening the CA key {uri} through GnuTLS"))?;
    let now = SystemTime::now();
    let certificate = CertificateBuilder::new()
        .common_name("TLS Pool development CA")
        .organization(ORGANIZATION)
        .ca(Some(0))
        .key_usage(KeyUsage::KEY_CERT_SIGN | KeyUsage::CRL_SIGN)
        .validity(now - BACKDATE, now + CA_VALIDITY)
        .public_key_der(&pair.spki_der)
        .build(Issuer::SelfSigned(&key))
        .context("signing the test CA certificate with its token key")?;
    let key_id = certificate
        .subject_key_id()?
        .context("the test CA certificate has no subjectKeyIdentifier")?;
    Ok(TestCa {
        certificate,
        key,
        key_uri: pair.private_key_uri,
        key_id,
    })
}

/// Generates a token key for `name` and issues its server or client certificate.
fn issue_leaf(
    token: &mut Token<'_>,
    ca: &TestCa,
    name: &str,
    usage: ExtendedKeyUsage,
) -> anyhow::Result<Issued> {
    let role = match usage {
        ExtendedKeyUsage::ServerAuth => "server",
        _ => "client",
    };
    let key = token.generate(&format!("{name}-{role}"))?;
    let certificate = leaf_builder(name, token.spec)
        .dns_name(name)
        .extended_key_usage(usage)
        .public_key_der(&key.spki_der)
        .build(Issuer::Ca {
            certificate: &ca.certificate,
            key: &ca.key,
        })
        .with_context(|| format!("issuing the {role} certificate for {name}"))?;
    Ok(Issued { certificate, key })
}

/// Issues the external peer certificate (server and client use, a dNSName `peer.NAME` per
/// domain) for a key generated in memory, not on the token.
fn issue_peer(
    ca: &TestCa,
    domains: &[String],
    peer_name: &str,
    spec: KeySpec,
) -> anyhow::Result<(Certificate, SigningKey)> {
    let key = SigningKey::generate(spec.memory).context("generating the external peer key")?;
    let mut builder = leaf_builder(peer_name, spec);
    for domain in domains {
        builder.dns_name(&format!("peer.{domain}"));
    }
    let certificate = builder
        .extended_key_usage(ExtendedKeyUsage::ServerAuth)
        .extended_key_usage(ExtendedKeyUsage::ClientAuth)
        .public_key_from(&key)
        .build(Issuer::Ca {
            certificate: &ca.certificate,
            key: &ca.key,
        })
        .with_context(|| format!("issuing the external peer certificate for {peer_name}"))?;
    Ok((certificate, key))
}

/// Starts an end-entity certificate for `name` with the key usage its key type allows.
fn leaf_builder(name: &str, spec: KeySpec) -> CertificateBuilder {
    let mut usage = KeyUsage::DIGITAL_SIGNATURE;
    if spec.encipherment {
        usage |= KeyUsage::KEY_ENCIPHERMENT;
    }
    let now = SystemTime::now();
    let mut builder = CertificateBuilder::new();
    builder
        .common_name(name)
        .organization(ORGANIZATION)
        .key_usage(usage)
        .validity(now - BACKDATE, now + LEAF_VALIDITY);
    builder
}

/// Writes the localid, disclose and trust entries in one transaction.
fn write_databases(
    layout: &Layout,
    ca: &TestCa,
    domains: &[DomainIdentities],
    openpgp: &[OpenPgpIdentity],
    openpgp_peer: Option<&OpenPgpPeer>,
) -> anyhow::Result<()> {
    let env = DbEnv::open(&layout.db(), &DbNames::default(), OpenMode::ReadWrite)
        .with_context(|| format!("opening the databases in {}", layout.db().display()))?;
    let mut txn = env.write().context("starting the database transaction")?;

    for domain in domains {
        let name = domain.name.as_bytes();
        let server = chained_entry(&domain.server, ca, LocalIdFlags::ROLE_SERVER)?;
        let client = chained_entry(&domain.client, ca, LocalIdFlags::ROLE_CLIENT)?;
        txn.set_values(Database::LocalId, name, &[server, client])
            .with_context(|| format!("writing the localid entries of {}", domain.name))?;
        for selector in [domain.name.clone(), format!(".{}", domain.name)] {
            txn.set_values(Database::Disclose, selector.as_bytes(), &[name])
                .with_context(|| format!("writing the disclose entry {selector}"))?;
        }
    }

    let anchor = TrustEntry {
        trust_type: TrustType::X509,
        flags: TrustFlags::ROLE_CLIENT | TrustFlags::ROLE_SERVER,
        valexp: "1".to_owned(),
        data: ca.certificate.der().to_vec(),
    };
    txn.set_values(Database::Trust, &ca.key_id, &[anchor.encode()?])
        .context("writing the trust entry of the test CA")?;

    for identity in openpgp {
        let entry = LocalIdEntry {
            credential_type: CredentialType::OpenPgp,
            flags: LocalIdFlags::ROLE_CLIENT | LocalIdFlags::ROLE_SERVER,
            pkcs11_uri: Some(identity.key.private_key_uri.to_string()),
            credential: identity.issued.transferable_public_key.clone(),
        };
        txn.set_values(
            Database::LocalId,
            identity.address.as_bytes(),
            &[entry.encode()?],
        )
        .with_context(|| format!("writing the localid entry of {}", identity.address))?;
    }
    let mut disclosed: Vec<&str> = Vec::new();
    for identity in openpgp {
        let domain = domain_of(&identity.address);
        if disclosed.contains(&domain) {
            continue;
        }
        disclosed.push(domain);
        let selector = format!("@{domain}");
        txn.set_values(
            Database::Disclose,
            selector.as_bytes(),
            &[identity.address.as_bytes()],
        )
        .with_context(|| format!("writing the disclose entry {selector}"))?;
    }
    let trusted = openpgp
        .iter()
        .map(|identity| (&identity.address, &identity.issued))
        .chain(openpgp_peer.map(|peer| (&peer.address, &peer.issued)));
    for (address, issued) in trusted {
        let entry = TrustEntry {
            trust_type: TrustType::OpenPgp,
            flags: TrustFlags::ROLE_CLIENT | TrustFlags::ROLE_SERVER,
            valexp: "1".to_owned(),
            data: issued.transferable_public_key.clone(),
        };
        txn.set_values(Database::Trust, &issued.key_id, &[entry.encode()?])
            .with_context(|| format!("writing the trust entry of the OpenPGP key of {address}"))?;
    }
    txn.commit().context("committing the database entries")
}

/// Encodes a localid value: the key's URI and the chain leaf ‖ CA.
fn chained_entry(issued: &Issued, ca: &TestCa, role: LocalIdFlags) -> anyhow::Result<Vec<u8>> {
    let mut chain = issued.certificate.der().to_vec();
    chain.extend_from_slice(ca.certificate.der());
    let entry = LocalIdEntry {
        credential_type: CredentialType::X509,
        flags: role | LocalIdFlags::CHAINED,
        pkcs11_uri: Some(issued.key.private_key_uri.to_string()),
        credential: chain,
    };
    Ok(entry.encode()?)
}

fn write_pem(path: &Path, certificates: &[&Certificate]) -> anyhow::Result<()> {
    let mut pem = Vec::new();
    for certificate in certificates {
        pem.extend(certificate.to_pem()?);
    }
    write_new_file(path, &pem, 0o644)
}

/// Prints what was created and the commands that use it.
fn print_summary(
    out: &mut dyn Write,
    layout: &Layout,
    ca: &TestCa,
    domains: &[DomainIdentities],
    peer_name: &str,
) -> std::io::Result<()> {
    let path = |name: &str| shell_quote(&layout.file(name).to_string_lossy());
    let softhsm = shell_quote(&layout.softhsm_conf().to_string_lossy());
    let config = path("tlspool.conf");

    writeln!(
        out,
        "Created a TLS Pool development setup in {}:",
        layout.dir.display()
    )?;
    writeln!(
        out,
        "  tlspool.conf    daemon configuration (mode 0600, contains pkcs11_pin)"
    )?;
    writeln!(
        out,
        "  softhsm2.conf   SoftHSM2 configuration; token {TOKEN_LABEL} in tokens/"
    )?;
    writeln!(
        out,
        "  db/             localid, disclose and trust databases"
    )?;
    writeln!(
        out,
        "  ca.pem          test CA certificate, for external peers to trust"
    )?;
    for domain in domains {
        writeln!(
            out,
            "  {}-server.pem, {0}-client.pem   certificates of {0}",
            domain.name
        )?;
    }
    writeln!(
        out,
        "  peer-cert.pem, peer-key.pem   test material: external peer {peer_name} with its key \
         in a file (not on the token), signed by the test CA"
    )?;

    writeln!(out, "\nToken keys:")?;
    writeln!(out, "  test CA   {}", ca.key_uri)?;
    for domain in domains {
        writeln!(
            out,
            "  {} server   {}",
            domain.name, domain.server.key.private_key_uri
        )?;
        writeln!(
            out,
            "  {} client   {}",
            domain.name, domain.client.key.private_key_uri
        )?;
    }
    writeln!(out, "\nDatabases:")?;
    for domain in domains {
        let name = &domain.name;
        writeln!(
            out,
            "  localid {name}: x509 server and client credentials, chained"
        )?;
        writeln!(out, "  disclose {name} and .{name}: {name}")?;
    }
    writeln!(
        out,
        "  trust {}: the test CA, x509 anchor for client and server",
        hex::encode(&ca.key_id)
    )?;

    writeln!(out, "\nStart the daemon:")?;
    writeln!(out, "  SOFTHSM2_CONF={softhsm} tlspool -f -c {config}")?;
    let first = &domains[0];
    writeln!(
        out,
        "\nServe the {} server identity from the token with gnutls-serv (port {EXAMPLE_PORT}):",
        first.name
    )?;
    writeln!(
        out,
        "  GNUTLS_PIN=\"$(sed -n 's/^pkcs11_pin //p' {config})\" SOFTHSM2_CONF={softhsm} \
         gnutls-serv --provider {SOFTHSM_MODULE} --x509certfile {} --x509keyfile {} \
         --port {EXAMPLE_PORT}",
        path(&format!("{}-server.pem", first.name)),
        shell_quote(&first.server.key.private_key_uri.to_string()),
    )?;
    writeln!(out, "and connect to it:")?;
    writeln!(
        out,
        "  gnutls-cli --x509cafile {} --verify-hostname {} --port {EXAMPLE_PORT} 127.0.0.1",
        path("ca.pem"),
        first.name
    )?;
    writeln!(
        out,
        "\nRun the external peer {peer_name} without the token:"
    )?;
    writeln!(
        out,
        "  gnutls-serv --x509certfile {} --x509keyfile {} --port {EXAMPLE_PORT}",
        path("peer-cert.pem"),
        path("peer-key.pem")
    )?;
    writeln!(
        out,
        "  openssl s_server -cert {} -key {} -CAfile {} -accept {EXAMPLE_PORT}",
        path("peer-cert.pem"),
        path("peer-key.pem"),
        path("ca.pem")
    )?;
    Ok(())
}
