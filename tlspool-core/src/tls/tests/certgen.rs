//! Certificates issued by [`CertificateBuilder`]: parsed by `certtool -i` (gnutls-bin),
//! verified by `certtool --verify` and by [`Session::verify_peer_x509`] after a handshake, and
//! signed by a key on a SoftHSM2 token.

use std::time::{Duration, SystemTime};

use super::*;

const DAY: Duration = Duration::from_secs(86_400);

/// A CA and its key, built in memory.
struct TestCa {
    certificate: Certificate,
    key: SigningKey,
}

fn build_ca(key_type: KeyType) -> TestCa {
    let key = SigningKey::generate(key_type).expect("CA key generated");
    let now = SystemTime::now();
    let certificate = CertificateBuilder::new()
        .common_name("Builder Test CA")
        .organization("TLS Pool tests")
        .ca(Some(0))
        .key_usage(KeyUsage::KEY_CERT_SIGN | KeyUsage::CRL_SIGN)
        .validity(now - Duration::from_secs(60), now + DAY)
        .build(Issuer::SelfSigned(&key))
        .expect("CA certificate built");
    TestCa { certificate, key }
}

/// Issues a server (`ServerAuth`, dNSName) or client (`ClientAuth`, rfc822Name) certificate
/// for `name` and returns it with its key as PEM.
fn issue_leaf(ca: &TestCa, name: &str, key_type: KeyType) -> Identity {
    let key = SigningKey::generate(key_type).expect("leaf key generated");
    let now = SystemTime::now();
    let mut builder = CertificateBuilder::new();
    builder
        .common_name(name)
        .organization("TLS Pool tests")
        .key_usage(KeyUsage::DIGITAL_SIGNATURE | KeyUsage::KEY_ENCIPHERMENT)
        .validity(now - Duration::from_secs(60), now + DAY)
        .public_key_der(&key.public_key_der().expect("public key exported"));
    if name.contains('@') {
        builder
            .email(name)
            .extended_key_usage(ExtendedKeyUsage::ClientAuth);
    } else {
        builder
            .dns_name(name)
            .extended_key_usage(ExtendedKeyUsage::ServerAuth);
    }
    let certificate = builder
        .build(Issuer::Ca {
            certificate: &ca.certificate,
            key: &ca.key,
        })
        .expect("leaf certificate built");
    Identity {
        cert_pem: certificate.to_pem().expect("PEM encoded"),
        key_pem: key.to_pkcs8_pem().expect("key exported").to_vec(),
    }
}

