//! The chat script interpreter, free of I/O: it is fed the bytes the peer sends and the
//! time-outs the caller observes, and returns what to do next.
//!
//! Matching follows chat(8). Each expect string starts with an empty window, which is checked
//! after every received byte. A match of the expect string wins over an ABORT string that ends
//! at the same byte. [`Chat::receive`] consumes input only up to the end of a match, so bytes
//! after it (such as a TLS ClientHello) stay with the caller.

use std::collections::VecDeque;
use std::time::Duration;

use crate::chat::script::{ChatScript, DEFAULT_TIMEOUT, SendPart, SendString, Step};

/// The next step for the caller of [`Chat::next_action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes to the peer.
    Send(Vec<u8>),
    /// Wait this long before the next action.
    Pause(Duration),
    /// A new expect string starts: wait for input at most `timeout` from now, then call
    /// [`Chat::receive`], [`Chat::time_out`] or [`Chat::close`].
    Expect {
        /// The TIMEOUT in force.
        timeout: Duration,
    },
    /// Keep waiting for input within the time-out of the last [`Action::Expect`].
    Receive,
    /// The script finished successfully.
    Done,
    /// The peer sent an ABORT string.
    Aborted {
        /// The ABORT string that matched.
        pattern: Vec<u8>,
    },
    /// An expect string did not arrive in time and no fallback remained.
    TimedOut {
        /// The expect string awaited last.
        expect: Vec<u8>,
        /// The TIMEOUT in force.
        timeout: Duration,
    },
    /// The peer closed the connection while an expect string was awaited.
    Closed {
        /// The expect string awaited.
        expect: Vec<u8>,
    },
}

/// The state of one run of a [`ChatScript`].
#[derive(Debug)]
pub struct Chat<'a> {
    script: &'a ChatScript,
    /// The index of the next step to run.
    next_step: usize,
    /// The exchange being awaited, if any.
    waiting: Option<Waiting<'a>>,
    aborts: Vec<Vec<u8>>,
    timeout: Duration,
    /// The last bytes received for the current expect string, at most as long as the
    /// longest string they are matched against.
    window: Vec<u8>,
    pending: VecDeque<Action>,
    outcome: Option<Action>,
}

/// An expect string being awaited.
#[derive(Debug)]
struct Waiting<'a> {
    target: &'a [u8],
    /// The index of the next fallback of the exchange to try after a time-out.
    next_fallback: usize,
    fallbacks: &'a [(SendString, Option<Vec<u8>>)],
    /// The send string of the exchange, sent once an expectation is met.
    send: Option<&'a SendString>,
}

impl<'a> Chat<'a> {
    /// Starts a run of `script`.
    pub fn new(script: &'a ChatScript) -> Self {
        Self {
            script,
            next_step: 0,
            waiting: None,
            aborts: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            window: Vec::new(),
            pending: VecDeque::new(),
            outcome: None,
        }
    }

    /// Returns the next action. After [`Action::Expect`] or [`Action::Receive`] the caller
    /// reports input, a time-out or the end of input before asking again; the final outcomes
    /// repeat once reached.
    pub fn next_action(&mut self) -> Action {
        if self.pending.is_empty() && self.waiting.is_none() && self.outcome.is_none() {
            self.advance();
        }
        if let Some(action) = self.pending.pop_front() {
            return action;
        }
        if let Some(outcome) = &self.outcome {
            return outcome.clone();
        }
        Action::Receive
    }

    /// Feeds bytes from the peer and returns how many were consumed: all of them unless an
    /// expect string matched, in which case the count ends with the match.
    pub fn receive(&mut self, data: &[u8]) -> usize {
        for (at, &byte) in data.iter().enumerate() {
            let Some(waiting) = &self.waiting else {
                return at;
            };
            self.window.push(byte);
            let longest = self
                .aborts
                .iter()
                .map(Vec::len)
                .chain([waiting.target.len()])
                .max();
            let excess = self.window.len().saturating_sub(longest.unwrap_or(0));
            self.window.drain(..excess);

            if self.window.ends_with(waiting.target) {
                self.expectation_met();
                return at + 1;
            }
            if let Some(pattern) = self
                .aborts
                .iter()
                .find(|abort| self.window.ends_with(abort))
            {
                self.outcome = Some(Action::Aborted {
                    pattern: pattern.clone(),
                });
                self.waiting = None;
                return at + 1;
            }
        }
        data.len()
    }

