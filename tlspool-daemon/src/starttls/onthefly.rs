//! On-the-fly certificates: short-lived X.509 certificates for a requested local identity.
//! The PKCS #11 key of `tls_onthefly_signkey` signs them under the certificate of
//! `tls_onthefly_signcert`, so a peer that trusts that signer as a CA accepts an identity
//! that has no entry in the localid database.
//!
//! All certificates share one RSA-2048 key that the daemon generates at start-up and keeps in
//! memory; each certificate is valid from two minutes before to three minutes after its
//! issuance (see [`CertificateBuilder::on_the_fly`] for the full profile). The chain sent holds
//! only the new certificate.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tracing::{debug, info};
use zeroize::Zeroizing;

use tlspool_core::Config;
use tlspool_core::logging::TARGET_TLS;
use tlspool_core::tls::{
    self, Certificate, CertificateBuilder, Encoding, Issuer, KeyType, PrivateKeySource, SigningKey,
};

use super::error::StartTlsError;

/// Maximum size of the `tls_onthefly_signcert` file, as the TLS Pool version 2 protocol
/// specifies for its DER certificate.
const MAX_SIGNER_CERTIFICATE_LEN: u64 = 5000;

/// The signer of on-the-fly certificates and the key they share.
pub struct OnTheFlySigner {
    certificate: Certificate,
    /// The signer's token key. GnuTLS keys are not `Sync`, so signings take turns.
    key: Mutex<SigningKey>,
    /// The shared key of the issued certificates, as PKCS #8 PEM.
    shared_key_pem: Zeroizing<Vec<u8>>,
    /// The shared key's SubjectPublicKeyInfo.
    shared_public_key: Vec<u8>,
    next_serial: AtomicU64,
}

impl OnTheFlySigner {
    /// Loads the signer that the configuration names, or returns `None` when
    /// `tls_onthefly_signcert` and `tls_onthefly_signkey` are absent (the configuration
    /// rejects one without the other). The PKCS #11 module must be set up first, and the
    /// signer key's token logged in to (a `pkcs11_token` line names it, or a localid
    /// database entry has a key on it).
    ///
    /// # Errors
    ///
    /// A certificate file that cannot be read, is larger than 5000 bytes or does not parse,
    /// a key that GnuTLS cannot open, or a failure to generate the shared key.
    pub(crate) fn from_config(config: &Config) -> anyhow::Result<Option<Self>> {
        let (Some(path), Some(uri)) = (
            config.tls_onthefly_signcert(),
            config.tls_onthefly_signkey(),
        ) else {
            return Ok(None);
        };
        let certificate = read_certificate(path)?;
        // NOTE: a key that does not belong to the certificate is not detected here; peers
        // then reject every on-the-fly certificate as badly signed.
        let key = SigningKey::from_pkcs11_uri(uri)
            .with_context(|| format!("opening the on-the-fly signer key {uri}"))?;
        let shared = SigningKey::generate(KeyType::Rsa2048)
            .context("generating the shared key of on-the-fly certificates")?;
        let shared_public_key = shared.public_key_der()?;
        let shared_key_pem = shared.to_pkcs8_pem()?;
        // Starting from the time keeps serials unique across restarts, whose shared keys differ.
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |since| since.as_secs() << 16);
        info!(target: TARGET_TLS, certificate = %path.display(), key = uri,
            "on-the-fly signer loaded");
        Ok(Some(Self {
            certificate,
            key: Mutex::new(key),
            shared_key_pem,
            shared_public_key,
            next_serial: AtomicU64::new(start),
        }))
    }

    /// Issues a certificate for `local_id` and `service` and loads it with the shared key.
    /// Signing may wait on the token, so call this on a blocking thread.
    ///
    /// # Errors
    ///
    /// [`StartTlsError::OnTheFlyFailed`] when the token refuses to sign or GnuTLS cannot
    /// build the certificate or the credentials.
    pub(crate) fn issue(
        &self,
        local_id: &str,
        service: &str,
    ) -> Result<tls::Credentials, StartTlsError> {
        let failed = |source| StartTlsError::OnTheFlyFailed {
            local_id: local_id.to_owned(),
            source,
        };
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let certificate = {
            let key = self.key.lock().unwrap_or_else(PoisonError::into_inner);
            CertificateBuilder::on_the_fly(local_id, service, serial, SystemTime::now())
                .public_key_der(&self.shared_public_key)
                .build(Issuer::Ca {
                    certificate: &self.certificate,
                    key: &key,
                })
                .map_err(failed)?
        };
        let credentials = tls::Credentials::builder()
            .certificate_chain_der(vec![certificate.into_der()])
            .private_key(PrivateKeySource::Memory {
                data: self.shared_key_pem.clone(),
                encoding: Encoding::Pem,
            })
            .build()
            .map_err(failed)?;
        debug!(target: TARGET_TLS, local_id, service, serial, "issued on-the-fly certificate");
        Ok(credentials)
    }
}

