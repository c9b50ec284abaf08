//! Configuration lookups of client programs: the configuration file they read, the first value
//! of a key in it, and the daemon socket they connect to.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::syntax::Entries;

/// Environment variable that names the configuration file for clients.
pub const CONFIG_FILE_ENV: &str = "TLSPOOL_CONFIG_FILE";

/// Configuration file used when none is given.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/tlspool.conf";

/// Daemon socket used when the configuration names none.
pub const DEFAULT_SOCKET_PATH: &str = "/var/run/tlspool.sock";

/// Returns the configuration file of clients: `$TLSPOOL_CONFIG_FILE` when set and not empty,
/// else `/etc/tlspool.conf`.
pub fn client_config_path() -> PathBuf {
    config_path_from(std::env::var_os(CONFIG_FILE_ENV))
}

/// Returns the first value of key `name` in the configuration file `path`, or in
/// [`client_config_path`] when `path` is `None`.
///
/// This follows the TLS Pool's `tlspool_configvar`: the keyword is not checked against the
/// known keys, the first occurrence wins, and `None` is returned when the file cannot be read
/// or a syntax error comes before the first occurrence.
pub fn configvar(path: Option<&Path>, name: &str) -> Option<String> {
    let file = path.map_or_else(client_config_path, Path::to_owned);
    let bytes = std::fs::read(&file).ok()?;
    first_value(&valid_text(&bytes), &file, name)
}

/// Returns the daemon socket a client connects to: `explicit` if given, else the first
/// `socket_name` of [`client_config_path`], else `/var/run/tlspool.sock`.
pub fn client_socket_path(explicit: Option<&Path>) -> PathBuf {
    socket_path_from(explicit, std::env::var_os(CONFIG_FILE_ENV))
}

/// Picks the configuration file from the value of `TLSPOOL_CONFIG_FILE`.
fn config_path_from(environment: Option<OsString>) -> PathBuf {
    environment
        .filter(|value| !value.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE), PathBuf::from)
}

/// Looks up the socket as [`client_socket_path`] does, with the environment passed in.
fn socket_path_from(explicit: Option<&Path>, environment: Option<OsString>) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_owned();
    }
    let file = config_path_from(environment);
    configvar(Some(&file), "socket_name")
        .map_or_else(|| PathBuf::from(DEFAULT_SOCKET_PATH), PathBuf::from)
}

/// Returns the complete lines of the UTF-8 prefix of `bytes`. A line with invalid UTF-8 ends
/// the text as a syntax error does.
fn valid_text(bytes: &[u8]) -> String {
    let valid = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            let prefix = String::from_utf8_lossy(&bytes[..error.valid_up_to()]).into_owned();
            let end = prefix.rfind('\n').map_or(0, |newline| newline + 1);
            return prefix[..end].to_owned();
        }
    };
    valid.to_owned()
}

