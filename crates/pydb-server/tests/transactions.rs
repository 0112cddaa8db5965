//! Guards MULTI/EXEC/DISCARD/WATCH/UNWATCH on a real socket: the bytes are
//! the ones redis-server 7.0.15 sends for the same sessions (recorded by
//! hand), in RESP2 and RESP3, and EXEC is atomic and isolated under
//! concurrent clients.

#![allow(clippy::unwrap_used)]

mod support;

use pydb_server::Reply;
use pydb_server::client::Client;
use support::Running;

#[test]
fn errors_outside_and_inside_multi_are_redis_s() {
    let server = Running::start();
    let mut c = server.connect();
    c.expect(&["EXEC"], b"-ERR EXEC without MULTI\r\n");
    c.expect(&["DISCARD"], b"-ERR DISCARD without MULTI\r\n");
    c.expect(
        &["WATCH"],
        b"-ERR wrong number of arguments for 'watch' command\r\n",
    );
    c.expect(
        &["UNWATCH", "x"],
        b"-ERR wrong number of arguments for 'unwatch' command\r\n",
    );
    c.expect(
        &["MULTI", "x"],
        b"-ERR wrong number of arguments for 'multi' command\r\n",
    );
    c.expect(
        &["EXEC", "x"],
        b"-EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command\r\n",
    );
    c.expect(&["MULTI"], b"+OK\r\n");
    c.expect(&["MULTI"], b"-ERR MULTI calls can not be nested\r\n");
    c.expect(
        &["WATCH", "k"],
        b"-ERR WATCH inside MULTI is not allowed\r\n",
    );
    c.expect(&["SET", "a", "1"], b"+QUEUED\r\n");
    // Neither error dooms the transaction.
    c.expect(&["EXEC"], b"*1\r\n+OK\r\n");
    // An arity error or an unknown command does.
    c.expect(&["MULTI"], b"+OK\r\n");
    c.expect(&["SET", "k", "v"], b"+QUEUED\r\n");
    c.expect(
        &["SET", "k"],
        b"-ERR wrong number of arguments for 'set' command\r\n",
    );
    c.expect(
        &["FOO"],
        b"-ERR unknown command 'FOO', with args beginning with: \r\n",
    );
    c.expect(
        &["CONFIG", "FOO"],
        b"-ERR unknown subcommand 'FOO'. Try CONFIG HELP.\r\n",
    );
    c.expect(&["UNWATCH"], b"+QUEUED\r\n");
    c.expect(
        &["EXEC"],
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
    );
    c.expect(&["GET", "k"], b"$-1\r\n");
    // EXEC with a wrong arity inside MULTI discards it.
    c.expect(&["MULTI"], b"+OK\r\n");
    c.expect(
        &["EXEC", "x"],
        b"-EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command\r\n",
    );
    c.expect(&["EXEC"], b"-ERR EXEC without MULTI\r\n");
    c.expect(&["MULTI"], b"+OK\r\n");
    c.expect(&["DISCARD"], b"+OK\r\n");
    c.expect(&["MULTI"], b"+OK\r\n");
    c.expect(&["EXEC"], b"*0\r\n");
}

/// The session recorded against redis-server: command errors inside EXEC
/// are per command, the others' effects stay.
#[test]
fn exec_replies_per_command_as_redis_does() {
    let server = Running::start();
    let mut c = server.connect();
    // As in the recorded session, one other key exists.
    c.expect(&["SET", "a", "1"], b"+OK\r\n");
    c.expect(&["MULTI"], b"+OK\r\n");
    for args in [
        &["SET", "k", "1"][..],
        &["INCR", "k"],
        &["SET", "k", "v", "BAD"],
        &["INCRBY", "k", "x"],
        &["SET", "s", "abc"],
        &["INCR", "s"],
        &["GET", "s"],
        &["DEL", "s", "k"],
        &["EXISTS", "s"],
        &["UNWATCH"],
        &["PING"],
        &["DBSIZE"],
    ] {
        c.expect(args, b"+QUEUED\r\n");
    }
    c.expect(
        &["EXEC"],
        b"*12\r\n+OK\r\n:2\r\n-ERR syntax error\r\n-ERR value is not an integer or out of range\r\n\
          +OK\r\n-ERR value is not an integer or out of range\r\n$3\r\nabc\r\n:2\r\n:0\r\n+OK\r\n+PONG\r\n:1\r\n",
    );
    c.expect(&["DBSIZE"], b":1\r\n");
    c.expect(&["GET", "k"], b"$-1\r\n");
}

