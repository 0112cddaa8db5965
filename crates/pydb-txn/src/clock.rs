//! Wall-clock time for key expiry, behind a trait so that tests control it.
//!
//! An expiring value stores its deadline in Unix milliseconds (see `keys`).
//! Whether it is still visible depends on *now*, and a test that waited
//! for real time to pass would be slow and flaky. So every reader asks a
//! [`Clock`]: [`SystemClock`] in production, a [`ManualClock`] in tests,
//! which moves only when the test moves it.
//!
//! Each transaction reads the clock once, when it begins, and judges every
//! deadline against that one instant (as Redis judges a whole command
//! against one cached time): a key cannot expire halfway through a
//! transaction, so what it reads stays one consistent picture.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in Unix milliseconds.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    fn now_ms(&self) -> u64;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        // A clock set before 1970 reads as 1970: nothing has expired yet.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A clock that stands still until told to move. Clones share the time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now_ms: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock reading `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self {
            now_ms: Arc::new(AtomicU64::new(now_ms)),
        }
    }

    /// Sets the time.
    pub fn set(&self, now_ms: u64) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
    }

    /// Moves the time forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

/// A shared [`Clock`], as options carry it. Two handles are equal when
/// they are the same clock.
#[derive(Debug, Clone)]
pub struct ClockHandle(Arc<dyn Clock>);

impl ClockHandle {
    /// A handle on `clock`.
    pub fn new(clock: impl Clock + 'static) -> Self {
        Self(Arc::new(clock))
    }

    /// The time now, in Unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.0.now_ms()
    }
}

impl Default for ClockHandle {
    /// The system clock.
    fn default() -> Self {
        Self::new(SystemClock)
    }
}

impl PartialEq for ClockHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ClockHandle {}

impl From<ManualClock> for ClockHandle {
    fn from(clock: ManualClock) -> Self {
        Self::new(clock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = ManualClock::new(1_000);
        let handle = ClockHandle::from(clock.clone());
        assert_eq!(handle.now_ms(), 1_000);
        clock.advance(250);
        assert_eq!(handle.now_ms(), 1_250);
        clock.set(7);
        assert_eq!(handle.now_ms(), 7);
        assert_eq!(handle, handle.clone());
        assert_ne!(handle, ClockHandle::default());
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
    }
}
