//! Certificate credentials for TLS sessions: an X.509 certificate chain and an RFC 7250 raw
//! public key, each with its private key (behind PKCS#11 or in memory), trust anchors, the
//! process-wide PKCS#11 setup and the PIN callback.

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

use super::error::TlsError;
use super::extkey::ExternalKey;
use super::{ffi, rawpk};

/// Process-wide source of PKCS#11 PINs, see [`set_pin_callback`].
pub type PinCallback = Box<dyn Fn(&PinRequest) -> Option<Zeroizing<String>> + Send + Sync>;

/// Token login details GnuTLS passes to the PIN callback.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PinRequest {
    /// The token's PKCS#11 URI, such as `pkcs11:model=SoftHSM%20v2;...;token=tlspool`.
    pub token_uri: String,
    /// The token label.
    pub token_label: String,
    /// The number of earlier attempts in this login, starting at 0.
    pub attempt: u32,
    /// Whether the security officer PIN is requested rather than the user PIN.
    pub security_officer: bool,
    /// Whether the token reports that this is the last try before it locks.
    pub final_try: bool,
    /// Whether the previous PIN for this login was wrong.
    pub previous_wrong: bool,
}

/// Loads a PKCS#11 module (such as `/usr/lib/softhsm/libsofthsm2.so`) into GnuTLS.
///
/// The first call switches GnuTLS to manual module loading, so only modules added here are used.
/// Keys on the module's tokens then open through `pkcs11:` URIs.
///
/// # Errors
/// [`TlsError::Library`] when GnuTLS cannot initialise PKCS#11 or load the module.
pub fn pkcs11_add_provider(module_path: &str) -> Result<(), TlsError> {
    ffi::pkcs11_add_provider(module_path)
}

/// Installs the PIN callback that every PKCS#11 login in this process uses, replacing any earlier
/// one. Returning `None` abandons the login.
pub fn set_pin_callback(callback: PinCallback) {
    ffi::set_pin_callback(callback);
}

/// Encoding of a certificate chain or key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// One or more PEM blocks.
    Pem,
    /// A single DER object.
    Der,
}

/// Location of the private key of a certificate chain.
#[derive(Clone)]
#[non_exhaustive]
pub enum PrivateKeySource {
    /// A key on a PKCS#11 token, named by its `pkcs11:` URI.
    Pkcs11Uri(String),
    /// An unencrypted key in memory.
    Memory {
        /// The key bytes.
        data: Zeroizing<Vec<u8>>,
        /// Their encoding.
        encoding: Encoding,
    },
    /// A key that signs through a Rust callback, such as an OpenPGP card's.
    External(ExternalKey),
}

impl fmt::Debug for PrivateKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pkcs11Uri(uri) => f.debug_tuple("Pkcs11Uri").field(uri).finish(),
            Self::Memory { encoding, .. } => f
                .debug_struct("Memory")
                .field("encoding", encoding)
                .finish_non_exhaustive(),
            Self::External(key) => f.debug_tuple("External").field(key).finish(),
        }
    }
}

/// Certificate credentials for sessions: at most one X.509 certificate chain and at most one
/// raw public key, each with its key, and the trust anchors whose names a server sends when it
/// requests a client certificate.
///
/// Cloning is cheap and shares the GnuTLS handle; sessions keep it alive while they use it.
#[derive(Clone)]
pub struct Credentials {
    pub(super) inner: Arc<ffi::CertificateCredentials>,
    has_x509: bool,
    has_raw_public_key: bool,
}

impl Credentials {
    /// Starts building credentials.
    pub fn builder() -> CredentialsBuilder {
        CredentialsBuilder::default()
    }

    /// Builds credentials without a certificate, for a client that does not authenticate.
    ///
    /// # Errors
    /// [`TlsError::Library`] when GnuTLS cannot allocate the credentials.
    pub fn anonymous_client() -> Result<Self, TlsError> {
        Self::builder().build()
    }

    /// Returns whether the credentials contain an X.509 certificate chain.
    pub fn has_x509(&self) -> bool {
        self.has_x509
    }

    /// Returns whether the credentials contain a raw public key.
    pub fn has_raw_public_key(&self) -> bool {
        self.has_raw_public_key
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("has_x509", &self.has_x509)
            .field("has_raw_public_key", &self.has_raw_public_key)
            .finish_non_exhaustive()
    }
}

/// Builder for [`Credentials`].
#[derive(Debug, Default)]
pub struct CredentialsBuilder {
    chain: Vec<Vec<u8>>,
    key: Option<PrivateKeySource>,
    raw_public_key: Option<(Vec<u8>, PrivateKeySource)>,
    anchors: Vec<Vec<u8>>,
    pending_error: Option<TlsError>,
}

