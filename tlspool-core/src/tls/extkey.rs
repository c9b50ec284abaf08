//! GnuTLS private keys whose signatures come from Rust code, for keys outside PKCS #11 such as
//! the authentication key of an OpenPGP card.
//!
//! [`ExternalKey`] wraps an [`ExternalSigner`] in a `gnutls_privkey_t` made with
//! `gnutls_privkey_import_ext4`. GnuTLS then calls back into the signer for every handshake
//! signature: the whole message for Ed25519, a SHA-256 digest for ECDSA on P-256. The signer
//! runs synchronously on the thread that drives the handshake, so a slow card delays that
//! thread. A caller on an async runtime therefore drives such handshakes from a blocking
//! thread.
//!
//! NOTE: RSA keys are not offered, because their TLS 1.2 and PSS paddings would have to be
//! built here.

use std::any::Any;
use std::ffi::{c_int, c_uint, c_void};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;
use std::sync::Arc;

use tlspool_gnutls_sys as sys;
use tracing::{debug, warn};

use super::error::TlsError;
use super::ffi::{PrivateKey, check};

/// Key algorithms an [`ExternalSigner`] can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExternalKeyAlgorithm {
    /// Ed25519 (RFC 8032): the signer receives the whole message.
    Ed25519,
    /// ECDSA on NIST P-256 with SHA-256: the signer receives the 32-byte digest.
    EcdsaP256,
}

/// Input of an [`ExternalSigner`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInput<'a> {
    /// The whole message, for Ed25519.
    Message(&'a [u8]),
    /// The SHA-256 digest of the message, for ECDSA.
    Digest(&'a [u8]),
}

/// A private key that signs outside GnuTLS.
pub trait ExternalSigner: Send + Sync {
    /// Returns the key's algorithm. It must not change over the signer's life.
    fn algorithm(&self) -> ExternalKeyAlgorithm;

    /// Signs `input` and returns the signature in the form TLS carries: 64 bytes for Ed25519,
    /// a DER `Ecdsa-Sig-Value` for ECDSA.
    ///
    /// # Errors
    /// A description of the failure, without PINs or key material; the handshake then fails
    /// with `GNUTLS_E_PK_SIGN_FAILED`.
    fn sign(&self, input: SignInput<'_>) -> Result<Vec<u8>, String>;
}

/// A private key backed by an [`ExternalSigner`], usable wherever a PKCS #11 or in-memory key
/// is. Cloning shares the signer.
#[derive(Clone)]
pub struct ExternalKey {
    signer: Arc<dyn ExternalSigner>,
}

impl ExternalKey {
    /// Wraps `signer`.
    pub fn new(signer: Arc<dyn ExternalSigner>) -> Self {
        Self { signer }
    }

    /// Returns the signer's key algorithm.
    pub fn algorithm(&self) -> ExternalKeyAlgorithm {
        self.signer.algorithm()
    }

    /// Creates a GnuTLS private key whose sign callbacks call the signer.
    pub(super) fn to_private_key(&self) -> Result<PrivateKey, TlsError> {
        let key = PrivateKey::init()?;
        // The callbacks receive this pointer as `userdata`. `release_signer` frees it, because
        // with GNUTLS_PRIVKEY_IMPORT_AUTO_RELEASE `gnutls_privkey_deinit` calls it.
        let userdata = Box::into_raw(Box::new(Arc::clone(&self.signer))).cast::<c_void>();
        // SAFETY: `key.raw` is a fresh handle. The callbacks match GnuTLS's prototypes and
        // only read `userdata` as the `Box<Arc<dyn ExternalSigner>>` made above.
        let ret = unsafe {
            sys::gnutls_privkey_import_ext4(
                key.raw,
                userdata,
                Some(sign_data),
                Some(sign_hash),
                None,
                Some(release_signer),
                Some(key_info),
                sys::GNUTLS_PRIVKEY_IMPORT_AUTO_RELEASE,
            )
        };
        if ret < 0 {
            // SAFETY: the import failed, so GnuTLS did not keep `userdata` and it is freed once.
            drop(unsafe { Box::from_raw(userdata.cast::<Arc<dyn ExternalSigner>>()) });
        }
        check("gnutls_privkey_import_ext4", ret)?;
        Ok(key)
    }
}

impl fmt::Debug for ExternalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalKey")
            .field("algorithm", &self.signer.algorithm())
            .finish_non_exhaustive()
    }
}

/// Shift of the signature algorithm inside `GNUTLS_PRIVKEY_INFO_HAVE_SIGN_ALGO` flags
/// (`GNUTLS_FLAGS_TO_SIGN_ALGO` in abstract.h, a macro the bindings do not carry).
const SIGN_ALGO_FLAG_SHIFT: u32 = 20;

