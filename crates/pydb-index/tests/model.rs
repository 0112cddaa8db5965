//! Every index agrees with a `BTreeMap` model after each operation of random
//! sequences of inserts, removes, gets, ranges and clears; the skip list keeps
//! its invariants throughout.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use proptest::prelude::*;
use pydb_index::{BPlusTreeIndex, BTreeIndex, InMemoryIndex, Index, SkipListIndex};

#[derive(Debug, Clone)]
enum Op {
    Insert(Vec<u8>, u32),
    Remove(Vec<u8>),
    Get(Vec<u8>),
    Range(Bound<Vec<u8>>, Bound<Vec<u8>>),
    Clear,
}

/// Short keys over a 3-letter alphabet, so that keys collide, share
/// prefixes, and include the empty key; a third of them behind a common
/// 10-byte prefix, so that comparisons must read past the first bytes, and
/// a third behind a 15-byte one, so that keys straddle the 16 bytes the
/// B+tree keeps inline (a zero byte in the alphabet makes "k" and "k\0"
/// differ only by length).
fn key() -> impl Strategy<Value = Vec<u8>> {
    (0u8..3, prop::collection::vec(0u8..3, 0..4)).prop_map(|(prefix, tail)| {
        let prefix: &[u8] = match prefix {
            0 => b"",
            1 => b"common-pre",
            _ => b"common-prefix-1",
        };
        [prefix, &tail].concat()
    })
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        Just(Bound::Unbounded),
        key().prop_map(Bound::Included),
        key().prop_map(Bound::Excluded),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (key(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
        4 => key().prop_map(Op::Remove),
        3 => key().prop_map(Op::Get),
        3 => (bound(), bound()).prop_map(|(s, e)| Op::Range(s, e)),
        1 => Just(Op::Clear),
    ]
}

/// What `BTreeMap::range` would yield, without its panic on inverted bounds.
fn model_range(
    model: &BTreeMap<Vec<u8>, u32>,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
) -> Vec<(Vec<u8>, u32)> {
    model
        .iter()
        .filter(|(k, _)| {
            let k = k.as_slice();
            let after_start = match start {
                Bound::Included(s) => k >= s,
                Bound::Excluded(s) => k > s,
                Bound::Unbounded => true,
            };
            let before_end = match end {
                Bound::Included(e) => k <= e,
                Bound::Excluded(e) => k < e,
                Bound::Unbounded => true,
            };
            after_start && before_end
        })
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// What an operation returned: a value for insert, remove and get, the
/// entries for a range, nothing for clear.
#[derive(Debug, PartialEq)]
enum Outcome {
    Value(Option<u32>),
    Entries(Vec<(Vec<u8>, u32)>),
    Nothing,
}

fn apply(index: &mut dyn Index<u32>, op: &Op) -> Outcome {
    match op {
        Op::Insert(k, v) => Outcome::Value(index.insert(Bytes::copy_from_slice(k), *v)),
        Op::Remove(k) => Outcome::Value(index.remove(k)),
        Op::Get(k) => Outcome::Value(index.get(k).copied()),
        Op::Range(start, end) => {
            let (start, end) = (
                start.as_ref().map(Vec::as_slice),
                end.as_ref().map(Vec::as_slice),
            );
            let mut entries: Vec<(Vec<u8>, u32)> = index
                .range(start, end)
                .map(|(k, v)| (k.to_vec(), *v))
                .collect();
            if !index.is_ordered() {
                entries.sort();
            }
            Outcome::Entries(entries)
        }
        Op::Clear => {
            index.clear();
            Outcome::Nothing
        }
    }
}

fn apply_to_model(model: &mut BTreeMap<Vec<u8>, u32>, op: &Op) -> Outcome {
    match op {
        Op::Insert(k, v) => Outcome::Value(model.insert(k.clone(), *v)),
        Op::Remove(k) => Outcome::Value(model.remove(k)),
        Op::Get(k) => Outcome::Value(model.get(k).copied()),
        Op::Range(start, end) => Outcome::Entries(model_range(
            model,
            start.as_ref().map(Vec::as_slice),
            end.as_ref().map(Vec::as_slice),
        )),
        Op::Clear => {
            model.clear();
            Outcome::Nothing
        }
    }
}

fn check_against_model(ops: &[Op]) {
    let mut model: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
    let mut skiplist = SkipListIndex::with_seed(3);
    let mut hash = InMemoryIndex::new();
    let mut btree = BTreeIndex::new();
    let mut bplustree = BPlusTreeIndex::new();

    for (step, op) in ops.iter().enumerate() {
        let expected = apply_to_model(&mut model, op);
        let indexes: [(&str, &mut dyn Index<u32>); 4] = [
            ("skiplist", &mut skiplist),
            ("hash", &mut hash),
            ("btree", &mut btree),
            ("bplustree", &mut bplustree),
        ];
        for (name, index) in indexes {
            let at = format!("{name}, step {step}: {op:?}");
            assert_eq!(apply(index, op), expected, "{at}");
            assert_eq!(index.len(), model.len(), "{at}");
            assert_eq!(index.is_empty(), model.is_empty(), "{at}");
        }
        if let Err(broken) = skiplist.check_invariants() {
            panic!("step {step}: {op:?} broke the skip list: {broken}");
        }
        if let Err(broken) = bplustree.check_invariants() {
            panic!("step {step}: {op:?} broke the B+tree: {broken}");
        }
        let everything: Vec<(Vec<u8>, u32)> = model.iter().map(|(k, v)| (k.clone(), *v)).collect();
        for (name, index) in [
            ("skiplist", &skiplist as &dyn Index<u32>),
            ("bplustree", &bplustree),
        ] {
            let all: Vec<(Vec<u8>, u32)> = index
                .range(Bound::Unbounded, Bound::Unbounded)
                .map(|(k, v)| (k.to_vec(), *v))
                .collect();
            assert_eq!(all, everything, "{name}, step {step}: full scan");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn indexes_agree_with_a_btreemap(ops in prop::collection::vec(op(), 1..200)) {
        check_against_model(&ops);
    }
}
