//! The conformance suite: every index behaves the same through the `Index` trait.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use pydb_index::{BPlusTreeIndex, BTreeIndex, InMemoryIndex, Index, SkipListIndex};
use rstest::rstest;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Hash,
    BTree,
    SkipList,
    BPlusTree,
}

fn new_index(kind: Kind) -> Box<dyn Index<u64>> {
    match kind {
        Kind::Hash => Box::new(InMemoryIndex::new()),
        Kind::BTree => Box::new(BTreeIndex::new()),
        Kind::SkipList => Box::new(SkipListIndex::new()),
        Kind::BPlusTree => Box::new(BPlusTreeIndex::new()),
    }
}

fn b(key: &str) -> Bytes {
    Bytes::copy_from_slice(key.as_bytes())
}

/// The keys a range yields, sorted for an unordered index, and checked to be
/// ascending for an ordered one.
fn range_keys(index: &dyn Index<u64>, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Vec<String> {
    let mut keys: Vec<String> = index
        .range(start, end)
        .map(|(k, v)| {
            assert_eq!(index.get(k), Some(v), "range and get disagree on {k:?}");
            String::from_utf8(k.to_vec()).expect("test keys are UTF-8")
        })
        .collect();
    if index.is_ordered() {
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "not ascending: {keys:?}"
        );
    } else {
        keys.sort();
    }
    keys
}

/// An index holding `b, d, f, h` with values 2, 4, 6, 8.
fn filled(kind: Kind) -> Box<dyn Index<u64>> {
    let mut index = new_index(kind);
    for (key, value) in [("d", 4), ("h", 8), ("b", 2), ("f", 6)] {
        assert_eq!(index.insert(b(key), value), None);
    }
    index
}

#[rstest]
fn a_new_index_is_empty(
    #[values(Kind::Hash, Kind::BTree, Kind::SkipList, Kind::BPlusTree)] kind: Kind,
) {
    let index = new_index(kind);
    assert!(index.is_empty());
    assert_eq!(index.len(), 0);
    assert_eq!(index.get(b"a"), None);
    assert_eq!(index.range(Bound::Unbounded, Bound::Unbounded).count(), 0);
}

#[rstest]
fn insert_returns_the_previous_value(
    #[values(Kind::Hash, Kind::BTree, Kind::SkipList, Kind::BPlusTree)] kind: Kind,
) {
    let mut index = new_index(kind);
    assert_eq!(index.insert(b("k"), 1), None);
    assert_eq!(index.insert(b("k"), 2), Some(1));
    assert_eq!(index.insert(b("k"), 3), Some(2));
    assert_eq!(index.get(b"k"), Some(&3));
    assert_eq!(index.len(), 1, "a replace adds no key");
}

#[rstest]
fn get_finds_exactly_the_inserted_keys(
    #[values(Kind::Hash, Kind::BTree, Kind::SkipList, Kind::BPlusTree)] kind: Kind,
) {
    let index = filled(kind);
    assert_eq!(index.get(b"b"), Some(&2));
    assert_eq!(index.get(b"h"), Some(&8));
    for absent in ["", "a", "c", "bb", "i", "B"] {
        assert_eq!(index.get(absent.as_bytes()), None, "{absent:?}");
    }
}

#[rstest]
fn the_empty_key_is_a_key(
    #[values(Kind::Hash, Kind::BTree, Kind::SkipList, Kind::BPlusTree)] kind: Kind,
) {
    let mut index = filled(kind);
    assert_eq!(index.insert(b(""), 0), None);
    assert_eq!(index.get(b""), Some(&0));
    assert_eq!(
        range_keys(&*index, Bound::Unbounded, Bound::Included(b"b")),
        ["", "b"]
    );
    assert_eq!(index.remove(b""), Some(0));
    assert_eq!(index.len(), 4);
}

#[rstest]
fn remove_returns_the_value_once(
    #[values(Kind::Hash, Kind::BTree, Kind::SkipList, Kind::BPlusTree)] kind: Kind,
) {
    let mut index = filled(kind);
    assert_eq!(index.remove(b"d"), Some(4));
    assert_eq!(index.remove(b"d"), None);
    assert_eq!(index.remove(b"zzz"), None);
    assert_eq!(index.get(b"d"), None);
    assert_eq!(index.len(), 3);
    assert_eq!(
        range_keys(&*index, Bound::Unbounded, Bound::Unbounded),
        ["b", "f", "h"]
    );
    for key in ["b", "f", "h"] {
        assert!(index.remove(key.as_bytes()).is_some());
    }
    assert!(index.is_empty());
    assert_eq!(
        index.insert(b("d"), 40),
        None,
        "a removed key can come back"
    );
    assert_eq!(index.get(b"d"), Some(&40));
}

