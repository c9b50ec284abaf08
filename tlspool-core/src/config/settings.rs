//! The plain-value keys: their storage (the last value wins), their parsing and the typed
//! accessors of [`Config`] with the defaults of the TLS Pool.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::value::{self, Reason};
use super::{Config, Key, PrivacyRoles};
use crate::logging::{LogCategories, LogLevel, LogSettings};

/// Default of `tls_priority`: TLS 1.3 and 1.2 only, with safe renegotiation.
pub const DEFAULT_TLS_PRIORITY: &str =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:%SAFE_RENEGOTIATION";

/// Default of `dtls_priority`: DTLS 1.2 only, with safe renegotiation.
pub const DEFAULT_DTLS_PRIORITY: &str = "NORMAL:-VERS-ALL:+VERS-DTLS1.2:%SAFE_RENEGOTIATION";

/// Default of `dtls_idle_timeout`, in seconds.
pub const DEFAULT_DTLS_IDLE_TIMEOUT: u32 = 300;

/// Default of `pkcs11_timeout`, in seconds.
pub const DEFAULT_PKCS11_TIMEOUT: u32 = 10;

/// Default of `dnssec_rootkey`.
pub const DEFAULT_DNSSEC_ROOTKEY: &str = "/etc/unbound/root.key";

/// The last value of every key that is not acted on in file order.
#[derive(Clone, Debug, Default)]
pub(super) struct Settings {
    daemon_user: Option<String>,
    daemon_group: Option<String>,
    daemon_chroot: Option<PathBuf>,
    pkcs11_pin: Option<Pin>,
    pkcs11_timeout: Option<u32>,
    openpgp_card_pin: Option<Pin>,
    ldap_proxy: Option<String>,
    memcache_ttl: Option<u32>,
    memcache_port: Option<u16>,
    memcache_host: Option<String>,
    privacy_attempt: bool,
    tls_privacy_services: Vec<(String, PrivacyRoles)>,
    radius_authn: Option<String>,
    radius_authz: Option<String>,
    radius_acct: Option<String>,
    log_level: LogLevel,
    log_filter: LogCategories,
    log_stderr: bool,
    dbenv_dir: Option<PathBuf>,
    db_localid: Option<PathBuf>,
    db_disclose: Option<PathBuf>,
    db_trust: Option<PathBuf>,
    tls_dhparamfile: Option<PathBuf>,
    tls_maxpreauth: Option<u32>,
    tls_onthefly_signcert: Option<PathBuf>,
    tls_onthefly_signkey: Option<String>,
    allow_facilities: Option<u32>,
    deny_facilities: u32,
    dnssec_rootkey: Option<PathBuf>,
    kerberos_client_keytab: Option<String>,
    kerberos_server_keytab: Option<String>,
    kerberos_client_credcache: Option<String>,
    kerberos_server_credcache: Option<String>,
    quantum_proof_authentication: bool,
    quantum_proof_encryption: bool,
    quantum_proof_handshake: bool,
    tls_priority: Option<String>,
    validate_default: Option<String>,
    dns_server: Option<SocketAddr>,
    dtls_priority: Option<String>,
    dtls_mtu: Option<u16>,
    dtls_idle_timeout: Option<u32>,
    tls_prefer_x509: bool,
}

/// A PIN from the configuration, kept out of `Debug` output.
#[derive(Clone)]
struct Pin(String);