impl ExternalKeyAlgorithm {
    fn pk_algorithm(self) -> sys::gnutls_pk_algorithm_t {
        match self {
            Self::Ed25519 => sys::GNUTLS_PK_EDDSA_ED25519,
            Self::EcdsaP256 => sys::GNUTLS_PK_ECDSA,
        }
    }

    fn bits(self) -> c_int {
        match self {
            Self::Ed25519 => 255,
            Self::EcdsaP256 => 256,
        }
    }

    /// Returns whether a signature with `algorithm` can be made with this key.
    fn supports(self, algorithm: sys::gnutls_sign_algorithm_t) -> bool {
        match self {
            Self::Ed25519 => algorithm == sys::GNUTLS_SIGN_EDDSA_ED25519,
            Self::EcdsaP256 => matches!(
                algorithm,
                sys::GNUTLS_SIGN_ECDSA_SHA256 | sys::GNUTLS_SIGN_ECDSA_SECP256R1_SHA256
            ),
        }
    }

    /// Returns the signature algorithm reported for `GNUTLS_PRIVKEY_INFO_SIGN_ALGO`.
    fn sign_algorithm(self) -> sys::gnutls_sign_algorithm_t {
        match self {
            Self::Ed25519 => sys::GNUTLS_SIGN_EDDSA_ED25519,
            Self::EcdsaP256 => sys::GNUTLS_SIGN_ECDSA_SECP256R1_SHA256,
        }
    }
}

/// Recovers the signer from the callback's `userdata`.
///
/// # Safety
/// `userdata` must be the pointer `to_private_key` passed to GnuTLS, not yet released.
unsafe fn signer_of<'a>(userdata: *mut c_void) -> &'a dyn ExternalSigner {
    // SAFETY: the caller guarantees the pointer is the live `Box<Arc<dyn ExternalSigner>>`.
    let signer = unsafe { &*userdata.cast::<Arc<dyn ExternalSigner>>() };
    signer.as_ref()
}

/// `gnutls_privkey_sign_data_func`: signs a whole message.
unsafe extern "C" fn sign_data(
    _key: sys::gnutls_privkey_t,
    algorithm: sys::gnutls_sign_algorithm_t,
    userdata: *mut c_void,
    _flags: c_uint,
    data: *const sys::gnutls_datum_t,
    signature: *mut sys::gnutls_datum_t,
) -> c_int {
    // SAFETY: GnuTLS passes back the userdata of `to_private_key` while the key is alive.
    let signer = unsafe { signer_of(userdata) };
    // SAFETY: GnuTLS passes a valid datum for the duration of the call.
    let message = unsafe { datum_bytes(data) };
    let key_algorithm = signer.algorithm();
    if !key_algorithm.supports(algorithm) {
        warn!(
            ?key_algorithm,
            algorithm, "external key asked for an unsupported signature"
        );
        return sys::GNUTLS_E_INVALID_REQUEST;
    }

    let result = match key_algorithm {
        ExternalKeyAlgorithm::Ed25519 => call_signer(signer, SignInput::Message(message)),
        ExternalKeyAlgorithm::EcdsaP256 => match sha256(message) {
            Ok(digest) => call_signer(signer, SignInput::Digest(&digest)),
            Err(code) => return code,
        },
    };
    // SAFETY: `signature` is GnuTLS's output datum for this call.
    unsafe { finish_signature(result, signature) }
}

/// `gnutls_privkey_sign_hash_func`: signs a digest GnuTLS computed (ECDSA only).
unsafe extern "C" fn sign_hash(
    _key: sys::gnutls_privkey_t,
    algorithm: sys::gnutls_sign_algorithm_t,
    userdata: *mut c_void,
    _flags: c_uint,
    hash: *const sys::gnutls_datum_t,
    signature: *mut sys::gnutls_datum_t,
) -> c_int {
    // SAFETY: GnuTLS passes back the userdata of `to_private_key` while the key is alive.
    let signer = unsafe { signer_of(userdata) };
    // SAFETY: GnuTLS passes a valid datum for the duration of the call.
    let digest = unsafe { datum_bytes(hash) };
    let key_algorithm = signer.algorithm();
    if key_algorithm != ExternalKeyAlgorithm::EcdsaP256 || !key_algorithm.supports(algorithm) {
        warn!(
            ?key_algorithm,
            algorithm, "external key asked to sign a hash it cannot sign"
        );
        return sys::GNUTLS_E_INVALID_REQUEST;
    }
    let result = call_signer(signer, SignInput::Digest(digest));
    // SAFETY: `signature` is GnuTLS's output datum for this call.
    unsafe { finish_signature(result, signature) }
}

