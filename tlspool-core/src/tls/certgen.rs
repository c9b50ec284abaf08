//! X.509 certificate issuance on GnuTLS: a [`CertificateBuilder`] for CA, server, client and
//! on-the-fly certificates, the [`SigningKey`] that signs them (on a PKCS#11 token or in
//! memory), and the DER and PEM [`Certificate`] it returns.
//!
//! ```no_run
//! use std::time::{Duration, SystemTime};
//!
//! use tlspool_core::tls::{
//!     CertificateBuilder, ExtendedKeyUsage, Issuer, KeyType, KeyUsage, SigningKey,
//! };
//!
//! # fn main() -> Result<(), tlspool_core::tls::TlsError> {
//! let now = SystemTime::now();
//! let ca_key = SigningKey::generate(KeyType::EcdsaP256)?;
//! let ca = CertificateBuilder::new()
//!     .common_name("Example CA")
//!     .ca(None)
//!     .key_usage(KeyUsage::KEY_CERT_SIGN | KeyUsage::CRL_SIGN)
//!     .validity(now, now + Duration::from_secs(86_400))
//!     .public_key_from(&ca_key)
//!     .build(Issuer::SelfSigned(&ca_key))?;
//!
//! // The leaf's key may also live on a token: pass its SubjectPublicKeyInfo DER.
//! let leaf_key = SigningKey::generate(KeyType::EcdsaP256)?;
//! let leaf = CertificateBuilder::new()
//!     .common_name("www.example.com")
//!     .dns_name("www.example.com")
//!     .key_usage(KeyUsage::DIGITAL_SIGNATURE)
//!     .extended_key_usage(ExtendedKeyUsage::ServerAuth)
//!     .validity(now, now + Duration::from_secs(3_600))
//!     .public_key_der(&leaf_key.public_key_der()?)
//!     .build(Issuer::Ca { certificate: &ca, key: &ca_key })?;
//! std::fs::write("leaf.pem", leaf.to_pem()?).unwrap();
//! # Ok(())
//! # }
//! ```
//!
//! Every certificate is X.509 version 3 with a critical basicConstraints extension (CA or
//! not), a subjectKeyIdentifier that is GnuTLS's SHA-1 key ID of the public key (the "Public
//! Key ID" of `certtool -i`), and an authorityKeyIdentifier equal to the issuer's
//! subjectKeyIdentifier. Signatures use SHA-256,
//! except with an Ed25519 key, which fixes its own hash.

use std::ffi::CStr;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitflags::bitflags;
use tlspool_gnutls_sys as sys;
use tracing::debug;
use zeroize::Zeroizing;

use super::credentials::{Encoding, PrivateKeySource};
use super::error::TlsError;
use super::ffi::{self, PrivateKey, X509Crt};
use super::ffi_x509::{self, PublicKey};

/// Length of a generated serial number in bytes. RFC 5280 allows up to 20 octets; 16 random
/// bytes leave 126 bits of randomness after the two fixed top bits.
const SERIAL_LEN: usize = 16;

/// Maximum length of a serial number in octets (RFC 5280, section 4.1.2.2).
const MAX_SERIAL_LEN: usize = 20;

/// How long before its issuance an on-the-fly certificate becomes valid, for peers whose clock
/// runs behind.
const ON_THE_FLY_BACKDATE: Duration = Duration::from_secs(120);

/// How long after its issuance an on-the-fly certificate stays valid.
const ON_THE_FLY_LIFETIME: Duration = Duration::from_secs(180);

/// organizationalUnitName of every on-the-fly certificate.
const ON_THE_FLY_UNIT: &str = "TLS Pool on-the-fly";

/// Subject DN attribute OIDs from the GnuTLS headers. `from_bytes_with_nul` runs at compile
/// time, so a constant without its NUL fails the build rather than a call.
const COMMON_NAME_OID: &CStr = oid(sys::GNUTLS_OID_X520_COMMON_NAME);
const ORGANIZATION_NAME_OID: &CStr = oid(sys::GNUTLS_OID_X520_ORGANIZATION_NAME);
const ORGANIZATIONAL_UNIT_NAME_OID: &CStr = oid(sys::GNUTLS_OID_X520_ORGANIZATIONAL_UNIT_NAME);

