//! The thread that owns the memcached connection and serves lookups and stores from a bounded
//! queue, so the synchronous memcache client never blocks an async task.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::{CacheConfig, QUEUE_CAPACITY, RECONNECT_INTERVAL};

/// Minimum time between two warnings about an unreachable memcached.
const WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// A request to the worker.
#[derive(Debug)]
pub(super) enum Request {
    /// Look up a key and send the value, or `None` on a miss or failure.
    Get {
        key: String,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    /// Store a value; nobody waits for the result.
    Set { key: String, value: Vec<u8> },
}

/// Spawns the worker and returns the sending side of its queue.
pub(super) fn spawn(config: &CacheConfig) -> std::io::Result<SyncSender<Request>> {
    let (sender, receiver) = sync_channel(QUEUE_CAPACITY);
    let mut worker = Worker {
        server: format!("{}:{}", config.host, config.port),
        url: memcache_url(&config.host, config.port),
        ttl: u32::try_from(config.ttl.as_secs()).unwrap_or(u32::MAX),
        io_timeout: config.io_timeout,
        client: None,
        failed_at: None,
        warned_at: None,
        suppressed: 0,
    };
    // Log through the subscriber of the thread that starts the cache.
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    thread::Builder::new()
        .name("tlspool-memcache".to_owned())
        .spawn(move || {
            tracing::dispatcher::with_default(&dispatch, || worker.run(&receiver));
        })?;
    Ok(sender)
}

struct Worker {
    server: String,
    url: String,
    ttl: u32,
    io_timeout: Duration,
    client: Option<memcache::Client>,
    failed_at: Option<Instant>,
    warned_at: Option<Instant>,
    suppressed: u64,
}

impl Worker {
    fn run(&mut self, receiver: &Receiver<Request>) {
        debug!(server = %self.server, "memcache worker started");
        while let Ok(request) = receiver.recv() {
            match request {
                Request::Get { key, reply } => {
                    let value = self.get(&key);
                    // The caller may have timed out and gone; that is not an error.
                    let _ = reply.send(value);
                }
                Request::Set { key, value } => self.set(&key, &value),
            }
        }
        debug!(server = %self.server, "memcache worker stopped");
    }

    fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        let client = self.client()?;
        match client.get::<Vec<u8>>(key) {
            Ok(value) => value,
            Err(error) => {
                self.fail("get", &error);
                None
            }
        }
    }

    fn set(&mut self, key: &str, value: &[u8]) {
        let ttl = self.ttl;
        let Some(client) = self.client() else {
            return;
        };
        if let Err(error) = client.set(key, value, ttl) {
            self.fail("set", &error);
        }
    }

    /// Returns the connected client, connecting first unless a failure happened less than
    /// [`RECONNECT_INTERVAL`] ago.
    fn client(&mut self) -> Option<&memcache::Client> {
        if self.client.is_none() {
            if self
                .failed_at
                .is_some_and(|at| at.elapsed() < RECONNECT_INTERVAL)
            {
                return None;
            }
            match self.connect() {
                Ok(client) => {
                    debug!(server = %self.server, "connected to memcached");
                    self.client = Some(client);
                }
                Err(error) => {
                    self.fail("connect", &error);
                    return None;
                }
            }
        }
        self.client.as_ref()
    }

    fn connect(&self) -> Result<memcache::Client, memcache::MemcacheError> {
        let client = memcache::Client::builder()
            .add_server(self.url.as_str())?
            .with_max_pool_size(1)
            .with_connection_timeout(self.io_timeout)
            .with_read_timeout(self.io_timeout)
            .with_write_timeout(self.io_timeout)
            .build()?;
        // The pool connects lazily; ask for the version so a dead server fails here.
        client.version()?;
        Ok(client)
    }

    /// Drops the connection and warns at most once per [`WARNING_INTERVAL`].
    fn fail(&mut self, operation: &'static str, error: &memcache::MemcacheError) {
        self.client = None;
        self.failed_at = Some(Instant::now());
        if self
            .warned_at
            .is_some_and(|at| at.elapsed() < WARNING_INTERVAL)
        {
            self.suppressed += 1;
            debug!(server = %self.server, operation, %error, "memcached request failed");
            return;
        }
        warn!(
            server = %self.server,
            operation,
            %error,
            suppressed = self.suppressed,
            "memcached unreachable, online checks run uncached"
        );
        self.warned_at = Some(Instant::now());
        self.suppressed = 0;
    }
}

fn memcache_url(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("memcache://[{host}]:{port}?tcp_nodelay=true")
    } else {
        format!("memcache://{host}:{port}?tcp_nodelay=true")
    }
}
