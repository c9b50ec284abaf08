//! Asynchronous evaluation of a validation expression, and the online checks behind the `D`,
//! `d`, `O`, `o`, `G` and `g` predicates.
//!
//! [`evaluate`] drives a [`Registration`]: each `Start(p)` runs the check of `p` that a
//! [`PredicateChecks`] implementation returns, and all running checks progress at once within
//! the calling task, each bounded by the same timeout. A `Stop(p)` drops the check of `p`, and
//! `Final` ends the evaluation and drops the rest. A check that times out counts as false, and
//! so does every predicate still unresolved when no check is left.
//!
//! [`OnlineChecks`] owns the DNSSEC resolver for DANE and OPENPGPKEY, the global directory and the memcached
//! cache. Its results go through the cache unless the request ignores caches, and a cache
//! that is down only causes misses.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::{AbortHandle, Abortable};
use futures_util::stream::{FuturesUnordered, StreamExt};
use sequoia_openpgp::policy::StandardPolicy;
use tracing::{debug, info};

pub use futures_util::future::BoxFuture;

use crate::cache::{CacheConfig, CacheKey, CheckKind, OnlineCache};
use crate::dane::{self, DaneOutcome, PkixValidator, Transport};
use crate::dns::Resolver;
use crate::ldap::{
    Credential, DaneDirectoryCheck, DirectoryConfig, DnssecSrvResolver, GlobalDirectory, Outcome,
};
use crate::openpgp::{self, OpenPgpKeyLookup};
use crate::valexp::{Event, NormalForm, Predicate, Registration};
use crate::x509::{AnchorSet, Certificate, PathValidator, PeerRole, ValidateError};

/// The tracing target of the daemon's `cert` log category, under which cache hits are logged.
const LOG_TARGET: &str = "tlspool::cert";

/// The value of one predicate and why it has that value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The predicate's value.
    pub value: bool,
    /// A short reason, such as `no TLSA records`, for logs and error messages.
    pub reason: String,
}

impl Finding {
    /// Creates a finding.
    pub fn new(value: bool, reason: impl Into<String>) -> Self {
        Self {
            value,
            reason: reason.into(),
        }
    }
}

/// A predicate that received its value during an evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The predicate.
    pub predicate: Predicate,
    /// Its value and reason.
    pub finding: Finding,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = u8::from(self.finding.value);
        write!(
            f,
            "{}={value} ({})",
            self.predicate.letter(),
            self.finding.reason
        )
    }
}

/// The result of an evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the expression is true.
    pub accepted: bool,
    /// The predicates that received a value, in the order their checks finished.
    pub decided: Vec<Decision>,
    /// The predicate whose value made the last live case false, when one did. It is `None`
    /// for an accepted expression, for one without cases (`0`), and when the checks ended
    /// without a final outcome.
    pub failed_at: Option<Decision>,
}

impl Verdict {
    /// Returns the decided predicates as `T=1 (reason), D=0 (reason)`.
    pub fn decided_text(&self) -> String {
        let decided: Vec<String> = self.decided.iter().map(ToString::to_string).collect();
        decided.join(", ")
    }
}

/// The checks behind the predicates of one handshake.
pub trait PredicateChecks: Sync {
    /// Returns the check of `predicate`. A predicate that cannot be known returns false.
    fn check(&self, predicate: Predicate) -> BoxFuture<'_, Finding>;
}

/// Evaluates `form` with `checks`, bounding each check by `timeout`.
pub async fn evaluate<C: PredicateChecks + ?Sized>(
    form: NormalForm,
    checks: &C,
    timeout: Duration,
) -> Verdict {
    let (mut registration, events) = Registration::register(form);
    let mut driver = Driver {
        checks,
        timeout,
        running: FuturesUnordered::new(),
        handles: HashMap::new(),
        outcome: None,
    };
    driver.apply(events);

    let mut decided = Vec::new();
    let mut failed_at = None;
    while driver.outcome.is_none() {
        let Some(next) = driver.running.next().await else {
            break;
        };
        // An aborted check was stopped by the registration.
        let Ok((predicate, finding)) = next else {
            continue;
        };
        driver.handles.remove(&predicate);
        let events = registration.set(predicate, finding.value);
        let decision = Decision { predicate, finding };
        decided.push(decision.clone());
        driver.apply(events);
        if driver.outcome == Some(false) {
            failed_at = Some(decision);
        }
    }
    if driver.outcome.is_none() {
        driver.apply(registration.unregister());
    }
    Verdict {
        accepted: driver.outcome == Some(true),
        decided,
        failed_at,
    }
}

