//! Guards the connection's fast path for `SET` (`RequestParser::parse_set`
//! and the connection's `pending_sets`): every form of `SET` gets the
//! general path's reply, in request order, and stores its own key and
//! value, also across a run longer than one commit and a request split
//! between two writes.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;

use support::Running;

#[test]
fn pipelined_sets_in_every_form_are_answered_in_order_and_stored() {
    let server = Running::start();
    let mut c = server.connect();
    c.pipeline(
        b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$2\r\nv1\r\n\
          *3\r\n$3\r\nsEt\r\n$1\r\nb\r\n$0\r\n\r\n\
          *3\r\n$3\r\nSET\r\n$1\r\na\r\n$4\r\nv\r\n2\r\n\
          *4\r\n$3\r\nSET\r\n$1\r\na\r\n$2\r\nv3\r\n$2\r\nNX\r\n\
          *3\r\n$3\r\nSET\r\n$0\r\n\r\n$1\r\nv\r\n\
          *2\r\n$3\r\nSET\r\n$1\r\na\r\n\
          SET c inline\r\n\
          *3\r\n$3\r\nSET\r\n$1\r\nd\r\n$2\r\nv4\r\n\
          *2\r\n$3\r\nGET\r\n$1\r\na\r\n\
          *2\r\n$3\r\nGET\r\n$1\r\nb\r\n\
          *2\r\n$3\r\nGET\r\n$1\r\nc\r\n\
          *2\r\n$3\r\nGET\r\n$1\r\nd\r\n",
        b"+OK\r\n+OK\r\n+OK\r\n$-1\r\n\
          -ERR empty keys are not allowed\r\n\
          -ERR wrong number of arguments for 'set' command\r\n\
          +OK\r\n+OK\r\n\
          $4\r\nv\r\n2\r\n$0\r\n\r\n$6\r\ninline\r\n$2\r\nv4\r\n",
    );
    // In MULTI a SET is queued, not set aside.
    c.expect(&["MULTI"], b"+OK\r\n");
    c.expect(&["SET", "a", "in-multi"], b"+QUEUED\r\n");
    c.expect(&["EXEC"], b"*1\r\n+OK\r\n");
    c.expect(&["GET", "a"], b"$8\r\nin-multi\r\n");
}

#[test]
fn a_run_longer_than_one_commit_keeps_every_value() {
    let server = Running::start();
    let mut c = server.connect();
    // More SETs than one connection holds back (`MAX_PENDING_SETS`), to
    // the same keys over and over: the last value of each must win.
    let (keys, rounds) = (7, 450);
    let mut requests = Vec::new();
    for i in 0..keys * rounds {
        let (key, value) = (format!("k{}", i % keys), format!("value-{i}"));
        requests.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
                key.len(),
                value.len()
            )
            .as_bytes(),
        );
    }
    c.pipeline(&requests, &b"+OK\r\n".repeat(keys * rounds));
    for k in 0..keys {
        let value = format!("value-{}", (rounds - 1) * keys + k);
        let reply = format!("${}\r\n{value}\r\n", value.len());
        c.expect(&["GET", &format!("k{k}")], reply.as_bytes());
    }
}

#[test]
fn a_set_split_between_two_writes_is_stored_once_whole() {
    let server = Running::start();
    let mut c = server.connect();
    let set = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
    for cut in 1..set.len() {
        c.0.write_all(&set[..cut]).unwrap();
        c.0.flush().unwrap();
        c.pipeline(&set[cut..], b"+OK\r\n");
    }
    c.expect(&["GET", "key"], b"$5\r\nvalue\r\n");
    c.expect(&["DBSIZE"], b":1\r\n");
}
