//! One `tlspool-admin dev-init` setup per test process, with the domains `dev.example` and
//! `other.example`, and daemons started on its SoftHSM2 token and databases.
//!
//! The daemon's credentials sit on the token. The external peer `peer.dev.example` has its
//! certificate in `peer-cert.pem` and its key in `peer-key.pem`, issued by the CA in `ca.pem`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock, PoisonError};

use tempfile::TempDir;

use crate::bin_path;
use crate::daemon::TestDaemon;
use crate::tls_peers::{self, Peer};

/// The server identity dev-init issues on the token.
pub const DOMAIN: &str = "dev.example";
/// A second identity on the token.
pub const OTHER_DOMAIN: &str = "other.example";
/// The external peer of dev-init, with its key in a file.
pub const PEER: &str = "peer.dev.example";

/// The output directory of one dev-init run.
#[derive(Debug)]
pub struct DevSetup {
    _temp: TempDir,
    dir: PathBuf,
}

/// Returns the dev-init setup of this test process, running dev-init on first use.
///
/// # Panics
///
/// When `tlspool-admin dev-init` fails. The message contains its stderr.
pub fn dev_setup() -> &'static DevSetup {
    static SETUP: OnceLock<DevSetup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let temp = tempfile::tempdir().expect("temporary directory");
        let dir = temp.path().join("dev");
        let output = Command::new(bin_path("tlspool-admin"))
            .arg("dev-init")
            .arg(&dir)
            .args(["--domain", DOMAIN, "--domain", OTHER_DOMAIN])
            .output()
            .expect("run tlspool-admin dev-init");
        assert!(
            output.status.success(),
            "dev-init failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        DevSetup { _temp: temp, dir }
    })
}

/// Starts `openssl s_server` on 127.0.0.1:`port` with the external peer's certificate. It
/// requires a client certificate issued by the dev-init CA and prints the verified subjects,
/// such as `depth=0 O = ..., CN = dev.example`.
pub fn verifying_s_server(port: u16) -> Peer {
    let setup = dev_setup();
    tls_peers::openssl_s_server(
        port,
        &[
            "-cert",
            &setup.file("peer-cert.pem"),
            "-key",
            &setup.file("peer-key.pem"),
            "-CAfile",
            &setup.file("ca.pem"),
            "-Verify",
            "1",
            "-verify_return_error",
        ],
    )
}

impl DevSetup {
    /// Returns the path of `name` in the dev-init directory, as a string for command lines.
    pub fn file(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    /// Returns the dev-init directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts a daemon on the token and databases of this setup, with a socket of its own.
    pub fn start_daemon(&self) -> TestDaemon {
        self.start_daemon_with(&[])
    }

    /// Starts a daemon like [`Self::start_daemon`] with `extra_config_lines` added to its
    /// configuration.
    pub fn start_daemon_with(&self, extra_config_lines: &[&str]) -> TestDaemon {
        let config = std::fs::read_to_string(self.dir.join("tlspool.conf")).expect("dev config");
        let lines: Vec<&str> = config
            .lines()
            .filter(|line| {
                ["pkcs11_", "dbenv_dir"]
                    .iter()
                    .any(|prefix| line.starts_with(prefix))
            })
            .chain(extra_config_lines.iter().copied())
            .collect();
        let softhsm = self.dir.join("softhsm2.conf");
        // SoftHSM 2.6 failed C_GetTokenInfo with CKR_GENERAL_ERROR now and then when several
        // daemons started on the same token directory at once, so they start one at a time.
        static STARTING: Mutex<()> = Mutex::new(());
        let _starting = STARTING.lock().unwrap_or_else(PoisonError::into_inner);
        TestDaemon::start_with_env(&lines, &[("SOFTHSM2_CONF", softhsm.as_path())])
    }
}
