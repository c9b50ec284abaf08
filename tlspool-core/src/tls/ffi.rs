//! Owned handles over the GnuTLS C API. Every `unsafe` block of the TLS engine is in this module,
//! each with the invariant it relies on, so the types above it see only safe methods.
//!
//! A session's transport callbacks and its ClientHello hook reach the session's state through a
//! pointer to a boxed [`Transport`], which stays at one address for the life of the handle.

use std::collections::VecDeque;
use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tlspool_gnutls_sys as sys;
use tracing::{debug, error, trace};
use zeroize::Zeroizing;

use super::credentials::{PinCallback, PinRequest};
use super::error::TlsError;

/// Maximum length of a DNS name in the SNI extension (RFC 6066: a host name, at most 255 bytes).
const MAX_SERVER_NAME: usize = 256;

/// Returns `Ok(code)` for a non-negative GnuTLS return value, else the library error.
pub(super) fn check(function: &'static str, code: c_int) -> Result<c_int, TlsError> {
    if code < 0 {
        Err(TlsError::library(function, code))
    } else {
        Ok(code)
    }
}

/// Describes `bytes` as a GnuTLS datum for a call that only reads it.
pub(super) fn datum(field: &'static str, bytes: &[u8]) -> Result<sys::gnutls_datum_t, TlsError> {
    let size = u32::try_from(bytes.len()).map_err(|_| TlsError::TooLarge {
        field,
        len: bytes.len(),
    })?;
    Ok(sys::gnutls_datum_t {
        data: bytes.as_ptr().cast_mut(),
        size,
    })
}

/// Copies a datum that GnuTLS allocated, then frees it with `gnutls_free`.
///
/// # Safety
/// `d` must come from a GnuTLS call that allocates its `data` with `gnutls_malloc`.
pub(super) unsafe fn take_datum(d: sys::gnutls_datum_t) -> Vec<u8> {
    if d.data.is_null() {
        return Vec::new();
    }
    // SAFETY: the caller guarantees `data` points at `size` bytes allocated by GnuTLS.
    let bytes = unsafe { std::slice::from_raw_parts(d.data, d.size as usize) }.to_vec();
    // SAFETY: `gnutls_free` is set by the library constructor; the datum is freed once here.
    unsafe {
        if let Some(free) = sys::gnutls_free {
            free(d.data.cast());
        }
    }
    bytes
}

