//! The relay's decisions, kept apart from the I/O: which step to take without waiting, which
//! readiness to wait for next, and when the session is over.

/// The relay reads no more plaintext while this much ciphertext waits to be sent, so the
/// plaintext → TLS direction holds at most one record beyond it.
pub(super) const PENDING_CIPHERTEXT_LIMIT: usize = 16 * 1024;

/// Progress of the two directions of one relayed session.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct RelayState {
    /// The plaintext side reached end of file and close_notify is queued.
    pub(super) plaintext_eof: bool,
    /// close_notify was sent and the cipher socket's write side is shut down.
    pub(super) cipher_write_shut: bool,
    /// The TLS peer sent close_notify.
    pub(super) close_notify_received: bool,
    /// The plaintext socket's write side is shut down.
    pub(super) plaintext_write_shut: bool,
    /// GnuTLS holds no complete record, so the cipher socket must be read before decrypting.
    pub(super) needs_ciphertext: bool,
    /// The cipher socket reached end of file.
    pub(super) cipher_eof: bool,
    /// A TLS 1.2 renegotiation runs: handshake steps replace decryption, and the application
    /// is not read until it ends.
    pub(super) renegotiating: bool,
}

/// Byte counts the decisions depend on, sampled from the session and the relay's buffer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Levels {
    /// Ciphertext waiting to be sent to the TLS peer.
    pub(super) pending_ciphertext: usize,
    /// Decrypted bytes waiting to be sent to the plaintext side.
    pub(super) pending_plaintext_out: usize,
}

/// A step the relay can take at once, without waiting for a descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Decrypt the next record from GnuTLS's buffers.
    Decrypt,
    /// Advance the renegotiation with the ciphertext fed so far.
    Handshake,
    /// Shut down the plaintext socket's write side, after the peer's close_notify.
    ShutdownPlaintextWrite,
    /// Shut down the cipher socket's write side, after close_notify was flushed.
    ShutdownCipherWrite,
}

/// The readiness the relay waits for next; several may be set at once.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Wants {
    /// Receive ciphertext from the TLS peer.
    pub(super) cipher_read: bool,
    /// Send pending ciphertext to the TLS peer.
    pub(super) cipher_write: bool,
    /// Receive plaintext from the application.
    pub(super) plaintext_read: bool,
    /// Send decrypted bytes to the application.
    pub(super) plaintext_write: bool,
    /// Watch the cipher socket for a hang-up: it is read to the end and nothing waits to be
    /// sent to it, but its write side is still open.
    pub(super) cipher_hangup: bool,
    /// Watch the plaintext socket for a hang-up, under the same conditions.
    pub(super) plaintext_hangup: bool,
}

impl RelayState {
    /// Returns whether both directions are closed, which ends the relay.
    pub(super) fn is_finished(&self) -> bool {
        self.cipher_write_shut && self.plaintext_write_shut
    }

    /// Returns the next step that needs no waiting, if any.
    pub(super) fn next_step(&self, levels: Levels) -> Option<Step> {
        let tls_to_plaintext_open = !self.close_notify_received;
        if self.renegotiating {
            // The handshake step also reports a peer that ended its side mid-renegotiation.
            let input = !self.needs_ciphertext || self.cipher_eof || self.close_notify_received;
            return (input && levels.pending_plaintext_out == 0).then_some(Step::Handshake);
        }
        if tls_to_plaintext_open && !self.needs_ciphertext && levels.pending_plaintext_out == 0 {
            return Some(Step::Decrypt);
        }
        if self.close_notify_received
            && !self.plaintext_write_shut
            && levels.pending_plaintext_out == 0
        {
            return Some(Step::ShutdownPlaintextWrite);
        }
        if self.plaintext_eof && !self.cipher_write_shut && levels.pending_ciphertext == 0 {
            return Some(Step::ShutdownCipherWrite);
        }
        None
    }

