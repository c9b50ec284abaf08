//! OpenPGP identities as raw public keys: key selection, SubjectPublicKeyInfo derivation checked
//! by signatures and by OpenSSL, and peer matching, all on keys that sequoia generates here.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, SystemTime};

use der::Decode;
use der::asn1::{ObjectIdentifier, UintRef};
use ring::signature;
use sequoia_openpgp::cert::{
    CertBuilder, CipherSuite, SubkeyRevocationBuilder, UserIDRevocationBuilder,
};
use sequoia_openpgp::crypto::{KeyPair, Signer, mpi};
use sequoia_openpgp::packet::Key;
use sequoia_openpgp::packet::key::{Key4, SecretParts, SubordinateRole};
use sequoia_openpgp::packet::signature::SignatureBuilder;
use sequoia_openpgp::policy::StandardPolicy;
use sequoia_openpgp::serialize::SerializeInto;
use sequoia_openpgp::types::{Curve, SignatureType};
use sequoia_openpgp::types::{HashAlgorithm, KeyFlags, ReasonForRevocation};
use sequoia_openpgp::{Cert, Fingerprint, Packet, Profile};
use tlspool_validate::openpgp::{
    AuthenticationKey, Mismatch, OpenPgpError, PeerMatch, Rejection, match_raw_public_key,
    openpgpkey_owner_name, parse_transferable_public_key, subject_public_key_info,
};
use x509_cert::spki::SubjectPublicKeyInfoRef;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const USER_ID: &str = "Hugh Example <hugh@example.com>";
const REMOTE_ID: &str = "hugh@example.com";

/// Where the generated key may authenticate TLS.
#[derive(Clone, Copy)]
enum Authentication {
    /// An authentication subkey; the primary key certifies only.
    Subkey,
    /// The primary key carries the authentication flag; no authentication subkey.
    Primary,
    /// Both the primary key and a subkey carry the authentication flag.
    PrimaryAndSubkey,
    /// Only a signing subkey; nothing may authenticate.
    None,
}

fn policy() -> StandardPolicy<'static> {
    StandardPolicy::new()
}

/// Returns a time just after now, when every generated key and signature is valid.
fn soon() -> SystemTime {
    SystemTime::now() + Duration::from_secs(5)
}

fn builder(
    suite: CipherSuite,
    profile: Profile,
    authentication: Authentication,
) -> CertBuilder<'static> {
    let builder = CertBuilder::new()
        .set_cipher_suite(suite)
        .set_profile(profile)
        .unwrap_or_else(|error| panic!("profile {profile:?} is not supported: {error}"))
        .add_userid(USER_ID);
    let certify_and_authenticate = KeyFlags::empty().set_certification().set_authentication();
    match authentication {
        Authentication::Subkey => builder.add_authentication_subkey(),
        Authentication::Primary => builder.set_primary_key_flags(certify_and_authenticate),
        Authentication::PrimaryAndSubkey => builder
            .set_primary_key_flags(certify_and_authenticate)
            .add_authentication_subkey(),
        Authentication::None => builder.add_signing_subkey(),
    }
}

fn generate(suite: CipherSuite, profile: Profile, authentication: Authentication) -> Cert {
    match builder(suite, profile, authentication).generate() {
        Ok((cert, _revocation)) => cert,
        Err(error) => panic!("generating a {suite:?} {profile:?} key failed: {error:#}"),
    }
}

/// Generates a version 4 Ed25519 key with an authentication subkey, the most common case.
fn ed25519_key() -> Cert {
    generate(
        CipherSuite::Cv25519,
        Profile::RFC4880,
        Authentication::Subkey,
    )
}

/// Returns the secret primary key of `cert` as a signer.
fn primary_signer(cert: &Cert) -> Result<KeyPair, Box<dyn std::error::Error>> {
    Ok(cert
        .primary_key()
        .key()
        .clone()
        .parts_into_secret()?
        .into_keypair()?)
}

/// Selects the authentication key of `cert` and returns its SubjectPublicKeyInfo.
fn spki_of(cert: &Cert) -> Result<Vec<u8>, OpenPgpError> {
    select(cert, soon()).map(|key| key.subject_public_key_info)
}

fn public_bytes(cert: &Cert) -> Vec<u8> {
    match cert.clone().strip_secret_key_material().to_vec() {
        Ok(bytes) => bytes,
        Err(error) => panic!("serialising the public key failed: {error:#}"),
    }
}

fn select(cert: &Cert, time: SystemTime) -> Result<AuthenticationKey, OpenPgpError> {
    AuthenticationKey::select(cert, &policy(), time)
}

