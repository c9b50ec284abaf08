//! A memcached cache in front of online check results (`memcache_host`, `memcache_port`,
//! `memcache_ttl`).
//!
//! # What is cached
//!
//! Only outcomes of a directory that was read ([`Outcome::Success`], [`Outcome::NotFound`],
//! [`Outcome::Invalid`]), never errors, so a server that was down is asked again on the next
//! handshake. The key is `tlspool:v1:` and the hex SHA-256 of the check kind, the remote
//! identity and the SHA-256 of the peer's credential (see [`CacheKey`]), so it is 75 bytes,
//! within memcached's 250-byte limit, and contains no identity in clear. The value is a
//! version byte and the outcome byte; other values are treated as a miss. Entries expire
//! after `memcache_ttl` seconds.
//!
//! # Failure handling
//!
//! The memcache crate is synchronous, so one worker thread owns the connection and takes
//! requests from a queue of [`QUEUE_CAPACITY`]. A full queue, a lookup that gets no answer
//! within [`CacheConfig::io_timeout`] and an unreachable memcached are all treated as a miss,
//! so the check runs uncached and a handshake never waits longer than that timeout for the
//! cache. Failures are logged with at most one `warn!` per minute, and the worker waits
//! [`RECONNECT_INTERVAL`] after a failure before it connects again. A hit logs at debug with
//! the check kind. Callers that set `PIOF_STARTTLS_IGNORE_CACHES` bypass the cache for both
//! lookup and store.
//!
//! # Known limitations
//!
//! - One memcached server; no consistent hashing over several.
//! - The connect in the worker has a timeout, but name resolution of `memcache_host` does not.

mod worker;

use std::fmt;
use std::future::Future;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::debug;

use crate::ldap::Outcome;
use worker::Request;

/// Number of requests that can wait for the worker; more are dropped as misses.
pub const QUEUE_CAPACITY: usize = 256;
/// Time the worker waits after a failure before it connects to memcached again.
pub const RECONNECT_INTERVAL: Duration = Duration::from_secs(1);
/// Default connect, read and write timeout of memcached requests.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_millis(200);
/// Version byte that starts every cached value.
const VALUE_VERSION: u8 = 1;

/// The online checks whose results are cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CheckKind {
    /// Global directory check of an X.509 certificate.
    DirectoryX509,
    /// Global directory check of an OpenPGP key.
    DirectoryOpenPgp,
    /// DANE check of a certificate chain for one service: `Success` for a match, `NotFound`
    /// for a secure denial of TLSA records and `Invalid` for records that do not match.
    Dane,
    /// DANE check of an RFC 7250 raw public key for one service, with the outcomes of `Dane`.
    DaneRawPublicKey,
    /// Global directory check of an RFC 7250 raw public key against `pgpKey` values.
    DirectoryRawPublicKey,
    /// OPENPGPKEY check of an RFC 7250 raw public key for one email address: `Success` for a
    /// matching key, `NotFound` for a secure denial and `Invalid` for keys that do not match.
    OpenPgpKey,
}

impl CheckKind {
    /// Returns the name used in logs and in the key hash.
    pub fn name(self) -> &'static str {
        match self {
            Self::DirectoryX509 => "directory-x509",
            Self::DirectoryOpenPgp => "directory-openpgp",
            Self::Dane => "dane",
            Self::DaneRawPublicKey => "dane-raw-public-key",
            Self::DirectoryRawPublicKey => "directory-raw-public-key",
            Self::OpenPgpKey => "openpgpkey",
        }
    }
}

/// A memcached key for one check of one credential for one remote identity.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    kind: CheckKind,
    text: String,
}

impl CacheKey {
    /// Derives the key of `kind` for `remote_id` and the peer's `credential` bytes (a DER
    /// certificate or an OpenPGP key).
    pub fn new(kind: CheckKind, remote_id: &str, credential: &[u8]) -> Self {
        let fingerprint = ring::digest::digest(&ring::digest::SHA256, credential);
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        for field in [
            kind.name().as_bytes(),
            remote_id.as_bytes(),
            fingerprint.as_ref(),
        ] {
            // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
            context.update(&(field.len() as u64).to_be_bytes());
            context.update(field);
        }
        let mut text = String::from("tlspool:v1:");
        for byte in context.finish().as_ref() {
            text.push_str(&format!("{byte:02x}"));
        }
        Self { kind, text }
    }

    /// Returns the check kind.
    pub fn kind(&self) -> CheckKind {
        self.kind
    }

    /// Returns the memcached key text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({}, {})", self.kind.name(), self.text)
    }
}

/// Settings of the memcached cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// `memcache_host`: host name or address of memcached.
    pub host: String,
    /// `memcache_port`: its TCP port.
    pub port: u16,
    /// `memcache_ttl`: lifetime of a cached outcome, rounded down to whole seconds.
    pub ttl: Duration,
    /// Connect, read and write timeout of each request, and the longest a lookup waits.
    pub io_timeout: Duration,
}