/// Copies a static NUL-terminated string GnuTLS returned, or `None` for a null pointer.
fn static_str(p: *const c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: GnuTLS name and message functions return static NUL-terminated strings.
    Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// Returns `gnutls_strerror` for `code`.
pub(super) fn strerror(code: c_int) -> String {
    // SAFETY: `gnutls_strerror` accepts any code and returns a static string.
    static_str(unsafe { sys::gnutls_strerror(code) })
        .unwrap_or_else(|| format!("unknown GnuTLS error {code}"))
}

/// Returns `gnutls_error_is_fatal` for `code`.
pub(super) fn error_is_fatal(code: c_int) -> bool {
    // SAFETY: a pure function of its integer argument.
    unsafe { sys::gnutls_error_is_fatal(code) != 0 }
}

/// Returns the printable name of a TLS alert description.
pub(super) fn alert_name(alert: c_uint) -> String {
    // SAFETY: `gnutls_alert_get_name` returns a static string or null for unknown values.
    static_str(unsafe { sys::gnutls_alert_get_name(alert) })
        .unwrap_or_else(|| format!("unknown alert {alert}"))
}

/// Returns GnuTLS's English description of certificate verification status bits.
pub(super) fn verification_status_text(status: u32) -> String {
    let mut out = sys::gnutls_datum_t {
        data: ptr::null_mut(),
        size: 0,
    };
    // SAFETY: `out` is a valid datum the call fills with a gnutls_malloc'd string.
    let ret = unsafe {
        sys::gnutls_certificate_verification_status_print(status, sys::GNUTLS_CRT_X509, &mut out, 0)
    };
    if ret < 0 {
        return format!("status {status:#x}");
    }
    // SAFETY: `out` was allocated by the call above.
    let text = unsafe { take_datum(out) };
    String::from_utf8_lossy(&text)
        .trim_end_matches('\0')
        .to_owned()
}

/// Splits PEM text (one or more `CERTIFICATE` blocks) or one DER certificate into DER
/// certificates, in the order given.
pub(super) fn certificates_to_der(data: &[u8], pem: bool) -> Result<Vec<Vec<u8>>, TlsError> {
    let input = datum("certificate data", data)?;
    let format = if pem {
        sys::GNUTLS_X509_FMT_PEM
    } else {
        sys::GNUTLS_X509_FMT_DER
    };
    let mut list: *mut sys::gnutls_x509_crt_t = ptr::null_mut();
    let mut count: c_uint = 0;
    // SAFETY: `input` borrows `data` for the call; GnuTLS allocates `list` with `count` entries.
    let ret =
        unsafe { sys::gnutls_x509_crt_list_import2(&mut list, &mut count, &input, format, 0) };
    check("gnutls_x509_crt_list_import2", ret)?;

    let mut result = Ok(Vec::with_capacity(count as usize));
    for i in 0..count as usize {
        // SAFETY: `list` has `count` initialised certificate handles.
        let crt = unsafe { *list.add(i) };
        if let Ok(ders) = result.as_mut() {
            let mut out = sys::gnutls_datum_t {
                data: ptr::null_mut(),
                size: 0,
            };
            // SAFETY: `crt` is a valid handle; `out` receives a gnutls_malloc'd copy.
            let ret =
                unsafe { sys::gnutls_x509_crt_export2(crt, sys::GNUTLS_X509_FMT_DER, &mut out) };
            match check("gnutls_x509_crt_export2", ret) {
                // SAFETY: `out` was allocated by the export above.
                Ok(_) => ders.push(unsafe { take_datum(out) }),
                Err(e) => result = Err(e),
            }
        }
        // SAFETY: each handle is released once; the list is freed after the loop.
        unsafe { sys::gnutls_x509_crt_deinit(crt) };
    }
    // SAFETY: `list` was allocated by `gnutls_x509_crt_list_import2` with gnutls_malloc.
    unsafe {
        if let Some(free) = sys::gnutls_free {
            free(list.cast());
        }
    }
    result
}

/// An owned `gnutls_certificate_credentials_t`.
pub(crate) struct CertificateCredentials {
    pub(super) raw: sys::gnutls_certificate_credentials_t,
}

// SAFETY: GnuTLS documents credentials as shareable between threads once set up; this type only
// mutates them through `&mut self` before they are wrapped in an `Arc`.
unsafe impl Send for CertificateCredentials {}
// SAFETY: as above, sessions only read the credentials.
unsafe impl Sync for CertificateCredentials {}

impl CertificateCredentials {
    /// Allocates empty credentials.
    pub(super) fn new() -> Result<Self, TlsError> {
        let mut raw = ptr::null_mut();
        // SAFETY: `raw` receives a newly allocated handle that `Drop` frees.
        let ret = unsafe { sys::gnutls_certificate_allocate_credentials(&mut raw) };
        check("gnutls_certificate_allocate_credentials", ret)?;
        Ok(Self { raw })
    }

    /// Installs a certificate chain (leaf first, DER) with its private key.
    pub(super) fn set_key(&mut self, chain: &[Vec<u8>], key: PrivateKey) -> Result<(), TlsError> {
        let mut pcerts = PcertList::from_der(chain)?;
        let count = c_int::try_from(pcerts.list.len()).map_err(|_| TlsError::TooLarge {
            field: "certificate chain",
            len: chain.len(),
        })?;
        // SAFETY: `self.raw` and `key.raw` are valid; GnuTLS copies the pcert array and takes
        // ownership of its contents and of the key only when it returns success.
        let ret = unsafe {
            sys::gnutls_certificate_set_key(
                self.raw,
                ptr::null_mut(),
                0,
                pcerts.list.as_mut_ptr(),
                count,
                key.raw,
            )
        };
        check("gnutls_certificate_set_key", ret)?;
        pcerts.list.clear();
        std::mem::forget(key);
        Ok(())
    }

    /// Adds one DER CA certificate as a trust anchor for peer certificates.
    pub(super) fn add_trust_der(&mut self, der: &[u8]) -> Result<(), TlsError> {
        let input = datum("trust anchor", der)?;
        // SAFETY: `self.raw` is valid; GnuTLS copies the certificate out of `input`.
        let ret = unsafe {
            sys::gnutls_certificate_set_x509_trust_mem(self.raw, &input, sys::GNUTLS_X509_FMT_DER)
        };
        check("gnutls_certificate_set_x509_trust_mem", ret).map(drop)
    }
}

impl Drop for CertificateCredentials {
    fn drop(&mut self) {
        // SAFETY: `raw` was allocated in `new` and no session uses it any more, because every
        // session keeps an `Arc` to these credentials until after its `gnutls_deinit`.
        unsafe { sys::gnutls_certificate_free_credentials(self.raw) };
    }
}

/// Parsed certificates for `gnutls_certificate_set_key`, released on drop unless handed over.
struct PcertList {
    list: Vec<sys::gnutls_pcert_st>,
}

impl PcertList {
    fn from_der(chain: &[Vec<u8>]) -> Result<Self, TlsError> {
        let mut pcerts = Self {
            list: Vec::with_capacity(chain.len()),
        };
        for der in chain {
            let input = datum("certificate", der)?;
            // SAFETY: an all-zero pcert is the state `gnutls_pcert_import_x509_raw` expects.
            let mut pcert: sys::gnutls_pcert_st = unsafe { std::mem::zeroed() };
            // SAFETY: `input` borrows `der` for the call; `pcert` is filled on success only.
            let ret = unsafe {
                sys::gnutls_pcert_import_x509_raw(&mut pcert, &input, sys::GNUTLS_X509_FMT_DER, 0)
            };
            check("gnutls_pcert_import_x509_raw", ret)?;
            pcerts.list.push(pcert);
        }
        Ok(pcerts)
    }
}

impl Drop for PcertList {
    fn drop(&mut self) {
        for pcert in &mut self.list {
            // SAFETY: every entry was imported successfully and is still owned by this list.
            unsafe { sys::gnutls_pcert_deinit(pcert) };
        }
    }
}

/// An owned `gnutls_privkey_t` that has not been handed to credentials yet.
pub(super) struct PrivateKey {
    pub(super) raw: sys::gnutls_privkey_t,
}

impl PrivateKey {
    pub(super) fn init() -> Result<Self, TlsError> {
        let mut raw = ptr::null_mut();
        // SAFETY: `raw` receives a new handle that `Drop` releases.
        let ret = unsafe { sys::gnutls_privkey_init(&mut raw) };
        check("gnutls_privkey_init", ret)?;
        Ok(Self { raw })
    }

    /// Opens a key by URI (`pkcs11:...`); the token is asked for a PIN through the PIN callback.
    pub(super) fn from_url(url: &str) -> Result<Self, TlsError> {
        let url = CString::new(url).map_err(|_| TlsError::InteriorNul {
            field: "private key URI",
        })?;
        let key = Self::init()?;
        // SAFETY: `key.raw` is a fresh handle and `url` is NUL-terminated for the call.
        let ret = unsafe { sys::gnutls_privkey_import_url(key.raw, url.as_ptr(), 0) };
        check("gnutls_privkey_import_url", ret)?;
        Ok(key)
    }

    /// Parses an unencrypted PEM or DER private key.
    pub(super) fn from_memory(data: &[u8], pem: bool) -> Result<Self, TlsError> {
        let input = datum("private key", data)?;
        let format = if pem {
            sys::GNUTLS_X509_FMT_PEM
        } else {
            sys::GNUTLS_X509_FMT_DER
        };
        let key = Self::init()?;
        // SAFETY: `input` borrows `data` for the call; no password is given.
        let ret =
            unsafe { sys::gnutls_privkey_import_x509_raw(key.raw, &input, format, ptr::null(), 0) };
        check("gnutls_privkey_import_x509_raw", ret)?;
        Ok(key)
    }
}

impl Drop for PrivateKey {
    fn drop(&mut self) {
        // SAFETY: the handle is still owned here (`set_key` gives up ownership with `mem::forget` once GnuTLS takes it).
        unsafe { sys::gnutls_privkey_deinit(self.raw) };
    }
}

/// Whether `gnutls_pkcs11_init` has run in this process.
static PKCS11_STATE: Mutex<bool> = Mutex::new(false);

/// The PIN callback every PKCS#11 login in the process goes through.
static PIN_CALLBACK: RwLock<Option<PinCallback>> = RwLock::new(None);

/// Loads a PKCS#11 module into GnuTLS, switching GnuTLS to manual module loading first, so no
/// module outside the configuration (such as p11-kit's defaults) is ever loaded.
pub(super) fn pkcs11_add_provider(path: &str) -> Result<(), TlsError> {
    let path = CString::new(path).map_err(|_| TlsError::InteriorNul {
        field: "PKCS#11 module path",
    })?;
    let mut initialised = PKCS11_STATE.lock().unwrap_or_else(PoisonError::into_inner);
    if !*initialised {
        // SAFETY: serialised by the mutex; a null config file is allowed with the manual flag.
        let ret = unsafe { sys::gnutls_pkcs11_init(sys::GNUTLS_PKCS11_FLAG_MANUAL, ptr::null()) };
        check("gnutls_pkcs11_init", ret)?;
        *initialised = true;
    }
    // SAFETY: serialised by the mutex; `path` is NUL-terminated and GnuTLS copies it.
    let ret = unsafe { sys::gnutls_pkcs11_add_provider(path.as_ptr(), ptr::null()) };
    check("gnutls_pkcs11_add_provider", ret)?;
    debug!(module = %path.to_string_lossy(), "pkcs11 module loaded into gnutls");
    Ok(())
}

/// Installs `callback` as the process-wide PKCS#11 PIN source.
pub(super) fn set_pin_callback(callback: PinCallback) {
    *PIN_CALLBACK.write().unwrap_or_else(PoisonError::into_inner) = Some(callback);
    // SAFETY: `pin_trampoline` has the C signature GnuTLS expects and uses no user data.
    unsafe { sys::gnutls_pkcs11_set_pin_function(Some(pin_trampoline), ptr::null_mut()) };
}

/// Copies a C string GnuTLS passed to a callback, or an empty string for null.
///
/// # Safety
/// `p` must be null or point at a NUL-terminated string valid for the call.
unsafe fn callback_str(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

unsafe extern "C" fn pin_trampoline(
    _userdata: *mut c_void,
    attempt: c_int,
    token_url: *const c_char,
    token_label: *const c_char,
    flags: c_uint,
    pin: *mut c_char,
    pin_max: usize,
) -> c_int {
    // SAFETY: GnuTLS passes NUL-terminated strings (or null) valid during the callback.
    let (token_uri, token_label) = unsafe { (callback_str(token_url), callback_str(token_label)) };
    let request = PinRequest {
        token_uri,
        token_label,
        attempt: u32::try_from(attempt).unwrap_or(0),
        security_officer: flags & sys::GNUTLS_PIN_SO != 0,
        final_try: flags & sys::GNUTLS_PIN_FINAL_TRY != 0,
        previous_wrong: flags & sys::GNUTLS_PIN_WRONG != 0,
    };
    let answer: Option<Zeroizing<String>> = catch_unwind(AssertUnwindSafe(|| {
        let guard = PIN_CALLBACK.read().unwrap_or_else(PoisonError::into_inner);
        guard.as_ref().and_then(|callback| callback(&request))
    }))
    .unwrap_or_else(|_| {
        error!(token = %request.token_label, "pin callback panicked");
        None
    });

    let Some(answer) = answer else {
        debug!(token = %request.token_label, attempt, "no pin supplied for token");
        return sys::GNUTLS_E_PKCS11_PIN_ERROR;
    };
    let bytes = answer.as_bytes();
    if bytes.len() >= pin_max || bytes.contains(&0) {
        debug!(token = %request.token_label, pin_max, "pin does not fit the pin buffer");
        return sys::GNUTLS_E_PKCS11_PIN_ERROR;
    }
    // SAFETY: GnuTLS provides `pin_max` writable bytes at `pin`; the copy and its NUL fit.
    unsafe {
        ptr::copy_nonoverlapping(bytes.as_ptr(), pin.cast::<u8>(), bytes.len());
        *pin.add(bytes.len()) = 0;
    }
    0
}

/// An owned `gnutls_x509_trust_list_t` with the certificates added to it.
pub(super) struct TrustList {
    raw: sys::gnutls_x509_trust_list_t,
}

// SAFETY: the list is only changed through `&mut self`; verification only reads it.
unsafe impl Send for TrustList {}
// SAFETY: as above.
unsafe impl Sync for TrustList {}

impl TrustList {
    pub(super) fn new() -> Result<Self, TlsError> {
        let mut raw = ptr::null_mut();
        // SAFETY: `raw` receives a new list that `Drop` releases; 0 selects the default size.
        let ret = unsafe { sys::gnutls_x509_trust_list_init(&mut raw, 0) };
        check("gnutls_x509_trust_list_init", ret)?;
        Ok(Self { raw })
    }

    /// Adds one DER CA certificate.
    pub(super) fn add_der(&mut self, der: &[u8]) -> Result<(), TlsError> {
        let input = datum("trust anchor", der)?;
        // SAFETY: `self.raw` is valid; GnuTLS copies the certificate out of `input`.
        let ret = unsafe {
            sys::gnutls_x509_trust_list_add_trust_mem(
                self.raw,
                &input,
                ptr::null(),
                sys::GNUTLS_X509_FMT_DER,
                0,
                0,
            )
        };
        check("gnutls_x509_trust_list_add_trust_mem", ret).map(drop)
    }

    /// Verifies a DER chain (leaf first) and returns the `gnutls_certificate_status_t` bits.
    ///
    /// `name` is checked as an email address when it contains `@`, else as a host name.
    /// `purpose` is the key purpose OID the leaf must allow.
    pub(super) fn verify(
        &self,
        chain: &[Vec<u8>],
        name: Option<&str>,
        purpose: &CStr,
    ) -> Result<u32, TlsError> {
        let crts = chain
            .iter()
            .map(|der| X509Crt::from_der(der))
            .collect::<Result<Vec<_>, _>>()?;
        let mut raw_crts: Vec<sys::gnutls_x509_crt_t> = crts.iter().map(|c| c.raw).collect();
        let name = name
            .map(CString::new)
            .transpose()
            .map_err(|_| TlsError::InteriorNul {
                field: "expected peer name",
            })?;

        let mut data = vec![sys::gnutls_typed_vdata_st {
            type_: sys::GNUTLS_DT_KEY_PURPOSE_OID,
            data: purpose.as_ptr().cast_mut().cast(),
            size: 0,
        }];
        if let Some(name) = &name {
            let kind = if name.as_bytes().contains(&b'@') {
                sys::GNUTLS_DT_RFC822NAME
            } else {
                sys::GNUTLS_DT_DNS_HOSTNAME
            };
            data.push(sys::gnutls_typed_vdata_st {
                type_: kind,
                data: name.as_ptr().cast_mut().cast(),
                size: 0,
            });
        }

        let mut status: c_uint = 0;
        // SAFETY: `raw_crts` contains valid handles owned by `crts`; `data` points at
        // NUL-terminated strings (`size` 0 means NUL-terminated) that outlive the call.
        let ret = unsafe {
            sys::gnutls_x509_trust_list_verify_crt2(
                self.raw,
                raw_crts.as_mut_ptr(),
                raw_crts.len() as c_uint,
                data.as_mut_ptr(),
                data.len() as c_uint,
                0,
                &mut status,
                None,
            )
        };
        check("gnutls_x509_trust_list_verify_crt2", ret)?;
        Ok(status)
    }
}

impl Drop for TrustList {
    fn drop(&mut self) {
        // SAFETY: `raw` is owned here; `1` also releases the certificates the list copied.
        unsafe { sys::gnutls_x509_trust_list_deinit(self.raw, 1) };
    }
}

/// An owned `gnutls_x509_crt_t`.
pub(super) struct X509Crt {
    pub(super) raw: sys::gnutls_x509_crt_t,
}

impl X509Crt {
    pub(super) fn from_der(der: &[u8]) -> Result<Self, TlsError> {
        let input = datum("certificate", der)?;
        let mut raw = ptr::null_mut();
        // SAFETY: `raw` receives a new handle that `Drop` releases.
        let ret = unsafe { sys::gnutls_x509_crt_init(&mut raw) };
        check("gnutls_x509_crt_init", ret)?;
        let crt = Self { raw };
        // SAFETY: `crt.raw` is a fresh handle; `input` borrows `der` for the call.
        let ret = unsafe { sys::gnutls_x509_crt_import(crt.raw, &input, sys::GNUTLS_X509_FMT_DER) };
        check("gnutls_x509_crt_import", ret)?;
        Ok(crt)
    }
}

impl Drop for X509Crt {
    fn drop(&mut self) {
        // SAFETY: the handle is owned here and released once.
        unsafe { sys::gnutls_x509_crt_deinit(self.raw) };
    }
}

/// Server-side choice of credentials from the SNI name of the ClientHello.
pub(super) type HelloHook =
    Box<dyn FnMut(Option<&str>) -> Option<Arc<CertificateCredentials>> + Send>;

/// In-memory transport and hook state of one session, reached from the C callbacks.
struct Transport {
    session: sys::gnutls_session_t,
    inbound: Vec<u8>,
    inbound_start: usize,
    inbound_eof: bool,
    outbound: Vec<u8>,
    /// DTLS only: whole datagrams received from the peer, oldest first.
    inbound_datagrams: VecDeque<Vec<u8>>,
    /// DTLS only: whole datagrams GnuTLS wants sent, oldest first.
    outbound_datagrams: VecDeque<Vec<u8>>,
    /// Whether the session is DTLS, so each push and pull moves one whole datagram.
    datagram: bool,
    hello_hook: Option<HelloHook>,
    server_name: Option<String>,
    hello_rejected: bool,
    /// Every credentials object given to `gnutls_credentials_set`, kept alive until deinit.
    credentials: Vec<Arc<CertificateCredentials>>,
}

/// An owned `gnutls_session_t` with its in-memory transport.
pub(super) struct SessionHandle {
    raw: sys::gnutls_session_t,
    /// From `Box::into_raw`; the C callbacks reach it through the same pointer.
    transport: ptr::NonNull<Transport>,
}

// SAFETY: a GnuTLS session has no thread affinity; `&mut self` methods serialise all use, and
// everything the callbacks touch (`Transport`, the hook) is `Send`.
unsafe impl Send for SessionHandle {}

impl SessionHandle {
    /// Creates a client or server session whose push and pull functions use memory buffers,
    /// with `extra_flags` (such as `GNUTLS_ENABLE_RAWPK`) added to the `gnutls_init` flags.
    pub(super) fn new(server: bool, extra_flags: c_uint) -> Result<Self, TlsError> {
        Self::with_transport(server, false, extra_flags)
    }

    /// Creates a DTLS client or server session (`GNUTLS_DATAGRAM`) whose push and pull
    /// functions move whole datagrams through memory queues.
    pub(super) fn new_datagram(server: bool) -> Result<Self, TlsError> {
        Self::with_transport(server, true, 0)
    }

    fn with_transport(server: bool, datagram: bool, extra_flags: c_uint) -> Result<Self, TlsError> {
        let role = if server {
            sys::GNUTLS_SERVER
        } else {
            sys::GNUTLS_CLIENT
        };
        let mode = if datagram { sys::GNUTLS_DATAGRAM } else { 0 };
        let mut raw = ptr::null_mut();
        // SAFETY: `raw` receives a new session that `Drop` releases.
        let ret =
            unsafe { sys::gnutls_init(&mut raw, role | mode | sys::GNUTLS_NONBLOCK | extra_flags) };
        check("gnutls_init", ret)?;

        let transport = Box::new(Transport {
            session: raw,
            inbound: Vec::new(),
            inbound_start: 0,
            inbound_eof: false,
            outbound: Vec::new(),
            inbound_datagrams: VecDeque::new(),
            outbound_datagrams: VecDeque::new(),
            datagram,
            hello_hook: None,
            server_name: None,
            hello_rejected: false,
            credentials: Vec::new(),
        });
        let transport = ptr::NonNull::from(Box::leak(transport));
        let state = transport.as_ptr().cast::<c_void>();
        // SAFETY: `state` stays valid until `Drop` frees it after `gnutls_deinit`; the callbacks
        // cast it back to `Transport`.
        unsafe {
            sys::gnutls_transport_set_ptr(raw, state);
            sys::gnutls_session_set_ptr(raw, state);
            sys::gnutls_transport_set_push_function(raw, Some(push_callback));
            sys::gnutls_transport_set_pull_function(raw, Some(pull_callback));
            if datagram {
                sys::gnutls_transport_set_pull_timeout_function(raw, Some(pull_timeout_callback));
            }
        }
        Ok(Self { raw, transport })
    }

    fn transport(&self) -> &Transport {
        // SAFETY: the pointer is valid until `Drop`; callbacks only run inside `&mut self`
        // methods, so no callback reference is live while this shared one is.
        unsafe { self.transport.as_ref() }
    }

    fn transport_mut(&mut self) -> &mut Transport {
        // SAFETY: as in `transport`, and `&mut self` excludes every other reference.
        unsafe { self.transport.as_mut() }
    }

    /// Sets the priority string; on failure returns the code and the byte offset of the error.
    pub(super) fn set_priority(&mut self, priority: &CStr) -> Result<(), (c_int, usize)> {
        let mut err_pos: *const c_char = ptr::null();
        // SAFETY: `priority` is NUL-terminated; `err_pos` is set to a pointer into it.
        let ret =
            unsafe { sys::gnutls_priority_set_direct(self.raw, priority.as_ptr(), &mut err_pos) };
        if ret >= 0 {
            return Ok(());
        }
        let position = if err_pos.is_null() {
            0
        } else {
            (err_pos as usize).saturating_sub(priority.as_ptr() as usize)
        };
        Err((ret, position))
    }

    /// Attaches certificate credentials, keeping them alive for the session's life.
    pub(super) fn set_credentials(
        &mut self,
        credentials: Arc<CertificateCredentials>,
    ) -> Result<(), TlsError> {
        // SAFETY: the session and credentials are valid; the `Arc` kept in the transport keeps
        // the credentials alive until after `gnutls_deinit`.
        let ret = unsafe { set_credentials_raw(self.raw, &credentials) };
        check("gnutls_credentials_set", ret)?;
        self.transport_mut().credentials.push(credentials);
        Ok(())
    }

    /// Sets the DNS name to send in the SNI extension (client side).
    pub(super) fn set_server_name(&mut self, name: &str) -> Result<(), TlsError> {
        // SAFETY: `name` is valid for `len` bytes; GnuTLS copies it.
        let ret = unsafe {
            sys::gnutls_server_name_set(
                self.raw,
                sys::GNUTLS_NAME_DNS,
                name.as_ptr().cast(),
                name.len(),
            )
        };
        check("gnutls_server_name_set", ret).map(drop)
    }

    /// Sets whether a server requests a client certificate (`GNUTLS_CERT_*`).
    pub(super) fn set_certificate_request(&mut self, request: sys::gnutls_certificate_request_t) {
        // SAFETY: a setter on a valid session.
        unsafe { sys::gnutls_certificate_server_set_request(self.raw, request) };
    }

    /// Sets the handshake timeout in milliseconds (or a `GNUTLS_*_TIMEOUT` value).
    pub(super) fn set_handshake_timeout(&mut self, ms: c_uint) {
        // SAFETY: a setter on a valid session.
        unsafe { sys::gnutls_handshake_set_timeout(self.raw, ms) };
    }

    /// Installs the server's credential choice, run after each ClientHello is parsed.
    pub(super) fn set_hello_hook(&mut self, hook: HelloHook) {
        self.transport_mut().hello_hook = Some(hook);
        // SAFETY: `post_client_hello` finds the transport through the session pointer.
        unsafe {
            sys::gnutls_handshake_set_post_client_hello_function(self.raw, Some(post_client_hello))
        };
    }

    /// Appends ciphertext received from the peer.
    pub(super) fn feed(&mut self, bytes: &[u8]) {
        let t = self.transport_mut();
        if t.inbound_start > 0 && t.inbound_start * 2 >= t.inbound.len() {
            t.inbound.drain(..t.inbound_start);
            t.inbound_start = 0;
        }
        t.inbound.extend_from_slice(bytes);
    }

    /// Marks the end of the peer's ciphertext stream: reads past the buffer see end of file.
    pub(super) fn feed_eof(&mut self) {
        self.transport_mut().inbound_eof = true;
    }

    /// Number of received ciphertext bytes GnuTLS has not read yet.
    pub(super) fn inbound_len(&self) -> usize {
        let t = self.transport();
        t.inbound.len() - t.inbound_start
    }

    /// Ciphertext waiting to be sent to the peer.
    pub(super) fn outbound(&self) -> &[u8] {
        &self.transport().outbound
    }

    /// Removes `n` sent bytes from the front of the outbound buffer.
    pub(super) fn consume_outbound(&mut self, n: usize) {
        let outbound = &mut self.transport_mut().outbound;
        let n = n.min(outbound.len());
        outbound.drain(..n);
    }

    /// Takes the whole outbound buffer.
    pub(super) fn take_outbound(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.transport_mut().outbound)
    }

    /// The DNS name from the client's SNI, as seen by the ClientHello hook or queried now.
    pub(super) fn received_server_name(&self) -> Option<String> {
        self.transport()
            .server_name
            .clone()
            .or_else(|| read_server_name(self.raw))
    }

    /// Returns whether the ClientHello hook found no credentials for the client's name.
    pub(super) fn hello_rejected(&self) -> bool {
        self.transport().hello_rejected
    }

    /// Runs `gnutls_handshake` once.
    pub(super) fn handshake(&mut self) -> c_int {
        // SAFETY: a valid session whose callbacks only touch `self.transport`.
        unsafe { sys::gnutls_handshake(self.raw) }
    }

    /// Sends an alert that matches a handshake error code, as GnuTLS maps it.
    pub(super) fn send_appropriate_alert(&mut self, code: c_int) {
        // SAFETY: a valid session; the alert lands in the outbound buffer.
        let ret = unsafe { sys::gnutls_alert_send_appropriate(self.raw, code) };
        if ret < 0 {
            trace!(code = ret, "no alert sent after handshake error");
        }
    }

    /// Returns the last alert received (`gnutls_alert_get`).
    pub(super) fn last_alert(&self) -> c_uint {
        // SAFETY: a getter on a valid session.
        unsafe { sys::gnutls_alert_get(self.raw) }
    }

    /// Runs `gnutls_record_send` on `data`.
    pub(super) fn record_send(&mut self, data: &[u8]) -> isize {
        // SAFETY: `data` is readable for its length during the call.
        unsafe { sys::gnutls_record_send(self.raw, data.as_ptr().cast(), data.len()) }
    }

    /// Runs `gnutls_record_recv` into `buf`.
    pub(super) fn record_recv(&mut self, buf: &mut [u8]) -> isize {
        // SAFETY: `buf` is writable for its length during the call.
        unsafe { sys::gnutls_record_recv(self.raw, buf.as_mut_ptr().cast(), buf.len()) }
    }

    /// Returns the number of decrypted bytes that `record_recv` returns without more input.
    pub(super) fn record_pending(&self) -> usize {
        // SAFETY: a getter on a valid session.
        unsafe { sys::gnutls_record_check_pending(self.raw) }
    }

    /// Enables TLS 1.3 session tickets on a server session, encrypted under `key`
    /// (`gnutls_session_ticket_enable_server`, which copies the 64-byte key).
    #[cfg(test)]
    pub(super) fn enable_session_tickets(&mut self, key: &[u8; 64]) -> Result<(), TlsError> {
        let key = datum("session ticket key", key)?;
        // SAFETY: the session is valid and `key` points to 64 readable bytes during the call.
        let ret = unsafe { sys::gnutls_session_ticket_enable_server(self.raw, &key) };
        check("gnutls_session_ticket_enable_server", ret).map(drop)
    }

    /// Queues `count` more NewSessionTicket messages from a server (`gnutls_session_ticket_send`).
    #[cfg(test)]
    pub(super) fn send_session_tickets(&mut self, count: u32) -> Result<(), TlsError> {
        // SAFETY: a valid session whose handshake is done; the tickets land in the outbound
        // buffer.
        let ret = unsafe { sys::gnutls_session_ticket_send(self.raw, count, 0) };
        check("gnutls_session_ticket_send", ret).map(drop)
    }

    /// Sends close_notify and shuts down the write side (`gnutls_bye(GNUTLS_SHUT_WR)`).
    pub(super) fn bye_write(&mut self) -> c_int {
        // SAFETY: a valid session; the alert lands in the outbound buffer.
        unsafe { sys::gnutls_bye(self.raw, sys::GNUTLS_SHUT_WR) }
    }

    /// Returns the negotiated `gnutls_protocol_t`.
    pub(super) fn protocol(&self) -> sys::gnutls_protocol_t {
        // SAFETY: a getter on a valid session.
        unsafe { sys::gnutls_protocol_get_version(self.raw) }
    }

    /// Returns the negotiated cipher suite name, such as `TLS_AES_128_GCM_SHA256`.
    pub(super) fn ciphersuite(&self) -> Option<String> {
        // SAFETY: returns a static string or null before the handshake.
        static_str(unsafe { sys::gnutls_ciphersuite_get(self.raw) })
    }

    /// Returns the negotiated certificate type for `target` (`GNUTLS_CTYPE_*`).
    pub(super) fn certificate_type(
        &self,
        target: sys::gnutls_ctype_target_t,
    ) -> sys::gnutls_certificate_type_t {
        // SAFETY: a getter on a valid session.
        unsafe { sys::gnutls_certificate_type_get2(self.raw, target) }
    }

    /// Copies the certificates the peer sent, leaf first.
    pub(super) fn peer_certificates(&self) -> Vec<Vec<u8>> {
        let mut count: c_uint = 0;
        // SAFETY: returns an array of `count` datums owned by the session, or null.
        let list = unsafe { sys::gnutls_certificate_get_peers(self.raw, &mut count) };
        if list.is_null() {
            return Vec::new();
        }
        // SAFETY: the array and each datum are valid until the session changes; copied now.
        let datums = unsafe { std::slice::from_raw_parts(list, count as usize) };
        datums
            .iter()
            // SAFETY: each datum describes `size` readable bytes.
            .map(|d| unsafe { std::slice::from_raw_parts(d.data, d.size as usize) }.to_vec())
            .collect()
    }

    /// Copies the certificate this side sent in the handshake, or `None` when it sent none.
    pub(super) fn local_certificate(&self) -> Option<Vec<u8>> {
        // SAFETY: returns a datum owned by the session, or null.
        let datum = unsafe { sys::gnutls_certificate_get_ours(self.raw) };
        if datum.is_null() {
            return None;
        }
        // SAFETY: the datum is valid until the session changes and describes `size` readable
        // bytes; they are copied now.
        let bytes = unsafe { std::slice::from_raw_parts((*datum).data, (*datum).size as usize) };
        Some(bytes.to_vec())
    }

    /// Copies the OCSP response the peer stapled for its end certificate, or `None` when it
    /// stapled none.
    pub(super) fn stapled_ocsp_response(&self) -> Option<Vec<u8>> {
        let mut datum = sys::gnutls_datum_t {
            data: ptr::null_mut(),
            size: 0,
        };
        // SAFETY: on success the datum points at a response owned by the session.
        let rc = unsafe { sys::gnutls_ocsp_status_request_get(self.raw, &mut datum) };
        if rc < 0 || datum.data.is_null() {
            return None;
        }
        // SAFETY: the datum describes `size` readable bytes, valid until the session changes;
        // they are copied now.
        let bytes = unsafe { std::slice::from_raw_parts(datum.data, datum.size as usize) };
        Some(bytes.to_vec())
    }

    /// Runs the RFC 5705 exporter into `out`.
    pub(super) fn export_keying_material(
        &self,
        label: &[u8],
        context: Option<&[u8]>,
        out: &mut [u8],
    ) -> c_int {
        let (context_len, context_ptr) = match context {
            Some(c) => (c.len(), c.as_ptr()),
            None => (0, ptr::null()),
        };
        // SAFETY: label and context are readable for their lengths; `out` is writable for its
        // length.
        unsafe {
            sys::gnutls_prf_rfc5705(
                self.raw,
                label.len(),
                label.as_ptr().cast(),
                context_len,
                context_ptr.cast(),
                out.len(),
                out.as_mut_ptr().cast(),
            )
        }
    }

    /// Returns channel binding data of `kind` (`GNUTLS_CB_*`).
    pub(super) fn channel_binding(
        &self,
        kind: sys::gnutls_channel_binding_t,
    ) -> Result<Vec<u8>, c_int> {
        let mut out = sys::gnutls_datum_t {
            data: ptr::null_mut(),
            size: 0,
        };
        // SAFETY: `out` receives a gnutls_malloc'd buffer on success.
        let ret = unsafe { sys::gnutls_session_channel_binding(self.raw, kind, &mut out) };
        if ret < 0 {
            return Err(ret);
        }
        // SAFETY: `out` was allocated by the call above.
        Ok(unsafe { take_datum(out) })
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        // SAFETY: the session is owned here and no callback can run after `gnutls_deinit`, so the
        // transport (and the credentials it keeps alive) is freed only after the session.
        unsafe {
            sys::gnutls_deinit(self.raw);
            drop(Box::from_raw(self.transport.as_ptr()));
        }
    }
}

/// The DTLS side of a session handle: the datagram queues, MTU, timer and cookie state.
impl SessionHandle {
    /// Returns whether the session is DTLS.
    pub(super) fn is_datagram(&self) -> bool {
        self.transport().datagram
    }

    /// Queues one datagram received from the peer.
    pub(super) fn feed_datagram(&mut self, datagram: &[u8]) {
        self.transport_mut()
            .inbound_datagrams
            .push_back(datagram.to_vec());
    }

    /// Number of received datagrams GnuTLS has not read yet.
    pub(super) fn inbound_datagrams(&self) -> usize {
        self.transport().inbound_datagrams.len()
    }

    /// Takes the oldest datagram GnuTLS wants sent.
    pub(super) fn pop_outbound_datagram(&mut self) -> Option<Vec<u8>> {
        self.transport_mut().outbound_datagrams.pop_front()
    }

    /// Number of datagrams waiting to be sent.
    pub(super) fn outbound_datagrams(&self) -> usize {
        self.transport().outbound_datagrams.len()
    }

    /// Sets the path MTU in bytes of UDP payload (`gnutls_dtls_set_mtu`).
    pub(super) fn set_mtu(&mut self, mtu: c_uint) {
        // SAFETY: a setter on a valid session.
        unsafe { sys::gnutls_dtls_set_mtu(self.raw, mtu) };
    }

    /// Returns the largest plaintext one record can carry under the MTU
    /// (`gnutls_dtls_get_data_mtu`).
    pub(super) fn data_mtu(&self) -> c_uint {
        // SAFETY: a getter on a valid session.
        unsafe { sys::gnutls_dtls_get_data_mtu(self.raw) }
    }

    /// Returns the milliseconds until GnuTLS wants to retransmit (`gnutls_dtls_get_timeout`).
    pub(super) fn dtls_timeout_ms(&self) -> c_uint {
        // SAFETY: a getter on a valid session.
        unsafe { sys::gnutls_dtls_get_timeout(self.raw) }
    }

    /// Sets the retransmission and total handshake timeouts in milliseconds
    /// (`gnutls_dtls_set_timeouts`).
    pub(super) fn set_dtls_timeouts(&mut self, retransmit_ms: c_uint, total_ms: c_uint) {
        // SAFETY: a setter on a valid session.
        unsafe { sys::gnutls_dtls_set_timeouts(self.raw, retransmit_ms, total_ms) };
    }

    /// Continues the sequence numbers of a verified cookie exchange (`gnutls_dtls_prestate_set`).
    pub(super) fn set_prestate(&mut self, mut prestate: sys::gnutls_dtls_prestate_st) {
        // SAFETY: GnuTLS copies the three counters out of `prestate` during the call.
        unsafe { sys::gnutls_dtls_prestate_set(self.raw, &mut prestate) };
    }
}

/// Checks the cookie in a DTLS ClientHello (`gnutls_dtls_cookie_verify`) against `key` and the
/// client's transport address; returns the state to continue from, or the GnuTLS error code.
pub(super) fn dtls_cookie_verify(
    key: &[u8],
    client: &[u8],
    hello: &[u8],
) -> Result<sys::gnutls_dtls_prestate_st, c_int> {
    let mut key = datum("cookie key", key).map_err(|_| sys::GNUTLS_E_INVALID_REQUEST)?;
    let mut prestate = sys::gnutls_dtls_prestate_st {
        record_seq: 0,
        hsk_read_seq: 0,
        hsk_write_seq: 0,
    };
    // SAFETY: `key`, `client` and `hello` are readable for their lengths during the call, and
    // GnuTLS only reads them; `prestate` is writable.
    let ret = unsafe {
        sys::gnutls_dtls_cookie_verify(
            &mut key,
            client.as_ptr().cast_mut().cast(),
            client.len(),
            hello.as_ptr().cast_mut().cast(),
            hello.len(),
            &mut prestate,
        )
    };
    if ret < 0 { Err(ret) } else { Ok(prestate) }
}

/// Builds the HelloVerifyRequest datagram for a ClientHello that carried no valid cookie
/// (`gnutls_dtls_cookie_send`), bound to `key` and the client's transport address.
pub(super) fn dtls_cookie_send(
    key: &[u8],
    client: &[u8],
    prestate: &mut sys::gnutls_dtls_prestate_st,
) -> Result<Vec<u8>, TlsError> {
    let mut key = datum("cookie key", key)?;
    let mut out: Vec<u8> = Vec::new();
    // SAFETY: `key` and `client` are readable for their lengths; GnuTLS calls
    // `cookie_push_callback` synchronously with `out`'s address, which stays valid for the call.
    let ret = unsafe {
        sys::gnutls_dtls_cookie_send(
            &mut key,
            client.as_ptr().cast_mut().cast(),
            client.len(),
            prestate,
            ptr::from_mut(&mut out).cast(),
            Some(cookie_push_callback),
        )
    };
    check("gnutls_dtls_cookie_send", ret)?;
    Ok(out)
}

unsafe extern "C" fn cookie_push_callback(
    ptr: *mut c_void,
    data: *const c_void,
    len: usize,
) -> isize {
    // SAFETY: `dtls_cookie_send` passes the address of its `Vec<u8>`, unaliased during the call.
    let out = unsafe { &mut *ptr.cast::<Vec<u8>>() };
    // SAFETY: GnuTLS provides `len` readable bytes at `data`.
    out.extend_from_slice(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) });
    isize::try_from(len).unwrap_or(isize::MAX)
}