/// Type and size of a key that [`SigningKey::generate`] creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyType {
    /// RSA with a 2048-bit modulus.
    Rsa2048,
    /// RSA with a 3072-bit modulus.
    Rsa3072,
    /// ECDSA on NIST P-256 (secp256r1).
    EcdsaP256,
    /// ECDSA on NIST P-384 (secp384r1).
    EcdsaP384,
    /// Ed25519 (RFC 8032).
    Ed25519,
}

/// A private key that signs certificates: generated in memory, parsed from memory, or on a
/// PKCS#11 token.
pub struct SigningKey {
    key: PrivateKey,
}

/// A DER X.509 certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    der: Vec<u8>,
}

bitflags! {
    /// Bits of the keyUsage extension (RFC 5280, section 4.2.1.3).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct KeyUsage: u32 {
        /// digitalSignature: TLS handshake signatures (ECDHE, TLS 1.3).
        const DIGITAL_SIGNATURE = sys::GNUTLS_KEY_DIGITAL_SIGNATURE;
        /// nonRepudiation (contentCommitment).
        const NON_REPUDIATION = sys::GNUTLS_KEY_NON_REPUDIATION;
        /// keyEncipherment: TLS 1.2 RSA key transport.
        const KEY_ENCIPHERMENT = sys::GNUTLS_KEY_KEY_ENCIPHERMENT;
        /// dataEncipherment.
        const DATA_ENCIPHERMENT = sys::GNUTLS_KEY_DATA_ENCIPHERMENT;
        /// keyAgreement: static (EC)DH.
        const KEY_AGREEMENT = sys::GNUTLS_KEY_KEY_AGREEMENT;
        /// keyCertSign: signing certificates, for a CA.
        const KEY_CERT_SIGN = sys::GNUTLS_KEY_KEY_CERT_SIGN;
        /// cRLSign: signing revocation lists, for a CA.
        const CRL_SIGN = sys::GNUTLS_KEY_CRL_SIGN;
    }
}

/// A key purpose of the extendedKeyUsage extension (RFC 5280, section 4.2.1.12).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExtendedKeyUsage {
    /// id-kp-serverAuth (1.3.6.1.5.5.7.3.1): TLS server.
    ServerAuth,
    /// id-kp-clientAuth (1.3.6.1.5.5.7.3.2): TLS client.
    ClientAuth,
    /// Any other key purpose, by dotted OID.
    Oid(String),
}

/// The signer of a certificate built by [`CertificateBuilder::build`].
#[derive(Clone, Copy)]
pub enum Issuer<'a> {
    /// The certificate signs itself, so its public key is that of this key and the issuer DN
    /// is its own subject DN.
    SelfSigned(&'a SigningKey),
    /// A CA signs the certificate; the issuer DN and authority key identifier come from its
    /// certificate.
    Ca {
        /// The CA's certificate.
        certificate: &'a Certificate,
        /// The CA's private key, matching the public key of `certificate`.
        key: &'a SigningKey,
    },
}

/// Builder of an X.509 version 3 certificate.
///
/// Setters that parse input keep their first error and [`build`](Self::build) returns it.
#[derive(Debug, Default)]
pub struct CertificateBuilder {
    subject: Vec<(&'static CStr, String)>,
    alt_names: Vec<(sys::gnutls_x509_subject_alt_name_t, String)>,
    serial: Option<Vec<u8>>,
    validity: Option<(SystemTime, SystemTime)>,
    ca: bool,
    path_len: Option<u32>,
    key_usage: Option<KeyUsage>,
    extended_key_usage: Vec<ExtendedKeyUsage>,
    public_key: Option<Vec<u8>>,
    pending_error: Option<TlsError>,
}

impl SigningKey {
    /// Generates a key in memory with GnuTLS's random generator.
    ///
    /// # Errors
    /// [`TlsError::Library`] when GnuTLS cannot generate the key.
    pub fn generate(key_type: KeyType) -> Result<Self, TlsError> {
        let key = match key_type {
            KeyType::Rsa2048 => PrivateKey::generate(sys::GNUTLS_PK_RSA, 2048)?,
            KeyType::Rsa3072 => PrivateKey::generate(sys::GNUTLS_PK_RSA, 3072)?,
            KeyType::EcdsaP256 => PrivateKey::generate_on_curve(
                sys::GNUTLS_PK_ECDSA,
                sys::GNUTLS_ECC_CURVE_SECP256R1,
            )?,
            KeyType::EcdsaP384 => PrivateKey::generate_on_curve(
                sys::GNUTLS_PK_ECDSA,
                sys::GNUTLS_ECC_CURVE_SECP384R1,
            )?,
            KeyType::Ed25519 => PrivateKey::generate_on_curve(
                sys::GNUTLS_PK_EDDSA_ED25519,
                sys::GNUTLS_ECC_CURVE_ED25519,
            )?,
        };
        debug!(?key_type, "generated signing key in memory");
        Ok(Self { key })
    }

