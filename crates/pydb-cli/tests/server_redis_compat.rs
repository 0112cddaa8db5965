//! Pins the bytes `pydb server` sends for HELLO/RESP3, TYPE, FLUSHDB, SELECT and empty keys, compared by hand with redis-server 7.0.15 (where Redis's id and version differ, only the shape is pinned), and runs the `redis` crate in RESP2 and RESP3.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod server_support;

use std::io::{Read, Write};
use std::time::Duration;

use pydb_server::Reply;
use server_support::Server;

/// Sends `args` as a request and asserts the reply is exactly `expected`.
fn exchange(stream: &mut std::net::TcpStream, args: &[&str], expected: &[u8]) {
    let mut request = format!("*{}\r\n", args.len());
    for a in args {
        request.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream.write_all(request.as_bytes()).unwrap();
    let mut got = vec![0; expected.len()];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected),
        "{args:?}"
    );
    // Nothing more follows.
    stream
        .set_read_timeout(Some(Duration::from_millis(30)))
        .unwrap();
    let mut more = [0u8; 1];
    assert!(stream.read(&mut more).is_err(), "{args:?}: extra bytes");
    stream
        .set_read_timeout(Some(server_support::TIMEOUT))
        .unwrap();
}

fn hello_map(header: &str, proto: u8, id: u64) -> Vec<u8> {
    format!(
        "{header}\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n$5\r\nproto\r\n:{proto}\r\n\
         $2\r\nid\r\n:{id}\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n\
         $7\r\nmodules\r\n*0\r\n"
    )
    .into_bytes()
}

#[test]
fn replies_match_redis_byte_for_byte() {
    let server = Server::start(&["--sync", "never"]);
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(server_support::TIMEOUT)).unwrap();
    let mut x = |args: &[&str], expected: &[u8]| exchange(&mut s, args, expected);
    x(&["HELLO", "2"], &hello_map("*14", 2, 1));
    x(
        &["HELLO", "4"],
        b"-NOPROTO unsupported protocol version\r\n",
    );
    x(
        &["HELLO", "x"],
        b"-ERR Protocol version is not an integer or out of range\r\n",
    );
    x(
        &["HELLO", "3", "BOGUS"],
        b"-ERR Syntax error in HELLO option 'BOGUS'\r\n",
    );
    x(
        &["HELLO", "3", "AUTH", "someone", "pw"],
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    );
    x(&["TYPE", "k"], b"+none\r\n");
    x(&["SET", "k", "v"], b"+OK\r\n");
    x(&["TYPE", "k"], b"+string\r\n");
    x(
        &["TYPE"],
        b"-ERR wrong number of arguments for 'type' command\r\n",
    );
    x(&["FLUSHDB"], b"+OK\r\n");
    x(&["TYPE", "k"], b"+none\r\n");
    x(&["SET", "k", "v"], b"+OK\r\n");
    x(&["FLUSHALL", "SYNC"], b"+OK\r\n");
    x(&["FLUSHDB", "NOPE"], b"-ERR syntax error\r\n");
    x(&["FLUSHDB", "a", "b"], b"-ERR syntax error\r\n");
    x(&["DBSIZE"], b":0\r\n");
    x(&["SELECT", "0"], b"+OK\r\n");
    // Redis's text for an index past its last database (pydb has one).
    x(&["SELECT", "1"], b"-ERR DB index is out of range\r\n");
    x(
        &["SELECT", "x"],
        b"-ERR value is not an integer or out of range\r\n",
    );
    x(&["CLIENT", "SETINFO", "lib-name", "redis-py"], b"+OK\r\n");
    // One rule for the empty key (pydb's, not Redis's): refused by all.
    for args in [
        &["GET", ""][..],
        &["SET", "", "x"],
        &["DEL", ""],
        &["EXISTS", "a", ""],
        &["MGET", ""],
        &["MSET", "", "x"],
        &["TYPE", ""],
        &["INCR", ""],
    ] {
        x(args, b"-ERR empty keys are not allowed\r\n");
    }
    // RESP3 after HELLO 3: nil is `_`, CONFIG GET is a map.
    x(&["HELLO", "3"], &hello_map("%7", 3, 1));
    x(&["GET", "nothing"], b"_\r\n");
    x(
        &["CONFIG", "GET", "maxclients"],
        b"%1\r\n$10\r\nmaxclients\r\n$5\r\n10000\r\n",
    );
    x(&["MGET", "nothing"], b"*1\r\n_\r\n");
    // Text for people is a verbatim string (as Redis's, on an empty db).
    x(&["INFO", "keyspace"], b"=16\r\ntxt:# Keyspace\r\n\r\n");
    x(&["HELLO"], &hello_map("%7", 3, 1));
    x(&["HELLO", "2"], &hello_map("*14", 2, 1));
    x(&["GET", "nothing"], b"$-1\r\n");
    x(&["INFO", "keyspace"], b"$12\r\n# Keyspace\r\n\r\n");
}

