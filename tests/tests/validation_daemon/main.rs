//! Online validation through the built daemon, with the pool as TLS client of `gnutls-serv`
//! on loopback: `D` and `d` against TLSA records served by nsd under DNSSEC, `O`, `o`, `G`
//! and `g` against slapd, and memcached in front of both. Identities come from
//! `tlspool-admin dev-init`.
//!
//! Run through `scripts/netns-run.sh`, because `gnutls-serv` listens on every interface.

mod cache;
mod dane;
mod directory;
mod ocsp;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use ring::digest;
use tlspool_proto::{ErrorPayload, StartTls, StartTlsFlags};
use tlspool_tests::daemon::{TestDaemon, starttls_client};
use tlspool_tests::dev_pki::{DOMAIN, DevSetup, PEER, dev_setup};
use tlspool_tests::tls_peers::{Peer, free_port, gnutls_serv};

const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// `EKEYREJECTED`, the `errno` of a rejected peer.
const EKEYREJECTED: i32 = 129;

const CLIENT: StartTlsFlags =
    StartTlsFlags::LOCALROLE_CLIENT.union(StartTlsFlags::REMOTEROLE_SERVER);

/// The dev-init setup of the process and a directory of the test's own files.
struct Setup {
    dev: &'static DevSetup,
    files: tempfile::TempDir,
}

impl Setup {
    fn create() -> Self {
        Self {
            dev: dev_setup(),
            files: tempfile::tempdir().expect("temporary directory"),
        }
    }

    /// Returns the path of `name` in the test's own directory.
    fn path(&self, name: &str) -> PathBuf {
        self.files.path().join(name)
    }

    fn start_daemon(&self, extra: &[&str]) -> TestDaemon {
        self.dev.start_daemon_with(extra)
    }

    /// Starts `gnutls-serv` with the peer's chain and `extra` arguments on a free port.
    fn peer_server(&self, extra: &[&str]) -> (Peer, u16) {
        let port = free_port();
        let cert = self.dev.file("peer-cert.pem");
        let key = self.dev.file("peer-key.pem");
        let mut args = vec!["--echo", "--x509certfile", &cert, "--x509keyfile", &key];
        args.extend_from_slice(extra);
        let server = gnutls_serv(port, &args);
        (server, port)
    }

    /// Returns the DER of the peer's end certificate.
    fn peer_der(&self) -> Vec<u8> {
        pem_to_der(&self.dev.file("peer-cert.pem"))
    }

    /// Returns the DER of the test CA certificate, which the peer also sends in its chain.
    fn ca_der(&self) -> Vec<u8> {
        pem_to_der(&self.dev.file("ca.pem"))
    }

    /// Returns the DER SubjectPublicKeyInfo of the peer's end certificate.
    fn peer_spki(&self) -> Vec<u8> {
        let cert = self.dev.file("peer-cert.pem");
        let pem = openssl(&["x509", "-noout", "-pubkey", "-in", &cert]);
        let file = self.path("peer-pubkey.pem");
        std::fs::write(&file, pem).expect("write the public key");
        let file = file.to_str().expect("UTF-8 path");
        openssl(&["pkey", "-pubin", "-outform", "DER", "-in", file])
    }
}

/// Converts the first certificate of the PEM file at `path` to DER.
fn pem_to_der(path: &str) -> Vec<u8> {
    openssl(&["x509", "-outform", "DER", "-in", path])
}

/// Runs openssl and returns its standard output.
fn openssl(args: &[&str]) -> Vec<u8> {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Returns the lowercase hexadecimal SHA-256 digest of `data`.
fn sha256_hex(data: &[u8]) -> String {
    digest::digest(&digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Serialises the tests, which start several servers and daemons each, so that a loaded
/// machine runs one test's handshakes at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: OnceLock<Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| Mutex::new(()))
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Runs STARTTLS as client of the server on `port` for `PEER`.
fn pool_client(
    daemon: &TestDaemon,
    port: u16,
    flags: StartTlsFlags,
) -> Result<StartTls, ErrorPayload> {
    starttls_client(daemon, port, PEER, flags, STEP_TIMEOUT)
}

/// Asserts that the daemon accepted the peer as `PEER`.
fn assert_accepted(result: Result<StartTls, ErrorPayload>) {
    match result {
        Ok(reply) => assert_eq!(reply.remoteid.as_str(), PEER),
        Err(error) => panic!("the daemon rejected the peer: {}", error.message),
    }
}

/// Asserts that the daemon rejected the peer with a message containing `fragment`.
fn assert_rejected(result: Result<StartTls, ErrorPayload>, fragment: &str) {
    let error = result.expect_err("the daemon rejects the peer");
    assert_eq!(error.tlserrno, EKEYREJECTED, "{}", error.message);
    assert!(
        error.message.contains(fragment),
        "expected {fragment:?} in {:?}",
        error.message
    );
}
