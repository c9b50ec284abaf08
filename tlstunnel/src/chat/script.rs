//! Parsing of chat scripts: the expect/send language of the `chat` program of pppd, given as
//! the CHATARGS of the command line.
//!
//! The arguments alternate between expect and send strings. In the place of an expect string,
//! `ABORT string` adds a string that ends the script as failed when the peer sends it, and
//! `TIMEOUT n` sets the seconds each later expect string may take (45 by default). An expect
//! string `a-b-c` waits for `a`. When that times out it sends `b` and waits for `c`, and so on.
//! A trailing send without an expect string counts as success once sent. `''` expects nothing.
//!
//! Escapes, as in chat(8): `\b` backspace, `\n` newline, `\r` carriage return, `\s` space,
//! `\t` tab, `\\` backslash, `\-` a dash that does not split an expect string, `\ddd` the
//! octal byte value, `^C` the control character C (`^Q` is DC1). Send strings also take `\c`
//! (at the end: no carriage return after the string), `\d` (pause 1 s), `\p` (pause 0.1 s),
//! `\N` and `\0` (NUL), and `\q` (no effect: tlstunnel never logs send strings). Every send
//! string ends with a carriage return unless it ends in `\c`.
//!
//! `\K` (send a BREAK) is rejected: a serial line BREAK has no counterpart on a socket.

use std::time::Duration;

/// The TIMEOUT in force until the script sets another, as in chat(8).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(45);

/// The pause of `\d` in a send string.
pub const DELAY: Duration = Duration::from_secs(1);

/// The pause of `\p` in a send string.
pub const PAUSE: Duration = Duration::from_millis(100);

/// A parsed chat script.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatScript {
    pub(crate) steps: Vec<Step>,
}

/// One instruction of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// `ABORT string`.
    Abort(Vec<u8>),
    /// `TIMEOUT n`.
    Timeout(Duration),
    /// An expect string with the send string that follows it, if any.
    Exchange {
        expect: Expect,
        send: Option<SendString>,
    },
}

/// An expect string with its `-send-expect` fallbacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expect {
    /// The bytes awaited first; empty for `''`.
    pub(crate) first: Vec<u8>,
    /// The send string for each time-out with the expect string awaited after it. `None` as
    /// the last expectation means success once the send string is out.
    pub(crate) fallbacks: Vec<(SendString, Option<Vec<u8>>)>,
}

/// A send string as a sequence of bytes and pauses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SendString {
    pub(crate) parts: Vec<SendPart>,
}

/// A piece of a send string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SendPart {
    Bytes(Vec<u8>),
    Pause(Duration),
}

/// Where a string appears, which decides the escapes it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Expect,
    Send,
}

impl ChatScript {
    /// Parses the chat arguments of the command line.
    ///
    /// # Errors
    ///
    /// A `(index, reason)` pair naming the argument (counted from 0) and what is wrong: an
    /// unknown or misplaced escape, `ABORT` or `TIMEOUT` without its argument, or a TIMEOUT
    /// that is not a whole number of seconds from 1 up.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Self, (usize, String)> {
        let mut steps = Vec::new();
        let mut index = 0;
        while let Some(word) = args.get(index) {
            let word = word.as_ref();
            let argument = args.get(index + 1).map(AsRef::as_ref);
            let step = match word {
                "ABORT" | "TIMEOUT" => {
                    let value =
                        argument.ok_or_else(|| (index, format!("{word} needs an argument")))?;
                    keyword_step(word, value).map_err(|reason| (index + 1, reason))?
                }
                _ => {
                    let expect = parse_expect(word).map_err(|reason| (index, reason))?;
                    let send = argument
                        .map(parse_send)
                        .transpose()
                        .map_err(|reason| (index + 1, reason))?;
                    Step::Exchange { expect, send }
                }
            };
            steps.push(step);
            index += 2;
        }
        Ok(Self { steps })
    }

    /// Returns whether the script has no instructions, so there is nothing to run.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// Parses the argument of `ABORT` or `TIMEOUT`.