/// Calls `gnutls_credentials_set` for certificate credentials.
///
/// # Safety
/// `session` must be valid and `credentials` must outlive the session.
unsafe fn set_credentials_raw(
    session: sys::gnutls_session_t,
    credentials: &CertificateCredentials,
) -> c_int {
    // SAFETY: guaranteed by the caller.
    unsafe {
        sys::gnutls_credentials_set(session, sys::GNUTLS_CRD_CERTIFICATE, credentials.raw.cast())
    }
}

/// Reads the first DNS-type name of the client's SNI extension.
fn read_server_name(session: sys::gnutls_session_t) -> Option<String> {
    let mut index = 0;
    loop {
        let mut buf = [0u8; MAX_SERVER_NAME + 1];
        let mut len = buf.len();
        let mut kind: c_uint = 0;
        // SAFETY: `buf` is writable for `len` bytes; GnuTLS writes the name and a NUL.
        let ret = unsafe {
            sys::gnutls_server_name_get(
                session,
                buf.as_mut_ptr().cast(),
                &mut len,
                &mut kind,
                index,
            )
        };
        if ret < 0 {
            return None;
        }
        if kind == sys::GNUTLS_NAME_DNS {
            let name = buf.get(..len)?;
            return std::str::from_utf8(name).ok().map(str::to_owned);
        }
        index += 1;
    }
}