impl CredentialsBuilder {
    /// Sets the certificate chain, leaf first, from PEM text or one DER certificate.
    pub fn certificate_chain(&mut self, data: &[u8], encoding: Encoding) -> &mut Self {
        match ffi::certificates_to_der(data, encoding == Encoding::Pem) {
            Ok(chain) => self.chain = chain,
            Err(e) => self.record_error(e),
        }
        self
    }

    /// Sets the certificate chain from DER certificates, leaf first (as `LID_CHAINED` data
    /// splits into).
    pub fn certificate_chain_der(&mut self, chain: Vec<Vec<u8>>) -> &mut Self {
        self.chain = chain;
        self
    }

    /// Sets the private key of the chain.
    pub fn private_key(&mut self, key: PrivateKeySource) -> &mut Self {
        self.key = Some(key);
        self
    }

    /// Sets the RFC 7250 raw public key, a DER SubjectPublicKeyInfo, with its private key. It
    /// is sent instead of the certificate chain when the handshake negotiates raw public keys.
    pub fn raw_public_key(
        &mut self,
        subject_public_key_info: Vec<u8>,
        key: PrivateKeySource,
    ) -> &mut Self {
        self.raw_public_key = Some((subject_public_key_info, key));
        self
    }

    /// Adds CA certificates, from PEM text (any number) or one DER certificate.
    pub fn trust_anchors(&mut self, data: &[u8], encoding: Encoding) -> &mut Self {
        match ffi::certificates_to_der(data, encoding == Encoding::Pem) {
            Ok(mut anchors) => self.anchors.append(&mut anchors),
            Err(e) => self.record_error(e),
        }
        self
    }

    /// Creates the GnuTLS credentials, opening the private key (a PKCS#11 key may ask for a PIN
    /// through the [`set_pin_callback`] callback).
    ///
    /// # Errors
    /// The first parse error of a setter, [`TlsError::IncompleteKeyPair`] for a chain without a
    /// key or a key without a chain, or [`TlsError::Library`] from GnuTLS.
    pub fn build(&mut self) -> Result<Credentials, TlsError> {
        if let Some(e) = self.pending_error.take() {
            return Err(e);
        }
        let mut credentials = ffi::CertificateCredentials::new()?;

        match (&self.key, self.chain.is_empty()) {
            (None, true) => {}
            (Some(source), false) => credentials.set_key(&self.chain, open_key(source)?)?,
            _ => return Err(TlsError::IncompleteKeyPair),
        }
        if let Some((spki, source)) = &self.raw_public_key {
            rawpk::set_raw_public_key(&mut credentials, spki, open_key(source)?)?;
        }
        for anchor in &self.anchors {
            credentials.add_trust_der(anchor)?;
        }

        Ok(Credentials {
            inner: Arc::new(credentials),
            has_x509: !self.chain.is_empty(),
            has_raw_public_key: self.raw_public_key.is_some(),
        })
    }

    fn record_error(&mut self, e: TlsError) {
        self.pending_error.get_or_insert(e);
    }
}

/// Opens the private key that `source` names.
fn open_key(source: &PrivateKeySource) -> Result<ffi::PrivateKey, TlsError> {
    match source {
        PrivateKeySource::Pkcs11Uri(uri) => ffi::PrivateKey::from_url(uri),
        PrivateKeySource::Memory { data, encoding } => {
            ffi::PrivateKey::from_memory(data, *encoding == Encoding::Pem)
        }
        PrivateKeySource::External(key) => key.to_private_key(),
    }
}

/// A set of CA certificates for [`Session::verify_peer_x509`](super::Session::verify_peer_x509).
pub struct TrustAnchors {
    pub(super) list: ffi::TrustList,
}

impl TrustAnchors {
    /// Builds a trust list from PEM text (any number of certificates) or one DER certificate.
    ///
    /// # Errors
    /// [`TlsError::Library`] when a certificate does not parse.
    pub fn from_certificates(data: &[u8], encoding: Encoding) -> Result<Self, TlsError> {
        let ders = ffi::certificates_to_der(data, encoding == Encoding::Pem)?;
        Self::from_der(&ders)
    }

    /// Builds a trust list from DER certificates.
    ///
    /// # Errors
    /// [`TlsError::Library`] when a certificate does not parse.
    pub fn from_der(certificates: &[Vec<u8>]) -> Result<Self, TlsError> {
        let mut list = ffi::TrustList::new()?;
        for der in certificates {
            list.add_der(der)?;
        }
        Ok(Self { list })
    }
}

impl fmt::Debug for TrustAnchors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustAnchors").finish_non_exhaustive()
    }
}
