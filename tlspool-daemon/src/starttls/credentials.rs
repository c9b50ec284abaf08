//! Local credentials of a handshake: the localid and disclose lookups of the TLS Pool version
//! 2 protocol, and the GnuTLS credentials built from a stored X.509 value and its token key.
//!
//! Every lookup opens a fresh read transaction, so changes made with `tlspool-admin` apply to
//! the next handshake without a restart. In both roles the first listed identity, and within
//! it the first listed value, wins.

use tlspool_core::db::{
    self, CredentialType, Database, DbEnv, DbRead, Donai, LocalIdEntry, LocalIdFlags,
};
use tlspool_core::tls::{self, PrivateKeySource};

use super::error::StartTlsError;

/// The credential a handshake presents, with the local identity it belongs to.
#[derive(Debug, Clone)]
pub(crate) struct LocalCredential {
    /// The local identity (key of the localid database).
    pub(crate) local_id: String,
    /// The certificate chain and its token key, loaded into GnuTLS.
    pub(crate) credentials: tls::Credentials,
}

/// Parses `text`, the value of request field `field`, as a DoNAI.
pub(crate) fn parse_donai(field: &'static str, text: &str) -> Result<Donai, StartTlsError> {
    Donai::parse(text).map_err(|error| StartTlsError::InvalidIdentity {
        field,
        value: text.to_owned(),
        reason: error.to_string(),
    })
}

/// Looks up the server credential of `local_id`.
///
/// # Errors
///
/// [`StartTlsError::NoLocalIdentity`] when the identity has no usable X.509 server value, and
/// the errors of reading the database and loading the credential.
pub(crate) fn server_credential(
    databases: &DbEnv,
    field: &'static str,
    local_id: &str,
) -> Result<LocalCredential, StartTlsError> {
    let donai = parse_donai(field, local_id)?;
    let found = databases.read()?.server_credentials(&donai)?;
    let credential =
        found
            .get(CredentialType::X509)
            .ok_or_else(|| StartTlsError::NoLocalIdentity {
                local_id: local_id.to_owned(),
            })?;
    load(&credential.local_id.to_string(), &credential.entry)
}

/// Returns the local identities disclosed to `remote_id`, in order of preference.
///
/// # Errors
///
/// [`StartTlsError::RemoteIdNeeded`] for an empty `remote_id`, and
/// [`StartTlsError::NothingDisclosed`] when no disclose selector matches it.
pub(crate) fn disclosed_identities(
    databases: &DbEnv,
    remote_id: &str,
) -> Result<Vec<Donai>, StartTlsError> {
    if remote_id.is_empty() {
        return Err(StartTlsError::RemoteIdNeeded);
    }
    let remote = parse_donai("remoteid", remote_id)?;
    let disclosure = databases.read()?.find_disclosure(&remote)?;
    disclosure
        .map(|found| found.local_ids)
        .ok_or_else(|| StartTlsError::NothingDisclosed {
            remote_id: remote_id.to_owned(),
        })
}

/// Looks up the client credential disclosed to `remote_id`: the first usable X.509 client
/// value among the disclosed identities. Returns `None` when a selector matches but none of
/// its identities has one, so the client offers no certificate.
///
/// # Errors
///
/// As [`disclosed_identities`], and the errors of reading the database and loading the
/// credential.
pub(crate) fn disclosed_client_credential(
    databases: &DbEnv,
    remote_id: &str,
) -> Result<Option<LocalCredential>, StartTlsError> {
    if remote_id.is_empty() {
        return Err(StartTlsError::RemoteIdNeeded);
    }
    let remote = parse_donai("remoteid", remote_id)?;
    let Some((_, found)) = databases.read()?.client_credentials(&remote)? else {
        return Err(StartTlsError::NothingDisclosed {
            remote_id: remote_id.to_owned(),
        });
    };
    found
        .get(CredentialType::X509)
        .map(|credential| load(&credential.local_id.to_string(), &credential.entry))
        .transpose()
}

