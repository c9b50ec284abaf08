//! OpenPGP identities of `dev-init --openpgp`: an OpenPGP key whose authentication subkey is
//! a key pair on the token, and an external OpenPGP peer whose key is in a file.
//!
//! The primary key only certifies. It is an Ed25519 key generated in memory that signs the
//! user ID and the subkey binding and is then dropped, so the key cannot be changed later.
//! A new `dev-init` makes a new one. The authentication subkey carries the token key (or the
//! peer's file key), which TLS sends as an RFC 7250 raw public key. Each identity is built
//! three times, for tests: as issued, with the key revocation that the builder issued
//! alongside it, and with newer self-signatures that let the key expire a minute after its
//! creation, an hour ago.

use std::time::{Duration, SystemTime};

use anyhow::{Context, bail, ensure};
use sequoia_openpgp::cert::{CertBuilder, CipherSuite};
use sequoia_openpgp::crypto::mpi;
use sequoia_openpgp::packet::key::{Key4, Key6, PublicParts, SubordinateRole};
use sequoia_openpgp::packet::signature::SignatureBuilder;
use sequoia_openpgp::packet::{Key, Packet};
use sequoia_openpgp::policy::StandardPolicy;
use sequoia_openpgp::serialize::SerializeInto;
use sequoia_openpgp::types::{Curve, KeyFlags, PublicKeyAlgorithm, SignatureType};
use sequoia_openpgp::{Cert, Profile};
use tlspool_validate::openpgp::AuthenticationKey;

use super::BACKDATE;

/// Lifetime of the expired copy of a key, counted from its creation `BACKDATE` ago.
const EXPIRED_LIFETIME: Duration = Duration::from_secs(60);

/// DER of the rsaEncryption algorithm OID (1.2.840.113549.1.1.1).
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// DER of the id-ecPublicKey algorithm OID (1.2.840.10045.2.1).
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// DER of the prime256v1 curve OID (1.2.840.10045.3.1.7).
const PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the id-Ed25519 algorithm OID (1.3.101.112).
const ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// The OpenPGP key version to issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::admin) enum OpenPgpVersion {
    /// Version 4 keys (RFC 4880).
    V4,
    /// Version 6 keys (RFC 9580).
    V6,
}

impl OpenPgpVersion {
    /// Returns the version number.
    pub(in crate::admin::dev_init) fn number(self) -> u8 {
        match self {
            Self::V4 => 4,
            Self::V6 => 6,
        }
    }
}

/// An issued OpenPGP key for one address.
pub(in crate::admin) struct OpenPgpKey {
    /// The binary transferable public key.
    pub(in crate::admin) transferable_public_key: Vec<u8>,
    /// The same key with its key revocation signature.
    pub(in crate::admin::dev_init) revoked: Vec<u8>,
    /// The same key with self-signatures that make it expired.
    pub(in crate::admin::dev_init) expired: Vec<u8>,
    /// The 64-bit key ID of the primary key, the trust database key.
    pub(in crate::admin::dev_init) key_id: Vec<u8>,
    /// The fingerprint of the primary key, in hexadecimal.
    pub(in crate::admin) fingerprint: String,
    /// The key version.
    pub(in crate::admin::dev_init) version: u8,
}

/// Issues an OpenPGP key with the user ID `address` whose authentication subkey is the public
/// key `spki` (DER SubjectPublicKeyInfo of an RSA, P-256 or Ed25519 key), and checks that
/// the daemon derives `spki` back from it.
///
/// # Errors
///
/// When the key type is not one of those, or sequoia cannot build or serialise the key.
pub(in crate::admin::dev_init) fn issue_openpgp_key(
    address: &str,
    spki: &[u8],
    version: OpenPgpVersion,
) -> anyhow::Result<OpenPgpKey> {
    let user_id = format!("TLS Pool development <{address}>");
    issue_openpgp_key_for(&user_id, address, spki, version)
}

