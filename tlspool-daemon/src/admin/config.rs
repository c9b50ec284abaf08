//! The configuration keys `tlspool-admin` needs: `dbenv_dir`, `db_localid`, `db_disclose` and
//! `db_trust`, each read as the original `tlspool_configvar` did (the first occurrence wins).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tlspool_core::configvar;
use tlspool_core::db::DbNames;

/// The location and names of the databases.
#[derive(Debug, Clone)]
pub(crate) struct DbSettings {
    /// The configuration file read.
    pub(crate) config_path: PathBuf,
    /// The environment directory (`dbenv_dir`).
    pub(crate) dbenv_dir: PathBuf,
    /// The database names (`db_localid`, `db_disclose`, `db_trust`, or their defaults).
    pub(crate) names: DbNames,
}

impl DbSettings {
    /// Reads the settings from the configuration file at `path`.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        // `configvar` returns `None` for an unreadable file, so check first to report why.
        std::fs::File::open(path)
            .with_context(|| format!("reading the configuration file {}", path.display()))?;
        let Some(dbenv_dir) = configvar(Some(path), "dbenv_dir") else {
            bail!(
                "{} does not set dbenv_dir (or has a syntax error before it), which \
                 tlspool-admin requires",
                path.display()
            );
        };

        let defaults = DbNames::default();
        let name = |key: &str, default: String| configvar(Some(path), key).unwrap_or(default);
        Ok(Self {
            config_path: path.to_owned(),
            dbenv_dir: PathBuf::from(dbenv_dir),
            names: DbNames {
                localid: name("db_localid", defaults.localid),
                disclose: name("db_disclose", defaults.disclose),
                trust: name("db_trust", defaults.trust),
            },
        })
    }
}