impl Settings {
    /// Parses `value` for a plain-value `key` and stores it, replacing an earlier value.
    ///
    /// The ordered keys (`daemon_pidfile`, `socket_*`, `pkcs11_path`, `pkcs11_token`) are
    /// handled by the caller and ignored here.
    pub(super) fn apply(&mut self, key: Key, value: &str) -> Result<(), Reason> {
        match key {
            Key::DaemonUser => self.daemon_user = Some(value::account_name(value)?),
            Key::DaemonGroup => self.daemon_group = Some(value::account_name(value)?),
            Key::DaemonChroot => self.daemon_chroot = Some(value::path(value)?),
            Key::Pkcs11Pin => self.pkcs11_pin = Some(Pin(value.to_owned())),
            Key::Pkcs11Timeout => self.pkcs11_timeout = Some(value::timeout_seconds(value)?),
            Key::OpenpgpCardPin => self.openpgp_card_pin = Some(Pin(value.to_owned())),
            Key::LdapProxy => self.ldap_proxy = Some(value::ldap_uri(value)?),
            Key::MemcacheTtl => self.memcache_ttl = Some(value::seconds(value)?),
            Key::MemcachePort => self.memcache_port = Some(value::port(value)?),
            Key::MemcacheHost => self.memcache_host = Some(value::word(value, "a host name")?),
            Key::PrivacyAttempt => self.privacy_attempt = value::yes_word(value),
            Key::RadiusAuthn => self.radius_authn = Some(value::word(value, "an address")?),
            Key::RadiusAuthz => self.radius_authz = Some(value::word(value, "an address")?),
            Key::RadiusAcct => self.radius_acct = Some(value::word(value, "an address")?),
            Key::LogLevel => self.log_level = parse_level(value)?,
            Key::LogFilter => self.log_filter = parse_filter(value)?,
            Key::LogStderr => self.log_stderr = value::stderr_switch(value)?,
            Key::DbenvDir => self.dbenv_dir = Some(value::path(value)?),
            Key::DbLocalid => self.db_localid = Some(value::path(value)?),
            Key::DbDisclose => self.db_disclose = Some(value::path(value)?),
            Key::DbTrust => self.db_trust = Some(value::path(value)?),
            Key::TlsDhparamfile => self.tls_dhparamfile = Some(value::path(value)?),
            Key::TlsMaxpreauth => self.tls_maxpreauth = Some(value::max_preauth(value)?),
            Key::TlsOntheflySigncert => {
                self.tls_onthefly_signcert = Some(value::signcert_path(value)?);
            }
            Key::TlsOntheflySignkey => {
                self.tls_onthefly_signkey = Some(value::pkcs11_uri(value)?);
            }
            Key::AllowFacilities => self.allow_facilities = Some(value::facilities(value)),
            Key::DenyFacilities => self.deny_facilities = value::facilities(value),
            Key::DnssecRootkey => self.dnssec_rootkey = Some(value::path(value)?),
            Key::KerberosClientKeytab => {
                self.kerberos_client_keytab = Some(value::text(value, "a keytab name")?);
            }
            Key::KerberosServerKeytab => {
                self.kerberos_server_keytab = Some(value::text(value, "a keytab name")?);
            }
            Key::KerberosClientCredcache => {
                self.kerberos_client_credcache = Some(value::text(value, "a ccache name")?);
            }
            Key::KerberosServerCredcache => {
                self.kerberos_server_credcache = Some(value::text(value, "a ccache name")?);
            }
            Key::QuantumProofAuthentication => {
                self.quantum_proof_authentication = value::yes_word(value);
            }
            Key::QuantumProofEncryption => self.quantum_proof_encryption = value::yes_word(value),
            Key::QuantumProofHandshake => self.quantum_proof_handshake = value::yes_word(value),
            Key::TlsPriority => {
                self.tls_priority = Some(value::word(value, "a GnuTLS priority string")?);
            }
            Key::ValidateDefault => {
                self.validate_default = (!value.is_empty()).then(|| value.to_owned());
            }
            Key::DnsServer => self.dns_server = value::dns_server(value)?,
            Key::DtlsPriority => {
                self.dtls_priority = Some(value::word(value, "a GnuTLS priority string")?);
            }
            Key::DtlsMtu => self.dtls_mtu = Some(value::dtls_mtu(value)?),
            Key::DtlsIdleTimeout => {
                self.dtls_idle_timeout = Some(value::timeout_seconds(value)?);
            }
            Key::TlsPreferX509 => self.tls_prefer_x509 = value::yes_word(value),
            Key::TlsPrivacyServices => {
                let entries = super::privacy::privacy_services(value)?;
                self.tls_privacy_services.extend(entries);
            }
            Key::DaemonPidfile
            | Key::SocketUser
            | Key::SocketGroup
            | Key::SocketMode
            | Key::SocketName
            | Key::Pkcs11Path
            | Key::Pkcs11Token => {}
        }
        Ok(())
    }

