//! Logging settings: the `log_level`, `log_filter` and `log_stderr` configuration keys, the
//! tracing targets every crate of the workspace logs under, and the `EnvFilter` directives that
//! enforce the configured level and categories.
//!
//! The level is the minimum severity logged. The eight syslog levels collapse onto the five
//! tracing levels: `EMERG`, `ALERT`, `CRIT` and `ERR` all become `error`, `WARNING` becomes
//! `warn`, `NOTICE` and `INFO` both become `info`, and `DEBUG` becomes `debug`. So `CRIT` lets
//! through everything `ERR` does, and `NOTICE` everything `INFO` does.
//!
//! Each `log_filter` category owns one tracing target (`TARGET_TLS` and so on). Events under an
//! unselected category's target are dropped. Events under any other target are not part of a
//! category and are filtered by level alone.
//!
//! With the `subscriber` feature, `init_subscriber` installs the process-wide subscriber.

use std::fmt;
use std::str::FromStr;

use bitflags::bitflags;

#[cfg(feature = "subscriber")]
mod subscriber;

#[cfg(feature = "subscriber")]
pub use subscriber::init_subscriber;

/// Target of the `TLS` category: handshakes and TLS sessions.
pub const TARGET_TLS: &str = "tlspool::tls";
/// Target of the `PKCS11` category: tokens, sessions and PIN requests.
pub const TARGET_PKCS11: &str = "tlspool::pkcs11";
/// Target of the `DB` category: the localid, disclose and trust databases.
pub const TARGET_DB: &str = "tlspool::db";
/// Target of the `FILES` category: configuration, PID and parameter files.
pub const TARGET_FILES: &str = "tlspool::files";
/// Target of the `CRYPTO` category: key material handling and the PRNG exporter.
pub const TARGET_CRYPTO: &str = "tlspool::crypto";
/// Target of the `CERT` category: certificate validation and on-the-fly certificates.
pub const TARGET_CERT: &str = "tlspool::cert";
/// Target of the `USER` category: local identity selection and PIN entry services.
pub const TARGET_USER: &str = "tlspool::user";
/// Target of the `COPYCAT` category: the plaintext relay between the two descriptors.
pub const TARGET_COPYCAT: &str = "tlspool::copycat";
/// Target of the `UNIXSOCK` category: the UNIX-domain client connections.
pub const TARGET_UNIXSOCK: &str = "tlspool::unixsock";
/// Target of the `DAEMON` category: start, stop, PID file, sockets and privileges.
pub const TARGET_DAEMON: &str = "tlspool::daemon";

/// A syslog severity, used as the minimum level logged (`log_level`).
///
/// The variants are ordered from most to least severe, as syslog numbers them (0 to 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum LogLevel {
    /// `EMERG` or `EMERGENCY` (syslog 0).
    Emergency,
    /// `ALERT` (syslog 1).
    Alert,
    /// `CRIT` or `CRITICAL` (syslog 2).
    Critical,
    /// `ERR` or `ERROR` (syslog 3), the default.
    #[default]
    Error,
    /// `WARNING` or `WARN` (syslog 4).
    Warning,
    /// `NOTICE` or `NOTE` (syslog 5).
    Notice,
    /// `INFO` (syslog 6).
    Info,
    /// `DEBUG` or `*` (syslog 7).
    Debug,
}

bitflags! {
    /// The categories selected by `log_filter`, with the masks of the TLS Pool.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct LogCategories: u32 {
        /// `TLS`.
        const TLS = 0x0000_0001;
        /// `PKCS11`.
        const PKCS11 = 0x0000_0002;
        /// `DB`.
        const DB = 0x0000_0004;
        /// `FILES`.
        const FILES = 0x0000_0008;
        /// `CRYPTO`.
        const CRYPTO = 0x0000_0010;
        /// `CERT`.
        const CERT = 0x0000_0020;
        /// `USER`.
        const USER = 0x0000_0100;
        /// `COPYCAT`.
        const COPYCAT = 0x0000_2000;
        /// `UNIXSOCK`.
        const UNIXSOCK = 0x0000_4000;
        /// `DAEMON`.
        const DAEMON = 0x0000_8000;
    }
}

/// The complete logging configuration of the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogSettings {
    /// Minimum severity logged (`log_level`).
    pub level: LogLevel,
    /// Categories logged (`log_filter`).
    pub categories: LogCategories,
    /// Log to stderr instead of syslog (`log_stderr`).
    pub stderr: bool,
}

