//! The hash table of a hash join: the build side's rows grouped by key.
//!
//! A hash join puts its build (right) rows into a table keyed by their
//! join columns, then looks up the key of every probe (left) row. The
//! probe side is the big one (q5 of the SQL bench probes 60,000 line items
//! and joins 75 of them), so the lookup is the join's per-row cost, and
//! most lookups find nothing.
//!
//! Keys are compared as [`GroupKey`]s compare ([`Value::total_cmp`]):
//! `1`, `1.0` and `TRUE` are one key, text never equals a number, and a
//! key with a NULL matches nothing (NULL = NULL is unknown). Most join
//! keys are integer columns (primary and foreign keys), so the table has
//! two forms:
//!
//! - **integers** (`KeyIndex::Ints`): while every build key holds only
//!   integers (or booleans, which are the integers 0 and 1), the table is
//!   keyed by the `i64`s themselves. A probe key is turned into `i64`s
//!   where it stands in the row (no `Value` cloned, no key built):
//!   an integer is itself, a REAL equals an integer only when it is one
//!   exactly, and text or NULL matches nothing, so such a probe row is
//!   rejected without a lookup.
//! - **values** (`KeyIndex::Values`): any other key (text, a REAL that is
//!   not integral); the key's values are cloned into one reused
//!   [`GroupKey`] and hashed as group keys hash. The first build key that
//!   is not all integers turns the table into this form (the integer keys
//!   already in it become integer values), so both forms find the same
//!   rows: the choice is a speed-up, never a change of result.
//!
//! In the integer form, a probe key is first tested against a *key
//! filter*: per key column, a bitmap with one bit set for each build
//! key's value in that column (the value hashed to one of about eight bits
//! per key). A probe value whose bit is clear is in no build key, so the
//! row has no match and the hash lookup is skipped; a set bit proves
//! nothing, and the lookup decides. Most probe rows find nothing (q5's
//! `lineitem` rows are in the filtered `orders` one time in seven and
//! from the region's suppliers one time in five), and testing a bit is a
//! multiplication and a load where the lookup hashes the key and probes
//! the table; it is SQLite's Bloom filter before its rowid search. The
//! filter is built at the first lookup after the table last gained a key
//! (the build side is complete by then), so it always holds every key.
//!
//! Each key maps to the position of its *bucket*, the build rows with that
//! key, in `buckets`: a probe row remembers the position instead of
//! copying the rows. The hasher is foldhash (seeded at random per table,
//! so colliding keys cannot be prepared), not std's SipHash, whose cost
//! showed in the profile.

use std::cmp::Ordering;
use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::store::KeyBits;
use crate::value::{GroupKey, Row, Value};

type Hasher = foldhash::fast::RandomState;

/// The key → bucket map, in one of the two forms of the module docs.
enum KeyIndex {
    /// Every key inserted so far is integers only.
    Ints(HashMap<Box<[i64]>, usize, Hasher>),
    /// Keys of any values.
    Values(HashMap<GroupKey, usize, Hasher>),
}

/// Per key column, the bits of the integer form's build values (see the
/// module docs): a probe value whose bit is clear is in no build key.
struct KeyFilter {
    /// One set of bits per key column (none: the filter passes every key).
    columns: Vec<KeyBits>,
    /// How many keys the table held when the filter was built: it holds
    /// every key while the table holds that many (a new row of a known
    /// key adds none).
    keys: usize,
}

impl KeyFilter {
    /// The filter of `keys`, each `width` integers (a filter that passes
    /// every key when one is of another width, which the table never
    /// makes).
    fn of<'k>(keys: impl ExactSizeIterator<Item = &'k [i64]> + Clone, width: usize) -> Self {
        let count = keys.len();
        if keys.clone().any(|k| k.len() != width) {
            return KeyFilter {
                columns: Vec::new(),
                keys: count,
            };
        }
        let columns = (0..width)
            .map(|column| KeyBits::of(keys.clone().map(|k| k.get(column).copied().unwrap_or(0))))
            .collect();
        KeyFilter {
            columns,
            keys: count,
        }
    }

    /// Whether a build key may equal `key` (`false`: none does).
    #[inline]
    fn may_hold(&self, key: &[i64]) -> bool {
        self.columns
            .iter()
            .zip(key)
            .all(|(column, &n)| column.may_hold(n))
    }
}

/// A hash join's build rows by key (see the module docs).
pub(crate) struct JoinTable {
    index: KeyIndex,
    /// The integer form's key filter, built at a lookup.
    filter: Option<KeyFilter>,
    buckets: Vec<Vec<Row>>,
    /// Reused for each lookup: the key as integers, or as values.
    ints: Vec<i64>,
    values: GroupKey,
}

