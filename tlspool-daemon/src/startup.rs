//! The start-up sequence and the run of the daemon, in the order the TLS Pool version 2
//! protocol's daemon follows: configuration, logging, PID file, sockets in file order,
//! privileges, background, databases and PKCS #11, serve, clean up.
//!
//! The databases and the PKCS #11 module are opened after the switch to the background,
//! because neither an LMDB environment nor a PKCS #11 module may be used across `fork`.

use std::process;
use std::sync::Arc;

use anyhow::Context as _;
use tracing::{info, warn};

use tlspool_core::config::Config;
use tlspool_core::configvar;
use tlspool_core::db::{DbEnv, DbNames, OpenMode};
use tlspool_core::logging::{TARGET_DAEMON, TARGET_FILES, init_subscriber};
use tlspool_proto::Facilities;

use crate::callbacks::CallbackTable;
use crate::connection::Shared;
use crate::daemonize::{Forked, fork_to_background};
use crate::error::DaemonError;
use crate::lidentry::LidEntryService;
use crate::listener::Listener;
use crate::options::Options;
use crate::pidfile::PidFile;
use crate::pinentry::PinEntryService;
use crate::privileges::Privileges;
use crate::server;
use crate::sessions::SessionRegistry;
use crate::starttls::{CredentialLoader, OnTheFlySigner, TlsResources};
use crate::tokens;

/// Worker threads of the runtime. Connections are tasks, so a few threads serve many.
const WORKER_THREADS: usize = 2;

/// The facilities this daemon implements.
const IMPLEMENTED_FACILITIES: Facilities = Facilities::STARTTLS;

