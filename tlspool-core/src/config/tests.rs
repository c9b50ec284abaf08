//! Tests of the configuration reader: line syntax, every key, ordering and error messages.

use std::net::SocketAddr;
use std::path::Path;

use super::*;
use crate::logging::{LogCategories, LogLevel};

const ORIGIN: &str = "/etc/tlspool.conf";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new(ORIGIN))
}

fn parse_ok(text: &str) -> Config {
    match parse(text) {
        Ok(config) => config,
        Err(error) => panic!("{text:?} was rejected: {error}"),
    }
}

fn parse_err(text: &str) -> ConfigError {
    match parse(text) {
        Ok(config) => panic!("{text:?} was accepted: {config:?}"),
        Err(error) => error,
    }
}

// Line syntax.

#[test]
fn line_of_511_bytes_accepted() {
    let text = format!(
        "pkcs11_pin {}\n",
        "x".repeat(MAX_LINE_LENGTH - "pkcs11_pin ".len())
    );
    let config = parse_ok(&text);
    assert_eq!(config.pkcs11_pin().map(str::len), Some(500));
}

#[test]
fn line_of_512_bytes_rejected() {
    let text = format!("# {}\n", "x".repeat(MAX_LINE_LENGTH - 1));
    let error = parse_err(&text);
    assert!(
        matches!(
            error,
            ConfigError::LineTooLong {
                line: 1,
                length: 512,
                max: 511,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("too long"), "{error}");
}

#[test]
fn last_line_without_newline_rejected() {
    let error = parse_err("log_level DEBUG\nlog_stderr yes");
    assert!(
        matches!(error, ConfigError::MissingNewline { line: 2, .. }),
        "{error:?}"
    );
}

#[test]
fn last_comment_without_newline_rejected() {
    let error = parse_err("log_level DEBUG\n# end");
    assert!(
        matches!(error, ConfigError::MissingNewline { line: 2, .. }),
        "{error:?}"
    );
}

#[test]
fn comment_in_column_one_ignored() {
    let config = parse_ok("#log_level DEBUG\n# unknown_key x\n");
    assert_eq!(config.log_level(), LogLevel::Error);
    assert!(config.directives().is_empty());
}

#[test]
fn indented_comment_rejected() {
    let error = parse_err("  # comment\n");
    assert!(
        matches!(error, ConfigError::LeadingWhitespace { line: 1, .. }),
        "{error:?}"
    );
}

#[test]
fn hash_inside_value_is_literal() {
    let config = parse_ok("pkcs11_pin 12#34\n");
    assert_eq!(config.pkcs11_pin(), Some("12#34"));
}

#[test]
fn blank_lines_ignored() {
    let config = parse_ok("\n   \n\t\n \t \r\nlog_level INFO\n\n");
    assert_eq!(config.log_level(), LogLevel::Info);
    assert_eq!(config.directives().len(), 1);
    assert_eq!(config.directives()[0].line, 5);
}

#[test]
fn leading_whitespace_rejected() {
    let error = parse_err("log_level ERR\n log_level DEBUG\n");
    assert!(
        matches!(error, ConfigError::LeadingWhitespace { line: 2, .. }),
        "{error:?}"
    );
}

#[test]
fn leading_tab_rejected() {
    let error = parse_err("\tlog_level DEBUG\n");
    assert!(
        matches!(error, ConfigError::LeadingWhitespace { line: 1, .. }),
        "{error:?}"
    );
}

#[test]
fn only_first_space_separates() {
    let config = parse_ok("pkcs11_pin  two leading\n");
    assert_eq!(config.pkcs11_pin(), Some(" two leading"));
    let error = parse_err("socket_mode  0666\n");
    assert!(
        matches!(error, ConfigError::InvalidValue { ref value, .. } if value == " 0666"),
        "{error:?}"
    );
}

#[test]
fn empty_value_accepted() {
    let config = parse_ok("deny_facilities \n");
    assert_eq!(config.allowed_facilities(), 1);
    assert_eq!(config.directives()[0].value, "");
}

#[test]
fn trailing_blanks_kept_in_value() {
    let config = parse_ok("pkcs11_pin 1234  \n");
    assert_eq!(config.pkcs11_pin(), Some("1234  "));
    assert_eq!(config.directives()[0].value, "1234  ");
}

#[test]
fn keyword_without_space_rejected() {
    let error = parse_err("log_level\n");
    assert!(
        matches!(error, ConfigError::MissingSpace { line: 1, ref key, .. } if key == "log_level"),
        "{error:?}"
    );
}

#[test]
fn tab_does_not_separate() {
    let error = parse_err("pkcs11_pin\tsecret\n");
    assert!(
        matches!(error, ConfigError::TabAfterKey { line: 1, ref key, .. } if key == "pkcs11_pin"),
        "{error:?}"
    );
    assert!(!error.to_string().contains("secret"), "{error}");
}

#[test]
fn keywords_case_sensitive() {
    let error = parse_err("LOG_LEVEL DEBUG\n");
    assert!(
        matches!(error, ConfigError::UnknownKey { ref key, .. } if key == "LOG_LEVEL"),
        "{error:?}"
    );
}

#[test]
fn unknown_keyword_rejected() {
    let error = parse_err("log_level DEBUG\nquantum_proof_names yes\n");
    assert!(
        matches!(error, ConfigError::UnknownKey { line: 2, ref key, .. } if key == "quantum_proof_names"),
        "{error:?}"
    );
}

#[test]
fn repeated_key_last_value_wins() {
    let config = parse_ok("log_level DEBUG\nlog_level WARN\n");
    assert_eq!(config.log_level(), LogLevel::Warning);
    assert_eq!(config.directives().len(), 2);
}

#[test]
fn empty_file_gives_defaults() {
    let config = parse_ok("");
    assert!(config.sockets().is_empty());
    assert_eq!(
        config.log_settings(),
        crate::logging::LogSettings::default()
    );
    assert_eq!(config.tls_maxpreauth(), 32768);
    assert_eq!(config.allowed_facilities(), 1);
    assert_eq!(config.tls_priority(), DEFAULT_TLS_PRIORITY);
    assert_eq!(config.dnssec_rootkey(), Path::new("/etc/unbound/root.key"));
    assert_eq!(config.db_localid_path(), Path::new("localid.db"));
    assert_eq!(config.dns_server(), None);
    assert_eq!(config.daemon_pidfile(), None);
    assert_eq!(config.pkcs11_timeout(), std::time::Duration::from_secs(10));
}

#[test]
fn pkcs11_timeout_reads_seconds() {
    let config = parse_ok("pkcs11_timeout 3\n");
    assert_eq!(config.pkcs11_timeout(), std::time::Duration::from_secs(3));
}

// Error messages.

#[test]
fn error_names_file_line_and_key() {
    let text = "log_level ERR\n".repeat(11) + "socket_mode 08\n";
    let message = parse_err(&text).to_string();
    assert_eq!(
        message,
        "/etc/tlspool.conf:12: key \"socket_mode\": invalid value \"08\": \
         not an octal number in C syntax"
    );
}

#[test]
fn unknown_key_error_names_file_line_and_key() {
    let message = parse_err("\nsocket_nmae /tmp/x\n").to_string();
    assert_eq!(
        message,
        "/etc/tlspool.conf:2: key \"socket_nmae\": unknown key"
    );
}

#[test]
fn missing_space_error_names_file_line_and_key() {
    let message = parse_err("log_stderr\n").to_string();
    assert!(
        message.starts_with("/etc/tlspool.conf:1: key \"log_stderr\": "),
        "{message}"
    );
}

#[test]
fn load_reports_unreadable_file() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let missing = directory.path().join("absent.conf");
    let error = Config::load(&missing).expect_err("missing file");
    assert!(matches!(error, ConfigError::Read { .. }), "{error:?}");
    assert!(error.to_string().contains("absent.conf"), "{error}");
}

#[test]
fn load_reports_invalid_utf8_line() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("bad.conf");
    std::fs::write(&path, b"log_level ERR\npkcs11_pin \xff\n").expect("write file");
    let error = Config::load(&path).expect_err("invalid UTF-8");
    assert!(
        matches!(error, ConfigError::InvalidUtf8 { line: 2, .. }),
        "{error:?}"
    );
}

