//! Tests against real SoftHSM2 tokens that `scripts/softhsm-token.sh` creates in a temporary
//! directory.
//!
//! SoftHSM reads `SOFTHSM2_CONF` once, when the module is initialised, and the module is
//! loaded once per process, so every test shares one configuration with one token per test
//! and the tests run one at a time under `SERIAL`. The module path comes from
//! `TLSPOOL_TEST_PKCS11_MODULE`, by default Debian's SoftHSM2 module. Signatures are checked
//! with the `openssl` command on the SubjectPublicKeyInfo the crate returns.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tempfile::TempDir;
use tlspool_pkcs11::{
    ConfiguredPin, EcdsaFormat, GeneratedKeyPair, HashAlgorithm, KeyAlgorithm, KeyKind, Module,
    ObjectType, PinChain, PinRequest, PinSource, Pkcs11Error, Pkcs11Uri, SignatureScheme,
    Zeroizing,
};

const PIN: &str = "123456";
const SO_PIN: &str = "87654321";
const WRONG_PIN: &str = "000000";
const DEFAULT_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// One token per test, so that logins and wrong PINs of one test do not affect another.
const TOKENS: &[&str] = &["listing", "login", "wrong-pin", "keys", "reuse", "reopen"];

struct Fixture {
    dir: TempDir,
    module: Arc<Module>,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();
static SERIAL: Mutex<()> = Mutex::new(());

/// Serialises the tests and returns the shared module.
fn setup() -> (MutexGuard<'static, ()>, &'static Fixture) {
    let guard = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    (guard, FIXTURE.get_or_init(create_fixture))
}

#[expect(
    unsafe_code,
    reason = "SoftHSM reads its configuration only from SOFTHSM2_CONF"
)]
fn create_fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("create temporary directory");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/softhsm-token.sh");
    let mut conf_line = String::new();
    for label in TOKENS {
        let output = Command::new(&script)
            .arg(dir.path().join("softhsm"))
            .args([label, PIN, SO_PIN])
            .output()
            .expect("run softhsm-token.sh");
        assert!(
            output.status.success(),
            "softhsm-token.sh failed: {output:?}"
        );
        conf_line = String::from_utf8(output.stdout).expect("script output is UTF-8");
    }
    let conf = conf_line
        .trim()
        .strip_prefix("SOFTHSM2_CONF=")
        .expect("script prints SOFTHSM2_CONF=...");

    // SAFETY: the fixture is built once, under SERIAL, before the module is loaded, and no
    // test of this binary reads or writes the environment while it runs.
    unsafe { std::env::set_var("SOFTHSM2_CONF", conf) };
    let module_path =
        std::env::var("TLSPOOL_TEST_PKCS11_MODULE").unwrap_or_else(|_| DEFAULT_MODULE.to_owned());
    let module = Module::load(module_path).expect("load the SoftHSM2 module");
    Fixture { dir, module }
}

fn token_uri(label: &str) -> Pkcs11Uri {
    Pkcs11Uri {
        token: Some(label.to_owned()),
        ..Pkcs11Uri::default()
    }
}

fn right_pin() -> PinChain {
    PinChain::new().then(ConfiguredPin::new(PIN))
}

fn generate(token: &str, algorithm: KeyAlgorithm, label: &str, id: &[u8]) -> GeneratedKeyPair {
    let (module, uri) = (
        &FIXTURE.get().expect("fixture built").module,
        token_uri(token),
    );
    module
        .generate_key_pair(&uri, algorithm, label, id, &right_pin())
        .unwrap_or_else(|e| panic!("generate {algorithm:?} on {token}: {e}"))
}

/// A PIN source that returns a fixed PIN and records every request, like a PIN entry
/// service user who types the same PIN each time.
struct RecordingPin {
    pin: &'static str,
    attempts: Mutex<Vec<u32>>,
}

impl RecordingPin {
    fn new(pin: &'static str) -> Self {
        Self {
            pin,
            attempts: Mutex::new(Vec::new()),
        }
    }