    /// Returns what to wait for when [`Self::next_step`] returns `None`.
    ///
    /// Each direction waits on one side at a time: TLS → plaintext reads the cipher socket only
    /// when GnuTLS needs ciphertext and the decrypted bytes are all sent, and plaintext → TLS
    /// reads the application only while little ciphertext is pending. That is the
    /// backpressure: a full socket buffer on one side stops reading on the other.
    pub(super) fn wants(&self, levels: Levels) -> Wants {
        let cipher_write = levels.pending_ciphertext > 0 && !self.cipher_write_shut;
        let plaintext_write = levels.pending_plaintext_out > 0;
        let plaintext_read = !self.plaintext_eof
            && !self.renegotiating
            && levels.pending_ciphertext < PENDING_CIPHERTEXT_LIMIT;
        let cipher_read = !self.close_notify_received
            && self.needs_ciphertext
            && !self.cipher_eof
            && !plaintext_write;
        // A hang-up is watched for only once a socket's data is all read: a peer that writes
        // and closes at once hangs up with bytes still queued for us. A cipher end of file
        // without close_notify is not watched: the next decryption reports the truncation
        // once the decrypted bytes are delivered, and a hang-up must not drop them first.
        Wants {
            cipher_read,
            cipher_write,
            plaintext_read,
            plaintext_write,
            cipher_hangup: self.close_notify_received && !cipher_write && !self.cipher_write_shut,
            plaintext_hangup: self.plaintext_eof && !plaintext_write && !self.plaintext_write_shut,
        }
    }
}

