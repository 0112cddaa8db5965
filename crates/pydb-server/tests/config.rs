//! Guards CONFIG GET/SET of the settings that change at run time: the
//! output buffer limits and the write timeout are reported, and set all or
//! none.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Read;

use support::Running;

fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

fn config_get(name: &str, value: &str) -> Vec<u8> {
    format!("*2\r\n{}{}", bulk(name), bulk(value)).into_bytes()
}

#[test]
fn config_reports_and_sets_the_output_limits_and_write_timeout() {
    let server = Running::start();
    let mut c = server.connect();
    c.expect(
        &["CONFIG", "GET", "client-output-buffer-limit"],
        &config_get("client-output-buffer-limit", "normal 268435456 67108864 60"),
    );
    c.expect(
        &["CONFIG", "GET", "write-timeout"],
        &config_get("write-timeout", "60"),
    );
    c.expect(
        &[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "normal 1000000 500000 5",
            "write-timeout",
            "7",
        ],
        b"+OK\r\n",
    );
    c.expect(
        &["CONFIG", "GET", "client-output-buffer-limit"],
        &config_get("client-output-buffer-limit", "normal 1000000 500000 5"),
    );
    c.expect(
        &["CONFIG", "GET", "write-timeout"],
        &config_get("write-timeout", "7"),
    );
    // The flag's form works too, and 0 turns the write timeout off.
    c.expect(
        &[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "2000 1000 3",
            "write-timeout",
            "0",
        ],
        b"+OK\r\n",
    );
    c.expect(
        &["CONFIG", "GET", "client-output-buffer-limit"],
        &config_get("client-output-buffer-limit", "normal 2000 1000 3"),
    );
    c.expect(
        &["CONFIG", "GET", "write-timeout"],
        &config_get("write-timeout", "0"),
    );
    // Invalid values change nothing, not even the valid pair before them.
    c.expect(
        &[
            "CONFIG",
            "SET",
            "write-timeout",
            "9",
            "client-output-buffer-limit",
            "pubsub 1 2 3",
        ],
        b"-ERR CONFIG SET failed (possibly related to argument 'client-output-buffer-limit') - argument must be 'normal <hard> <soft> <seconds>' in bytes, bytes and seconds\r\n",
    );
    c.expect(
        &[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "normal 0 0 0",
        ],
        b"-ERR CONFIG SET failed - the output buffer limits must be at least 1 byte\r\n",
    );
    c.expect(
        &["CONFIG", "SET", "write-timeout", "soon"],
        b"-ERR CONFIG SET failed (possibly related to argument 'write-timeout') - argument couldn't be parsed into an integer\r\n",
    );
    c.expect(
        &["CONFIG", "GET", "write-timeout"],
        &config_get("write-timeout", "0"),
    );
    c.expect(
        &["CONFIG", "GET", "client-output-buffer-limit"],
        &config_get("client-output-buffer-limit", "normal 2000 1000 3"),
    );
}

/// A lowered hard limit applies to the next reply: a client asking for a
/// reply over it is closed.
#[test]
fn a_lowered_hard_limit_closes_a_client_over_it() {
    let server = Running::start();
    let mut c = server.connect();
    let big = "x".repeat(5000);
    c.expect(&["SET", "big", &big], b"+OK\r\n");
    c.expect(
        &[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "4096 4096 60",
        ],
        b"+OK\r\n",
    );
    c.send(&["GET", "big"]);
    let mut rest = Vec::new();
    let n = c.0.read_to_end(&mut rest).unwrap();
    assert_eq!(n, 0, "the reply over the hard limit is never sent");
}