/// Returns the transport of a session from the pointer stored by [`SessionHandle::new`].
///
/// # Safety
/// `ptr` must be the pointer stored by `SessionHandle::new`, and no other reference to the
/// transport may be live (GnuTLS calls back only from inside a `&mut self` method).
unsafe fn transport<'a>(ptr: *mut c_void) -> &'a mut Transport {
    // SAFETY: guaranteed by the caller.
    unsafe { &mut *ptr.cast::<Transport>() }
}

unsafe extern "C" fn push_callback(ptr: *mut c_void, data: *const c_void, len: usize) -> isize {
    // SAFETY: GnuTLS passes back the transport pointer set in `SessionHandle::new`.
    let t = unsafe { transport(ptr) };
    // SAFETY: GnuTLS provides `len` readable bytes at `data`.
    let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) };
    if t.datagram {
        t.outbound_datagrams.push_back(bytes.to_vec());
    } else {
        t.outbound.extend_from_slice(bytes);
    }
    isize::try_from(len).unwrap_or(isize::MAX)
}

unsafe extern "C" fn pull_callback(ptr: *mut c_void, data: *mut c_void, len: usize) -> isize {
    // SAFETY: GnuTLS passes back the transport pointer set in `SessionHandle::new`.
    let t = unsafe { transport(ptr) };
    if t.datagram {
        // SAFETY: GnuTLS provides `len` writable bytes at `data`.
        return unsafe { pull_datagram(t, data.cast::<u8>(), len) };
    }
    let available = &t.inbound[t.inbound_start..];
    if available.is_empty() {
        if t.inbound_eof {
            return 0;
        }
        // SAFETY: `t.session` is the session that is calling back.
        unsafe { sys::gnutls_transport_set_errno(t.session, libc::EAGAIN) };
        return -1;
    }
    let n = available.len().min(len);
    // SAFETY: GnuTLS provides `len` writable bytes at `data`, and `n <= len`.
    unsafe { ptr::copy_nonoverlapping(available.as_ptr(), data.cast::<u8>(), n) };
    t.inbound_start += n;
    isize::try_from(n).unwrap_or(isize::MAX)
}

