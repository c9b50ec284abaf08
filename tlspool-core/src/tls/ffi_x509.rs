//! Owned handles and calls over the GnuTLS X.509 writing API (`gnutls_x509_crt_set_*`,
//! `gnutls_pubkey_*`, key generation and export) for the certificate builder. Every `unsafe`
//! block of the builder is in this module, each with the invariant it relies on.

use std::ffi::{CStr, CString, c_int, c_uint};
use std::ptr;

use tlspool_gnutls_sys as sys;
use zeroize::Zeroizing;

use super::error::TlsError;
use super::ffi::{PrivateKey, X509Crt, check, datum, take_datum};

/// `GNUTLS_CURVE_TO_BITS`, a C macro that bindgen does not translate: the `bits` argument of
/// key generation that selects an elliptic curve instead of a size.
fn curve_to_bits(curve: sys::gnutls_ecc_curve_t) -> c_uint {
    (1 << 31) | curve
}

/// Returns an empty datum for a GnuTLS call to fill with a `gnutls_malloc`'d buffer.
fn empty_datum() -> sys::gnutls_datum_t {
    sys::gnutls_datum_t {
        data: ptr::null_mut(),
        size: 0,
    }
}

/// Fills `buf` from GnuTLS's random generator at the level for long-term keys and nonces
/// that must not be guessed (`GNUTLS_RND_RANDOM`).
pub(super) fn random_bytes(buf: &mut [u8]) -> Result<(), TlsError> {
    // SAFETY: `buf` is writable for its length during the call.
    let ret =
        unsafe { sys::gnutls_rnd(sys::GNUTLS_RND_RANDOM, buf.as_mut_ptr().cast(), buf.len()) };
    check("gnutls_rnd", ret).map(drop)
}

/// Wraps DER in a PEM block with the given label, such as `CERTIFICATE`.
pub(super) fn pem_encode(label: &CStr, der: &[u8]) -> Result<Vec<u8>, TlsError> {
    let input = datum("PEM content", der)?;
    let mut out = empty_datum();
    // SAFETY: `label` is NUL-terminated, `input` borrows `der`, and `out` receives a
    // gnutls_malloc'd buffer on success.
    let ret = unsafe { sys::gnutls_pem_base64_encode2(label.as_ptr(), &input, &mut out) };
    check("gnutls_pem_base64_encode2", ret)?;
    // SAFETY: `out` was allocated by the call above.
    Ok(unsafe { take_datum(out) })
}

// SAFETY: a `gnutls_privkey_t` has no thread affinity; without `Sync`, only one thread uses a
// key at a time.
unsafe impl Send for PrivateKey {}

impl PrivateKey {
    /// Generates a key in memory: `algorithm` is a `GNUTLS_PK_*` value, `bits` a size or a
    /// [`curve_to_bits`] value.
    pub(super) fn generate(
        algorithm: sys::gnutls_pk_algorithm_t,
        bits: c_uint,
    ) -> Result<Self, TlsError> {
        let key = Self::init()?;
        // SAFETY: `key.raw` is a fresh handle; no extra generation data is passed.
        let ret =
            unsafe { sys::gnutls_privkey_generate2(key.raw, algorithm, bits, 0, ptr::null(), 0) };
        check("gnutls_privkey_generate2", ret)?;
        Ok(key)
    }

    /// Generates an ECDSA or EdDSA key on `curve`.
    pub(super) fn generate_on_curve(
        algorithm: sys::gnutls_pk_algorithm_t,
        curve: sys::gnutls_ecc_curve_t,
    ) -> Result<Self, TlsError> {
        Self::generate(algorithm, curve_to_bits(curve))
    }

    /// Returns the key's `GNUTLS_PK_*` algorithm.
    pub(super) fn algorithm(&self) -> Result<sys::gnutls_pk_algorithm_t, TlsError> {
        // SAFETY: a getter on a valid handle; the size output is not requested.
        let ret = unsafe { sys::gnutls_privkey_get_pk_algorithm(self.raw, ptr::null_mut()) };
        let code = check("gnutls_privkey_get_pk_algorithm", ret)?;
        Ok(code as sys::gnutls_pk_algorithm_t)
    }

