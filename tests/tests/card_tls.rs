//! TLS handshakes signed by an OpenPGP card: the card's authentication key, wrapped in a GnuTLS
//! external key, is the server's RFC 7250 raw public key for `gnutls-cli`, in TLS 1.3 (Ed25519
//! and P-256) and TLS 1.2 (P-256).
//!
//! Each test runs in a child process with a fresh virtual card (see `run_on_virtual_card`),
//! because libpcsclite fixes the pcscd socket once per process.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tlspool_core::tls::{
    CertificateType, CertificateTypes, ClientCertificate, Credentials, ExternalKey,
    ExternalKeyAlgorithm, ExternalSigner, HandshakeStatus, PrivateKeySource, Role, Session,
    SessionConfig, SignInput, TlsError,
};
use tlspool_pkcs11::{CardKeyAlgorithm, ConfiguredPin, OpenPgpCard, PinChain};
use tlspool_tests::tls_peers::{Peer, gnutls_cli};
use tlspool_tests::virtual_card::{
    VIRTUAL_CARD_ADMIN_PIN, VIRTUAL_CARD_IDENT, VIRTUAL_CARD_USER_PIN, run_on_virtual_card,
};

#[test]
fn ed25519_card_key_signs_tls13_handshake() {
    run_on_virtual_card("ed25519_card_key_signs_tls13_handshake", || {
        let output = serve_gnutls_cli_with_card_key(CardKeyAlgorithm::Ed25519, TLS13);
        assert!(
            output.contains("EdDSA-Ed25519"),
            "gnutls-cli did not report an Ed25519 signature:\n{output}"
        );
    });
}

#[test]
fn p256_card_key_signs_tls13_handshake() {
    run_on_virtual_card("p256_card_key_signs_tls13_handshake", || {
        let output = serve_gnutls_cli_with_card_key(CardKeyAlgorithm::EcdsaP256, TLS13);
        assert!(
            output.contains("ECDSA-SECP256R1-SHA256"),
            "gnutls-cli did not report an ECDSA P-256 signature:\n{output}"
        );
    });
}

#[test]
fn p256_card_key_signs_tls12_handshake() {
    run_on_virtual_card("p256_card_key_signs_tls12_handshake", || {
        let output = serve_gnutls_cli_with_card_key(CardKeyAlgorithm::EcdsaP256, TLS12);
        assert!(
            output.contains("TLS1.2"),
            "gnutls-cli did not report TLS 1.2:\n{output}"
        );
        assert!(
            output.contains("ECDSA-SHA256"),
            "gnutls-cli did not report an ECDSA signature:\n{output}"
        );
    });
}

#[test]
fn wrong_card_pin_fails_handshake() {
    run_on_virtual_card("wrong_card_pin_fails_handshake", || {
        let credentials = card_credentials(CardKeyAlgorithm::Ed25519, "000000");
        let mut connection = GnutlsCliConnection::accept(TLS13, &credentials);

        let error = connection.handshake().expect_err("the card signs nothing");
        // GNUTLS_E_PK_SIGN_FAILED is -46.
        assert!(
            matches!(
                error,
                TlsError::HandshakeFailed { code: -46, .. } | TlsError::Library { code: -46, .. }
            ),
            "expected a signing failure, got {error:?}"
        );
        let mut card = OpenPgpCard::open(VIRTUAL_CARD_IDENT).expect("the virtual card opens again");
        assert_eq!(card.user_pin_retries().expect("readable"), 2);
    });
}

const TLS13: &str = "NORMAL:-VERS-ALL:+VERS-TLS1.3";
const TLS12: &str = "NORMAL:-VERS-ALL:+VERS-TLS1.2";

/// Generates a key of `algorithm` on the card, serves one `gnutls-cli` connection with it as
/// the server's raw public key under `priority`, sends a line and returns gnutls-cli's output.
///
/// The handshake can only complete when the card's signature verifies, because the server has
/// no other private key. `--insecure` skips only the trust decision about the raw key.
fn serve_gnutls_cli_with_card_key(algorithm: CardKeyAlgorithm, priority: &str) -> String {
    let credentials = card_credentials(algorithm, VIRTUAL_CARD_USER_PIN);
    let mut connection = GnutlsCliConnection::accept(priority, &credentials);
    if let Err(error) = connection.handshake() {
        panic!("handshake failed: {error}\n{}", connection.client.output());
    }

    let GnutlsCliConnection {
        mut server,
        mut tcp,
        mut client,
    } = connection;
    assert_eq!(
        server.local_certificate_type(),
        CertificateType::RawPublicKey
    );
    server
        .write_plaintext(b"signed by the card\n")
        .expect("write to gnutls-cli");
    tcp.write_all(&server.take_ciphertext())
        .expect("send the record");
    assert!(
        client.wait_for_output("signed by the card"),
        "gnutls-cli did not print the data:\n{}",
        client.output()
    );
    client.close_stdin();
    client.output()
}

