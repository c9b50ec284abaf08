//! The memcached cache of online check results against a real memcached: store and hit,
//! expiry, the ignore-caches bypass, and a memcached that stops while checks run.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tlspool_tests::memcached::Memcached;
use tlspool_validate::cache::{CacheConfig, CacheKey, CheckKind, OnlineCache};
use tlspool_validate::ldap::{DirectoryError, Outcome};

/// Maximum time a check may take when memcached is down: the I/O timeout plus scheduling slack.
const MAX_UNCACHED_CHECK: Duration = Duration::from_millis(500);

/// Log lines of every test in this binary, captured by a global subscriber.
fn log() -> &'static Mutex<Vec<u8>> {
    static LOG: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buffer: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || LogWriter(buffer))
            .init();
        buffer
    })
}

struct LogWriter(&'static Mutex<Vec<u8>>);

impl Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut buffer = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        buffer.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Returns the captured lines that contain every one of `needles`.
fn log_lines(needles: &[&str]) -> Vec<String> {
    let buffer = log().lock().unwrap_or_else(PoisonError::into_inner);
    String::from_utf8_lossy(&buffer)
        .lines()
        .filter(|line| needles.iter().all(|needle| line.contains(needle)))
        .map(str::to_owned)
        .collect()
}

fn start_cache(memcached: &Memcached, ttl: Duration) -> OnlineCache {
    log();
    OnlineCache::start(&CacheConfig::new("127.0.0.1", memcached.port(), ttl)).unwrap()
}

/// A check that counts its runs and returns `outcome`.
async fn counted(runs: &AtomicUsize, outcome: Outcome) -> Result<Outcome, DirectoryError> {
    runs.fetch_add(1, Ordering::SeqCst);
    Ok(outcome)
}

#[tokio::test]
async fn cache_stores_and_returns_outcome() {
    let memcached = Memcached::start();
    let cache = start_cache(&memcached, Duration::from_secs(60));
    let key = CacheKey::new(CheckKind::DirectoryX509, "stored@example.com", b"cert");
    let runs = AtomicUsize::new(0);

    let first = cache
        .cached(&key, false, counted(&runs, Outcome::Success))
        .await;
    assert_eq!(first.unwrap(), Outcome::Success);
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // The store is asynchronous; a lookup queued after it is served after it.
    let second = cache
        .cached(&key, false, counted(&runs, Outcome::Invalid))
        .await;
    assert_eq!(second.unwrap(), Outcome::Success);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(!log_lines(&["cache hit", "directory-x509"]).is_empty());

    let other = CacheKey::new(CheckKind::DirectoryOpenPgp, "stored@example.com", b"cert");
    assert_eq!(cache.lookup(&other).await, None);
}

#[tokio::test]
async fn cache_entry_expires_after_ttl() {
    let memcached = Memcached::start();
    let cache = start_cache(&memcached, Duration::from_secs(1));
    let key = CacheKey::new(CheckKind::DirectoryX509, "expiring@example.com", b"cert");

    cache.store(&key, Outcome::NotFound);
    assert_eq!(cache.lookup(&key).await, Some(Outcome::NotFound));
    // memcached counts expiry in whole seconds, so wait past the next two ticks.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(cache.lookup(&key).await, None);
}

#[tokio::test]
async fn ignore_caches_bypasses_lookup_and_store() {
    let memcached = Memcached::start();
    let cache = start_cache(&memcached, Duration::from_secs(60));
    let key = CacheKey::new(CheckKind::DirectoryOpenPgp, "bypass@example.com", b"key");
    let runs = AtomicUsize::new(0);

    cache.store(&key, Outcome::Success);
    let bypassed = cache
        .cached(&key, true, counted(&runs, Outcome::Invalid))
        .await;
    assert_eq!(bypassed.unwrap(), Outcome::Invalid);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(cache.lookup(&key).await, Some(Outcome::Success));
}

#[tokio::test]
async fn errors_are_not_cached() {
    let memcached = Memcached::start();
    let cache = start_cache(&memcached, Duration::from_secs(60));
    let key = CacheKey::new(CheckKind::DirectoryX509, "error@example.com", b"cert");
    let failing = async {
        Err(DirectoryError::InvalidIdentity {
            identity: "error@example.com".to_owned(),
        })
    };

    assert!(cache.cached(&key, false, failing).await.is_err());
    assert_eq!(cache.lookup(&key).await, None);
}

#[tokio::test]
async fn stopped_memcached_runs_checks_uncached() {
    let mut memcached = Memcached::start();
    let server = format!("127.0.0.1:{}", memcached.port());
    let cache = start_cache(&memcached, Duration::from_secs(60));
    let key = CacheKey::new(CheckKind::DirectoryX509, "stopped@example.com", b"cert");
    let runs = Arc::new(AtomicUsize::new(0));

    cache.store(&key, Outcome::Success);
    assert_eq!(cache.lookup(&key).await, Some(Outcome::Success));
    memcached.stop();

    for round in 0..5 {
        let started = Instant::now();
        let result = cache
            .cached(&key, false, counted(&runs, Outcome::Invalid))
            .await;
        let elapsed = started.elapsed();
        assert_eq!(result.unwrap(), Outcome::Invalid, "round {round}");
        assert!(
            elapsed < MAX_UNCACHED_CHECK,
            "round {round} took {elapsed:?}"
        );
    }
    assert_eq!(runs.load(Ordering::SeqCst), 5);

    // Let the worker finish the last queued store before counting warnings.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let warnings = log_lines(&["WARN", &server]);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
}
