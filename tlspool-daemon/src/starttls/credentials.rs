//! Local credentials of a handshake: the localid and disclose lookups of the TLS Pool version
//! 2 protocol, and the GnuTLS credentials built from a stored X.509 value, an OpenPGP value
//! (sent as an RFC 7250 raw public key) or both, with their token keys.
//!
//! Every lookup opens a fresh read transaction, so changes made with `tlspool-admin` apply to
//! the next handshake without a restart. In both roles the first listed identity, and within
//! it the first listed value, wins.
//!
//! The lookups block (LMDB reads, and PKCS #11 calls inside `gnutls_privkey_import_url` that
//! may wait on a slow token), so [`CredentialLoader`] runs them on tokio's blocking threads,
//! at most [`MAX_CONCURRENT_LOOKUPS`] at once, each within `pkcs11_timeout`. A lookup that
//! times out keeps its slot until its thread returns, so a hung token stalls at most that many
//! threads. Loaded credentials are cached per (local identity, role) for [`CACHE_TTL`], and an
//! entry is reused only while the stored localid value is byte-identical, so a change made
//! with `tlspool-admin` takes effect at the next handshake.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Semaphore;

use sequoia_openpgp::policy::StandardPolicy;
use tlspool_core::db::{
    self, CredentialType, Database, DbEnv, DbRead, DiscloseChanges, Disclosure, Donai,
    LocalIdEntry, LocalIdFlags,
};
use tlspool_core::tls::{self, CertificateTypes, PrivateKeySource};
use tlspool_pkcs11::CardKeyReference;
use tlspool_validate::openpgp::AuthenticationKey;

use super::card::CardKeys;
use super::error::StartTlsError;
use crate::pinentry::PinEntryService;
use crate::tokens::TokenLogin;

/// Maximum number of credential lookups that run on blocking threads at once.
pub const MAX_CONCURRENT_LOOKUPS: usize = 8;

/// How long a loaded credential is reused while its stored value stays the same. It bounds
/// how long a key that was replaced on the token, under the same URI, stays in use.
pub const CACHE_TTL: Duration = Duration::from_secs(10);

/// How often a handshake checks the localid database for an identity that a local identity
/// selection service announced as new.
pub(crate) const NEW_IDENTITY_POLL: Duration = Duration::from_millis(250);

/// Runs credential lookups off the async workers, bounded in time and number, and caches the
/// loaded credentials.
#[derive(Debug)]
pub struct CredentialLoader {
    permits: Arc<Semaphore>,
    timeout: Duration,
    cache: Arc<Mutex<HashMap<(String, db::Role), CachedCredential>>>,
    token_login: Option<Arc<TokenLogin>>,
    card_keys: Option<Arc<CardKeys>>,
}

/// A loaded credential with the stored values it came from.
#[derive(Debug)]
struct CachedCredential {
    entries: Vec<LocalIdEntry>,
    credentials: tls::Credentials,
    loaded_at: Instant,
}

