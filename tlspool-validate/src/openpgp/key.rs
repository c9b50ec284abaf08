//! Reading a transferable public key and selecting the key that authenticates its holder in
//! TLS, together with the SubjectPublicKeyInfo that key is sent as.

use std::time::SystemTime;

use sequoia_openpgp::Cert;
use sequoia_openpgp::Fingerprint;
use sequoia_openpgp::cert::ValidCert;
use sequoia_openpgp::cert::amalgamation::key::ValidKeyAmalgamation;
use sequoia_openpgp::cert::amalgamation::{ValidAmalgamation, ValidateAmalgamation};
use sequoia_openpgp::packet::Signature;
use sequoia_openpgp::packet::key::{PublicParts, SubordinateRole};
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::policy::Policy;
use sequoia_openpgp::types::{PublicKeyAlgorithm, RevocationStatus};
use tracing::debug;

use super::OpenPgpError;
use super::spki::subject_public_key_info;

/// A valid subkey of a valid certificate.
type ValidSubkey<'a> = ValidKeyAmalgamation<'a, PublicParts, SubordinateRole, ()>;

/// The key of an OpenPGP certificate that authenticates its holder in TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticationKey {
    /// Fingerprint of the certificate's primary key.
    pub certificate: Fingerprint,
    /// Fingerprint of the selected key: a subkey, or the primary key again.
    pub key: Fingerprint,
    /// Whether the selected key is the primary key.
    pub is_primary: bool,
    /// Packet version of the selected key: 4 (RFC 4880) or 6 (RFC 9580).
    pub version: u8,
    /// Public-key algorithm of the selected key.
    pub algorithm: PublicKeyAlgorithm,
    /// Creation time of the selected key.
    pub creation_time: SystemTime,
    /// Expiration time of the selected key, if it has one.
    pub expiration_time: Option<SystemTime>,
    /// DER SubjectPublicKeyInfo of the selected key, as sent in a TLS raw public key.
    pub subject_public_key_info: Vec<u8>,
}

impl AuthenticationKey {
    /// Selects the key of `cert` that authenticates TLS at `time` under `policy`.
    ///
    /// The certificate must be accepted by the policy, unrevoked and alive at `time`. Among its
    /// subkeys with a valid binding that carries the authentication flag, the newest one that
    /// is unrevoked, alive and of a supported algorithm is chosen. Without such a subkey, the
    /// primary key is chosen if its own self-signature carries the authentication flag.
    ///
    /// # Errors
    ///
    /// [`OpenPgpError::NotYetValid`], [`OpenPgpError::PolicyRejected`],
    /// [`OpenPgpError::Revoked`] or [`OpenPgpError::Expired`] for the certificate. If no key
    /// can be chosen, the reason the newest authentication subkey failed (revoked, expired,
    /// rejected by the policy, unsupported algorithm), else that of the primary key, else
    /// [`OpenPgpError::NoAuthenticationKey`].
    pub fn select(
        cert: &Cert,
        policy: &dyn Policy,
        time: SystemTime,
    ) -> Result<Self, OpenPgpError> {
        let valid = valid_certificate(cert, policy, time)?;

        // Subkeys newest first; the first usable one wins.
        let mut subkeys: Vec<ValidSubkey<'_>> =
            valid.keys().subkeys().for_authentication().collect();
        subkeys.sort_by_key(|ka| std::cmp::Reverse(ka.key().creation_time()));
        let mut first_error = None;
        for subkey in &subkeys {
            match usable_subkey(subkey) {
                Ok(selected) => return Ok(selected),
                Err(error) => {
                    debug!(key = %subkey.key().fingerprint(), %error, "authentication subkey skipped");
                    first_error.get_or_insert(error);
                }
            }
        }
        let first_error = first_error.or_else(|| policy_rejected_subkey(cert, policy, time));

        let primary = valid.primary_key();
        if !primary.for_authentication() {
            return Err(
                first_error.unwrap_or_else(|| OpenPgpError::NoAuthenticationKey {
                    fingerprint: cert.fingerprint(),
                }),
            );
        }
        match subject_public_key_info(primary.key()) {
            Ok(spki) => Ok(Self {
                certificate: cert.fingerprint(),
                key: cert.fingerprint(),
                is_primary: true,
                version: primary.key().version(),
                algorithm: primary.key().pk_algo(),
                creation_time: primary.key().creation_time(),
                expiration_time: primary.key_expiration_time(),
                subject_public_key_info: spki,
            }),
            Err(error) => Err(first_error.unwrap_or(error)),
        }
    }

    /// Parses a transferable public key with [`parse_transferable_public_key`] and selects its
    /// authentication key with [`select`](Self::select).
    ///
    /// # Errors
    ///
    /// Those of both steps.
    pub fn from_bytes(
        bytes: &[u8],
        policy: &dyn Policy,
        time: SystemTime,
    ) -> Result<Self, OpenPgpError> {
        Self::select(&parse_transferable_public_key(bytes)?, policy, time)
    }
}

