//! `tlspoolctl localid-select`: a terminal local identity selection service that lists the
//! disclose entries the daemon reports for each client handshake and reads the choice.
//!
//! The helper registers with `WANT_DBENTRY`, so the daemon reports every local identity that
//! the disclose database lists for the remote peer before it asks. The list, the remote
//! identity and the daemon's suggestion go to standard output and the prompt to standard
//! error. A choice is read as one line from standard input: a number from the list, a local
//! identity, `-` for none, or empty for the suggestion, optionally followed by `store` to
//! record it in the disclose database for that remote identity.

use std::io::{self, BufRead as _, Write};
use std::path::Path;
use std::time::Duration;

use argh::FromArgs;

use super::stdout_error;
use crate::blocking::register_localid_select;
use crate::{ClientError, LidEntryFlags, LocalIdChoice, LocalIdQuery, LocalIdQueryKind};

/// Prompt shown on standard error before each choice is read.
const PROMPT: &str = "choose a number or a local identity (empty: the suggestion, -: none; \
                      add \"store\" to remember it): ";

/// Choose the local identity of each pool client handshake from this terminal.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "localid-select")]
pub struct LocalIdSelectCommand {
    /// seconds the daemon waits for each answer and keeps this helper exclusive (default: 60)
    #[argh(option, default = "60", arg_name = "SECONDS")]
    pub window: u32,

    /// use the disclose entries without asking when the database lists some for the remote
    /// peer (PIOF_LIDENTRY_SKIP_DBENTRY)
    #[argh(switch)]
    pub skip_listed: bool,

    /// exit after answering one inquiry
    #[argh(switch)]
    pub once: bool,
}

/// Registers at the daemon on `socket` and answers its inquiries until the daemon closes the
/// connection, or after the first with `--once`.
pub(super) fn run(
    socket: &Path,
    command: &LocalIdSelectCommand,
    out: &mut dyn Write,
) -> Result<(), ClientError> {
    let mut flags = LidEntryFlags::WANT_DBENTRY;
    if command.skip_listed {
        flags |= LidEntryFlags::SKIP_DBENTRY;
    }
    let window = Duration::from_secs(u64::from(command.window));
    let mut service = register_localid_select(Some(socket), flags, window)?;
    let mut listed = Vec::new();
    loop {
        let query = service.next_query()?;
        if query.kind == LocalIdQueryKind::DatabaseEntry {
            listed.push(query.local_id.clone());
            service.acknowledge(&query)?;
            continue;
        }
        out.write_all(inquiry_lines(&query, &listed).as_bytes())
            .and_then(|()| out.flush())
            .map_err(stdout_error)?;
        let choice = read_choice(&query, &listed)?;
        service.answer(&query, &choice)?;
        listed.clear();
        if command.once {
            return Ok(());
        }
    }
}

/// Formats an inquiry: the remote identity, the numbered list of `listed` identities and the
/// suggestion, one `name: value` line each.
pub fn inquiry_lines(query: &LocalIdQuery, listed: &[String]) -> String {
    let mut text = format!("remote-id: {}\n", query.remote_id);
    for (index, local_id) in listed.iter().enumerate() {
        text.push_str(&format!("  {}) {local_id}\n", index + 1));
    }
    let suggestion = if query.local_id.is_empty() {
        "(none)"
    } else {
        &query.local_id
    };
    text.push_str(&format!("suggestion: {suggestion}\n"));
    text
}

/// Parses one line of input into the answer to `query`, whose database entries were
/// `listed`.
///
/// # Errors
///
/// A message for a number outside the list or an unknown last word.
pub fn parse_choice(
    line: &str,
    query: &LocalIdQuery,
    listed: &[String],
) -> Result<LocalIdChoice, String> {
    let mut words: Vec<&str> = line.split_whitespace().collect();
    let store = words.last() == Some(&"store");
    if store {
        words.pop();
    }
    let local_id = match words.as_slice() {
        [] => query.local_id.clone(),
        ["-"] => String::new(),
        [word] => match word.parse::<usize>() {
            Ok(number) => listed
                .get(number.wrapping_sub(1))
                .cloned()
                .ok_or_else(|| format!("{number} is not in the list 1 to {}", listed.len()))?,
            Err(_) => (*word).to_owned(),
        },
        _ => {
            return Err(format!(
                "expected one choice and optionally \"store\", got {line:?}"
            ));
        }
    };
    let flags = if store && !local_id.is_empty() {
        LidEntryFlags::DBINSERT
    } else {
        LidEntryFlags::empty()
    };
    Ok(LocalIdChoice::stored(&local_id, "", flags))
}