// Every key, with a valid and (where the grammar has one) an invalid value.

/// `(key, lines needed before it, valid value, invalid value)`.
const KEY_CASES: &[(Key, &str, &str, Option<&str>)] = &[
    (Key::DaemonPidfile, "", "/var/run/tlspool.pid", Some("")),
    (Key::SocketUser, "", "tlspool", Some("tls pool")),
    (Key::SocketGroup, "", "tlspool", Some("-group")),
    (Key::SocketMode, "", "0666", Some("0x")),
    (Key::SocketName, "", "/var/run/tlspool.sock", Some("")),
    (Key::DaemonUser, "", "tlspool", Some("tls:pool")),
    (Key::DaemonGroup, "", "tlspool", Some("")),
    (Key::DaemonChroot, "", "/var/lib/tlspool", Some("")),
    (
        Key::Pkcs11Path,
        "",
        "/usr/lib/softhsm/libsofthsm2.so",
        Some(""),
    ),
    (Key::Pkcs11Pin, "", "1234", None),
    (Key::Pkcs11Timeout, "", "30", Some("0")),
    (Key::OpenpgpCardPin, "", "123456", None),
    (
        Key::Pkcs11Token,
        "pkcs11_path /usr/lib/softhsm/libsofthsm2.so\n",
        "pkcs11:token=TLS%20Pool",
        Some("token=TLS%20Pool"),
    ),
    (
        Key::LdapProxy,
        "",
        "ldap://ldap.example.com",
        Some("ldap.example.com"),
    ),
    (Key::MemcacheTtl, "", "86400", Some("1d")),
    (Key::MemcachePort, "", "11211", Some("0")),
    (Key::MemcacheHost, "", "cache.example.com", Some("")),
    (Key::PrivacyAttempt, "", "yes", None),
    (Key::RadiusAuthn, "", "192.0.2.1:1812", Some("")),
    (Key::RadiusAuthz, "", "192.0.2.1:1812", Some("a b")),
    (Key::RadiusAcct, "", "192.0.2.1:1813", Some("")),
    (Key::LogLevel, "", "DEBUG", Some("VERBOSE")),
    (Key::LogFilter, "", "TLS,DB", Some("TLS,KERBEROS")),
    (Key::LogStderr, "", "YES", Some("maybe")),
    (Key::DbenvDir, "", "/var/db/tlspool", Some("")),
    (Key::DbLocalid, "", "localid.db", Some("")),
    (Key::DbDisclose, "", "disclose.db", Some("")),
    (Key::DbTrust, "", "trust.db", Some("")),
    (Key::TlsDhparamfile, "", "/var/db/tlspool/dh.pem", Some("")),
    (Key::TlsMaxpreauth, "", "16384", Some("16k")),
    (
        Key::TlsOntheflySigncert,
        "tls_onthefly_signkey pkcs11:object=signer\n",
        "file:/etc/tlspool/signer.der",
        Some("file:"),
    ),
    (
        Key::TlsOntheflySignkey,
        "tls_onthefly_signcert /etc/tlspool/signer.der\n",
        "pkcs11:object=signer",
        Some("/etc/tlspool/signer.key"),
    ),
    (Key::AllowFacilities, "", "starttls", None),
    (Key::DenyFacilities, "", "startgss,startssh", None),
    (Key::DnssecRootkey, "", "/usr/share/dns/root.key", Some("")),
    (
        Key::KerberosClientKeytab,
        "",
        "FILE:/etc/krb5.keytab",
        Some(""),
    ),
    (
        Key::KerberosServerKeytab,
        "",
        "FILE:/etc/krb5.keytab",
        Some(""),
    ),
    (
        Key::KerberosClientCredcache,
        "",
        "DIR:/tmp/krb5cc",
        Some(""),
    ),
    (
        Key::KerberosServerCredcache,
        "",
        "DIR:/tmp/krb5cc",
        Some(""),
    ),
    (Key::QuantumProofAuthentication, "", "no", None),
    (Key::QuantumProofEncryption, "", "no", None),
    (Key::QuantumProofHandshake, "", "no", None),
    (
        Key::TlsPriority,
        "",
        "SECURE256:-VERS-TLS1.2",
        Some("NORMAL SECURE"),
    ),
    (Key::ValidateDefault, "", "(L&T)", None),
    (
        Key::DnsServer,
        "",
        "127.0.0.1:5353",
        Some("dns.example.com"),
    ),
    (Key::TlsPreferX509, "", "yes", None),
    (
        Key::TlsPrivacyServices,
        "",
        "xmpp,ldap:server",
        Some("ldap:peer"),
    ),
    (
        Key::DtlsPriority,
        "",
        "NORMAL:-VERS-ALL:+VERS-DTLS1.2",
        Some("NORMAL SECURE"),
    ),
    (Key::DtlsMtu, "", "1400", Some("100")),
    (Key::DtlsIdleTimeout, "", "60", Some("0")),
];

