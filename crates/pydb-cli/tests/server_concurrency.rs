//! Guards `pydb server` under many clients at once: 16 threads on disjoint key spaces checked against a model, and INCR staying atomic (N threads x M INCR = N*M), on every persistent configuration.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod server_support;

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use server_support::Server;

const THREADS: usize = 16;

fn clients_agree_with_a_model(args: &[&str]) {
    let server = Server::start(args);
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let mut con = server.redis();
            std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(t as u64);
                let mut model: BTreeMap<String, String> = BTreeMap::new();
                for step in 0..300 {
                    let key = format!("t{t:02}:k{}", rng.random_range(0..20));
                    match rng.random_range(0..5) {
                        0 | 1 => {
                            let value = format!("v{step}");
                            let _: () = redis::cmd("SET")
                                .arg(&key)
                                .arg(&value)
                                .query(&mut con)
                                .unwrap();
                            model.insert(key, value);
                        }
                        2 => {
                            let got: Option<String> =
                                redis::cmd("GET").arg(&key).query(&mut con).unwrap();
                            assert_eq!(got.as_ref(), model.get(&key), "thread {t} step {step}");
                        }
                        3 => {
                            let n: i64 = redis::cmd("DEL").arg(&key).query(&mut con).unwrap();
                            assert_eq!(n, i64::from(model.remove(&key).is_some()));
                        }
                        _ => {
                            // A pipeline of writes and a read, answered in order.
                            let value = format!("p{step}");
                            let (ok, got): (String, Option<String>) = redis::pipe()
                                .cmd("SET")
                                .arg(&key)
                                .arg(&value)
                                .cmd("GET")
                                .arg(&key)
                                .query(&mut con)
                                .unwrap();
                            assert_eq!(ok, "OK");
                            assert_eq!(got.as_deref(), Some(value.as_str()));
                            model.insert(key, value);
                        }
                    }
                }
                model
            })
        })
        .collect();
    let mut all = BTreeMap::new();
    for handle in handles {
        all.extend(handle.join().unwrap());
    }
    let mut con = server.redis();
    let size: usize = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(size, all.len());
    for (key, value) in &all {
        let got: String = redis::cmd("GET").arg(key).query(&mut con).unwrap();
        assert_eq!(&got, value);
    }
}

#[test]
fn sixteen_clients_agree_with_a_model() {
    for args in [
        &["--sync", "always", "--index", "btree"][..],
        &["--sync", "never", "--index", "hash"][..],
        &["--engine", "memory"][..],
    ] {
        clients_agree_with_a_model(args);
    }
}

#[test]
fn incr_is_atomic_under_concurrency() {
    const PER_THREAD: i64 = 200;
    for sync in ["never", "always"] {
        let server = Server::start(&["--sync", sync]);
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let mut con = server.redis();
                std::thread::spawn(move || {
                    for i in 0..PER_THREAD {
                        // Mix the forms, and a competing SET NX on another key.
                        let _: i64 = if i % 2 == 0 {
                            redis::cmd("INCR").arg("counter").query(&mut con).unwrap()
                        } else {
                            redis::cmd("INCRBY")
                                .arg("counter")
                                .arg(1)
                                .query(&mut con)
                                .unwrap()
                        };
                    }
                    let won: Option<String> = redis::cmd("SET")
                        .arg("winner")
                        .arg(t)
                        .arg("NX")
                        .query(&mut con)
                        .unwrap();
                    won.is_some()
                })
            })
            .collect();
        let winners = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&won| won)
            .count();
        assert_eq!(winners, 1, "SET NX must succeed exactly once");
        let mut con = server.redis();
        let total: i64 = redis::cmd("GET").arg("counter").query(&mut con).unwrap();
        assert_eq!(total, THREADS as i64 * PER_THREAD, "sync {sync}");
    }
}

/// One field of `INFO persistence`, as a number.
fn persistence_field(con: &mut redis::Connection, name: &str) -> f64 {
    let info: String = redis::cmd("INFO").arg("persistence").query(con).unwrap();
    let prefix = format!("{name}:");
    let value = info
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in INFO persistence:\n{info}"));
    value.trim().parse().unwrap()
}

/// Group commit, seen from a client: with `--sync always`, sixteen
/// clients writing at once share fsyncs, so `INFO` reports fewer fsyncs
/// than acknowledged writes. `acked_writes` counts exactly the writes
/// answered, and `fsyncs_per_write` is `wal_fsyncs / acked_writes`.
#[test]
fn fsyncs_per_write_is_below_one_under_concurrency() {
    const PER_THREAD: usize = 100;
    for engine in ["log", "btree"] {
        let server = Server::start(&["--engine", engine, "--sync", "always"]);
        let mut con = server.redis();
        let fsyncs_at_start = persistence_field(&mut con, "wal_fsyncs");
        assert_eq!(persistence_field(&mut con, "acked_writes"), 0.0);
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let mut con = server.redis();
                std::thread::spawn(move || {
                    for i in 0..PER_THREAD {
                        let _: () = redis::cmd("SET")
                            .arg(format!("t{t}:k{i}"))
                            .arg(i)
                            .query(&mut con)
                            .unwrap();
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        // A read and a failed write are not acknowledged writes.
        let _: Option<String> = redis::cmd("GET").arg("t0:k0").query(&mut con).unwrap();
        let failed: redis::RedisResult<()> = redis::cmd("SET").arg("").arg("v").query(&mut con);
        assert!(failed.is_err(), "an empty key is refused");
        let writes = (THREADS * PER_THREAD) as f64;
        assert_eq!(persistence_field(&mut con, "acked_writes"), writes);
        let fsyncs = persistence_field(&mut con, "wal_fsyncs") - fsyncs_at_start;
        assert!(fsyncs > 0.0, "{engine}: sync always must fsync");
        let per_write = persistence_field(&mut con, "fsyncs_per_write");
        assert!(
            per_write < 1.0,
            "{engine}: {fsyncs} fsyncs for {writes} writes ({per_write} per write)"
        );
    }
}