fn match_one(
    spki: &[u8],
    remote_id: &str,
    cert: &Cert,
    time: SystemTime,
) -> Result<PeerMatch, OpenPgpError> {
    let bytes = public_bytes(cert);
    match_raw_public_key(spki, remote_id, [bytes.as_slice()], &policy(), time)
}

/// Extracts the single mismatch of a match against one candidate.
fn only_mismatch(result: Result<PeerMatch, OpenPgpError>) -> Mismatch {
    match result {
        Err(OpenPgpError::NoMatchingKey { mut rejections, .. }) if rejections.len() == 1 => {
            rejections.remove(0).mismatch
        }
        other => panic!("expected exactly one rejection, got {other:?}"),
    }
}

/// Signs `digest` with the secret key `key` of `cert`.
fn sign_digest(
    cert: &Cert,
    key: &Fingerprint,
    hash: HashAlgorithm,
    digest: &[u8],
) -> mpi::Signature {
    let Some(secret) = cert.keys().secret().key_handle(key.clone()).next() else {
        panic!("no secret key {key} in the generated certificate");
    };
    let mut keypair = match secret.key().clone().into_keypair() {
        Ok(keypair) => keypair,
        Err(error) => panic!("secret key {key} is unusable: {error:#}"),
    };
    match keypair.sign(hash, digest) {
        Ok(signature) => signature,
        Err(error) => panic!("signing with {key} failed: {error:#}"),
    }
}

fn sha(algorithm: &'static ring::digest::Algorithm, message: &[u8]) -> Vec<u8> {
    ring::digest::digest(algorithm, message).as_ref().to_vec()
}

/// Concatenates r and s, each left-padded to `length` octets.
fn fixed_ecdsa(r: &mpi::MPI, s: &mpi::MPI, length: usize) -> Vec<u8> {
    let mut fixed = Vec::with_capacity(2 * length);
    for value in [r, s] {
        match value.value_padded(length) {
            Ok(padded) => fixed.extend_from_slice(&padded),
            Err(error) => panic!("ECDSA value longer than {length} octets: {error:#}"),
        }
    }
    fixed
}

/// Signs a message with the selected key in sequoia and verifies it with ring against the
/// key inside the derived SubjectPublicKeyInfo.
fn assert_signature_round_trip(cert: &Cert, selected: &AuthenticationKey) -> TestResult {
    let message = b"tlspool raw public key signature round trip";
    let info = SubjectPublicKeyInfoRef::from_der(&selected.subject_public_key_info)?;
    let public_key = info.subject_public_key.raw_bytes();
    let oid = info.algorithm.oid.to_string();

    let (algorithm, signed): (&dyn signature::VerificationAlgorithm, Vec<u8>) = match oid.as_str() {
        "1.2.840.113549.1.1.1" => {
            let digest = sha(&ring::digest::SHA256, message);
            let mpi::Signature::RSA { s } =
                sign_digest(cert, &selected.key, HashAlgorithm::SHA256, &digest)
            else {
                panic!("RSA key made no RSA signature");
            };
            (
                &signature::RSA_PKCS1_2048_8192_SHA256,
                s.value_padded(public_key_modulus_len(public_key)?)?
                    .to_vec(),
            )
        }
        "1.2.840.10045.2.1" => {
            let curve = info
                .algorithm
                .parameters_oid()
                .map_err(|error| format!("ECDSA key without named curve: {error}"))?;
            let (hash, digest_algorithm, verification, length): (
                _,
                _,
                &dyn signature::VerificationAlgorithm,
                _,
            ) = if curve == ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7") {
                (
                    HashAlgorithm::SHA256,
                    &ring::digest::SHA256,
                    &signature::ECDSA_P256_SHA256_FIXED,
                    32,
                )
            } else if curve == ObjectIdentifier::new_unwrap("1.3.132.0.34") {
                (
                    HashAlgorithm::SHA384,
                    &ring::digest::SHA384,
                    &signature::ECDSA_P384_SHA384_FIXED,
                    48,
                )
            } else {
                return Err(format!("ring has no verifier for curve {curve}").into());
            };
            let digest = sha(digest_algorithm, message);
            let mpi::Signature::ECDSA { r, s } = sign_digest(cert, &selected.key, hash, &digest)
            else {
                panic!("ECDSA key made no ECDSA signature");
            };
            (verification, fixed_ecdsa(&r, &s, length))
        }
        "1.3.101.112" => {
            // Sequoia's EdDSA signs the digest octets as the Ed25519 message.
            let digest = sha(&ring::digest::SHA512, message);
            let signed = match sign_digest(cert, &selected.key, HashAlgorithm::SHA512, &digest) {
                mpi::Signature::EdDSA { r, s } => fixed_ecdsa(&r, &s, 32),
                mpi::Signature::Ed25519 { s } => s.to_vec(),
                other => panic!("Ed25519 key made another signature: {other:?}"),
            };
            let key = signature::UnparsedPublicKey::new(&signature::ED25519, public_key);
            key.verify(&digest, &signed)
                .map_err(|_| format!("Ed25519 signature of {} does not verify", selected.key))?;
            return Ok(());
        }
        other => return Err(format!("no ring verifier for algorithm {other}").into()),
    };

    let key = signature::UnparsedPublicKey::new(algorithm, public_key);
    key.verify(message, &signed).map_err(|_| {
        format!(
            "signature of {} does not verify against its SPKI",
            selected.key
        )
    })?;
    Ok(())
}