#[test]
fn every_key_has_a_case() {
    for key in Key::ALL {
        assert!(
            KEY_CASES.iter().any(|(case, ..)| case == key),
            "no test case for {key}"
        );
    }
}

#[test]
fn every_key_accepts_valid_value() {
    for (key, before, valid, _) in KEY_CASES {
        let text = format!("{before}{key} {valid}\n");
        let config = parse_ok(&text);
        let last = config.directives().last().expect("a directive");
        assert_eq!(last.key, *key);
        assert_eq!(last.value, *valid);
    }
}

#[test]
fn every_key_rejects_invalid_value() {
    for (key, before, _, invalid) in KEY_CASES {
        let Some(invalid) = invalid else { continue };
        let text = format!("{before}{key} {invalid}\n");
        let error = parse_err(&text);
        let line = before.lines().count() + 1;
        let prefix = format!("{ORIGIN}:{line}: key \"{key}\": invalid value ");
        assert!(error.to_string().starts_with(&prefix), "{key}: {error}");
    }
}

#[test]
fn key_names_round_trip() {
    for key in Key::ALL {
        assert_eq!(Key::from_name(key.name()), Some(*key));
    }
    assert_eq!(Key::ALL.len(), 50);
}

// Value grammars.

#[test]
fn socket_mode_accepts_c_number_syntax() {
    for value in ["0666", "438", "0x1b6", "0X1B6"] {
        let config = parse_ok(&format!("socket_mode {value}\nsocket_name /tmp/s\n"));
        assert_eq!(config.sockets()[0].mode, Some(0o666), "{value}");
    }
    let config = parse_ok("socket_mode 0\nsocket_name /tmp/s\n");
    assert_eq!(config.sockets()[0].mode, Some(0));
}