/// Runs the daemon with `options` until a stop signal, or prints the version for `-V`.
///
/// Without `-f` the process forks once the sockets listen; the parent returns when the child
/// reports that it serves.
///
/// # Errors
///
/// The first failure of the start-up, with the step that failed as context: the
/// configuration error (naming file, line and key), a held PID file, a socket that cannot be
/// created, an unknown account or a failed privilege change.
pub fn run(options: Options) -> anyhow::Result<()> {
    if options.version {
        println!("tlspool {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }

    let config = Config::load(&options.config).context("loading the configuration")?;
    crate::starttls::Validation::check_config(&config).context("loading the configuration")?;
    init_subscriber(&config.log_settings()).context("setting up logging")?;
    info!(target: TARGET_DAEMON, version = env!("CARGO_PKG_VERSION"), pid = process::id(),
        "starting");
    info!(target: TARGET_FILES, path = %options.config.display(),
        sockets = config.sockets().len(), "configuration loaded");

    let pid_file = config
        .daemon_pidfile()
        .map(|path| PidFile::acquire(path, options.kill))
        .transpose()
        .context("locking the PID file")?;
    let mut listeners = Vec::new();
    for spec in config.sockets() {
        let listener = Listener::bind(spec)
            .with_context(|| format!("creating the socket of configuration line {}", spec.line))?;
        listeners.push(listener);
    }
    if listeners.is_empty() {
        warn!(target: TARGET_DAEMON, "no socket_name line, so the daemon accepts no clients");
    }
    Privileges::resolve(&config)
        .and_then(|privileges| privileges.apply())
        .context("changing root directory, group and user")?;

    let mut notifier = None;
    if !options.foreground {
        match fork_to_background().context("switching to the background")? {
            Forked::Parent(waiter) => {
                let result = waiter.wait();
                // The child holds the same lock and sockets now, and unlocking or removing
                // them here would undo its start.
                std::mem::forget((pid_file, listeners));
                return result.map(drop).context("starting the daemon");
            }
            Forked::Child(ready) => {
                if let Some(pid_file) = &pid_file {
                    pid_file.write_pid(process::id())?;
                }
                notifier = Some(ready);
            }
        }
    }

    tlspool_core::tls::check_priority(config.tls_priority())
        .context("checking tls_priority of the configuration")?;
    tlspool_core::tls::check_priority(config.dtls_priority())
        .context("checking dtls_priority of the configuration")?;
    let databases = open_databases(&config)?;
    let pin_entry = PinEntryService::new();
    let token_login = tokens::set_up(&config, databases.as_ref(), &pin_entry)
        .context("setting up PKCS #11")?
        .map(Arc::new);
    let tls = TlsResources {
        databases,
        priority: config.tls_priority().to_owned(),
        prefer_x509: config.tls_prefer_x509(),
        credentials: CredentialLoader::new(config.pkcs11_timeout())
            .with_token_login(token_login.clone())
            .with_openpgp_cards(config.openpgp_card_pin(), Arc::clone(&pin_entry)),
        validation: crate::starttls::Validation::from_config(&config),
        pin_entry,
        lidentry: LidEntryService::new(),
        on_the_fly: OnTheFlySigner::from_config(&config)
            .context("loading the on-the-fly signer")?,
        dtls: crate::starttls::DtlsSettings::new(
            config.dtls_priority().to_owned(),
            config.dtls_mtu(),
            config.dtls_idle_timeout(),
        )
        .context("generating the DTLS cookie secret")?,
        privacy: crate::starttls::PrivacySettings::from_config(&config),
    };

    let (sockets, socket_files): (Vec<_>, Vec<_>) =
        listeners.into_iter().map(Listener::into_parts).unzip();
    let shared = Arc::new(Shared {
        offered: offered_facilities(&config),
        callbacks: CallbackTable::new(),
        tls: Arc::new(tls),
        sessions: SessionRegistry::new(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .thread_name("tlspool-worker")
        .enable_all()
        .build()
        .map_err(|source| DaemonError::Runtime {
            call: "building the tokio runtime",
            source,
        })?;
    let on_ready = || {
        info!(target: TARGET_DAEMON, "serving");
        if let Some(notifier) = notifier.as_mut() {
            notifier.notify();
        }
    };
    runtime.block_on(server::serve(sockets, shared, on_ready))?;
    drop(runtime);
    drop(token_login);

    drop(socket_files);
    drop(pid_file);
    info!(target: TARGET_DAEMON, "stopped");
    Ok(())
}

/// Opens the existing databases of `dbenv_dir`, or returns `None` without `dbenv_dir`. They
/// are opened for writing so that the choices of a local identity selection service can be
/// stored in the disclose database.
fn open_databases(config: &Config) -> anyhow::Result<Option<DbEnv>> {
    let Some(dir) = config.dbenv_dir() else {
        warn!(target: TARGET_FILES, "no dbenv_dir configured, so every STARTTLS request fails");
        return Ok(None);
    };
    let names = database_names(config);
    let databases = DbEnv::open(dir, &names, OpenMode::ReadWriteExisting).with_context(|| {
        format!(
            "opening the databases in {} (create them with tlspool-admin db create)",
            dir.display()
        )
    })?;
    info!(target: TARGET_FILES, dir = %dir.display(), "databases opened");
    Ok(Some(databases))
}

/// Returns the database names of `db_localid`, `db_disclose` and `db_trust`, read as
/// `tlspool-admin` reads them, so the daemon opens the databases the tool writes.
fn database_names(config: &Config) -> DbNames {
    let defaults = DbNames::default();
    let name =
        |key: &str, default: String| configvar(Some(config.origin()), key).unwrap_or(default);
    DbNames {
        localid: name("db_localid", defaults.localid),
        disclose: name("db_disclose", defaults.disclose),
        trust: name("db_trust", defaults.trust),
    }
}

/// Returns the facilities PING offers: implemented, current and allowed by the configuration.
fn offered_facilities(config: &Config) -> Facilities {
    Facilities::from_bits_truncate(config.allowed_facilities())
        & Facilities::ALL_CURRENT
        & IMPLEMENTED_FACILITIES
}