    /// Returns the on-the-fly signer keys, for the check that both or neither are set.
    pub(super) fn onthefly_signer(&self) -> (bool, bool) {
        (
            self.tls_onthefly_signcert.is_some(),
            self.tls_onthefly_signkey.is_some(),
        )
    }
}

fn parse_level(value: &str) -> Result<LogLevel, Reason> {
    LogLevel::from_word(value).ok_or_else(|| {
        let words: Vec<_> = LogLevel::words().collect();
        format!("expected one of {}", words.join(", "))
    })
}

fn parse_filter(value: &str) -> Result<LogCategories, Reason> {
    LogCategories::from_list(value).map_err(|unknown| {
        let words: Vec<_> = LogCategories::words().collect();
        format!(
            "unknown category {:?}; expected a comma-separated list of {}",
            unknown.0,
            words.join(", ")
        )
    })
}

/// Typed accessors, with the defaults of the TLS Pool where a key is absent.
impl Config {
    /// Returns the user the daemon switches to (`daemon_user`), not yet resolved.
    pub fn daemon_user(&self) -> Option<&str> {
        self.settings.daemon_user.as_deref()
    }

    /// Returns the group the daemon switches to (`daemon_group`), not yet resolved.
    pub fn daemon_group(&self) -> Option<&str> {
        self.settings.daemon_group.as_deref()
    }

    /// Returns the directory the daemon changes root to (`daemon_chroot`).
    pub fn daemon_chroot(&self) -> Option<&Path> {
        self.settings.daemon_chroot.as_deref()
    }

    /// Returns the PIN tried first for every PKCS #11 token (`pkcs11_pin`).
    pub fn pkcs11_pin(&self) -> Option<&str> {
        self.settings.pkcs11_pin.as_ref().map(|pin| pin.0.as_str())
    }

    /// Returns the time a credential lookup (localid read and token key import) may take
    /// (`pkcs11_timeout`, default [`DEFAULT_PKCS11_TIMEOUT`] seconds).
    pub fn pkcs11_timeout(&self) -> std::time::Duration {
        let seconds = self
            .settings
            .pkcs11_timeout
            .unwrap_or(DEFAULT_PKCS11_TIMEOUT);
        std::time::Duration::from_secs(u64::from(seconds))
    }

    /// Returns the user PIN (PW1) tried first for every OpenPGP card (`openpgp_card_pin`).
    pub fn openpgp_card_pin(&self) -> Option<&str> {
        self.settings
            .openpgp_card_pin
            .as_ref()
            .map(|pin| pin.0.as_str())
    }

    /// Returns the LDAP URI of the global directory (`ldap_proxy`).
    pub fn ldap_proxy(&self) -> Option<&str> {
        self.settings.ldap_proxy.as_deref()
    }

    /// Returns the lifetime of cache entries in seconds (`memcache_ttl`).
    pub fn memcache_ttl(&self) -> Option<u32> {
        self.settings.memcache_ttl
    }

    /// Returns the port of the cache server (`memcache_port`).
    pub fn memcache_port(&self) -> Option<u16> {
        self.settings.memcache_port
    }

    /// Returns the host of the cache server (`memcache_host`).
    pub fn memcache_host(&self) -> Option<&str> {
        self.settings.memcache_host.as_deref()
    }

    /// Tells whether to try the privacy-mode precursor (`privacy_attempt`, default false).
    pub fn privacy_attempt(&self) -> bool {
        self.settings.privacy_attempt
    }

    /// Returns the privacy mode registry entries of every `tls_privacy_services` line, which
    /// add to [`BUILT_IN_PRIVACY_SERVICES`](super::BUILT_IN_PRIVACY_SERVICES).
    pub fn tls_privacy_services(&self) -> &[(String, PrivacyRoles)] {
        &self.settings.tls_privacy_services
    }