/// Issues an OpenPGP key with the user ID `user_id` as [`issue_openpgp_key`] does. `address`
/// names the key in error messages.
///
/// # Errors
///
/// As [`issue_openpgp_key`].
pub(in crate::admin) fn issue_openpgp_key_for(
    user_id: &str,
    address: &str,
    spki: &[u8],
    version: OpenPgpVersion,
) -> anyhow::Result<OpenPgpKey> {
    let created = SystemTime::now() - BACKDATE;
    let profile = match version {
        OpenPgpVersion::V4 => Profile::RFC4880,
        OpenPgpVersion::V6 => Profile::RFC9580,
    };
    let (cert, revocation) = CertBuilder::new()
        .set_profile(profile)?
        .set_cipher_suite(CipherSuite::Cv25519)
        .set_creation_time(created)
        .set_primary_key_flags(KeyFlags::empty().set_certification())
        .add_userid(user_id)
        .generate()
        .with_context(|| format!("generating the OpenPGP primary key of {address}"))?;

    let subkey = subkey_from_spki(spki, version, created)
        .with_context(|| format!("converting the key of {address} to an OpenPGP subkey"))?;
    let mut signer = cert
        .primary_key()
        .key()
        .clone()
        .parts_into_secret()?
        .into_keypair()?;
    let binding = SignatureBuilder::new(SignatureType::SubkeyBinding)
        .set_key_flags(KeyFlags::empty().set_authentication())?;
    let binding = subkey
        .bind(&mut signer, &cert, binding)
        .with_context(|| format!("binding the authentication subkey of {address}"))?;
    let cert = cert
        .insert_packets(vec![Packet::from(subkey), binding.into()])?
        .0;
    check_round_trip(&cert, spki, address)?;

    let revoked = cert.clone().insert_packets(vec![revocation])?.0;
    let policy = StandardPolicy::new();
    let expiry = cert
        .with_policy(&policy, None)?
        .primary_key()
        .set_expiration_time(&mut signer, Some(created + EXPIRED_LIFETIME))
        .with_context(|| format!("signing the expiry of the OpenPGP key of {address}"))?;
    let expired = cert.clone().insert_packets(expiry)?.0;
    Ok(OpenPgpKey {
        transferable_public_key: cert.to_vec()?,
        revoked: revoked.to_vec()?,
        expired: expired.to_vec()?,
        key_id: cert.keyid().as_bytes().to_vec(),
        fingerprint: cert.fingerprint().to_hex(),
        version: version.number(),
    })
}

/// Fails unless the authentication key the daemon selects from `cert` derives `spki`.
fn check_round_trip(cert: &Cert, spki: &[u8], address: &str) -> anyhow::Result<()> {
    let bytes = cert.to_vec()?;
    let selected = AuthenticationKey::from_bytes(&bytes, &StandardPolicy::new(), SystemTime::now())
        .with_context(|| format!("selecting the authentication key of {address}"))?;
    ensure!(
        selected.subject_public_key_info == spki,
        "the OpenPGP key of {address} derives another SubjectPublicKeyInfo than its token key"
    );
    Ok(())
}

/// Builds the public subkey packet for the key in `spki`.
fn subkey_from_spki(
    spki: &[u8],
    version: OpenPgpVersion,
    created: SystemTime,
) -> anyhow::Result<Key<PublicParts, SubordinateRole>> {
    let SpkiParts {
        algorithm,
        curve,
        public_key,
    } = parse_spki(spki)?;
    if algorithm == ED25519 {
        return Ok(match version {
            OpenPgpVersion::V4 => Key4::import_public_ed25519(public_key, created)?.into(),
            OpenPgpVersion::V6 => Key6::import_public_ed25519(public_key, created)?.into(),
        });
    }
    if algorithm == RSA_ENCRYPTION {
        let (modulus, exponent) = parse_rsa_public_key(public_key)?;
        return Ok(match version {
            OpenPgpVersion::V4 => Key4::import_public_rsa(exponent, modulus, created)?.into(),
            OpenPgpVersion::V6 => Key6::import_public_rsa(exponent, modulus, created)?.into(),
        });
    }
    if algorithm == EC_PUBLIC_KEY && curve == Some(PRIME256V1) {
        let mpis = mpi::PublicKey::ECDSA {
            curve: Curve::NistP256,
            q: mpi::MPI::new(public_key),
        };
        return Ok(match version {
            OpenPgpVersion::V4 => Key4::new(created, PublicKeyAlgorithm::ECDSA, mpis)?.into(),
            OpenPgpVersion::V6 => Key6::new(created, PublicKeyAlgorithm::ECDSA, mpis)?.into(),
        });
    }
    bail!("dev-init makes OpenPGP identities of RSA, P-256 and Ed25519 keys only")
}

/// The parts of a DER SubjectPublicKeyInfo.
struct SpkiParts<'a> {
    /// The contents of the algorithm OID.
    algorithm: &'a [u8],
    /// The contents of an OID parameter: the curve of an EC key.
    curve: Option<&'a [u8]>,
    /// The public key bits.
    public_key: &'a [u8],
}