/// Runs `certtool` with `args` and returns its standard output.
fn certtool_output(args: &[&str]) -> String {
    let output = Command::new("certtool")
        .args(args)
        .output()
        .expect("certtool (package gnutls-bin) runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "certtool {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Writes `pem` to `dir/name` and returns `certtool -i` of it.
fn certtool_info(dir: &Path, name: &str, pem: &[u8]) -> String {
    let path = dir.join(name);
    fs::write(&path, pem).unwrap();
    certtool_output(&["-i", "--infile", path.to_str().unwrap()])
}

/// Checks with `certtool --verify` that the certificate in `leaf` chains to the CA in `ca`.
fn assert_chain_verifies(ca: &Path, leaf: &Path) {
    let output = certtool_output(&[
        "--verify",
        "--load-ca-certificate",
        ca.to_str().unwrap(),
        "--infile",
        leaf.to_str().unwrap(),
    ]);
    assert!(
        output.contains("Chain verification output: Verified."),
        "{} against {}: {output}",
        leaf.display(),
        ca.display()
    );
}

/// Returns the hex value on the line after `label` in `certtool -i` output.
fn value_after(info: &str, label: &str) -> String {
    let mut lines = info.lines();
    lines
        .by_ref()
        .find(|line| line.contains(label))
        .unwrap_or_else(|| panic!("{label} missing from:\n{info}"));
    lines.next().unwrap_or_default().trim().to_owned()
}

/// Runs a handshake with `server` as the server identity (and `client` as the client's, if
/// given) and returns both sessions.
fn handshake_with(
    ca_pem: &[u8],
    server: &Identity,
    client: Option<&Identity>,
    sni: &str,
) -> (Session, Session) {
    let client_credentials = match client {
        Some(identity) => identity.credentials(ca_pem),
        None => Credentials::builder()
            .trust_anchors(ca_pem, Encoding::Pem)
            .build()
            .unwrap(),
    };
    let client_cert = if client.is_some() {
        ClientCertificate::Require
    } else {
        ClientCertificate::Ignore
    };
    let mut client = client_session(TLS13, Some(sni), &client_credentials);
    let mut server = server_session(TLS13, client_cert, &server.credentials(ca_pem));
    handshake(&mut client, &mut server).expect("handshake succeeds");
    (client, server)
}

#[test]
fn certtool_parses_ca_and_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let ca = build_ca(KeyType::EcdsaP256);
    let server = issue_leaf(&ca, "server.example", KeyType::Rsa2048);
    let ca_pem = ca.certificate.to_pem().unwrap();

    let ca_info = certtool_info(dir.path(), "ca.pem", &ca_pem);
    assert!(ca_info.contains("Version: 3"), "{ca_info}");
    assert!(
        ca_info.contains("Subject: O=TLS Pool tests,CN=Builder Test CA"),
        "{ca_info}"
    );
    assert!(
        ca_info.contains("Issuer: O=TLS Pool tests,CN=Builder Test CA"),
        "{ca_info}"
    );
    assert!(
        ca_info.contains("Certificate Authority (CA): TRUE"),
        "{ca_info}"
    );
    assert!(ca_info.contains("Path Length Constraint: 0"), "{ca_info}");
    assert!(ca_info.contains("Certificate signing."), "{ca_info}");
    assert!(ca_info.contains("CRL signing."), "{ca_info}");
    assert!(ca_info.contains("ECDSA-SHA256"), "{ca_info}");

    let ca_key_id = value_after(&ca_info, "Subject Key Identifier");
    assert_eq!(
        ca_key_id,
        hex::encode(ca.certificate.subject_key_id().unwrap().unwrap())
    );
    assert_eq!(value_after(&ca_info, "Authority Key Identifier"), ca_key_id);
    // The trust database key of a CA is the "Public Key ID" that certtool prints.
    assert!(ca_info.contains(&format!("sha1:{ca_key_id}")), "{ca_info}");

    let leaf_info = certtool_info(dir.path(), "server.pem", &server.cert_pem);
    assert!(
        leaf_info.contains("Subject: O=TLS Pool tests,CN=server.example"),
        "{leaf_info}"
    );
    assert!(
        leaf_info.contains("Issuer: O=TLS Pool tests,CN=Builder Test CA"),
        "{leaf_info}"
    );
    assert!(
        leaf_info.contains("Certificate Authority (CA): FALSE"),
        "{leaf_info}"
    );
    assert!(leaf_info.contains("DNSname: server.example"), "{leaf_info}");
    assert!(leaf_info.contains("TLS WWW Server."), "{leaf_info}");
    assert!(!leaf_info.contains("TLS WWW Client."), "{leaf_info}");
    assert!(leaf_info.contains("Digital signature."), "{leaf_info}");
    assert!(leaf_info.contains("Key encipherment."), "{leaf_info}");
    assert!(leaf_info.contains("RSA"), "{leaf_info}");
    assert_eq!(
        value_after(&leaf_info, "Authority Key Identifier"),
        ca_key_id
    );
    assert_ne!(value_after(&leaf_info, "Subject Key Identifier"), ca_key_id);
}

#[test]
fn on_the_fly_profile_follows_service() {
    let dir = tempfile::tempdir().unwrap();
    let ca = build_ca(KeyType::EcdsaP256);
    let key = SigningKey::generate(KeyType::Rsa2048).unwrap();
    let now = SystemTime::now();
    let issuer = Issuer::Ca {
        certificate: &ca.certificate,
        key: &ca.key,
    };
    let http = CertificateBuilder::on_the_fly("fly.example", "http", 7, now)
        .public_key_from(&key)
        .build(issuer)
        .unwrap();
    let info = certtool_info(dir.path(), "http.pem", &http.to_pem().unwrap());
    assert!(
        info.contains("Subject: OU=TLS Pool on-the-fly,CN=fly.example"),
        "{info}"
    );
    assert!(info.contains("DNSname: fly.example"), "{info}");
    assert!(info.contains("Serial Number (hex): 07"), "{info}");
    assert!(info.contains("Certificate Authority (CA): FALSE"), "{info}");
    assert!(info.contains("Digital signature."), "{info}");
    assert!(info.contains("Key agreement."), "{info}");
    assert!(info.contains("TLS WWW Server."), "{info}");
    assert!(info.contains("TLS WWW Client."), "{info}");

    let user = CertificateBuilder::on_the_fly("me@fly.example", "smtp", 8, now)
        .public_key_from(&key)
        .build(issuer)
        .unwrap();
    let info = certtool_info(dir.path(), "user.pem", &user.to_pem().unwrap());
    assert!(info.contains("RFC822Name: me@fly.example"), "{info}");
    assert!(!info.contains("Key Usage"), "{info}");

    let anonpre = CertificateBuilder::on_the_fly("fly.example", "generic_anonpre", 9, now)
        .public_key_from(&key)
        .build(issuer)
        .unwrap();
    let info = certtool_info(dir.path(), "anonpre.pem", &anonpre.to_pem().unwrap());
    assert!(info.contains("Key encipherment."), "{info}");
    assert!(!info.contains("Digital signature."), "{info}");
}

#[test]
fn on_the_fly_validity_spans_five_minutes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = build_ca(KeyType::EcdsaP256);
    let key = SigningKey::generate(KeyType::EcdsaP256).unwrap();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let certificate = CertificateBuilder::on_the_fly("fly.example", "generic", 1, now)
        .public_key_from(&key)
        .build(Issuer::Ca {
            certificate: &ca.certificate,
            key: &ca.key,
        })
        .unwrap();
    let info = certtool_info(dir.path(), "fly.pem", &certificate.to_pem().unwrap());
    // 1 800 000 000 s after the epoch is 2027-01-15 08:00:00 UTC.
    assert!(
        info.contains("Not Before: Fri Jan 15 07:58:00 UTC 2027"),
        "{info}"
    );
    assert!(
        info.contains("Not After: Fri Jan 15 08:03:00 UTC 2027"),
        "{info}"
    );
}

#[test]
fn certtool_verifies_leaf_against_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = build_ca(KeyType::EcdsaP256);
    let client = issue_leaf(&ca, "alice@example.com", KeyType::EcdsaP256);
    let ca_path = dir.path().join("ca.pem");
    let leaf_path = dir.path().join("alice.pem");
    fs::write(&ca_path, ca.certificate.to_pem().unwrap()).unwrap();
    fs::write(&leaf_path, &client.cert_pem).unwrap();

    assert_chain_verifies(&ca_path, &leaf_path);

    let info = certtool_info(dir.path(), "alice-info.pem", &client.cert_pem);
    assert!(info.contains("RFC822Name: alice@example.com"), "{info}");
    assert!(info.contains("TLS WWW Client."), "{info}");
}