/// Returns the first value of `name` in `text`, or `None` at a syntax error before it.
fn first_value(text: &str, origin: &Path, name: &str) -> Option<String> {
    for entry in Entries::new(text, origin) {
        let entry = entry.ok()?;
        if entry.keyword == name {
            return Some(entry.value.to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::process::Command;

    use super::*;

    fn config_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temporary file");
        file.write_all(text.as_bytes())
            .expect("write configuration");
        file
    }

    #[test]
    fn configvar_returns_first_value() {
        let file = config_file("socket_name /tmp/first\nsocket_name /tmp/second\n");
        let value = configvar(Some(file.path()), "socket_name");
        assert_eq!(value.as_deref(), Some("/tmp/first"));
    }

    #[test]
    fn configvar_keeps_value_verbatim() {
        let file = config_file("pkcs11_pin  12 34 \n");
        let value = configvar(Some(file.path()), "pkcs11_pin");
        assert_eq!(value.as_deref(), Some(" 12 34 "));
    }

    #[test]
    fn configvar_skips_keyword_check() {
        let file = config_file("no_such_key value\n");
        let value = configvar(Some(file.path()), "no_such_key");
        assert_eq!(value.as_deref(), Some("value"));
    }

    #[test]
    fn configvar_stops_at_syntax_error() {
        let file = config_file(" indented line\nsocket_name /tmp/x\n");
        assert_eq!(configvar(Some(file.path()), "socket_name"), None);
    }

    #[test]
    fn configvar_returns_value_before_syntax_error() {
        let file = config_file("socket_name /tmp/x\nbroken\n");
        let value = configvar(Some(file.path()), "socket_name");
        assert_eq!(value.as_deref(), Some("/tmp/x"));
    }

    #[test]
    fn configvar_missing_key_is_none() {
        let file = config_file("log_level DEBUG\n");
        assert_eq!(configvar(Some(file.path()), "socket_name"), None);
    }

    #[test]
    fn configvar_unreadable_file_is_none() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let missing = directory.path().join("absent.conf");
        assert_eq!(configvar(Some(&missing), "socket_name"), None);
    }

    #[test]
    fn configvar_stops_at_invalid_utf8() {
        let mut file = tempfile::NamedTempFile::new().expect("temporary file");
        file.write_all(b"log_level ERR\nsocket_name /tmp/\xff\nsocket_name /tmp/y\n")
            .expect("write configuration");
        assert_eq!(configvar(Some(file.path()), "socket_name"), None);
        let level = configvar(Some(file.path()), "log_level");
        assert_eq!(level.as_deref(), Some("ERR"));
    }

    #[test]
    fn socket_path_prefers_explicit_path() {
        let file = config_file("socket_name /tmp/from-config\n");
        let path = socket_path_from(Some(Path::new("/tmp/explicit")), Some(file.path().into()));
        assert_eq!(path, Path::new("/tmp/explicit"));
    }

    #[test]
    fn socket_path_reads_first_socket_name() {
        let file = config_file("socket_name /tmp/first\nsocket_name /tmp/second\n");
        let path = socket_path_from(None, Some(file.path().into()));
        assert_eq!(path, Path::new("/tmp/first"));
    }

    #[test]
    fn socket_path_defaults_without_socket_name() {
        let file = config_file("log_level ERR\n");
        let path = socket_path_from(None, Some(file.path().into()));
        assert_eq!(path, Path::new(DEFAULT_SOCKET_PATH));
    }

    #[test]
    fn socket_path_defaults_for_missing_file() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let missing = directory.path().join("absent.conf");
        let path = socket_path_from(None, Some(missing.into()));
        assert_eq!(path, Path::new(DEFAULT_SOCKET_PATH));
    }

    #[test]
    fn config_path_from_environment() {
        assert_eq!(
            config_path_from(Some("/tmp/pool.conf".into())),
            Path::new("/tmp/pool.conf")
        );
        assert_eq!(
            config_path_from(Some("".into())),
            Path::new(DEFAULT_CONFIG_FILE)
        );
        assert_eq!(config_path_from(None), Path::new(DEFAULT_CONFIG_FILE));
    }

    /// Prints `client_socket_path(None)` for `client_socket_path_reads_environment`, which
    /// runs it in a child process with its own environment.
    #[test]
    #[ignore = "run by client_socket_path_reads_environment in a child process"]
    fn print_client_socket_path() {
        println!("socket-path={}", client_socket_path(None).display());
    }

    /// Runs `print_client_socket_path` in a child process with `TLSPOOL_CONFIG_FILE` set, so
    /// that this process's environment is never changed and no test races on it.
    #[test]
    fn client_socket_path_reads_environment() {
        let file = config_file("socket_name /tmp/from-environment.sock\n");
        let test_binary = std::env::current_exe().expect("test binary path");
        let output = Command::new(test_binary)
            .args(["--exact", "config::client::tests::print_client_socket_path"])
            .args(["--ignored", "--nocapture", "--test-threads=1"])
            .env(CONFIG_FILE_ENV, file.path())
            .output()
            .expect("run child test");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}");
        assert!(
            stdout.contains("socket-path=/tmp/from-environment.sock\n"),
            "{stdout}"
        );
    }
}