    /// Reports that the time-out of the current expect string passed: the next fallback of
    /// an `expect-send-expect` sequence starts, or the script fails.
    pub fn time_out(&mut self) {
        let Some(waiting) = &mut self.waiting else {
            return;
        };
        let fallbacks = waiting.fallbacks;
        let Some((send, expect)) = fallbacks.get(waiting.next_fallback) else {
            self.outcome = Some(Action::TimedOut {
                expect: waiting.target.to_vec(),
                timeout: self.timeout,
            });
            self.waiting = None;
            return;
        };
        waiting.next_fallback += 1;
        queue_send(&mut self.pending, send);
        match expect {
            Some(expect) => {
                waiting.target = expect;
                self.window.clear();
                self.pending.push_back(Action::Expect {
                    timeout: self.timeout,
                });
            }
            None => self.expectation_met(),
        }
    }

    /// Reports that the peer closed the connection.
    pub fn close(&mut self) {
        if let Some(waiting) = self.waiting.take() {
            self.outcome = Some(Action::Closed {
                expect: waiting.target.to_vec(),
            });
        }
    }

    /// Queues the send string of the awaited exchange and leaves the wait.
    fn expectation_met(&mut self) {
        if let Some(waiting) = self.waiting.take()
            && let Some(send) = waiting.send
        {
            queue_send(&mut self.pending, send);
        }
        self.window.clear();
    }

    /// Runs steps until one waits for input or the script ends.
    fn advance(&mut self) {
        while let Some(step) = self.script.steps.get(self.next_step) {
            self.next_step += 1;
            match step {
                Step::Abort(pattern) => self.aborts.push(pattern.clone()),
                Step::Timeout(timeout) => self.timeout = *timeout,
                Step::Exchange { expect, send } if expect.first.is_empty() => {
                    if let Some(send) = send {
                        queue_send(&mut self.pending, send);
                    }
                }
                Step::Exchange { expect, send } => {
                    self.waiting = Some(Waiting {
                        target: &expect.first,
                        next_fallback: 0,
                        fallbacks: &expect.fallbacks,
                        send: send.as_ref(),
                    });
                    self.window.clear();
                    self.pending.push_back(Action::Expect {
                        timeout: self.timeout,
                    });
                    return;
                }
            }
        }
        self.outcome = Some(Action::Done);
    }
}