    fn attempts(&self) -> Vec<u32> {
        self.attempts.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

impl PinSource for RecordingPin {
    fn pin(&self, request: &PinRequest) -> Result<Option<Zeroizing<String>>, Pkcs11Error> {
        if let Ok(mut attempts) = self.attempts.lock() {
            attempts.push(request.attempt);
        }
        Ok(Some(Zeroizing::new(self.pin.to_owned())))
    }
}

impl PinSource for &'static RecordingPin {
    fn pin(&self, request: &PinRequest) -> Result<Option<Zeroizing<String>>, Pkcs11Error> {
        (**self).pin(request)
    }
}

/// Verifies `signature` over `data` with `openssl`, returning whether it is valid.
fn openssl_verifies(
    dir: &Path,
    spki_der: &[u8],
    scheme: SignatureScheme,
    data: &[u8],
    signature: &[u8],
) -> bool {
    let der = dir.join("key.der");
    let pem = dir.join("key.pem");
    let data_path = dir.join("data");
    let signature_path = dir.join("signature");
    std::fs::write(&der, spki_der).expect("write key");
    std::fs::write(&data_path, data).expect("write data");
    std::fs::write(&signature_path, signature).expect("write signature");
    let converted = Command::new("openssl")
        .args(["pkey", "-pubin", "-inform", "DER", "-in"])
        .arg(&der)
        .arg("-out")
        .arg(&pem)
        .status()
        .expect("run openssl pkey");
    assert!(
        converted.success(),
        "openssl rejected the SubjectPublicKeyInfo"
    );

    let mut command = Command::new("openssl");
    let hash_flag = |hash| match hash {
        HashAlgorithm::Sha256 => "-sha256",
        HashAlgorithm::Sha384 => "-sha384",
        HashAlgorithm::Sha512 => "-sha512",
    };
    match scheme {
        SignatureScheme::Ed25519 => {
            command.args(["pkeyutl", "-verify", "-pubin", "-rawin", "-inkey"]);
            command.arg(&pem).arg("-in").arg(&data_path).arg("-sigfile");
            command.arg(&signature_path);
        }
        SignatureScheme::RsaPkcs1v15(hash) | SignatureScheme::Ecdsa(hash, _) => {
            command.args(["dgst", hash_flag(hash), "-verify"]).arg(&pem);
            command
                .arg("-signature")
                .arg(&signature_path)
                .arg(&data_path);
        }
        SignatureScheme::RsaPss(hash) => {
            command.args(["dgst", hash_flag(hash), "-verify"]).arg(&pem);
            command.args([
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:-1",
            ]);
            command
                .arg("-signature")
                .arg(&signature_path)
                .arg(&data_path);
        }
        _ => panic!("no openssl command for {scheme:?}"),
    }
    let output = command.output().expect("run openssl verify");
    output.status.success()
}

fn work_dir(fixture: &Fixture, name: &str) -> PathBuf {
    let dir = fixture.dir.path().join(name);
    std::fs::create_dir_all(&dir).expect("create work directory");
    dir
}

#[test]
fn tokens_listed_with_trimmed_fields() {
    let (_serial, fixture) = setup();
    let tokens = fixture.module.tokens().expect("list tokens");
    let token = tokens
        .iter()
        .find(|t| t.label == "listing")
        .expect("token labelled listing without padding");
    assert_eq!(token.manufacturer, "SoftHSM project");
    assert_eq!(token.model, "SoftHSM v2");
    assert!(!token.serial.is_empty());
    assert!(!token.serial.ends_with(' '));
    assert!(token.flags.login_required);
    assert!(token.flags.user_pin_initialized);
    assert!(!token.flags.locked);
    for label in TOKENS {
        assert!(
            tokens.iter().any(|t| t.label == *label),
            "token {label} listed"
        );
    }
}

#[test]
fn uri_selects_token_by_attributes() {
    let (_serial, fixture) = setup();
    let module = &fixture.module;
    let token = module
        .find_token(&token_uri("listing"))
        .expect("find by label");
    assert_eq!(token.label, "listing");

    let by_serial = Pkcs11Uri::parse(&format!("pkcs11:serial={}", token.serial)).expect("uri");
    assert_eq!(
        module.find_token(&by_serial).expect("find by serial").label,
        "listing"
    );
    let full = Pkcs11Uri::for_token(&token);
    assert_eq!(module.find_token(&full).expect("find by own URI"), token);

    let absent = module.find_token(&token_uri("absent"));
    assert!(
        matches!(absent, Err(Pkcs11Error::TokenNotFound { .. })),
        "{absent:?}"
    );
    let other_library = Pkcs11Uri::parse("pkcs11:library-manufacturer=Nobody;token=listing");
    let other_library = module.find_token(&other_library.expect("uri"));
    assert!(matches!(
        other_library,
        Err(Pkcs11Error::TokenNotFound { .. })
    ));
}

#[test]
fn login_with_configured_pin_happens_once() {
    let (_serial, fixture) = setup();
    let module = &fixture.module;
    let token = module.find_token(&token_uri("login")).expect("find token");
    let before = module.stats();
    module
        .login(&token, &right_pin())
        .expect("login with the right PIN");
    assert_eq!(module.stats().login_attempts, before.login_attempts + 1);

    module.login(&token, &right_pin()).expect("second login");
    assert_eq!(module.stats().login_attempts, before.login_attempts + 1);

    // Without a PIN source the token stays usable, because the session is logged in.
    module
        .login(&token, &PinChain::new())
        .expect("login without PIN source");
}

#[test]
fn wrong_pin_counted_and_never_retried() {
    let (_serial, fixture) = setup();
    let module = &fixture.module;
    let token = module
        .find_token(&token_uri("wrong-pin"))
        .expect("find token");
    let wrong = || PinChain::new().then(ConfiguredPin::new(WRONG_PIN));
    let before = module.stats().login_attempts;

    let first = module.login(&token, &wrong());
    assert!(
        matches!(first, Err(Pkcs11Error::WrongPin { failures: 1, .. })),
        "{first:?}"
    );
    assert_eq!(module.stats().login_attempts, before + 1);
    let flags = module
        .find_token(&token_uri("wrong-pin"))
        .expect("token")
        .flags;
    assert!(flags.pin_count_low, "SoftHSM flags the failed login");

    // The configured PIN is now known to be wrong and is not sent again.
    let second = module.login(&token, &wrong());
    assert!(
        matches!(second, Err(Pkcs11Error::PinNotProvided { .. })),
        "{second:?}"
    );
    assert_eq!(module.stats().login_attempts, before + 1);

    // A PIN entry reply repeating the rejected PIN is counted but not sent either.
    let repeating = RecordingPin::new(WRONG_PIN);
    let third = module.login(&token, &repeating);
    assert!(
        matches!(third, Err(Pkcs11Error::WrongPin { .. })),
        "{third:?}"
    );
    assert_eq!(module.stats().login_attempts, before + 1);
    assert_eq!(repeating.attempts(), [1, 2, 3]);

    // The next source in the chain is queried and receives the failure count so far.
    static RIGHT: OnceLock<RecordingPin> = OnceLock::new();
    let right = RIGHT.get_or_init(|| RecordingPin::new(PIN));
    let chain = PinChain::new()
        .then(ConfiguredPin::new(WRONG_PIN))
        .then(right);
    module
        .login(&token, &chain)
        .expect("login with the PIN entry reply");
    assert_eq!(right.attempts(), [4]);
    assert_eq!(module.stats().login_attempts, before + 2);
}

#[test]
fn generated_keys_sign_verifiably() {
    let (_serial, fixture) = setup();
    let module = &fixture.module;
    let dir = work_dir(fixture, "keys");
    let data = b"TLS Pool on-the-fly certificate to be signed";
    let cases = [
        (
            KeyAlgorithm::Rsa2048,
            SignatureScheme::RsaPkcs1v15(HashAlgorithm::Sha256),
        ),
        (
            KeyAlgorithm::Rsa2048,
            SignatureScheme::RsaPss(HashAlgorithm::Sha256),
        ),
        (
            KeyAlgorithm::Rsa3072,
            SignatureScheme::RsaPss(HashAlgorithm::Sha384),
        ),
        (
            KeyAlgorithm::Rsa3072,
            SignatureScheme::RsaPkcs1v15(HashAlgorithm::Sha512),
        ),
        (
            KeyAlgorithm::EcdsaP256,
            SignatureScheme::Ecdsa(HashAlgorithm::Sha256, EcdsaFormat::Der),
        ),
        (
            KeyAlgorithm::EcdsaP384,
            SignatureScheme::Ecdsa(HashAlgorithm::Sha384, EcdsaFormat::Der),
        ),
        (KeyAlgorithm::Ed25519, SignatureScheme::Ed25519),
    ];

    for (index, (algorithm, scheme)) in cases.into_iter().enumerate() {
        let label = format!("key-{index}");
        let id = [0x10, u8::try_from(index).expect("small index")];
        let pair = module
            .generate_key_pair(&token_uri("keys"), algorithm, &label, &id, &right_pin())
            .unwrap_or_else(|e| panic!("generate {algorithm:?}: {e}"));
        assert_eq!(
            pair.private_key_uri.object_type,
            Some(ObjectType::PrivateKey)
        );
        assert_eq!(pair.public_key_uri.object_type, Some(ObjectType::PublicKey));
        assert_eq!(pair.private_key_uri.id.as_deref(), Some(&id[..]));

        let signature = module
            .sign(&pair.private_key_uri, scheme, data, &right_pin())
            .unwrap_or_else(|e| panic!("sign with {algorithm:?}: {e}"));
        assert!(
            openssl_verifies(&dir, &pair.spki_der, scheme, data, &signature),
            "{algorithm:?} {scheme:?} signature verifies"
        );
        assert!(
            !openssl_verifies(&dir, &pair.spki_der, scheme, b"other data", &signature),
            "{algorithm:?} {scheme:?} signature fails on other data"
        );
    }
}

#[test]
fn key_objects_found_by_uri() {
    let (_serial, fixture) = setup();
    let module = &fixture.module;
    let pair = generate("keys", KeyAlgorithm::EcdsaP256, "findable", &[0xf1, 0x0d]);
    let printed = pair.private_key_uri.to_string();
    let parsed = Pkcs11Uri::parse(&printed).expect("printed URI parses");

    let found = module
        .find_objects(&parsed, &right_pin())
        .expect("find private key");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].object_type, ObjectType::PrivateKey);
    assert_eq!(found[0].label, "findable");
    assert_eq!(found[0].key_type, Some(KeyKind::Ec));

    let both = Pkcs11Uri {
        object_type: None,
        ..parsed
    };
    let found = module
        .find_objects(&both, &right_pin())
        .expect("find both halves");
    assert_eq!(found.len(), 2, "{found:?}");

    let missing = Pkcs11Uri {
        object: Some("no-such-key".to_owned()),
        ..pair.private_key_uri.clone()
    };
    let result = module.sign(&missing, SignatureScheme::Ed25519, b"x", &right_pin());
    assert!(
        matches!(result, Err(Pkcs11Error::ObjectNotFound { .. })),
        "{result:?}"
    );
}

