//! OpenPGP cards through PC/SC: key generation, PIN verification with the card's retry counter,
//! and signatures with the authentication key, on a virtual card behind its own pcscd.
//!
//! Each test runs in a child process with a fresh card (see `run_on_virtual_card`), because
//! libpcsclite fixes the pcscd socket once per process.

use ring::signature::{ECDSA_P256_SHA256_ASN1, ED25519, UnparsedPublicKey};
use tlspool_pkcs11::{CardKeyAlgorithm, ConfiguredPin, OpenPgpCard, PinChain, Pkcs11Error};
use tlspool_tests::virtual_card::{
    VIRTUAL_CARD_ADMIN_PIN, VIRTUAL_CARD_IDENT, VIRTUAL_CARD_USER_PIN, VirtualCard,
    run_on_virtual_card,
};

/// Opens the virtual card of this child process.
fn open_card() -> OpenPgpCard {
    OpenPgpCard::open(VIRTUAL_CARD_IDENT).expect("the virtual card opens by its ident")
}

fn user_pin() -> PinChain {
    PinChain::new().then(ConfiguredPin::new(VIRTUAL_CARD_USER_PIN))
}

#[test]
fn virtual_card_stops_when_dropped() {
    let card = VirtualCard::start();
    let socket = card.socket().to_owned();
    assert!(socket.exists(), "pcscd socket {} missing", socket.display());

    drop(card);
    // pcscd removes its socket when it exits, and the bridge exits with it.
    assert!(!socket.exists(), "pcscd still has {}", socket.display());
}

#[test]
fn virtual_card_is_listed_by_ident() {
    run_on_virtual_card("virtual_card_is_listed_by_ident", || {
        let idents = OpenPgpCard::list_idents().expect("pcscd lists the readers");
        assert_eq!(idents, [VIRTUAL_CARD_IDENT]);

        let card = open_card();
        assert_eq!(card.ident(), VIRTUAL_CARD_IDENT);
    });
}

#[test]
fn unknown_ident_lists_available_cards() {
    run_on_virtual_card("unknown_ident_lists_available_cards", || {
        let error = OpenPgpCard::open("ffff:12345678").expect_err("no such card");
        match error {
            Pkcs11Error::CardNotFound { ident, available } => {
                assert_eq!(ident, "FFFF:12345678");
                assert_eq!(available, [VIRTUAL_CARD_IDENT]);
            }
            other => panic!("expected CardNotFound, got {other}"),
        }
    });
}

#[test]
fn empty_card_has_no_authentication_key() {
    run_on_virtual_card("empty_card_has_no_authentication_key", || {
        let mut card = open_card();
        let error = card.authentication_key().expect_err("the slot is empty");
        assert!(
            matches!(error, Pkcs11Error::CardKeyMissing { .. }),
            "expected CardKeyMissing, got {error}"
        );
        assert_eq!(card.authentication_fingerprint().expect("readable"), None);
    });
}

#[test]
fn ed25519_key_generates_and_signs() {
    run_on_virtual_card("ed25519_key_generates_and_signs", || {
        let mut card = open_card();
        let generated = card
            .generate_authentication_key(VIRTUAL_CARD_ADMIN_PIN, CardKeyAlgorithm::Ed25519)
            .expect("the card generates an Ed25519 key");
        assert_eq!(generated.algorithm(), CardKeyAlgorithm::Ed25519);
        assert_eq!(generated.point().len(), 32);

        let read_back = card.authentication_key().expect("the key reads back");
        assert_eq!(read_back, generated);
        let fingerprint = card.authentication_fingerprint().expect("readable");
        assert_eq!(fingerprint.map(|f| f.len()), Some(20));

        let message = b"TLS 1.3, server CertificateVerify test message";
        let signature = card
            .sign_with_authentication_key(message, &user_pin())
            .expect("the card signs after the configured user PIN");
        assert_eq!(signature.len(), 64);
        UnparsedPublicKey::new(&ED25519, generated.point())
            .verify(message, &signature)
            .expect("the signature verifies with the card's public key");

        let spki = generated
            .to_subject_public_key_info()
            .expect("spki encodes");
        assert_eq!(spki.len(), 44);
        assert_eq!(&spki[12..], generated.point());
    });
}

