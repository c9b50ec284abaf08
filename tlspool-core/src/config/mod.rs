//! The configuration file of the TLS Pool (`/etc/tlspool.conf`): its line syntax, every key
//! with its value syntax and default, and the order-sensitive keys the daemon acts on in file
//! order.
//!
//! [`Config::parse`] checks the whole file before the daemon acts on any of it, so a bad line
//! late in the file no longer leaves a half-configured daemon. The daemon then walks
//! [`Config::directives`] for `daemon_pidfile` and `socket_name` in file order, and applies
//! `daemon_chroot`, `daemon_group` and `daemon_user` after all sockets and the PID file exist.
//! User and group names are only checked for syntax here, because resolving them is the
//! daemon's work. Clients use [`configvar`] and [`client_socket_path`], which read the first
//! value of a key as the TLS Pool's client library does.

use std::fmt;
use std::path::{Path, PathBuf};

mod client;
mod error;
mod key;
mod privacy;
mod settings;
mod syntax;
mod value;

pub use client::{
    CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE, DEFAULT_SOCKET_PATH, client_config_path,
    client_socket_path, configvar,
};
pub use error::ConfigError;
pub use key::Key;
pub use privacy::{BUILT_IN_PRIVACY_SERVICES, PrivacyRoles, privacy_permitted};
pub use settings::{
    DEFAULT_DNSSEC_ROOTKEY, DEFAULT_DTLS_IDLE_TIMEOUT, DEFAULT_DTLS_PRIORITY,
    DEFAULT_PKCS11_TIMEOUT, DEFAULT_TLS_PRIORITY,
};
pub use syntax::MAX_LINE_LENGTH;

use settings::Settings;
use syntax::Entries;

/// A parsed configuration file.
#[derive(Clone, Debug, Default)]
pub struct Config {
    origin: PathBuf,
    directives: Vec<Directive>,
    sockets: Vec<SocketSpec>,
    pkcs11_tokens: Vec<Pkcs11Token>,
    daemon_pidfile: Option<(PathBuf, usize)>,
    pkcs11_path: Option<PathBuf>,
    settings: Settings,
}

/// One `keyword value` line of the file, in file order.
#[derive(Clone, PartialEq, Eq)]
pub struct Directive {
    /// The keyword.
    pub key: Key,
    /// The value exactly as written.
    pub value: String,
    /// The 1-based line number.
    pub line: usize,
}

/// A listening socket of a `socket_name` line, with the socket attributes in effect there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketSpec {
    /// Path of the socket, short enough for `sun_path`.
    pub path: PathBuf,
    /// Owner from the last `socket_user` before this line, or `None` for the daemon's user.
    pub user: Option<String>,
    /// Group from the last `socket_group` before this line, or `None` for the daemon's group.
    pub group: Option<String>,
    /// Mode from the last `socket_mode` before this line, or `None` to leave it unchanged.
    pub mode: Option<u32>,
    /// The 1-based line number of the `socket_name` line.
    pub line: usize,
}

/// A token of a `pkcs11_token` line, with the module of the last `pkcs11_path` before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pkcs11Token {
    /// The PKCS #11 module that serves the token.
    pub module: PathBuf,
    /// The PKCS #11 URI (RFC 7512) that selects the token.
    pub uri: String,
    /// The 1-based line number of the `pkcs11_token` line.
    pub line: usize,
}

/// The socket attributes set so far, applied to each following `socket_name`.
#[derive(Default)]
struct SocketAttributes {
    user: Option<String>,
    group: Option<String>,
    mode: Option<u32>,
}