#[test]
fn socket_mode_rejects_bad_numbers() {
    for value in [
        "08",
        "0666 ",
        "-1",
        "",
        "rw-rw-rw-",
        "010000",
        "0x",
        "99999999999999999999999",
    ] {
        let error = parse_err(&format!("socket_mode {value}\n"));
        assert!(
            matches!(
                error,
                ConfigError::InvalidValue {
                    key: "socket_mode",
                    ..
                }
            ),
            "{value:?}: {error:?}"
        );
    }
}

#[test]
fn yes_words_match_by_substring() {
    let truths = [
        "yes", "YES", "Yes", "= yes", "TRUE", "true", "Yep", "aye", "1", "10",
    ];
    for value in truths {
        let config = parse_ok(&format!("quantum_proof_encryption {value}\n"));
        assert!(config.quantum_proof_encryption(), "{value:?}");
    }
    for value in ["no", "", "0", "false", "yES", "off"] {
        let config = parse_ok(&format!("privacy_attempt {value}\n"));
        assert!(!config.privacy_attempt(), "{value:?}");
    }
}

#[test]
fn quantum_proof_keys_are_independent() {
    let config = parse_ok("quantum_proof_authentication yes\nquantum_proof_handshake true\n");
    assert!(config.quantum_proof_authentication());
    assert!(!config.quantum_proof_encryption());
    assert!(config.quantum_proof_handshake());
}

#[test]
fn facilities_offered_are_allow_minus_deny() {
    let cases = [
        ("", 1),
        ("allow_facilities starttls\n", 1),
        ("allow_facilities STARTTLS,startgss\n", 1),
        ("allow_facilities startgss\n", 0),
        ("allow_facilities \n", 0),
        ("allow_facilities *,bogus\n", 1),
        ("deny_facilities starttls\n", 0),
        ("deny_facilities StartSSH\n", 1),
        ("allow_facilities *\ndeny_facilities *\n", 0),
        ("deny_facilities bogus\n", 1),
    ];
    for (text, offered) in cases {
        assert_eq!(parse_ok(text).allowed_facilities(), offered, "{text:?}");
    }
}