    /// Returns the RADIUS authentication server (`radius_authn`).
    pub fn radius_authn(&self) -> Option<&str> {
        self.settings.radius_authn.as_deref()
    }

    /// Returns the RADIUS authorisation server (`radius_authz`).
    pub fn radius_authz(&self) -> Option<&str> {
        self.settings.radius_authz.as_deref()
    }

    /// Returns the RADIUS accounting server (`radius_acct`).
    pub fn radius_acct(&self) -> Option<&str> {
        self.settings.radius_acct.as_deref()
    }

    /// Returns the minimum severity logged (`log_level`, default `ERR`).
    pub fn log_level(&self) -> LogLevel {
        self.settings.log_level
    }

    /// Returns the categories logged (`log_filter`, default all).
    pub fn log_filter(&self) -> LogCategories {
        self.settings.log_filter
    }

    /// Tells whether to log to stderr instead of syslog (`log_stderr`, default false).
    pub fn log_stderr(&self) -> bool {
        self.settings.log_stderr
    }

    /// Returns `log_level`, `log_filter` and `log_stderr` together.
    pub fn log_settings(&self) -> LogSettings {
        LogSettings {
            level: self.log_level(),
            categories: self.log_filter(),
            stderr: self.log_stderr(),
        }
    }

    /// Returns the directory of the databases (`dbenv_dir`).
    pub fn dbenv_dir(&self) -> Option<&Path> {
        self.settings.dbenv_dir.as_deref()
    }

    /// Returns the local identity database (`db_localid`, default `localid.db`), relative to
    /// `dbenv_dir` when that is set and the name is relative.
    pub fn db_localid_path(&self) -> PathBuf {
        self.database_path(self.settings.db_localid.as_deref(), "localid.db")
    }

    /// Returns the disclosure database (`db_disclose`, default `disclose.db`), resolved as
    /// [`db_localid_path`](Self::db_localid_path) is.
    pub fn db_disclose_path(&self) -> PathBuf {
        self.database_path(self.settings.db_disclose.as_deref(), "disclose.db")
    }

    /// Returns the trust database (`db_trust`, default `trust.db`), resolved as
    /// [`db_localid_path`](Self::db_localid_path) is.
    pub fn db_trust_path(&self) -> PathBuf {
        self.database_path(self.settings.db_trust.as_deref(), "trust.db")
    }

    /// Returns the PKCS #3 PEM file that caches DH parameters (`tls_dhparamfile`).
    pub fn tls_dhparamfile(&self) -> Option<&Path> {
        self.settings.tls_dhparamfile.as_deref()
    }

    /// Returns the bytes of early data accepted in privacy mode (`tls_maxpreauth`, default
    /// 32768, also for values above `u32::MAX`).
    pub fn tls_maxpreauth(&self) -> u32 {
        self.settings
            .tls_maxpreauth
            .unwrap_or(value::DEFAULT_MAXPREAUTH)
    }

    /// Returns the DER certificate that signs on-the-fly certificates (`tls_onthefly_signcert`,
    /// with any `file:` prefix removed). The TLS Pool accepts at most 5000 bytes of DER.
    pub fn tls_onthefly_signcert(&self) -> Option<&Path> {
        self.settings.tls_onthefly_signcert.as_deref()
    }

    /// Returns the PKCS #11 URI of the signer's private key (`tls_onthefly_signkey`).
    pub fn tls_onthefly_signkey(&self) -> Option<&str> {
        self.settings.tls_onthefly_signkey.as_deref()
    }

    /// Returns the facility bits offered to clients: `PIOF_FACILITY_ALL_CURRENT` (0x1) masked
    /// by `allow_facilities` (default all) and with `deny_facilities` (default none) removed.
    pub fn allowed_facilities(&self) -> u32 {
        let allow = self
            .settings
            .allow_facilities
            .unwrap_or(value::FACILITY_ALL_CURRENT);
        value::FACILITY_ALL_CURRENT & allow & !self.settings.deny_facilities
    }