impl std::fmt::Debug for OnTheFlySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnTheFlySigner")
            .field("certificate", &self.certificate)
            .finish_non_exhaustive()
    }
}

/// Reads the signer certificate: DER as the configuration key specifies, or PEM.
fn read_certificate(path: &Path) -> anyhow::Result<Certificate> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading tls_onthefly_signcert {}", path.display()))?
        .len();
    anyhow::ensure!(
        size <= MAX_SIGNER_CERTIFICATE_LEN,
        "tls_onthefly_signcert {} is {size} bytes, more than the maximum of \
         {MAX_SIGNER_CERTIFICATE_LEN}",
        path.display()
    );
    let data = std::fs::read(path)
        .with_context(|| format!("reading tls_onthefly_signcert {}", path.display()))?;
    if data.starts_with(b"-----BEGIN") {
        let mut certificates = Certificate::from_pem(&data)
            .with_context(|| format!("parsing tls_onthefly_signcert {}", path.display()))?;
        anyhow::ensure!(
            !certificates.is_empty(),
            "tls_onthefly_signcert {} has no certificate",
            path.display()
        );
        return Ok(certificates.swap_remove(0));
    }
    Certificate::from_der(data)
        .with_context(|| format!("parsing tls_onthefly_signcert {} as DER", path.display()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn self_signed() -> Certificate {
        let key = SigningKey::generate(KeyType::EcdsaP256).expect("key");
        let now = SystemTime::now();
        CertificateBuilder::new()
            .common_name("On-the-fly test CA")
            .ca(None)
            .validity(now, now + Duration::from_secs(3600))
            .build(Issuer::SelfSigned(&key))
            .expect("certificate")
    }

    #[test]
    fn signer_certificate_reads_der_and_pem() {
        let dir = tempfile::tempdir().expect("directory");
        let certificate = self_signed();
        let der = dir.path().join("signer.der");
        std::fs::write(&der, certificate.der()).expect("write DER");
        assert_eq!(read_certificate(&der).expect("DER"), certificate);
        let pem = dir.path().join("signer.pem");
        std::fs::write(&pem, certificate.to_pem().expect("PEM")).expect("write PEM");
        assert_eq!(read_certificate(&pem).expect("PEM"), certificate);
    }

    #[test]
    fn oversized_signer_certificate_is_rejected() {
        let dir = tempfile::tempdir().expect("directory");
        let path = dir.path().join("big.der");
        std::fs::write(&path, vec![0x30; 5001]).expect("write");
        let message = format!("{:#}", read_certificate(&path).expect_err("too big"));
        assert!(message.contains("5001 bytes"), "{message}");
        assert!(message.contains("5000"), "{message}");
    }

    #[test]
    fn garbage_signer_certificate_is_rejected() {
        let dir = tempfile::tempdir().expect("directory");
        let path = dir.path().join("garbage.der");
        std::fs::write(&path, b"not a certificate").expect("write");
        let message = format!("{:#}", read_certificate(&path).expect_err("not DER"));
        assert!(message.contains("as DER"), "{message}");
        let missing = dir.path().join("missing.der");
        assert!(read_certificate(&missing).is_err());
    }
}