/// Queues the bytes and pauses of a send string.
fn queue_send(pending: &mut VecDeque<Action>, send: &SendString) {
    for part in &send.parts {
        pending.push_back(match part {
            SendPart::Bytes(bytes) => Action::Send(bytes.clone()),
            SendPart::Pause(pause) => Action::Pause(*pause),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::script::{DELAY, PAUSE};

    fn script(args: &[&str]) -> ChatScript {
        ChatScript::parse(args).unwrap_or_else(|(index, reason)| panic!("{index}: {reason}"))
    }

    fn send(bytes: &[u8]) -> Action {
        Action::Send(bytes.to_vec())
    }

    const WAIT: Action = Action::Expect {
        timeout: DEFAULT_TIMEOUT,
    };

    #[test]
    fn empty_script_is_done() {
        let script = script(&[]);
        let mut chat = Chat::new(&script);
        assert_eq!(chat.next_action(), Action::Done);
        assert_eq!(chat.next_action(), Action::Done);
    }

    #[test]
    fn smtp_prelude_runs_in_order() {
        let script = script(&["220", "EHLO\\sclient", "250", "STARTTLS", "220"]);
        let mut chat = Chat::new(&script);
        assert_eq!(chat.next_action(), WAIT);
        assert_eq!(chat.receive(b"220 mx ESMTP\r\n"), 3);
        assert_eq!(chat.next_action(), send(b"EHLO client\r"));
        assert_eq!(chat.next_action(), WAIT);
        // The rest of the greeting line comes first and does not match.
        assert_eq!(chat.receive(b" mx ESMTP\r\n"), 11);
        assert_eq!(chat.next_action(), Action::Receive);
        assert_eq!(chat.receive(b"250-mx\r\n250 STARTTLS\r\n"), 3);
        assert_eq!(chat.next_action(), send(b"STARTTLS\r"));
        assert_eq!(chat.next_action(), WAIT);
        assert_eq!(chat.receive(b"220 go ahead\r\n\x16\x03\x01"), 3);
        assert_eq!(chat.next_action(), Action::Done);
        assert_eq!(chat.receive(b" go ahead"), 0);
    }

    #[test]
    fn match_split_across_reads() {
        let script = script(&["STARTTLS", "220\\sready"]);
        let mut chat = Chat::new(&script);
        assert_eq!(chat.next_action(), WAIT);
        for piece in [&b"xxSTA"[..], b"RT", b"T"] {
            assert_eq!(chat.receive(piece), piece.len());
            assert_eq!(chat.next_action(), Action::Receive);
        }
        assert_eq!(chat.receive(b"LS\r\n"), 2);
        assert_eq!(chat.next_action(), send(b"220 ready\r"));
        assert_eq!(chat.next_action(), Action::Done);
    }

    #[test]
    fn abort_string_ends_script() {
        let script = script(&["ABORT", "-ERR", "+OK", "STLS"]);
        let mut chat = Chat::new(&script);
        assert_eq!(chat.next_action(), WAIT);
        assert_eq!(chat.receive(b"-E"), 2);
        assert_eq!(chat.receive(b"RR no\r\n"), 2);
        let aborted = Action::Aborted {
            pattern: b"-ERR".to_vec(),
        };
        assert_eq!(chat.next_action(), aborted);
        assert_eq!(chat.next_action(), aborted);
    }

    #[test]
    fn expect_wins_over_abort_at_same_byte() {
        let script = script(&["ABORT", "NO", "NO"]);
        let mut chat = Chat::new(&script);
        assert_eq!(chat.next_action(), WAIT);
        assert_eq!(chat.receive(b"NO"), 2);
        assert_eq!(chat.next_action(), Action::Done);
    }

    #[test]
    fn timeout_changes_mid_script() {
        let script = script(&["TIMEOUT", "2", "a", "b", "TIMEOUT", "7", "c"]);
        let mut chat = Chat::new(&script);
        let two = Action::Expect {
            timeout: Duration::from_secs(2),
        };
        assert_eq!(chat.next_action(), two);
        chat.receive(b"a");
        assert_eq!(chat.next_action(), send(b"b\r"));
        assert_eq!(
            chat.next_action(),
            Action::Expect {
                timeout: Duration::from_secs(7)
            }
        );
        chat.time_out();
        assert_eq!(
            chat.next_action(),
            Action::TimedOut {
                expect: b"c".to_vec(),
                timeout: Duration::from_secs(7)
            }
        );
    }

    #[test]
    fn sub_sequence_sends_on_timeout() {
        let script = script(&["ogin:--ogin:", "ppp"]);
        let mut chat = Chat::new(&script);
        assert_eq!(chat.next_action(), WAIT);
        chat.receive(b"og");
        chat.time_out();
        assert_eq!(chat.next_action(), send(b"\r"));
        assert_eq!(chat.next_action(), WAIT);
        // The window restarted, so the earlier "og" does not complete a match.
        assert_eq!(chat.receive(b"in:"), 3);
        assert_eq!(chat.next_action(), Action::Receive);
        assert_eq!(chat.receive(b"login:"), 6);
        assert_eq!(chat.next_action(), send(b"ppp\r"));
        assert_eq!(chat.next_action(), Action::Done);
    }

    #[test]
    fn sub_sequence_fails_after_last_fallback() {
        let script = script(&["a-b-c"]);
        let mut chat = Chat::new(&script);
        assert_eq!(chat.next_action(), WAIT);
        chat.time_out();
        assert_eq!(chat.next_action(), send(b"b\r"));
        assert_eq!(chat.next_action(), WAIT);
        chat.time_out();
        assert_eq!(
            chat.next_action(),
            Action::TimedOut {
                expect: b"c".to_vec(),
                timeout: DEFAULT_TIMEOUT
            }
        );
    }

    #[test]
    fn trailing_fallback_send_counts_as_success() {
        let script = script(&["a-b", "c"]);
        let mut chat = Chat::new(&script);
        assert_eq!(chat.next_action(), WAIT);
        chat.time_out();
        assert_eq!(chat.next_action(), send(b"b\r"));
        assert_eq!(chat.next_action(), send(b"c\r"));
        assert_eq!(chat.next_action(), Action::Done);
    }

    #[test]
    fn empty_expect_sends_at_once() {
        let script = script(&["", "a1 STARTTLS", "a1 OK"]);
        let mut chat = Chat::new(&script);
        assert_eq!(chat.next_action(), send(b"a1 STARTTLS\r"));
        assert_eq!(chat.next_action(), WAIT);
    }

    #[test]
    fn pauses_come_between_sends() {
        let script = script(&["", "a\\db\\p\\c"]);
        let mut chat = Chat::new(&script);
        assert_eq!(chat.next_action(), send(b"a"));
        assert_eq!(chat.next_action(), Action::Pause(DELAY));
        assert_eq!(chat.next_action(), send(b"b"));
        assert_eq!(chat.next_action(), Action::Pause(PAUSE));
        assert_eq!(chat.next_action(), Action::Done);
    }

    #[test]
    fn close_while_waiting_fails() {
        let script = script(&["+OK"]);
        let mut chat = Chat::new(&script);
        assert_eq!(chat.next_action(), WAIT);
        chat.close();
        assert_eq!(
            chat.next_action(),
            Action::Closed {
                expect: b"+OK".to_vec()
            }
        );
    }

    #[test]
    fn control_and_octal_bytes_match() {
        let script = script(&["^C\\101\\t", "x"]);
        let mut chat = Chat::new(&script);
        assert_eq!(chat.next_action(), WAIT);
        assert_eq!(chat.receive(b"\x03A\t!"), 3);
        assert_eq!(chat.next_action(), send(b"x\r"));
    }
}