fn keyword_step(keyword: &str, value: &str) -> Result<Step, String> {
    if keyword == "ABORT" {
        let pattern = unescape(value, Role::Expect)?.bytes();
        if pattern.is_empty() {
            return Err("an ABORT string must not be empty".into());
        }
        return Ok(Step::Abort(pattern));
    }
    match value.parse::<u64>() {
        Ok(seconds) if seconds > 0 => Ok(Step::Timeout(Duration::from_secs(seconds))),
        _ => Err("TIMEOUT needs a whole number of seconds, at least 1".into()),
    }
}

/// Parses an expect string with its `-send-expect` fallbacks.
fn parse_expect(text: &str) -> Result<Expect, String> {
    let pieces = split_unescaped_dashes(text);
    let first = unescape(pieces[0], Role::Expect)?.bytes();
    let mut fallbacks = Vec::new();
    for pair in pieces[1..].chunks(2) {
        let send = parse_send(pair[0])?;
        let expect = pair
            .get(1)
            .map(|piece| unescape(piece, Role::Expect).map(|text| text.bytes()))
            .transpose()?;
        fallbacks.push((send, expect));
    }
    Ok(Expect { first, fallbacks })
}

/// Parses a send string, adding the final carriage return unless it ends in `\c`.
fn parse_send(text: &str) -> Result<SendString, String> {
    let mut unescaped = unescape(text, Role::Send)?;
    if !unescaped.no_return {
        unescaped.push_byte(b'\r');
    }
    Ok(SendString {
        parts: unescaped.parts,
    })
}

/// Splits at each `-` that is not preceded by a backslash.
fn split_unescaped_dashes(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (at, byte) in text.bytes().enumerate() {
        match byte {
            b'\\' if !escaped => escaped = true,
            b'-' if !escaped => {
                pieces.push(&text[start..at]);
                start = at + 1;
            }
            _ => escaped = false,
        }
    }
    pieces.push(&text[start..]);
    pieces
}

/// The result of resolving the escapes of one string.
#[derive(Debug, Default)]
struct Unescaped {
    parts: Vec<SendPart>,
    no_return: bool,
}

impl Unescaped {
    fn push_byte(&mut self, byte: u8) {
        match self.parts.last_mut() {
            Some(SendPart::Bytes(bytes)) => bytes.push(byte),
            _ => self.parts.push(SendPart::Bytes(vec![byte])),
        }
    }

    /// Returns the bytes of a string without pauses, as every expect string is.
    fn bytes(self) -> Vec<u8> {
        self.parts
            .into_iter()
            .flat_map(|part| match part {
                SendPart::Bytes(bytes) => bytes,
                SendPart::Pause(_) => Vec::new(),
            })
            .collect()
    }
}

/// Resolves the escapes of `text` for an expect or a send string.
fn unescape(text: &str, role: Role) -> Result<Unescaped, String> {
    let mut out = Unescaped::default();
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        at += 1;
        if byte == b'^' {
            // A caret at the very end stands for itself, as in chat.
            let Some(&letter) = bytes.get(at) else {
                out.push_byte(b'^');
                break;
            };
            at += 1;
            push_checked(&mut out, letter & 0x1f, role, "^@")?;
            continue;
        }
        if byte != b'\\' {
            out.push_byte(byte);
            continue;
        }
        let Some(&escape) = bytes.get(at) else {
            return Err("the string ends in a lone backslash; write \\\\ for a backslash".into());
        };
        at += 1;
        match escape {
            b'b' => out.push_byte(0x08),
            b'n' => out.push_byte(b'\n'),
            b'r' => out.push_byte(b'\r'),
            b's' => out.push_byte(b' '),
            b't' => out.push_byte(b'\t'),
            b'\\' | b'-' | b'^' => out.push_byte(escape),
            b'0'..=b'7' => {
                let (value, used) = octal_value(&bytes[at - 1..])?;
                at += used - 1;
                push_checked(&mut out, value, role, "a zero octal escape")?;
            }
            b'c' | b'd' | b'p' | b'N' | b'q' if role == Role::Expect => {
                return Err(format!(
                    "\\{} is only valid in a send string",
                    escape as char
                ));
            }
            b'c' if at == bytes.len() => out.no_return = true,
            b'c' => return Err("\\c is only valid at the end of a send string".into()),
            b'd' => out.parts.push(SendPart::Pause(DELAY)),
            b'p' => out.parts.push(SendPart::Pause(PAUSE)),
            b'N' => out.push_byte(0),
            b'q' => {}
            b'K' => return Err("\\K (BREAK) has no meaning on a network connection".into()),
            other => return Err(format!("unknown escape \\{}", other as char)),
        }
    }
    Ok(out)
}