/// Copies the oldest queued datagram to `data`, or reports `EAGAIN` when none is queued. A
/// datagram longer than `len` is cut to `len`, as `recv` on a UDP socket does; GnuTLS asks
/// for more than the largest DTLS record.
///
/// # Safety
/// `data` must be writable for `len` bytes.
unsafe fn pull_datagram(t: &mut Transport, data: *mut u8, len: usize) -> isize {
    let Some(datagram) = t.inbound_datagrams.pop_front() else {
        // SAFETY: `t.session` is the session that is calling back.
        unsafe { sys::gnutls_transport_set_errno(t.session, libc::EAGAIN) };
        return -1;
    };
    let n = datagram.len().min(len);
    // SAFETY: guaranteed by the caller, and `n <= len`.
    unsafe { ptr::copy_nonoverlapping(datagram.as_ptr(), data, n) };
    isize::try_from(n).unwrap_or(isize::MAX)
}

/// Reports whether a datagram is queued, without waiting: GnuTLS calls this with `ms` 0 in
/// non-blocking mode, and a return of 0 lets it check its DTLS retransmission timer.
unsafe extern "C" fn pull_timeout_callback(ptr: *mut c_void, _ms: c_uint) -> c_int {
    // SAFETY: GnuTLS passes back the transport pointer set in `SessionHandle::new_datagram`.
    let t = unsafe { transport(ptr) };
    c_int::from(!t.inbound_datagrams.is_empty())
}