    /// Opens a key on a PKCS#11 token by its `pkcs11:` URI.
    ///
    /// The module must have been added with
    /// [`pkcs11_add_provider`](super::pkcs11_add_provider); GnuTLS requests the token's PIN
    /// through the [`set_pin_callback`](super::set_pin_callback) callback.
    ///
    /// # Errors
    /// [`TlsError::InteriorNul`] for a URI with a NUL byte, [`TlsError::Library`] when GnuTLS
    /// cannot find or open the key.
    pub fn from_pkcs11_uri(uri: &str) -> Result<Self, TlsError> {
        Ok(Self {
            key: PrivateKey::from_url(uri)?,
        })
    }

    /// Opens the key that `source` names: a `pkcs11:` URI or an unencrypted key in memory.
    ///
    /// # Errors
    /// As [`from_pkcs11_uri`](Self::from_pkcs11_uri), or [`TlsError::Library`] when a key in
    /// memory does not parse.
    pub fn open(source: &PrivateKeySource) -> Result<Self, TlsError> {
        let key = match source {
            PrivateKeySource::Pkcs11Uri(uri) => PrivateKey::from_url(uri)?,
            PrivateKeySource::Memory { data, encoding } => {
                PrivateKey::from_memory(data, *encoding == Encoding::Pem)?
            }
            PrivateKeySource::External(key) => key.to_private_key()?,
        };
        Ok(Self { key })
    }

    /// Returns the public key as DER SubjectPublicKeyInfo.
    ///
    /// # Errors
    /// [`TlsError::Library`] when GnuTLS cannot read or encode the public key (a token key
    /// whose public half GnuTLS cannot find, for instance).
    pub fn public_key_der(&self) -> Result<Vec<u8>, TlsError> {
        PublicKey::from_private_key(&self.key)?.to_spki_der()
    }

    /// Exports an in-memory key as unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    ///
    /// # Errors
    /// [`TlsError::Library`] for a key on a token, whose private part cannot be exported.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<Vec<u8>>, TlsError> {
        self.key.to_pkcs8_pem()
    }

    /// Returns the hash to sign with: SHA-256, or GnuTLS's choice (0) for EdDSA, whose
    /// signature algorithms fix the hash.
    fn signature_digest(&self) -> Result<sys::gnutls_digest_algorithm_t, TlsError> {
        match self.key.algorithm()? {
            sys::GNUTLS_PK_EDDSA_ED25519 | sys::GNUTLS_PK_EDDSA_ED448 => {
                Ok(sys::GNUTLS_DIG_UNKNOWN)
            }
            _ => Ok(sys::GNUTLS_DIG_SHA256),
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").finish_non_exhaustive()
    }
}

impl Certificate {
    /// Wraps one DER certificate, checking that GnuTLS parses it.
    ///
    /// # Errors
    /// [`TlsError::Library`] when the bytes are not a DER certificate.
    pub fn from_der(der: Vec<u8>) -> Result<Self, TlsError> {
        X509Crt::from_der(&der)?;
        Ok(Self { der })
    }

    /// Parses PEM text with one or more `CERTIFICATE` blocks, in the order given.
    ///
    /// # Errors
    /// [`TlsError::Library`] when a block does not parse or there is none.
    pub fn from_pem(pem: &[u8]) -> Result<Vec<Self>, TlsError> {
        let ders = ffi::certificates_to_der(pem, true)?;
        Ok(ders.into_iter().map(|der| Self { der }).collect())
    }

    /// Returns the DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Returns the DER encoding, consuming the certificate.
    pub fn into_der(self) -> Vec<u8> {
        self.der
    }