/// The running checks of one evaluation.
struct Driver<'c, C: ?Sized> {
    checks: &'c C,
    timeout: Duration,
    running: FuturesUnordered<Abortable<BoxFuture<'c, (Predicate, Finding)>>>,
    handles: HashMap<Predicate, AbortHandle>,
    outcome: Option<bool>,
}

impl<'c, C: PredicateChecks + ?Sized> Driver<'c, C> {
    fn apply(&mut self, events: Vec<Event>) {
        for event in events {
            match event {
                // Starts after an early `Final(true)` are ignored: their results would be.
                Event::Start(predicate) => {
                    if self.outcome.is_none() && !self.handles.contains_key(&predicate) {
                        self.start(predicate);
                    }
                }
                Event::Stop(predicate) => {
                    if let Some(handle) = self.handles.remove(&predicate) {
                        handle.abort();
                    }
                }
                Event::Final(outcome) => self.outcome = Some(outcome),
            }
        }
    }

    fn start(&mut self, predicate: Predicate) {
        let check = self.checks.check(predicate);
        let timeout = self.timeout;
        let bounded: BoxFuture<'c, (Predicate, Finding)> = Box::pin(async move {
            let finding = match tokio::time::timeout(timeout, check).await {
                Ok(finding) => finding,
                Err(_) => Finding::new(
                    false,
                    format!("the check timed out after {} ms", timeout.as_millis()),
                ),
            };
            (predicate, finding)
        });
        let (handle, registration) = AbortHandle::new_pair();
        self.running.push(Abortable::new(bounded, registration));
        self.handles.insert(predicate, handle);
    }
}

/// A PKIX validator over an owned set of anchors, so that a DANE check can run in a task
/// that moves between threads.
#[derive(Debug, Clone)]
pub struct AnchorPkix {
    anchors: AnchorSet,
    role: PeerRole,
    at: SystemTime,
}

impl AnchorPkix {
    /// Creates a validator that trusts `anchors` for a peer in `role` at time `at`.
    pub fn new(anchors: AnchorSet, role: PeerRole, at: SystemTime) -> Self {
        Self { anchors, role, at }
    }
}

impl PkixValidator for AnchorPkix {
    fn validate_for_host(
        &self,
        chain: &[Certificate],
        host: &str,
    ) -> Result<Vec<Certificate>, ValidateError> {
        PathValidator::new(&self.anchors, self.role, self.at).validate_for_host(chain, host)
    }

    fn role(&self) -> PeerRole {
        self.role
    }

    fn at(&self) -> SystemTime {
        self.at
    }
}

/// Settings of the online checks, from the daemon configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineSettings {
    /// `dns_server`, or `None` for the first nameserver of `/etc/resolv.conf`.
    pub dns_server: Option<SocketAddr>,
    /// `dnssec_rootkey`: without this file DANE is off.
    pub dnssec_rootkey: PathBuf,
    /// Bound on one DNS lookup.
    pub dns_timeout: Duration,
    /// `ldap_proxy`: without it the directory is found by SRV lookups under DNSSEC, which
    /// need `dnssec_rootkey`.
    pub ldap_proxy: Option<String>,
    /// Bound on one directory server.
    pub ldap_timeout: Duration,
    /// The memcached server, from `memcache_host`, `memcache_port` and `memcache_ttl`.
    pub cache: Option<CacheConfig>,
}

/// The DANE resolver, the global directory and the cache of a daemon.
pub struct OnlineChecks {
    resolver: Result<Arc<Resolver>, String>,
    directory: Result<GlobalDirectory<DnssecSrvResolver, DaneDirectoryCheck>, String>,
    cache: Option<OnlineCache>,
}

impl fmt::Debug for OnlineChecks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnlineChecks")
            .field(
                "dane",
                &self.resolver.as_ref().map(|resolver| resolver.server()),
            )
            .field("directory", &self.directory.is_ok())
            .field("cache", &self.cache.is_some())
            .finish()
    }
}