#[test]
fn hello_authenticates_and_names_the_connection() {
    let server = Server::start(&["--sync", "never", "--requirepass", "pw"]);
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(server_support::TIMEOUT)).unwrap();
    let mut x = |args: &[&str], expected: &[u8]| exchange(&mut s, args, expected);
    x(
        &["HELLO", "3"],
        b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the \
          HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
          select the RESP protocol version at the same time\r\n",
    );
    x(
        &["HELLO", "3", "AUTH", "default", "nope"],
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    );
    x(&["GET", "k"], b"-NOAUTH Authentication required.\r\n");
    x(
        &["HELLO", "3", "AUTH", "default", "pw", "SETNAME", "app"],
        &hello_map("%7", 3, 1),
    );
    x(&["CLIENT", "GETNAME"], b"$3\r\napp\r\n");
    x(&["GET", "k"], b"_\r\n");
}

#[test]
fn the_redis_crate_works_in_resp2_and_resp3() {
    let server = Server::start(&["--sync", "never"]);
    for url in [
        format!("redis://{}/", server.addr),
        format!("redis://{}/?protocol=resp3", server.addr),
    ] {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut con = client
            .get_connection_with_timeout(server_support::TIMEOUT)
            .unwrap();
        let _: () = redis::cmd("FLUSHDB").query(&mut con).unwrap();
        let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
        let v: Option<String> = redis::cmd("GET").arg("k").query(&mut con).unwrap();
        assert_eq!(v.as_deref(), Some("v"), "{url}");
        let missing: Option<String> = redis::cmd("GET").arg("x").query(&mut con).unwrap();
        assert_eq!(missing, None, "{url}");
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg("k")
            .arg("x")
            .query(&mut con)
            .unwrap();
        assert_eq!(values, [Some("v".to_string()), None], "{url}");
        let config: std::collections::HashMap<String, String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxclients")
            .query(&mut con)
            .unwrap();
        assert_eq!(config.get("maxclients").map(String::as_str), Some("10000"));
        let kind: String = redis::cmd("TYPE").arg("k").query(&mut con).unwrap();
        assert_eq!(kind, "string");
    }
}

#[test]
fn config_set_changes_settings_at_run_time() {
    let server = Server::start(&["--sync", "never"]);
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(server_support::TIMEOUT)).unwrap();
    let mut x = |args: &[&str], expected: &[u8]| exchange(&mut s, args, expected);
    // Redis 7.0.15's texts.
    x(
        &["CONFIG", "SET", "foo", "1"],
        b"-ERR Unknown option or number of arguments for CONFIG SET - 'foo'\r\n",
    );
    x(
        &["CONFIG", "SET", "maxclients", "x"],
        b"-ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument couldn't be parsed into an integer\r\n",
    );
    x(
        &["CONFIG", "SET", "maxclients", "0"],
        b"-ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument must be between 1 and 4294967295 inclusive\r\n",
    );
    x(
        &["CONFIG", "SET", "maxclients"],
        b"-ERR wrong number of arguments for 'config|set' command\r\n",
    );
    // All or nothing: the bad timeout keeps maxclients as it was.
    x(
        &["CONFIG", "SET", "maxclients", "10", "timeout", "x"],
        b"-ERR CONFIG SET failed (possibly related to argument 'timeout') - argument couldn't be parsed into an integer\r\n",
    );
    x(
        &["CONFIG", "GET", "maxclients"],
        b"*2\r\n$10\r\nmaxclients\r\n$5\r\n10000\r\n",
    );
    x(&["CONFIG", "SET", "maxclients", "1"], b"+OK\r\n");
    x(
        &["CONFIG", "GET", "maxclients"],
        b"*2\r\n$10\r\nmaxclients\r\n$1\r\n1\r\n",
    );
    // This connection is the one allowed.
    let mut extra = server.raw();
    assert_eq!(
        extra.expect_closed(),
        b"-ERR max number of clients reached\r\n".to_vec()
    );
    let mut x = |args: &[&str], expected: &[u8]| exchange(&mut s, args, expected);
    x(
        &["CONFIG", "SET", "maxclients", "100", "requirepass", "pw"],
        b"+OK\r\n",
    );
    // Connected clients stay authenticated; new ones need the password.
    x(&["SET", "k", "v"], b"+OK\r\n");
    let mut fresh = server.raw();
    assert_eq!(
        fresh.call(&["GET", "k"]),
        Reply::Error("NOAUTH Authentication required.".into())
    );
    assert_eq!(fresh.call(&["AUTH", "pw"]), Reply::ok());
    let mut x = |args: &[&str], expected: &[u8]| exchange(&mut s, args, expected);
    x(
        &["CONFIG", "SET", "port", "1"],
        b"-ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable config\r\n",
    );
    // The idle timeout applies to connected clients too.
    x(&["CONFIG", "SET", "timeout", "1"], b"+OK\r\n");
    let started = std::time::Instant::now();
    assert_eq!(fresh.call(&["PING"]), Reply::Status("PONG".into()));
    fresh.expect_closed();
    assert!(started.elapsed() >= Duration::from_millis(900));
}