/// Shows the prompt on standard error and reads choices from standard input until one
/// parses.
fn read_choice(query: &LocalIdQuery, listed: &[String]) -> Result<LocalIdChoice, ClientError> {
    let io_error = |call| move |source| ClientError::Io { call, source };
    let stdin = io::stdin();
    loop {
        let mut stderr = io::stderr().lock();
        stderr
            .write_all(PROMPT.as_bytes())
            .and_then(|()| stderr.flush())
            .map_err(io_error("write to standard error"))?;
        let mut line = String::new();
        let read = stdin
            .lock()
            .read_line(&mut line)
            .map_err(io_error("read from standard input"))?;
        if read == 0 {
            return Err(ClientError::Io {
                call: "read from standard input",
                source: io::Error::new(io::ErrorKind::UnexpectedEof, "standard input closed"),
            });
        }
        match parse_choice(&line, query, listed) {
            Ok(choice) => return Ok(choice),
            Err(message) => {
                writeln!(stderr, "{message}").map_err(io_error("write to standard error"))?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed() -> Vec<String> {
        vec!["dev.example".to_owned(), "other.example".to_owned()]
    }

    #[test]
    fn number_picks_listed_identity() {
        let query = LocalIdQuery::inquiry_for_test("peer.dev.example", "dev.example");
        let choice = parse_choice("2\n", &query, &listed()).expect("valid");
        assert_eq!(choice.local_id, "other.example");
        assert_eq!(choice.flags, LidEntryFlags::empty());
    }

    #[test]
    fn empty_line_takes_suggestion() {
        let query = LocalIdQuery::inquiry_for_test("peer.dev.example", "dev.example");
        let choice = parse_choice("\n", &query, &listed()).expect("valid");
        assert_eq!(choice.local_id, "dev.example");
    }

    #[test]
    fn dash_chooses_none() {
        let query = LocalIdQuery::inquiry_for_test("peer.dev.example", "dev.example");
        let choice = parse_choice("- store\n", &query, &listed()).expect("valid");
        assert_eq!(choice.local_id, "");
        assert_eq!(choice.flags, LidEntryFlags::empty(), "nothing to store");
    }

    #[test]
    fn store_word_inserts_choice() {
        let query = LocalIdQuery::inquiry_for_test("peer.dev.example", "");
        let choice = parse_choice("me@dev.example store", &query, &listed()).expect("valid");
        assert_eq!(choice.local_id, "me@dev.example");
        assert_eq!(choice.selector, "");
        assert_eq!(choice.flags, LidEntryFlags::DBINSERT);
    }

    #[test]
    fn out_of_range_number_is_rejected() {
        let query = LocalIdQuery::inquiry_for_test("peer.dev.example", "");
        let error = parse_choice("3", &query, &listed()).expect_err("outside the list");
        assert!(error.contains("1 to 2"), "{error}");
        assert!(parse_choice("0", &query, &listed()).is_err());
        assert!(parse_choice("a b", &query, &listed()).is_err());
    }

    #[test]
    fn inquiry_lists_entries_and_suggestion() {
        let query = LocalIdQuery::inquiry_for_test("peer.dev.example", "dev.example");
        let text = inquiry_lines(&query, &listed());
        assert_eq!(
            text,
            "remote-id: peer.dev.example\n  1) dev.example\n  2) other.example\n\
             suggestion: dev.example\n"
        );
        let empty = LocalIdQuery::inquiry_for_test("peer.dev.example", "");
        assert!(inquiry_lines(&empty, &[]).ends_with("suggestion: (none)\n"));
    }
}
