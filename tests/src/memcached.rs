//! A harness that runs memcached on loopback (`-U 0 -m 16 -u memcache`) and kills it when
//! dropped.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::ldap::free_port;

/// How long [`Memcached::start`] waits for memcached to answer `version`.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running memcached, killed with SIGKILL when dropped.
#[derive(Debug)]
pub struct Memcached {
    child: Option<Child>,
    port: u16,
}

impl Memcached {
    /// Starts memcached on a free port of 127.0.0.1 and waits until it answers.
    ///
    /// # Panics
    ///
    /// When memcached cannot be started or does not answer within [`START_TIMEOUT`].
    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new("memcached")
            .args(["-l", "127.0.0.1", "-p", &port.to_string()])
            .args(["-U", "0", "-m", "16", "-u", "memcache"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start memcached");
        let memcached = Self {
            child: Some(child),
            port,
        };

        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if memcached.answers_version() {
                return memcached;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("memcached on port {port} did not answer within {START_TIMEOUT:?}");
    }

    /// Returns the TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills memcached and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn answers_version(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let mut reply = [0; 8];
        stream.write_all(b"version\r\n").is_ok()
            && stream
                .read(&mut reply)
                .is_ok_and(|n| reply[..n].starts_with(b"VERSION"))
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        self.stop();
    }
}