#[test]
fn random_serial_is_positive_16_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = build_ca(KeyType::EcdsaP256);
    let first = certtool_info(dir.path(), "a.pem", &ca.certificate.to_pem().unwrap());
    let second = certtool_info(
        dir.path(),
        "b.pem",
        &build_ca(KeyType::EcdsaP256).certificate.to_pem().unwrap(),
    );

    let serial = first
        .lines()
        .find_map(|line| line.trim().strip_prefix("Serial Number (hex): "))
        .unwrap_or_else(|| panic!("no serial in:\n{first}"));
    assert_eq!(serial.len(), 32, "{serial}");
    let top = u8::from_str_radix(&serial[..2], 16).unwrap();
    assert_eq!(top & 0xc0, 0x40, "{serial}");
    assert!(
        !second.contains(serial),
        "two certificates got serial {serial}"
    );
}

#[test]
fn explicit_serial_is_minimally_encoded() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate(KeyType::EcdsaP256).unwrap();
    let now = SystemTime::now();
    let certificate = CertificateBuilder::new()
        .common_name("counter")
        .serial(&[0, 0, 0, 0, 0, 0, 0, 7])
        .validity(now, now + DAY)
        .build(Issuer::SelfSigned(&key))
        .unwrap();

    let info = certtool_info(dir.path(), "c.pem", &certificate.to_pem().unwrap());
    // DER encodes an INTEGER in the fewest octets, so the leading zero bytes go.
    assert!(info.contains("Serial Number (hex): 07\n"), "{info}");
}

#[test]
fn issued_server_verifies_after_handshake() {
    let ca = build_ca(KeyType::EcdsaP256);
    let ca_pem = ca.certificate.to_pem().unwrap();
    let anchors = TrustAnchors::from_der(&[ca.certificate.der().to_vec()]).unwrap();

    for key_type in [KeyType::EcdsaP256, KeyType::Rsa2048] {
        let server = issue_leaf(&ca, "server.example", key_type);
        let (client, _server) = handshake_with(&ca_pem, &server, None, "server.example");
        assert_eq!(
            client
                .verify_peer_x509(&anchors, Some("server.example"))
                .ok(),
            Some(()),
            "{key_type:?}"
        );
        assert!(
            matches!(
                client.verify_peer_x509(&anchors, Some("other.example")),
                Err(VerifyError::NameMismatch { .. })
            ),
            "{key_type:?}"
        );
    }
}

