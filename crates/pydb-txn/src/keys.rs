//! How versions and metadata are laid out in the engine's key space.
//!
//! The engine knows nothing about transactions: it stores bytes under
//! bytes, sorted. The transaction layer turns each *version* of a user key
//! into one engine key, so that the engine's ordered scan does the work of
//! finding the version a snapshot may see.
//!
//! ```text
//! engine key of a version:  space | escape(key) | 0x00 0x00 | be64(u64::MAX - ts)
//! engine value:             0x01 | value         (a value)
//!                           0x02 | le64(deadline) | value
//!                                                (a value that expires)
//!                           0x00                 (a tombstone: deleted at ts)
//! metadata:                 0x00 | name          (e.g. "last_commit_ts")
//! ```
//!
//! `space` is the [`Keyspace`]'s prefix byte: `0x01` for the Redis-style
//! key-value commands ([`Keyspace::Kv`]), `0x02` for the rows and indexes
//! of the SQL layer ([`Keyspace::Sql`]). One database holds both, and a
//! `KEYS *` never sees a table row: each space is one contiguous stretch
//! of the engine's order, and a scan of one never leaves it.
//!
//! Three properties make this work, and the tests pin them:
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
//! 3. *Spaces never mix.* Metadata keys start with `0x00`, version keys
//!    with their space's byte (`0x01`, `0x02`, ...), so a scan of one
//!    space never meets metadata or another space's keys.
//!
//! ## Spaced keys
//!
//! Inside the layer a key is always handled together with its space, as
//! one *spaced key*: `space | key`, unescaped. The write buffer, the locks,
//! the SSI read sets and the write-write check all work on spaced keys,
//! so the Kv key `a` (`01 61`) and the Sql key `a` (`02 61`) are different
//! keys to every one of them and can never conflict. Spaced keys sort like
//! the version keys they become, and a range within one space is the
//! spaced range from `space | start` to `space | end` (an open end becomes
//! the space's first or last possible key, see [`spaced_range`]).

use std::ops::Bound;

use bytes::Bytes;
use pydb_storage::KeyRange;

use crate::error::{Error, Result, printable};

/// Which part of the database a key belongs to. Each space has its own
/// keys: the same key bytes in two spaces are two unrelated keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Keyspace {
    /// The key-value commands (`GET`, `SET`, `KEYS`, `DBSIZE`, ...):
    /// engine prefix `0x01`.
    Kv,
    /// The SQL layer's rows and indexes: engine prefix `0x02`.
    Sql,
}

impl Keyspace {
    /// Every keyspace, in engine order.
    pub const ALL: [Keyspace; 2] = [Keyspace::Kv, Keyspace::Sql];

    /// The first byte of every version key of this space.
    pub const fn prefix(self) -> u8 {
        match self {
            Keyspace::Kv => 0x01,
            Keyspace::Sql => 0x02,
        }
    }

    /// The space whose version keys start with `byte`.
    pub fn from_prefix(byte: u8) -> Option<Keyspace> {
        Keyspace::ALL.into_iter().find(|s| s.prefix() == byte)
    }

    /// A short lowercase name, for messages and tools (`kv`, `sql`).
    pub const fn name(self) -> &'static str {
        match self {
            Keyspace::Kv => "kv",
            Keyspace::Sql => "sql",
        }
    }
}

/// First byte of every metadata key.
const META_PREFIX: u8 = 0x00;
/// The timestamp suffix of the oldest possible version (ts 0): every
/// version key of a key sorts at or below `prefix | OLDEST_SUFFIX`.
const OLDEST_SUFFIX: [u8; 8] = [0xFF; 8];
/// Length of the timestamp suffix.
pub(crate) const TS_LEN: usize = 8;

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
    /// Whether the value is expired at `now_ms` ([`expired`]).
    pub(crate) fn is_expired(&self, now_ms: u64) -> bool {
        expired(self.deadline, now_ms)
    }
}

/// Whether a version with `deadline` is expired at `now_ms`: only once
/// the clock is past the deadline (Redis's rule), never without one. The
/// one place the rule is written; every reader of versions asks here.
pub(crate) fn expired(deadline: Option<u64>, now_ms: u64) -> bool {
    deadline.is_some_and(|d| now_ms > d)
}

/// The spaced key of `key` in `space`: `space | key`.
pub(crate) fn spaced(space: Keyspace, key: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(key.len() + 1);
    out.push(space.prefix());
    out.extend_from_slice(key);
    Bytes::from(out)
}

/// A spaced key built in place: the space's byte, then the user key,
/// which the caller appends to the same buffer. The transaction
/// ([`Transaction::insert_spaced`], [`Transaction::set_dependent_spaced`])
/// copies it into its key arena, and the caller may [`SpacedKey::clear`]
/// it and build the next key in the same buffer.
///
/// Why it exists: a user key handed over as a slice would be copied
/// behind its space's byte into a buffer of its own first (`spaced`).
/// SQL's INSERT writes a row key and a key per index for each row, each
/// built from the row's values only to be written once: built here, in
/// one buffer kept from row to row, a key costs no allocation.
///
/// [`Transaction::insert_spaced`]: crate::Transaction::insert_spaced
/// [`Transaction::set_dependent_spaced`]: crate::Transaction::set_dependent_spaced
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpacedKey {
    space: Keyspace,
    /// `space | key`.
    buf: Vec<u8>,
}

impl SpacedKey {
    /// An empty key of `space`, with room for `capacity` bytes of user key.
    pub fn new(space: Keyspace, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(1 + capacity);
        buf.push(space.prefix());
        SpacedKey { space, buf }
    }

    /// The key `key` of `space` (a copy).
    pub fn from_user(space: Keyspace, key: &[u8]) -> Self {
        let mut spaced = Self::new(space, key.len());
        spaced.buf.extend_from_slice(key);
        spaced
    }

