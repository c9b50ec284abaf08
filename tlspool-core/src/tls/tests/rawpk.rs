//! RFC 7250 raw public keys between two in-memory sessions: both versions, three key types,
//! the certificate type order, and a peer that offers only X.509.

use super::*;

/// A raw public key with its private key, generated in memory.
struct RawKey {
    spki: Vec<u8>,
    key_pem: Zeroizing<Vec<u8>>,
}

impl RawKey {
    fn generate(key_type: KeyType) -> Self {
        let key = SigningKey::generate(key_type).expect("key generates");
        Self {
            spki: key.public_key_der().expect("public key exports"),
            key_pem: key.to_pkcs8_pem().expect("private key exports"),
        }
    }

    fn source(&self) -> PrivateKeySource {
        PrivateKeySource::Memory {
            data: self.key_pem.clone(),
            encoding: Encoding::Pem,
        }
    }

    /// Credentials with only this raw key.
    fn credentials(&self) -> Credentials {
        Credentials::builder()
            .raw_public_key(self.spki.clone(), self.source())
            .build()
            .expect("raw key credentials build")
    }

    /// Credentials with this raw key, the certificate of `identity` and the fixture's CA.
    fn credentials_with_x509(&self, identity: &Identity) -> Credentials {
        Credentials::builder()
            .certificate_chain(&identity.cert_pem, Encoding::Pem)
            .private_key(PrivateKeySource::Memory {
                data: Zeroizing::new(identity.key_pem.clone()),
                encoding: Encoding::Pem,
            })
            .raw_public_key(self.spki.clone(), self.source())
            .trust_anchors(&fixture().ca_pem, Encoding::Pem)
            .build()
            .expect("combined credentials build")
    }
}

fn session(
    role: Role,
    priority: &str,
    types: CertificateTypes,
    credentials: &Credentials,
) -> Session {
    let mut config = SessionConfig::new(role);
    config.priority = priority.to_owned();
    config.certificate_types = types;
    config.client_cert = ClientCertificate::Require;
    Session::new(config, credentials).expect("session created")
}

#[test]
fn raw_keys_authenticate_both_sides() {
    for priority in [TLS12, TLS13] {
        for key_type in [KeyType::Rsa2048, KeyType::EcdsaP256, KeyType::Ed25519] {
            let case = format!("{priority} {key_type:?}");
            // GnuTLS 3.7 selects no Ed25519 client key under TLS 1.2, see the test below.
            let client_key = match (priority, key_type) {
                (TLS12, KeyType::Ed25519) => RawKey::generate(KeyType::EcdsaP256),
                _ => RawKey::generate(key_type),
            };
            let server_key = RawKey::generate(key_type);
            let types = CertificateTypes::RawPublicKeyFirst;
            let mut client = session(Role::Client, priority, types, &client_key.credentials());
            let mut server = session(Role::Server, priority, types, &server_key.credentials());

            handshake(&mut client, &mut server).unwrap_or_else(|e| panic!("{case}: {e:?}"));

            assert_eq!(
                client.peer_certificate_type(),
                CertificateType::RawPublicKey,
                "{case}"
            );
            assert_eq!(
                server.peer_certificate_type(),
                CertificateType::RawPublicKey,
                "{case}"
            );
            assert_eq!(
                client.local_certificate_type(),
                CertificateType::RawPublicKey,
                "{case}"
            );
            assert_eq!(
                client.peer_raw_public_key().as_deref(),
                Some(server_key.spki.as_slice()),
                "{case}"
            );
            assert_eq!(
                server.peer_raw_public_key().as_deref(),
                Some(client_key.spki.as_slice()),
                "{case}"
            );
            assert_eq!(
                transfer(&mut client, &mut server, b"ping"),
                b"ping",
                "{case}"
            );
        }
    }
}

#[test]
fn ed25519_client_key_needs_tls13() {
    let client_key = RawKey::generate(KeyType::Ed25519);
    let server_key = RawKey::generate(KeyType::EcdsaP256);
    let types = CertificateTypes::RawPublicKeyFirst;
    let mut client = session(Role::Client, TLS12, types, &client_key.credentials());
    let mut server = session(Role::Server, TLS12, types, &server_key.credentials());

    let error = handshake(&mut client, &mut server).expect_err("GnuTLS 3.7 sends no key");

    assert_eq!(error.0, Side::Server);
    assert!(matches!(error.1, TlsError::NoPeerCertificate), "{error:?}");
}

