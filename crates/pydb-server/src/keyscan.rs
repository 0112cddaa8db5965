//! `SCAN`: walking every key a page at a time, with a cursor that names
//! where to go on.
//!
//! Redis's cursor is a position in its hash table, and its client
//! libraries parse it as an unsigned 64-bit number (redis-cli, redis-py's
//! `scan_iter`, redis-rs, go-redis). pydb's engines keep keys in order, so
//! the natural place to resume is a key, and a key does not fit in 64 bits.
//! Most of the time, though, a *prefix* of it does.
//!
//! ## Prefix cursors: the position is in the number
//!
//! Take the first 8 bytes of a key, padded with zero bytes, as a big-endian
//! number, and keep its top 63 bits: that is the key's *group*
//! ([`group_of`]). Keys in order have groups in order. A page is allowed
//! to end only between two keys of *different* groups, and its cursor is
//! the group of the next key to visit:
//!
//! ```text
//!   keys:   apple  apricot  banana  blueberry  cherry
//!   group:  "apple\0\0\0">>1 ...    (each key its own group here)
//!   SCAN 0 COUNT 2  -> cursor = group("banana"), [apple, apricot]
//!   SCAN <that>     -> resume at the first key whose group >= cursor
//! ```
//!
//! Resuming at "group >= cursor" is a plain range scan from the key
//! `cursor << 1` as 8 big-endian bytes, with trailing zero bytes dropped
//! ([`resume_key`]), because a key's group is >= c exactly when the key
//! sorts at or after that byte string. Since the page stopped where the
//! group changed, the next page neither repeats a key nor skips one. The
//! server keeps nothing: the cursor is valid on any connection, after a
//! restart, and as long as the client likes. The group of a key after the
//! first is never 0 (it is larger than the group before it), so 0 keeps
//! its meaning of "start" and "done", and the top bit is always clear.
//!
//! ## Table cursors: when many keys share 8 bytes
//!
//! Keys such as `session:1234...` share their first 8 bytes by the
//! thousand, and a page could only end after the whole group. So when a
//! page has looked at `COUNT` keys and the group goes on for more than
//! `COUNT` further keys, the page ends anyway, and the cursor is an entry
//! in a small table *of this connection* ([`CursorTable`]) that remembers
//! the last key returned. Such a cursor has its top bit set and its other
//! 63 bits random (keyed SipHash of a counter with the process's random
//! keys), so a client cannot guess another's, and the table belongs to one
//! connection anyway: clients never interfere. A table holds
//! [`MAX_TABLE_CURSORS`] entries (oldest forgotten first); a table cursor
//! that is forgotten, from another connection, or from before a restart is
//! refused with `ERR invalid cursor` rather than silently restarting.
//!
//! ## The guarantees
//!
//! - Every key present from the first call to the last is returned, and
//!   returned once (keys come in order and no page overlaps the last).
//! - A key added or removed meanwhile may or may not be returned.
//! - A page looks at about `COUNT` keys: at least `COUNT` unless the scan
//!   ends, at most `2 * COUNT` (the rest of a group). As in Redis, `COUNT`
//!   counts keys looked at; `MATCH` filters those, so a page can be empty
//!   while the cursor is not 0.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::ops::Bound;

use bytes::Bytes;
use parking_lot::Mutex;
use pydb_storage::KeyRange;

use crate::{Error, Result};
use pydb::Db;

/// How many table cursors one connection remembers.
pub const MAX_TABLE_CURSORS: usize = 64;

/// The bit that marks a table cursor; prefix cursors never have it.
const TABLE_CURSOR_BIT: u64 = 1 << 63;

/// The keys of one page and the cursor to continue from (0: done).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage {
    /// The cursor of the next page, or 0 when the scan is complete.
    pub cursor: u64,
    /// The keys of this page that matched.
    pub keys: Vec<Bytes>,
}

/// The group of a key: the top 63 bits of its first 8 bytes (zero-padded)
/// read as a big-endian number. Keys in order have groups in order.
pub fn group_of(key: &[u8]) -> u64 {
    let mut prefix = [0u8; 8];
    for (slot, byte) in prefix.iter_mut().zip(key) {
        *slot = *byte;
    }
    u64::from_be_bytes(prefix) >> 1
}