/// Errors of setting up logging.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoggingError {
    /// The filter directives (from `RUST_LOG` or from the settings) did not parse.
    #[error("invalid log filter {directives:?} from {origin}: {reason}")]
    InvalidFilter {
        /// `RUST_LOG` or `log_level and log_filter`.
        origin: &'static str,
        /// The directive string that failed.
        directives: String,
        /// The parser's message.
        reason: String,
    },
    /// A global subscriber was installed before.
    #[error("installing the tracing subscriber failed: {reason}")]
    AlreadyInstalled {
        /// The message of tracing-subscriber.
        reason: String,
    },
}

/// Category masks, their `log_filter` words and their targets, in the order of the TLS Pool.
const CATEGORIES: [(LogCategories, &str, &str); 10] = [
    (LogCategories::TLS, "TLS", TARGET_TLS),
    (LogCategories::PKCS11, "PKCS11", TARGET_PKCS11),
    (LogCategories::DB, "DB", TARGET_DB),
    (LogCategories::FILES, "FILES", TARGET_FILES),
    (LogCategories::CRYPTO, "CRYPTO", TARGET_CRYPTO),
    (LogCategories::CERT, "CERT", TARGET_CERT),
    (LogCategories::USER, "USER", TARGET_USER),
    (LogCategories::COPYCAT, "COPYCAT", TARGET_COPYCAT),
    (LogCategories::UNIXSOCK, "UNIXSOCK", TARGET_UNIXSOCK),
    (LogCategories::DAEMON, "DAEMON", TARGET_DAEMON),
];

/// Level words accepted by `log_level`, compared without regard to case.
const LEVEL_WORDS: [(&str, LogLevel); 14] = [
    ("EMERG", LogLevel::Emergency),
    ("EMERGENCY", LogLevel::Emergency),
    ("ALERT", LogLevel::Alert),
    ("CRIT", LogLevel::Critical),
    ("CRITICAL", LogLevel::Critical),
    ("ERR", LogLevel::Error),
    ("ERROR", LogLevel::Error),
    ("WARNING", LogLevel::Warning),
    ("WARN", LogLevel::Warning),
    ("NOTICE", LogLevel::Notice),
    ("NOTE", LogLevel::Notice),
    ("INFO", LogLevel::Info),
    ("DEBUG", LogLevel::Debug),
    ("*", LogLevel::Debug),
];

impl LogLevel {
    /// Parses a `log_level` word, case-insensitively, or returns `None` for an unknown word.
    pub fn from_word(word: &str) -> Option<Self> {
        LEVEL_WORDS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(word))
            .map(|&(_, level)| level)
    }

    /// Returns the syslog severity number, 0 (`EMERG`) to 7 (`DEBUG`).
    pub fn syslog_severity(self) -> u8 {
        self as u8
    }

    /// Returns the tracing level this severity collapses onto (see the module documentation).
    pub fn tracing_level(self) -> tracing::Level {
        match self {
            Self::Emergency | Self::Alert | Self::Critical | Self::Error => tracing::Level::ERROR,
            Self::Warning => tracing::Level::WARN,
            Self::Notice | Self::Info => tracing::Level::INFO,
            Self::Debug => tracing::Level::DEBUG,
        }
    }

    /// Returns the words `log_level` accepts, for error messages and help text.
    pub fn words() -> impl Iterator<Item = &'static str> {
        LEVEL_WORDS.iter().map(|&(name, _)| name)
    }
}

impl FromStr for LogLevel {
    type Err = UnknownWord;

    fn from_str(word: &str) -> Result<Self, Self::Err> {
        Self::from_word(word).ok_or_else(|| UnknownWord(word.to_owned()))
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self {
            Self::Emergency => "EMERG",
            Self::Alert => "ALERT",
            Self::Critical => "CRIT",
            Self::Error => "ERR",
            Self::Warning => "WARNING",
            Self::Notice => "NOTICE",
            Self::Info => "INFO",
            Self::Debug => "DEBUG",
        };
        f.write_str(word)
    }
}

/// A word that `log_level` or `log_filter` does not accept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown word {0:?}")]
pub struct UnknownWord(pub String);

impl LogCategories {
    /// Parses a `log_filter` list: comma-separated, case-insensitive words, `*` for all.
    ///
    /// Empty words (as in `TLS,,DB` or an empty value) select nothing. Unlike the original TLS
    /// Pool, which ignored them, an unknown word is an error, so a misspelt category is found.
    pub fn from_list(list: &str) -> Result<Self, UnknownWord> {
        let mut selected = Self::empty();
        for word in list.split(',').filter(|word| !word.is_empty()) {
            if word == "*" {
                selected = Self::all();
                continue;
            }
            let (flag, _, _) = CATEGORIES
                .iter()
                .find(|(_, name, _)| name.eq_ignore_ascii_case(word))
                .ok_or_else(|| UnknownWord(word.to_owned()))?;
            selected |= *flag;
        }
        Ok(selected)
    }

