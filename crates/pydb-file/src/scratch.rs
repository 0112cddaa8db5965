//! A read buffer per thread, reused across reads.
//!
//! [`File::read_with`](crate::File::read_with) lends the bytes of a range to
//! a visitor; a file that cannot lend them in place (plain `pread`, or a map
//! that does not reach them) has to read them into a buffer first. A fresh
//! `vec![0; len]` per read costs an allocation and a `memset` of bytes that
//! `pread` overwrites at once. Reading into uninitialized memory would need
//! `unsafe` (or the unstable `read_buf`); instead each thread keeps one
//! buffer, zeroed only when it has to grow, so in the steady state a read
//! costs the `pread` alone.
//!
//! The buffer is *taken* out of the thread-local for the duration of a
//! read and put back afterwards, so a visitor that reads again (from the
//! same thread) gets a buffer of its own instead of a `RefCell` panic.
//! Buffers above [`MAX_KEPT`] are dropped after use rather than kept, so
//! one huge read does not pin memory for the life of the thread.

use std::cell::RefCell;

/// The largest buffer a thread keeps between reads.
const MAX_KEPT: usize = 1 << 20;

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Calls `f` with a buffer of exactly `len` bytes (of unspecified content:
/// `f` must overwrite what it reads).
pub(crate) fn with_buffer<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    let mut buf = BUFFER.with(RefCell::take);
    if buf.len() < len {
        buf.resize(len, 0);
    }
    let result = f(buf.get_mut(..len).unwrap_or_default());
    if buf.capacity() <= MAX_KEPT {
        BUFFER.with(|kept| {
            let mut kept = kept.borrow_mut();
            // A nested read may have put a buffer back meanwhile; keep the
            // larger one.
            if kept.capacity() < buf.capacity() {
                *kept = buf;
            }
        });
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_has_the_asked_length_and_is_reused() {
        let first = with_buffer(100, |buf| {
            assert_eq!(buf.len(), 100);
            buf.fill(7);
            buf.as_ptr() as usize
        });
        // The same allocation, and its old bytes: nothing was zeroed.
        let (second, old) = with_buffer(50, |buf| (buf.as_ptr() as usize, buf.to_vec()));
        assert_eq!(first, second);
        assert_eq!(old, vec![7u8; 50]);
    }

    #[test]
    fn a_nested_read_gets_its_own_buffer() {
        with_buffer(10, |outer| {
            outer.fill(1);
            with_buffer(10, |inner| inner.fill(2));
            assert_eq!(outer, &[1u8; 10]);
        });
    }

    #[test]
    fn huge_buffers_are_not_kept() {
        with_buffer(MAX_KEPT + 1, |buf| buf.fill(0));
        BUFFER.with(|kept| assert!(kept.borrow().capacity() <= MAX_KEPT));
    }
}