/// The smallest byte string at or after which every key of group `>=
/// group` sorts (and before which every key of a smaller group sorts).
pub fn resume_key(group: u64) -> Bytes {
    let bytes = (group << 1).to_be_bytes();
    let len = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    Bytes::copy_from_slice(bytes.get(..len).unwrap_or_default())
}

/// The table cursors of one connection: cursor -> the last key a page
/// returned.
#[derive(Debug, Default)]
pub struct CursorTable {
    /// `(cursor, resume after this key)`, oldest first.
    entries: VecDeque<(u64, Bytes)>,
    /// Keyed with the process's random SipHash keys.
    random: RandomState,
    issued: u64,
}

impl CursorTable {
    fn insert(&mut self, key: Bytes) -> u64 {
        let mut hasher = self.random.build_hasher();
        hasher.write_u64(self.issued);
        self.issued = self.issued.wrapping_add(1);
        let cursor = hasher.finish() | TABLE_CURSOR_BIT;
        if self.entries.len() >= MAX_TABLE_CURSORS {
            self.entries.pop_front();
        }
        self.entries.push_back((cursor, key));
        cursor
    }

    fn get(&self, cursor: u64) -> Option<Bytes> {
        self.entries
            .iter()
            .rev()
            .find(|(c, _)| *c == cursor)
            .map(|(_, key)| key.clone())
    }
}