    /// Appends to the user key: `write` is handed the key's buffer and
    /// must only append to it (what is there, the space's byte first,
    /// stays), as an encoder into a `Vec<u8>` does.
    pub fn append_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let len = self.buf.len();
        write(&mut self.buf);
        debug_assert!(self.buf.len() >= len && self.buf.first() == Some(&self.space.prefix()));
    }

    /// The key's space.
    pub fn space(&self) -> Keyspace {
        self.space
    }

    /// The user key (without the space's byte).
    pub fn user_key(&self) -> &[u8] {
        &self.buf[1..]
    }

    /// Empties the user key (the space's byte stays), keeping the buffer.
    pub fn clear(&mut self) {
        self.buf.truncate(1);
    }

    /// `space | key`, as the layer keeps it.
    pub(crate) fn as_spaced(&self) -> &[u8] {
        &self.buf
    }
}

/// The spaced range of the user range `(start, end)` in `space`. An open
/// start becomes `space` alone (below every key of the space, since user
/// keys are never empty); an open end becomes the next space's byte,
/// excluded (above every key of the space).
pub(crate) fn spaced_range(space: Keyspace, start: Bound<&[u8]>, end: Bound<&[u8]>) -> KeyRange {
    let p = space.prefix();
    KeyRange {
        start: match start {
            Bound::Included(k) => Bound::Included(spaced(space, k)),
            Bound::Excluded(k) => Bound::Excluded(spaced(space, k)),
            Bound::Unbounded => Bound::Included(Bytes::copy_from_slice(&[p])),
        },
        end: match end {
            Bound::Included(k) => Bound::Included(spaced(space, k)),
            Bound::Excluded(k) => Bound::Excluded(spaced(space, k)),
            Bound::Unbounded => Bound::Excluded(Bytes::copy_from_slice(&[p + 1])),
        },
    }
}

/// A spaced key as text for messages: `'a'` in the Kv space, `sql:'a'` in
/// another (and the raw bytes if the prefix is no space's).
pub(crate) fn describe_key(spaced: &[u8]) -> String {
    match spaced.split_first() {
        Some((&p, key)) if p == Keyspace::Kv.prefix() => printable(key),
        Some((&p, key)) => match Keyspace::from_prefix(p) {
            Some(space) => format!("{}:{}", space.name(), printable(key)),
            None => printable(spaced),
        },
        None => printable(spaced),
    }
}

/// A spaced range as text for messages, e.g. `range ['a', 'c')` or
/// `sql range [sql:'a', +inf)`.
pub(crate) fn describe_range(range: &KeyRange) -> String {
    // The one-byte bounds are the open ends `spaced_range` made.
    let start = match &range.start {
        Bound::Included(k) if k.len() == 1 => "(-inf".to_string(),
        Bound::Included(k) => format!("[{}", describe_key(k)),
        Bound::Excluded(k) => format!("({}", describe_key(k)),
        Bound::Unbounded => "(-inf".to_string(),
    };
    let end = match &range.end {
        Bound::Excluded(k) if k.len() == 1 => "+inf)".to_string(),
        Bound::Included(k) => format!("{}]", describe_key(k)),
        Bound::Excluded(k) => format!("{})", describe_key(k)),
        Bound::Unbounded => "+inf)".to_string(),
    };
    let space = match &range.start {
        Bound::Included(k) | Bound::Excluded(k) => {
            k.first().copied().and_then(Keyspace::from_prefix)
        }
        Bound::Unbounded => None,
    };
    match space {
        Some(space) if space != Keyspace::Kv => format!("{} range {start}, {end}", space.name()),
        _ => format!("range {start}, {end}"),
    }
}

/// `space | escape(key) | 0x00 0x00`, for the spaced key `space | key`:
/// what every version key of it starts with.
pub(crate) fn key_prefix(spaced: &[u8]) -> Vec<u8> {
    let (space, key) = spaced.split_first().map_or((0, &[][..]), |(p, k)| (*p, k));
    // Room for a timestamp, so that `version_key` does not reallocate.
    prefix_of(space, key, TS_LEN)
}

/// `space | escape(key) | 0x00 0x00`, in a vector with room for `extra`
/// more bytes: sized exactly, as [`with_escaped`] knows the escaped
/// length before the vector is made.
fn prefix_of(space: u8, key: &[u8], extra: usize) -> Vec<u8> {
    with_escaped(key, |escaped| {
        let mut out = Vec::with_capacity(1 + escaped.len() + 2 + extra);
        out.push(space);
        out.extend_from_slice(escaped);
        out.extend_from_slice(&[0, 0]);
        out
    })
}

/// Key bytes [`with_escaped`] escapes in one buffer on the stack: every
/// SQL and Redis-style key in practice. A power of two, for the mask in
/// [`escape_chunk`].
const ESCAPE_CHUNK: usize = 64;

/// Calls `f` with `escape(key)` (every `0x00` byte doubled as `0x00
/// 0xFF`), built on the stack when the key is at most [`ESCAPE_CHUNK`]
/// bytes long, so that the caller can size its own buffer exactly.
///
/// Why it is built this way: escaping is on the path of every version
/// written and every point read, on keys of 20-40 bytes of which SQL's
/// (big-endian ids and integers) are half zeros, so a scan for runs
/// without zeros finds little to copy in bulk. What costs is the work per
/// byte; [`escape_chunk`] does one load, two stores and an add for each,
/// with no branch and no bounds check, where a first pass counting the
/// zeros and a loop branching on each byte into an exactly sized vector
/// cost three times as many instructions.
fn with_escaped<T>(key: &[u8], f: impl FnOnce(&[u8]) -> T) -> T {
    let mut buf = [0u8; 2 * ESCAPE_CHUNK + 1];
    if key.len() <= ESCAPE_CHUNK {
        let len = escape_chunk(key, &mut buf);
        return f(&buf[..len]);
    }
    let mut escaped = Vec::with_capacity(2 * key.len());
    for chunk in key.chunks(ESCAPE_CHUNK) {
        let len = escape_chunk(chunk, &mut buf);
        escaped.extend_from_slice(&buf[..len]);
    }
    f(&escaped)
}