impl OnlineChecks {
    /// Sets up the checks that `settings` enable. One that cannot be set up stays off, and its
    /// predicates return false with the reason, which [`Self::unavailable`] also lists.
    ///
    /// Call it inside a tokio runtime, which the resolver's transport task runs on.
    pub fn new(settings: &OnlineSettings) -> Self {
        let resolver = if settings.dnssec_rootkey.exists() {
            Resolver::new(
                settings.dns_server,
                &settings.dnssec_rootkey,
                settings.dns_timeout,
            )
            .map(Arc::new)
            .map_err(|error| format!("DANE is off: {error}"))
        } else {
            Err(format!(
                "DANE is off: the DNSSEC trust anchor file {} does not exist",
                settings.dnssec_rootkey.display()
            ))
        };
        let directory = match (&settings.ldap_proxy, &resolver) {
            (None, Err(reason)) => Err(format!(
                "the global directory is off: no ldap_proxy is configured, and SRV discovery \
                 needs DNSSEC ({reason})"
            )),
            (proxy, _) => {
                let config = DirectoryConfig {
                    proxy: proxy.clone(),
                    timeout: settings.ldap_timeout,
                    follow_referrals: false,
                };
                GlobalDirectory::new(
                    config,
                    DnssecSrvResolver::new(resolver.clone()),
                    DaneDirectoryCheck::new(resolver.clone()),
                )
                .map_err(|error| format!("the global directory is off: {error}"))
            }
        };
        let cache = settings
            .cache
            .as_ref()
            .and_then(|config| match OnlineCache::start(config) {
                Ok(cache) => Some(cache),
                Err(error) => {
                    info!(target: LOG_TARGET, host = %config.host, %error,
                        "memcached cache worker failed to start; checks run uncached");
                    None
                }
            });
        Self {
            resolver,
            directory,
            cache,
        }
    }

    /// Returns the reasons the checks that are off are off.
    pub fn unavailable(&self) -> Vec<&str> {
        let mut reasons = Vec::new();
        if let Err(reason) = &self.resolver {
            reasons.push(reason.as_str());
        }
        if let Err(reason) = &self.directory {
            reasons.push(reason.as_str());
        }
        reasons
    }

    /// Checks the peer's chain (DER, end certificate first) against the TLSA records of
    /// `host`, `port` and `transport`. `Success` is a match (`D` and `d`), `NotFound` a
    /// DNSSEC-proven absence of TLSA records (`d` only), `Invalid` records that do not match.
    ///
    /// # Errors
    ///
    /// The reason there is no DANE answer: DANE off, an insecure, bogus or failed lookup.
    /// Both `D` and `d` are false then, and nothing is cached.
    pub async fn dane<P: PkixValidator + Sync>(
        &self,
        service: (&str, u16, Transport),
        chain: &[Vec<u8>],
        pkix: &P,
        ignore_caches: bool,
    ) -> Result<Outcome, String> {
        let resolver = self.resolver.as_ref().map_err(Clone::clone)?;
        let (host, port, transport) = service;
        let owner = dane::tlsa_owner(host, port, transport);
        let key = CacheKey::new(CheckKind::Dane, &owner, &chain.concat());
        let check = async {
            let outcome = dane::check(resolver, host, port, transport, chain, pkix).await;
            if let Some(reason) = outcome.lookup_failure(&owner) {
                return Err(reason);
            }
            match outcome {
                DaneOutcome::Match(found) => {
                    debug!(target: LOG_TARGET, owner = %owner, subject = %found.subject,
                        "tlsa record matches");
                    Ok(Outcome::Success)
                }
                DaneOutcome::NoMatch(reasons) => {
                    debug!(target: LOG_TARGET, owner = %owner, ?reasons, "no tlsa record matches");
                    Ok(Outcome::Invalid)
                }
                _ => Ok(Outcome::NotFound),
            }
        };
        self.through_cache(&key, ignore_caches, check).await
    }

    /// Checks the raw public key `spki` (DER SubjectPublicKeyInfo) that the peer sent against
    /// the TLSA records of `host`, `port` and `transport`, where only DANE-EE records with the
    /// SubjectPublicKeyInfo selector apply. The outcomes are those of [`Self::dane`].
    ///
    /// # Errors
    ///
    /// As for [`Self::dane`].
    pub async fn dane_raw_public_key(
        &self,
        service: (&str, u16, Transport),
        spki: &[u8],
        ignore_caches: bool,
    ) -> Result<Outcome, String> {
        let resolver = self.resolver.as_ref().map_err(Clone::clone)?;
        let (host, port, transport) = service;
        let owner = dane::tlsa_owner(host, port, transport);
        let key = CacheKey::new(CheckKind::DaneRawPublicKey, &owner, spki);
        let check = async {
            let outcome = dane::check_raw_public_key(resolver, host, port, transport, spki).await;
            if let Some(reason) = outcome.lookup_failure(&owner) {
                return Err(reason);
            }
            match outcome {
                DaneOutcome::Match(_) => Ok(Outcome::Success),
                DaneOutcome::NoMatch(reasons) => {
                    debug!(target: LOG_TARGET, owner = %owner, ?reasons,
                        "no tlsa record matches the raw public key");
                    Ok(Outcome::Invalid)
                }
                _ => Ok(Outcome::NotFound),
            }
        };
        self.through_cache(&key, ignore_caches, check).await
    }