#[test]
fn issued_client_verifies_by_email() {
    let ca = build_ca(KeyType::EcdsaP256);
    let ca_pem = ca.certificate.to_pem().unwrap();
    let anchors = TrustAnchors::from_der(&[ca.certificate.der().to_vec()]).unwrap();
    let server = issue_leaf(&ca, "server.example", KeyType::EcdsaP256);
    let client = issue_leaf(&ca, "alice@example.com", KeyType::EcdsaP256);

    let (client_session, server_session) =
        handshake_with(&ca_pem, &server, Some(&client), "server.example");
    assert_eq!(
        server_session
            .verify_peer_x509(&anchors, Some("alice@example.com"))
            .ok(),
        Some(())
    );
    assert_eq!(
        client_session
            .verify_peer_x509(&anchors, Some("server.example"))
            .ok(),
        Some(())
    );
}

#[test]
fn client_certificate_rejected_as_server() {
    let ca = build_ca(KeyType::EcdsaP256);
    let ca_pem = ca.certificate.to_pem().unwrap();
    let anchors = TrustAnchors::from_der(&[ca.certificate.der().to_vec()]).unwrap();
    // A clientAuth-only certificate presented by a server.
    let server = issue_leaf(&ca, "bob@example.com", KeyType::EcdsaP256);

    let (client, _server) = handshake_with(&ca_pem, &server, None, "example.com");
    let error = client
        .verify_peer_x509(&anchors, Some("bob@example.com"))
        .expect_err("purpose mismatch");
    assert!(
        matches!(error, VerifyError::PurposeMismatch { .. }),
        "{error}"
    );
}

#[test]
fn every_key_type_signs() {
    let dir = tempfile::tempdir().unwrap();
    for key_type in [KeyType::Rsa3072, KeyType::EcdsaP384, KeyType::Ed25519] {
        let ca = build_ca(key_type);
        let leaf = issue_leaf(&ca, "leaf.example", key_type);
        let ca_path = dir.path().join("ca.pem");
        let leaf_path = dir.path().join("leaf.pem");
        fs::write(&ca_path, ca.certificate.to_pem().unwrap()).unwrap();
        fs::write(&leaf_path, &leaf.cert_pem).unwrap();

        assert_chain_verifies(&ca_path, &leaf_path);
    }
}

#[test]
fn pem_round_trips() {
    let ca = build_ca(KeyType::EcdsaP256);
    let pem = ca.certificate.to_pem().unwrap();

    assert!(pem.starts_with(b"-----BEGIN CERTIFICATE-----\n"));
    let parsed = Certificate::from_pem(&pem).unwrap();
    assert_eq!(parsed, vec![ca.certificate.clone()]);
    assert_eq!(
        Certificate::from_der(ca.certificate.der().to_vec()).unwrap(),
        ca.certificate
    );
    assert!(Certificate::from_der(b"not a certificate".to_vec()).is_err());
}

#[test]
fn generated_key_exports_pkcs8() {
    let key = SigningKey::generate(KeyType::EcdsaP256).unwrap();
    let pem = key.to_pkcs8_pem().unwrap();

    assert!(pem.starts_with(b"-----BEGIN PRIVATE KEY-----\n"));
    let reopened = SigningKey::open(&PrivateKeySource::Memory {
        data: pem,
        encoding: Encoding::Pem,
    })
    .unwrap();
    assert_eq!(
        reopened.public_key_der().unwrap(),
        key.public_key_der().unwrap()
    );
}