#[test]
fn log_keys_set_log_settings() {
    let config = parse_ok("log_level notice\nlog_filter tls,Daemon\nlog_stderr 1\n");
    let settings = config.log_settings();
    assert_eq!(settings.level, LogLevel::Notice);
    assert_eq!(
        settings.categories,
        LogCategories::TLS | LogCategories::DAEMON
    );
    assert!(settings.stderr);
}

#[test]
fn log_filter_empty_selects_nothing() {
    let config = parse_ok("log_filter \n");
    assert_eq!(config.log_filter(), LogCategories::empty());
}

#[test]
fn log_stderr_words() {
    for (value, expected) in [("YES", true), ("yes", true), ("1", true), ("*", true)] {
        assert_eq!(
            parse_ok(&format!("log_stderr {value}\n")).log_stderr(),
            expected
        );
    }
    for (value, expected) in [("NO", false), ("no", false), ("0", false)] {
        assert_eq!(
            parse_ok(&format!("log_stderr {value}\n")).log_stderr(),
            expected
        );
    }
    for value in ["", "true", "YES "] {
        let error = parse_err(&format!("log_stderr {value}\n"));
        assert!(
            matches!(error, ConfigError::InvalidValue { .. }),
            "{value:?}"
        );
    }
}

#[test]
fn maxpreauth_above_u32_reverts_to_default() {
    let cases = [
        ("0", 0),
        ("1024", 1024),
        ("4294967295", u32::MAX),
        ("4294967296", 32768),
        ("99999999999999999999999999", 32768),
    ];
    for (value, expected) in cases {
        let config = parse_ok(&format!("tls_maxpreauth {value}\n"));
        assert_eq!(config.tls_maxpreauth(), expected, "{value}");
    }
    for value in ["-1", "0x10", "", " 10", "10 "] {
        let error = parse_err(&format!("tls_maxpreauth {value}\n"));
        assert!(
            matches!(error, ConfigError::InvalidValue { .. }),
            "{value:?}"
        );
    }
}

#[test]
fn signcert_file_prefix_stripped() {
    let config = parse_ok(
        "tls_onthefly_signcert file:/etc/tlspool/ca.der\n\
         tls_onthefly_signkey pkcs11:model=SoftHSM;object=ca\n",
    );
    assert_eq!(
        config.tls_onthefly_signcert(),
        Some(Path::new("/etc/tlspool/ca.der"))
    );
    assert_eq!(
        config.tls_onthefly_signkey(),
        Some("pkcs11:model=SoftHSM;object=ca")
    );
    let plain = parse_ok("tls_onthefly_signcert /ca.der\ntls_onthefly_signkey pkcs11:x\n");
    assert_eq!(plain.tls_onthefly_signcert(), Some(Path::new("/ca.der")));
}

