//! RFC 7250 raw public keys: installing a SubjectPublicKeyInfo with its private key in
//! certificate credentials, and the certificate type negotiation a session offers.
//!
//! A raw public key is what an OpenPGP identity sends, because TLS 1.3 has no OpenPGP
//! certificate type and GnuTLS 3.6 dropped the RFC 6091 one. GnuTLS negotiates raw keys only
//! in a session created with `GNUTLS_ENABLE_RAWPK` whose priority string lists them with
//! `CTYPE-CLI-RAWPK` and `CTYPE-SRV-RAWPK`. One credentials object may then hold an X.509
//! chain and a raw key side by side, and GnuTLS presents the one of the negotiated type.

use std::ffi::c_uint;
use std::ptr;

use tlspool_gnutls_sys as sys;

use super::error::TlsError;
use super::ffi::{self, CertificateCredentials, PrivateKey};

/// Certificate types a session offers and accepts, in order of preference.
///
/// The client's order decides when both sides support both types: a GnuTLS 3.7 server
/// selects, for its own and for the client's certificate, the first type in the client's
/// list that it supports and has credentials for. A server's order only limits what it
/// accepts. A peer that offers only X.509 (sends no certificate type extension) gets X.509
/// in every mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CertificateTypes {
    /// X.509 only: no certificate type extension is sent or accepted.
    #[default]
    X509Only,
    /// Raw public keys are preferred, X.509 is accepted.
    RawPublicKeyFirst,
    /// X.509 is preferred, raw public keys are accepted.
    X509First,
}

impl CertificateTypes {
    /// Returns the priority string elements that set the certificate type order, to append
    /// to a priority string; empty for [`Self::X509Only`].
    pub fn priority_suffix(self) -> &'static str {
        match self {
            Self::X509Only => "",
            Self::RawPublicKeyFirst => {
                ":-CTYPE-ALL:+CTYPE-CLI-RAWPK:+CTYPE-SRV-RAWPK:+CTYPE-CLI-X509:+CTYPE-SRV-X509"
            }
            Self::X509First => {
                ":-CTYPE-ALL:+CTYPE-CLI-X509:+CTYPE-SRV-X509:+CTYPE-CLI-RAWPK:+CTYPE-SRV-RAWPK"
            }
        }
    }

    /// Returns the `gnutls_init` flags the mode needs.
    pub(super) fn init_flags(self) -> c_uint {
        match self {
            Self::X509Only => 0,
            Self::RawPublicKeyFirst | Self::X509First => sys::GNUTLS_ENABLE_RAWPK,
        }
    }
}

/// Installs the raw public key `spki` (DER SubjectPublicKeyInfo) with its private key in
/// `credentials`, next to any X.509 chain they hold.
///
/// # Errors
/// [`TlsError::TooLarge`] for a key over 4 GiB, or [`TlsError::Library`] when GnuTLS rejects
/// the SubjectPublicKeyInfo or does not accept the key pair.
pub(super) fn set_raw_public_key(
    credentials: &mut CertificateCredentials,
    spki: &[u8],
    key: PrivateKey,
) -> Result<(), TlsError> {
    let input = ffi::datum("raw public key", spki)?;
    // SAFETY: an all-zero pcert is the state `gnutls_pcert_import_rawpk_raw` expects.
    let mut pcert: sys::gnutls_pcert_st = unsafe { std::mem::zeroed() };
    // SAFETY: `input` borrows `spki` for the call, which copies it into `pcert` on success.
    // Key usage 0 places no restriction on the key.
    let ret = unsafe {
        sys::gnutls_pcert_import_rawpk_raw(&mut pcert, &input, sys::GNUTLS_X509_FMT_DER, 0, 0)
    };
    ffi::check("gnutls_pcert_import_rawpk_raw", ret)?;

    // SAFETY: `credentials.raw` and `key.raw` are valid. GnuTLS copies the pcert struct and
    // takes ownership of its contents and of the key only when it returns success.
    let ret = unsafe {
        sys::gnutls_certificate_set_key(credentials.raw, ptr::null_mut(), 0, &mut pcert, 1, key.raw)
    };
    if ret < 0 {
        // SAFETY: the import above succeeded and GnuTLS did not take the contents.
        unsafe { sys::gnutls_pcert_deinit(&mut pcert) };
        return Err(TlsError::library("gnutls_certificate_set_key", ret));
    }
    std::mem::forget(key);
    Ok(())
}