    /// Checks the raw public key `spki` (DER SubjectPublicKeyInfo) that the peer sent against
    /// the OPENPGPKEY records of `address` (`user@domain`, RFC 7929). `Success` is a key that
    /// [`match_raw_public_key`](crate::openpgp::match_raw_public_key) accepts for the raw key
    /// and the address, now and under sequoia's standard policy. `NotFound` is a DNSSEC-proven
    /// absence of records, and `Invalid` records whose keys do not match.
    ///
    /// # Errors
    ///
    /// The reason there is no usable answer: DNSSEC off, an invalid address, an unsigned zone
    /// (whose keys do not count), a bogus or failed lookup. Nothing is cached then.
    pub async fn openpgpkey(
        &self,
        address: &str,
        spki: &[u8],
        ignore_caches: bool,
    ) -> Result<Outcome, String> {
        let resolver = self.resolver.as_ref().map_err(Clone::clone)?;
        let key = CacheKey::new(CheckKind::OpenPgpKey, address, spki);
        let check = async {
            let owner =
                openpgp::openpgpkey_owner_for(address).map_err(|error| error.to_string())?;
            let lookup = openpgp::lookup_openpgpkey(resolver, address)
                .await
                .map_err(|error| error.to_string())?;
            // The address is shorter than the owner name, so the reason fits an ERROR reply.
            if let Some(reason) = lookup.lookup_failure(address) {
                debug!(target: LOG_TARGET, owner = %owner, reason, "openpgpkey lookup gave no usable result");
                return Err(reason);
            }
            let OpenPgpKeyLookup::Found(keys) = lookup else {
                return Ok(Outcome::NotFound);
            };
            let policy = StandardPolicy::new();
            let candidates = keys.iter().map(Vec::as_slice);
            match openpgp::match_raw_public_key(
                spki,
                address,
                candidates,
                &policy,
                SystemTime::now(),
            ) {
                Ok(found) => {
                    debug!(target: LOG_TARGET, owner = %owner, key = %found.key.key,
                        "openpgpkey record matches the raw public key");
                    Ok(Outcome::Success)
                }
                Err(error) => {
                    debug!(target: LOG_TARGET, owner = %owner, %error,
                        "no openpgpkey record matches the raw public key");
                    Ok(Outcome::Invalid)
                }
            }
        };
        self.through_cache(&key, ignore_caches, check).await
    }

    /// Checks whether the global directory of `remote_id` holds `credential`.
    ///
    /// # Errors
    ///
    /// The reason the directory was not read: the check is off, or the server failed. All of
    /// `O`, `o`, `G` and `g` are false then, and nothing is cached.
    pub async fn directory(
        &self,
        remote_id: &str,
        credential: Credential<'_>,
        ignore_caches: bool,
    ) -> Result<Outcome, String> {
        let directory = self.directory.as_ref().map_err(Clone::clone)?;
        let (kind, bytes) = match credential {
            Credential::X509(der) => (CheckKind::DirectoryX509, der),
            Credential::OpenPgp(key) => (CheckKind::DirectoryOpenPgp, key),
            Credential::RawPublicKey(spki) => (CheckKind::DirectoryRawPublicKey, spki),
        };
        let key = CacheKey::new(kind, remote_id, bytes);
        let check = async {
            directory
                .check(remote_id, credential)
                .await
                .map_err(|error| format!("the directory check of {remote_id} failed: {error}"))
        };
        self.through_cache(&key, ignore_caches, check).await
    }

