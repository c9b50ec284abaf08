//! `tlspoolctl pin-entry`: a terminal PIN entry service that shows each PIN request of the
//! daemon and reads the PIN without echo.
//!
//! The token facts and the count of earlier wrong PINs go to standard output, the prompt to
//! standard error. When standard input is a terminal, echo is switched off while the PIN is
//! read and restored afterwards, also when reading fails. Otherwise one line is read as is,
//! so a script can pipe the PIN in. The PIN is wiped from memory once it is sent.

use std::io::{self, BufRead as _, Write};
use std::path::Path;
use std::time::Duration;

use argh::FromArgs;
use rustix::termios::{self, LocalModes, OptionalActions};
use zeroize::Zeroizing;

use super::stdout_error;
use crate::blocking::register_pin_entry;
use crate::{ClientError, PinRequest};

/// Serve the daemon's PIN requests from this terminal, reading each PIN without echo.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "pin-entry")]
pub struct PinEntryCommand {
    /// seconds the daemon waits for each PIN and keeps this helper exclusive (default: 60)
    #[argh(option, default = "60", arg_name = "SECONDS")]
    pub window: u32,

    /// exit after answering one PIN request
    #[argh(switch)]
    pub once: bool,
}

/// Registers at the daemon on `socket` and answers its PIN requests until the daemon closes
/// the connection, or after the first with `--once`. An empty line declines a request.
pub(super) fn run(
    socket: &Path,
    command: &PinEntryCommand,
    out: &mut dyn Write,
) -> Result<(), ClientError> {
    let window = Duration::from_secs(u64::from(command.window));
    let mut service = register_pin_entry(Some(socket), window)?;
    loop {
        let request = service.next_request()?;
        out.write_all(request_lines(&request).as_bytes())
            .and_then(|()| out.flush())
            .map_err(stdout_error)?;
        let pin = read_pin(&request.prompt)?;
        service.answer(&request, &pin)?;
        if command.once {
            return Ok(());
        }
    }
}

/// Formats the token facts of `request`, one `name: value` line each, and the attempt line.
pub fn request_lines(request: &PinRequest) -> String {
    format!(
        "token-manufacturer: {}\ntoken-model: {}\ntoken-serial: {}\ntoken-label: {}\n\
         attempt: {} (wrong PINs before this one)\n",
        request.token_manufacturer,
        request.token_model,
        request.token_serial,
        request.token_label,
        request.attempt,
    )
}

/// Switches echo off on a terminal, then shows `prompt` on standard error and reads one line
/// from standard input. The line ending is removed. Echo goes off first, as in `getpass`, so
/// nothing typed after the prompt appears is echoed.
fn read_pin(prompt: &str) -> Result<Zeroizing<String>, ClientError> {
    let io_error = |call| move |source| ClientError::Io { call, source };
    let stdin = io::stdin();
    let echo_guard = EchoOff::on(&stdin).map_err(io_error("tcsetattr of standard input"))?;
    let mut stderr = io::stderr().lock();
    stderr
        .write_all(prompt.as_bytes())
        .and_then(|()| stderr.flush())
        .map_err(io_error("write to standard error"))?;

    let mut line = Zeroizing::new(String::new());
    let read = stdin.lock().read_line(&mut line);
    drop(echo_guard);
    // The newline the person typed was not echoed either.
    let _ = stderr.write_all(b"\n");
    read.map_err(io_error("read from standard input"))?;

    let trimmed = line.trim_end_matches(['\r', '\n']).len();
    line.truncate(trimmed);
    Ok(line)
}

/// Echo switched off on a terminal until dropped.
struct EchoOff<'a> {
    terminal: &'a io::Stdin,
    saved: Option<termios::Termios>,
}

impl<'a> EchoOff<'a> {
    /// Switches echo off when `terminal` is a terminal; otherwise changes nothing.
    fn on(terminal: &'a io::Stdin) -> io::Result<Self> {
        if !termios::isatty(terminal) {
            return Ok(Self {
                terminal,
                saved: None,
            });
        }
        let saved = termios::tcgetattr(terminal)?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        // Keep ECHONL off too, so not even the newline shows.
        quiet.local_modes.remove(LocalModes::ECHONL);
        termios::tcsetattr(terminal, OptionalActions::Flush, &quiet)?;
        Ok(Self {
            terminal,
            saved: Some(saved),
        })
    }
}

impl Drop for EchoOff<'_> {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            // Nothing more can be done when restoring fails; the shell's `reset` repairs it.
            let _ = termios::tcsetattr(self.terminal, OptionalActions::Now, saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_show_token_and_attempt() {
        let request = PinRequest::for_test("SoftHSM project", "SoftHSM v2", "1a2b", "tlspool", 2);
        let lines = request_lines(&request);
        assert!(
            lines.contains("token-manufacturer: SoftHSM project\n"),
            "{lines}"
        );
        assert!(lines.contains("token-model: SoftHSM v2\n"), "{lines}");
        assert!(lines.contains("token-serial: 1a2b\n"), "{lines}");
        assert!(lines.contains("token-label: tlspool\n"), "{lines}");
        assert!(lines.contains("attempt: 2 "), "{lines}");
    }
}