    /// Returns the certificate as one PEM `CERTIFICATE` block.
    ///
    /// # Errors
    /// [`TlsError::Library`] when GnuTLS cannot encode it.
    pub fn to_pem(&self) -> Result<Vec<u8>, TlsError> {
        ffi_x509::pem_encode(c"CERTIFICATE", &self.der)
    }

    /// Returns the subjectKeyIdentifier extension, or `None` when the certificate has none.
    ///
    /// For a CA this is the key of its trust database entry, because the certificates it
    /// issues carry it as their authorityKeyIdentifier.
    ///
    /// # Errors
    /// [`TlsError::Library`] when GnuTLS cannot read the extension.
    pub fn subject_key_id(&self) -> Result<Option<Vec<u8>>, TlsError> {
        X509Crt::from_der(&self.der)?.subject_key_id()
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("der_len", &self.der.len())
            .finish_non_exhaustive()
    }
}

impl ExtendedKeyUsage {
    /// Returns the key purpose OID in dotted form.
    pub fn oid(&self) -> &str {
        match self {
            Self::ServerAuth => "1.3.6.1.5.5.7.3.1",
            Self::ClientAuth => "1.3.6.1.5.5.7.3.2",
            Self::Oid(oid) => oid,
        }
    }
}

impl CertificateBuilder {
    /// Starts an empty certificate: not a CA, without key usage or extended key usage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the certificate of the on-the-fly identity `local_id` for `service`, issued at
    /// `now` with serial number `serial` (8 big-endian bytes).
    ///
    /// The subject is CN `local_id` and OU `TLS Pool on-the-fly`, with an rfc822Name for a
    /// `user@domain` identity and a dNSName otherwise. It is valid from 120 s before `now` to
    /// 180 s after it and is no CA.
    /// Service `http` gets keyUsage digitalSignature, keyEncipherment and keyAgreement with
    /// extendedKeyUsage serverAuth and clientAuth, service `generic_anonpre` keyUsage
    /// keyEncipherment and keyAgreement, and other services neither extension, so the
    /// certificate serves both TLS roles. The caller sets the public key and builds it with
    /// the signer as [`Issuer::Ca`].
    pub fn on_the_fly(local_id: &str, service: &str, serial: u64, now: SystemTime) -> Self {
        let mut builder = Self::new();
        builder
            .common_name(local_id)
            .organizational_unit(ON_THE_FLY_UNIT)
            .serial(&serial.to_be_bytes())
            .validity(now - ON_THE_FLY_BACKDATE, now + ON_THE_FLY_LIFETIME);
        if local_id.contains('@') {
            builder.email(local_id);
        } else {
            builder.dns_name(local_id);
        }
        match service {
            "http" => {
                builder
                    .key_usage(
                        KeyUsage::DIGITAL_SIGNATURE
                            | KeyUsage::KEY_ENCIPHERMENT
                            | KeyUsage::KEY_AGREEMENT,
                    )
                    .extended_key_usage(ExtendedKeyUsage::ServerAuth)
                    .extended_key_usage(ExtendedKeyUsage::ClientAuth);
            }
            "generic_anonpre" => {
                builder.key_usage(KeyUsage::KEY_ENCIPHERMENT | KeyUsage::KEY_AGREEMENT);
            }
            _ => {}
        }
        builder
    }

    /// Adds a commonName (CN) to the subject DN.
    pub fn common_name(&mut self, name: &str) -> &mut Self {
        self.subject_attribute(COMMON_NAME_OID, name)
    }

    /// Adds an organizationName (O) to the subject DN.
    pub fn organization(&mut self, name: &str) -> &mut Self {
        self.subject_attribute(ORGANIZATION_NAME_OID, name)
    }

    /// Adds an organizationalUnitName (OU) to the subject DN.
    pub fn organizational_unit(&mut self, name: &str) -> &mut Self {
        self.subject_attribute(ORGANIZATIONAL_UNIT_NAME_OID, name)
    }

    /// Adds a dNSName to the subjectAltName extension.
    pub fn dns_name(&mut self, name: &str) -> &mut Self {
        self.alt_names
            .push((sys::GNUTLS_SAN_DNSNAME, name.to_owned()));
        self
    }

    /// Adds an rfc822Name (email address, such as `user@example.com`) to the subjectAltName
    /// extension.
    pub fn email(&mut self, address: &str) -> &mut Self {
        self.alt_names
            .push((sys::GNUTLS_SAN_RFC822NAME, address.to_owned()));
        self
    }