impl CredentialLoader {
    /// Creates a loader whose lookups each fail after `timeout` (`pkcs11_timeout`).
    pub fn new(timeout: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT_LOOKUPS)),
            timeout,
            cache: Arc::default(),
            token_login: None,
            card_keys: None,
        }
    }

    /// Logs in to a key's token with `token_login` before GnuTLS opens the key. The wait for
    /// the PIN entry service counts against the lookup's `pkcs11_timeout`.
    pub(crate) fn with_token_login(mut self, token_login: Option<Arc<TokenLogin>>) -> Self {
        self.token_login = token_login;
        self
    }

    /// Signs with the OpenPGP cards of `openpgp-card:` key references, verifying their user
    /// PIN with `configured_pin` (`openpgp_card_pin`) and then `pin_entry`. Each card call
    /// may take `pkcs11_timeout`.
    pub(crate) fn with_openpgp_cards(
        mut self,
        configured_pin: Option<&str>,
        pin_entry: Arc<PinEntryService>,
    ) -> Self {
        let cards = CardKeys::new(self.timeout, configured_pin, pin_entry);
        self.card_keys = Some(Arc::new(cards));
        self
    }

    /// Runs `job` on a blocking thread and waits for it within the timeout, which includes the
    /// wait for a free slot. `lookup` names the lookup in the timeout error.
    pub(crate) async fn run<T, F>(&self, lookup: String, job: F) -> Result<T, StartTlsError>
    where
        T: Send + 'static,
        F: FnOnce(&CredentialCache) -> Result<T, StartTlsError> + Send + 'static,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let timed_out = |lookup: String| StartTlsError::CredentialLookupTimedOut {
            lookup,
            timeout: self.timeout,
        };
        let acquire = Arc::clone(&self.permits).acquire_owned();
        // The semaphore is never closed, so only the timeout fails the wait.
        let Ok(Ok(permit)) = tokio::time::timeout_at(deadline, acquire).await else {
            return Err(timed_out(lookup));
        };
        let cache = CredentialCache {
            entries: Arc::clone(&self.cache),
            token_login: self.token_login.clone(),
            card_keys: self.card_keys.clone(),
        };
        let handle = tokio::task::spawn_blocking(move || {
            let result = job(&cache);
            drop(permit);
            result
        });
        match tokio::time::timeout_at(deadline, handle).await {
            Ok(Ok(result)) => result,
            Ok(Err(error)) => Err(StartTlsError::CredentialLookupFailed {
                lookup,
                reason: error.to_string(),
            }),
            Err(_) => Err(timed_out(lookup)),
        }
    }

    /// Looks up the server credential of `local_id` off the async workers.
    pub(crate) async fn server_credential(
        &self,
        databases: Arc<super::TlsResources>,
        field: &'static str,
        local_id: &str,
    ) -> Result<LocalCredential, StartTlsError> {
        let local_id = local_id.to_owned();
        self.run(
            format!("the server credential of {local_id}"),
            move |cache| server_credential(databases_of(&databases)?, cache, field, &local_id),
        )
        .await
    }

    /// Looks up the client credential of `local_id` off the async workers.
    pub(crate) async fn client_credential(
        &self,
        databases: Arc<super::TlsResources>,
        local_id: &str,
    ) -> Result<LocalCredential, StartTlsError> {
        let local_id = local_id.to_owned();
        self.run(
            format!("the client credential of {local_id}"),
            move |cache| client_credential(databases_of(&databases)?, cache, &local_id),
        )
        .await
    }

    /// Looks up the client credential disclosed to `remote_id` off the async workers.
    pub(crate) async fn disclosed_client_credential(
        &self,
        databases: Arc<super::TlsResources>,
        remote_id: &str,
    ) -> Result<Option<LocalCredential>, StartTlsError> {
        let remote_id = remote_id.to_owned();
        self.run(
            format!("the client credential disclosed to {remote_id}"),
            move |cache| disclosed_client_credential(databases_of(&databases)?, cache, &remote_id),
        )
        .await
    }

    /// Returns the local identities disclosed to `remote_id`, read off the async workers.
    pub(crate) async fn disclosed_identities(
        &self,
        databases: Arc<super::TlsResources>,
        remote_id: &str,
    ) -> Result<Vec<Donai>, StartTlsError> {
        let remote_id = remote_id.to_owned();
        self.run(
            format!("the identities disclosed to {remote_id}"),
            move |_| disclosed_identities(databases_of(&databases)?, &remote_id),
        )
        .await
    }
}

impl CredentialLoader {
    /// Finds the most concrete disclose entry for `remote_id` off the async workers; returns
    /// the parsed remote identity with it.
    ///
    /// # Errors
    ///
    /// [`StartTlsError::RemoteIdNeeded`] for an empty `remote_id`, and the errors of parsing
    /// it and reading the database.
    pub(crate) async fn find_disclosure(
        &self,
        databases: Arc<super::TlsResources>,
        remote_id: &str,
    ) -> Result<(Donai, Option<Disclosure>), StartTlsError> {
        if remote_id.is_empty() {
            return Err(StartTlsError::RemoteIdNeeded);
        }
        let remote = parse_donai("remoteid", remote_id)?;
        self.run(format!("the disclose entry of {remote_id}"), move |_| {
            let disclosure = databases_of(&databases)?.read()?.find_disclosure(&remote)?;
            Ok((remote, disclosure))
        })
        .await
    }