/// Splits a DER SubjectPublicKeyInfo into its parts.
fn parse_spki(spki: &[u8]) -> anyhow::Result<SpkiParts<'_>> {
    let (info, _) = tlv(spki, 0x30)?;
    let (algorithm, rest) = tlv(info, 0x30)?;
    let (bits, _) = tlv(rest, 0x03)?;
    let (oid, parameters) = tlv(algorithm, 0x06)?;
    let curve = tlv(parameters, 0x06).ok().map(|(curve, _)| curve);
    let Some((0, public_key)) = bits.split_first() else {
        bail!("invalid SubjectPublicKeyInfo: the key bit string has unused bits");
    };
    Ok(SpkiParts {
        algorithm: oid,
        curve,
        public_key,
    })
}

/// Returns the modulus and the public exponent of a DER RSAPublicKey, without leading zeros.
fn parse_rsa_public_key(der: &[u8]) -> anyhow::Result<(&[u8], &[u8])> {
    let (key, _) = tlv(der, 0x30)?;
    let (modulus, rest) = tlv(key, 0x02)?;
    let (exponent, _) = tlv(rest, 0x02)?;
    Ok((trim_zeros(modulus), trim_zeros(exponent)))
}

fn trim_zeros(number: &[u8]) -> &[u8] {
    let start = number.iter().position(|&b| b != 0).unwrap_or(number.len());
    &number[start..]
}

/// Reads one DER element with tag `tag` from the front of `data` and returns its contents
/// and the rest.
fn tlv(data: &[u8], tag: u8) -> anyhow::Result<(&[u8], &[u8])> {
    let (&found, rest) = data.split_first().context("a DER element is missing")?;
    ensure!(
        found == tag,
        "expected DER tag {tag:#04x}, found {found:#04x}"
    );
    let (&first, mut rest) = rest.split_first().context("a DER length is missing")?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let octets = usize::from(first & 0x7f);
        ensure!(
            (1..=4).contains(&octets) && rest.len() >= octets,
            "invalid DER length"
        );
        let (length, after) = rest.split_at(octets);
        rest = after;
        length
            .iter()
            .fold(0usize, |length, &byte| length << 8 | usize::from(byte))
    };
    ensure!(rest.len() >= length, "a DER element is truncated");
    Ok(rest.split_at(length))
}

#[cfg(test)]
mod tests {
    use super::*;

    use tlspool_core::tls::{KeyType, SigningKey};

    #[test]
    fn issued_keys_derive_their_spki() {
        for key_type in [KeyType::Rsa2048, KeyType::EcdsaP256, KeyType::Ed25519] {
            for version in [OpenPgpVersion::V4, OpenPgpVersion::V6] {
                let key = SigningKey::generate(key_type).unwrap();
                let spki = key.public_key_der().unwrap();
                let issued = issue_openpgp_key("alice@dev.example", &spki, version)
                    .unwrap_or_else(|e| panic!("{key_type:?} v{}: {e:#}", version.number()));
                let selected = AuthenticationKey::from_bytes(
                    &issued.transferable_public_key,
                    &StandardPolicy::new(),
                    SystemTime::now(),
                )
                .unwrap();
                assert_eq!(selected.subject_public_key_info, spki);
                assert_eq!(selected.version, version.number());
                assert!(!selected.is_primary);
                assert_eq!(issued.key_id.len(), 8);
            }
        }
    }

    #[test]
    fn revoked_copy_is_rejected() {
        let key = SigningKey::generate(KeyType::EcdsaP256).unwrap();
        let spki = key.public_key_der().unwrap();
        let issued = issue_openpgp_key("bob@dev.example", &spki, OpenPgpVersion::V4).unwrap();
        let error = AuthenticationKey::from_bytes(
            &issued.revoked,
            &StandardPolicy::new(),
            SystemTime::now(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("revoked"), "{error}");
    }

    #[test]
    fn expired_copy_is_rejected() {
        let key = SigningKey::generate(KeyType::Ed25519).unwrap();
        let spki = key.public_key_der().unwrap();
        let issued = issue_openpgp_key("dave@dev.example", &spki, OpenPgpVersion::V4).unwrap();
        let error = AuthenticationKey::from_bytes(
            &issued.expired,
            &StandardPolicy::new(),
            SystemTime::now(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("expired"), "{error}");
    }

    #[test]
    fn unsupported_key_type_is_named() {
        let key = SigningKey::generate(KeyType::EcdsaP384).unwrap();
        let spki = key.public_key_der().unwrap();
        let error = issue_openpgp_key("carol@dev.example", &spki, OpenPgpVersion::V4)
            .err()
            .unwrap();
        assert!(
            format!("{error:#}").contains("RSA, P-256 and Ed25519"),
            "{error:#}"
        );
    }
}