#[test]
fn ecdsa_raw_signature_has_curve_width() {
    let (_serial, fixture) = setup();
    let module = &fixture.module;
    let pair = generate("keys", KeyAlgorithm::EcdsaP384, "raw", &[0x52]);
    let scheme = SignatureScheme::Ecdsa(HashAlgorithm::Sha384, EcdsaFormat::Raw);
    let signature = module
        .sign(&pair.private_key_uri, scheme, b"data", &right_pin())
        .expect("sign");
    assert_eq!(signature.len(), 96);
}

#[test]
fn session_reused_across_many_signatures() {
    let (_serial, fixture) = setup();
    let module = Arc::clone(&fixture.module);
    let pair = generate("reuse", KeyAlgorithm::EcdsaP256, "reuse", &[1]);
    let scheme = SignatureScheme::Ecdsa(HashAlgorithm::Sha256, EcdsaFormat::Der);
    let before = module.stats();

    // 1,000 signatures from four threads at once.
    let threads: Vec<_> = (0..4)
        .map(|thread| {
            let module = Arc::clone(&module);
            let uri = pair.private_key_uri.clone();
            std::thread::spawn(move || {
                for i in 0..250 {
                    let data = format!("message {thread} {i}");
                    module
                        .sign(&uri, scheme, data.as_bytes(), &right_pin())
                        .expect("sign");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("signing thread");
    }

    let after = module.stats();
    assert_eq!(
        after.sessions_opened, before.sessions_opened,
        "no C_OpenSession"
    );
    assert_eq!(after.login_attempts, before.login_attempts, "no C_Login");
}

#[test]
fn logged_out_session_reopened_and_logged_in() {
    let (_serial, fixture) = setup();
    let module = &fixture.module;
    let pair = generate("reopen", KeyAlgorithm::Ed25519, "reopen", &[2]);
    let token = module.find_token(&token_uri("reopen")).expect("find token");
    let before = module.stats();

    // Log the token out behind the crate's back, through a second cryptoki context on the
    // same module. The logout ends the login of every session of the process.
    let other = cryptoki::context::Pkcs11::new(module.path()).expect("second context");
    let slot = cryptoki::slot::Slot::try_from(token.slot_id).expect("slot");
    let session = other.open_ro_session(slot).expect("open second session");
    session.logout().expect("C_Logout");
    drop(session);

    let signature = module
        .sign(
            &pair.private_key_uri,
            SignatureScheme::Ed25519,
            b"data",
            &right_pin(),
        )
        .expect("sign after the logout");
    assert_eq!(signature.len(), 64);
    let after = module.stats();
    assert_eq!(after.sessions_opened, before.sessions_opened + 1);
    assert_eq!(after.login_attempts, before.login_attempts + 1);
}