impl CacheConfig {
    /// Creates the settings with [`DEFAULT_IO_TIMEOUT`].
    pub fn new(host: &str, port: u16, ttl: Duration) -> Self {
        Self {
            host: host.to_owned(),
            port,
            ttl,
            io_timeout: DEFAULT_IO_TIMEOUT,
        }
    }
}

/// The handle of the cache worker; dropping the last handle stops the worker.
#[derive(Debug, Clone)]
pub struct OnlineCache {
    requests: SyncSender<Request>,
    io_timeout: Duration,
}

impl OnlineCache {
    /// Starts the worker thread. It connects on the first request, so a memcached that is down
    /// now only causes misses.
    ///
    /// # Errors
    ///
    /// The I/O error when the thread cannot be spawned.
    pub fn start(config: &CacheConfig) -> std::io::Result<Self> {
        let requests = worker::spawn(config)?;
        Ok(Self {
            requests,
            io_timeout: config.io_timeout,
        })
    }

    /// Looks up `key`; `None` is a miss, also when memcached is unreachable or slow.
    pub async fn lookup(&self, key: &CacheKey) -> Option<Outcome> {
        let (reply, answer) = oneshot::channel();
        let request = Request::Get {
            key: key.as_str().to_owned(),
            reply,
        };
        if !self.enqueue(request) {
            return None;
        }
        let value = match tokio::time::timeout(self.io_timeout, answer).await {
            Ok(Ok(value)) => value?,
            Ok(Err(_)) => return None,
            Err(_) => {
                debug!(kind = key.kind.name(), "cache lookup timed out");
                return None;
            }
        };
        let outcome = decode_value(&value);
        if let Some(outcome) = outcome {
            debug!(kind = key.kind.name(), ?outcome, "cache hit");
        }
        outcome
    }

    /// Stores `outcome` under `key` without waiting for memcached.
    pub fn store(&self, key: &CacheKey, outcome: Outcome) {
        self.enqueue(Request::Set {
            key: key.as_str().to_owned(),
            value: encode_value(outcome),
        });
    }

    /// Returns the cached outcome of `key`, or runs `check` and caches what it returns. With
    /// `ignore_caches` (`PIOF_STARTTLS_IGNORE_CACHES`) the cache is neither read nor written.
    ///
    /// # Errors
    ///
    /// The error of `check`, which is not cached.
    pub async fn cached<E, F>(
        &self,
        key: &CacheKey,
        ignore_caches: bool,
        check: F,
    ) -> Result<Outcome, E>
    where
        F: Future<Output = Result<Outcome, E>>,
    {
        if ignore_caches {
            return check.await;
        }
        if let Some(outcome) = self.lookup(key).await {
            return Ok(outcome);
        }
        let outcome = check.await?;
        self.store(key, outcome);
        Ok(outcome)
    }

    fn enqueue(&self, request: Request) -> bool {
        match self.requests.try_send(request) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                debug!(
                    capacity = QUEUE_CAPACITY,
                    "cache queue full, request dropped"
                );
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

fn encode_value(outcome: Outcome) -> Vec<u8> {
    let code = match outcome {
        Outcome::Success => 1,
        Outcome::NotFound => 2,
        Outcome::Invalid => 3,
    };
    vec![VALUE_VERSION, code]
}

fn decode_value(value: &[u8]) -> Option<Outcome> {
    match value {
        [VALUE_VERSION, 1] => Some(Outcome::Success),
        [VALUE_VERSION, 2] => Some(Outcome::NotFound),
        [VALUE_VERSION, 3] => Some(Outcome::Invalid),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_short_and_hides_identity() {
        let key = CacheKey::new(CheckKind::DirectoryX509, "alice@example.com", b"cert");
        assert_eq!(key.as_str().len(), 75);
        assert!(key.as_str().starts_with("tlspool:v1:"));
        assert!(!key.as_str().contains("alice"));
    }

    #[test]
    fn key_separates_every_input() {
        let base = CacheKey::new(CheckKind::DirectoryX509, "a@b", b"c");
        assert_ne!(
            base,
            CacheKey::new(CheckKind::DirectoryOpenPgp, "a@b", b"c")
        );
        assert_ne!(base, CacheKey::new(CheckKind::DirectoryX509, "a@bb", b"c"));
        assert_ne!(base, CacheKey::new(CheckKind::DirectoryX509, "a@b", b"d"));
        assert_eq!(base, CacheKey::new(CheckKind::DirectoryX509, "a@b", b"c"));
    }

    #[test]
    fn values_round_trip_and_reject_other_versions() {
        for outcome in [Outcome::Success, Outcome::NotFound, Outcome::Invalid] {
            assert_eq!(decode_value(&encode_value(outcome)), Some(outcome));
        }
        assert_eq!(decode_value(&[2, 1]), None);
        assert_eq!(decode_value(&[VALUE_VERSION]), None);
        assert_eq!(decode_value(&[VALUE_VERSION, 9]), None);
    }
}