unsafe extern "C" fn post_client_hello(session: sys::gnutls_session_t) -> c_int {
    // SAFETY: the session pointer was set to the transport in `SessionHandle::new`.
    let t = unsafe { transport(sys::gnutls_session_get_ptr(session)) };
    t.server_name = read_server_name(session);
    let Some(hook) = t.hello_hook.as_mut() else {
        return 0;
    };
    let name = t.server_name.as_deref();
    let chosen = catch_unwind(AssertUnwindSafe(|| hook(name))).unwrap_or_else(|_| {
        error!("server credential selection panicked");
        None
    });
    let Some(credentials) = chosen else {
        debug!(server_name = ?t.server_name, "no server credentials for client hello");
        t.hello_rejected = true;
        return sys::GNUTLS_E_UNRECOGNIZED_NAME;
    };

    // SAFETY: `session` is valid; the `Arc` is kept in the transport until after deinit.
    let ret = unsafe { set_credentials_raw(session, &credentials) };
    t.credentials.push(credentials);
    ret.min(0)
}

/// Renegotiation (RFC 5746) and its security status.
impl SessionHandle {
    /// Queues a HelloRequest on a server session (`gnutls_rehandshake`).
    pub(super) fn rehandshake(&mut self) -> c_int {
        // SAFETY: a valid server session; the message lands in the outbound buffer.
        unsafe { sys::gnutls_rehandshake(self.raw) }
    }