    /// Exports an in-memory key as unencrypted PKCS #8 PEM (`BEGIN PRIVATE KEY`). A key on a
    /// token fails here, because its private part cannot leave the token.
    pub(super) fn to_pkcs8_pem(&self) -> Result<Zeroizing<Vec<u8>>, TlsError> {
        let mut x509 = ptr::null_mut();
        // SAFETY: `x509` receives a new handle with a copy of the key, released below.
        let ret = unsafe { sys::gnutls_privkey_export_x509(self.raw, &mut x509) };
        check("gnutls_privkey_export_x509", ret)?;
        let mut out = empty_datum();
        // SAFETY: `x509` is valid; a null password with `GNUTLS_PKCS_PLAIN` writes the key
        // unencrypted into `out`, a gnutls_malloc'd buffer.
        let ret = unsafe {
            sys::gnutls_x509_privkey_export2_pkcs8(
                x509,
                sys::GNUTLS_X509_FMT_PEM,
                ptr::null(),
                sys::GNUTLS_PKCS_PLAIN,
                &mut out,
            )
        };
        // SAFETY: `x509` is owned here and released once, after its last use.
        unsafe { sys::gnutls_x509_privkey_deinit(x509) };
        check("gnutls_x509_privkey_export2_pkcs8", ret)?;
        // NOTE: `take_datum` copies the key and frees GnuTLS's buffer without wiping it first.
        // SAFETY: `out` was allocated by the export above.
        Ok(Zeroizing::new(unsafe { take_datum(out) }))
    }
}

/// An owned `gnutls_pubkey_t`.
pub(super) struct PublicKey {
    raw: sys::gnutls_pubkey_t,
}

impl PublicKey {
    fn init() -> Result<Self, TlsError> {
        let mut raw = ptr::null_mut();
        // SAFETY: `raw` receives a new handle that `Drop` releases.
        let ret = unsafe { sys::gnutls_pubkey_init(&mut raw) };
        check("gnutls_pubkey_init", ret)?;
        Ok(Self { raw })
    }

    /// Parses a DER SubjectPublicKeyInfo.
    pub(super) fn from_spki_der(der: &[u8]) -> Result<Self, TlsError> {
        let input = datum("SubjectPublicKeyInfo", der)?;
        let key = Self::init()?;
        // SAFETY: `key.raw` is a fresh handle; `input` borrows `der` for the call.
        let ret = unsafe { sys::gnutls_pubkey_import(key.raw, &input, sys::GNUTLS_X509_FMT_DER) };
        check("gnutls_pubkey_import", ret)?;
        Ok(key)
    }

    /// Takes the public half of a private key (for a token key, GnuTLS reads it from the
    /// token).
    pub(super) fn from_private_key(private: &PrivateKey) -> Result<Self, TlsError> {
        let key = Self::init()?;
        // SAFETY: both handles are valid; GnuTLS copies the public parameters.
        let ret = unsafe { sys::gnutls_pubkey_import_privkey(key.raw, private.raw, 0, 0) };
        check("gnutls_pubkey_import_privkey", ret)?;
        Ok(key)
    }

    /// Encodes the key as DER SubjectPublicKeyInfo.
    pub(super) fn to_spki_der(&self) -> Result<Vec<u8>, TlsError> {
        let mut out = empty_datum();
        // SAFETY: a valid handle; `out` receives a gnutls_malloc'd buffer on success.
        let ret =
            unsafe { sys::gnutls_pubkey_export2(self.raw, sys::GNUTLS_X509_FMT_DER, &mut out) };
        check("gnutls_pubkey_export2", ret)?;
        // SAFETY: `out` was allocated by the call above.
        Ok(unsafe { take_datum(out) })
    }

    /// Returns GnuTLS's 20-byte SHA-1 key ID of the public key, which `certtool -i` prints as
    /// the "Public Key ID".
    pub(super) fn sha1_key_id(&self) -> Result<Vec<u8>, TlsError> {
        let mut id = [0u8; 20];
        let mut size = id.len();
        // SAFETY: `id` is writable for `size` bytes; GnuTLS writes at most that many.
        let ret = unsafe {
            sys::gnutls_pubkey_get_key_id(
                self.raw,
                sys::GNUTLS_KEYID_USE_SHA1,
                id.as_mut_ptr(),
                &mut size,
            )
        };
        check("gnutls_pubkey_get_key_id", ret)?;
        Ok(id[..size.min(id.len())].to_vec())
    }
}

impl Drop for PublicKey {
    fn drop(&mut self) {
        // SAFETY: the handle is owned here and released once.
        unsafe { sys::gnutls_pubkey_deinit(self.raw) };
    }
}

impl X509Crt {
    /// Allocates an empty certificate to fill in and sign.
    pub(super) fn new() -> Result<Self, TlsError> {
        let mut raw = ptr::null_mut();
        // SAFETY: `raw` receives a new handle that `Drop` releases.
        let ret = unsafe { sys::gnutls_x509_crt_init(&mut raw) };
        check("gnutls_x509_crt_init", ret)?;
        Ok(Self { raw })
    }