    /// Issues an on-the-fly certificate for `local_id` and `service` off the async workers.
    ///
    /// # Errors
    ///
    /// [`StartTlsError::OnTheFlyUnavailable`] without a configured signer, and the errors of
    /// [`OnTheFlySigner::issue`](super::onthefly::OnTheFlySigner::issue).
    pub(crate) async fn on_the_fly_credential(
        &self,
        resources: Arc<super::TlsResources>,
        local_id: &str,
        service: &str,
    ) -> Result<LocalCredential, StartTlsError> {
        if resources.on_the_fly.is_none() {
            return Err(StartTlsError::OnTheFlyUnavailable {
                local_id: local_id.to_owned(),
            });
        }
        let local_id = local_id.to_owned();
        let service = service.to_owned();
        self.run(
            format!("the on-the-fly certificate of {local_id}"),
            move |_| {
                let signer = resources.on_the_fly.as_ref().ok_or_else(|| {
                    StartTlsError::OnTheFlyUnavailable {
                        local_id: local_id.clone(),
                    }
                })?;
                let credentials = signer.issue(&local_id, &service)?;
                Ok(LocalCredential {
                    local_id,
                    credentials,
                })
            },
        )
        .await
    }

    /// Waits until the localid database lists a client credential for `local_id`, which a
    /// local identity selection service announced as new, checking every
    /// [`NEW_IDENTITY_POLL`] for at most `window`.
    ///
    /// # Errors
    ///
    /// [`StartTlsError::NewLocalIdTimedOut`] when the window ends first, and the errors of
    /// [`Self::client_credential`] other than a missing identity.
    pub(crate) async fn new_client_credential(
        &self,
        resources: Arc<super::TlsResources>,
        local_id: &str,
        window: Duration,
    ) -> Result<LocalCredential, StartTlsError> {
        let deadline = tokio::time::Instant::now() + window;
        loop {
            match self
                .client_credential(Arc::clone(&resources), local_id)
                .await
            {
                Err(StartTlsError::NoLocalIdentity { .. })
                    if tokio::time::Instant::now() + NEW_IDENTITY_POLL < deadline =>
                {
                    tokio::time::sleep(NEW_IDENTITY_POLL).await;
                }
                Err(StartTlsError::NoLocalIdentity { .. }) => {
                    return Err(StartTlsError::NewLocalIdTimedOut {
                        local_id: local_id.to_owned(),
                        timeout: window,
                    });
                }
                other => return other,
            }
        }
    }

    /// Commits the disclose changes of a successful handshake in one write transaction, off
    /// the async workers.
    ///
    /// # Errors
    ///
    /// [`StartTlsError::Database`] when the transaction fails; then nothing is written.
    pub(crate) async fn commit_disclose_changes(
        &self,
        resources: Arc<super::TlsResources>,
        changes: DiscloseChanges,
    ) -> Result<(), StartTlsError> {
        if changes.changes().is_empty() {
            return Ok(());
        }
        self.run(
            "the disclose changes of the handshake".to_owned(),
            move |_| {
                changes.commit(databases_of(&resources)?)?;
                Ok(())
            },
        )
        .await
    }
}

fn databases_of(resources: &super::TlsResources) -> Result<&DbEnv, StartTlsError> {
    resources
        .databases
        .as_ref()
        .ok_or(StartTlsError::NoDatabases)
}

/// The credential cache as a blocking lookup sees it.
#[derive(Debug)]
pub(crate) struct CredentialCache {
    entries: Arc<Mutex<HashMap<(String, db::Role), CachedCredential>>>,
    token_login: Option<Arc<TokenLogin>>,
    card_keys: Option<Arc<CardKeys>>,
}