/// Generates a key of `algorithm` on the card and builds credentials whose raw public key
/// signs through the card, verifying the user PIN `pin` when the card needs it.
fn card_credentials(algorithm: CardKeyAlgorithm, pin: &str) -> Credentials {
    let mut card =
        OpenPgpCard::open(VIRTUAL_CARD_IDENT).expect("the virtual card opens by its ident");
    let public_key = card
        .generate_authentication_key(VIRTUAL_CARD_ADMIN_PIN, algorithm)
        .expect("the card generates a key");
    let spki = public_key
        .to_subject_public_key_info()
        .expect("spki encodes");
    let signer = CardSigner {
        card: Mutex::new(card),
        pins: PinChain::new().then(ConfiguredPin::new(pin)),
        algorithm: match algorithm {
            CardKeyAlgorithm::Ed25519 => ExternalKeyAlgorithm::Ed25519,
            CardKeyAlgorithm::EcdsaP256 => ExternalKeyAlgorithm::EcdsaP256,
            other => panic!("no TLS signer for {other:?}"),
        },
    };
    let key = ExternalKey::new(Arc::new(signer));
    Credentials::builder()
        .raw_public_key(spki, PrivateKeySource::External(key))
        .build()
        .expect("credentials with the card key build")
}

/// A server session and the `gnutls-cli` process connected to it over loopback TCP.
struct GnutlsCliConnection {
    server: Session,
    tcp: TcpStream,
    client: Peer,
}

impl GnutlsCliConnection {
    /// Starts `gnutls-cli` (accepting raw public keys under `priority`) and accepts it.
    fn accept(priority: &str, credentials: &Credentials) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let client_priority = format!("{priority}:-CTYPE-ALL:+CTYPE-SRV-RAWPK:+CTYPE-CLI-X509");
        let client = gnutls_cli(port, &["--insecure", "--priority", &client_priority]);
        let (tcp, _) = listener.accept().expect("gnutls-cli connects");
        tcp.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("set a read timeout");

        let mut config = SessionConfig::new(Role::Server);
        config.priority = priority.to_owned();
        config.certificate_types = CertificateTypes::RawPublicKeyFirst;
        config.client_cert = ClientCertificate::Ignore;
        let server = Session::new(config, credentials).expect("server session");
        Self {
            server,
            tcp,
            client,
        }
    }

    /// Runs the server handshake until it completes or fails.
    fn handshake(&mut self) -> Result<(), TlsError> {
        let mut buffer = vec![0; 16 * 1024];
        loop {
            let status = self.server.handshake();
            self.tcp
                .write_all(&self.server.take_ciphertext())
                .expect("send handshake records");
            if status? == HandshakeStatus::Done {
                return Ok(());
            }
            let read = self.tcp.read(&mut buffer).expect("read from gnutls-cli");
            assert!(
                read > 0,
                "gnutls-cli closed the connection:\n{}",
                self.client.output()
            );
            self.server.feed_ciphertext(&buffer[..read]);
        }
    }
}

/// Signs TLS handshakes with the card's authentication key, as a local identity on a card
/// does.
struct CardSigner {
    card: Mutex<OpenPgpCard>,
    pins: PinChain,
    algorithm: ExternalKeyAlgorithm,
}

impl ExternalSigner for CardSigner {
    fn algorithm(&self) -> ExternalKeyAlgorithm {
        self.algorithm
    }

    fn sign(&self, input: SignInput<'_>) -> Result<Vec<u8>, String> {
        let bytes = match input {
            SignInput::Message(bytes) | SignInput::Digest(bytes) => bytes,
        };
        let mut card = self.card.lock().unwrap_or_else(PoisonError::into_inner);
        card.sign_with_authentication_key(bytes, &self.pins)
            .map_err(|e| e.to_string())
    }
}