#[test]
fn onthefly_signer_needs_both_keys() {
    let error = parse_err("log_level ERR\ntls_onthefly_signcert /ca.der\n");
    assert_eq!(
        error.to_string(),
        "/etc/tlspool.conf:2: key \"tls_onthefly_signcert\": \
         requires a \"tls_onthefly_signkey\" line as well"
    );
    let error = parse_err("tls_onthefly_signkey pkcs11:object=ca\n");
    assert!(
        matches!(
            error,
            ConfigError::MissingCompanion {
                key: "tls_onthefly_signkey",
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn database_paths_resolve_against_dbenv_dir() {
    let config = parse_ok("dbenv_dir /var/db/tlspool\ndb_trust /srv/trust.db\n");
    assert_eq!(config.dbenv_dir(), Some(Path::new("/var/db/tlspool")));
    assert_eq!(
        config.db_localid_path(),
        Path::new("/var/db/tlspool/localid.db")
    );
    assert_eq!(
        config.db_disclose_path(),
        Path::new("/var/db/tlspool/disclose.db")
    );
    assert_eq!(config.db_trust_path(), Path::new("/srv/trust.db"));
    let relative = parse_ok("db_localid ids.db\n");
    assert_eq!(relative.db_localid_path(), Path::new("ids.db"));
}

#[test]
fn dns_server_address_forms() {
    let cases = [
        ("127.0.0.1", "127.0.0.1:53"),
        ("127.0.0.1:5353", "127.0.0.1:5353"),
        ("::1", "[::1]:53"),
        ("[::1]", "[::1]:53"),
        ("[::1]:5353", "[::1]:5353"),
    ];
    for (value, expected) in cases {
        let config = parse_ok(&format!("dns_server {value}\n"));
        let expected: SocketAddr = expected.parse().expect("address");
        assert_eq!(config.dns_server(), Some(expected), "{value}");
    }
    assert_eq!(parse_ok("dns_server \n").dns_server(), None);
    assert!(parse("dns_server 127.0.0.1:99999\n").is_err());
}

#[test]
fn added_keys_have_accessors() {
    let config = parse_ok(
        "tls_priority SECURE192\nvalidate_default (L&(D|T))\nvalidate_default \n\
         validate_default (L&T)\n",
    );
    assert_eq!(config.tls_priority(), "SECURE192");
    assert_eq!(config.validate_default(), Some("(L&T)"));
    assert_eq!(parse_ok("validate_default \n").validate_default(), None);
}

#[test]
fn plain_string_keys_have_accessors() {
    let config = parse_ok(
        "ldap_proxy ldaps://ldap.example.com:636\nmemcache_host cache.example.com\n\
         memcache_port 11211\nmemcache_ttl 600\nradius_authn 192.0.2.1\n\
         radius_authz 192.0.2.2\nradius_acct 192.0.2.3\ntls_dhparamfile /var/dh.pem\n\
         dnssec_rootkey /var/root.key\nkerberos_client_keytab FILE:/c.keytab\n\
         kerberos_server_keytab FILE:/s.keytab\nkerberos_client_credcache DIR:/c\n\
         kerberos_server_credcache DIR:/s\n",
    );
    assert_eq!(config.ldap_proxy(), Some("ldaps://ldap.example.com:636"));
    assert_eq!(config.memcache_host(), Some("cache.example.com"));
    assert_eq!(config.memcache_port(), Some(11211));
    assert_eq!(config.memcache_ttl(), Some(600));
    assert_eq!(config.radius_authn(), Some("192.0.2.1"));
    assert_eq!(config.radius_authz(), Some("192.0.2.2"));
    assert_eq!(config.radius_acct(), Some("192.0.2.3"));
    assert_eq!(config.tls_dhparamfile(), Some(Path::new("/var/dh.pem")));
    assert_eq!(config.dnssec_rootkey(), Path::new("/var/root.key"));
    assert_eq!(config.kerberos_client_keytab(), Some("FILE:/c.keytab"));
    assert_eq!(config.kerberos_server_keytab(), Some("FILE:/s.keytab"));
    assert_eq!(config.kerberos_client_credcache(), Some("DIR:/c"));
    assert_eq!(config.kerberos_server_credcache(), Some("DIR:/s"));
}

// Ordering.

#[test]
fn socket_attributes_apply_to_later_sockets() {
    let config = parse_ok(
        "socket_name /tmp/plain.sock\n\
         socket_user tlspool\n\
         socket_name /tmp/owned.sock\n\
         socket_mode 0660\n\
         socket_group tlsusers\n\
         socket_name /tmp/full.sock\n\
         socket_mode 0600\n",
    );
    let sockets = config.sockets();
    assert_eq!(sockets.len(), 3);
    assert_eq!(
        sockets[0],
        SocketSpec {
            path: "/tmp/plain.sock".into(),
            user: None,
            group: None,
            mode: None,
            line: 1,
        }
    );
    assert_eq!(sockets[1].user.as_deref(), Some("tlspool"));
    assert_eq!(sockets[1].group, None);
    assert_eq!(sockets[1].mode, None);
    assert_eq!(sockets[1].line, 3);
    assert_eq!(sockets[2].user.as_deref(), Some("tlspool"));
    assert_eq!(sockets[2].group.as_deref(), Some("tlsusers"));
    assert_eq!(sockets[2].mode, Some(0o660));
    assert_eq!(sockets[2].line, 6);
}

#[test]
fn socket_path_must_fit_sun_path() {
    let fits = format!("/{}", "s".repeat(106));
    assert_eq!(
        parse_ok(&format!("socket_name {fits}\n")).sockets().len(),
        1
    );
    let too_long = format!("/{}", "s".repeat(107));
    let error = parse_err(&format!("socket_name {too_long}\n"));
    assert!(error.to_string().contains("sun_path"), "{error}");
}

#[test]
fn directives_keep_file_order() {
    let config = parse_ok(
        "daemon_user tlspool\n\
         socket_name /tmp/a.sock\n\
         daemon_pidfile /tmp/tlspool.pid\n\
         socket_name /tmp/b.sock\n",
    );
    let ordered: Vec<_> = config
        .directives()
        .iter()
        .map(|directive| (directive.key, directive.value.as_str(), directive.line))
        .collect();
    assert_eq!(
        ordered,
        [
            (Key::DaemonUser, "tlspool", 1),
            (Key::SocketName, "/tmp/a.sock", 2),
            (Key::DaemonPidfile, "/tmp/tlspool.pid", 3),
            (Key::SocketName, "/tmp/b.sock", 4),
        ]
    );
    assert_eq!(config.daemon_pidfile(), Some(Path::new("/tmp/tlspool.pid")));
    assert_eq!(config.daemon_user(), Some("tlspool"));
}

#[test]
fn pidfile_may_occur_once() {
    let error = parse_err("daemon_pidfile /tmp/a.pid\ndaemon_pidfile /tmp/b.pid\n");
    assert_eq!(
        error.to_string(),
        "/etc/tlspool.conf:2: key \"daemon_pidfile\": may occur only once (first at line 1)"
    );
}

#[test]
fn privilege_keys_are_plain_values() {
    let config = parse_ok(
        "daemon_chroot /var/lib/tlspool\ndaemon_user nobody\ndaemon_group 65534\n\
         daemon_user tlspool\nsocket_name /tmp/s.sock\n",
    );
    assert_eq!(config.daemon_chroot(), Some(Path::new("/var/lib/tlspool")));
    assert_eq!(config.daemon_user(), Some("tlspool"));
    assert_eq!(config.daemon_group(), Some("65534"));
    assert_eq!(config.sockets().len(), 1);
}

#[test]
fn tokens_use_preceding_module() {
    let config = parse_ok(
        "pkcs11_path /usr/lib/one.so\n\
         pkcs11_token pkcs11:token=a\n\
         pkcs11_path /usr/lib/two.so\n\
         pkcs11_token pkcs11:token=b\n",
    );
    let tokens = config.pkcs11_tokens();
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[0].module, Path::new("/usr/lib/one.so"));
    assert_eq!(tokens[0].uri, "pkcs11:token=a");
    assert_eq!(tokens[0].line, 2);
    assert_eq!(tokens[1].module, Path::new("/usr/lib/two.so"));
    assert_eq!(config.pkcs11_path(), Some(Path::new("/usr/lib/two.so")));
}

#[test]
fn token_without_module_rejected() {
    let error = parse_err("pkcs11_token pkcs11:token=a\n");
    assert_eq!(
        error.to_string(),
        "/etc/tlspool.conf:1: key \"pkcs11_token\": requires a \"pkcs11_path\" line before it"
    );
}

#[test]
fn debug_output_hides_pin() {
    let config = parse_ok("pkcs11_pin s3cret-pin\n");
    let debug = format!("{config:?}");
    assert!(!debug.contains("s3cret-pin"), "{debug}");
    assert!(debug.contains("redacted"), "{debug}");
}

#[test]
fn debug_output_hides_card_pin() {
    let config = parse_ok("openpgp_card_pin s3cret-card-pin\n");
    assert_eq!(config.openpgp_card_pin(), Some("s3cret-card-pin"));
    let debug = format!("{config:?}");
    assert!(!debug.contains("s3cret-card-pin"), "{debug}");
}

#[test]
fn sample_file_loads() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../etc/tlspool.conf");
    let config = match Config::load(&sample) {
        Ok(config) => config,
        Err(error) => panic!("{error}"),
    };
    assert!(!config.sockets().is_empty());
    assert!(config.daemon_pidfile().is_some());
}
