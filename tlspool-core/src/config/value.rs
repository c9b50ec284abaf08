//! Value grammars of the configuration keys. Each parser returns the reason a value is invalid,
//! and the caller adds file, line and key.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// `PIOF_FACILITY_STARTTLS`, the STARTTLS facility bit of the PING record.
pub(crate) const FACILITY_STARTTLS: u32 = 0x0000_0001;
/// `PIOF_FACILITY_STARTGSS`, reserved and never offered.
const FACILITY_STARTGSS: u32 = 0x0000_0002;
/// `PIOF_FACILITY_STARTSSH`, reserved and never offered.
const FACILITY_STARTSSH: u32 = 0x0000_0004;
/// `PIOF_FACILITY_ALL_CURRENT`, every facility this implementation supports.
pub(crate) const FACILITY_ALL_CURRENT: u32 = FACILITY_STARTTLS;

/// Default of `tls_maxpreauth`, also used for values above `u32::MAX`.
pub(crate) const DEFAULT_MAXPREAUTH: u32 = 32768;

/// Largest path a `sockaddr_un` holds on Linux: 108 bytes including the NUL.
pub(crate) const MAX_SOCKET_PATH: usize = 107;

/// Largest mode `socket_mode` accepts (permission, setuid, setgid and sticky bits).
const MAX_SOCKET_MODE: u64 = 0o7777;

/// Port used when `dns_server` gives none.
const DNS_PORT: u16 = 53;

/// Substrings that make a yes-word value true.
const YES_WORDS: [&str; 13] = [
    "YES", "Yes", "yes", "TRUE", "True", "true", "YEP", "Yep", "yep", "AYE", "Aye", "aye", "1",
];

/// Reason text for a value error.
pub(crate) type Reason = String;

/// Parses a yes-word value: true when it contains any yes-word as a substring, as in the TLS
/// Pool, so `yes`, `= yes` and `1` are true and anything else is false.
pub(crate) fn yes_word(value: &str) -> bool {
    YES_WORDS.iter().any(|word| value.contains(word))
}

/// Parses `log_stderr`: `YES`, `1` or `*` for true and `NO` or `0` for false, case-insensitive.
pub(crate) fn stderr_switch(value: &str) -> Result<bool, Reason> {
    match value {
        "1" | "*" => Ok(true),
        "0" => Ok(false),
        _ if value.eq_ignore_ascii_case("yes") => Ok(true),
        _ if value.eq_ignore_ascii_case("no") => Ok(false),
        _ => Err("expected YES, 1 or * to log to stderr, or NO or 0 for syslog".to_owned()),
    }
}

/// Parses an unsigned number in C syntax: `0x` or `0X` then hexadecimal, `0` then octal, or
/// decimal. No sign and no surrounding blanks.
pub(crate) fn c_number(value: &str) -> Result<u64, Reason> {
    let (digits, radix, base_name) = if let Some(hex) = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        (hex, 16, "a hexadecimal")
    } else if value.len() > 1 && value.starts_with('0') {
        (&value[1..], 8, "an octal")
    } else {
        (value, 10, "a decimal")
    };
    if digits.is_empty() {
        return Err("expected a number".to_owned());
    }
    if !digits.chars().all(|digit| digit.is_digit(radix)) {
        return Err(format!("not {base_name} number in C syntax"));
    }
    u64::from_str_radix(digits, radix).map_err(|_| "number too large".to_owned())
}

/// Parses `socket_mode`: a C number of at most `07777`.
pub(crate) fn socket_mode(value: &str) -> Result<u32, Reason> {
    let mode = c_number(value)?;
    if mode > MAX_SOCKET_MODE {
        return Err(format!("mode {mode:#o} exceeds 07777"));
    }
    u32::try_from(mode).map_err(|_| "number too large".to_owned())
}

/// Parses an unsigned decimal number.
fn decimal<T: std::str::FromStr>(value: &str) -> Result<T, Reason> {
    if value.is_empty() || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err("expected a decimal number".to_owned());
    }
    value.parse().map_err(|_| "number too large".to_owned())
}

/// Parses `memcache_ttl`: decimal seconds.
pub(crate) fn seconds(value: &str) -> Result<u32, Reason> {
    decimal(value)
}

/// Parses a timeout: decimal seconds, at least 1.
pub(crate) fn timeout_seconds(value: &str) -> Result<u32, Reason> {
    match decimal::<u32>(value) {
        Ok(0) | Err(_) => Err("expected a whole number of seconds, at least 1".to_owned()),
        Ok(seconds) => Ok(seconds),
    }
}

/// Parses `dtls_mtu`: decimal bytes of UDP payload, from 256 (the smallest a DTLS handshake
/// accepts here) to 65507 (the largest UDP payload over IPv4).
pub(crate) fn dtls_mtu(value: &str) -> Result<u16, Reason> {
    match decimal::<u16>(value) {
        Ok(mtu) if (crate::tls::MIN_DTLS_MTU..=65507).contains(&mtu) => Ok(mtu),
        _ => Err(format!(
            "expected a number of bytes from {} to 65507",
            crate::tls::MIN_DTLS_MTU
        )),
    }
}