/// Escapes `chunk` (at most [`ESCAPE_CHUNK`] bytes) into the start of
/// `buf` and returns the escaped length. Each byte is stored with a spare
/// `0xFF` after it, and the position moves past the `0xFF` only after a
/// zero (where it is the escape's second byte; otherwise the next byte
/// overwrites it).
fn escape_chunk(chunk: &[u8], buf: &mut [u8; 2 * ESCAPE_CHUNK + 1]) -> usize {
    debug_assert!(chunk.len() <= ESCAPE_CHUNK);
    let mut at = 0;
    for &b in chunk {
        // Before the `i`-th byte `at` is at most `2 * i`, below
        // `2 * ESCAPE_CHUNK`: the mask changes nothing, and it shows the
        // compiler that both stores are in bounds (no check per byte).
        let i = at & (2 * ESCAPE_CHUNK - 1);
        buf[i] = b;
        buf[i + 1] = 0xFF;
        at = i + 1 + usize::from(b == 0);
    }
    at
}

/// The engine key of the version of the spaced key committed at `ts`.
///
/// The commit writes versions with [`version_key_bytes`] and
/// [`put_version_value`]; this encoder is the tests' reference for them.
#[cfg(test)]
pub(crate) fn version_key(spaced: &[u8], ts: u64) -> Vec<u8> {
    let mut out = key_prefix(spaced);
    out.extend_from_slice(&(u64::MAX - ts).to_be_bytes());
    out
}

/// The engine range holding the versions of a spaced key that a snapshot
/// at `ts` sees, newest first: its first item is the visible version.
pub(crate) fn visible_range(spaced: &[u8], ts: u64) -> KeyRange {
    let (space, key) = spaced.split_first().map_or((0, &[][..]), |(p, k)| (*p, k));
    range_from_prefix(prefix_of(space, key, TS_LEN), ts)
}

/// The visible range of the versions starting with `start` (a key prefix
/// with room for a timestamp): two allocations, each sized exactly, so
/// that neither bound is reallocated on its way into a `Bytes`.
fn range_from_prefix(mut start: Vec<u8>, ts: u64) -> KeyRange {
    let mut end = Vec::with_capacity(start.capacity());
    end.extend_from_slice(&start);
    start.extend_from_slice(&(u64::MAX - ts).to_be_bytes());
    end.extend_from_slice(&OLDEST_SUFFIX);
    KeyRange {
        start: Bound::Included(Bytes::from(start)),
        end: Bound::Included(Bytes::from(end)),
    }
}

/// Bytes of the stack buffer [`with_point_bounds`] builds both bounds in:
/// room for keys whose escape is up to 117 bytes (a SQL row key is about
/// 20 escaped, a Redis-style key rarely more).
const POINT_BOUNDS_STACK: usize = 256;

/// Calls `read` with the two bounds of [`visible_range`] of the key `key`
/// in `space` (both included): the range of a point read. They are built
/// without making the spaced key first, and in a buffer on the stack when
/// they fit, so a point read allocates nothing for them (the engine takes
/// them borrowed: `StorageEngine::first_value_in`). The key is escaped
/// once, by [`with_escaped`] (as every version key is), and copied into
/// both bounds.
pub(crate) fn with_point_bounds<T>(
    space: Keyspace,
    key: &[u8],
    ts: u64,
    read: impl FnOnce(&[u8], &[u8]) -> T,
) -> T {
    with_escaped(key, |escaped| {
        let prefix = 1 + escaped.len() + 2;
        let len = prefix + TS_LEN;
        let mut stack = [0u8; POINT_BOUNDS_STACK];
        let mut heap = Vec::new();
        let buf = if 2 * len <= POINT_BOUNDS_STACK {
            &mut stack[..2 * len]
        } else {
            heap.resize(2 * len, 0);
            &mut heap[..]
        };
        let (start, end) = buf.split_at_mut(len);
        start[0] = space.prefix();
        start[1..prefix - 2].copy_from_slice(escaped);
        // The terminator.
        start[prefix - 2..prefix].copy_from_slice(&[0, 0]);
        start[prefix..].copy_from_slice(&(u64::MAX - ts).to_be_bytes());
        end[..prefix].copy_from_slice(&start[..prefix]);
        end[prefix..].copy_from_slice(&OLDEST_SUFFIX);
        read(start, end)
    })
}

/// The engine range holding every version of every spaced key in `range`
/// (a range made by [`spaced_range`]).
pub(crate) fn version_range(range: &KeyRange) -> KeyRange {
    let oldest = |key: &[u8]| {
        let mut k = key_prefix(key);
        k.extend_from_slice(&OLDEST_SUFFIX);
        Bytes::from(k)
    };
    let start = match &range.start {
        Bound::Included(k) => Bound::Included(Bytes::from(key_prefix(k))),
        Bound::Excluded(k) => Bound::Excluded(oldest(k)),
        Bound::Unbounded => Bound::Excluded(Bytes::from_static(&[META_PREFIX + 1])),
    };
    let end = match &range.end {
        Bound::Included(k) => Bound::Included(oldest(k)),
        Bound::Excluded(k) => Bound::Excluded(Bytes::from(key_prefix(k))),
        Bound::Unbounded => Bound::Unbounded,
    };
    KeyRange { start, end }
}

/// The engine range of every version of every space: all but metadata.
pub(crate) fn all_versions() -> KeyRange {
    KeyRange {
        start: Bound::Included(Bytes::from_static(&[META_PREFIX + 1])),
        end: Bound::Unbounded,
    }
}