    /// Returns whether the peer negotiated RFC 5746 secure renegotiation.
    pub(super) fn safe_renegotiation(&self) -> bool {
        // SAFETY: a getter on a valid session.
        unsafe { sys::gnutls_safe_renegotiation_status(self.raw) != 0 }
    }

    /// Returns whether the handshake used the RFC 7627 extended master secret.
    pub(super) fn extended_master_secret(&self) -> bool {
        // SAFETY: a getter on a valid session.
        unsafe { sys::gnutls_session_ext_master_secret_status(self.raw) != 0 }
    }

    /// Queues a warning alert of `description` (`gnutls_alert_send`).
    pub(super) fn send_warning_alert(
        &mut self,
        description: sys::gnutls_alert_description_t,
    ) -> c_int {
        // SAFETY: a valid session; the alert lands in the outbound buffer.
        unsafe { sys::gnutls_alert_send(self.raw, sys::GNUTLS_AL_WARNING, description) }
    }
}

/// The anonymous Diffie-Hellman credentials of the privacy-mode precursor, one pair for the
/// process: a server's carry the RFC 7919 group of `GNUTLS_SEC_PARAM_MEDIUM` (ffdhe3072
/// in GnuTLS 3.7), and a client's carry nothing.
struct AnonymousCredentials {
    server: sys::gnutls_anon_server_credentials_t,
    client: sys::gnutls_anon_client_credentials_t,
}