/// Parses a TCP or UDP port, 1 to 65535.
pub(crate) fn port(value: &str) -> Result<u16, Reason> {
    match decimal::<u16>(value) {
        Ok(0) | Err(_) => Err("expected a port number from 1 to 65535".to_owned()),
        Ok(port) => Ok(port),
    }
}

/// Parses `tls_maxpreauth`: decimal bytes, where values above `u32::MAX` give 32768.
pub(crate) fn max_preauth(value: &str) -> Result<u32, Reason> {
    if value.is_empty() || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err("expected a decimal number of bytes".to_owned());
    }
    Ok(value.parse().unwrap_or(DEFAULT_MAXPREAUTH))
}

/// Parses a facility list into its bits: comma-separated, case-insensitive `starttls`,
/// `startgss`, `startssh` and `*`. Unknown words are ignored, as in the TLS Pool.
pub(crate) fn facilities(value: &str) -> u32 {
    let mut bits = 0;
    for word in value.split(',') {
        bits |= match word.to_ascii_lowercase().as_str() {
            "starttls" => FACILITY_STARTTLS,
            "startgss" => FACILITY_STARTGSS,
            "startssh" => FACILITY_STARTSSH,
            "*" => FACILITY_ALL_CURRENT,
            _ => 0,
        };
    }
    bits
}

/// Parses a path: any non-empty text without NUL, taken literally (trailing blanks included).
pub(crate) fn path(value: &str) -> Result<PathBuf, Reason> {
    if value.is_empty() {
        return Err("expected a path".to_owned());
    }
    if value.contains('\0') {
        return Err("a path cannot contain NUL".to_owned());
    }
    Ok(PathBuf::from(value))
}

/// Parses a `socket_name` path, which must fit `sun_path`.
pub(crate) fn socket_path(value: &str) -> Result<PathBuf, Reason> {
    let parsed = path(value)?;
    if value.len() > MAX_SOCKET_PATH {
        return Err(format!(
            "socket path of {} bytes exceeds the {MAX_SOCKET_PATH} bytes of sun_path",
            value.len()
        ));
    }
    Ok(parsed)
}

/// Parses `tls_onthefly_signcert`: a path with an optional `file:` prefix.
pub(crate) fn signcert_path(value: &str) -> Result<PathBuf, Reason> {
    path(value.strip_prefix("file:").unwrap_or(value))
}

/// Checks the syntax of a user or group name, or a numeric id. Whether it exists is checked by
/// the daemon when it applies it.
pub(crate) fn account_name(value: &str) -> Result<String, Reason> {
    if value.is_empty() {
        return Err("expected a name".to_owned());
    }
    if value.starts_with('-') {
        return Err("a name cannot start with '-'".to_owned());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$');
    if let Some(bad) = value.chars().find(|&c| !allowed(c)) {
        return Err(format!("character {bad:?} is not allowed in a name"));
    }
    Ok(value.to_owned())
}

/// Checks a single word without blanks, such as a host, an address or a priority string.
pub(crate) fn word(value: &str, what: &str) -> Result<String, Reason> {
    if value.is_empty() {
        return Err(format!("expected {what}"));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{what} cannot contain blanks or control characters"
        ));
    }
    Ok(value.to_owned())
}

/// Parses a non-empty text taken literally, such as a keytab or credential cache name.
pub(crate) fn text(value: &str, what: &str) -> Result<String, Reason> {
    if value.is_empty() {
        return Err(format!("expected {what}"));
    }
    Ok(value.to_owned())
}

/// Parses an LDAP URI: `ldap://`, `ldaps://` or `ldapi://` then the rest.
pub(crate) fn ldap_uri(value: &str) -> Result<String, Reason> {
    let uri = word(value, "an LDAP URI")?;
    let scheme = uri.split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        Some(scheme)
            if ["ldap", "ldaps", "ldapi"].contains(&scheme.to_ascii_lowercase().as_str()) =>
        {
            Ok(uri)
        }
        _ => Err("expected an LDAP URI starting with ldap://, ldaps:// or ldapi://".to_owned()),
    }
}

/// Parses a PKCS #11 URI (RFC 7512): `pkcs11:` then the attributes.
pub(crate) fn pkcs11_uri(value: &str) -> Result<String, Reason> {
    let uri = word(value, "a PKCS #11 URI")?;
    if !uri.starts_with("pkcs11:") {
        return Err("expected a PKCS #11 URI starting with pkcs11:".to_owned());
    }
    Ok(uri)
}

/// Parses `dns_server`: empty for the system resolver, else an IP address with an optional
/// port (`192.0.2.1`, `192.0.2.1:5353`, `2001:db8::1`, `[2001:db8::1]:5353`).
pub(crate) fn dns_server(value: &str) -> Result<Option<SocketAddr>, Reason> {
    if value.is_empty() {
        return Ok(None);
    }
    if let Ok(address) = value.parse::<SocketAddr>() {
        return Ok(Some(address));
    }
    let bare = value
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(value);
    match bare.parse::<IpAddr>() {
        Ok(address) => Ok(Some(SocketAddr::new(address, DNS_PORT))),
        Err(_) => Err("expected an IP address with an optional :port".to_owned()),
    }
}