#[rstest]
fn clear_removes_everything(
    #[values(Kind::Hash, Kind::BTree, Kind::SkipList, Kind::BPlusTree)] kind: Kind,
) {
    let mut index = filled(kind);
    index.clear();
    assert!(index.is_empty());
    assert_eq!(index.get(b"b"), None);
    assert_eq!(index.range(Bound::Unbounded, Bound::Unbounded).count(), 0);
    assert_eq!(index.insert(b("b"), 20), None, "clear forgets old values");
    assert_eq!(
        range_keys(&*index, Bound::Unbounded, Bound::Unbounded),
        ["b"]
    );
}

#[rstest]
#[case::all(Bound::Unbounded, Bound::Unbounded, &["b", "d", "f", "h"])]
#[case::from_included(Bound::Included("d"), Bound::Unbounded, &["d", "f", "h"])]
#[case::from_excluded(Bound::Excluded("d"), Bound::Unbounded, &["f", "h"])]
#[case::from_absent(Bound::Included("c"), Bound::Unbounded, &["d", "f", "h"])]
#[case::to_included(Bound::Unbounded, Bound::Included("f"), &["b", "d", "f"])]
#[case::to_excluded(Bound::Unbounded, Bound::Excluded("f"), &["b", "d"])]
#[case::incl_incl(Bound::Included("d"), Bound::Included("h"), &["d", "f", "h"])]
#[case::incl_excl(Bound::Included("d"), Bound::Excluded("h"), &["d", "f"])]
#[case::excl_incl(Bound::Excluded("d"), Bound::Included("h"), &["f", "h"])]
#[case::excl_excl(Bound::Excluded("b"), Bound::Excluded("h"), &["d", "f"])]
#[case::absent_both(Bound::Included("a"), Bound::Excluded("e"), &["b", "d"])]
#[case::one_key(Bound::Included("f"), Bound::Included("f"), &["f"])]
#[case::past_the_end(Bound::Excluded("h"), Bound::Unbounded, &[])]
#[case::before_the_start(Bound::Unbounded, Bound::Excluded("b"), &[])]
#[case::between_keys(Bound::Included("c"), Bound::Included("c"), &[])]
#[case::empty_incl_excl(Bound::Included("d"), Bound::Excluded("d"), &[])]
#[case::empty_excl_incl(Bound::Excluded("d"), Bound::Included("d"), &[])]
#[case::empty_excl_excl(Bound::Excluded("d"), Bound::Excluded("d"), &[])]
#[case::inverted(Bound::Included("h"), Bound::Included("b"), &[])]
#[case::inverted_excluded(Bound::Excluded("h"), Bound::Excluded("b"), &[])]
#[case::inverted_absent(Bound::Included("g"), Bound::Excluded("c"), &[])]
fn range_honours_every_bound(
    #[values(Kind::Hash, Kind::BTree, Kind::SkipList, Kind::BPlusTree)] kind: Kind,
    #[case] start: Bound<&str>,
    #[case] end: Bound<&str>,
    #[case] expected: &[&str],
) {
    let index = filled(kind);
    let keys = range_keys(&*index, start.map(str::as_bytes), end.map(str::as_bytes));
    assert_eq!(keys, expected);
}

#[rstest]
fn every_bound_pair_matches_btreemap(
    #[values(Kind::Hash, Kind::BTree, Kind::SkipList, Kind::BPlusTree)] kind: Kind,
) {
    // Keys and probes interleave, so bounds land on, between and outside keys.
    let mut index = new_index(kind);
    let mut model = BTreeMap::new();
    for i in (0..40u64).step_by(3) {
        let key = format!("{i:02}");
        index.insert(b(&key), i);
        model.insert(key, i);
    }
    let probes: Vec<String> = (0..42).map(|i| format!("{i:02}")).collect();
    let bounds = |p: &str| [Bound::Included(p.to_owned()), Bound::Excluded(p.to_owned())];
    let mut all: Vec<Bound<String>> = vec![Bound::Unbounded];
    for p in &probes {
        all.extend(bounds(p));
    }
    for start in &all {
        for end in &all {
            let start_bytes = start.as_ref().map(|s| s.as_bytes());
            let end_bytes = end.as_ref().map(|s| s.as_bytes());
            let got = range_keys(&*index, start_bytes, end_bytes);
            let expected: Vec<String> = model
                .keys()
                .filter(|k| start_ok(start, k) && end_ok(end, k))
                .cloned()
                .collect();
            assert_eq!(got, expected, "{start:?}..{end:?}");
        }
    }
}