/// `gnutls_privkey_info_func`: reports the key's algorithm, size and signature algorithms.
unsafe extern "C" fn key_info(
    _key: sys::gnutls_privkey_t,
    flags: c_uint,
    userdata: *mut c_void,
) -> c_int {
    // SAFETY: GnuTLS passes back the userdata of `to_private_key` while the key is alive.
    let algorithm = unsafe { signer_of(userdata) }.algorithm();
    if flags & sys::GNUTLS_PRIVKEY_INFO_PK_ALGO != 0 {
        return algorithm.pk_algorithm() as c_int;
    }
    if flags & sys::GNUTLS_PRIVKEY_INFO_PK_ALGO_BITS != 0 {
        return algorithm.bits();
    }
    if flags & sys::GNUTLS_PRIVKEY_INFO_HAVE_SIGN_ALGO != 0 {
        let asked = flags >> SIGN_ALGO_FLAG_SHIFT;
        return c_int::from(algorithm.supports(asked));
    }
    if flags & sys::GNUTLS_PRIVKEY_INFO_SIGN_ALGO != 0 {
        return algorithm.sign_algorithm() as c_int;
    }
    sys::GNUTLS_E_INVALID_REQUEST
}

/// `gnutls_privkey_deinit_func`: frees the signer reference when GnuTLS drops the key.
unsafe extern "C" fn release_signer(_key: sys::gnutls_privkey_t, userdata: *mut c_void) {
    // SAFETY: GnuTLS calls this once, after the last callback, with the `to_private_key`
    // pointer, so the box is freed exactly once.
    drop(unsafe { Box::from_raw(userdata.cast::<Arc<dyn ExternalSigner>>()) });
}

/// Runs the signer, turning a panic into an error, because unwinding into GnuTLS is undefined
/// behaviour.
fn call_signer(signer: &dyn ExternalSigner, input: SignInput<'_>) -> Result<Vec<u8>, String> {
    match catch_unwind(AssertUnwindSafe(|| signer.sign(input))) {
        Ok(result) => result,
        Err(panic) => Err(format!("the signer panicked: {}", panic_message(&panic))),
    }
}

fn panic_message(panic: &Box<dyn Any + Send>) -> &str {
    if let Some(text) = panic.downcast_ref::<&str>() {
        text
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text
    } else {
        "no message"
    }
}

/// Copies a signature into memory from `gnutls_malloc` for GnuTLS, which frees it.
///
/// # Safety
/// `signature` must point to a writable datum.
unsafe fn finish_signature(
    result: Result<Vec<u8>, String>,
    signature: *mut sys::gnutls_datum_t,
) -> c_int {
    let bytes = match result {
        Ok(bytes) => bytes,
        Err(reason) => {
            warn!(%reason, "external key failed to sign");
            return sys::GNUTLS_E_PK_SIGN_FAILED;
        }
    };
    let Ok(size) = u32::try_from(bytes.len()) else {
        return sys::GNUTLS_E_PK_SIGN_FAILED;
    };
    // SAFETY: `gnutls_malloc` is set by the library before any callback can run.
    let Some(malloc) = (unsafe { sys::gnutls_malloc }) else {
        return sys::GNUTLS_E_MEMORY_ERROR;
    };
    // SAFETY: `malloc` is GnuTLS's allocator, asked for `size` bytes (at least 1).
    let buffer = unsafe { malloc(bytes.len().max(1)) }.cast::<u8>();
    if buffer.is_null() {
        return sys::GNUTLS_E_MEMORY_ERROR;
    }
    // SAFETY: `buffer` has room for `bytes.len()` bytes and does not overlap `bytes`;
    // `signature` is writable per the function contract.
    unsafe {
        ptr::copy_nonoverlapping(bytes.as_ptr(), buffer, bytes.len());
        (*signature).data = buffer;
        (*signature).size = size;
    }
    debug!(len = bytes.len(), "external key signed");
    0
}

/// Borrows the bytes of a GnuTLS datum.
///
/// # Safety
/// `datum` must be valid, with `data` readable for `size` bytes, for the lifetime `'a`.
unsafe fn datum_bytes<'a>(datum: *const sys::gnutls_datum_t) -> &'a [u8] {
    // SAFETY: guaranteed by the caller.
    let datum = unsafe { &*datum };
    if datum.data.is_null() || datum.size == 0 {
        return &[];
    }
    // SAFETY: guaranteed by the caller; a u32 size always fits usize here.
    unsafe { std::slice::from_raw_parts(datum.data, datum.size as usize) }
}

/// Computes SHA-256 with GnuTLS (`gnutls_hash_fast`).
fn sha256(data: &[u8]) -> Result<[u8; 32], c_int> {
    let mut digest = [0u8; 32];
    // SAFETY: `data` is readable for its length and `digest` has room for a SHA-256 output.
    let ret = unsafe {
        sys::gnutls_hash_fast(
            sys::GNUTLS_DIG_SHA256,
            data.as_ptr().cast(),
            data.len(),
            digest.as_mut_ptr().cast(),
        )
    };
    if ret < 0 { Err(ret) } else { Ok(digest) }
}
