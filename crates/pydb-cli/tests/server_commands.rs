//! Guards `pydb server`'s commands as real clients see them: every command through the `redis` crate and raw RESP, inline commands, pipelining in order, and `pydb shell --connect`.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod server_support;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use bytes::Bytes;
use pydb_server::Reply;
use redis::{RedisResult, Value};
use server_support::Server;

fn bulk(s: &str) -> Reply {
    Reply::bulk(Bytes::copy_from_slice(s.as_bytes()))
}

#[test]
fn every_command_through_a_redis_client() {
    let server = Server::start(&["--sync", "never"]);
    let mut con = server.redis();
    let q = |con: &mut redis::Connection, args: &[&str]| -> RedisResult<Value> {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(con)
    };
    let text = |con: &mut redis::Connection, args: &[&str]| -> String {
        redis::from_redis_value(q(con, args).unwrap()).unwrap()
    };
    let int = |con: &mut redis::Connection, args: &[&str]| -> i64 {
        redis::from_redis_value(q(con, args).unwrap()).unwrap()
    };
    let err = |con: &mut redis::Connection, args: &[&str]| -> String {
        q(con, args).unwrap_err().to_string()
    };

    assert_eq!(text(&mut con, &["PING"]), "PONG");
    assert_eq!(text(&mut con, &["PING", "hi"]), "hi");
    assert_eq!(text(&mut con, &["ECHO", "hello world"]), "hello world");
    assert_eq!(text(&mut con, &["SET", "k", "v"]), "OK");
    assert_eq!(text(&mut con, &["GET", "k"]), "v");
    assert_eq!(q(&mut con, &["GET", "missing"]).unwrap(), Value::Nil);

    // SET NX / XX: nil when not set.
    assert_eq!(q(&mut con, &["SET", "k", "w", "NX"]).unwrap(), Value::Nil);
    assert_eq!(text(&mut con, &["SET", "fresh", "1", "nx"]), "OK");
    assert_eq!(text(&mut con, &["SET", "k", "w", "XX"]), "OK");
    assert_eq!(
        q(&mut con, &["SET", "absent", "w", "XX"]).unwrap(),
        Value::Nil
    );
    assert_eq!(text(&mut con, &["GET", "k"]), "w");
    assert!(err(&mut con, &["SET", "k", "v", "NX", "XX"]).contains("syntax error"));

    // INCR and friends, with Redis's error texts.
    assert_eq!(int(&mut con, &["INCR", "n"]), 1);
    assert_eq!(int(&mut con, &["INCRBY", "n", "41"]), 42);
    assert_eq!(int(&mut con, &["DECR", "n"]), 41);
    assert_eq!(int(&mut con, &["DECRBY", "n", "50"]), -9);
    assert!(err(&mut con, &["INCR", "k"]).contains("value is not an integer or out of range"));
    assert!(
        err(&mut con, &["INCRBY", "n", "x"]).contains("value is not an integer or out of range")
    );
    assert_eq!(text(&mut con, &["SET", "big", &i64::MAX.to_string()]), "OK");
    assert!(err(&mut con, &["INCR", "big"]).contains("increment or decrement would overflow"));
    assert!(
        err(&mut con, &["DECRBY", "n", &i64::MIN.to_string()]).contains("decrement would overflow")
    );

    // MSET / MGET / EXISTS / DEL / DBSIZE.
    assert_eq!(text(&mut con, &["MSET", "a", "1", "b", "2"]), "OK");
    let values: Vec<Option<String>> =
        redis::from_redis_value(q(&mut con, &["MGET", "a", "b", "zz"]).unwrap()).unwrap();
    assert_eq!(values, vec![Some("1".into()), Some("2".into()), None]);
    assert_eq!(int(&mut con, &["EXISTS", "a", "b", "zz", "a"]), 3);
    assert_eq!(int(&mut con, &["DEL", "a", "zz"]), 1);
    // k, fresh, n, big, b
    assert_eq!(int(&mut con, &["DBSIZE"]), 5);

    // RANGE / STATS / COMPACT.
    let range: Vec<String> =
        redis::from_redis_value(q(&mut con, &["RANGE", "b", "g"]).unwrap()).unwrap();
    assert_eq!(
        range,
        vec!["b", "2", "big", &i64::MAX.to_string(), "fresh", "1"]
    );
    assert_eq!(text(&mut con, &["COMPACT"]), "OK");
    let stats: Vec<Value> = redis::from_redis_value(q(&mut con, &["STATS"]).unwrap()).unwrap();
    assert!(stats.len() >= 2);

    // SELECT, CLIENT, CONFIG, COMMAND, INFO.
    assert_eq!(text(&mut con, &["SELECT", "0"]), "OK");
    assert!(err(&mut con, &["SELECT", "1"]).contains("DB index is out of range"));
    assert_eq!(q(&mut con, &["CLIENT", "GETNAME"]).unwrap(), Value::Nil);
    assert_eq!(text(&mut con, &["CLIENT", "SETNAME", "tester"]), "OK");
    assert_eq!(text(&mut con, &["CLIENT", "GETNAME"]), "tester");
    assert!(text(&mut con, &["CLIENT", "LIST"]).contains("name=tester"));
    assert!(err(&mut con, &["CLIENT", "SETNAME", "a b"]).contains("cannot contain spaces"));
    let config: Vec<String> =
        redis::from_redis_value(q(&mut con, &["CONFIG", "GET", "save"]).unwrap()).unwrap();
    assert_eq!(config, vec!["save".to_string(), String::new()]);
    let config: Vec<String> =
        redis::from_redis_value(q(&mut con, &["CONFIG", "GET", "append*"]).unwrap()).unwrap();
    assert_eq!(config, vec!["appendonly", "yes", "appendfsync", "no"]);
    let port: Vec<String> =
        redis::from_redis_value(q(&mut con, &["CONFIG", "GET", "port"]).unwrap()).unwrap();
    assert_eq!(
        port,
        vec!["port".to_string(), server.addr.port().to_string()]
    );
    assert!(
        err(&mut con, &["CONFIG", "SET", "x", "y"])
            .contains("Unknown option or number of arguments for CONFIG SET - 'x'")
    );
    assert!(err(&mut con, &["CONFIG", "RESETSTAT"]).contains("unknown subcommand 'RESETSTAT'"));
    assert!(int(&mut con, &["COMMAND", "COUNT"]) >= 20);
    let table: Vec<Value> = redis::from_redis_value(q(&mut con, &["COMMAND"]).unwrap()).unwrap();
    assert_eq!(table.len() as i64, int(&mut con, &["COMMAND", "COUNT"]));
    let docs: Vec<Value> =
        redis::from_redis_value(q(&mut con, &["COMMAND", "DOCS", "get"]).unwrap()).unwrap();
    assert_eq!(docs.len(), 2);

    let info = text(&mut con, &["INFO"]);
    for section in [
        "# Server",
        "# Clients",
        "# Stats",
        "# Persistence",
        "# Keyspace",
    ] {
        assert!(info.contains(section), "{section} missing from\n{info}");
    }
    assert!(info.contains(&format!("tcp_port:{}\r\n", server.addr.port())));
    assert!(
        info.contains("db0:keys=5,expires=0,avg_ttl=0\r\n"),
        "{info}"
    );
    let keyspace = text(&mut con, &["INFO", "keyspace"]);
    assert_eq!(keyspace, "# Keyspace\r\ndb0:keys=5,expires=0,avg_ttl=0\r\n");

    // Unknown commands and arity errors carry Redis's texts.
    assert!(
        err(&mut con, &["FOO", "bar", "baz"])
            .contains("unknown command 'FOO', with args beginning with: 'bar' 'baz'")
    );
    assert!(err(&mut con, &["GET"]).contains("wrong number of arguments for 'get' command"));
}