#[test]
fn p256_key_generates_and_signs_digest() {
    run_on_virtual_card("p256_key_generates_and_signs_digest", || {
        let mut card = open_card();
        let generated = card
            .generate_authentication_key(VIRTUAL_CARD_ADMIN_PIN, CardKeyAlgorithm::EcdsaP256)
            .expect("the card generates a P-256 key");
        assert_eq!(generated.algorithm(), CardKeyAlgorithm::EcdsaP256);
        assert_eq!(generated.point().first(), Some(&0x04));

        let message = b"TLS 1.2 ServerKeyExchange test parameters";
        let digest = ring::digest::digest(&ring::digest::SHA256, message);
        let signature = card
            .sign_with_authentication_key(digest.as_ref(), &user_pin())
            .expect("the card signs the digest");
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, generated.point())
            .verify(message, &signature)
            .expect("the DER signature verifies with the card's public key");
    });
}

#[test]
fn wrong_user_pin_decrements_retry_counter() {
    run_on_virtual_card("wrong_user_pin_decrements_retry_counter", || {
        let mut card = open_card();
        assert_eq!(card.user_pin_retries().expect("readable"), 3);

        let error = card.verify_user_pin("654321").expect_err("wrong PIN");
        match error {
            Pkcs11Error::CardWrongPin {
                pin, retries_left, ..
            } => {
                assert_eq!(pin, "user");
                assert_eq!(retries_left, 2);
            }
            other => panic!("expected CardWrongPin, got {other}"),
        }
        assert_eq!(card.user_pin_retries().expect("readable"), 2);

        card.verify_user_pin(VIRTUAL_CARD_USER_PIN)
            .expect("the right PIN verifies");
        assert_eq!(card.user_pin_retries().expect("readable"), 3);
    });
}

#[test]
fn verified_pin_is_shared_by_connections() {
    run_on_virtual_card("verified_pin_is_shared_by_connections", || {
        let mut first = open_card();
        let mut second = open_card();
        let no_pins = PinChain::new();
        assert!(matches!(
            second.login(&no_pins),
            Err(Pkcs11Error::PinNotProvided { .. })
        ));

        first
            .verify_user_pin(VIRTUAL_CARD_USER_PIN)
            .expect("the right PIN verifies");
        second
            .login(&no_pins)
            .expect("the other connection sees the PIN verified");
    });
}

#[test]
fn configured_pin_declines_final_try() {
    run_on_virtual_card("configured_pin_declines_final_try", || {
        let mut card = open_card();
        for _ in 0..2 {
            let _ = card.verify_user_pin("000000");
        }
        assert_eq!(card.user_pin_retries().expect("readable"), 1);

        let error = card
            .login(&user_pin())
            .expect_err("no PIN on the final try");
        assert!(
            matches!(error, Pkcs11Error::PinNotProvided { .. }),
            "expected PinNotProvided, got {error}"
        );
        assert_eq!(card.user_pin_retries().expect("readable"), 1);
    });
}

#[test]
fn blocked_user_pin_is_reported_before_trying() {
    run_on_virtual_card("blocked_user_pin_is_reported_before_trying", || {
        let mut card = open_card();
        for _ in 0..3 {
            let _ = card.verify_user_pin("000000");
        }
        assert_eq!(card.user_pin_retries().expect("readable"), 0);

        let error = card
            .verify_user_pin(VIRTUAL_CARD_USER_PIN)
            .expect_err("blocked");
        assert!(
            matches!(error, Pkcs11Error::CardPinBlocked { pin: "user", .. }),
            "expected CardPinBlocked, got {error}"
        );
    });
}

#[test]
fn wrong_admin_pin_blocks_key_generation() {
    run_on_virtual_card("wrong_admin_pin_blocks_key_generation", || {
        let mut card = open_card();
        let error = card
            .generate_authentication_key("87654321", CardKeyAlgorithm::Ed25519)
            .expect_err("wrong admin PIN");
        match error {
            Pkcs11Error::CardWrongPin {
                pin, retries_left, ..
            } => {
                assert_eq!(pin, "admin");
                assert_eq!(retries_left, 2);
            }
            other => panic!("expected CardWrongPin, got {other}"),
        }
        assert!(matches!(
            card.authentication_key(),
            Err(Pkcs11Error::CardKeyMissing { .. })
        ));
    });
}
