//! Soak test of `pydb server`: several clients send random valid and invalid commands for a few seconds; the server must stay up, its memory under a bound, and every reply must agree with a model.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod server_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pydb_server::Reply;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use server_support::{Raw, Server};

const CLIENTS: u64 = 4;
const RUN_FOR: Duration = Duration::from_secs(3);
/// The server's peak resident memory may not exceed this.
const MEMORY_BOUND_KB: u64 = 256 * 1024;

/// One client's run: its own keys (`c{id}:...`), checked against a
/// `BTreeMap`. Returns how many requests it sent and its model.
fn client(
    server_addr: std::net::SocketAddr,
    id: u64,
    seed: u64,
) -> (u64, BTreeMap<String, Vec<u8>>) {
    let mut rng = StdRng::seed_from_u64(seed ^ id);
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut raw = Raw::connect(server_addr);
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < RUN_FOR {
        sent += 1;
        let key = format!("c{id}:{}", rng.random_range(0..20));
        let value: Vec<u8> = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
        match rng.random_range(0..12) {
            0 | 1 => {
                raw.send(&request(&[b"SET", key.as_bytes(), &value]));
                assert_eq!(raw.read_reply(), Reply::ok());
                model.insert(key, value);
            }
            2 | 3 => {
                raw.send(&request(&[b"GET", key.as_bytes()]));
                let expected = Reply::Bulk(model.get(&key).map(|v| Bytes::from(v.clone())));
                assert_eq!(raw.read_reply(), expected, "GET {key} (seed {seed})");
            }
            4 => {
                let reply = raw.call(&["DEL", &key]);
                let existed = model.remove(&key).is_some();
                assert_eq!(reply, Reply::Integer(i64::from(existed)), "seed {seed}");
            }
            5 => {
                let reply = raw.call(&["INCR", &key]);
                let canonical = model.get(&key).map(|v| {
                    std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                        .filter(|n| n.to_string().as_bytes() == v.as_slice() && *n < i64::MAX)
                });
                match (canonical, &reply) {
                    (None, _) => assert_eq!(reply, Reply::Integer(1), "seed {seed}"),
                    (Some(Some(n)), _) => assert_eq!(reply, Reply::Integer(n + 1), "seed {seed}"),
                    // Random bytes that are no canonical integer: Redis's
                    // rules for odd forms are not the model's business,
                    // but the reply must be an error or a number.
                    (Some(None), Reply::Integer(_) | Reply::Error(_)) => {}
                    (Some(None), other) => panic!("INCR: {other:?} (seed {seed})"),
                }
                if let Reply::Integer(n) = reply {
                    model.insert(key, n.to_string().into_bytes());
                }
            }
            6 => {
                let other = format!("c{id}:{}", rng.random_range(0..20));
                let reply = raw.call(&["MGET", &key, &other]);
                let expected = Reply::Array(
                    [&key, &other]
                        .iter()
                        .map(|k| Reply::Bulk(model.get(*k).map(|v| Bytes::from(v.clone()))))
                        .collect(),
                );
                assert_eq!(reply, expected, "seed {seed}");
            }
            7 => {
                let reply = raw.call(&["TYPE", &key]);
                let kind = if model.contains_key(&key) {
                    "string"
                } else {
                    "none"
                };
                assert_eq!(reply, Reply::Status(kind.into()), "seed {seed}");
            }
            // Invalid commands: an error reply, and the connection goes on.
            8 => assert!(raw.call(&["NOSUCHCOMMAND", &key]).is_error()),
            9 => assert!(raw.call(&["GET"]).is_error()),
            10 => assert!(raw.call(&["SET", "", "x"]).is_error()),
            // A broken frame: an error, the connection is closed; reconnect.
            _ => {
                raw.send(b"*2\r\n$3\r\nGET\r\n:1\r\n");
                let rest = raw.expect_closed();
                assert!(rest.starts_with(b"-ERR Protocol error"), "{rest:?}");
                raw = Raw::connect(server_addr);
            }
        }
    }
    (sent, model)
}

fn request(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[test]
fn random_clients_agree_with_a_model_and_the_server_stays_bounded() {
    let seed: u64 = rand::random();
    let server = Server::start(&["--sync", "never"]);
    let addr = server.addr;
    let results: Vec<(u64, BTreeMap<String, Vec<u8>>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|id| s.spawn(move || client(addr, id, seed)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let sent: u64 = results.iter().map(|(n, _)| n).sum();
    assert!(sent > 100, "only {sent} requests (seed {seed})");
    // Every key the models hold is there, with its value, and no other.
    let mut raw = server.raw();
    let keys: usize = results.iter().map(|(_, m)| m.len()).sum();
    assert_eq!(
        raw.call(&["DBSIZE"]),
        Reply::Integer(keys as i64),
        "seed {seed}"
    );
    for (_, model) in &results {
        for (key, value) in model {
            assert_eq!(
                raw.call(&["GET", key]),
                Reply::Bulk(Some(Bytes::from(value.clone()))),
                "seed {seed}"
            );
        }
    }
    let peak = server.proc_status_kb("VmHWM");
    assert!(peak < MEMORY_BOUND_KB, "peak {peak} kB (seed {seed})");
}
