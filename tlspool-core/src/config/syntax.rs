//! The line syntax of the configuration file, shared by the daemon's reader and `configvar`.
//!
//! Lines end in `\n` and hold at most 511 bytes before it. Empty and all-whitespace lines are
//! skipped, and a `#` in column 1 starts a comment. Any other line is a keyword in column 1,
//! exactly one space (0x20) and the value, which is the rest of the line including further
//! spaces and trailing blanks, and may be empty.

use std::path::Path;

use super::ConfigError;

/// Maximum bytes of a configuration line, without its newline.
pub const MAX_LINE_LENGTH: usize = 511;

/// One `keyword value` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    /// The 1-based line number.
    pub(crate) line: usize,
    /// The text before the first space, not yet checked against the known keys.
    pub(crate) keyword: &'a str,
    /// The text after the first space.
    pub(crate) value: &'a str,
}

/// Iterator over the entries of a configuration text that stops after the first syntax error.
pub(crate) struct Entries<'a> {
    origin: &'a Path,
    rest: &'a str,
    line: usize,
    failed: bool,
}

impl<'a> Entries<'a> {
    /// Starts reading `text`, naming `origin` as the file in errors.
    pub(crate) fn new(text: &'a str, origin: &'a Path) -> Self {
        Self {
            origin,
            rest: text,
            line: 0,
            failed: false,
        }
    }

    /// Splits off the next line, or reports a last line without newline.
    fn next_line(&mut self) -> Option<Result<&'a str, ConfigError>> {
        if self.rest.is_empty() {
            return None;
        }
        self.line += 1;
        let Some((line, rest)) = self.rest.split_once('\n') else {
            let length = self.rest.len();
            self.rest = "";
            return Some(Err(self.unterminated(length)));
        };
        self.rest = rest;
        Some(Ok(line))
    }

    /// Reports an unterminated last line as too long when it is, as the TLS Pool does.
    fn unterminated(&self, length: usize) -> ConfigError {
        if length > MAX_LINE_LENGTH {
            return self.too_long(length);
        }
        ConfigError::MissingNewline {
            path: self.origin.to_owned(),
            line: self.line,
        }
    }

    fn too_long(&self, length: usize) -> ConfigError {
        ConfigError::LineTooLong {
            path: self.origin.to_owned(),
            line: self.line,
            length,
            max: MAX_LINE_LENGTH,
        }
    }

    /// Classifies one line: `None` to skip it, else the entry or its error.
    fn entry(&self, text: &'a str) -> Option<Result<Entry<'a>, ConfigError>> {
        if text.len() > MAX_LINE_LENGTH {
            return Some(Err(self.too_long(text.len())));
        }
        if text.starts_with('#') || text.bytes().all(is_c_space) {
            return None;
        }
        if text.bytes().next().is_some_and(is_c_space) {
            return Some(Err(ConfigError::LeadingWhitespace {
                path: self.origin.to_owned(),
                line: self.line,
            }));
        }

        // Only the space separates. A tab before it belongs to the keyword and is rejected
        // here, so that the text after the tab (possibly a PIN) never reaches an error message.
        let (keyword, value) = match text.split_once(' ') {
            Some((keyword, value)) => (keyword, Some(value)),
            None => (text, None),
        };
        if let Some((before_tab, _)) = keyword.split_once('\t') {
            return Some(Err(ConfigError::TabAfterKey {
                path: self.origin.to_owned(),
                line: self.line,
                key: before_tab.to_owned(),
            }));
        }
        let Some(value) = value else {
            return Some(Err(ConfigError::MissingSpace {
                path: self.origin.to_owned(),
                line: self.line,
                key: keyword.to_owned(),
            }));
        };
        Some(Ok(Entry {
            line: self.line,
            keyword,
            value,
        }))
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, ConfigError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.failed {
            let text = match self.next_line()? {
                Ok(text) => text,
                Err(error) => {
                    self.failed = true;
                    return Some(Err(error));
                }
            };
            match self.entry(text) {
                None => continue,
                Some(Ok(entry)) => return Some(Ok(entry)),
                Some(Err(error)) => {
                    self.failed = true;
                    return Some(Err(error));
                }
            }
        }
        None
    }
}

/// Tells whether `byte` is whitespace for C `isspace` in the C locale.
fn is_c_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}
