//! Guards the connection's fast path for `GET` (`RequestParser::parse_get`
//! and `Connection::answer_get`): the bytes it sends are the general
//! path's, in request order, after the `SET`s pipelined before it, inside
//! `MULTI` and in RESP3.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;

use support::Running;

#[test]
fn pipelined_gets_see_the_sets_before_them_in_order() {
    let server = Running::start();
    let mut c = server.connect();
    c.pipeline(
        b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n\
          *3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n\
          *2\r\n$3\r\nget\r\n$1\r\nk\r\n\
          *3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv2\r\n\
          *3\r\n$3\r\nSET\r\n$1\r\nj\r\n$0\r\n\r\n\
          *2\r\n$3\r\ngEt\r\n$1\r\nk\r\n\
          *2\r\n$3\r\nGET\r\n$1\r\nj\r\n\
          *2\r\n$3\r\nGET\r\n$4\r\nk\r\nx\r\n\
          GET k\r\n",
        b"$-1\r\n+OK\r\n$2\r\nv1\r\n+OK\r\n+OK\r\n$2\r\nv2\r\n$0\r\n\r\n$-1\r\n$2\r\nv2\r\n",
    );
}

#[test]
fn malformed_and_other_gets_take_the_general_path() {
    let server = Running::start();
    let mut c = server.connect();
    c.expect(&["SET", "k", "v"], b"+OK\r\n");
    c.expect(
        &["GET"],
        b"-ERR wrong number of arguments for 'get' command\r\n",
    );
    c.expect(
        &["GET", "k", "x"],
        b"-ERR wrong number of arguments for 'get' command\r\n",
    );
    c.expect(
        &["GETX", "k"],
        b"-ERR unknown command 'GETX', with args beginning with: 'k' \r\n",
    );
    c.expect(&["SET", "k", "w"], b"+OK\r\n");
    c.expect(&["GET", ""], b"-ERR empty keys are not allowed\r\n");
    // A key split across two writes: the first half is no request yet.
    c.0.write_all(b"*2\r\n$3\r\nGET\r\n$1\r").unwrap();
    c.0.flush().unwrap();
    c.pipeline(b"\nk\r\n", b"$1\r\nw\r\n");
}

#[test]
fn gets_in_multi_are_queued_and_resp3_nil_is_a_null() {
    let server = Running::start();
    let mut c = server.connect();
    c.expect(&["SET", "k", "v"], b"+OK\r\n");
    c.expect(&["MULTI"], b"+OK\r\n");
    c.expect(&["GET", "k"], b"+QUEUED\r\n");
    c.expect(&["GET", "none"], b"+QUEUED\r\n");
    c.expect(&["EXEC"], b"*2\r\n$1\r\nv\r\n$-1\r\n");
    c.expect_ending(&["HELLO", "3"], b"$7\r\nmodules\r\n*0\r\n");
    c.expect(&["GET", "none"], b"_\r\n");
    c.expect(&["GET", "k"], b"$1\r\nv\r\n");
}
