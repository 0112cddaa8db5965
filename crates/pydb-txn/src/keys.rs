//! How versions and metadata are laid out in the engine's key space.
//!
//! The engine knows nothing about transactions: it stores bytes under
//! bytes, sorted. The transaction layer turns each *version* of a user key
//! into one engine key, so that the engine's ordered scan does the work of
//! finding the version a snapshot may see.
//!
//! ```text
//! engine key of a version:  0x01 | escape(key) | 0x00 0x00 | be64(u64::MAX - ts)
//! engine value:             0x01 | value         (a value)
//!                           0x02 | le64(deadline) | value
//!                                                (a value that expires)
//!                           0x00                 (a tombstone: deleted at ts)
//! metadata:                 0x00 | name          (e.g. "last_commit_ts")
//! ```
//!
//! Two properties make this work, and the tests pin both:
//!
//! 1. *Keys keep their order.* `escape` doubles every `0x00` byte as
//!    `0x00 0xFF` and the key ends with `0x00 0x00`. The terminator sorts
//!    below any escaped byte, so if `a < b` then every version key of `a`
//!    sorts before every version key of `b`, also when `a` is a prefix of
//!    `b` (`"ab"` vs `"abc"`).
//! 2. *Newer versions come first.* The commit timestamp is stored inverted
//!    and big-endian, so within one key the versions sort newest first. A
//!    forward scan that starts at `key | inverted(S)` therefore lands on the
//!    newest version with a timestamp at or below `S`: exactly the version a
//!    snapshot taken at `S` sees.
//!
//! Metadata keys start with `0x00` and version keys with `0x01`, so the
//! two never mix and a scan of user data never meets metadata.

use std::ops::Bound;

use bytes::Bytes;
use pydb_storage::KeyRange;

use crate::error::{Error, Result, printable};

/// First byte of every metadata key.
const META_PREFIX: u8 = 0x00;
/// First byte of every version key.
const VERSION_PREFIX: u8 = 0x01;
/// The timestamp suffix of the oldest possible version (ts 0): every
/// version key of a key sorts at or below `prefix | OLDEST_SUFFIX`.
const OLDEST_SUFFIX: [u8; 8] = [0xFF; 8];
/// Length of the timestamp suffix.
const TS_LEN: usize = 8;

/// The metadata key holding the last commit timestamp, written in every
/// commit batch (little-endian `u64`).
pub(crate) const META_LAST_COMMIT: &[u8] = b"\x00last_commit_ts";
/// The metadata key holding the garbage-collection horizon: versions of
/// commits before it may be gone (little-endian `u64`).
pub(crate) const META_GC_HORIZON: &[u8] = b"\x00gc_horizon";

/// Value tag of a tombstone.
const TAG_TOMBSTONE: u8 = 0x00;
/// Value tag of a value.
const TAG_VALUE: u8 = 0x01;
/// Value tag of a value with an expiry deadline: `0x02 | le64 unix-ms
/// deadline | value`. The deadline travels with the value, so every
/// engine stores, recovers and compacts it like any other byte.
const TAG_EXPIRING: u8 = 0x02;
/// Length of the deadline after [`TAG_EXPIRING`].
const DEADLINE_LEN: usize = 8;

/// A version that is not a tombstone: the value and, if it expires, its
/// deadline in Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    /// The user's value.
    pub(crate) value: Bytes,
    /// When it stops being visible: a reader whose clock reads past this
    /// sees no value (Redis's rule: expired once `now > deadline`).
    pub(crate) deadline: Option<u64>,
}

impl Stored {
    /// Whether the value is expired at `now_ms`.
    pub(crate) fn is_expired(&self, now_ms: u64) -> bool {
        self.deadline.is_some_and(|d| now_ms > d)
    }
}

/// `0x01 | escape(key) | 0x00 0x00`: what every version key of `key`
/// starts with.
pub(crate) fn key_prefix(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 3 + TS_LEN);
    out.push(VERSION_PREFIX);
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
    out
}

/// The engine key of the version of `key` committed at `ts`.
pub(crate) fn version_key(key: &[u8], ts: u64) -> Vec<u8> {
    let mut out = key_prefix(key);
    out.extend_from_slice(&(u64::MAX - ts).to_be_bytes());
    out
}