/// Checks an engine key as [`decode_spaced`] does, without building the
/// spaced key: returns the length of its *key part* (`space |
/// escape(key) | 0x00 0x00`, everything but the timestamp) and the commit
/// timestamp.
///
/// The key part stands for the spaced key without decoding it: two
/// version keys have equal key parts exactly when they are versions of
/// the same key, and key parts sort as their spaced keys do (property 1
/// above). A scan uses it to tell the versions of one key from the next
/// and to merge with the transaction's own writes (whose key parts
/// [`key_prefix`] builds) without an allocation per version.
pub(crate) fn split_version_key(engine_key: &[u8]) -> Result<(usize, u64)> {
    split_version_key_from(engine_key, 0)
}

/// [`split_version_key`] of the engine key met after a version of the key
/// whose checked key part is `previous` (empty if none), in a scan, given
/// `shared`, their [`common_prefix_len`]: the bytes the two share were
/// checked then and are not walked again.
///
/// Consecutive keys of a scan share most of their bytes (a table's rows
/// all start with the space, the table's prefix and, escaped, the high
/// bytes of their primary key), and walking every byte of every key was
/// a tenth of a table scan's cost. The walk resumes at the last *unit
/// boundary* of `previous` within the shared bytes: a unit of a checked
/// key part is the space byte, a data byte, an escape `00 FF` or the
/// terminator `00 00`, so a position is a boundary unless the byte before
/// it is a `00` (the first byte of an escape or of the terminator; the
/// terminator's second byte would mean the whole of `previous` is shared,
/// which [`split_version_key`] would reject just the same). The result,
/// error or not, is exactly [`split_version_key`]'s.
#[inline]
pub(crate) fn split_version_key_after(
    engine_key: &[u8],
    previous: &[u8],
    shared: usize,
) -> Result<(usize, u64)> {
    let shared = shared.min(previous.len().saturating_sub(1));
    let boundary = match shared.checked_sub(1).and_then(|i| previous.get(i)) {
        Some(0) => shared - 1,
        Some(_) => shared,
        None => 0,
    };
    split_version_key_from(engine_key, boundary)
}

/// How many leading bytes `a` and `b` share, compared eight at a time.
#[inline]
pub(crate) fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    let mut shared = 0;
    while let (Some(x), Some(y)) = (word_at(a, shared), word_at(b, shared)) {
        let diff = x ^ y;
        if diff != 0 {
            // Little-endian: the first differing byte is the lowest one.
            return shared + (diff.trailing_zeros() / 8) as usize;
        }
        shared += 8;
    }
    let tail = a.get(shared..).unwrap_or_default();
    let other = b.get(shared..).unwrap_or_default();
    shared + tail.iter().zip(other).take_while(|(x, y)| x == y).count()
}

/// [`split_version_key`], with the first `checked` bytes of `engine_key`
/// already known to be the space byte and whole units of an escaped key
/// (0: nothing known).
///
/// A version key is `space | escape(key) | 00 00 | timestamp`, and the
/// timestamp is the last [`TS_LEN`] bytes, so the terminator is where the
/// key part must end; what is left to check is that the bytes before it
/// (from `checked` on) are whole units: every `00` there is the first
/// byte of an escape, followed by `FF`. That is the same set of keys as a
/// walk from unit to unit to the first `00 00` accepts (an escape's `FF`
/// is never a `00`, so no unit can start inside another, and a walk that
/// meets a `00` not followed by `FF` before the terminator stops at a key
/// part whose timestamp is not 8 bytes), but it is tested eight bytes at
/// a time (see [`escapes_are_whole`]): a table's keys are numbers whose
/// low bytes are mostly escaped zeros, and the byte walk was a tenth of a
/// table scan's cost.
#[inline]
fn split_version_key_from(engine_key: &[u8], checked: usize) -> Result<(usize, u64)> {
    let bad = |reason: &str| Error::Corrupted {
        key: printable(engine_key),
        reason: reason.to_string(),
    };
    match engine_key.first() {
        Some(_) if checked > 0 => {}
        Some(&p) if Keyspace::from_prefix(p).is_some() => {}
        Some(&META_PREFIX) => return Err(bad("not a version key")),
        _ => return Err(bad("version key of an unknown keyspace")),
    }
    // The space byte, the terminator, the timestamp.
    let key_part = match engine_key.len().checked_sub(TS_LEN) {
        Some(key_part) if key_part >= 3 => key_part,
        _ => return Err(bad("version key shorter than a key and a timestamp")),
    };
    let terminator = key_part - 2;
    if engine_key.get(terminator..key_part) != Some(&[0, 0][..]) {
        return Err(bad("version key without terminator before its timestamp"));
    }
    if !escapes_are_whole(engine_key, checked.max(1), terminator) {
        return Err(bad("bad escape in version key"));
    }
    let inverted: [u8; TS_LEN] = engine_key
        .get(key_part..)
        .and_then(|suffix| suffix.try_into().ok())
        .ok_or_else(|| bad("version key timestamp is not 8 bytes"))?;
    Ok((key_part, u64::MAX - u64::from_be_bytes(inverted)))
}

/// `0x7F` in every byte.
const LOW_SEVEN_BITS: u64 = 0x7F7F_7F7F_7F7F_7F7F;

/// `0x80` in each byte of `word` that is zero, `0x00` in every other (an
/// exact test: no carry crosses a byte, as the low seven bits are added
/// alone).
fn zero_bytes(word: u64) -> u64 {
    !(((word & LOW_SEVEN_BITS).wrapping_add(LOW_SEVEN_BITS)) | word | LOW_SEVEN_BITS)
}

/// The eight bytes of `bytes` from `at`, little-endian (byte `at` lowest).
#[inline]
fn word_at(bytes: &[u8], at: usize) -> Option<u64> {
    let word: [u8; 8] = bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(word))
}

