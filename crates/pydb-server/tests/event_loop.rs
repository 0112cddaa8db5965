//! The event loops under the conditions that break event-driven servers:
//! many clients at once, requests split at every byte, a client that
//! leaves in the middle of a pipeline, and pipelined SETs of many clients
//! committed together (each must still get its own `+OK`, in order, and
//! its own value).

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use support::Running;

/// `SET key value` as RESP.
fn set(key: &str, value: &str) -> Vec<u8> {
    format!(
        "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
        key.len(),
        value.len()
    )
    .into_bytes()
}

/// `GET key` as RESP.
fn get(key: &str) -> Vec<u8> {
    format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).into_bytes()
}

/// Reads exactly `n` bytes.
fn read_n(stream: &mut std::net::TcpStream, n: usize) -> Vec<u8> {
    let mut got = vec![0; n];
    stream.read_exact(&mut got).unwrap();
    got
}

#[test]
fn many_clients_pipelining_sets_each_get_their_own_replies_and_values() {
    many_clients_pipelining_sets(&Running::start_on_disk());
}

/// The same with one loop and with three, whatever the machine's default:
/// one loop serves every client in its turns, three commit independently
/// and meet at the log's group commit.
#[test]
fn many_clients_pipelining_sets_with_one_loop_and_with_three() {
    for loops in [1, 3] {
        let server = Running::start_on_disk_with_loops(loops);
        // The server runs the loops it was asked for, and says so.
        let mut c = server.connect();
        let n = loops.to_string();
        c.expect(
            &["CONFIG", "GET", "event-loops"],
            format!("*2\r\n$11\r\nevent-loops\r\n${}\r\n{n}\r\n", n.len()).as_bytes(),
        );
        c.expect_ending(
            &["INFO", "server"],
            format!("event_loops:{n}\r\n").as_bytes(),
        );
        many_clients_pipelining_sets(&server);
    }
}

fn many_clients_pipelining_sets(server: &Running) {
    let clients = 40;
    let per_client = 50;
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let mut raw = server.connect();
            std::thread::spawn(move || {
                // Pipelined SETs then a GET of each key, in one write: the
                // GETs must see this client's own SETs.
                let mut out = Vec::new();
                for i in 0..per_client {
                    out.extend(set(&format!("c{c}:k{i}"), &format!("v{c}-{i}")));
                }
                for i in 0..per_client {
                    out.extend(get(&format!("c{c}:k{i}")));
                }
                raw.0.write_all(&out).unwrap();
                let oks = read_n(&mut raw.0, 5 * per_client);
                assert_eq!(oks, b"+OK\r\n".repeat(per_client));
                for i in 0..per_client {
                    let value = format!("v{c}-{i}");
                    let expected = format!("${}\r\n{value}\r\n", value.len());
                    assert_eq!(
                        String::from_utf8(read_n(&mut raw.0, expected.len())).unwrap(),
                        expected
                    );
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn requests_split_at_every_byte_are_answered_once_whole() {
    let server = Running::start();
    let mut raw = server.connect();
    raw.0.set_nodelay(true).unwrap();
    let mut request = set("split", "value");
    request.extend(get("split"));
    for byte in &request {
        raw.0.write_all(std::slice::from_ref(byte)).unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(read_n(&mut raw.0, 5 + 11), b"+OK\r\n$5\r\nvalue\r\n");
}

#[test]
fn a_client_leaving_mid_pipeline_does_not_disturb_the_others() {
    let server = Running::start_on_disk();
    // Half a pipeline, then gone: the complete SETs may or may not be
    // applied, the loop must not stall or fail the other clients.
    let mut leaver = server.connect();
    let mut out = set("left:a", "1");
    out.extend(&set("left:b", "2")[..10]);
    leaver.0.write_all(&out).unwrap();
    drop(leaver);
    let mut stayer = server.connect();
    for i in 0..20 {
        stayer.expect(&["SET", &format!("s{i}"), "x"], b"+OK\r\n");
    }
    stayer.expect(&["GET", "s19"], b"$1\r\nx\r\n");
    stayer.expect(&["EXISTS", "left:b"], b":0\r\n");
}

#[test]
fn a_client_that_does_not_read_does_not_hold_up_the_others() {
    let server = Running::start();
    let mut writer = server.connect();
    writer.expect(&["SET", "big", &"x".repeat(256 << 10)], b"+OK\r\n");
    // 200 GETs of 256 KiB, never read: its loop stops reading it.
    let mut hog = server.connect();
    hog.0.write_all(&get("big").repeat(200)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // Clients on either loop are still served.
    for _ in 0..8 {
        let mut other = server.connect();
        other.expect(&["PING"], b"+PONG\r\n");
    }
}

#[test]
fn clients_that_send_and_close_at_once_are_gone_from_the_client_list() {
    let server = Running::start();
    for i in 0..20 {
        let mut raw = server.connect();
        // The request and the FIN may arrive together: the loop must still
        // see the end of the stream after answering.
        raw.0.write_all(&set(&format!("gone{i}"), "v")).unwrap();
        raw.0.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(read_n(&mut raw.0, 5), b"+OK\r\n");
    }
    let mut watcher = server.connect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        watcher.send(&["INFO", "clients"]);
        let mut buf = vec![0; 4096];
        let n = watcher.0.read(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if text.contains("connected_clients:1\r\n") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "closed clients still listed: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