    /// Sets the serial number from its big-endian content octets: 1 to 20 bytes, positive
    /// (top bit clear). DER drops leading zero bytes. Without this call,
    /// [`build`](Self::build) draws 16 random bytes.
    pub fn serial(&mut self, serial: &[u8]) -> &mut Self {
        let reason = if serial.is_empty() {
            Some("is empty".to_owned())
        } else if serial.len() > MAX_SERIAL_LEN {
            Some(format!(
                "is {} bytes, more than {MAX_SERIAL_LEN}",
                serial.len()
            ))
        } else if serial[0] & 0x80 != 0 {
            Some("has the top bit set, which makes it negative".to_owned())
        } else {
            None
        };
        match reason {
            Some(reason) => self.record_error(invalid("serial", reason)),
            None => self.serial = Some(serial.to_vec()),
        }
        self
    }

    /// Sets the validity period: notBefore and notAfter, at one-second resolution.
    pub fn validity(&mut self, not_before: SystemTime, not_after: SystemTime) -> &mut Self {
        self.validity = Some((not_before, not_after));
        self
    }

    /// Makes the certificate a CA, with a maximum number of intermediate CAs below it
    /// (`None` for no limit).
    pub fn ca(&mut self, path_len: Option<u32>) -> &mut Self {
        self.ca = true;
        self.path_len = path_len;
        self
    }

    /// Sets the keyUsage extension (critical).
    pub fn key_usage(&mut self, usage: KeyUsage) -> &mut Self {
        self.key_usage = Some(usage);
        self
    }

    /// Adds a key purpose to the extendedKeyUsage extension (not critical).
    pub fn extended_key_usage(&mut self, usage: ExtendedKeyUsage) -> &mut Self {
        self.extended_key_usage.push(usage);
        self
    }

    /// Sets the subject public key from DER SubjectPublicKeyInfo, such as a token returns for
    /// a key pair it generated.
    pub fn public_key_der(&mut self, spki_der: &[u8]) -> &mut Self {
        self.public_key = Some(spki_der.to_vec());
        self
    }

    /// Sets the subject public key to the public half of `key`.
    pub fn public_key_from(&mut self, key: &SigningKey) -> &mut Self {
        match key.public_key_der() {
            Ok(der) => self.public_key = Some(der),
            Err(e) => self.record_error(e),
        }
        self
    }

    /// Fills in and signs the certificate.
    ///
    /// A self-signed certificate without a public key set takes that of its signing key.
    ///
    /// # Errors
    /// - The first error of a setter.
    /// - [`TlsError::InvalidCertificateField`] for an empty subject DN, a missing or reversed
    ///   validity period, a missing public key, or a self-signed certificate whose public key
    ///   is not that of its signing key.
    /// - [`TlsError::Library`] when a GnuTLS call fails: a public key that does not parse, an
    ///   issuer certificate whose keys GnuTLS cannot read, or a token that rejects the signing.
    pub fn build(&mut self, issuer: Issuer<'_>) -> Result<Certificate, TlsError> {
        if let Some(e) = self.pending_error.take() {
            return Err(e);
        }
        let public_key = self.subject_public_key(issuer)?;
        let (not_before, not_after) = self.validity_seconds()?;
        if self.subject.is_empty() {
            return Err(invalid("subject", "the subject DN has no attribute".into()));
        }

        let mut crt = X509Crt::new()?;
        crt.set_version(3)?;
        crt.set_serial(&self.serial_or_random()?)?;
        for (oid, value) in &self.subject {
            crt.add_subject_attribute(oid, value)?;
        }
        for (kind, value) in &self.alt_names {
            crt.add_subject_alt_name(*kind, value)?;
        }
        crt.set_validity(not_before, not_after)?;
        self.set_constraints(&mut crt)?;

        // Key identifiers: the subject's from its own key, the authority's from the issuer.
        crt.set_public_key(&public_key)?;
        let subject_key_id = public_key.sha1_key_id()?;
        crt.set_subject_key_id(&subject_key_id)?;
        let (issuer_crt, signer) = match issuer {
            Issuer::SelfSigned(key) => {
                crt.set_authority_key_id(&subject_key_id)?;
                (None, key)
            }
            Issuer::Ca { certificate, key } => {
                let issuer_crt = X509Crt::from_der(certificate.der())?;
                let authority_key_id = match issuer_crt.subject_key_id()? {
                    Some(id) => id,
                    None => issuer_crt.public_key()?.sha1_key_id()?,
                };
                crt.set_authority_key_id(&authority_key_id)?;
                (Some(issuer_crt), key)
            }
        };

        crt.sign(issuer_crt.as_ref(), &signer.key, signer.signature_digest()?)?;
        let der = crt.to_der()?;
        debug!(
            subject_key_id = %hex::encode(&subject_key_id),
            ca = self.ca,
            self_signed = issuer_crt.is_none(),
            "issued certificate"
        );
        Ok(Certificate { der })
    }