fn start_ok(start: &Bound<String>, key: &str) -> bool {
    match start {
        Bound::Included(s) => key >= s.as_str(),
        Bound::Excluded(s) => key > s.as_str(),
        Bound::Unbounded => true,
    }
}

fn end_ok(end: &Bound<String>, key: &str) -> bool {
    match end {
        Bound::Included(e) => key <= e.as_str(),
        Bound::Excluded(e) => key < e.as_str(),
        Bound::Unbounded => true,
    }
}

#[rstest]
fn keys_compare_as_bytes(
    #[values(Kind::Hash, Kind::BTree, Kind::SkipList, Kind::BPlusTree)] kind: Kind,
) {
    let mut index = new_index(kind);
    let keys: [&[u8]; 6] = [b"\xff", b"a\x00", b"a", b"\x00", b"ab", b"A"];
    for (i, key) in keys.iter().enumerate() {
        index.insert(Bytes::copy_from_slice(key), i as u64);
    }
    let mut got: Vec<&[u8]> = index
        .range(Bound::Unbounded, Bound::Unbounded)
        .map(|(k, _)| k.as_ref())
        .collect();
    if !index.is_ordered() {
        got.sort();
    }
    let expected: [&[u8]; 6] = [b"\x00", b"A", b"a", b"a\x00", b"ab", b"\xff"];
    assert_eq!(got, expected);
}

#[rstest]
fn only_the_btree_and_skip_list_are_ordered(
    #[values(Kind::Hash, Kind::BTree, Kind::SkipList, Kind::BPlusTree)] kind: Kind,
) {
    assert_eq!(new_index(kind).is_ordered(), !matches!(kind, Kind::Hash));
}

#[rstest]
fn memory_grows_with_entries(
    #[values(Kind::Hash, Kind::BTree, Kind::SkipList, Kind::BPlusTree)] kind: Kind,
) {
    let mut index = new_index(kind);
    let empty = index.memory_bytes();
    let mut previous = empty;
    for step in 1..=10u64 {
        for i in 0..1000 {
            let key = format!("key-{step:02}-{i:04}");
            index.insert(b(&key), i);
        }
        let now = index.memory_bytes();
        assert!(now >= previous, "memory fell from {previous} to {now}");
        previous = now;
    }
    // 10 000 entries of 13-byte keys and 8-byte values cannot fit in less
    // than their own bytes.
    assert!(
        previous - empty >= 10_000 * (13 + 8),
        "{previous} bytes for 10 000 entries"
    );
    // Nor should the overhead run wild: 200 bytes per entry is far above all three.
    assert!(
        previous <= 10_000 * 200,
        "{previous} bytes for 10 000 entries"
    );
}

#[rstest]
fn many_keys_in_any_order(
    #[values(Kind::Hash, Kind::BTree, Kind::SkipList, Kind::BPlusTree)] kind: Kind,
) {
    // A multiplicative permutation of 0..N: keys arrive out of order.
    const N: u64 = 5003;
    let mut index = new_index(kind);
    for i in 0..N {
        let k = (i * 2741) % N;
        assert_eq!(
            index.insert(Bytes::copy_from_slice(&k.to_be_bytes()), k),
            None
        );
    }
    assert_eq!(index.len(), N as usize);
    for k in 0..N {
        assert_eq!(index.get(&k.to_be_bytes()), Some(&k));
    }
    let from = 1000u64.to_be_bytes();
    let to = 1100u64.to_be_bytes();
    let mut values: Vec<u64> = index
        .range(Bound::Included(&from), Bound::Excluded(&to))
        .map(|(_, v)| *v)
        .collect();
    if !index.is_ordered() {
        values.sort_unstable();
    }
    assert_eq!(values, (1000..1100).collect::<Vec<_>>());
    for k in (0..N).filter(|k| k % 2 == 0) {
        assert_eq!(index.remove(&k.to_be_bytes()), Some(k));
    }
    assert_eq!(index.len(), (N / 2) as usize);
    assert_eq!(
        index
            .range(Bound::Unbounded, Bound::Unbounded)
            .filter(|(_, v)| **v % 2 == 0)
            .count(),
        0
    );
}