/// Returns the `InvalidCertificateField` field of a failed build.
fn rejected_field(builder: &mut CertificateBuilder, issuer: Issuer<'_>) -> &'static str {
    match builder.build(issuer) {
        Err(TlsError::InvalidCertificateField { field, .. }) => field,
        other => panic!("expected an invalid field, got {other:?}"),
    }
}

#[test]
fn builder_rejects_incomplete_certificates() {
    let ca = build_ca(KeyType::EcdsaP256);
    let other = SigningKey::generate(KeyType::EcdsaP256).unwrap();
    let other_spki = other.public_key_der().unwrap();
    let now = SystemTime::now();
    let by_ca = Issuer::Ca {
        certificate: &ca.certificate,
        key: &ca.key,
    };

    let no_validity = CertificateBuilder::new()
        .common_name("x")
        .public_key_der(&other_spki)
        .build(by_ca);
    assert!(matches!(
        no_validity,
        Err(TlsError::InvalidCertificateField {
            field: "validity",
            ..
        })
    ));
    assert_eq!(
        rejected_field(
            CertificateBuilder::new()
                .common_name("x")
                .public_key_der(&other_spki)
                .validity(now, now - DAY),
            by_ca
        ),
        "validity"
    );
    assert_eq!(
        rejected_field(
            CertificateBuilder::new()
                .public_key_der(&other_spki)
                .validity(now, now + DAY),
            by_ca
        ),
        "subject"
    );
    assert_eq!(
        rejected_field(
            CertificateBuilder::new()
                .common_name("x")
                .validity(now, now + DAY),
            by_ca
        ),
        "public key"
    );
    // A self-signed certificate must carry its own signing key's public key.
    assert_eq!(
        rejected_field(
            CertificateBuilder::new()
                .common_name("x")
                .public_key_der(&other_spki)
                .validity(now, now + DAY),
            Issuer::SelfSigned(&ca.key)
        ),
        "public key"
    );
}

#[test]
fn builder_rejects_invalid_serials() {
    let key = SigningKey::generate(KeyType::EcdsaP256).unwrap();
    let now = SystemTime::now();
    for serial in [&[][..], &[0x80, 1], &[1; 21]] {
        assert_eq!(
            rejected_field(
                CertificateBuilder::new()
                    .common_name("x")
                    .serial(serial)
                    .validity(now, now + DAY),
                Issuer::SelfSigned(&key)
            ),
            "serial",
            "{serial:?}"
        );
    }
}

#[test]
fn spki_that_does_not_parse_is_rejected() {
    let ca = build_ca(KeyType::EcdsaP256);
    let now = SystemTime::now();
    let error = CertificateBuilder::new()
        .common_name("x")
        .public_key_der(b"\x30\x03\x02\x01\x00")
        .validity(now, now + DAY)
        .build(Issuer::Ca {
            certificate: &ca.certificate,
            key: &ca.key,
        })
        .expect_err("invalid public key");
    assert!(
        matches!(
            error,
            TlsError::Library {
                function: "gnutls_pubkey_import",
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn token_key_signs_certificates() {
    if !Path::new(SOFTHSM_MODULE).exists() {
        eprintln!("skipping: {SOFTHSM_MODULE} is missing (install softhsm2)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = init_token(dir.path());
    generate_token_key(&conf, "cakey");

    // GnuTLS's PKCS#11 state is process-wide and SoftHSM reads SOFTHSM2_CONF when it loads, so
    // the signing runs in a child test process with its own environment.
    run_child_test(
        "tls::tests::certgen::token_signing_child",
        &[
            ("SOFTHSM2_CONF", conf.as_os_str()),
            ("TLSPOOL_TEST_OUT_DIR", dir.path().as_os_str()),
        ],
    );

    // The child wrote the token-signed CA and leaf; certtool checks the chain on its own.
    assert_chain_verifies(
        &dir.path().join("token-ca.pem"),
        &dir.path().join("token-leaf.pem"),
    );
}

#[test]
#[ignore = "run by token_key_signs_certificates in a child process with SOFTHSM2_CONF set"]
fn token_signing_child() {
    let out_dir =
        PathBuf::from(std::env::var_os("TLSPOOL_TEST_OUT_DIR").expect("set by the parent"));
    pkcs11_add_provider(SOFTHSM_MODULE).expect("softhsm module loads");
    set_pin_callback(Box::new(|_: &PinRequest| {
        Some(Zeroizing::new(TOKEN_PIN.to_owned()))
    }));

    // A self-signed CA whose key and public key stay on the token.
    let ca_key = SigningKey::from_pkcs11_uri("pkcs11:token=tlspool;object=cakey;type=private")
        .expect("token key opens");
    let now = SystemTime::now();
    let ca_certificate = CertificateBuilder::new()
        .common_name("Token CA")
        .ca(None)
        .key_usage(KeyUsage::KEY_CERT_SIGN)
        .validity(now - Duration::from_secs(60), now + DAY)
        .public_key_from(&ca_key)
        .build(Issuer::SelfSigned(&ca_key))
        .expect("token signs the CA certificate");
    let ca = TestCa {
        certificate: ca_certificate,
        key: ca_key,
    };
    let server = issue_leaf(&ca, "token.example", KeyType::EcdsaP256);

    let ca_pem = ca.certificate.to_pem().unwrap();
    let anchors = TrustAnchors::from_der(&[ca.certificate.der().to_vec()]).unwrap();
    let (client, _server) = handshake_with(&ca_pem, &server, None, "token.example");
    assert_eq!(
        client
            .verify_peer_x509(&anchors, Some("token.example"))
            .ok(),
        Some(())
    );
    assert!(
        ca.key.to_pkcs8_pem().is_err(),
        "a token key must not export"
    );
    fs::write(out_dir.join("token-ca.pem"), ca_pem).unwrap();
    fs::write(out_dir.join("token-leaf.pem"), &server.cert_pem).unwrap();
}
