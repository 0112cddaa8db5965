//! Guards what `pydb server` refuses: unauthenticated clients, malformed or oversized frames (error reply and close, the server stays up), partial frames (wait), --maxclients, --timeout, and a non-loopback bind without a password.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod server_support;

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use pydb_server::Reply;
use server_support::{Raw, Server};

#[test]
fn auth_is_required_and_checked() {
    let server = Server::start(&["--sync", "never", "--requirepass", "pw"]);
    let mut raw = server.raw();
    assert_eq!(
        raw.call(&["GET", "k"]),
        Reply::Error("NOAUTH Authentication required.".into())
    );
    assert_eq!(
        raw.call(&["AUTH", "nope"]),
        Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
    );
    assert_eq!(
        raw.call(&["AUTH", "someone", "pw"]),
        Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
    );
    // Before AUTH, requests are held to small limits.
    raw.send(b"*11\r\n");
    let rest = raw.expect_closed();
    assert!(String::from_utf8_lossy(&rest).contains("invalid multibulk length"));

    let mut raw = server.raw();
    assert_eq!(raw.call(&["AUTH", "default", "pw"]), Reply::ok());
    assert_eq!(raw.call(&["SET", "k", "v"]), Reply::ok());

    // The redis crate with the password in its URL, and without.
    let mut con = server.redis_with_password(Some("pw"));
    let v: String = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    assert_eq!(v, "v");
    let client = redis::Client::open(format!("redis://{}/", server.addr)).unwrap();
    let mut anonymous = client.get_connection().unwrap();
    let e = redis::cmd("GET")
        .arg("k")
        .query::<String>(&mut anonymous)
        .unwrap_err();
    assert!(e.to_string().contains("Authentication required"), "{e}");
}

#[test]
fn auth_without_a_password_configured_is_an_error() {
    let server = Server::start(&["--sync", "never"]);
    let reply = server.raw().call(&["AUTH", "x"]);
    assert!(
        matches!(&reply, Reply::Error(e) if e.contains("without any password configured")),
        "{reply:?}"
    );
}

/// Sends `bytes`, expects an error reply containing `expected` and a
/// closed connection; then checks that the server still serves others.
fn refused(server: &Server, bytes: &[u8], expected: &str) {
    let mut raw = server.raw();
    raw.send(bytes);
    let rest = String::from_utf8_lossy(&raw.expect_closed()).into_owned();
    assert!(
        rest.starts_with("-ERR Protocol error") && rest.contains(expected),
        "{:?} -> {rest:?}",
        String::from_utf8_lossy(bytes)
    );
    assert_eq!(
        server.raw().call(&["PING"]),
        Reply::Status("PONG".into()),
        "the server must stay up"
    );
}

#[test]
fn malformed_frames_get_an_error_and_a_closed_connection() {
    let server = Server::start(&["--sync", "never", "--max-bulk-bytes", "1024"]);
    refused(&server, b"*1\r\n$-5\r\n", "invalid bulk length");
    refused(&server, b"*-x\r\n", "invalid multibulk length");
    refused(&server, b"*1\r\n$99999999999999\r\n", "invalid bulk length");
    refused(&server, b"*99999999999\r\n", "invalid multibulk length");
    refused(&server, b"*x\r\n", "invalid multibulk length");
    refused(&server, b"*2\r\n$3\r\nGET\r\n:1\r\n", "expected '$'");
    refused(&server, b"*1\r\n$abc\r\n", "invalid bulk length");
    refused(&server, b"*1\r\n$3\r\nGETXX\r\n", "CRLF");
    refused(&server, b"SET \"unclosed\r\n", "unbalanced quotes");
    // --max-bulk-bytes: 1024 passes, 1025 does not.
    let mut raw = server.raw();
    let ok = "x".repeat(1024);
    assert_eq!(raw.call(&["SET", "big", &ok]), Reply::ok());
    let too_big = "x".repeat(1025);
    refused(
        &server,
        format!("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$1025\r\n{too_big}\r\n").as_bytes(),
        "invalid bulk length",
    );
    // An inline line longer than 64 KiB with no newline.
    refused(
        &server,
        &vec![b'a'; (64 << 10) + 10],
        "too big inline request",
    );
    assert_eq!(
        raw.call(&["GET", "big"]),
        Reply::bulk(Bytes::from(ok.into_bytes()))
    );
}

#[test]
fn a_partial_frame_waits_for_the_rest() {
    let server = Server::start(&["--sync", "never"]);
    let mut raw = server.raw();
    let frame = b"*3\r\n$3\r\nSET\r\n$4\r\nslow\r\n$5\r\nvalue\r\n";
    for piece in frame.chunks(3) {
        raw.send(piece);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(raw.read_reply(), Reply::ok());
    // Cut at a point where nothing can be answered yet: no reply may come.
    raw.send(b"*2\r\n$3\r\nGET\r\n$4\r\nsl");
    raw.stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = std::io::Read::read(&mut raw.stream, &mut byte);
    assert!(early.is_err(), "a reply came before the frame was complete");
    raw.stream
        .set_read_timeout(Some(server_support::TIMEOUT))
        .unwrap();
    raw.send(b"ow\r\n");
    assert_eq!(raw.read_reply(), Reply::bulk(Bytes::from_static(b"value")));
}

#[test]
fn maxclients_turns_the_extra_client_away() {
    let server = Server::start(&["--sync", "never", "--maxclients", "2"]);
    let mut a = server.raw();
    let mut b = server.raw();
    assert_eq!(a.call(&["PING"]), Reply::Status("PONG".into()));
    assert_eq!(b.call(&["PING"]), Reply::Status("PONG".into()));
    let mut c = server.raw();
    assert_eq!(
        c.expect_closed(),
        b"-ERR max number of clients reached\r\n".to_vec()
    );
    // When one leaves, there is room again.
    drop(a);
    let mut d = None;
    for _ in 0..100 {
        let mut raw = Raw::connect(server.addr);
        raw.send_command(&["PING"]);
        if raw.read_reply() == Reply::Status("PONG".into()) {
            d = Some(raw);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(d.is_some(), "a freed slot was not reused");
    assert_eq!(b.call(&["PING"]), Reply::Status("PONG".into()));
}

#[test]
fn idle_clients_are_closed_after_timeout() {
    let server = Server::start(&["--sync", "never", "--timeout", "1"]);
    let mut raw = server.raw();
    assert_eq!(raw.call(&["PING"]), Reply::Status("PONG".into()));
    let started = std::time::Instant::now();
    raw.expect_closed();
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[test]
fn a_public_bind_needs_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pydb"))
        .args(["server", "--bind", "0.0.0.0:0", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("without --requirepass"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // With a password it starts, and is reachable through loopback.
    let server = Server::start(&["--bind", "0.0.0.0:0", "--requirepass", "pw"]);
    let mut raw = Raw::connect(std::net::SocketAddr::from((
        [127, 0, 0, 1],
        server.addr.port(),
    )));
    assert_eq!(raw.call(&["AUTH", "pw"]), Reply::ok());
}