/// The integer a build key value is stored as in the integer form, if any.
fn build_int(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        Value::Boolean(b) => Some(i64::from(*b)),
        _ => None,
    }
}

/// The integer a probe key value equals under [`Value::total_cmp`], if
/// any: `None` means it equals no integer (NULL, text, a REAL with a
/// fraction or out of range), so a key holding it matches nothing in a
/// table of integer keys.
fn probe_int(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        Value::Boolean(b) => Some(i64::from(*b)),
        Value::Real(r) => {
            if r.fract() != 0.0 || !(-9.2e18..9.2e18).contains(r) {
                return None;
            }
            // Integral and in range, so the cast is exact; the comparison
            // is the one GroupKey uses, kept as the judge.
            let i = *r as i64;
            (Value::Integer(i).total_cmp(v) == Ordering::Equal).then_some(i)
        }
        Value::Null | Value::Text(_) => None,
    }
}

impl JoinTable {
    pub(crate) fn new(width: usize) -> Self {
        JoinTable {
            index: KeyIndex::Ints(HashMap::default()),
            filter: None,
            buckets: Vec::new(),
            ints: Vec::with_capacity(width),
            values: GroupKey(Vec::with_capacity(width)),
        }
    }

    /// Adds a build row under `key`, whose values hold no NULL (the
    /// caller leaves such rows out: they match nothing).
    pub(crate) fn insert(&mut self, key: &[Value], row: Row) {
        if let KeyIndex::Ints(map) = &mut self.index {
            self.ints.clear();
            self.ints.extend(key.iter().map_while(build_int));
            if self.ints.len() == key.len() {
                let bucket = match map.get(self.ints.as_slice()) {
                    Some(&b) => b,
                    None => {
                        let b = self.buckets.len();
                        map.insert(self.ints.as_slice().into(), b);
                        self.buckets.push(Vec::new());
                        b
                    }
                };
                self.buckets[bucket].push(row);
                return;
            }
            // The first key that is not all integers: from here on, keys
            // of values (the integer keys so far become integer values).
            let values = std::mem::take(map)
                .into_iter()
                .map(|(k, b)| (GroupKey(k.iter().map(|&i| Value::Integer(i)).collect()), b))
                .collect();
            self.index = KeyIndex::Values(values);
        }
        if let KeyIndex::Values(map) = &mut self.index {
            self.values.0.clear();
            self.values.0.extend_from_slice(key);
            match map.get(&self.values) {
                Some(&b) => self.buckets[b].push(row),
                None => {
                    map.insert(self.values.clone(), self.buckets.len());
                    self.buckets.push(vec![row]);
                }
            }
        }
    }

    /// The bucket of the key whose values are `value(0)` .. `value(width -
    /// 1)`, or `None` when no build row has that key (and always when one
    /// of the values is NULL).
    pub(crate) fn find<'v>(
        &mut self,
        width: usize,
        value: impl Fn(usize) -> Result<&'v Value>,
    ) -> Result<Option<usize>> {
        match &self.index {
            KeyIndex::Ints(map) => {
                self.ints.clear();
                for i in 0..width {
                    match probe_int(value(i)?) {
                        Some(n) => self.ints.push(n),
                        None => return Ok(None),
                    }
                }
                if self.filter.as_ref().is_none_or(|f| f.keys != map.len()) {
                    self.filter = Some(KeyFilter::of(map.keys().map(|k| &k[..]), width));
                }
                if self
                    .filter
                    .as_ref()
                    .is_some_and(|f| !f.may_hold(&self.ints))
                {
                    return Ok(None);
                }
                Ok(map.get(self.ints.as_slice()).copied())
            }
            KeyIndex::Values(map) => {
                self.values.0.clear();
                for i in 0..width {
                    let v = value(i)?;
                    if v.is_null() {
                        return Ok(None);
                    }
                    self.values.0.push(v.clone());
                }
                Ok(map.get(&self.values).copied())
            }
        }
    }

    /// Per key column, the bits of every build key's value in it, while
    /// every build key is integers (the integer form; `None` otherwise):
    /// a probe row whose key column holds an INTEGER absent from its bits
    /// is one [`JoinTable::find`] finds no bucket for. The table must be
    /// complete: a key added later is not in the bits handed out.
    pub(crate) fn key_bits(&mut self, width: usize) -> Option<Vec<KeyBits>> {
        let KeyIndex::Ints(map) = &self.index else {
            return None;
        };
        if self.filter.as_ref().is_none_or(|f| f.keys != map.len()) {
            self.filter = Some(KeyFilter::of(map.keys().map(|k| &k[..]), width));
        }
        self.filter
            .as_ref()
            .map(|f| f.columns.clone())
            .filter(|columns| columns.len() == width)
    }

    /// The build rows of bucket `b` (from [`JoinTable::find`]).
    pub(crate) fn bucket(&self, b: usize) -> &[Row] {
        self.buckets.get(b).map_or(&[], Vec::as_slice)
    }
}