/// One page of a scan (see the module doc). `cursors` is the table of the
/// calling connection.
pub fn scan_page(
    db: &Db,
    cursors: &Mutex<CursorTable>,
    cursor: u64,
    pattern: Option<&[u8]>,
    count: usize,
) -> Result<ScanPage> {
    let start = if cursor == 0 {
        Bound::Unbounded
    } else if cursor & TABLE_CURSOR_BIT != 0 {
        Bound::Excluded(cursors.lock().get(cursor).ok_or(Error::InvalidCursor)?)
    } else {
        Bound::Included(resume_key(cursor))
    };
    let range = KeyRange {
        start,
        end: Bound::Unbounded,
    };
    let count = count.max(1);
    let mut keys = Vec::new();
    let mut last: Option<Bytes> = None;
    // `looked_at`: how many keys this page has looked at before `key`.
    for (looked_at, item) in db.scan_range(range)?.enumerate() {
        let (key, _value) = item?;
        if let Some(last) = &last
            && looked_at >= count
        {
            if group_of(&key) != group_of(last) {
                return Ok(ScanPage {
                    cursor: group_of(&key),
                    keys,
                });
            }
            if looked_at >= count.saturating_mul(2) {
                let cursor = cursors.lock().insert(last.clone());
                return Ok(ScanPage { cursor, keys });
            }
        }
        if pattern.is_none_or(|p| crate::glob::matches(p, &key)) {
            keys.push(key.clone());
        }
        last = Some(key);
    }
    Ok(ScanPage { cursor: 0, keys })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans everything with `count`, returning the keys and the cursors.
    fn scan_all(db: &Db, cursors: &Mutex<CursorTable>, count: usize) -> (Vec<Bytes>, Vec<u64>) {
        let mut seen = Vec::new();
        let mut issued = Vec::new();
        let mut cursor = 0;
        loop {
            let page = scan_page(db, cursors, cursor, None, count).unwrap();
            assert!(page.keys.len() <= 2 * count, "{page:?}");
            seen.extend(page.keys);
            cursor = page.cursor;
            if cursor == 0 {
                return (seen, issued);
            }
            issued.push(cursor);
        }
    }

    #[test]
    fn pages_cover_every_key_once_and_end_with_zero() {
        let db = Db::memory().unwrap();
        let cursors = Mutex::new(CursorTable::default());
        for i in 0..25 {
            db.set(format!("{i:02}"), "v").unwrap();
        }
        let (seen, issued) = scan_all(&db, &cursors, 7);
        let expected: Vec<Bytes> = (0..25).map(|i| Bytes::from(format!("{i:02}"))).collect();
        assert_eq!(seen, expected);
        // Short distinct keys: every cursor is a prefix cursor.
        assert!(
            issued.iter().all(|c| c & TABLE_CURSOR_BIT == 0),
            "{issued:?}"
        );
        assert!(cursors.lock().entries.is_empty());
    }

    #[test]
    fn prefix_cursors_need_no_state_and_survive_a_new_table() {
        let db = Db::memory().unwrap();
        for i in 0..40 {
            db.set(format!("k{i:02}"), "v").unwrap();
        }
        let page = scan_page(&db, &Mutex::new(CursorTable::default()), 0, None, 10).unwrap();
        assert_eq!(page.keys.len(), 10);
        // Another connection (another table), or after a restart.
        let other = Mutex::new(CursorTable::default());
        let next = scan_page(&db, &other, page.cursor, None, 10).unwrap();
        assert_eq!(next.keys.first(), Some(&Bytes::from("k10")));
    }

    #[test]
    fn keys_sharing_eight_bytes_use_table_cursors_and_are_all_returned() {
        let db = Db::memory().unwrap();
        let mut expected = Vec::new();
        for i in 0..100 {
            let key = Bytes::from(format!("session:{i:03}"));
            db.set(&key, "v").unwrap();
            expected.push(key);
        }
        for extra in ["a", "z", "\u{7f}x", "\0", "\0\0\u{1}"] {
            db.set(extra, "v").unwrap();
            expected.push(Bytes::from(extra));
        }
        expected.sort();
        let cursors = Mutex::new(CursorTable::default());
        let (seen, issued) = scan_all(&db, &cursors, 10);
        assert_eq!(seen, expected);
        assert!(
            issued.iter().any(|c| c & TABLE_CURSOR_BIT != 0),
            "{issued:?}"
        );
        // A table cursor is this connection's alone.
        let table_cursor = issued
            .iter()
            .find(|c| *c & TABLE_CURSOR_BIT != 0)
            .copied()
            .unwrap();
        let other = Mutex::new(CursorTable::default());
        assert!(matches!(
            scan_page(&db, &other, table_cursor, None, 10),
            Err(Error::InvalidCursor)
        ));
    }

    #[test]
    fn binary_keys_near_the_group_edges_are_neither_skipped_nor_repeated() {
        let db = Db::memory().unwrap();
        let mut expected = Vec::new();
        for first in [0u8, 1, 0x7f, 0x80, 0xfe, 0xff] {
            for len in 1..=10 {
                for last in [0u8, 1, 0xff] {
                    let mut key = vec![first; len];
                    if let Some(end) = key.last_mut() {
                        *end = last;
                    }
                    expected.push(Bytes::from(key));
                }
            }
        }
        expected.retain(|k| !k.is_empty());
        expected.sort();
        expected.dedup();
        for key in &expected {
            db.set(key, "v").unwrap();
        }
        for count in [1, 2, 3, 5, 8, 13] {
            let cursors = Mutex::new(CursorTable::default());
            let (seen, _) = scan_all(&db, &cursors, count);
            assert_eq!(seen, expected, "count {count}");
        }
    }

    #[test]
    fn resume_key_is_where_a_group_starts() {
        for key in [&b"a"[..], b"ab\0", b"abcdefgh", b"abcdefghij", b"\xff\xff"] {
            let group = group_of(key);
            let start = resume_key(group);
            assert!(key >= &start[..], "{key:?} {start:?}");
            assert_eq!(group_of(&start), group);
        }
        assert_eq!(resume_key(group_of(b"user")), Bytes::from("user"));
    }

    #[test]
    fn match_filters_and_unknown_cursors_are_refused() {
        let db = Db::memory().unwrap();
        let cursors = Mutex::new(CursorTable::default());
        for key in ["user:1", "user:2", "item:1"] {
            db.set(key, "v").unwrap();
        }
        let page = scan_page(&db, &cursors, 0, Some(b"user:*"), 100).unwrap();
        assert_eq!(page.cursor, 0);
        assert_eq!(
            page.keys,
            vec![Bytes::from("user:1"), Bytes::from("user:2")]
        );
        assert!(matches!(
            scan_page(&db, &cursors, TABLE_CURSOR_BIT | 12345, None, 10),
            Err(Error::InvalidCursor)
        ));
    }

    #[test]
    fn old_table_cursors_are_forgotten_and_ids_are_not_sequential() {
        let mut table = CursorTable::default();
        let first = table.insert(Bytes::from("a"));
        let second = table.insert(Bytes::from("a"));
        assert!(second.abs_diff(first) > 1 << 20, "{first} {second}");
        for _ in 0..MAX_TABLE_CURSORS {
            table.insert(Bytes::from("b"));
        }
        assert_eq!(table.get(first), None);
        assert_eq!(table.entries.len(), MAX_TABLE_CURSORS);
    }
}