impl Config {
    /// Reads and parses the configuration file at `path`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Read`] when the file cannot be read, [`ConfigError::InvalidUtf8`] when
    /// it is not UTF-8, and otherwise the errors of [`Config::parse`].
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|error| {
            let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
            ConfigError::InvalidUtf8 {
                path: path.to_owned(),
                line: 1 + valid.iter().filter(|&&byte| byte == b'\n').count(),
            }
        })?;
        Self::parse(&text, path)
    }

    /// Parses configuration `text`, naming `origin` as the file in errors.
    ///
    /// # Errors
    ///
    /// The first syntax error, unknown key or invalid value, as a [`ConfigError`] that names
    /// the file, the line and the key.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let mut config = Self {
            origin: origin.to_owned(),
            ..Self::default()
        };
        let mut attributes = SocketAttributes::default();

        for entry in Entries::new(text, origin) {
            let entry = entry?;
            let key = Key::from_name(entry.keyword).ok_or_else(|| ConfigError::UnknownKey {
                path: origin.to_owned(),
                line: entry.line,
                key: entry.keyword.to_owned(),
            })?;
            config.apply(key, entry.value, entry.line, &mut attributes)?;
            config.directives.push(Directive {
                key,
                value: entry.value.to_owned(),
                line: entry.line,
            });
        }

        config.check_onthefly_signer()?;
        Ok(config)
    }

    /// Returns every line with a keyword, in file order.
    pub fn directives(&self) -> &[Directive] {
        &self.directives
    }

    /// Returns the listening sockets in file order, each with its owner, group and mode.
    pub fn sockets(&self) -> &[SocketSpec] {
        &self.sockets
    }

    /// Returns the PKCS #11 tokens in file order, each with its module.
    pub fn pkcs11_tokens(&self) -> &[Pkcs11Token] {
        &self.pkcs11_tokens
    }

    /// Returns the file these settings came from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// Returns the PID file (`daemon_pidfile`), which may occur once.
    pub fn daemon_pidfile(&self) -> Option<&Path> {
        self.daemon_pidfile.as_ref().map(|(path, _)| path.as_path())
    }

    /// Returns the PKCS #11 module of the last `pkcs11_path` line.
    pub fn pkcs11_path(&self) -> Option<&Path> {
        self.pkcs11_path.as_deref()
    }

    /// Parses one value and records it.
    fn apply(
        &mut self,
        key: Key,
        value: &str,
        line: usize,
        attributes: &mut SocketAttributes,
    ) -> Result<(), ConfigError> {
        let invalid = |reason| ConfigError::InvalidValue {
            path: self.origin.clone(),
            line,
            key: key.name(),
            value: value.to_owned(),
            reason,
        };
        match key {
            Key::DaemonPidfile => {
                if let Some((_, first)) = self.daemon_pidfile {
                    return Err(ConfigError::Repeated {
                        path: self.origin.clone(),
                        line,
                        key: key.name(),
                        first,
                    });
                }
                self.daemon_pidfile = Some((value::path(value).map_err(invalid)?, line));
            }
            Key::SocketUser => attributes.user = Some(value::account_name(value).map_err(invalid)?),
            Key::SocketGroup => {
                attributes.group = Some(value::account_name(value).map_err(invalid)?);
            }
            Key::SocketMode => attributes.mode = Some(value::socket_mode(value).map_err(invalid)?),
            Key::SocketName => self.sockets.push(SocketSpec {
                path: value::socket_path(value).map_err(invalid)?,
                user: attributes.user.clone(),
                group: attributes.group.clone(),
                mode: attributes.mode,
                line,
            }),
            Key::Pkcs11Path => self.pkcs11_path = Some(value::path(value).map_err(invalid)?),
            Key::Pkcs11Token => self.add_token(value, line)?,
            _ => self.settings.apply(key, value).map_err(invalid)?,
        }
        Ok(())
    }

    /// Records a `pkcs11_token` line, which needs a `pkcs11_path` line before it.
    fn add_token(&mut self, value: &str, line: usize) -> Result<(), ConfigError> {
        let Some(module) = self.pkcs11_path.clone() else {
            return Err(ConfigError::MissingCompanion {
                path: self.origin.clone(),
                line,
                key: Key::Pkcs11Token.name(),
                required: Key::Pkcs11Path.name(),
                placement: "before it",
            });
        };
        let uri = value::pkcs11_uri(value).map_err(|reason| ConfigError::InvalidValue {
            path: self.origin.clone(),
            line,
            key: Key::Pkcs11Token.name(),
            value: value.to_owned(),
            reason,
        })?;
        self.pkcs11_tokens.push(Pkcs11Token { module, uri, line });
        Ok(())
    }

    /// Checks that the on-the-fly signer has both its certificate and its key, or neither.
    fn check_onthefly_signer(&self) -> Result<(), ConfigError> {
        let (key, required) = match self.settings.onthefly_signer() {
            (true, false) => (Key::TlsOntheflySigncert, Key::TlsOntheflySignkey),
            (false, true) => (Key::TlsOntheflySignkey, Key::TlsOntheflySigncert),
            _ => return Ok(()),
        };
        let line = self
            .directives
            .iter()
            .rev()
            .find(|directive| directive.key == key)
            .map_or(0, |directive| directive.line);
        Err(ConfigError::MissingCompanion {
            path: self.origin.clone(),
            line,
            key: key.name(),
            required: required.name(),
            placement: "as well",
        })
    }
}

impl fmt::Debug for Directive {
    /// Formats the directive with the values of `pkcs11_pin` and `openpgp_card_pin` redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value: &dyn fmt::Debug = if matches!(self.key, Key::Pkcs11Pin | Key::OpenpgpCardPin) {
            &"<redacted>"
        } else {
            &self.value
        };
        f.debug_struct("Directive")
            .field("key", &self.key)
            .field("value", value)
            .field("line", &self.line)
            .finish()
    }
}

#[cfg(test)]
mod tests;