    /// Returns the DNSSEC trust anchor file (`dnssec_rootkey`, default `/etc/unbound/root.key`).
    pub fn dnssec_rootkey(&self) -> &Path {
        self.settings
            .dnssec_rootkey
            .as_deref()
            .unwrap_or_else(|| Path::new(DEFAULT_DNSSEC_ROOTKEY))
    }

    /// Returns the keytab of the client role (`kerberos_client_keytab`).
    pub fn kerberos_client_keytab(&self) -> Option<&str> {
        self.settings.kerberos_client_keytab.as_deref()
    }

    /// Returns the keytab of the server role (`kerberos_server_keytab`).
    pub fn kerberos_server_keytab(&self) -> Option<&str> {
        self.settings.kerberos_server_keytab.as_deref()
    }

    /// Returns the credential cache of the client role (`kerberos_client_credcache`).
    pub fn kerberos_client_credcache(&self) -> Option<&str> {
        self.settings.kerberos_client_credcache.as_deref()
    }

    /// Returns the credential cache of the server role (`kerberos_server_credcache`).
    pub fn kerberos_server_credcache(&self) -> Option<&str> {
        self.settings.kerberos_server_credcache.as_deref()
    }

    /// Tells whether quantum-proof authentication is required (default false).
    pub fn quantum_proof_authentication(&self) -> bool {
        self.settings.quantum_proof_authentication
    }

    /// Tells whether quantum-proof encryption is required (default false).
    pub fn quantum_proof_encryption(&self) -> bool {
        self.settings.quantum_proof_encryption
    }

    /// Tells whether a quantum-proof handshake is required (default false).
    pub fn quantum_proof_handshake(&self) -> bool {
        self.settings.quantum_proof_handshake
    }

    /// Returns the GnuTLS priority string (`tls_priority`, default [`DEFAULT_TLS_PRIORITY`]).
    pub fn tls_priority(&self) -> &str {
        self.settings
            .tls_priority
            .as_deref()
            .unwrap_or(DEFAULT_TLS_PRIORITY)
    }

    /// Returns whether X.509 certificates are preferred over OpenPGP raw public keys when both
    /// sides of a handshake can use either (`tls_prefer_x509`, default no).
    pub fn tls_prefer_x509(&self) -> bool {
        self.settings.tls_prefer_x509
    }

    /// Returns the GnuTLS priority string of DTLS sessions (`dtls_priority`, default
    /// [`DEFAULT_DTLS_PRIORITY`]).
    pub fn dtls_priority(&self) -> &str {
        self.settings
            .dtls_priority
            .as_deref()
            .unwrap_or(DEFAULT_DTLS_PRIORITY)
    }

    /// Returns the configured path MTU of DTLS sessions in bytes of UDP payload (`dtls_mtu`),
    /// or `None` to take it from each UDP socket.
    pub fn dtls_mtu(&self) -> Option<u16> {
        self.settings.dtls_mtu
    }

    /// Returns how long a DTLS session lives without a datagram from its peer
    /// (`dtls_idle_timeout`, default [`DEFAULT_DTLS_IDLE_TIMEOUT`] seconds).
    pub fn dtls_idle_timeout(&self) -> std::time::Duration {
        let seconds = self
            .settings
            .dtls_idle_timeout
            .unwrap_or(DEFAULT_DTLS_IDLE_TIMEOUT);
        std::time::Duration::from_secs(u64::from(seconds))
    }

    /// Returns the validation expression for requests without one (`validate_default`), not
    /// yet parsed. It is `None` when absent or empty.
    pub fn validate_default(&self) -> Option<&str> {
        self.settings.validate_default.as_deref()
    }

    /// Returns the DNS server for DANE lookups (`dns_server`, port 53 unless given), or `None`
    /// for the system resolver.
    pub fn dns_server(&self) -> Option<SocketAddr> {
        self.settings.dns_server
    }

    fn database_path(&self, configured: Option<&Path>, default: &str) -> PathBuf {
        let name = configured.unwrap_or_else(|| Path::new(default));
        match self.dbenv_dir() {
            Some(directory) => directory.join(name),
            None => name.to_owned(),
        }
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}
