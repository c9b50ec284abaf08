//! Spare relay buffers kept per thread, so a relay that frees a read buffer while it waits and
//! allocates it again at the next readiness event reuses the memory instead of calling
//! `calloc` and `free` for every wake-up.
//!
//! Each thread keeps at most [`MAX_SPARE_BUFFERS`] buffers, so the memory held apart from the
//! sessions is bounded by the number of threads, not by the number of sessions.

use std::cell::RefCell;

/// Maximum number of spare buffers one thread keeps, of every capacity together.
pub(super) const MAX_SPARE_BUFFERS: usize = 8;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Returns a buffer of `capacity` bytes: a spare one of that length, or a new zeroed one.
///
/// A reused buffer contains the bytes of its last use. The relay only reads the bytes a
/// system call or GnuTLS has written into it, so stale bytes never reach a peer.
pub(super) fn take(capacity: usize) -> Vec<u8> {
    let reused = SPARE
        .try_with(|spare| {
            let mut spare = spare.borrow_mut();
            let found = spare.iter().rposition(|buf| buf.len() == capacity)?;
            Some(spare.swap_remove(found))
        })
        .ok()
        .flatten();
    reused.unwrap_or_else(|| vec![0; capacity])
}

/// Keeps `buf` as a spare buffer of this thread, or frees it when the thread already keeps
/// [`MAX_SPARE_BUFFERS`].
pub(super) fn give(buf: Vec<u8>) {
    if buf.is_empty() {
        return;
    }
    // A thread that is exiting has no spare list any more, so the buffer is freed.
    let _ = SPARE.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < MAX_SPARE_BUFFERS {
            spare.push(buf);
        }
    });
}

#[cfg(test)]
fn spare_count() -> usize {
    SPARE.with(|spare| spare.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_buffer_is_taken_again() {
        let mut buf = take(64);
        buf[0] = 7;
        let address = buf.as_ptr();
        give(buf);

        let again = take(64);
        assert_eq!(again.as_ptr(), address, "the spare buffer was not reused");
        assert_eq!(again.len(), 64);
    }

    #[test]
    fn take_matches_capacity() {
        give(vec![1; 16]);
        let other = take(32);
        assert_eq!(other.len(), 32);
        assert!(
            other.iter().all(|&byte| byte == 0),
            "a new buffer is zeroed"
        );
        assert_eq!(take(16).len(), 16);
    }

    #[test]
    fn spare_list_is_bounded() {
        for _ in 0..MAX_SPARE_BUFFERS + 5 {
            give(vec![0; 8]);
        }
        assert_eq!(spare_count(), MAX_SPARE_BUFFERS);
        for _ in 0..MAX_SPARE_BUFFERS {
            take(8);
        }
        assert_eq!(spare_count(), 0);
    }
}