/// The engine range holding the versions of `key` a snapshot at `ts`
/// sees, newest first: its first item is the visible version.
pub(crate) fn visible_range(key: &[u8], ts: u64) -> KeyRange {
    let prefix = key_prefix(key);
    let mut start = prefix.clone();
    start.extend_from_slice(&(u64::MAX - ts).to_be_bytes());
    let mut end = prefix;
    end.extend_from_slice(&OLDEST_SUFFIX);
    KeyRange {
        start: Bound::Included(Bytes::from(start)),
        end: Bound::Included(Bytes::from(end)),
    }
}

/// The engine range holding every version of every user key in
/// `(start, end)`.
pub(crate) fn version_range(start: Bound<&[u8]>, end: Bound<&[u8]>) -> KeyRange {
    let oldest = |key: &[u8]| {
        let mut k = key_prefix(key);
        k.extend_from_slice(&OLDEST_SUFFIX);
        Bytes::from(k)
    };
    let start = match start {
        Bound::Included(k) => Bound::Included(Bytes::from(key_prefix(k))),
        Bound::Excluded(k) => Bound::Excluded(oldest(k)),
        Bound::Unbounded => Bound::Included(Bytes::from_static(&[VERSION_PREFIX])),
    };
    let end = match end {
        Bound::Included(k) => Bound::Included(oldest(k)),
        Bound::Excluded(k) => Bound::Excluded(Bytes::from(key_prefix(k))),
        Bound::Unbounded => Bound::Excluded(Bytes::from_static(&[VERSION_PREFIX + 1])),
    };
    KeyRange { start, end }
}

/// Splits an engine key into the user key and the commit timestamp (the
/// one decoder of the version-key format; tools use it to name keys).
pub fn decode_version_key(engine_key: &[u8]) -> Result<(Bytes, u64)> {
    let bad = |reason: &str| Error::Corrupted {
        key: printable(engine_key),
        reason: reason.to_string(),
    };
    let rest = match engine_key.split_first() {
        Some((&VERSION_PREFIX, rest)) => rest,
        _ => return Err(bad("not a version key")),
    };
    let mut key = Vec::with_capacity(rest.len());
    let mut i = 0;
    loop {
        match rest.get(i) {
            None => return Err(bad("version key without terminator")),
            Some(0) => match rest.get(i + 1) {
                Some(0) => break,
                Some(0xFF) => {
                    key.push(0);
                    i += 2;
                }
                _ => return Err(bad("bad escape in version key")),
            },
            Some(&b) => {
                key.push(b);
                i += 1;
            }
        }
    }
    let suffix = &rest[i + 2..];
    let inverted: [u8; TS_LEN] = suffix
        .try_into()
        .map_err(|_| bad("version key timestamp is not 8 bytes"))?;
    Ok((Bytes::from(key), u64::MAX - u64::from_be_bytes(inverted)))
}

/// The engine value of a version: `Some(value)` or a tombstone.
pub(crate) fn encode_value(value: Option<&[u8]>) -> Vec<u8> {
    match value {
        None => vec![TAG_TOMBSTONE],
        Some(v) => {
            let mut out = Vec::with_capacity(v.len() + 1);
            out.push(TAG_VALUE);
            out.extend_from_slice(v);
            out
        }
    }
}

/// The engine value of a version that is not a tombstone: tag `0x01`
/// without a deadline, tag `0x02` with one.
pub(crate) fn encode_stored(value: &[u8], deadline: Option<u64>) -> Vec<u8> {
    let Some(deadline) = deadline else {
        return encode_value(Some(value));
    };
    let mut out = Vec::with_capacity(1 + DEADLINE_LEN + value.len());
    out.push(TAG_EXPIRING);
    out.extend_from_slice(&deadline.to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// Decodes an engine value with its deadline: `None` for a tombstone.
pub(crate) fn decode_stored(engine_key: &[u8], value: &Bytes) -> Result<Option<Stored>> {
    let bad = |reason: &str| Error::Corrupted {
        key: printable(engine_key),
        reason: reason.into(),
    };
    match value.first() {
        Some(&TAG_VALUE) => Ok(Some(Stored {
            value: value.slice(1..),
            deadline: None,
        })),
        Some(&TAG_EXPIRING) => {
            let deadline: [u8; DEADLINE_LEN] = value
                .get(1..1 + DEADLINE_LEN)
                .and_then(|d| d.try_into().ok())
                .ok_or_else(|| bad("expiring version value shorter than its deadline"))?;
            Ok(Some(Stored {
                value: value.slice(1 + DEADLINE_LEN..),
                deadline: Some(u64::from_le_bytes(deadline)),
            }))
        }
        Some(&TAG_TOMBSTONE) if value.len() == 1 => Ok(None),
        _ => Err(bad("version value has no valid tag")),
    }
}

/// Encodes a `u64` metadata value.
pub(crate) fn encode_u64(v: u64) -> [u8; 8] {
    v.to_le_bytes()
}

/// Decodes a `u64` metadata value.
pub(crate) fn decode_u64(meta_key: &[u8], value: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = value.try_into().map_err(|_| Error::Corrupted {
        key: printable(meta_key),
        reason: format!("metadata value of {} bytes, expected 8", value.len()),
    })?;
    Ok(u64::from_le_bytes(bytes))
}

/// Whether `(start, end)` holds no key at all.
pub(crate) fn range_is_empty(start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    match (start, end) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b)) => a >= b,
        _ => false,
    }
}

