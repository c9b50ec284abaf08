//! Errors of reading the configuration file. Each names the file, the line and, where one is
//! known, the key.

use std::io;
use std::path::PathBuf;

/// An error in the configuration file or in reading it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read configuration file", path.display())]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// The error of the read.
        source: io::Error,
    },
    /// The file is not UTF-8 text.
    #[error("{}:{line}: configuration line is not valid UTF-8", path.display())]
    InvalidUtf8 {
        /// The configuration file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
    },
    /// A line has more than [`MAX_LINE_LENGTH`](super::MAX_LINE_LENGTH) bytes before its newline.
    #[error(
        "{}:{line}: configuration line too long ({length} bytes, maximum {max})",
        path.display()
    )]
    LineTooLong {
        /// The configuration file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The length of the line in bytes, without the newline.
        length: usize,
        /// The maximum length.
        max: usize,
    },
    /// The last line does not end in a newline.
    #[error("{}:{line}: configuration line does not end in a newline", path.display())]
    MissingNewline {
        /// The configuration file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
    },
    /// A line starts with whitespace followed by other text.
    #[error(
        "{}:{line}: configuration line starts with whitespace; keywords and '#' start in column 1",
        path.display()
    )]
    LeadingWhitespace {
        /// The configuration file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
    },
    /// A keyword is followed by a tab, which does not separate keyword and value.
    #[error(
        "{}:{line}: key {key:?}: a tab does not separate keyword and value; use one space",
        path.display()
    )]
    TabAfterKey {
        /// The configuration file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The text before the tab.
        key: String,
    },
    /// A keyword is not followed by a space.
    #[error("{}:{line}: key {key:?}: missing space between keyword and value", path.display())]
    MissingSpace {
        /// The configuration file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The keyword.
        key: String,
    },
    /// The keyword is not known.
    #[error("{}:{line}: key {key:?}: unknown key", path.display())]
    UnknownKey {
        /// The configuration file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The keyword.
        key: String,
    },
    /// The value does not fit the key's syntax.
    #[error("{}:{line}: key {key:?}: invalid value {value:?}: {reason}", path.display())]
    InvalidValue {
        /// The configuration file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The keyword.
        key: &'static str,
        /// The value as written.
        value: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// A key that may occur once occurs again.
    #[error("{}:{line}: key {key:?}: may occur only once (first at line {first})", path.display())]
    Repeated {
        /// The configuration file.
        path: PathBuf,
        /// The 1-based line number of the repeat.
        line: usize,
        /// The keyword.
        key: &'static str,
        /// The line of the first occurrence.
        first: usize,
    },
    /// A key needs another key that is missing.
    #[error("{}:{line}: key {key:?}: requires a {required:?} line {placement}", path.display())]
    MissingCompanion {
        /// The configuration file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The keyword.
        key: &'static str,
        /// The keyword that is missing.
        required: &'static str,
        /// Where the missing line belongs: `before it` or `as well`.
        placement: &'static str,
    },
}