/// Parses one transferable public key (RFC 9580), binary or ASCII-armoured.
///
/// Both version 4 and version 6 keys are read. Secret key material, if the bytes are a
/// transferable secret key, is dropped.
///
/// # Errors
///
/// [`OpenPgpError::Parse`] for input that is no OpenPGP data, a keyring of several keys, or a
/// packet sequence that is no certificate.
pub fn parse_transferable_public_key(bytes: &[u8]) -> Result<Cert, OpenPgpError> {
    let cert = Cert::from_bytes(bytes).map_err(|error| OpenPgpError::Parse {
        reason: format!("{error:#}"),
    })?;
    Ok(cert.strip_secret_key_material())
}

/// Checks that `cert` as a whole is accepted, unrevoked and alive at `time`.
pub(super) fn valid_certificate<'a>(
    cert: &'a Cert,
    policy: &'a dyn Policy,
    time: SystemTime,
) -> Result<ValidCert<'a>, OpenPgpError> {
    let fingerprint = cert.fingerprint();
    let created = cert.primary_key().key().creation_time();
    if created > time {
        return Err(OpenPgpError::NotYetValid {
            fingerprint,
            created,
        });
    }

    let valid = cert
        .with_policy(policy, time)
        .map_err(|error| OpenPgpError::PolicyRejected {
            fingerprint: fingerprint.clone(),
            reason: format!("{error:#}"),
        })?;

    // NOTE: a revocation by a designated revoker (`RevocationStatus::CouldBe`) is not checked,
    // because verifying it needs the revoker's certificate.
    if let RevocationStatus::Revoked(signatures) = valid.revocation_status() {
        return Err(OpenPgpError::Revoked {
            fingerprint,
            reason: revocation_reason(&signatures),
        });
    }
    if let Err(error) = valid.alive() {
        return Err(match valid.primary_key().key_expiration_time() {
            Some(at) => OpenPgpError::Expired { fingerprint, at },
            None => OpenPgpError::PolicyRejected {
                fingerprint,
                reason: format!("{error:#}"),
            },
        });
    }
    Ok(valid)
}

/// Checks one authentication subkey and derives its SubjectPublicKeyInfo.
fn usable_subkey(subkey: &ValidSubkey<'_>) -> Result<AuthenticationKey, OpenPgpError> {
    let key = subkey.key();
    key_status(
        subkey.revocation_status(),
        subkey.alive(),
        subkey.key_expiration_time(),
        key,
    )?;
    Ok(AuthenticationKey {
        certificate: subkey.cert().fingerprint(),
        key: key.fingerprint(),
        is_primary: false,
        version: key.version(),
        algorithm: key.pk_algo(),
        creation_time: key.creation_time(),
        expiration_time: subkey.key_expiration_time(),
        subject_public_key_info: subject_public_key_info(key)?,
    })
}

/// Turns a key's revocation status and liveness into the error that rules it out.
pub(super) fn key_status<P, R>(
    revocation: RevocationStatus<'_>,
    alive: sequoia_openpgp::Result<()>,
    expiration_time: Option<SystemTime>,
    key: &sequoia_openpgp::packet::Key<P, R>,
) -> Result<(), OpenPgpError>
where
    P: sequoia_openpgp::packet::key::KeyParts,
    R: sequoia_openpgp::packet::key::KeyRole,
{
    if let RevocationStatus::Revoked(signatures) = revocation {
        return Err(OpenPgpError::Revoked {
            fingerprint: key.fingerprint(),
            reason: revocation_reason(&signatures),
        });
    }
    if let Err(error) = alive {
        return Err(match expiration_time {
            Some(at) => OpenPgpError::Expired {
                fingerprint: key.fingerprint(),
                at,
            },
            None => OpenPgpError::PolicyRejected {
                fingerprint: key.fingerprint(),
                reason: format!("{error:#}"),
            },
        });
    }
    Ok(())
}

/// Finds a subkey whose self-signatures claim authentication but that the policy rejects at
/// `time`, so that the error names it rather than only "no authentication key".
fn policy_rejected_subkey(
    cert: &Cert,
    policy: &dyn Policy,
    time: SystemTime,
) -> Option<OpenPgpError> {
    cert.keys().subkeys().find_map(|subkey| {
        let claims_authentication = subkey.self_signatures().any(|signature| {
            signature
                .key_flags()
                .is_some_and(|flags| flags.for_authentication())
        });
        if !claims_authentication {
            return None;
        }
        let error = subkey.with_policy(policy, time).err()?;
        Some(OpenPgpError::PolicyRejected {
            fingerprint: subkey.key().fingerprint(),
            reason: format!("{error:#}"),
        })
    })
}

/// Formats the reason and message of the first revocation signature.
pub(super) fn revocation_reason(signatures: &[&Signature]) -> String {
    let Some((code, message)) = signatures
        .first()
        .and_then(|signature| signature.reason_for_revocation())
    else {
        return "no reason given".to_owned();
    };
    let message = String::from_utf8_lossy(message);
    if message.is_empty() {
        code.to_string()
    } else {
        format!("{code}: {message}")
    }
}