const _: () = assert!(META_PREFIX < VERSION_PREFIX);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn versions_decode_to_what_was_encoded() {
        for key in [&b"a"[..], b"\x00", b"a\x00b", b"\xff\x00\x00", b""] {
            for ts in [0, 1, 77, u64::MAX] {
                let (k, t) = decode_version_key(&version_key(key, ts)).unwrap();
                assert_eq!((&k[..], t), (key, ts));
            }
        }
        assert!(decode_version_key(b"\x01ab").is_err());
        assert!(decode_version_key(b"\x01a\x00\x01").is_err());
        assert!(decode_version_key(b"\x00meta").is_err());
        assert!(decode_stored(b"k", &Bytes::from_static(b"\x03")).is_err());
        assert!(decode_stored(b"k", &Bytes::from_static(b"\x00\x00")).is_err());
        assert!(decode_stored(b"k", &Bytes::new()).is_err());
    }

    /// The example in docs/formats.md.
    #[test]
    fn the_documented_example_encodes_as_documented() {
        let hex: Vec<String> = version_key(b"a\x00b", 5)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex.join(" "),
            "01 61 00 ff 62 00 00 ff ff ff ff ff ff ff fa"
        );
        assert_eq!(encode_value(None), [0x00]);
        assert_eq!(encode_value(Some(b"v")), [0x01, b'v']);
        // "v" expiring at 2026-01-01T00:00:00Z = 1_767_225_600_000 ms.
        let hex: Vec<String> = encode_stored(b"v", Some(1_767_225_600_000))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex.join(" "), "02 00 a8 da 76 9b 01 00 00 76");
        let formats = include_str!("../../../docs/formats.md");
        assert!(formats.contains("\n02 00 a8 da 76 9b 01 00 00 76\n"));
        assert_eq!(encode_stored(b"v", None), [0x01, b'v']);
    }

    #[test]
    fn deadlines_decode_to_what_was_encoded() {
        for deadline in [None, Some(0), Some(1), Some(u64::MAX)] {
            for value in [&b""[..], b"v", b"\x00\x01\x02"] {
                let bytes = Bytes::from(encode_stored(value, deadline));
                let stored = decode_stored(b"k", &bytes).unwrap().unwrap();
                assert_eq!(stored.value, value);
                assert_eq!(stored.deadline, deadline);
            }
        }
        // A deadline cut short is damage, never a guess.
        for cut in 1..=DEADLINE_LEN {
            let short = Bytes::from(vec![TAG_EXPIRING; cut]);
            assert!(decode_stored(b"k", &short).is_err());
        }
        let at = |d| Stored {
            value: Bytes::new(),
            deadline: d,
        };
        assert!(!at(Some(10)).is_expired(10));
        assert!(at(Some(10)).is_expired(11));
        assert!(!at(None).is_expired(u64::MAX));
    }

    proptest! {
        #[test]
        fn order_is_key_then_newest_first(
            a in proptest::collection::vec(any::<u8>(), 0..6),
            b in proptest::collection::vec(any::<u8>(), 0..6),
            ta in any::<u64>(),
            tb in any::<u64>(),
        ) {
            let (ka, kb) = (version_key(&a, ta), version_key(&b, tb));
            let expected = a.cmp(&b).then(tb.cmp(&ta));
            prop_assert_eq!(ka.cmp(&kb), expected);
            let all = version_range(Bound::Included(&a), Bound::Included(&a));
            prop_assert!(all.contains(&ka));
            prop_assert_eq!(all.contains(&kb), a == b);
            prop_assert_eq!(visible_range(&a, tb).contains(&ka), ta <= tb);
        }
    }
}