#[test]
fn scan_walks_every_key_across_calls_and_ends_with_zero() {
    let server = Server::start(&["--sync", "never"]);
    let mut con = server.redis();
    let mut expected = BTreeSet::new();
    for i in 0..250 {
        let key = if i % 5 == 0 {
            format!("odd:{i}")
        } else {
            format!("user:{i}")
        };
        redis::cmd("SET").arg(&key).arg(i).exec(&mut con).unwrap();
        expected.insert(key);
    }
    // The redis crate's own iterator drives the cursor.
    let seen: BTreeSet<String> = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("COUNT")
        .arg(17)
        .clone()
        .iter::<String>(&mut con)
        .unwrap()
        .map(|k| k.unwrap())
        .collect();
    assert_eq!(seen, expected);

    // By hand, with MATCH: COUNT bounds the keys looked at, not returned.
    let mut cursor: u64 = 0;
    let mut matched = Vec::new();
    let mut calls = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("odd:*")
            .arg("COUNT")
            .arg(40)
            .query(&mut con)
            .unwrap();
        assert!(keys.len() <= 40);
        matched.extend(keys);
        calls += 1;
        cursor = next;
        if cursor == 0 {
            break;
        }
        assert!(calls < 100, "the scan does not end");
    }
    assert_eq!(matched.len(), 50);
    assert!(matched.iter().all(|k| k.starts_with("odd:")));
    let e = redis::cmd("SCAN")
        .arg("notanumber")
        .query::<Value>(&mut con)
        .unwrap_err();
    assert!(e.to_string().contains("invalid cursor"), "{e}");
}