    /// Sets the X.509 version (3 for a certificate with extensions).
    pub(super) fn set_version(&mut self, version: c_uint) -> Result<(), TlsError> {
        // SAFETY: a setter on a valid handle.
        let ret = unsafe { sys::gnutls_x509_crt_set_version(self.raw, version) };
        check("gnutls_x509_crt_set_version", ret).map(drop)
    }

    /// Sets the serial number from its big-endian content octets.
    pub(super) fn set_serial(&mut self, serial: &[u8]) -> Result<(), TlsError> {
        // SAFETY: `serial` is readable for its length; GnuTLS copies it.
        let ret = unsafe {
            sys::gnutls_x509_crt_set_serial(self.raw, serial.as_ptr().cast(), serial.len())
        };
        check("gnutls_x509_crt_set_serial", ret).map(drop)
    }

    /// Adds one attribute to the subject DN, such as `GNUTLS_OID_X520_COMMON_NAME`.
    pub(super) fn add_subject_attribute(
        &mut self,
        oid: &CStr,
        value: &str,
    ) -> Result<(), TlsError> {
        let size = c_uint::try_from(value.len()).map_err(|_| TlsError::TooLarge {
            field: "subject attribute",
            len: value.len(),
        })?;
        // SAFETY: `oid` is NUL-terminated and `value` readable for `size` bytes; GnuTLS copies
        // both. A raw flag of 0 lets GnuTLS encode the UTF-8 string itself.
        let ret = unsafe {
            sys::gnutls_x509_crt_set_dn_by_oid(
                self.raw,
                oid.as_ptr(),
                0,
                value.as_ptr().cast(),
                size,
            )
        };
        check("gnutls_x509_crt_set_dn_by_oid", ret).map(drop)
    }

    /// Appends one subjectAltName entry of `kind` (`GNUTLS_SAN_*`).
    pub(super) fn add_subject_alt_name(
        &mut self,
        kind: sys::gnutls_x509_subject_alt_name_t,
        value: &str,
    ) -> Result<(), TlsError> {
        let size = c_uint::try_from(value.len()).map_err(|_| TlsError::TooLarge {
            field: "subjectAltName",
            len: value.len(),
        })?;
        // SAFETY: `value` is readable for `size` bytes; GnuTLS copies it.
        let ret = unsafe {
            sys::gnutls_x509_crt_set_subject_alt_name(
                self.raw,
                kind,
                value.as_ptr().cast(),
                size,
                sys::GNUTLS_FSAN_APPEND,
            )
        };
        check("gnutls_x509_crt_set_subject_alt_name", ret).map(drop)
    }

    /// Sets notBefore and notAfter, in seconds since the UNIX epoch.
    pub(super) fn set_validity(&mut self, not_before: i64, not_after: i64) -> Result<(), TlsError> {
        // SAFETY: setters on a valid handle.
        let ret = unsafe { sys::gnutls_x509_crt_set_activation_time(self.raw, not_before) };
        check("gnutls_x509_crt_set_activation_time", ret)?;
        // SAFETY: as above.
        let ret = unsafe { sys::gnutls_x509_crt_set_expiration_time(self.raw, not_after) };
        check("gnutls_x509_crt_set_expiration_time", ret).map(drop)
    }

    /// Sets the critical basicConstraints extension; `path_len` -1 leaves the length open.
    pub(super) fn set_basic_constraints(
        &mut self,
        ca: bool,
        path_len: c_int,
    ) -> Result<(), TlsError> {
        // SAFETY: a setter on a valid handle.
        let ret = unsafe {
            sys::gnutls_x509_crt_set_basic_constraints(self.raw, c_uint::from(ca), path_len)
        };
        check("gnutls_x509_crt_set_basic_constraints", ret).map(drop)
    }

    /// Sets the critical keyUsage extension from `GNUTLS_KEY_*` bits.
    pub(super) fn set_key_usage(&mut self, usage: c_uint) -> Result<(), TlsError> {
        // SAFETY: a setter on a valid handle.
        let ret = unsafe { sys::gnutls_x509_crt_set_key_usage(self.raw, usage) };
        check("gnutls_x509_crt_set_key_usage", ret).map(drop)
    }