/// Octets of the modulus in an RSAPublicKey, for left-padding the signature.
fn public_key_modulus_len(rsa_public_key: &[u8]) -> Result<usize, der::Error> {
    #[derive(der::Sequence)]
    struct RsaPublicKey<'a> {
        modulus: UintRef<'a>,
        public_exponent: UintRef<'a>,
    }
    let key = RsaPublicKey::from_der(rsa_public_key)?;
    let _ = key.public_exponent;
    Ok(key.modulus.as_bytes().len())
}

/// Prints a DER SubjectPublicKeyInfo with `openssl pkey -pubin -inform DER -text -noout`.
fn openssl_text(spki: &[u8]) -> Result<String, Box<dyn std::error::Error>> {
    let mut file = tempfile::NamedTempFile::new()?;
    file.write_all(spki)?;
    let output = Command::new("openssl")
        .args(["pkey", "-pubin", "-inform", "DER", "-text", "-noout", "-in"])
        .arg(file.path())
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "openssl rejected the SubjectPublicKeyInfo: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// Verifies `signature_file` over `input` with `openssl pkeyutl` and the DER SPKI.
fn openssl_verifies(
    spki: &[u8],
    input: &[u8],
    signature_bytes: &[u8],
    raw_input: bool,
) -> TestResult {
    let mut key = tempfile::NamedTempFile::new()?;
    key.write_all(spki)?;
    let mut data = tempfile::NamedTempFile::new()?;
    data.write_all(input)?;
    let mut sig = tempfile::NamedTempFile::new()?;
    sig.write_all(signature_bytes)?;
    let mut command = Command::new("openssl");
    command
        .args(["pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey"])
        .arg(key.path())
        .arg("-in")
        .arg(data.path())
        .arg("-sigfile")
        .arg(sig.path());
    if raw_input {
        command.arg("-rawin");
    }
    let output = command.output()?;
    if !output.status.success() {
        return Err(format!(
            "openssl did not verify the signature: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(())
}

// Selection of the authentication key.

#[test]
fn selects_authentication_subkey_over_primary() -> TestResult {
    let cert = generate(
        CipherSuite::Cv25519,
        Profile::RFC4880,
        Authentication::PrimaryAndSubkey,
    );
    let selected = select(&cert, soon())?;
    assert!(!selected.is_primary);
    assert_ne!(selected.key, cert.fingerprint());
    assert_eq!(selected.certificate, cert.fingerprint());
    assert_eq!(selected.version, 4);
    Ok(())
}

#[test]
fn selects_primary_without_authentication_subkey() -> TestResult {
    let cert = generate(CipherSuite::P256, Profile::RFC4880, Authentication::Primary);
    let selected = select(&cert, soon())?;
    assert!(selected.is_primary);
    assert_eq!(selected.key, cert.fingerprint());
    Ok(())
}

#[test]
fn rejects_key_without_authentication_flag() {
    let cert = generate(CipherSuite::Cv25519, Profile::RFC4880, Authentication::None);
    assert_eq!(
        select(&cert, soon()),
        Err(OpenPgpError::NoAuthenticationKey {
            fingerprint: cert.fingerprint()
        })
    );
}

#[test]
fn rejects_expired_certificate() -> TestResult {
    let created = SystemTime::now() - Duration::from_secs(7200);
    let (cert, _) = builder(
        CipherSuite::Cv25519,
        Profile::RFC4880,
        Authentication::Subkey,
    )
    .set_creation_time(created)
    .set_validity_period(Duration::from_secs(3600))
    .generate()?;
    let Err(OpenPgpError::Expired { fingerprint, at }) = select(&cert, SystemTime::now()) else {
        panic!("an expired certificate was accepted or rejected for another reason");
    };
    assert_eq!(fingerprint, cert.fingerprint());
    let expected = cert.primary_key().key().creation_time() + Duration::from_secs(3600);
    assert_eq!(at, expected);
    Ok(())
}

#[test]
fn expired_subkey_is_named_when_nothing_else_authenticates() -> TestResult {
    let created = SystemTime::now() - Duration::from_secs(7200);
    let (cert, _) = CertBuilder::new()
        .set_cipher_suite(CipherSuite::Cv25519)
        .set_creation_time(created)
        .add_userid(USER_ID)
        .add_subkey(
            KeyFlags::empty().set_authentication(),
            Duration::from_secs(3600),
            None,
        )
        .generate()?;
    let Some(subkey) = cert.keys().subkeys().next() else {
        panic!("generated certificate has no subkey");
    };
    let Err(OpenPgpError::Expired { fingerprint, .. }) = select(&cert, SystemTime::now()) else {
        panic!("an expired subkey was accepted or rejected for another reason");
    };
    assert_eq!(fingerprint, subkey.key().fingerprint());
    Ok(())
}

#[test]
fn expired_subkey_falls_back_to_primary() -> TestResult {
    let created = SystemTime::now() - Duration::from_secs(7200);
    let (cert, _) = CertBuilder::new()
        .set_cipher_suite(CipherSuite::Cv25519)
        .set_creation_time(created)
        .set_primary_key_flags(KeyFlags::empty().set_certification().set_authentication())
        .add_userid(USER_ID)
        .add_subkey(
            KeyFlags::empty().set_authentication(),
            Duration::from_secs(3600),
            None,
        )
        .generate()?;
    let selected = select(&cert, SystemTime::now())?;
    assert!(selected.is_primary);
    Ok(())
}

#[test]
fn rejects_not_yet_valid_certificate() {
    let cert = ed25519_key();
    let before = cert.primary_key().key().creation_time() - Duration::from_secs(3600);
    assert!(matches!(
        select(&cert, before),
        Err(OpenPgpError::NotYetValid { fingerprint, .. }) if fingerprint == cert.fingerprint()
    ));
}

#[test]
fn rejects_revoked_certificate() -> TestResult {
    let (cert, revocation) = builder(
        CipherSuite::Cv25519,
        Profile::RFC4880,
        Authentication::Subkey,
    )
    .generate()?;
    let (cert, _) = cert.insert_packets(revocation)?;
    let Err(OpenPgpError::Revoked { fingerprint, .. }) = select(&cert, soon()) else {
        panic!("a revoked certificate was accepted or rejected for another reason");
    };
    assert_eq!(fingerprint, cert.fingerprint());
    Ok(())
}

fn revoke_first_subkey(cert: Cert) -> Result<(Cert, Fingerprint), Box<dyn std::error::Error>> {
    let mut signer = primary_signer(&cert)?;
    let Some(subkey) = cert.keys().subkeys().next() else {
        return Err("generated certificate has no subkey".into());
    };
    let fingerprint = subkey.key().fingerprint();
    let revocation = SubkeyRevocationBuilder::new()
        .set_reason_for_revocation(ReasonForRevocation::KeyCompromised, b"lost laptop")?
        .build(&mut signer, &cert, subkey.key(), None)?;
    let (cert, _) = cert.insert_packets(revocation)?;
    Ok((cert, fingerprint))
}

#[test]
fn rejects_revoked_authentication_subkey() -> TestResult {
    let cert = ed25519_key();
    let (cert, subkey) = revoke_first_subkey(cert)?;
    let Err(OpenPgpError::Revoked {
        fingerprint,
        reason,
    }) = select(&cert, soon())
    else {
        panic!("a revoked subkey was accepted or rejected for another reason");
    };
    assert_eq!(fingerprint, subkey);
    assert!(
        reason.contains("lost laptop"),
        "reason {reason:?} lacks the message"
    );
    Ok(())
}

#[test]
fn parses_binary_and_armoured_keys() -> TestResult {
    let cert = ed25519_key();
    let binary = public_bytes(&cert);
    let armoured = cert
        .clone()
        .strip_secret_key_material()
        .armored()
        .to_vec()?;
    assert!(armoured.starts_with(b"-----BEGIN PGP PUBLIC KEY BLOCK-----"));
    assert_eq!(
        parse_transferable_public_key(&binary)?.fingerprint(),
        cert.fingerprint()
    );
    assert_eq!(
        parse_transferable_public_key(&armoured)?.fingerprint(),
        cert.fingerprint()
    );
    let from_binary = AuthenticationKey::from_bytes(&binary, &policy(), soon())?;
    let from_armour = AuthenticationKey::from_bytes(&armoured, &policy(), soon())?;
    assert_eq!(from_binary, from_armour);
    Ok(())
}

#[test]
fn parse_drops_secret_key_material() -> TestResult {
    let cert = ed25519_key();
    assert!(cert.is_tsk());
    let parsed = parse_transferable_public_key(&cert.as_tsk().to_vec()?)?;
    assert!(!parsed.is_tsk());
    Ok(())
}

#[test]
fn parse_rejects_garbage_and_keyrings() -> TestResult {
    assert!(matches!(
        parse_transferable_public_key(b"not an openpgp key"),
        Err(OpenPgpError::Parse { .. })
    ));
    let first = public_bytes(&ed25519_key());
    let second = public_bytes(&ed25519_key());
    let keyring = [first, second].concat();
    assert!(matches!(
        parse_transferable_public_key(&keyring),
        Err(OpenPgpError::Parse { .. })
    ));
    Ok(())
}

#[test]
fn encryption_key_has_no_raw_public_key_form() -> TestResult {
    let (cert, _) = builder(
        CipherSuite::Cv25519,
        Profile::RFC4880,
        Authentication::Subkey,
    )
    .add_transport_encryption_subkey()
    .generate()?;
    let policy = policy();
    let Ok(valid) = cert.with_policy(&policy, soon()) else {
        panic!("generated certificate is invalid");
    };
    let Some(encryption) = valid.keys().for_transport_encryption().next() else {
        panic!("generated certificate has no encryption subkey");
    };
    assert!(matches!(
        subject_public_key_info(encryption.key()),
        Err(OpenPgpError::UnsupportedAlgorithm { .. })
    ));
    Ok(())
}

#[test]
fn rejects_authentication_subkey_of_unsupported_algorithm() -> TestResult {
    // An X25519 (ECDH) key bound with the authentication flag: valid OpenPGP, no TLS form.
    let cert = generate(CipherSuite::Cv25519, Profile::RFC4880, Authentication::None);
    let mut signer = primary_signer(&cert)?;
    let subkey: Key<SecretParts, SubordinateRole> =
        Key4::generate_ecc(false, Curve::Cv25519)?.into();
    let binding = SignatureBuilder::new(SignatureType::SubkeyBinding)
        .set_key_flags(KeyFlags::empty().set_authentication())?
        .sign_subkey_binding(&mut signer, None, &subkey)?;
    let fingerprint = subkey.fingerprint();
    let (cert, _) = cert.insert_packets([Packet::from(subkey), Packet::from(binding)])?;

    let Err(OpenPgpError::UnsupportedAlgorithm {
        fingerprint: rejected,
        algorithm,
    }) = select(&cert, soon())
    else {
        panic!("an ECDH authentication key was accepted or rejected for another reason");
    };
    assert_eq!(rejected, fingerprint);
    assert!(algorithm.contains("ECDH"), "algorithm {algorithm:?}");
    Ok(())
}

// SubjectPublicKeyInfo derivation, one case per algorithm and key version.

struct SpkiCase {
    suite: CipherSuite,
    profile: Profile,
    version: u8,
    oid: &'static str,
    openssl_marker: &'static str,
}

const RING_CASES: [SpkiCase; 7] = [
    SpkiCase {
        suite: CipherSuite::RSA3k,
        profile: Profile::RFC4880,
        version: 4,
        oid: "1.2.840.113549.1.1.1",
        openssl_marker: "Public-Key: (3072 bit)",
    },
    SpkiCase {
        suite: CipherSuite::RSA3k,
        profile: Profile::RFC9580,
        version: 6,
        oid: "1.2.840.113549.1.1.1",
        openssl_marker: "Public-Key: (3072 bit)",
    },
    SpkiCase {
        suite: CipherSuite::P256,
        profile: Profile::RFC4880,
        version: 4,
        oid: "1.2.840.10045.2.1",
        openssl_marker: "ASN1 OID: prime256v1",
    },
    SpkiCase {
        suite: CipherSuite::P256,
        profile: Profile::RFC9580,
        version: 6,
        oid: "1.2.840.10045.2.1",
        openssl_marker: "ASN1 OID: prime256v1",
    },
    SpkiCase {
        suite: CipherSuite::P384,
        profile: Profile::RFC4880,
        version: 4,
        oid: "1.2.840.10045.2.1",
        openssl_marker: "ASN1 OID: secp384r1",
    },
    SpkiCase {
        suite: CipherSuite::Cv25519,
        profile: Profile::RFC4880,
        version: 4,
        oid: "1.3.101.112",
        openssl_marker: "ED25519 Public-Key",
    },
    SpkiCase {
        suite: CipherSuite::Cv25519,
        profile: Profile::RFC9580,
        version: 6,
        oid: "1.3.101.112",
        openssl_marker: "ED25519 Public-Key",
    },
];

fn check_spki_case(case: &SpkiCase, authentication: Authentication) -> TestResult {
    let cert = generate(case.suite, case.profile, authentication);
    let selected = select(&cert, soon())?;
    let label = format!("{:?} {:?}", case.suite, case.profile);
    assert_eq!(selected.version, case.version, "{label}: key version");

    let info = SubjectPublicKeyInfoRef::from_der(&selected.subject_public_key_info)?;
    assert_eq!(
        info.algorithm.oid.to_string(),
        case.oid,
        "{label}: algorithm"
    );
    assert_signature_round_trip(&cert, &selected).map_err(|error| format!("{label}: {error}"))?;

    let text = openssl_text(&selected.subject_public_key_info)?;
    assert!(
        text.contains(case.openssl_marker),
        "{label}: openssl printed {text}"
    );
    Ok(())
}

#[test]
fn subkey_spki_verifies_signatures() -> TestResult {
    for case in &RING_CASES {
        check_spki_case(case, Authentication::Subkey)?;
    }
    Ok(())
}

#[test]
fn primary_spki_verifies_signatures() -> TestResult {
    // RSA is left out here: its case above already covers the same encoding, and generating
    // another two 3072-bit keys costs seconds.
    for case in RING_CASES
        .iter()
        .filter(|case| !matches!(case.suite, CipherSuite::RSA3k))
    {
        check_spki_case(case, Authentication::Primary)?;
    }
    Ok(())
}

#[test]
fn legacy_eddsa_key_drops_prefix() -> TestResult {
    let cert = ed25519_key();
    let selected = select(&cert, soon())?;
    let Some(subkey) = cert.keys().key_handle(selected.key.clone()).next() else {
        panic!("selected key is not in the certificate");
    };
    let mpi::PublicKey::EdDSA { q, .. } = subkey.key().mpis() else {
        panic!("a version 4 Cv25519 key is not legacy EdDSA");
    };
    assert_eq!(q.value().first(), Some(&0x40));
    let info = SubjectPublicKeyInfoRef::from_der(&selected.subject_public_key_info)?;
    assert_eq!(info.subject_public_key.raw_bytes(), &q.value()[1..]);
    assert!(info.algorithm.parameters.is_none());
    Ok(())
}

#[test]
fn rsa_spki_has_null_parameters() -> TestResult {
    let cert = generate(CipherSuite::RSA2k, Profile::RFC4880, Authentication::Subkey);
    let selected = select(&cert, soon())?;
    let info = SubjectPublicKeyInfoRef::from_der(&selected.subject_public_key_info)?;
    let Some(parameters) = info.algorithm.parameters else {
        panic!("rsaEncryption without parameters");
    };
    assert_eq!(parameters, der::asn1::AnyRef::NULL);
    Ok(())
}

#[test]
fn p521_spki_verifies_with_openssl() -> TestResult {
    let cert = generate(CipherSuite::P521, Profile::RFC4880, Authentication::Subkey);
    let selected = select(&cert, soon())?;
    let text = openssl_text(&selected.subject_public_key_info)?;
    assert!(
        text.contains("ASN1 OID: secp521r1"),
        "openssl printed {text}"
    );

    let digest = sha(&ring::digest::SHA512, b"tlspool p-521 round trip");
    let mpi::Signature::ECDSA { r, s } =
        sign_digest(&cert, &selected.key, HashAlgorithm::SHA512, &digest)
    else {
        panic!("ECDSA key made no ECDSA signature");
    };
    #[derive(der::Sequence)]
    struct EcdsaSignature<'a> {
        r: UintRef<'a>,
        s: UintRef<'a>,
    }
    let encoded = der::Encode::to_der(&EcdsaSignature {
        r: UintRef::new(r.value())?,
        s: UintRef::new(s.value())?,
    })?;
    openssl_verifies(&selected.subject_public_key_info, &digest, &encoded, false)
}

#[test]
fn ed448_spki_verifies_with_openssl() -> TestResult {
    if CipherSuite::Cv448.is_supported().is_err() {
        return Err("the sequoia backend cannot generate Ed448 keys".into());
    }
    let cert = generate(CipherSuite::Cv448, Profile::RFC9580, Authentication::Subkey);
    let selected = select(&cert, soon())?;
    let text = openssl_text(&selected.subject_public_key_info)?;
    assert!(text.contains("ED448 Public-Key"), "openssl printed {text}");

    // Sequoia's Ed448 signs the digest octets as the message, with an empty context.
    let digest = sha(&ring::digest::SHA512, b"tlspool ed448 round trip");
    let mpi::Signature::Ed448 { s } =
        sign_digest(&cert, &selected.key, HashAlgorithm::SHA512, &digest)
    else {
        panic!("Ed448 key made no Ed448 signature");
    };
    openssl_verifies(&selected.subject_public_key_info, &digest, &s[..], true)
}

// Matching a received raw public key.

#[test]
fn matches_raw_public_key_and_user_id() -> TestResult {
    let cert = generate(
        CipherSuite::Cv25519,
        Profile::RFC9580,
        Authentication::Subkey,
    );
    let selected = select(&cert, soon())?;
    let found = match_one(&selected.subject_public_key_info, REMOTE_ID, &cert, soon())?;
    assert_eq!(found.candidate, 0);
    assert_eq!(found.key, selected);
    assert_eq!(found.user_id, USER_ID);
    Ok(())
}

#[test]
fn matches_domain_without_regard_to_case() -> TestResult {
    let cert = generate(CipherSuite::P256, Profile::RFC4880, Authentication::Subkey);
    let selected = select(&cert, soon())?;
    let found = match_one(
        &selected.subject_public_key_info,
        "hugh@EXAMPLE.Com",
        &cert,
        soon(),
    )?;
    assert_eq!(found.user_id, USER_ID);
    Ok(())
}

#[test]
fn rejects_other_addresses() -> TestResult {
    let cert = ed25519_key();
    let spki = spki_of(&cert)?;
    // The local part compares exactly, so a change of case is another address.
    for address in [
        "Hugh@example.com",
        "mallory@example.com",
        "hugh@example.org",
    ] {
        let mismatch = only_mismatch(match_one(&spki, address, &cert, soon()));
        assert_eq!(
            mismatch,
            Mismatch::NoUserId {
                certificate: cert.fingerprint(),
                address: address.to_owned()
            },
            "{address}"
        );
    }
    Ok(())
}

#[test]
fn rejects_key_of_another_certificate() -> TestResult {
    let cert = ed25519_key();
    let other = ed25519_key();
    let presented = select(&other, soon())?;
    let mismatch = only_mismatch(match_one(
        &presented.subject_public_key_info,
        REMOTE_ID,
        &cert,
        soon(),
    ));
    assert_eq!(
        mismatch,
        Mismatch::WrongKey {
            certificate: cert.fingerprint()
        }
    );
    Ok(())
}

#[test]
fn rejects_key_that_is_not_selected() -> TestResult {
    // The primary key certifies only, so its SPKI is no authentication key.
    let cert = ed25519_key();
    let selected = select(&cert, soon())?;
    let primary_spki = subject_public_key_info(cert.primary_key().key())?;
    let mismatch = only_mismatch(match_one(&primary_spki, REMOTE_ID, &cert, soon()));
    assert_eq!(
        mismatch,
        Mismatch::KeyNotSelected {
            key: cert.fingerprint(),
            selected: selected.key
        }
    );
    Ok(())
}

#[test]
fn rejects_revoked_certificate_as_peer() -> TestResult {
    let (cert, revocation) = builder(
        CipherSuite::Cv25519,
        Profile::RFC4880,
        Authentication::Subkey,
    )
    .generate()?;
    let spki = spki_of(&cert)?;
    let (cert, _) = cert.insert_packets(revocation)?;
    let mismatch = only_mismatch(match_one(&spki, REMOTE_ID, &cert, soon()));
    assert!(
        matches!(&mismatch, Mismatch::Key(OpenPgpError::Revoked { fingerprint, .. }) if *fingerprint == cert.fingerprint()),
        "{mismatch}"
    );
    Ok(())
}

#[test]
fn rejects_revoked_subkey_as_peer() -> TestResult {
    // The primary key still authenticates, so the revoked subkey is named for what it is.
    let cert = generate(
        CipherSuite::Cv25519,
        Profile::RFC4880,
        Authentication::PrimaryAndSubkey,
    );
    let spki = spki_of(&cert)?;
    let (cert, subkey) = revoke_first_subkey(cert)?;
    assert!(select(&cert, soon())?.is_primary);
    let mismatch = only_mismatch(match_one(&spki, REMOTE_ID, &cert, soon()));
    assert!(
        matches!(&mismatch, Mismatch::Key(OpenPgpError::Revoked { fingerprint, .. }) if *fingerprint == subkey),
        "{mismatch}"
    );
    Ok(())
}

#[test]
fn rejects_expired_key_as_peer() -> TestResult {
    let created = SystemTime::now() - Duration::from_secs(7200);
    let (cert, _) = builder(CipherSuite::P256, Profile::RFC9580, Authentication::Subkey)
        .set_creation_time(created)
        .set_validity_period(Duration::from_secs(3600))
        .generate()?;
    let spki = select(&cert, created + Duration::from_secs(60))?.subject_public_key_info;
    let mismatch = only_mismatch(match_one(&spki, REMOTE_ID, &cert, SystemTime::now()));
    assert!(
        matches!(&mismatch, Mismatch::Key(OpenPgpError::Expired { fingerprint, .. }) if *fingerprint == cert.fingerprint()),
        "{mismatch}"
    );
    Ok(())
}

#[test]
fn rejects_revoked_user_id() -> TestResult {
    let cert = ed25519_key();
    let spki = spki_of(&cert)?;
    let mut signer = primary_signer(&cert)?;
    let Some(user_id) = cert.userids().next().map(|ua| ua.userid().clone()) else {
        panic!("generated certificate has no user ID");
    };
    let revocation = UserIDRevocationBuilder::new()
        .set_reason_for_revocation(ReasonForRevocation::UIDRetired, b"left the company")?
        .build(&mut signer, &cert, &user_id, None)?;
    let (cert, _) = cert.insert_packets(revocation)?;

    // The retirement takes effect from its creation, so look a little later.
    let later = SystemTime::now() + Duration::from_secs(30);
    let mismatch = only_mismatch(match_one(&spki, REMOTE_ID, &cert, later));
    let Mismatch::UserIdRevoked {
        certificate,
        user_id,
        reason,
    } = mismatch
    else {
        panic!("a revoked user ID was accepted or rejected for another reason: {mismatch}");
    };
    assert_eq!(certificate, cert.fingerprint());
    assert_eq!(user_id, USER_ID);
    assert!(
        reason.contains("left the company"),
        "reason {reason:?} lacks the message"
    );
    Ok(())
}

#[test]
fn second_candidate_matches_after_first_fails() -> TestResult {
    let wrong = ed25519_key();
    let right = ed25519_key();
    let spki = spki_of(&right)?;
    let candidates = [
        b"garbage".to_vec(),
        public_bytes(&wrong),
        public_bytes(&right),
    ];
    let found = match_raw_public_key(
        &spki,
        REMOTE_ID,
        candidates.iter().map(Vec::as_slice),
        &policy(),
        soon(),
    )?;
    assert_eq!(found.candidate, 2);
    assert_eq!(found.key.certificate, right.fingerprint());
    Ok(())
}

#[test]
fn lists_every_rejection_in_order() -> TestResult {
    let cert = ed25519_key();
    let other = ed25519_key();
    let spki = spki_of(&other)?;
    let candidates = [b"garbage".to_vec(), public_bytes(&cert)];
    let result = match_raw_public_key(
        &spki,
        REMOTE_ID,
        candidates.iter().map(Vec::as_slice),
        &policy(),
        soon(),
    );
    let Err(OpenPgpError::NoMatchingKey {
        remote_id,
        rejections,
    }) = result
    else {
        panic!("expected no match, got {result:?}");
    };
    assert_eq!(remote_id, REMOTE_ID);
    assert_eq!(rejections.len(), 2);
    assert!(matches!(
        rejections[0],
        Rejection {
            candidate: 0,
            mismatch: Mismatch::Key(OpenPgpError::Parse { .. })
        }
    ));
    assert!(matches!(
        rejections[1],
        Rejection {
            candidate: 1,
            mismatch: Mismatch::WrongKey { .. }
        }
    ));
    Ok(())
}

#[test]
fn no_candidates_is_no_match() -> TestResult {
    let cert = ed25519_key();
    let spki = spki_of(&cert)?;
    let result = match_raw_public_key(&spki, REMOTE_ID, [], &policy(), soon());
    assert!(
        matches!(result, Err(OpenPgpError::NoMatchingKey { ref rejections, .. }) if rejections.is_empty())
    );
    Ok(())
}

#[test]
fn rejects_invalid_remote_id_and_raw_public_key() -> TestResult {
    let cert = ed25519_key();
    let spki = spki_of(&cert)?;
    let bytes = public_bytes(&cert);
    assert!(matches!(
        match_raw_public_key(&spki, "example.com", [bytes.as_slice()], &policy(), soon()),
        Err(OpenPgpError::InvalidRemoteId { .. })
    ));
    assert!(matches!(
        match_raw_public_key(
            &spki[..spki.len() - 1],
            REMOTE_ID,
            [bytes.as_slice()],
            &policy(),
            soon()
        ),
        Err(OpenPgpError::InvalidRawPublicKey { .. })
    ));
    Ok(())
}

// RFC 7929 owner names.

#[test]
fn owner_name_matches_rfc_7929_example() {
    assert_eq!(
        openpgpkey_owner_name("hugh", "example.com"),
        "c93f1e400f26708f98cb19d936620da35eec8f72e57f9eec01c1afd6._openpgpkey.example.com"
    );
}

#[test]
fn owner_name_hashes_local_part_as_given() {
    let lower = openpgpkey_owner_name("hugh", "example.com");
    let upper = openpgpkey_owner_name("Hugh", "example.com");
    assert_ne!(lower, upper);
    assert!(upper.ends_with("._openpgpkey.example.com"));
    assert_eq!(upper.split('.').next().map(str::len), Some(56));
}
