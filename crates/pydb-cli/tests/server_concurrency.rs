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