/// Looks up the client credential of `local_id`, the identity the application chose.
///
/// # Errors
///
/// [`StartTlsError::NoLocalIdentity`] when the identity has no usable X.509 client value, and
/// the errors of reading the database and loading the credential.
pub(crate) fn client_credential(
    databases: &DbEnv,
    local_id: &str,
) -> Result<LocalCredential, StartTlsError> {
    let donai = parse_donai("localid", local_id)?;
    let key = donai.to_string();
    let values = databases
        .read()?
        .values(Database::LocalId, key.as_bytes())?;
    let entry = values
        .iter()
        .filter_map(|value| LocalIdEntry::decode(value).ok())
        .find(|entry| {
            entry.credential_type == CredentialType::X509 && entry.is_usable_for(db::Role::Client)
        })
        .ok_or_else(|| StartTlsError::NoLocalIdentity {
            local_id: local_id.to_owned(),
        })?;
    load(&key, &entry)
}

/// Loads `entry` of `local_id` into GnuTLS: the certificate chain from the database and the
/// private key from its token (which may call the PIN callback).
fn load(local_id: &str, entry: &LocalIdEntry) -> Result<LocalCredential, StartTlsError> {
    let invalid = |reason: String| StartTlsError::InvalidCredential {
        local_id: local_id.to_owned(),
        reason,
    };
    let Some(uri) = &entry.pkcs11_uri else {
        return Err(invalid("the value has no PKCS #11 URI".to_owned()));
    };
    let chain = if entry.flags.contains(LocalIdFlags::CHAINED) {
        split_chain(&entry.credential).map_err(invalid)?
    } else {
        vec![entry.credential.clone()]
    };
    let credentials = tls::Credentials::builder()
        .certificate_chain_der(chain)
        .private_key(PrivateKeySource::Pkcs11Uri(uri.clone()))
        .build()
        .map_err(|source| StartTlsError::CredentialSetup {
            local_id: local_id.to_owned(),
            source,
        })?;
    Ok(LocalCredential {
        local_id: local_id.to_owned(),
        credentials,
    })
}

/// Splits concatenated DER certificates (`LID_CHAINED` data) by their outer lengths.
fn split_chain(mut data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut chain = Vec::new();
    while !data.is_empty() {
        let length = der_length(data).ok_or_else(|| {
            format!(
                "certificate {} of the chain has no valid DER header",
                chain.len()
            )
        })?;
        if length > data.len() {
            return Err(format!(
                "certificate {} of the chain needs {length} bytes, {} remain",
                chain.len(),
                data.len()
            ));
        }
        let (certificate, rest) = data.split_at(length);
        chain.push(certificate.to_vec());
        data = rest;
    }
    if chain.is_empty() {
        return Err("the chain is empty".to_owned());
    }
    Ok(chain)
}

/// Returns the total length (header and contents) of the DER SEQUENCE at the start of `data`.
fn der_length(data: &[u8]) -> Option<usize> {
    const SEQUENCE: u8 = 0x30;
    if *data.first()? != SEQUENCE {
        return None;
    }
    let first = *data.get(1)?;
    if first < 0x80 {
        return Some(2 + usize::from(first));
    }
    let octets = usize::from(first & 0x7f);
    if octets == 0 || octets > 4 {
        return None;
    }
    let length = data
        .get(2..2 + octets)?
        .iter()
        .fold(0usize, |length, &byte| length << 8 | usize::from(byte));
    Some(2 + octets + length)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequence(contents: usize) -> Vec<u8> {
        let mut der = vec![0x30];
        match contents {
            0..=0x7f => der.push(contents as u8),
            0x80..=0xff => der.extend_from_slice(&[0x81, contents as u8]),
            _ => der.extend_from_slice(&[0x82, (contents >> 8) as u8, contents as u8]),
        }
        der.resize(der.len() + contents, 0xab);
        der
    }

    #[test]
    fn chain_splits_by_outer_lengths() {
        let parts = [sequence(3), sequence(200), sequence(1500)];
        let joined: Vec<u8> = parts.concat();
        assert_eq!(split_chain(&joined).unwrap(), parts.to_vec());
    }

    #[test]
    fn chain_rejects_truncation_and_garbage() {
        let mut joined = [sequence(10), sequence(300)].concat();
        joined.pop();
        assert!(split_chain(&joined).unwrap_err().contains("certificate 1"));
        assert!(split_chain(&[0x04, 0x01, 0x00]).is_err());
        assert!(split_chain(&[]).is_err());
        assert!(split_chain(&[0x30, 0x80]).is_err());
    }
}