    /// Adds one key purpose OID to the non-critical extendedKeyUsage extension.
    pub(super) fn add_key_purpose(&mut self, oid: &str) -> Result<(), TlsError> {
        let oid = CString::new(oid).map_err(|_| TlsError::InteriorNul {
            field: "key purpose OID",
        })?;
        // SAFETY: `oid` is NUL-terminated; GnuTLS copies it.
        let ret =
            unsafe { sys::gnutls_x509_crt_set_key_purpose_oid(self.raw, oid.as_ptr().cast(), 0) };
        check("gnutls_x509_crt_set_key_purpose_oid", ret).map(drop)
    }

    /// Sets the subject public key.
    pub(super) fn set_public_key(&mut self, key: &PublicKey) -> Result<(), TlsError> {
        // SAFETY: both handles are valid; GnuTLS copies the key into the certificate.
        let ret = unsafe { sys::gnutls_x509_crt_set_pubkey(self.raw, key.raw) };
        check("gnutls_x509_crt_set_pubkey", ret).map(drop)
    }

    /// Sets the subjectKeyIdentifier extension.
    pub(super) fn set_subject_key_id(&mut self, id: &[u8]) -> Result<(), TlsError> {
        // SAFETY: `id` is readable for its length; GnuTLS copies it.
        let ret = unsafe {
            sys::gnutls_x509_crt_set_subject_key_id(self.raw, id.as_ptr().cast(), id.len())
        };
        check("gnutls_x509_crt_set_subject_key_id", ret).map(drop)
    }

    /// Sets the keyIdentifier of the authorityKeyIdentifier extension.
    pub(super) fn set_authority_key_id(&mut self, id: &[u8]) -> Result<(), TlsError> {
        // SAFETY: `id` is readable for its length; GnuTLS copies it.
        let ret = unsafe {
            sys::gnutls_x509_crt_set_authority_key_id(self.raw, id.as_ptr().cast(), id.len())
        };
        check("gnutls_x509_crt_set_authority_key_id", ret).map(drop)
    }

    /// Returns the subjectKeyIdentifier, or `None` when the certificate has none.
    pub(super) fn subject_key_id(&self) -> Result<Option<Vec<u8>>, TlsError> {
        // RFC 5280 puts no limit on the length; 64 bytes fit a SHA-512 hash.
        let mut id = [0u8; 64];
        let mut size = id.len();
        let mut critical: c_uint = 0;
        // SAFETY: `id` is writable for `size` bytes; GnuTLS writes at most that many.
        let ret = unsafe {
            sys::gnutls_x509_crt_get_subject_key_id(
                self.raw,
                id.as_mut_ptr().cast(),
                &mut size,
                &mut critical,
            )
        };
        if ret == sys::GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE {
            return Ok(None);
        }
        check("gnutls_x509_crt_get_subject_key_id", ret)?;
        Ok(Some(id[..size.min(id.len())].to_vec()))
    }

    /// Returns the subject public key.
    pub(super) fn public_key(&self) -> Result<PublicKey, TlsError> {
        let key = PublicKey::init()?;
        // SAFETY: both handles are valid; GnuTLS copies the key out of the certificate.
        let ret = unsafe { sys::gnutls_pubkey_import_x509(key.raw, self.raw, 0) };
        check("gnutls_pubkey_import_x509", ret)?;
        Ok(key)
    }

    /// Signs the certificate with `issuer_key`, taking the issuer DN from `issuer` (`None` for
    /// a self-signed certificate); `digest` 0 lets GnuTLS choose the key's own hash.
    pub(super) fn sign(
        &mut self,
        issuer: Option<&Self>,
        issuer_key: &PrivateKey,
        digest: sys::gnutls_digest_algorithm_t,
    ) -> Result<(), TlsError> {
        let issuer = issuer.map_or(self.raw, |crt| crt.raw);
        // SAFETY: all handles are valid; for a self-signed certificate GnuTLS reads the subject
        // from the same handle it writes the issuer and signature into.
        let ret = unsafe {
            sys::gnutls_x509_crt_privkey_sign(self.raw, issuer, issuer_key.raw, digest, 0)
        };
        check("gnutls_x509_crt_privkey_sign", ret).map(drop)
    }

    /// Encodes the certificate as DER.
    pub(super) fn to_der(&self) -> Result<Vec<u8>, TlsError> {
        let mut out = empty_datum();
        // SAFETY: a valid handle; `out` receives a gnutls_malloc'd buffer on success.
        let ret =
            unsafe { sys::gnutls_x509_crt_export2(self.raw, sys::GNUTLS_X509_FMT_DER, &mut out) };
        check("gnutls_x509_crt_export2", ret)?;
        // SAFETY: `out` was allocated by the call above.
        Ok(unsafe { take_datum(out) })
    }
}