/// Column `c` of `row`, for a key read where it stands; an error (not a
/// panic) if the plan named a column the row does not have.
pub(crate) fn key_column(row: &[Value], c: usize) -> Result<&Value> {
    row.get(c)
        .ok_or_else(|| Error::Invalid(format!("column #{c} is out of the row")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            (-4i64..4).prop_map(Value::Integer),
            (-4i64..4).prop_map(|i| Value::Real(i as f64)),
            Just(Value::Real(0.5)),
            Just(Value::Real(-0.0)),
            Just(Value::Real(1e19)),
            any::<bool>().prop_map(Value::Boolean),
            prop_oneof![Just("1"), Just("a")].prop_map(Value::text),
        ]
    }

    /// Build keys: integers only (the table stays in the integer form)
    /// or any values (it changes form part way).
    fn build_keys() -> impl Strategy<Value = Vec<Vec<Value>>> {
        let int = prop_oneof![
            (-4i64..4).prop_map(Value::Integer),
            any::<bool>().prop_map(Value::Boolean),
        ];
        prop_oneof![
            prop::collection::vec(prop::collection::vec(int, 2), 0..30),
            prop::collection::vec(prop::collection::vec(value(), 2), 0..30),
        ]
    }

    proptest! {
        /// Whatever the keys (integers only, or mixed so that the table
        /// changes form part way), a lookup finds exactly the build rows
        /// whose key equals the probe key as `GroupKey`s compare, and
        /// nothing for a key with a NULL.
        #[test]
        fn a_lookup_finds_the_rows_of_equal_keys(
            build in build_keys(),
            probes in prop::collection::vec(prop::collection::vec(value(), 2), 0..30),
        ) {
            let mut table = JoinTable::new(2);
            for (i, key) in build.iter().enumerate() {
                if key.iter().all(|v| !v.is_null()) {
                    table.insert(key, vec![Value::Integer(i as i64)]);
                }
            }
            for probe in &probes {
                let mut want: Vec<i64> = build
                    .iter()
                    .enumerate()
                    .filter(|(_, k)| {
                        k.iter().chain(probe).all(|v| !v.is_null())
                            && GroupKey(k.to_vec()) == GroupKey(probe.clone())
                    })
                    .map(|(i, _)| i as i64)
                    .collect();
                want.sort_unstable();
                let found = table.find(2, |i| key_column(probe, i)).unwrap();
                let mut got: Vec<i64> = found
                    .map(|b| table.bucket(b).iter().map(|r| match r[0] {
                        Value::Integer(i) => i,
                        _ => unreachable!(),
                    }).collect())
                    .unwrap_or_default();
                got.sort_unstable();
                prop_assert_eq!(got, want, "probe {:?}", probe);
            }
        }
    }

    #[test]
    fn integer_keys_match_equal_reals_and_booleans_but_not_text() {
        let mut table = JoinTable::new(1);
        table.insert(&[Value::Integer(1)], vec![Value::text("one")]);
        table.insert(&[Value::Integer(2)], vec![Value::text("two")]);
        assert!(matches!(table.index, KeyIndex::Ints(_)));
        let find = |t: &mut JoinTable, v: Value| t.find(1, |_| Ok(&v)).unwrap();
        assert_eq!(find(&mut table, Value::Integer(1)), Some(0));
        assert_eq!(find(&mut table, Value::Real(2.0)), Some(1));
        assert_eq!(find(&mut table, Value::Boolean(true)), Some(0));
        assert_eq!(find(&mut table, Value::Real(1.5)), None);
        assert_eq!(find(&mut table, Value::text("1")), None);
        assert_eq!(find(&mut table, Value::Null), None);
        // A text key turns the table into keys of values; the integer
        // keys already in it are still found.
        table.insert(&[Value::text("x")], vec![Value::text("ex")]);
        assert!(matches!(table.index, KeyIndex::Values(_)));
        assert_eq!(find(&mut table, Value::Real(1.0)), Some(0));
        assert_eq!(find(&mut table, Value::Integer(2)), Some(1));
        assert_eq!(find(&mut table, Value::text("x")), Some(2));
        assert_eq!(find(&mut table, Value::Null), None);
        assert_eq!(table.bucket(2), &[vec![Value::text("ex")]]);
    }
}