/// Whether every `00` in `key[start..end]` is followed by an `FF` (the
/// byte after it may be `key[end]`). The caller's `end` is a terminator
/// with a timestamp after it, so nine bytes are readable from every
/// position before `end`: a word of the bytes and a word of their next
/// bytes are compared eight positions at a time, the last word masked to
/// the positions before `end`. (Out of bounds, which that rules out, it
/// answers `false`: an error, never a panic.)
#[inline]
fn escapes_are_whole(key: &[u8], start: usize, end: usize) -> bool {
    let mut at = start;
    while at < end {
        let (Some(here), Some(next)) = (word_at(key, at), word_at(key, at + 1)) else {
            return false;
        };
        // A zero byte whose next byte is not FF (`!next` is zero there).
        let unescaped = zero_bytes(here) & !zero_bytes(!next);
        let positions = end - at;
        let in_range = if positions >= 8 {
            u64::MAX
        } else {
            (1u64 << (8 * positions)) - 1
        };
        if unescaped & in_range != 0 {
            return false;
        }
        at += 8;
    }
    true
}

/// The user key (without its space byte) of a checked key part (see
/// [`split_version_key`]): the escapes undone, the terminator dropped.
pub(crate) fn user_key_of_part(key_part: &[u8]) -> Bytes {
    let mut key = Vec::with_capacity(key_part.len());
    unescape_part_into(key_part, &mut key);
    Bytes::from(key)
}

/// Appends the user key of a checked key part to `out`.
fn unescape_part_into(key_part: &[u8], out: &mut Vec<u8>) {
    let escaped = key_part
        .get(1..key_part.len().saturating_sub(2))
        .unwrap_or_default();
    let mut bytes = escaped.iter();
    while let Some(&b) = bytes.next() {
        out.push(b);
        if b == 0 {
            // The escape's 0xFF (checked by `split_version_key`).
            bytes.next();
        }
    }
}

/// Splits an engine key into the spaced key and the commit timestamp:
/// [`split_version_key`]'s checks, then the key part unescaped.
pub(crate) fn decode_spaced(engine_key: &[u8]) -> Result<(Bytes, u64)> {
    let (key_part, ts) = split_version_key(engine_key)?;
    let part = engine_key.get(..key_part).unwrap_or_default();
    let mut key = Vec::with_capacity(key_part);
    // The space byte (checked by the split), then the user key.
    key.extend_from_slice(part.get(..1).unwrap_or_default());
    unescape_part_into(part, &mut key);
    Ok((Bytes::from(key), ts))
}

/// Splits an engine key into its keyspace, the user key and the commit
/// timestamp (the one decoder of the version-key format; tools use it to
/// name keys).
pub fn decode_version_key(engine_key: &[u8]) -> Result<(Keyspace, Bytes, u64)> {
    let (spaced, ts) = decode_spaced(engine_key)?;
    let space = spaced
        .first()
        .copied()
        .and_then(Keyspace::from_prefix)
        .ok_or_else(|| Error::Corrupted {
            key: printable(engine_key),
            reason: "version key of an unknown keyspace".into(),
        })?;
    Ok((space, spaced.slice(1..), ts))
}

/// The engine key of the version of the spaced key committed at `ts`
/// (`key_prefix` and the inverted timestamp), in a vector of its exact
/// size: a `Bytes` made from it owns the vector, with no second
/// allocation to share it (see [`put_version_value`] for why the commit
/// keeps each key in its own allocation).
pub(crate) fn version_key_bytes(spaced: &[u8], ts: u64) -> Bytes {
    let (space, key) = spaced.split_first().map_or((0, &[][..]), |(p, k)| (*p, k));
    let mut out = prefix_of(space, key, TS_LEN);
    out.extend_from_slice(&(u64::MAX - ts).to_be_bytes());
    debug_assert_eq!(out.len(), out.capacity());
    Bytes::from(out)
}

/// The length of the engine value of a version holding `stored`
/// (`None`: a tombstone), as [`put_version_value`] writes it.
pub(crate) fn version_value_len(stored: Option<&Stored>) -> usize {
    stored.map_or(1, |s| {
        1 + s.deadline.map_or(0, |_| DEADLINE_LEN) + s.value.len()
    })
}

/// Appends the engine value of a version holding `stored` (`None`: a
/// tombstone) to `out`: tag, deadline, bytes.
///
/// Why appended: the commit writes all the values of a group into one
/// buffer and hands the engine slices of it, one allocation for the group
/// instead of one per version. Keys are not put there: an engine keeps
/// its keys (the memory engine's map, until garbage collection removes
/// the version), and a key sharing a group's buffer would keep all of it
/// alive; an engine copies the values it keeps (see
/// `StorageEngine::write_batch_owned`), or writes them to disk.
pub(crate) fn put_version_value(stored: Option<&Stored>, out: &mut Vec<u8>) {
    match stored {
        None => out.push(TAG_TOMBSTONE),
        Some(Stored {
            value,
            deadline: None,
        }) => {
            out.push(TAG_VALUE);
            out.extend_from_slice(value);
        }
        Some(Stored {
            value,
            deadline: Some(deadline),
        }) => {
            out.push(TAG_EXPIRING);
            out.extend_from_slice(&deadline.to_le_bytes());
            out.extend_from_slice(value);
        }
    }
}

/// The engine value of a version: `Some(value)` or a tombstone.
///
/// The commit writes versions with [`version_key_bytes`] and
/// [`put_version_value`]; this encoder is the tests' reference for them.
#[cfg(test)]
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
///
/// The commit writes versions with [`version_key_bytes`] and
/// [`put_version_value`]; this encoder is the tests' reference for them.
#[cfg(test)]
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
    Ok(
        decode_header(engine_key, value)?.map(|(start, deadline)| Stored {
            value: value.slice(start..),
            deadline,
        }),
    )
}

/// [`decode_stored`] of a value the caller hands over: the user's value is
/// the same buffer advanced past the header, where a slice of a shared
/// `Bytes` may cost an allocation (the point read's path).
pub(crate) fn decode_stored_owned(engine_key: &[u8], mut value: Bytes) -> Result<Option<Stored>> {
    Ok(decode_header(engine_key, &value)?.map(|(start, deadline)| {
        bytes::Buf::advance(&mut value, start);
        Stored { value, deadline }
    }))
}