    fn subject_attribute(&mut self, oid: &'static CStr, value: &str) -> &mut Self {
        self.subject.push((oid, value.to_owned()));
        self
    }

    /// Parses the subject public key, checking that a self-signed certificate carries the
    /// public half of its signing key.
    fn subject_public_key(&self, issuer: Issuer<'_>) -> Result<PublicKey, TlsError> {
        match (issuer, &self.public_key) {
            (Issuer::SelfSigned(key), None) => PublicKey::from_private_key(&key.key),
            (Issuer::SelfSigned(key), Some(der)) => {
                if key.public_key_der()? != *der {
                    return Err(invalid(
                        "public key",
                        "a self-signed certificate must carry its signing key's public key".into(),
                    ));
                }
                PublicKey::from_spki_der(der)
            }
            (Issuer::Ca { .. }, Some(der)) => PublicKey::from_spki_der(der),
            (Issuer::Ca { .. }, None) => Err(invalid(
                "public key",
                "not set; call public_key_der or public_key_from".into(),
            )),
        }
    }

    /// Returns the validity period in seconds since the UNIX epoch.
    fn validity_seconds(&self) -> Result<(i64, i64), TlsError> {
        let Some((not_before, not_after)) = self.validity else {
            return Err(invalid("validity", "not set; call validity".into()));
        };
        let seconds = |time: SystemTime, field| {
            time.duration_since(UNIX_EPOCH)
                .ok()
                .and_then(|since| i64::try_from(since.as_secs()).ok())
                .ok_or_else(|| invalid(field, "lies before 1970".into()))
        };
        let start = seconds(not_before, "not before")?;
        let end = seconds(not_after, "not after")?;
        if end <= start {
            return Err(invalid(
                "validity",
                format!("not after ({end}) is not later than not before ({start})"),
            ));
        }
        Ok((start, end))
    }

    /// Returns the serial set by [`serial`](Self::serial), or 16 random bytes with the top bit
    /// clear (positive) and the next bit set (so DER keeps all 16 bytes).
    fn serial_or_random(&self) -> Result<Vec<u8>, TlsError> {
        if let Some(serial) = &self.serial {
            return Ok(serial.clone());
        }
        let mut serial = vec![0u8; SERIAL_LEN];
        ffi_x509::random_bytes(&mut serial)?;
        serial[0] = (serial[0] & 0x7f) | 0x40;
        Ok(serial)
    }

    /// Writes basicConstraints, keyUsage and extendedKeyUsage.
    fn set_constraints(&self, crt: &mut X509Crt) -> Result<(), TlsError> {
        let path_len = match self.path_len {
            None => -1,
            Some(len) => i32::try_from(len)
                .map_err(|_| invalid("path length", format!("{len} exceeds {}", i32::MAX)))?,
        };
        crt.set_basic_constraints(self.ca, path_len)?;
        if let Some(usage) = self.key_usage {
            crt.set_key_usage(usage.bits())?;
        }
        for usage in &self.extended_key_usage {
            crt.add_key_purpose(usage.oid())?;
        }
        Ok(())
    }

    fn record_error(&mut self, e: TlsError) {
        self.pending_error.get_or_insert(e);
    }
}

const fn oid(bytes: &'static [u8]) -> &'static CStr {
    match CStr::from_bytes_with_nul(bytes) {
        Ok(oid) => oid,
        Err(_) => panic!("a GnuTLS OID constant lacks its NUL"),
    }
}

fn invalid(field: &'static str, reason: String) -> TlsError {
    TlsError::InvalidCertificateField { field, reason }
}
