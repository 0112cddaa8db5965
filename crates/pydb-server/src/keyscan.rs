//! `SCAN`: walking every key a page at a time, with a cursor.
//!
//! Redis's cursor is a position in its hash table, and its client
//! libraries treat it as an unsigned 64-bit number (redis-cli, redis-rs and
//! go-redis parse it). pydb's engines are ordered, so the natural place to
//! resume is *after the last key returned*, but a key does not fit in a
//! number. So a cursor is a number that names a resume key in a small
//! table ([`CursorTable`]) kept by the host (the server, or the shell):
//!
//! ```text
//! SCAN 0 COUNT 2    -> 8123, [a, b]      table: 8123 -> "b"
//! SCAN 8123 COUNT 2 -> 8124, [c, d]      table: 8124 -> "d"
//! SCAN 8124 COUNT 2 -> 0,    [e]         done
//! ```
//!
//! What this keeps of Redis's guarantees: a key present from the first to
//! the last call is returned (exactly once, since the engine yields keys in
//! order and each page starts strictly after the previous one); a key added
//! or removed meanwhile may or may not be. What it adds: the table holds
//! [`MAX_CURSORS`] cursors; an older cursor, or one from before a restart,
//! is refused with `ERR invalid cursor` instead of silently restarting.
//! Cursor numbers start at a value taken from the clock, so a cursor from a
//! previous run is unlikely to name a live entry.
//!
//! `COUNT` is, as in Redis, how many keys a call *looks at*; `MATCH`
//! filters those, so a page can be empty while the cursor is not 0.

use std::collections::{HashMap, VecDeque};
use std::ops::Bound;

use bytes::Bytes;
use parking_lot::Mutex;
use pydb_storage::KeyRange;

use crate::{Error, Result};
use pydb::Db;

/// How many cursors the table remembers.
pub const MAX_CURSORS: usize = 4096;

/// The keys of one page and the cursor to continue from (0: done).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage {
    /// The cursor of the next page, or 0 when the scan is complete.
    pub cursor: u64,
    /// The keys of this page that matched.
    pub keys: Vec<Bytes>,
}

/// Cursor number -> the last key a page returned.
#[derive(Debug)]
pub struct CursorTable {
    resume_after: HashMap<u64, Bytes>,
    /// Cursor numbers, oldest first, for eviction.
    order: VecDeque<u64>,
    next: u64,
}

impl Default for CursorTable {
    fn default() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Self {
            resume_after: HashMap::new(),
            order: VecDeque::new(),
            // Below 2^63, so that clients that parse a cursor as a signed
            // 64-bit number (Java's long) are fine too.
            next: 1 + (u64::from(nanos) << 16),
        }
    }
}

impl CursorTable {
    fn insert(&mut self, key: Bytes) -> u64 {
        let cursor = self.next;
        self.next = self.next.wrapping_add(1).max(1) & (u64::MAX >> 1);
        if self.order.len() >= MAX_CURSORS
            && let Some(oldest) = self.order.pop_front()
        {
            self.resume_after.remove(&oldest);
        }
        self.resume_after.insert(cursor, key);
        self.order.push_back(cursor);
        cursor
    }

    fn get(&self, cursor: u64) -> Option<Bytes> {
        self.resume_after.get(&cursor).cloned()
    }
}

/// One page of a scan (see the module doc).
pub fn scan_page(
    db: &Db,
    cursors: &Mutex<CursorTable>,
    cursor: u64,
    pattern: Option<&[u8]>,
    count: usize,
) -> Result<ScanPage> {
    let start = if cursor == 0 {
        Bound::Unbounded
    } else {
        Bound::Excluded(cursors.lock().get(cursor).ok_or(Error::InvalidCursor)?)
    };
    let range = KeyRange {
        start,
        end: Bound::Unbounded,
    };
    let count = count.max(1);
    let mut keys = Vec::new();
    let mut looked_at = 0;
    let mut last = None;
    for item in db.scan_range(range)?.take(count) {
        let (key, _value) = item?;
        looked_at += 1;
        if pattern.is_none_or(|p| crate::glob::matches(p, &key)) {
            keys.push(key.clone());
        }
        last = Some(key);
    }
    let cursor = match last {
        Some(key) if looked_at == count => cursors.lock().insert(key),
        _ => 0,
    };
    Ok(ScanPage { cursor, keys })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(
        db: &Db,
        cursors: &Mutex<CursorTable>,
        cursor: u64,
        pattern: Option<&[u8]>,
        count: usize,
    ) -> Result<ScanPage> {
        scan_page(db, cursors, cursor, pattern, count)
    }

    #[test]
    fn pages_cover_every_key_once_and_end_with_zero() {
        let db = Db::memory().unwrap();
        let cursors = Mutex::new(CursorTable::default());
        for i in 0..25 {
            db.set(format!("k{i:02}"), "v").unwrap();
        }
        let mut seen = Vec::new();
        let mut cursor = 0;
        loop {
            let page = scan(&db, &cursors, cursor, None, 7).unwrap();
            seen.extend(page.keys);
            cursor = page.cursor;
            if cursor == 0 {
                break;
            }
        }
        let expected: Vec<Bytes> = (0..25).map(|i| Bytes::from(format!("k{i:02}"))).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn match_filters_and_unknown_cursors_are_refused() {
        let db = Db::memory().unwrap();
        let cursors = Mutex::new(CursorTable::default());
        for key in ["user:1", "user:2", "item:1"] {
            db.set(key, "v").unwrap();
        }
        let page = scan(&db, &cursors, 0, Some(b"user:*"), 100).unwrap();
        assert_eq!(page.cursor, 0);
        assert_eq!(
            page.keys,
            vec![Bytes::from("user:1"), Bytes::from("user:2")]
        );
        assert!(matches!(
            scan(&db, &cursors, 12345, None, 10),
            Err(Error::InvalidCursor)
        ));
    }

    #[test]
    fn old_cursors_are_forgotten() {
        let mut table = CursorTable::default();
        let first = table.insert(Bytes::from("a"));
        for _ in 0..MAX_CURSORS {
            table.insert(Bytes::from("b"));
        }
        assert_eq!(table.get(first), None);
        assert_eq!(table.resume_after.len(), MAX_CURSORS);
    }
}
