//! Log lines that a client can trigger at will, rate-limited.
//!
//! A wrong `AUTH`, a connection past `--maxclients`, a client closed for
//! its output buffer: each deserves a line in the log, but a client that
//! repeats them 100,000 times a second must not fill the disk with them
//! (issue 16 W3 measured 9.2 MB of log from one connection). So each kind
//! of line is written at most once per [`INTERVAL`]; the ones held back
//! are counted, and the next line written says how many were suppressed
//! (`suppressed=N`). Lines held back at the very end are never reported.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// At most one line of each kind per this interval.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// The kinds of rate-limited lines, and when each was last written.
#[derive(Debug, Default)]
pub struct RateLimitedLog {
    kinds: Mutex<HashMap<&'static str, Window>>,
}

#[derive(Debug)]
struct Window {
    last: Instant,
    suppressed: u64,
}

impl RateLimitedLog {
    /// Whether a line of `kind` may be written now: `Some(n)` with the
    /// number of lines of that kind suppressed since the last one written,
    /// or `None` (the line is counted as suppressed).
    pub fn admit(&self, kind: &'static str) -> Option<u64> {
        let now = Instant::now();
        let mut kinds = self.kinds.lock();
        match kinds.get_mut(kind) {
            Some(window) if now.duration_since(window.last) < INTERVAL => {
                window.suppressed += 1;
                None
            }
            Some(window) => {
                window.last = now;
                Some(std::mem::take(&mut window.suppressed))
            }
            None => {
                kinds.insert(
                    kind,
                    Window {
                        last: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_a_count_of_the_rest() {
        let log = RateLimitedLog::default();
        assert_eq!(log.admit("auth"), Some(0));
        for _ in 0..5 {
            assert_eq!(log.admit("auth"), None);
        }
        // Another kind has its own window.
        assert_eq!(log.admit("maxclients"), Some(0));
        log.kinds.lock().get_mut("auth").unwrap().last -= INTERVAL;
        assert_eq!(log.admit("auth"), Some(5));
        assert_eq!(log.admit("auth"), None);
    }
}