#[test]
fn shared_order_picks_first_type() {
    let f = fixture();
    for priority in [TLS12, TLS13] {
        for (types, expected) in [
            (
                CertificateTypes::RawPublicKeyFirst,
                CertificateType::RawPublicKey,
            ),
            (CertificateTypes::X509First, CertificateType::X509),
        ] {
            let case = format!("{priority} {types:?}");
            let server_key = RawKey::generate(KeyType::EcdsaP256);
            let client_key = RawKey::generate(KeyType::EcdsaP256);
            let client_credentials = client_key.credentials_with_x509(&f.client);
            let server_credentials = server_key.credentials_with_x509(&f.rsa_server);
            let mut client = session(Role::Client, priority, types, &client_credentials);
            let mut server = session(Role::Server, priority, types, &server_credentials);

            handshake(&mut client, &mut server).unwrap_or_else(|e| panic!("{case}: {e:?}"));

            assert_eq!(client.peer_certificate_type(), expected, "{case}");
            assert_eq!(server.peer_certificate_type(), expected, "{case}");
            let raw_key = client.peer_raw_public_key();
            match expected {
                CertificateType::RawPublicKey => {
                    assert_eq!(
                        raw_key.as_deref(),
                        Some(server_key.spki.as_slice()),
                        "{case}"
                    );
                }
                _ => assert_eq!(raw_key, None, "{case}"),
            }
        }
    }
}

#[test]
fn x509_only_peer_gets_x509() {
    let f = fixture();
    for priority in [TLS12, TLS13] {
        let server_key = RawKey::generate(KeyType::Ed25519);
        let server_credentials = server_key.credentials_with_x509(&f.rsa_server);
        let mut client = session(
            Role::Client,
            priority,
            CertificateTypes::X509Only,
            &f.client.credentials(&f.ca_pem),
        );
        let mut server = session(
            Role::Server,
            priority,
            CertificateTypes::RawPublicKeyFirst,
            &server_credentials,
        );

        handshake(&mut client, &mut server).expect("handshake succeeds");

        assert_eq!(client.peer_certificate_type(), CertificateType::X509);
        assert_eq!(server.peer_certificate_type(), CertificateType::X509);
        assert_eq!(
            client.peer_certificates().first().map(Vec::as_slice),
            Some(f.rsa_server.leaf_der().as_slice())
        );
    }
}

#[test]
fn credentials_report_their_types() {
    let key = RawKey::generate(KeyType::EcdsaP256);
    let raw_only = key.credentials();
    assert!(raw_only.has_raw_public_key());
    assert!(!raw_only.has_x509());
    let combined = key.credentials_with_x509(&fixture().rsa_server);
    assert!(combined.has_raw_public_key());
    assert!(combined.has_x509());
}

#[test]
fn invalid_raw_key_is_rejected() {
    let key = RawKey::generate(KeyType::EcdsaP256);
    let result = Credentials::builder()
        .raw_public_key(b"not a key".to_vec(), key.source())
        .build();
    assert!(
        matches!(result, Err(TlsError::Library { .. })),
        "{result:?}"
    );
}

#[test]
fn server_follows_client_order() {
    let f = fixture();
    for priority in [TLS12, TLS13] {
        for (client_types, server_types, expected) in [
            (
                CertificateTypes::X509First,
                CertificateTypes::RawPublicKeyFirst,
                CertificateType::X509,
            ),
            (
                CertificateTypes::RawPublicKeyFirst,
                CertificateTypes::X509First,
                CertificateType::RawPublicKey,
            ),
        ] {
            let case = format!("{priority} client {client_types:?} server {server_types:?}");
            let server_key = RawKey::generate(KeyType::EcdsaP256);
            let client_key = RawKey::generate(KeyType::EcdsaP256);
            let client_credentials = client_key.credentials_with_x509(&f.client);
            let server_credentials = server_key.credentials_with_x509(&f.rsa_server);
            let mut client = session(Role::Client, priority, client_types, &client_credentials);
            let mut server = session(Role::Server, priority, server_types, &server_credentials);

            handshake(&mut client, &mut server).unwrap_or_else(|e| panic!("{case}: {e:?}"));

            assert_eq!(client.peer_certificate_type(), expected, "{case}");
            assert_eq!(server.peer_certificate_type(), expected, "{case}");
        }
    }
}

#[test]
fn renegotiation_keeps_raw_keys() {
    let server_key = RawKey::generate(KeyType::EcdsaP256);
    let client_key = RawKey::generate(KeyType::EcdsaP256);
    let types = CertificateTypes::RawPublicKeyFirst;
    let mut client = session(Role::Client, TLS12, types, &client_key.credentials());
    let mut server = session(Role::Server, TLS12, types, &server_key.credentials());
    client
        .offer_anonymous_precursor(TLS12)
        .expect("client offers the precursor");
    server
        .offer_anonymous_precursor(TLS12)
        .expect("server offers the precursor");
    handshake(&mut client, &mut server).expect("precursor handshake");
    assert!(client.is_anonymous_precursor());

    client
        .set_priority_string(TLS12)
        .expect("client drops ANON");
    server
        .set_priority_string(TLS12)
        .expect("server drops ANON");
    server.start_renegotiation().expect("HelloRequest queued");
    renegotiate::complete(&mut server, &mut client);

    assert!(!client.is_anonymous_precursor());
    assert_eq!(
        client.peer_certificate_type(),
        CertificateType::RawPublicKey
    );
    assert_eq!(
        client.peer_raw_public_key().as_deref(),
        Some(server_key.spki.as_slice())
    );
    assert_eq!(
        server.peer_raw_public_key().as_deref(),
        Some(client_key.spki.as_slice())
    );
}