/// The header of an engine value: `None` for a tombstone, else where the
/// user's value starts and its deadline.
#[inline]
pub(crate) fn decode_header(
    engine_key: &[u8],
    value: &[u8],
) -> Result<Option<(usize, Option<u64>)>> {
    let bad = |reason: &str| Error::Corrupted {
        key: printable(engine_key),
        reason: reason.into(),
    };
    match value.first() {
        Some(&TAG_VALUE) => Ok(Some((1, None))),
        Some(&TAG_EXPIRING) => {
            let deadline: [u8; DEADLINE_LEN] = value
                .get(1..1 + DEADLINE_LEN)
                .and_then(|d| d.try_into().ok())
                .ok_or_else(|| bad("expiring version value shorter than its deadline"))?;
            Ok(Some((1 + DEADLINE_LEN, Some(u64::from_le_bytes(deadline)))))
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

const _: () = assert!(META_PREFIX < Keyspace::Kv.prefix());
const _: () = assert!(Keyspace::Kv.prefix() < Keyspace::Sql.prefix());

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(bytes: &[u8]) -> String {
        let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
        hex.join(" ")
    }

    /// Checks `key_prefix` against the definition of the escape, one
    /// byte at a time, and that its vector has exactly the room asked for.
    fn check_escape(space: Keyspace, key: &[u8]) {
        let mut expected = vec![space.prefix()];
        for &b in key {
            if b == 0 {
                expected.extend_from_slice(&[0, 0xFF]);
            } else {
                expected.push(b);
            }
        }
        expected.extend_from_slice(&[0, 0]);
        let prefix = key_prefix(&spaced(space, key));
        assert_eq!(hex(&prefix), hex(&expected), "key {}", hex(key));
        if key.len() <= ESCAPE_CHUNK {
            assert_eq!(prefix.capacity(), expected.len() + TS_LEN);
        }
    }

    /// The chunk's edges: keys of one chunk less one, one, one and one
    /// more, and two, all zeros (the longest escape), none, or mixed.
    #[test]
    fn the_escape_is_whole_at_the_chunks_edges() {
        for len in [
            0,
            1,
            ESCAPE_CHUNK - 1,
            ESCAPE_CHUNK,
            ESCAPE_CHUNK + 1,
            2 * ESCAPE_CHUNK,
            2 * ESCAPE_CHUNK + 3,
        ] {
            for fill in [0u8, 0x61] {
                check_escape(Keyspace::Sql, &vec![fill; len]);
            }
            let mixed: Vec<u8> = (0..len)
                .map(|i| if i % 3 == 0 { 0 } else { i as u8 })
                .collect();
            check_escape(Keyspace::Kv, &mixed);
        }
    }

    #[test]
    fn versions_decode_to_what_was_encoded() {
        for space in Keyspace::ALL {
            for key in [&b"a"[..], b"\x00", b"a\x00b", b"\xff\x00\x00", b""] {
                for ts in [0, 1, 77, u64::MAX] {
                    let (s, k, t) =
                        decode_version_key(&version_key(&spaced(space, key), ts)).unwrap();
                    assert_eq!((s, &k[..], t), (space, key, ts));
                }
            }
        }
        assert!(decode_version_key(b"\x01ab").is_err());
        assert!(decode_version_key(b"\x01a\x00\x01").is_err());
        assert!(decode_version_key(b"\x00meta").is_err());
        // A prefix byte that is no keyspace's is damage, not a key.
        assert!(decode_version_key(b"\x07a\x00\x00\xff\xff\xff\xff\xff\xff\xff\xfa").is_err());
        assert!(decode_version_key(b"").is_err());
        assert!(decode_stored(b"k", &Bytes::new()).is_err());
        assert!(decode_stored(b"k", &Bytes::from_static(b"\x03")).is_err());
        assert!(decode_stored(b"k", &Bytes::from_static(b"\x00\x00")).is_err());
        assert!(decode_stored(b"k", &Bytes::new()).is_err());
    }

    #[test]
    fn keyspace_prefixes_round_trip() {
        for space in Keyspace::ALL {
            assert_eq!(Keyspace::from_prefix(space.prefix()), Some(space));
        }
        assert_eq!(Keyspace::from_prefix(META_PREFIX), None);
        assert_eq!(Keyspace::from_prefix(0x03), None);
    }

    /// The examples in docs/formats.md.
    #[test]
    fn the_documented_examples_encode_as_documented() {
        assert_eq!(
            hex(&version_key(&spaced(Keyspace::Kv, b"a\x00b"), 5)),
            "01 61 00 ff 62 00 00 ff ff ff ff ff ff ff fa"
        );
        assert_eq!(
            hex(&version_key(&spaced(Keyspace::Sql, b"a\x00b"), 5)),
            "02 61 00 ff 62 00 00 ff ff ff ff ff ff ff fa"
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
                let owned = decode_stored_owned(b"k", bytes).unwrap().unwrap();
                assert_eq!(owned, stored, "both decoders agree");
            }
        }
        // A deadline cut short is damage, never a guess.
        for cut in 1..=DEADLINE_LEN {
            let short = Bytes::from(vec![TAG_EXPIRING; cut]);
            assert!(decode_stored(b"k", &short).is_err());
            assert!(decode_stored_owned(b"k", short).is_err());
        }
        assert_eq!(
            decode_stored_owned(b"k", Bytes::from_static(b"\x00")).unwrap(),
            None
        );
        assert!(decode_stored_owned(b"k", Bytes::from_static(b"\x00\x00")).is_err());
        assert!(decode_stored_owned(b"k", Bytes::new()).is_err());
        let at = |d| Stored {
            value: Bytes::new(),
            deadline: d,
        };
        assert!(!at(Some(10)).is_expired(10));
        assert!(at(Some(10)).is_expired(11));
        assert!(!at(None).is_expired(u64::MAX));
    }

    #[test]
    fn messages_name_the_space_of_a_key() {
        assert_eq!(describe_key(&spaced(Keyspace::Kv, b"a")), "'a'");
        assert_eq!(describe_key(&spaced(Keyspace::Sql, b"a")), "sql:'a'");
        let all = spaced_range(Keyspace::Sql, Bound::Unbounded, Bound::Unbounded);
        assert_eq!(describe_range(&all), "sql range (-inf, +inf)");
        let some = spaced_range(Keyspace::Kv, Bound::Included(b"a"), Bound::Excluded(b"c"));
        assert_eq!(describe_range(&some), "range ['a', 'c')");
    }

    fn any_space() -> impl Strategy<Value = Keyspace> {
        prop_oneof![Just(Keyspace::Kv), Just(Keyspace::Sql)]
    }

    fn bound(b: &Option<(bool, Vec<u8>)>) -> Bound<&[u8]> {
        match b {
            None => Bound::Unbounded,
            Some((true, k)) => Bound::Included(k),
            Some((false, k)) => Bound::Excluded(k),
        }
    }

    proptest! {
        #[test]
        fn order_is_space_then_key_then_newest_first(
            sa in any_space(),
            sb in any_space(),
            a in proptest::collection::vec(prop_oneof![Just(0u8), Just(0xFF), any::<u8>()], 1..12),
            b in proptest::collection::vec(any::<u8>(), 1..6),
            ta in any::<u64>(),
            tb in any::<u64>(),
        ) {
            let (ka, kb) = (version_key(&spaced(sa, &a), ta), version_key(&spaced(sb, &b), tb));
            let expected = sa.cmp(&sb).then(a.cmp(&b)).then(tb.cmp(&ta));
            prop_assert_eq!(ka.cmp(&kb), expected);
            // The escaping decodes back to the key, zero bytes and all.
            let (s, k, t) = decode_version_key(&ka).unwrap();
            prop_assert_eq!((s, &k[..], t), (sa, &a[..], ta));
            let all = version_range(&spaced_range(sa, Bound::Included(&a), Bound::Included(&a)));
            prop_assert!(all.contains(&ka));
            prop_assert_eq!(all.contains(&kb), sa == sb && a == b);
            prop_assert_eq!(visible_range(&spaced(sa, &a), tb).contains(&ka), ta <= tb);
        }

        /// A version entry is the version key and the encoded value, byte
        /// for byte, for values, expiring values and tombstones.
        #[test]
        fn a_version_entry_is_the_version_key_and_the_value(
            space in any_space(),
            key in proptest::collection::vec(prop_oneof![Just(0u8), any::<u8>()], 1..8),
            value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
            deadline in proptest::option::of(any::<u64>()),
            ts in any::<u64>(),
        ) {
            let spaced = spaced(space, &key);
            let stored = value.as_ref().map(|v| Stored { value: Bytes::copy_from_slice(v), deadline });
            let k = version_key_bytes(&spaced, ts);
            prop_assert_eq!(&k[..], &version_key(&spaced, ts)[..]);
            let mut v = b"before".to_vec();
            put_version_value(stored.as_ref(), &mut v);
            let expected = match &value {
                Some(value) => encode_stored(value, deadline),
                None => encode_value(None),
            };
            prop_assert_eq!(&v[..6], b"before");
            prop_assert_eq!(&v[6..], &expected[..]);
            prop_assert_eq!(version_value_len(stored.as_ref()), expected.len());
        }

        /// The escape, chunk by chunk on the stack, is the byte-by-byte
        /// definition's: for keys shorter and longer than a chunk.
        #[test]
        fn the_escape_is_the_byte_by_byte_definition(
            space in any_space(),
            key in proptest::collection::vec(prop_oneof![Just(0u8), Just(0xFF), any::<u8>()], 0..200),
        ) {
            check_escape(space, &key);
        }

        /// The point read's bounds are the general range's, byte for
        /// byte, on the stack (short keys) and off it (long ones).
        #[test]
        fn the_point_bounds_are_the_visible_range_of_the_spaced_key(
            space in any_space(),
            key in proptest::collection::vec(prop_oneof![Just(0u8), any::<u8>()], 1..90),
            ts in any::<u64>(),
        ) {
            let (start, end) =
                with_point_bounds(space, &key, ts, |s, e| (s.to_vec(), e.to_vec()));
            let general = visible_range(&spaced(space, &key), ts);
            prop_assert_eq!(Bound::Included(Bytes::from(start)), general.start);
            prop_assert_eq!(Bound::Included(Bytes::from(end)), general.end);
        }

        /// The in-place split of a version key agrees with the decoder
        /// on every key, and on every damaged key (any byte string) both
        /// fail or both succeed; key parts sort as the spaced keys do.
        #[test]
        fn the_split_agrees_with_the_decoder(
            sa in any_space(),
            a in proptest::collection::vec(prop_oneof![Just(0u8), Just(0xFF), any::<u8>()], 1..6),
            b in proptest::collection::vec(prop_oneof![Just(0u8), Just(0xFF), any::<u8>()], 1..6),
            ts in any::<u64>(),
            junk in proptest::collection::vec(prop_oneof![Just(0u8), Just(0xFF), any::<u8>()], 0..14),
        ) {
            let ka = version_key(&spaced(sa, &a), ts);
            let (part, t) = split_version_key(&ka).unwrap();
            prop_assert_eq!(t, ts);
            prop_assert_eq!(&ka[..part], &key_prefix(&spaced(sa, &a))[..]);
            prop_assert_eq!(&user_key_of_part(&ka[..part])[..], &a[..]);
            let pb = key_prefix(&spaced(sa, &b));
            prop_assert_eq!(ka[..part].cmp(&pb[..]), a.cmp(&b));
            let mut damaged = vec![sa.prefix()];
            damaged.extend_from_slice(&junk);
            match (split_version_key(&damaged), decode_spaced(&damaged)) {
                (Ok((part, t1)), Ok((key, t2))) => {
                    prop_assert_eq!(t1, t2);
                    prop_assert_eq!(user_key_of_part(&damaged[..part]), key.slice(1..));
                }
                (Err(_), Err(_)) => {}
                (x, y) => prop_assert!(false, "split {x:?}, decode {y:?}"),
            }
        }

        /// A spaced range holds exactly the keys of its space within the
        /// user range, and its version range exactly their versions.
        #[test]
        fn a_range_of_one_space_holds_only_that_space(
            range_space in any_space(),
            key_space in any_space(),
            key in proptest::collection::vec(any::<u8>(), 1..4),
            start in proptest::option::of((any::<bool>(), proptest::collection::vec(any::<u8>(), 1..4))),
            end in proptest::option::of((any::<bool>(), proptest::collection::vec(any::<u8>(), 1..4))),
            ts in any::<u64>(),
        ) {
            let user = KeyRange { start: bound(&start).map(Bytes::copy_from_slice), end: bound(&end).map(Bytes::copy_from_slice) };
            let range = spaced_range(range_space, bound(&start), bound(&end));
            let inside = range_space == key_space && user.contains(&key);
            let key = spaced(key_space, &key);
            prop_assert_eq!(range.contains(&key), inside);
            prop_assert_eq!(version_range(&range).contains(&version_key(&key, ts)), inside);
            prop_assert!(!all_versions().contains(META_LAST_COMMIT));
            prop_assert!(all_versions().contains(&version_key(&key, ts)));
        }
    }

    /// The split as it was first written, the model of
    /// [`split_version_key_from`]: a walk from unit to unit to the first
    /// unescaped `00 00`, then eight bytes of timestamp.
    fn split_by_walk(engine_key: &[u8]) -> Option<(usize, u64)> {
        let (&space, rest) = engine_key.split_first()?;
        Keyspace::from_prefix(space)?;
        let mut i = 0;
        loop {
            match (rest.get(i)?, rest.get(i + 1)) {
                (0, Some(0)) => break,
                (0, Some(0xFF)) => i += 2,
                (0, _) => return None,
                _ => i += 1,
            }
        }
        let key_part = 1 + i + 2;
        let inverted: [u8; TS_LEN] = engine_key.get(key_part..)?.try_into().ok()?;
        Some((key_part, u64::MAX - u64::from_be_bytes(inverted)))
    }

    proptest! {
        /// The word-at-a-time split accepts exactly the keys the byte walk
        /// does, with the same key part and timestamp: well-formed keys of
        /// every length across the word boundaries, the same with one byte
        /// changed (to `00`, `FF` or another), and any bytes at all.
        #[test]
        fn the_split_agrees_with_the_byte_walk(
            space in any_space(),
            key in proptest::collection::vec(prop_oneof![Just(0u8), Just(0xFF), any::<u8>()], 1..40),
            ts in any::<u64>(),
            damage in proptest::option::of((any::<prop::sample::Index>(), prop_oneof![Just(0u8), Just(0xFF), Just(1u8)])),
            cut in proptest::option::of(any::<prop::sample::Index>()),
            junk in proptest::collection::vec(prop_oneof![Just(0u8), Just(0xFF), any::<u8>()], 0..40),
        ) {
            let mut engine_key = version_key(&spaced(space, &key), ts);
            prop_assert_eq!(split_version_key(&engine_key).ok(), split_by_walk(&engine_key));
            if let Some((at, byte)) = damage {
                *at.get_mut(&mut engine_key) = byte;
            }
            if let Some(at) = cut {
                engine_key.truncate(at.index(engine_key.len()));
            }
            prop_assert_eq!(split_version_key(&engine_key).ok(), split_by_walk(&engine_key));
            let mut junk_key = vec![space.prefix()];
            junk_key.extend_from_slice(&junk);
            prop_assert_eq!(split_version_key(&junk_key).ok(), split_by_walk(&junk_key));
        }
    }

    proptest! {
        /// A scan's split, resumed after the key part of the key before,
        /// is the full split (the same key part and timestamp, or an error
        /// for the same keys), damaged keys included; and the common
        /// prefix is the bytes' own.
        #[test]
        fn a_resumed_split_is_the_full_split(
            space in any_space(),
            previous in proptest::collection::vec(prop_oneof![Just(0u8), Just(0xFF), any::<u8>()], 1..24),
            key in proptest::collection::vec(prop_oneof![Just(0u8), Just(0xFF), any::<u8>()], 1..24),
            shared in 0usize..24,
            ts in any::<u64>(),
            damage in proptest::option::of((any::<prop::sample::Index>(), prop_oneof![Just(0u8), Just(0xFF), Just(1u8)])),
            cut in proptest::option::of(any::<prop::sample::Index>()),
        ) {
            // The next key shares a prefix with the one before, as a
            // scan's neighbours do.
            let mut next = previous[..shared.min(previous.len())].to_vec();
            next.extend_from_slice(&key);
            let previous_key = version_key(&spaced(space, &previous), 1);
            let (previous_part, _) = split_version_key(&previous_key).unwrap();
            let previous_part = &previous_key[..previous_part];
            let mut engine_key = version_key(&spaced(space, &next), ts);
            if let Some((at, byte)) = damage {
                *at.get_mut(&mut engine_key) = byte;
            }
            if let Some(at) = cut {
                engine_key.truncate(at.index(engine_key.len()));
            }
            let common = common_prefix_len(&engine_key, previous_part);
            let expected = engine_key.iter().zip(previous_part).take_while(|(a, b)| a == b).count();
            prop_assert_eq!(common, expected);
            let full = split_version_key(&engine_key);
            let resumed = split_version_key_after(&engine_key, previous_part, common);
            match (&full, &resumed) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                (Err(_), Err(_)) => {}
                _ => prop_assert!(false, "full {full:?}, resumed {resumed:?}"),
            }
            prop_assert_eq!(split_version_key_after(&engine_key, &[], 0).ok(), full.ok());
        }
    }
}