impl Wants {
    /// Returns whether anything is waited for.
    pub(super) fn any(&self) -> bool {
        self.cipher_read
            || self.cipher_write
            || self.plaintext_read
            || self.plaintext_write
            || self.cipher_hangup
            || self.plaintext_hangup
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Levels = Levels {
        pending_ciphertext: 0,
        pending_plaintext_out: 0,
    };

    fn waiting() -> RelayState {
        RelayState {
            needs_ciphertext: true,
            ..RelayState::default()
        }
    }

    #[test]
    fn fresh_state_decrypts_first() {
        // Records that arrived with the last handshake flight are delivered before any wait.
        assert_eq!(RelayState::default().next_step(IDLE), Some(Step::Decrypt));
    }

    #[test]
    fn idle_session_reads_both_sides() {
        let wants = waiting().wants(IDLE);

        assert_eq!(waiting().next_step(IDLE), None);
        assert!(wants.cipher_read);
        assert!(wants.plaintext_read);
        assert!(!wants.cipher_write);
        assert!(!wants.plaintext_write);
    }

    #[test]
    fn unsent_plaintext_blocks_cipher_reads() {
        let levels = Levels {
            pending_plaintext_out: 100,
            ..IDLE
        };
        let wants = waiting().wants(levels);

        assert!(wants.plaintext_write);
        assert!(!wants.cipher_read);
        assert_eq!(
            RelayState::default().next_step(levels),
            None,
            "no decrypting while the last record is unsent"
        );
    }

    #[test]
    fn pending_ciphertext_blocks_plaintext_reads() {
        let levels = Levels {
            pending_ciphertext: PENDING_CIPHERTEXT_LIMIT,
            ..IDLE
        };
        let wants = waiting().wants(levels);

        assert!(wants.cipher_write);
        assert!(!wants.plaintext_read);
        assert!(wants.cipher_read, "the other direction keeps flowing");
    }

    #[test]
    fn plaintext_eof_shuts_cipher_after_flush() {
        let state = RelayState {
            plaintext_eof: true,
            ..waiting()
        };
        let unflushed = Levels {
            pending_ciphertext: 24,
            ..IDLE
        };

        assert_eq!(state.next_step(unflushed), None);
        assert!(state.wants(unflushed).cipher_write);
        assert_eq!(state.next_step(IDLE), Some(Step::ShutdownCipherWrite));
        assert!(!state.wants(IDLE).plaintext_read);
        assert!(
            state.wants(IDLE).cipher_read,
            "TLS to plaintext keeps flowing"
        );
    }

    #[test]
    fn close_notify_shuts_plaintext_after_flush() {
        let state = RelayState {
            close_notify_received: true,
            ..waiting()
        };
        let unsent = Levels {
            pending_plaintext_out: 7,
            ..IDLE
        };

        assert_eq!(state.next_step(unsent), None);
        assert_eq!(state.next_step(IDLE), Some(Step::ShutdownPlaintextWrite));
        assert!(!state.wants(IDLE).cipher_read);
        assert!(
            state.wants(IDLE).plaintext_read,
            "plaintext to TLS keeps flowing"
        );
    }

    #[test]
    fn both_directions_closed_finishes() {
        let state = RelayState {
            plaintext_eof: true,
            cipher_write_shut: true,
            close_notify_received: true,
            plaintext_write_shut: true,
            ..RelayState::default()
        };

        assert!(state.is_finished());
        assert!(!RelayState::default().is_finished());
    }

    #[test]
    fn hangup_watched_only_on_idle_sockets() {
        let half_closed = RelayState {
            plaintext_eof: true,
            ..waiting()
        };

        assert!(half_closed.wants(IDLE).plaintext_hangup);
        assert!(!half_closed.wants(IDLE).cipher_hangup);
        assert!(!waiting().wants(IDLE).plaintext_hangup);
    }

    #[test]
    fn no_hangup_watch_with_unread_data() {
        let backpressured = Levels {
            pending_ciphertext: PENDING_CIPHERTEXT_LIMIT,
            pending_plaintext_out: 1,
        };
        let wants = waiting().wants(backpressured);

        assert!(!wants.plaintext_hangup);
        assert!(!wants.cipher_hangup);
    }

    #[test]
    fn renegotiation_pauses_application_reads() {
        let state = RelayState {
            renegotiating: true,
            ..waiting()
        };
        let wants = state.wants(IDLE);

        assert_eq!(state.next_step(IDLE), None);
        assert!(!wants.plaintext_read);
        assert!(wants.cipher_read);
    }

    #[test]
    fn renegotiation_steps_replace_decrypting() {
        let state = RelayState {
            renegotiating: true,
            ..RelayState::default()
        };
        let unsent = Levels {
            pending_plaintext_out: 3,
            ..IDLE
        };

        assert_eq!(state.next_step(IDLE), Some(Step::Handshake));
        assert_eq!(
            state.next_step(unsent),
            None,
            "data read during the renegotiation is delivered first"
        );
        assert!(state.wants(unsent).plaintext_write);
    }

    #[test]
    fn truncation_delivers_before_hangup_watch() {
        let state = RelayState {
            cipher_eof: true,
            ..RelayState::default()
        };
        let unsent = Levels {
            pending_plaintext_out: 5,
            ..IDLE
        };

        assert!(state.wants(unsent).plaintext_write);
        assert!(!state.wants(unsent).cipher_hangup);
        assert_eq!(
            state.next_step(IDLE),
            Some(Step::Decrypt),
            "the decryption that reports the truncation follows the delivery"
        );
    }

    #[test]
    fn cipher_eof_stops_cipher_reads() {
        let state = RelayState {
            cipher_eof: true,
            ..waiting()
        };

        assert!(!state.wants(IDLE).cipher_read);
    }

    /// Every reachable combination either finishes, has a step, or waits for something, so the
    /// I/O loop never waits for nothing.
    #[test]
    fn every_state_makes_progress() {
        for bits in 0u32..128 {
            let state = RelayState {
                plaintext_eof: bits & 1 != 0,
                cipher_write_shut: bits & 2 != 0,
                close_notify_received: bits & 4 != 0,
                plaintext_write_shut: bits & 8 != 0,
                needs_ciphertext: bits & 16 != 0,
                cipher_eof: bits & 32 != 0,
                renegotiating: bits & 64 != 0,
            };
            // Shut-down write sides only follow their triggers.
            if (state.cipher_write_shut && !state.plaintext_eof)
                || (state.plaintext_write_shut && !state.close_notify_received)
            {
                continue;
            }
            for (pending_ciphertext, pending_plaintext_out) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let levels = Levels {
                    pending_ciphertext,
                    pending_plaintext_out,
                };
                let progresses = state.is_finished()
                    || state.next_step(levels).is_some()
                    || state.wants(levels).any();
                assert!(progresses, "{state:?} {levels:?}");
            }
        }
    }
}