// SAFETY: both handles are only read after `anonymous_credentials` set them up, and GnuTLS
// allows one credentials structure to serve sessions on several threads.
unsafe impl Send for AnonymousCredentials {}
// SAFETY: as for `Send`; no session changes the credentials.
unsafe impl Sync for AnonymousCredentials {}

/// Allocates the process's anonymous credentials on first use; they are never freed, so every
/// session may keep pointers to them.
fn anonymous_credentials() -> Result<&'static AnonymousCredentials, TlsError> {
    static CREDENTIALS: std::sync::OnceLock<AnonymousCredentials> = std::sync::OnceLock::new();
    if let Some(credentials) = CREDENTIALS.get() {
        return Ok(credentials);
    }
    let mut server = ptr::null_mut();
    // SAFETY: `server` receives a new handle, which the static keeps for the process's life.
    check("gnutls_anon_allocate_server_credentials", unsafe {
        sys::gnutls_anon_allocate_server_credentials(&mut server)
    })?;
    // SAFETY: `server` is the valid handle allocated above.
    check("gnutls_anon_set_server_known_dh_params", unsafe {
        sys::gnutls_anon_set_server_known_dh_params(server, sys::GNUTLS_SEC_PARAM_MEDIUM)
    })?;
    let mut client = ptr::null_mut();
    // SAFETY: `client` receives a new handle, which the static keeps for the process's life.
    check("gnutls_anon_allocate_client_credentials", unsafe {
        sys::gnutls_anon_allocate_client_credentials(&mut client)
    })?;
    // A racing thread may have set the static first; its handles win and these two stay
    // allocated, a one-time leak.
    Ok(CREDENTIALS.get_or_init(|| AnonymousCredentials { server, client }))
}

/// The anonymous precursor of privacy mode.
impl SessionHandle {
    /// Adds the anonymous credentials of this session's role to its certificate credentials.
    pub(super) fn set_anonymous_credentials(&mut self, server: bool) -> Result<(), TlsError> {
        let credentials = anonymous_credentials()?;
        let raw = if server {
            credentials.server.cast::<c_void>()
        } else {
            credentials.client.cast::<c_void>()
        };
        // SAFETY: a valid session and credentials that live for the rest of the process.
        let ret = unsafe { sys::gnutls_credentials_set(self.raw, sys::GNUTLS_CRD_ANON, raw) };
        check("gnutls_credentials_set", ret).map(drop)
    }

    /// Returns whether the negotiated key exchange is anonymous Diffie-Hellman.
    pub(super) fn is_anonymous_dh(&self) -> bool {
        // SAFETY: a getter on a valid session.
        unsafe { sys::gnutls_kx_get(self.raw) == sys::GNUTLS_KX_ANON_DH }
    }
}