/// Appends `byte`, rejecting NUL in an expect string, where it cannot be matched.
fn push_checked(out: &mut Unescaped, byte: u8, role: Role, what: &str) -> Result<(), String> {
    if byte == 0 && role == Role::Expect {
        return Err(format!("{what} (NUL) is only valid in a send string"));
    }
    out.push_byte(byte);
    Ok(())
}

/// Reads one to three octal digits and returns their value and how many digits it used.
fn octal_value(digits: &[u8]) -> Result<(u8, usize), String> {
    let used = digits
        .iter()
        .take(3)
        .take_while(|digit| (b'0'..=b'7').contains(digit))
        .count();
    let value = digits[..used]
        .iter()
        .fold(0u32, |value, digit| value * 8 + u32::from(digit - b'0'));
    u8::try_from(value)
        .map(|value| (value, used))
        .map_err(|_| format!("octal escape \\{value:o} is above \\377"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_bytes(text: &str) -> Vec<SendPart> {
        parse_send(text)
            .unwrap_or_else(|reason| panic!("{text:?}: {reason}"))
            .parts
    }

    fn bytes(value: &[u8]) -> Vec<SendPart> {
        vec![SendPart::Bytes(value.to_vec())]
    }

    fn expect_bytes(text: &str) -> Vec<u8> {
        unescape(text, Role::Expect)
            .unwrap_or_else(|reason| panic!("{text:?}: {reason}"))
            .bytes()
    }

    #[test]
    fn send_adds_carriage_return() {
        assert_eq!(send_bytes("EHLO"), bytes(b"EHLO\r"));
        assert_eq!(send_bytes(""), bytes(b"\r"));
    }

    #[test]
    fn send_escape_c_suppresses_return() {
        assert_eq!(
            send_bytes("a1 STARTTLS\\r\\n\\c"),
            bytes(b"a1 STARTTLS\r\n")
        );
        assert!(parse_send("a\\cb").is_err());
    }

    #[test]
    fn each_character_escape() {
        let cases: [(&str, &[u8]); 10] = [
            ("\\b", b"\x08"),
            ("\\n", b"\n"),
            ("\\r", b"\r"),
            ("\\s", b" "),
            ("\\t", b"\t"),
            ("\\\\", b"\\"),
            ("\\-", b"-"),
            ("\\^", b"^"),
            ("^Q", b"\x11"),
            ("^c", b"\x03"),
        ];
        for (text, expected) in cases {
            assert_eq!(expect_bytes(text), expected, "expect {text:?}");
            let mut sent = expected.to_vec();
            sent.push(b'\r');
            assert_eq!(send_bytes(text), bytes(&sent), "send {text:?}");
        }
        assert_eq!(expect_bytes("a^"), b"a^");
    }

    #[test]
    fn octal_escapes() {
        assert_eq!(expect_bytes("\\101\\7"), b"A\x07");
        assert_eq!(expect_bytes("\\0101"), b"\x081");
        assert_eq!(send_bytes("\\0\\c"), bytes(b"\0"));
        assert!(unescape("\\400", Role::Send).is_err());
        assert!(unescape("\\0", Role::Expect).is_err());
    }

    #[test]
    fn nul_escapes_only_in_send() {
        assert_eq!(send_bytes("\\N\\c"), bytes(b"\0"));
        assert_eq!(send_bytes("^@\\c"), bytes(b"\0"));
        assert!(unescape("\\N", Role::Expect).is_err());
        assert!(unescape("^@", Role::Expect).is_err());
    }

    #[test]
    fn pauses_in_send() {
        assert_eq!(
            send_bytes("a\\db\\pc\\q"),
            vec![
                SendPart::Bytes(b"a".to_vec()),
                SendPart::Pause(DELAY),
                SendPart::Bytes(b"b".to_vec()),
                SendPart::Pause(PAUSE),
                SendPart::Bytes(b"c\r".to_vec()),
            ]
        );
        for escape in ["\\d", "\\p", "\\c", "\\q"] {
            assert!(unescape(escape, Role::Expect).is_err(), "{escape}");
        }
    }

    #[test]
    fn rejects_unknown_and_break_escapes() {
        assert!(unescape("\\K", Role::Send).is_err());
        assert!(unescape("\\z", Role::Send).is_err());
        assert!(unescape("abc\\", Role::Send).is_err());
    }

    #[test]
    fn parses_keywords_and_exchanges() {
        let script = ChatScript::parse(&["ABORT", "BUSY", "TIMEOUT", "5", "", "EHLO", "250"]);
        let script = script.unwrap_or_else(|(index, reason)| panic!("{index}: {reason}"));
        assert_eq!(
            script.steps,
            vec![
                Step::Abort(b"BUSY".to_vec()),
                Step::Timeout(Duration::from_secs(5)),
                Step::Exchange {
                    expect: Expect {
                        first: Vec::new(),
                        fallbacks: Vec::new()
                    },
                    send: Some(SendString {
                        parts: bytes(b"EHLO\r")
                    }),
                },
                Step::Exchange {
                    expect: Expect {
                        first: b"250".to_vec(),
                        fallbacks: Vec::new()
                    },
                    send: None,
                },
            ]
        );
    }

    #[test]
    fn rejects_bad_keywords() {
        assert_eq!(ChatScript::parse(&["ABORT"]).err().map(|e| e.0), Some(0));
        assert_eq!(
            ChatScript::parse(&["TIMEOUT", "x"]).err().map(|e| e.0),
            Some(1)
        );
        assert_eq!(
            ChatScript::parse(&["TIMEOUT", "0"]).err().map(|e| e.0),
            Some(1)
        );
        assert_eq!(
            ChatScript::parse(&["ABORT", ""]).err().map(|e| e.0),
            Some(1)
        );
        assert_eq!(ChatScript::parse(&["a", "\\K"]).err().map(|e| e.0), Some(1));
    }

    #[test]
    fn parses_sub_sequences() {
        let expect = parse_expect("ogin:--ogin:").unwrap_or_else(|reason| panic!("{reason}"));
        assert_eq!(expect.first, b"ogin:");
        assert_eq!(
            expect.fallbacks,
            vec![(
                SendString {
                    parts: bytes(b"\r")
                },
                Some(b"ogin:".to_vec())
            )]
        );

        let trailing = parse_expect("a-b").unwrap_or_else(|reason| panic!("{reason}"));
        assert_eq!(
            trailing.fallbacks,
            vec![(
                SendString {
                    parts: bytes(b"b\r")
                },
                None
            )]
        );
        let dash = parse_expect("a\\-b").unwrap_or_else(|reason| panic!("{reason}"));
        assert_eq!(dash.first, b"a-b");
        assert!(dash.fallbacks.is_empty());
    }
}