#[test]
fn inline_commands_and_a_pipeline_of_100_are_answered_in_order() {
    let server = Server::start(&["--sync", "never"]);
    let mut raw = server.raw();
    raw.send(b"SET inline \"a b\"\r\nGET inline\r\n\r\nPING\n");
    assert_eq!(raw.read_reply(), Reply::ok());
    assert_eq!(raw.read_reply(), bulk("a b"));
    assert_eq!(raw.read_reply(), Reply::Status("PONG".into()));

    // 100 commands in one write: SETs, GETs and an error interleaved.
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..100 {
        let request = match i % 4 {
            0 => {
                expected.push(Reply::ok());
                vec!["SET".to_string(), format!("p{i}"), format!("v{i}")]
            }
            1 => {
                expected.push(bulk(&format!("v{}", i - 1)));
                vec!["GET".to_string(), format!("p{}", i - 1)]
            }
            2 => {
                expected.push(Reply::Integer(i64::from(i) / 4 + 1));
                vec!["INCR".to_string(), "counter".to_string()]
            }
            _ => {
                expected.push(Reply::Error(
                    "ERR wrong number of arguments for 'get' command".into(),
                ));
                vec!["GET".to_string()]
            }
        };
        batch.push(format!("*{}\r\n", request.len()));
        for a in &request {
            batch.push(format!("${}\r\n{a}\r\n", a.len()));
        }
    }
    raw.send(batch.concat().as_bytes());
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(&raw.read_reply(), want, "reply {i}");
    }

    // Pipelined SETs run as one batch, but an empty key still fails alone.
    raw.send(b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$1\r\n1\r\n*3\r\n$3\r\nSET\r\n$0\r\n\r\n$1\r\n2\r\n*3\r\n$3\r\nSET\r\n$1\r\ny\r\n$1\r\n3\r\n*2\r\n$3\r\nGET\r\n$1\r\ny\r\n");
    assert_eq!(raw.read_reply(), Reply::ok());
    assert!(raw.read_reply().is_error());
    assert_eq!(raw.read_reply(), Reply::ok());
    assert_eq!(raw.read_reply(), bulk("3"));

    // QUIT answers OK and closes.
    raw.send_command(&["QUIT"]);
    assert_eq!(raw.read_reply(), Reply::ok());
    raw.expect_closed();
}

#[test]
fn shell_connect_is_a_client_of_the_server() {
    let server = Server::start(&["--sync", "never", "--requirepass", "s3cret"]);
    let run = |password: &str, input: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pydb"))
            .args([
                "shell",
                "--connect",
                &server.addr.to_string(),
                "--password",
                password,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(
        "s3cret",
        "set greeting \"hello world\"\nget greeting\nmget greeting nope\nincr c\nfoo\n\nquit\nget greeting\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "OK\n\"hello world\"\n1) \"hello world\"\n2) (nil)\n(integer) 1\n\
         (error) ERR unknown command 'foo', with args beginning with: \n"
    );
    let out = run("wrong", "get greeting\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("WRONGPASS"));
}
