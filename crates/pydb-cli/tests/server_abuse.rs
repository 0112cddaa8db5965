//! Guards `pydb server` against the hostile-client reproductions of issue 16: each test is one attack, run against the real binary on loopback.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod server_support;

use pydb_server::Reply;
use server_support::Server;

fn pong() -> Reply {
    Reply::Status("PONG".into())
}

/// B1: a 5,000-star pattern against a 5,000-byte key overflowed the stack
/// of the connection thread and took the whole server down.
#[test]
fn a_glob_with_thousands_of_stars_does_not_crash_the_server() {
    let server = Server::start(&["--sync", "never"]);
    let mut raw = server.raw();
    let key = "a".repeat(5000);
    assert_eq!(raw.call(&["SET", &key, "x"]), Reply::ok());
    let pattern = "*a".repeat(5000) + "b";
    let reply = raw.call(&["SCAN", "0", "MATCH", &pattern]);
    assert_eq!(
        reply,
        Reply::Array(vec![Reply::bulk("0"), Reply::Array(vec![])])
    );
    // The same shape that does match is found.
    let pattern = "*a".repeat(5000);
    let reply = raw.call(&["SCAN", "0", "MATCH", &pattern]);
    assert_eq!(
        reply,
        Reply::Array(vec![
            Reply::bulk("0"),
            Reply::Array(vec![Reply::bulk(key.clone())])
        ])
    );
    assert_eq!(server.raw().call(&["PING"]), pong());
}

/// B1, memory engine: it had no key limit, so any key length went in.
#[test]
fn the_memory_engine_refuses_huge_keys() {
    let server = Server::start(&["--engine", "memory"]);
    let mut raw = server.raw();
    let key = "a".repeat(200_000);
    let reply = raw.call(&["SET", &key, "x"]);
    assert!(
        matches!(&reply, Reply::Error(e) if e.contains("key of 200000 bytes is over the limit")),
        "{reply:?}"
    );
    assert_eq!(raw.call(&["PING"]), pong());
}