#[test]
fn watch_aborts_exec_when_a_watched_key_changes() {
    let server = Running::start();
    let mut a = server.connect();
    let mut b = server.connect();
    // A write by the watcher itself counts, even of the same value.
    a.expect(&["SET", "w", "1"], b"+OK\r\n");
    a.expect(&["WATCH", "w", "missing"], b"+OK\r\n");
    a.expect(&["SET", "w", "1"], b"+OK\r\n");
    a.expect(&["MULTI"], b"+OK\r\n");
    a.expect(&["PING"], b"+QUEUED\r\n");
    a.expect(&["EXEC"], b"*-1\r\n");
    // So does creating a watched key that was missing.
    a.expect(&["WATCH", "missing"], b"+OK\r\n");
    b.expect(&["SET", "missing", "x"], b"+OK\r\n");
    a.expect(&["MULTI"], b"+OK\r\n");
    a.expect(&["EXEC"], b"*-1\r\n");
    // Deleting a key that does not exist writes nothing.
    a.expect(&["WATCH", "nothere"], b"+OK\r\n");
    b.expect(&["DEL", "nothere"], b":0\r\n");
    a.expect(&["MULTI"], b"+OK\r\n");
    a.expect(&["EXEC"], b"*0\r\n");
    // DISCARD and UNWATCH forget the watched keys.
    a.expect(&["WATCH", "w"], b"+OK\r\n");
    a.expect(&["MULTI"], b"+OK\r\n");
    a.expect(&["DISCARD"], b"+OK\r\n");
    b.expect(&["SET", "w", "2"], b"+OK\r\n");
    a.expect(&["MULTI"], b"+OK\r\n");
    a.expect(&["EXEC"], b"*0\r\n");
    a.expect(&["WATCH", "w"], b"+OK\r\n");
    a.expect(&["UNWATCH"], b"+OK\r\n");
    b.expect(&["SET", "w", "3"], b"+OK\r\n");
    a.expect(&["MULTI"], b"+OK\r\n");
    a.expect(&["EXEC"], b"*0\r\n");
    // Another client's write, then a FLUSHALL.
    a.expect(&["WATCH", "w"], b"+OK\r\n");
    b.expect(&["SET", "w", "4"], b"+OK\r\n");
    a.expect(&["MULTI"], b"+OK\r\n");
    a.expect(&["SET", "lost", "1"], b"+QUEUED\r\n");
    a.expect(&["EXEC"], b"*-1\r\n");
    a.expect(&["GET", "lost"], b"$-1\r\n");
    a.expect(&["WATCH", "w", "x"], b"+OK\r\n");
    b.expect(&["FLUSHALL"], b"+OK\r\n");
    a.expect(&["MULTI"], b"+OK\r\n");
    a.expect(&["EXEC"], b"*-1\r\n");
    // An unchanged watched key lets EXEC run.
    a.expect(&["SET", "w", "5"], b"+OK\r\n");
    a.expect(&["WATCH", "w"], b"+OK\r\n");
    b.expect(&["SET", "other", "1"], b"+OK\r\n");
    a.expect(&["MULTI"], b"+OK\r\n");
    a.expect(&["INCR", "w"], b"+QUEUED\r\n");
    a.expect(&["EXEC"], b"*1\r\n:6\r\n");
}