    /// Returns the words `log_filter` accepts, for error messages and help text.
    pub fn words() -> impl Iterator<Item = &'static str> {
        CATEGORIES.iter().map(|&(_, name, _)| name).chain(["*"])
    }

    /// Returns the tracing targets of the selected categories.
    pub fn targets(self) -> impl Iterator<Item = &'static str> {
        CATEGORIES
            .iter()
            .filter(move |(flag, _, _)| self.contains(*flag))
            .map(|&(_, _, target)| target)
    }
}

impl Default for LogCategories {
    /// Returns all categories, the default of `log_filter`.
    fn default() -> Self {
        Self::all()
    }
}

impl LogSettings {
    /// Returns the `EnvFilter` directive string of these settings, see [`filter_directives`].
    pub fn filter_directives(&self) -> String {
        filter_directives(self.level, self.categories)
    }
}

impl Default for LogSettings {
    /// Returns the defaults of the configuration: `ERR`, all categories, syslog.
    fn default() -> Self {
        Self {
            level: LogLevel::default(),
            categories: LogCategories::default(),
            stderr: false,
        }
    }
}

/// Builds a `tracing_subscriber::EnvFilter` directive string that logs events at `level` or more
/// severe, drops the targets of categories not in `categories`, and filters events under any
/// other target by level alone.
///
/// `(LogLevel::Error, LogCategories::all())` gives `error`. With only `TLS` selected it gives
/// `error,tlspool::tls=error,tlspool::pkcs11=off,...` with one entry per category.
pub fn filter_directives(level: LogLevel, categories: LogCategories) -> String {
    let level_name = level.tracing_level().as_str().to_ascii_lowercase();
    let mut directives = level_name.clone();
    if categories.contains(LogCategories::all()) {
        return directives;
    }
    for (flag, _, target) in CATEGORIES {
        let target_level = if categories.contains(flag) {
            level_name.as_str()
        } else {
            "off"
        };
        directives.push(',');
        directives.push_str(target);
        directives.push('=');
        directives.push_str(target_level);
    }
    directives
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// A `MakeWriter` that appends every formatted event to a shared buffer.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Self;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Capture {
        fn text(&self) -> String {
            let bytes = self
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }

    /// Runs `emit` under a real subscriber filtered by `settings` and returns what it logged.
    fn capture_with(settings: LogSettings, emit: impl FnOnce()) -> String {
        let capture = Capture::default();
        let filter = EnvFilter::try_new(settings.filter_directives()).expect("valid directives");
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(capture.clone())
            .with_ansi(false);
        let subscriber = tracing_subscriber::registry().with(filter).with(layer);
        tracing::subscriber::with_default(subscriber, emit);
        capture.text()
    }

    fn settings(level: LogLevel, categories: LogCategories) -> LogSettings {
        LogSettings {
            level,
            categories,
            stderr: true,
        }
    }

    #[test]
    fn level_err_drops_debug_event() {
        let output = capture_with(settings(LogLevel::Error, LogCategories::all()), || {
            tracing::debug!(target: TARGET_TLS, "debug-marker");
            tracing::error!(target: TARGET_TLS, "error-marker");
        });
        assert!(!output.contains("debug-marker"), "{output}");
        assert!(output.contains("error-marker"), "{output}");
    }

    #[test]
    fn level_debug_keeps_debug_event() {
        let output = capture_with(settings(LogLevel::Debug, LogCategories::all()), || {
            tracing::debug!(target: TARGET_TLS, "debug-marker");
        });
        assert!(output.contains("debug-marker"), "{output}");
    }

    #[test]
    fn level_warning_drops_info_keeps_warn() {
        let output = capture_with(settings(LogLevel::Warning, LogCategories::all()), || {
            tracing::info!(target: TARGET_DAEMON, "info-marker");
            tracing::warn!(target: TARGET_DAEMON, "warn-marker");
        });
        assert!(!output.contains("info-marker"), "{output}");
        assert!(output.contains("warn-marker"), "{output}");
    }

    #[test]
    fn filter_drops_unselected_category() {
        let output = capture_with(settings(LogLevel::Info, LogCategories::TLS), || {
            tracing::info!(target: TARGET_DB, "db-marker");
            tracing::info!(target: TARGET_TLS, "tls-marker");
            tracing::info!(target: "other::crate", "uncategorised-marker");
        });
        assert!(!output.contains("db-marker"), "{output}");
        assert!(output.contains("tls-marker"), "{output}");
        assert!(output.contains("uncategorised-marker"), "{output}");
    }

    #[test]
    fn empty_filter_drops_every_category() {
        let output = capture_with(settings(LogLevel::Debug, LogCategories::empty()), || {
            tracing::error!(target: TARGET_TLS, "marker");
            tracing::error!(target: TARGET_PKCS11, "marker");
            tracing::error!(target: TARGET_DB, "marker");
            tracing::error!(target: TARGET_FILES, "marker");
            tracing::error!(target: TARGET_CRYPTO, "marker");
            tracing::error!(target: TARGET_CERT, "marker");
            tracing::error!(target: TARGET_USER, "marker");
            tracing::error!(target: TARGET_COPYCAT, "marker");
            tracing::error!(target: TARGET_UNIXSOCK, "marker");
            tracing::error!(target: TARGET_DAEMON, "marker");
        });
        assert!(!output.contains("marker"), "{output}");
    }

    #[test]
    fn directives_for_all_categories_are_level_only() {
        assert_eq!(
            filter_directives(LogLevel::Error, LogCategories::all()),
            "error"
        );
        assert_eq!(
            filter_directives(LogLevel::Notice, LogCategories::all()),
            "info"
        );
    }

    #[test]
    fn directives_list_every_category() {
        let directives = filter_directives(LogLevel::Warning, LogCategories::DB);
        assert!(directives.starts_with("warn,"), "{directives}");
        assert!(directives.contains("tlspool::db=warn"), "{directives}");
        assert!(directives.contains("tlspool::tls=off"), "{directives}");
        assert_eq!(directives.matches("=off").count(), 9, "{directives}");
        assert!(EnvFilter::try_new(&directives).is_ok());
    }

    #[test]
    fn level_words_case_insensitive() {
        let cases = [
            ("emerg", LogLevel::Emergency),
            ("Emergency", LogLevel::Emergency),
            ("ALERT", LogLevel::Alert),
            ("crit", LogLevel::Critical),
            ("CRITICAL", LogLevel::Critical),
            ("err", LogLevel::Error),
            ("Error", LogLevel::Error),
            ("warning", LogLevel::Warning),
            ("WARN", LogLevel::Warning),
            ("notice", LogLevel::Notice),
            ("Note", LogLevel::Notice),
            ("info", LogLevel::Info),
            ("debug", LogLevel::Debug),
            ("*", LogLevel::Debug),
        ];
        for (word, level) in cases {
            assert_eq!(LogLevel::from_word(word), Some(level), "{word}");
        }
        assert_eq!(LogLevel::from_word("verbose"), None);
        assert_eq!(LogLevel::from_word("ERR "), None);
    }

    #[test]
    fn syslog_levels_collapse_onto_tracing_levels() {
        assert_eq!(LogLevel::Emergency.tracing_level(), tracing::Level::ERROR);
        assert_eq!(LogLevel::Critical.tracing_level(), tracing::Level::ERROR);
        assert_eq!(LogLevel::Warning.tracing_level(), tracing::Level::WARN);
        assert_eq!(LogLevel::Notice.tracing_level(), tracing::Level::INFO);
        assert_eq!(LogLevel::Debug.tracing_level(), tracing::Level::DEBUG);
        assert_eq!(LogLevel::Error.syslog_severity(), 3);
        assert_eq!(LogLevel::Debug.syslog_severity(), 7);
    }

    #[test]
    fn category_words_and_masks() {
        let all = LogCategories::from_list(
            "tls,PKCS11,Db,files,crypto,cert,user,copycat,unixsock,daemon",
        );
        assert_eq!(all, Ok(LogCategories::all()));
        assert_eq!(LogCategories::all().bits(), 0x0000_e13f);
        assert_eq!(LogCategories::from_list("*"), Ok(LogCategories::all()));
        assert_eq!(LogCategories::from_list(""), Ok(LogCategories::empty()));
        assert_eq!(
            LogCategories::from_list("TLS,,DB"),
            Ok(LogCategories::TLS | LogCategories::DB)
        );
        assert_eq!(
            LogCategories::from_list("TLS,KERBEROS"),
            Err(UnknownWord("KERBEROS".to_owned()))
        );
    }

    #[test]
    fn targets_follow_categories() {
        let targets: Vec<_> = (LogCategories::USER | LogCategories::COPYCAT)
            .targets()
            .collect();
        assert_eq!(targets, [TARGET_USER, TARGET_COPYCAT]);
    }
}