impl CredentialCache {
    /// Returns the credential of `values` (an X.509 and an OpenPGP value at most) for
    /// `local_id` in `role`, from the cache while it is fresh and was loaded from the same
    /// stored values, else loaded anew (and then cached).
    fn load(
        &self,
        local_id: &str,
        role: db::Role,
        values: &[LocalIdEntry],
    ) -> Result<LocalCredential, StartTlsError> {
        let key = (local_id.to_owned(), role);
        {
            let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(cached) = entries.get(&key)
                && cached.entries == values
                && cached.loaded_at.elapsed() < CACHE_TTL
            {
                return Ok(LocalCredential {
                    local_id: local_id.to_owned(),
                    credentials: cached.credentials.clone(),
                });
            }
        }
        for entry in values {
            let token_uri = entry
                .pkcs11_uri
                .as_ref()
                .filter(|uri| !CardKeyReference::is_card_reference(uri));
            if let (Some(token_login), Some(uri)) = (&self.token_login, token_uri) {
                token_login
                    .log_in_for_key(uri)
                    .map_err(|source| StartTlsError::TokenLogin {
                        local_id: local_id.to_owned(),
                        source,
                    })?;
            }
        }
        // Two lookups that miss at once both load; the later one replaces the entry.
        let loaded = load(local_id, values, self.card_keys.as_deref())?;
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|_, cached| cached.loaded_at.elapsed() < CACHE_TTL);
        entries.insert(
            key,
            CachedCredential {
                entries: values.to_vec(),
                credentials: loaded.credentials.clone(),
                loaded_at: Instant::now(),
            },
        );
        Ok(loaded)
    }

    /// Returns the number of cached credentials.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

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
/// [`StartTlsError::NoLocalIdentity`] when the identity has no usable X.509 or OpenPGP
/// server value, and the errors of reading the database and loading the credential.
fn server_credential(
    databases: &DbEnv,
    cache: &CredentialCache,
    field: &'static str,
    local_id: &str,
) -> Result<LocalCredential, StartTlsError> {
    let donai = parse_donai(field, local_id)?;
    let found = databases.read()?.server_credentials(&donai)?;
    let (owner, entries) =
        presented_entries(&found).ok_or_else(|| StartTlsError::NoLocalIdentity {
            local_id: local_id.to_owned(),
        })?;
    cache.load(&owner, db::Role::Server, &entries)
}

/// Picks the values a handshake presents from `found`: the X.509 and the OpenPGP value of
/// the identity found first, so that GnuTLS can send either type. Returns that identity with
/// its values, or `None` when `found` has neither type.
fn presented_entries(found: &db::Credentials) -> Option<(String, Vec<LocalIdEntry>)> {
    let first = found.iter().find(|credential| {
        matches!(
            credential.entry.credential_type,
            CredentialType::X509 | CredentialType::OpenPgp
        )
    })?;
    let entries = [CredentialType::X509, CredentialType::OpenPgp]
        .into_iter()
        .filter_map(|kind| found.get(kind))
        .filter(|credential| credential.local_id == first.local_id)
        .map(|credential| credential.entry.clone())
        .collect();
    Some((first.local_id.to_string(), entries))
}

/// Returns the certificate types a session with `credentials` offers: raw public keys as
/// well as X.509 when the credentials hold an OpenPGP identity, in the configured order.
pub(crate) fn certificate_types(
    credentials: &tls::Credentials,
    prefer_x509: bool,
) -> CertificateTypes {
    match (credentials.has_raw_public_key(), prefer_x509) {
        (false, _) => CertificateTypes::X509Only,
        (true, false) => CertificateTypes::RawPublicKeyFirst,
        (true, true) => CertificateTypes::X509First,
    }
}