/// A watched key deleted by another client stays "modified" even when
/// garbage collection runs before EXEC: the watch holds the snapshot that
/// keeps the tombstone.
#[test]
fn a_delete_after_watch_survives_garbage_collection() {
    let server = Running::start();
    let mut a = server.connect();
    let mut b = server.connect();
    a.expect(&["SET", "k", "v"], b"+OK\r\n");
    a.expect(&["WATCH", "k"], b"+OK\r\n");
    b.expect(&["DEL", "k"], b":1\r\n");
    b.expect(&["COMPACT"], b"+OK\r\n");
    a.expect(&["MULTI"], b"+OK\r\n");
    a.expect(&["SET", "k", "again"], b"+QUEUED\r\n");
    a.expect(&["EXEC"], b"*-1\r\n");
    a.expect(&["EXISTS", "k"], b":0\r\n");
}

#[test]
fn resp3_sends_a_null_for_an_aborted_exec() {
    let server = Running::start();
    let mut a = server.connect();
    a.expect_ending(&["HELLO", "3"], b"$7\r\nmodules\r\n*0\r\n");
    a.expect(&["WATCH", "q"], b"+OK\r\n");
    a.expect(&["SET", "q", "1"], b"+OK\r\n");
    a.expect(&["MULTI"], b"+OK\r\n");
    a.expect(&["EXEC"], b"_\r\n");
    a.expect(&["MULTI"], b"+OK\r\n");
    a.expect(&["GET", "nope"], b"+QUEUED\r\n");
    a.expect(&["EXEC"], b"*1\r\n_\r\n");
}

/// Connection commands queued in MULTI run at EXEC, in their slots.
#[test]
fn connection_commands_run_at_exec() {
    let server = Running::start();
    let mut a = server.connect();
    a.expect(&["MULTI"], b"+OK\r\n");
    a.expect(&["CLIENT", "SETNAME", "txn"], b"+QUEUED\r\n");
    a.expect(&["SET", "k", "v"], b"+QUEUED\r\n");
    a.expect(&["CLIENT", "GETNAME"], b"+QUEUED\r\n");
    a.expect(&["EXEC"], b"*3\r\n+OK\r\n+OK\r\n$3\r\ntxn\r\n");
}

/// A pipeline of SETs inside MULTI is queued, not batched ahead of EXEC.
#[test]
fn pipelined_sets_inside_multi_are_queued() {
    let server = Running::start();
    let mut a = server.connect();
    let mut b = server.connect();
    a.send(&["MULTI"]);
    for i in 0..5 {
        a.send(&["SET", &format!("p{i}"), "v"]);
    }
    a.expect(
        &["DBSIZE"],
        b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n",
    );
    b.expect(&["DBSIZE"], b":0\r\n");
    a.expect(
        &["EXEC"],
        b"*6\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n:5\r\n",
    );
    b.expect(&["DBSIZE"], b":5\r\n");
}

fn exec_reply(client: &mut Client, args: &[&str]) -> Reply {
    client.call(args).unwrap()
}

