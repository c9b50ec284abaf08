//! The configuration keywords: every key of the TLS Pool plus the keys this implementation adds.

use std::fmt;

/// Declares `Key` with one variant per keyword and the table that maps them to their names.
macro_rules! keys {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// A configuration keyword. Keywords are case-sensitive.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Key {
            $($(#[$doc])* $variant,)*
        }

        impl Key {
            /// Every keyword, in the order of the manual page.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)*];

            /// Returns the keyword as written in the file.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }

            /// Looks up a keyword exactly as written, or returns `None` for an unknown keyword.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

keys! {
    /// `daemon_pidfile`: the PID file, opened and locked in file order.
    DaemonPidfile = "daemon_pidfile",
    /// `socket_user`: owner of the sockets of later `socket_name` lines.
    SocketUser = "socket_user",
    /// `socket_group`: group of the sockets of later `socket_name` lines.
    SocketGroup = "socket_group",
    /// `socket_mode`: mode of the sockets of later `socket_name` lines.
    SocketMode = "socket_mode",
    /// `socket_name`: a listening socket, created in file order.
    SocketName = "socket_name",
    /// `daemon_user`: the user the daemon runs as once sockets and PID file exist.
    DaemonUser = "daemon_user",
    /// `daemon_group`: the group the daemon runs as once sockets and PID file exist.
    DaemonGroup = "daemon_group",
    /// `daemon_chroot`: the directory the daemon changes root to.
    DaemonChroot = "daemon_chroot",
    /// `pkcs11_path`: the PKCS #11 module of later `pkcs11_token` lines.
    Pkcs11Path = "pkcs11_path",
    /// `pkcs11_pin`: the PIN tried first for every token.
    Pkcs11Pin = "pkcs11_pin",
    /// `pkcs11_token`: a token URI, served by the module of the preceding `pkcs11_path`.
    Pkcs11Token = "pkcs11_token",
    /// `pkcs11_timeout`: seconds a credential lookup may take (added by this implementation).
    Pkcs11Timeout = "pkcs11_timeout",
    /// `openpgp_card_pin`: the user PIN tried first for every OpenPGP card (added).
    OpenpgpCardPin = "openpgp_card_pin",
    /// `ldap_proxy`: LDAP URI of the global directory.
    LdapProxy = "ldap_proxy",
    /// `memcache_ttl`: cache entry lifetime in seconds.
    MemcacheTtl = "memcache_ttl",
    /// `memcache_port`: port of the cache server.
    MemcachePort = "memcache_port",
    /// `memcache_host`: host of the cache server.
    MemcacheHost = "memcache_host",
    /// `privacy_attempt`: try the privacy-mode precursor handshake.
    PrivacyAttempt = "privacy_attempt",
    /// `radius_authn`: RADIUS authentication server.
    RadiusAuthn = "radius_authn",
    /// `radius_authz`: RADIUS authorisation server.
    RadiusAuthz = "radius_authz",
    /// `radius_acct`: RADIUS accounting server.
    RadiusAcct = "radius_acct",
    /// `log_level`: minimum syslog severity logged.
    LogLevel = "log_level",
    /// `log_filter`: categories logged.
    LogFilter = "log_filter",
    /// `log_stderr`: log to stderr instead of syslog.
    LogStderr = "log_stderr",
    /// `dbenv_dir`: directory of the databases.
    DbenvDir = "dbenv_dir",
    /// `db_localid`: file name of the local identity database.
    DbLocalid = "db_localid",
    /// `db_disclose`: file name of the disclosure database.
    DbDisclose = "db_disclose",
    /// `db_trust`: file name of the trust database.
    DbTrust = "db_trust",
    /// `tls_dhparamfile`: PKCS #3 PEM file caching Diffie-Hellman parameters.
    TlsDhparamfile = "tls_dhparamfile",
    /// `tls_maxpreauth`: bytes of early data accepted in privacy mode.
    TlsMaxpreauth = "tls_maxpreauth",
    /// `tls_onthefly_signcert`: DER certificate that signs on-the-fly certificates.
    TlsOntheflySigncert = "tls_onthefly_signcert",
    /// `tls_onthefly_signkey`: PKCS #11 URI of the private key of that certificate.
    TlsOntheflySignkey = "tls_onthefly_signkey",
    /// `allow_facilities`: facilities offered.
    AllowFacilities = "allow_facilities",
    /// `deny_facilities`: facilities withheld.
    DenyFacilities = "deny_facilities",
    /// `dnssec_rootkey`: DNSSEC trust anchor file.
    DnssecRootkey = "dnssec_rootkey",
    /// `kerberos_client_keytab`: keytab of the client role (TLS-KDH).
    KerberosClientKeytab = "kerberos_client_keytab",
    /// `kerberos_server_keytab`: keytab of the server role (TLS-KDH).
    KerberosServerKeytab = "kerberos_server_keytab",
    /// `kerberos_client_credcache`: credential cache of the client role (TLS-KDH).
    KerberosClientCredcache = "kerberos_client_credcache",
    /// `kerberos_server_credcache`: credential cache of the server role (TLS-KDH).
    KerberosServerCredcache = "kerberos_server_credcache",
    /// `quantum_proof_authentication`: require quantum-proof authentication.
    QuantumProofAuthentication = "quantum_proof_authentication",
    /// `quantum_proof_encryption`: require quantum-proof encryption.
    QuantumProofEncryption = "quantum_proof_encryption",
    /// `quantum_proof_handshake`: require a quantum-proof handshake.
    QuantumProofHandshake = "quantum_proof_handshake",
    /// `tls_priority`: GnuTLS priority string (added by this implementation).
    TlsPriority = "tls_priority",
    /// `validate_default`: validation expression for requests without one (added).
    ValidateDefault = "validate_default",
    /// `dns_server`: DNS server used for DANE lookups (added).
    DnsServer = "dns_server",
    /// `dtls_priority`: GnuTLS priority string of DTLS sessions (added).
    DtlsPriority = "dtls_priority",
    /// `dtls_mtu`: path MTU of DTLS sessions in bytes of UDP payload (added).
    DtlsMtu = "dtls_mtu",
    /// `dtls_idle_timeout`: seconds a DTLS session lives without a datagram from its peer
    /// (added).
    DtlsIdleTimeout = "dtls_idle_timeout",
    /// `tls_prefer_x509`: prefer X.509 over OpenPGP raw public keys (added).
    TlsPreferX509 = "tls_prefer_x509",
    /// `tls_privacy_services`: services and roles added to the privacy mode registry (added).
    TlsPrivacyServices = "tls_privacy_services",
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
