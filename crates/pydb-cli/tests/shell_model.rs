//! Guards the shell against a model: thousands of seeded random commands through a pipe, every reply compared line by line with one computed from a `BTreeMap`, across restarts of the process and COMPACT, for every engine.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;

use common::{Shell, persistent_engines};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Commands per engine configuration.
const COMMANDS: usize = 3000;

/// The key space: small, so that commands hit the same keys often; some
/// keys need quoting.
const KEYS: &[&[u8]] = &[
    b"a",
    b"b",
    b"c",
    b"k1",
    b"k2",
    b"k10",
    b"key with space",
    b"q\"uote",
    b"back\\slash",
    b"nl\nkey",
    b"\xffbin",
    b"z",
];

/// Values: printable, quoted, empty, binary.
fn random_value(rng: &mut StdRng) -> Vec<u8> {
    match rng.random_range(0..6) {
        0 => Vec::new(),
        1 => b"with \"quotes\" and \\".to_vec(),
        2 => (0..rng.random_range(1..6))
            .map(|_| rng.random::<u8>())
            .collect(),
        _ => {
            let len = rng.random_range(1..10);
            (0..len).map(|_| rng.random_range(b'a'..=b'z')).collect()
        }
    }
}

fn random_key(rng: &mut StdRng) -> Vec<u8> {
    KEYS[rng.random_range(0..KEYS.len())].to_vec()
}

/// The test's own quoting, written independently of `pydb::tokenize`: it is
/// both how arguments are written on the command line and how redis-cli
/// prints a value.
fn q(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            7 => out.push_str("\\a"),
            8 => out.push_str("\\b"),
            32..=126 => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

/// The lines redis-cli prints for a flat array of already formatted items.
fn array(items: Vec<String>) -> Vec<String> {
    if items.is_empty() {
        return vec!["(empty array)".into()];
    }
    let width = items.len().to_string().len();
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| format!("{:>width$}) {item}", i + 1))
        .collect()
}

fn bulk(value: Option<&Vec<u8>>) -> String {
    value.map_or("(nil)".to_string(), |v| q(v))
}

/// One random command line and the reply lines the model expects.
fn step(rng: &mut StdRng, model: &mut BTreeMap<Vec<u8>, Vec<u8>>) -> (String, Vec<String>) {
    let roll = rng.random_range(0..100);
    match roll {
        0..30 => {
            let (k, v) = (random_key(rng), random_value(rng));
            let line = format!("SET {} {}", q(&k), q(&v));
            model.insert(k, v);
            (line, vec!["OK".into()])
        }
        30..50 => {
            let k = random_key(rng);
            (format!("get {}", q(&k)), vec![bulk(model.get(&k))])
        }
        50..60 => {
            let keys: Vec<Vec<u8>> = (0..rng.random_range(1..4))
                .map(|_| random_key(rng))
                .collect();
            let deleted = keys.iter().filter(|k| model.remove(*k).is_some()).count();
            let line = format!(
                "DEL {}",
                keys.iter().map(|k| q(k)).collect::<Vec<_>>().join(" ")
            );
            (line, vec![format!("(integer) {deleted}")])
        }
        60..68 => {
            let keys: Vec<Vec<u8>> = (0..rng.random_range(1..4))
                .map(|_| random_key(rng))
                .collect();
            let found = keys.iter().filter(|k| model.contains_key(*k)).count();
            let line = format!(
                "Exists {}",
                keys.iter().map(|k| q(k)).collect::<Vec<_>>().join(" ")
            );
            (line, vec![format!("(integer) {found}")])
        }
        68..76 => {
            let mut line = String::from("MSET");
            for _ in 0..rng.random_range(1..5) {
                let (k, v) = (random_key(rng), random_value(rng));
                line.push_str(&format!(" {} {}", q(&k), q(&v)));
                model.insert(k, v);
            }
            (line, vec!["OK".into()])
        }
        76..84 => {
            let keys: Vec<Vec<u8>> = (0..rng.random_range(1..5))
                .map(|_| random_key(rng))
                .collect();
            let line = format!(
                "mget {}",
                keys.iter().map(|k| q(k)).collect::<Vec<_>>().join(" ")
            );
            (
                line,
                array(keys.iter().map(|k| bulk(model.get(k))).collect()),
            )
        }
        84..88 => ("DBSIZE".into(), vec![format!("(integer) {}", model.len())]),
        88..99 => {
            let (start, start_arg) = if rng.random_bool(0.2) {
                (Bound::Unbounded, "-".to_string())
            } else {
                let k = random_key(rng);
                let arg = q(&k);
                (Bound::Included(k), arg)
            };
            let (end, end_arg) = if rng.random_bool(0.2) {
                (Bound::Unbounded, "+".to_string())
            } else {
                let k = random_key(rng);
                let arg = q(&k);
                (Bound::Excluded(k), arg)
            };
            let limit = rng.random_bool(0.3).then(|| rng.random_range(0..5usize));
            let mut line = format!("RANGE {start_arg} {end_arg}");
            if let Some(n) = limit {
                line.push_str(&format!(" LIMIT {n}"));
            }
            let empty =
                matches!((&start, &end), (Bound::Included(s), Bound::Excluded(e)) if s >= e);
            let mut items = Vec::new();
            if !empty {
                for (k, v) in model
                    .range::<Vec<u8>, _>((start, end))
                    .take(limit.unwrap_or(usize::MAX))
                {
                    items.push(q(k));
                    items.push(q(v));
                }
            }
            (line, array(items))
        }
        _ => ("COMPACT".into(), vec!["OK".into()]),
    }
}

/// Runs the random stream against a shell started with `args`; restarts the
/// process now and then if `restarts` is set.
fn run_against_model(args: &[&str], seed: u64, restarts: bool) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = BTreeMap::new();
    let mut shell = Shell::spawn(args);
    for i in 0..COMMANDS {
        if restarts && rng.random_range(0..200) == 0 {
            shell.quit();
            shell = Shell::spawn(args);
        }
        let (line, expected) = step(&mut rng, &mut model);
        shell.send(&line);
        for (j, want) in expected.iter().enumerate() {
            let got = shell.read_line();
            assert_eq!(
                &got, want,
                "{args:?}, seed {seed}, command {i}: {line}\nreply line {j} differs"
            );
        }
    }
    // After a last restart the whole content matches the model.
    if restarts {
        shell.quit();
        shell = Shell::spawn(args);
    }
    shell.send("RANGE - +");
    let mut items = Vec::new();
    for (k, v) in &model {
        items.push(q(k));
        items.push(q(v));
    }
    for want in array(items) {
        assert_eq!(shell.read_line(), want, "{args:?}: final content differs");
    }
    shell.quit();
}

#[test]
fn memory_engine_matches_the_model() {
    run_against_model(&["--engine", "memory"], 7, false);
}

#[test]
fn persistent_engines_match_the_model_across_restarts_and_compaction() {
    for (i, engine) in persistent_engines().into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut args = vec!["--dir", path.to_str().unwrap()];
        args.extend(&engine);
        // Alternate the sync policies: durability is not what this test
        // checks (a clean restart keeps every write), speed is welcome.
        args.extend(if i % 2 == 0 {
            ["--sync", "never"]
        } else {
            ["--sync", "always"]
        });
        run_against_model(&args, 1000 + i as u64, true);
    }
}