/// Returns the local identities disclosed to `remote_id`, in order of preference.
///
/// # Errors
///
/// [`StartTlsError::RemoteIdNeeded`] for an empty `remote_id`, and
/// [`StartTlsError::NothingDisclosed`] when no disclose selector matches it.
fn disclosed_identities(databases: &DbEnv, remote_id: &str) -> Result<Vec<Donai>, StartTlsError> {
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
fn disclosed_client_credential(
    databases: &DbEnv,
    cache: &CredentialCache,
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
    presented_entries(&found)
        .map(|(owner, entries)| cache.load(&owner, db::Role::Client, &entries))
        .transpose()
}

/// Looks up the client credential of `local_id`, the identity the application chose.
///
/// # Errors
///
/// [`StartTlsError::NoLocalIdentity`] when the identity has no usable X.509 client value, and
/// the errors of reading the database and loading the credential.
fn client_credential(
    databases: &DbEnv,
    cache: &CredentialCache,
    local_id: &str,
) -> Result<LocalCredential, StartTlsError> {
    let donai = parse_donai("localid", local_id)?;
    let key = donai.to_string();
    let values = databases
        .read()?
        .values(Database::LocalId, key.as_bytes())?;
    let usable: Vec<LocalIdEntry> = values
        .iter()
        .filter_map(|value| LocalIdEntry::decode(value).ok())
        .filter(|entry| entry.is_usable_for(db::Role::Client))
        .collect();
    let entries: Vec<LocalIdEntry> = [CredentialType::X509, CredentialType::OpenPgp]
        .into_iter()
        .filter_map(|kind| usable.iter().find(|entry| entry.credential_type == kind))
        .cloned()
        .collect();
    if entries.is_empty() {
        return Err(StartTlsError::NoLocalIdentity {
            local_id: local_id.to_owned(),
        });
    }
    cache.load(&key, db::Role::Client, &entries)
}

/// Loads `entries` of `local_id` into GnuTLS: an X.509 certificate chain and an OpenPGP
/// identity's raw public key from the database, and their private keys from the token (which
/// may call the PIN callback) or, for an `openpgp-card:` reference, from `card_keys`.
fn load(
    local_id: &str,
    entries: &[LocalIdEntry],
    card_keys: Option<&CardKeys>,
) -> Result<LocalCredential, StartTlsError> {
    let invalid = |reason: String| StartTlsError::InvalidCredential {
        local_id: local_id.to_owned(),
        reason,
    };
    let mut builder = tls::Credentials::builder();
    for entry in entries {
        let Some(uri) = &entry.pkcs11_uri else {
            return Err(invalid("the value has no PKCS #11 URI".to_owned()));
        };
        let is_card = CardKeyReference::is_card_reference(uri);
        if entry.credential_type == CredentialType::OpenPgp {
            let spki = openpgp_raw_public_key(&entry.credential).map_err(invalid)?;
            let key = if is_card {
                card_key(local_id, uri, &spki, card_keys)?
            } else {
                PrivateKeySource::Pkcs11Uri(uri.clone())
            };
            builder.raw_public_key(spki, key);
            continue;
        }
        if is_card {
            return Err(invalid(format!(
                "the X.509 value names the OpenPGP card key {uri}, which only a pgp value can use"
            )));
        }
        let key = PrivateKeySource::Pkcs11Uri(uri.clone());
        let chain = if entry.flags.contains(LocalIdFlags::CHAINED) {
            split_chain(&entry.credential).map_err(invalid)?
        } else {
            vec![entry.credential.clone()]
        };
        builder.certificate_chain_der(chain).private_key(key);
    }
    let credentials = builder
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

/// Opens the OpenPGP card that `uri` names as the key of `local_id`'s raw public key `spki`.
fn card_key(
    local_id: &str,
    uri: &str,
    spki: &[u8],
    card_keys: Option<&CardKeys>,
) -> Result<PrivateKeySource, StartTlsError> {
    let invalid = |reason: String| StartTlsError::InvalidCredential {
        local_id: local_id.to_owned(),
        reason,
    };
    let reference = CardKeyReference::parse(uri)
        .map_err(|error| invalid(format!("invalid key reference {uri}: {error}")))?;
    let Some(card_keys) = card_keys else {
        return Err(invalid(format!(
            "the key {uri} is on an OpenPGP card, and this daemon has no card support set up"
        )));
    };
    let key = card_keys.open_key(local_id, &reference, spki)?;
    Ok(PrivateKeySource::External(key))
}

/// Derives the raw public key GnuTLS sends for an OpenPGP local identity: the
/// SubjectPublicKeyInfo of the authentication key (subkey or primary) of the transferable
/// public key, which must be valid, unrevoked and unexpired now.
fn openpgp_raw_public_key(transferable_public_key: &[u8]) -> Result<Vec<u8>, String> {
    let policy = StandardPolicy::new();
    AuthenticationKey::from_bytes(transferable_public_key, &policy, SystemTime::now())
        .map(|key| key.subject_public_key_info)
        .map_err(|error| error.to_string())
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

    use std::sync::atomic::{AtomicUsize, Ordering};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    /// A lookup that blocks its thread for `duration`, standing in for a hung token.
    fn slow_lookup(
        duration: Duration,
        done: Arc<AtomicUsize>,
    ) -> impl FnOnce(&CredentialCache) -> Result<u32, StartTlsError> + Send + 'static {
        move |_| {
            std::thread::sleep(duration);
            done.fetch_add(1, Ordering::SeqCst);
            Ok(7)
        }
    }

    #[test]
    fn lookup_returns_result_of_job() {
        let loader = CredentialLoader::new(Duration::from_secs(5));
        let result = runtime().block_on(loader.run("a value".to_owned(), |cache| {
            assert_eq!(cache.len(), 0);
            Ok(42)
        }));
        assert_eq!(result.unwrap(), 42);
    }

    #[test]
    fn slow_lookup_times_out_with_clear_error() {
        let loader = CredentialLoader::new(Duration::from_millis(200));
        let done = Arc::new(AtomicUsize::new(0));
        let runtime = runtime();
        let started = Instant::now();
        let result = runtime.block_on(loader.run(
            "the server credential of dev.example".to_owned(),
            slow_lookup(Duration::from_secs(2), Arc::clone(&done)),
        ));
        let elapsed = started.elapsed();

        let error = result.unwrap_err();
        assert!(matches!(
            error,
            StartTlsError::CredentialLookupTimedOut { .. }
        ));
        let message = error.to_string();
        assert!(message.contains("timed out"), "{message}");
        assert!(message.contains("dev.example"), "{message}");
        assert!(message.contains("pkcs11_timeout"), "{message}");
        assert_eq!(error.tlserrno(), 110);
        assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    }

    #[test]
    fn hung_lookups_hold_at_most_the_slot_count() {
        let loader = Arc::new(CredentialLoader::new(Duration::from_millis(300)));
        let done = Arc::new(AtomicUsize::new(0));
        let runtime = runtime();
        let results = runtime.block_on(async {
            let mut lookups = tokio::task::JoinSet::new();
            for index in 0..MAX_CONCURRENT_LOOKUPS * 3 {
                let loader = Arc::clone(&loader);
                let job = slow_lookup(Duration::from_secs(1), Arc::clone(&done));
                lookups.spawn(async move { loader.run(format!("lookup {index}"), job).await });
            }
            lookups.join_all().await
        });
        assert!(results.iter().all(Result::is_err));

        // Only the lookups that got a slot ran; the others timed out waiting for one.
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(done.load(Ordering::SeqCst), MAX_CONCURRENT_LOOKUPS);
    }

    #[test]
    fn lookup_answers_after_slow_token_returns() {
        let loader = CredentialLoader::new(Duration::from_millis(200));
        let done = Arc::new(AtomicUsize::new(0));
        let runtime = runtime();
        let slow = runtime.block_on(loader.run(
            "slow".to_owned(),
            slow_lookup(Duration::from_millis(400), Arc::clone(&done)),
        ));
        assert!(slow.is_err());

        std::thread::sleep(Duration::from_millis(400));
        let fast = runtime.block_on(loader.run("fast".to_owned(), |_| Ok(1)));
        assert_eq!(fast.unwrap(), 1);
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn panicking_lookup_fails_request() {
        let loader = CredentialLoader::new(Duration::from_secs(5));
        let result: Result<u32, _> =
            runtime().block_on(loader.run("a panic".to_owned(), |_| panic!("token library")));
        assert!(matches!(
            result,
            Err(StartTlsError::CredentialLookupFailed { .. })
        ));
    }

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

    #[test]
    fn certificate_types_follow_credentials() {
        let key = tls::SigningKey::generate(tls::KeyType::EcdsaP256).unwrap();
        let raw = tls::Credentials::builder()
            .raw_public_key(
                key.public_key_der().unwrap(),
                PrivateKeySource::Memory {
                    data: key.to_pkcs8_pem().unwrap(),
                    encoding: tls::Encoding::Pem,
                },
            )
            .build()
            .unwrap();
        let x509_only = tls::Credentials::anonymous_client().unwrap();

        assert_eq!(
            certificate_types(&raw, false),
            CertificateTypes::RawPublicKeyFirst
        );
        assert_eq!(certificate_types(&raw, true), CertificateTypes::X509First);
        assert_eq!(
            certificate_types(&x509_only, false),
            CertificateTypes::X509Only
        );
        assert_eq!(
            certificate_types(&x509_only, true),
            CertificateTypes::X509Only
        );
    }

    #[test]
    fn invalid_openpgp_value_is_named() {
        let error = openpgp_raw_public_key(b"not an OpenPGP key").unwrap_err();
        assert!(error.contains("invalid OpenPGP"), "{error}");
    }
}
