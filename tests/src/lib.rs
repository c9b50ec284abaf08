//! Integration tests that start the built TLS Pool binaries against real servers on loopback.

pub mod daemon;
pub mod dev_pki;
pub mod dns;
pub mod ldap;
pub mod memcached;
pub mod tls_peers;
pub mod virtual_card;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};

/// Returns the path of the workspace binary `name` in the debug profile, building it with
/// `cargo build --bin NAME` the first time a test process asks for it.
///
/// The binary is taken from `$CARGO_TARGET_DIR` when that is set, else from the workspace's
/// `target/` directory. With `TLSPOOL_TESTS_PREBUILT` set (as `scripts/test.sh` does after
/// `cargo build --workspace --bins`), nothing is built: a per-binary `cargo build --bin`
/// resolves features for one package only, so it would rebuild and relink what the workspace
/// build already made.
///
/// # Panics
///
/// When cargo cannot be started or the build fails, so the calling test fails with the reason.
pub fn bin_path(name: &str) -> PathBuf {
    static BUILT: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits inside the workspace directory");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };

    let prebuilt = std::env::var_os("TLSPOOL_TESTS_PREBUILT").is_some();
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    if !prebuilt && !built.contains(name) {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--bin", name])
            .current_dir(workspace)
            .status()
            .unwrap_or_else(|err| panic!("starting cargo to build {name} failed: {err}"));
        assert!(
            status.success(),
            "cargo build --bin {name} failed with {status}"
        );
        built.insert(name.to_owned());
    }
    target.join("debug").join(name)
}