    /// Runs `check` through the cache when there is one, logging hits and bypasses.
    async fn through_cache(
        &self,
        key: &CacheKey,
        ignore_caches: bool,
        check: impl Future<Output = Result<Outcome, String>>,
    ) -> Result<Outcome, String> {
        let Some(cache) = &self.cache else {
            return check.await;
        };
        let kind = key.kind().name();
        if ignore_caches {
            debug!(target: LOG_TARGET, kind, "online check bypasses the cache (IGNORE_CACHES)");
        }
        let mut ran = false;
        let result = cache
            .cached(key, ignore_caches, async {
                ran = true;
                check.await
            })
            .await;
        if !ran {
            info!(target: LOG_TARGET, kind, outcome = ?result, "online check answered from the cache");
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Checks from a table; letters missing from it never finish.
    struct Table {
        values: Vec<(char, bool, Duration)>,
        started: Mutex<Vec<char>>,
    }

    impl Table {
        fn new(values: &[(char, bool, u64)]) -> Self {
            Self {
                values: values
                    .iter()
                    .map(|&(letter, value, ms)| (letter, value, Duration::from_millis(ms)))
                    .collect(),
                started: Mutex::new(Vec::new()),
            }
        }
    }

    impl PredicateChecks for Table {
        fn check(&self, predicate: Predicate) -> BoxFuture<'_, Finding> {
            let letter = predicate.letter();
            if let Ok(mut started) = self.started.lock() {
                started.push(letter);
            }
            let entry = self.values.iter().find(|entry| entry.0 == letter).copied();
            Box::pin(async move {
                let Some((_, value, delay)) = entry else {
                    return std::future::pending().await;
                };
                tokio::time::sleep(delay).await;
                Finding::new(value, format!("table value {value}"))
            })
        }
    }

    fn form(text: &str) -> NormalForm {
        NormalForm::parse(text).expect("valid expression")
    }

    #[tokio::test]
    async fn conjunction_fails_at_false_predicate() {
        let table = Table::new(&[('D', false, 5), ('T', true, 1)]);
        let verdict = evaluate(form("DT&"), &table, Duration::from_secs(1)).await;
        assert!(!verdict.accepted);
        let failed = verdict.failed_at.as_ref().expect("a predicate failed");
        assert_eq!(failed.predicate.letter(), 'D');
        assert_eq!(verdict.decided.len(), 2);
        assert_eq!(
            verdict.decided_text(),
            "T=1 (table value true), D=0 (table value false)"
        );
    }

    #[tokio::test]
    async fn disjunction_stops_slow_check() {
        // T answers first and makes the expression true; D would never finish.
        let table = Table::new(&[('T', true, 1)]);
        let verdict = evaluate(form("DT|"), &table, Duration::from_secs(30)).await;
        assert!(verdict.accepted);
        assert_eq!(verdict.failed_at, None);
        assert_eq!(verdict.decided.len(), 1);
    }

    #[tokio::test]
    async fn check_timeout_counts_as_false() {
        let table = Table::new(&[]);
        let verdict = evaluate(form("O"), &table, Duration::from_millis(20)).await;
        assert!(!verdict.accepted);
        let failed = verdict.failed_at.expect("O failed");
        assert_eq!(failed.predicate.letter(), 'O');
        assert!(failed.finding.reason.contains("timed out"), "{failed}");
    }

    #[tokio::test]
    async fn constant_expressions_start_nothing() {
        let table = Table::new(&[]);
        let accepted = evaluate(form("1"), &table, Duration::from_secs(1)).await;
        let rejected = evaluate(form("0"), &table, Duration::from_secs(1)).await;
        assert!(accepted.accepted);
        assert!(!rejected.accepted);
        assert_eq!(rejected.failed_at, None);
        assert!(table.started.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn checks_run_in_parallel() {
        let table = Table::new(&[('D', true, 300), ('O', true, 300), ('T', true, 300)]);
        let started = std::time::Instant::now();
        let verdict = evaluate(form("DO&T&"), &table, Duration::from_secs(5)).await;
        assert!(verdict.accepted);
        assert!(
            started.elapsed() < Duration::from_millis(800),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn online_checks_off_without_configuration() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _guard = runtime.enter();
        let checks = OnlineChecks::new(&OnlineSettings {
            dns_server: None,
            dnssec_rootkey: PathBuf::from("/nonexistent/root.key"),
            dns_timeout: Duration::from_secs(1),
            ldap_proxy: None,
            ldap_timeout: Duration::from_secs(1),
            cache: None,
        });
        let reasons = checks.unavailable();
        assert_eq!(reasons.len(), 2);
        assert!(reasons[0].contains("/nonexistent/root.key"), "{reasons:?}");
        assert!(reasons[1].contains("ldap_proxy"), "{reasons:?}");
    }
}