/// Four clients increment one counter with the WATCH/GET/MULTI/SET/EXEC
/// loop of the Redis documentation, on a synced disk database: every
/// increment lands exactly once, and no EXEC fails (a conflict with a
/// commit not yet visible is retried inside, and then seen by the watch).
#[test]
fn watch_retry_loops_lose_no_increment() {
    let server = Running::start_on_disk();
    let clients = 4;
    let per_client = 60;
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let mut c = server.client();
            std::thread::spawn(move || {
                let mut retries = 0;
                for _ in 0..per_client {
                    loop {
                        assert_eq!(exec_reply(&mut c, &["WATCH", "counter"]), Reply::ok());
                        let n = match exec_reply(&mut c, &["GET", "counter"]) {
                            Reply::Bulk(None) => 0,
                            Reply::Bulk(Some(v)) => {
                                std::str::from_utf8(&v).unwrap().parse::<i64>().unwrap()
                            }
                            other => panic!("GET: {other:?}"),
                        };
                        assert_eq!(exec_reply(&mut c, &["MULTI"]), Reply::ok());
                        let next = (n + 1).to_string();
                        exec_reply(&mut c, &["SET", "counter", &next]);
                        match exec_reply(&mut c, &["EXEC"]) {
                            Reply::Array(replies) => {
                                assert_eq!(replies, vec![Reply::ok()]);
                                break;
                            }
                            Reply::Bulk(None) => retries += 1,
                            other => panic!("EXEC: {other:?}"),
                        }
                    }
                }
                retries
            })
        })
        .collect();
    let retries: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let mut c = server.client();
    assert_eq!(
        exec_reply(&mut c, &["GET", "counter"]),
        Reply::bulk((clients * per_client).to_string())
    );
    // The test means something only if the clients got in each other's
    // way; with hundreds of interleaved round trips they do.
    eprintln!("{retries} EXECs aborted by WATCH and retried");
}

/// Without WATCH an EXEC never fails: eight clients each run MULTI/INCR/
/// EXEC on one counter, on a synced disk database, and every increment
/// lands.
#[test]
fn contended_execs_without_watch_all_commit() {
    let server = Running::start_on_disk();
    let clients = 8;
    let per_client = 40;
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let mut c = server.client();
            std::thread::spawn(move || {
                for _ in 0..per_client {
                    assert_eq!(exec_reply(&mut c, &["MULTI"]), Reply::ok());
                    exec_reply(&mut c, &["INCR", "c"]);
                    exec_reply(&mut c, &["INCR", "other"]);
                    match exec_reply(&mut c, &["EXEC"]) {
                        Reply::Array(replies) => assert_eq!(replies.len(), 2),
                        other => panic!("EXEC: {other:?}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut c = server.client();
    let total = (clients * per_client).to_string();
    assert_eq!(
        exec_reply(&mut c, &["GET", "c"]),
        Reply::bulk(total.clone())
    );
    assert_eq!(exec_reply(&mut c, &["GET", "other"]), Reply::bulk(total));
}

/// EXEC is isolated: a writer moves one unit between two keys in MULTI
/// blocks, and a reader's MULTI/GET/GET/EXEC always sees the sum intact.
#[test]
fn exec_is_atomic_and_isolated() {
    let server = Running::start();
    let mut setup = server.client();
    exec_reply(&mut setup, &["MSET", "a", "100", "b", "0"]);
    let mut writer = server.client();
    let moving = std::thread::spawn(move || {
        for _ in 0..100 {
            assert_eq!(exec_reply(&mut writer, &["MULTI"]), Reply::ok());
            exec_reply(&mut writer, &["DECR", "a"]);
            exec_reply(&mut writer, &["INCR", "b"]);
            assert!(matches!(
                exec_reply(&mut writer, &["EXEC"]),
                Reply::Array(_)
            ));
        }
    });
    let mut reader = server.client();
    let mut reads = 0;
    while !moving.is_finished() || reads < 10 {
        exec_reply(&mut reader, &["MULTI"]);
        exec_reply(&mut reader, &["GET", "a"]);
        exec_reply(&mut reader, &["GET", "b"]);
        let Reply::Array(values) = exec_reply(&mut reader, &["EXEC"]) else {
            panic!("EXEC failed");
        };
        let sum: i64 = values
            .iter()
            .map(|v| match v {
                Reply::Bulk(Some(v)) => std::str::from_utf8(v).unwrap().parse::<i64>().unwrap(),
                other => panic!("GET: {other:?}"),
            })
            .sum();
        assert_eq!(sum, 100, "a reader saw half of an EXEC: {values:?}");
        reads += 1;
    }
    moving.join().unwrap();
    assert_eq!(exec_reply(&mut reader, &["GET", "b"]), Reply::bulk("100"));
}
