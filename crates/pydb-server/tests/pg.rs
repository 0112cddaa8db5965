//! The PostgreSQL protocol against a real driver (the `postgres` crate):
//! simple and prepared queries, parameters, transactions, SQLSTATE codes,
//! SCRAM passwords, portals, cancellation, malformed messages, and point
//! selects whose results the connection hands back to its session.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::types::Type;
use postgres::{Client, NoTls, SimpleQueryMessage};
use pydb::Db;
use pydb_server::pg::{PgConfig, PgServer, PgShutdownHandle};

/// A PostgreSQL listener on an ephemeral loopback port over a memory
/// database, shut down when dropped.
struct Running {
    addr: SocketAddr,
    stop: PgShutdownHandle,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    fn start(password: Option<&str>) -> Self {
        Running::serve(Db::memory().unwrap(), password)
    }

    /// A listener over `db`.
    fn serve(db: Db, password: Option<&str>) -> Self {
        let mut config = PgConfig::new("127.0.0.1:0".parse().unwrap());
        config.password = password.map(str::to_owned);
        config.max_message_bytes = 1 << 20;
        let server = PgServer::bind(db, config).unwrap();
        let addr = server.local_addr();
        let stop = server.shutdown_handle();
        let thread = std::thread::spawn(move || server.run().unwrap());
        Running {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn params(&self, password: Option<&str>) -> String {
        let mut params = format!(
            "host={} port={} user=student dbname=pydb connect_timeout=10",
            self.addr.ip(),
            self.addr.port()
        );
        if let Some(password) = password {
            params.push_str(&format!(" password={password}"));
        }
        params
    }

    fn client(&self) -> Client {
        Client::connect(&self.params(None), NoTls).unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The rows of a simple query, as text.
fn simple_rows(client: &mut Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn code(e: &postgres::Error) -> &SqlState {
    e.code()
        .unwrap_or_else(|| panic!("no SQLSTATE in error: {e:?}"))
}

#[test]
fn simple_queries_with_several_statements() {
    let server = Running::start(None);
    let mut client = server.client();
    let messages = client
        .simple_query(
            "CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT, c REAL, d BOOLEAN); \
             INSERT INTO t VALUES (1, 'one', 1.5, TRUE), (2, NULL, -2, FALSE); \
             UPDATE t SET b = 'two' WHERE a = 2; DELETE FROM t WHERE a = 7",
        )
        .unwrap();
    let counts: Vec<u64> = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect();
    // CREATE TABLE, INSERT 0 2, UPDATE 1, DELETE 0.
    assert_eq!(counts, vec![0, 2, 1, 0]);
    assert_eq!(
        simple_rows(&mut client, "SELECT a, b, c, d FROM t ORDER BY a"),
        vec![
            vec![
                Some("1".into()),
                Some("one".into()),
                Some("1.5".into()),
                Some("t".into())
            ],
            vec![
                Some("2".into()),
                Some("two".into()),
                Some("-2".into()),
                Some("f".into())
            ],
        ]
    );
    // The empty query, and a statement that is only a comment.
    // (The driver reports EmptyQueryResponse as "0 rows"; see
    // `raw_simple_query_message_flow` for the bytes.)
    for empty in ["", "  ;  "] {
        let messages = client.simple_query(empty).unwrap();
        assert!(
            matches!(messages[..], [SimpleQueryMessage::CommandComplete(0)]),
            "{empty:?}: {messages:?}"
        );
    }
}

#[test]
fn prepared_statements_with_typed_parameters_and_binary_results() {
    let server = Running::start(None);
    let mut client = server.client();
    client
        .batch_execute("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT, f REAL)")
        .unwrap();
    let insert = client
        .prepare_typed(
            "INSERT INTO kv VALUES ($1, $2, $3)",
            &[Type::INT8, Type::TEXT, Type::FLOAT8],
        )
        .unwrap();
    assert_eq!(insert.params(), &[Type::INT8, Type::TEXT, Type::FLOAT8]);
    assert!(insert.columns().is_empty());
    for k in 1..=5i64 {
        let n = client
            .execute(&insert, &[&k, &format!("v{k}"), &(k as f64 / 2.0)])
            .unwrap();
        assert_eq!(n, 1);
    }
    let select = client
        .prepare_typed(
            "SELECT k, v, f FROM kv WHERE k >= $1 ORDER BY k",
            &[Type::INT8],
        )
        .unwrap();
    let names: Vec<(&str, &Type)> = select
        .columns()
        .iter()
        .map(|c| (c.name(), c.type_()))
        .collect();
    assert_eq!(
        names,
        vec![("k", &Type::INT8), ("v", &Type::TEXT), ("f", &Type::FLOAT8)]
    );
    let rows = client.query(&select, &[&4i64]).unwrap();
    let got: Vec<(i64, String, f64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(got, vec![(4, "v4".into(), 2.0), (5, "v5".into(), 2.5)]);
    // Untyped parameters are text; NULL goes through.
    let row = client
        .query_one("SELECT v FROM kv WHERE v = $1", &[&"v3"])
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "v3");
    let row = client
        .query_one("SELECT COUNT(*) FROM kv WHERE v = $1", &[&None::<String>])
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0);
    // A statement of two commands cannot be prepared.
    let e = client.prepare("SELECT 1; SELECT 2").unwrap_err();
    assert_eq!(code(&e), &SqlState::SYNTAX_ERROR);
}

#[test]
fn transactions_report_their_status_and_roll_back() {
    let server = Running::start(None);
    let mut client = server.client();
    client
        .batch_execute("CREATE TABLE t (a INTEGER PRIMARY KEY)")
        .unwrap();
    let mut tx = client.transaction().unwrap();
    tx.execute("INSERT INTO t VALUES (1)", &[]).unwrap();
    tx.rollback().unwrap();
    let mut tx = client.transaction().unwrap();
    tx.execute("INSERT INTO t VALUES (2)", &[]).unwrap();
    tx.commit().unwrap();
    assert_eq!(
        simple_rows(&mut client, "SELECT a FROM t"),
        vec![vec![Some("2".into())]]
    );
    // A failed statement fails the transaction: 25P02 until ROLLBACK,
    // and COMMIT rolls it back.
    client
        .batch_execute("BEGIN; INSERT INTO t VALUES (3)")
        .unwrap();
    let e = client.batch_execute("SELECT * FROM missing").unwrap_err();
    assert_eq!(code(&e), &SqlState::UNDEFINED_TABLE);
    let e = client.batch_execute("SELECT 1").unwrap_err();
    assert_eq!(code(&e), &SqlState::IN_FAILED_SQL_TRANSACTION);
    client.batch_execute("COMMIT").unwrap();
    assert_eq!(
        simple_rows(&mut client, "SELECT COUNT(*) FROM t"),
        vec![vec![Some("1".into())]]
    );
}

#[test]
fn errors_carry_their_sqlstate_and_position() {
    let server = Running::start(None);
    let mut client = server.client();
    let e = client.batch_execute("SELECT 1 FROM WHERE").unwrap_err();
    assert_eq!(code(&e), &SqlState::SYNTAX_ERROR);
    let db = e.as_db_error().unwrap();
    assert_eq!(db.severity(), "ERROR");
    assert!(
        matches!(
            db.position(),
            Some(postgres::error::ErrorPosition::Original(15))
        ),
        "{:?}",
        db.position()
    );
    let e = client.query("SELECT * FROM nowhere", &[]).unwrap_err();
    assert_eq!(code(&e), &SqlState::UNDEFINED_TABLE);
    client
        .batch_execute("CREATE TABLE u (a INTEGER PRIMARY KEY); INSERT INTO u VALUES (1)")
        .unwrap();
    let e = client.execute("INSERT INTO u VALUES (1)", &[]).unwrap_err();
    assert_eq!(code(&e), &SqlState::UNIQUE_VIOLATION);
    // The connection goes on after errors (skip until Sync, then ready).
    assert_eq!(
        simple_rows(&mut client, "SELECT a FROM u"),
        vec![vec![Some("1".into())]]
    );
}

#[test]
fn concurrent_updates_fail_with_serialization_failure() {
    let server = Running::start(None);
    let mut a = server.client();
    let mut b = server.client();
    a.batch_execute(
        "CREATE TABLE c (k INTEGER PRIMARY KEY, n INTEGER); INSERT INTO c VALUES (1, 0)",
    )
    .unwrap();
    a.batch_execute("BEGIN; UPDATE c SET n = n + 1 WHERE k = 1")
        .unwrap();
    b.batch_execute("BEGIN").unwrap();
    let b_update = b.batch_execute("UPDATE c SET n = n + 10 WHERE k = 1");
    a.batch_execute("COMMIT").unwrap();
    let b_outcome = b_update.and_then(|()| b.batch_execute("COMMIT"));
    let e = b_outcome.unwrap_err();
    assert_eq!(code(&e), &SqlState::T_R_SERIALIZATION_FAILURE);
    let _ = b.batch_execute("ROLLBACK");
    assert_eq!(
        simple_rows(&mut b, "SELECT n FROM c"),
        vec![vec![Some("1".into())]]
    );
}

/// Under strict two-phase locking (`Concurrency::Locking`), two
/// transactions that each hold a row the other then updates wait for each
/// other: the lock manager finds the cycle in its waits-for graph and
/// aborts the youngest, whose client sees SQLSTATE 40P01
/// (`deadlock_detected`); the other one goes on and commits.
#[test]
fn a_deadlock_under_two_phase_locking_reports_40p01() {
    let options = pydb::Options {
        concurrency: pydb::Concurrency::Locking,
        ..pydb::Options::with_engine(pydb::EngineKind::Memory)
    };
    let engine = std::sync::Arc::new(pydb_storage::MemoryStorage::new());
    let server = Running::serve(Db::from_engine(engine, None, options).unwrap(), None);
    let mut a = server.client();
    let mut b = server.client();
    a.batch_execute(
        "CREATE TABLE d (k INTEGER PRIMARY KEY, n INTEGER); INSERT INTO d VALUES (1, 0), (2, 0)",
    )
    .unwrap();
    // a is older: it began first.
    a.batch_execute("BEGIN; UPDATE d SET n = 1 WHERE k = 1")
        .unwrap();
    b.batch_execute("BEGIN; UPDATE d SET n = 2 WHERE k = 2")
        .unwrap();
    // a waits for b's row...
    let waiter = std::thread::spawn(move || {
        let outcome = a.batch_execute("UPDATE d SET n = 1 WHERE k = 2");
        (a, outcome)
    });
    std::thread::sleep(Duration::from_millis(200));
    // ...and b for a's: a cycle. b, the younger, is the victim.
    let e = b
        .batch_execute("UPDATE d SET n = 2 WHERE k = 1")
        .unwrap_err();
    assert_eq!(code(&e), &SqlState::T_R_DEADLOCK_DETECTED, "{e:?}");
    b.batch_execute("ROLLBACK").unwrap();
    let (mut a, outcome) = waiter.join().unwrap();
    outcome.unwrap();
    a.batch_execute("COMMIT").unwrap();
    assert_eq!(
        simple_rows(&mut b, "SELECT n FROM d ORDER BY k"),
        vec![vec![Some("1".into())], vec![Some("1".into())]]
    );
}

/// EXPLAIN and EXPLAIN ANALYZE answer one text column, QUERY PLAN, one row
/// per line, through the protocol.
#[test]
fn explain_and_explain_analyze_return_the_plan_as_rows() {
    let server = Running::start(None);
    let mut client = server.client();
    client
        .batch_execute("CREATE TABLE e (k INTEGER PRIMARY KEY, v TEXT); INSERT INTO e VALUES (1, 'a'), (2, 'b')")
        .unwrap();
    let plan = client
        .query("EXPLAIN SELECT v FROM e WHERE k = 2", &[])
        .unwrap();
    assert_eq!(plan[0].columns()[0].name(), "QUERY PLAN");
    let lines: Vec<String> = plan.iter().map(|r| r.get(0)).collect();
    assert!(
        lines[0].starts_with("Primary Key Lookup on e  (cost="),
        "{lines:?}"
    );
    let lines: Vec<String> = simple_rows(&mut client, "EXPLAIN ANALYZE SELECT v FROM e")
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert!(lines[0].starts_with("Seq Scan on e  (cost="), "{lines:?}");
    assert!(lines[0].contains("rows=2 loops=1)"), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("Execution Time: ")),
        "{lines:?}"
    );
}

#[test]
fn portals_send_rows_in_batches() {
    let server = Running::start(None);
    let mut client = server.client();
    client.batch_execute("CREATE TABLE n (i INTEGER)").unwrap();
    let insert = client
        .prepare_typed("INSERT INTO n VALUES ($1)", &[Type::INT8])
        .unwrap();
    for i in 0..7i64 {
        client.execute(&insert, &[&i]).unwrap();
    }
    let mut tx = client.transaction().unwrap();
    let portal = tx.bind("SELECT i FROM n ORDER BY i", &[]).unwrap();
    let mut seen = Vec::new();
    loop {
        let batch = tx.query_portal(&portal, 3).unwrap();
        assert!(batch.len() <= 3);
        if batch.is_empty() {
            break;
        }
        seen.extend(batch.iter().map(|r| r.get::<_, i64>(0)));
    }
    assert_eq!(seen, (0..7).collect::<Vec<i64>>());
    tx.commit().unwrap();
}

/// A row of `kv`: key, TEXT or NULL, integer.
type KvRow = (i64, Option<String>, i64);

/// The value of row `k` after `round` rounds of updates: TEXT of the same
/// length as the last round's (a kept allocation must not keep its old
/// bytes), of another length, or NULL.
fn point_value(k: i64, round: i64) -> (Option<String>, i64) {
    let v = match (k + round) % 4 {
        0 => None,
        1 => Some(format!("r{round}-{k}")),
        2 => Some(format!("{}-{k}", "x".repeat(round as usize + 1))),
        _ => Some(format!("R{round}-{k}")),
    };
    (v, k * 1000 + round)
}

/// Runs point selects by key over `kv` (keys 0..40, odd keys over 30
/// missing) after each round of updates, with a range select and a
/// select of other columns in between, through `point`; every answer must
/// be the model's. `point(client, k)` returns the rows for key `k`.
fn check_point_selects(client: &mut Client, point: &mut dyn FnMut(&mut Client, i64) -> Vec<KvRow>) {
    client
        .batch_execute("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT, n INTEGER)")
        .unwrap();
    let insert = client
        .prepare_typed("INSERT INTO kv VALUES ($1, NULL, 0)", &[Type::INT8])
        .unwrap();
    let update = client
        .prepare_typed(
            "UPDATE kv SET v = $1, n = $2 WHERE k = $3",
            &[Type::TEXT, Type::INT8, Type::INT8],
        )
        .unwrap();
    let range = client
        .prepare_typed(
            "SELECT n, k FROM kv WHERE k >= $1 AND k < $2",
            &[Type::INT8, Type::INT8],
        )
        .unwrap();
    let keys: Vec<i64> = (0..40).filter(|k| *k <= 30 || k % 2 == 0).collect();
    for &k in &keys {
        client.execute(&insert, &[&k]).unwrap();
    }
    for round in 0..5i64 {
        for &k in &keys {
            let (v, n) = point_value(k, round);
            client.execute(&update, &[&v, &n, &k]).unwrap();
        }
        for step in 0..40i64 {
            // Every key once a round, in an order that changes by round.
            let k = (step * 7 + round * 3) % 40;
            let expected: Vec<KvRow> = if keys.contains(&k) {
                let (v, n) = point_value(k, round);
                vec![(k, v, n)]
            } else {
                Vec::new()
            };
            assert_eq!(point(client, k), expected, "key {k}, round {round}");
            if step % 9 == 0 {
                // Results of other shapes, handed back too.
                let rows = client.query(&range, &[&k, &(k + 3)]).unwrap();
                assert!(rows.len() <= 3);
                for row in rows {
                    let (n, key): (i64, i64) = (row.get(0), row.get(1));
                    assert_eq!(n, point_value(key, round).1);
                }
                let count = client.query_one("SELECT COUNT(*) FROM kv", &[]).unwrap();
                assert_eq!(count.get::<_, i64>(0), keys.len() as i64);
            }
        }
    }
}

#[test]
fn prepared_point_selects_with_changing_results_send_the_right_rows() {
    let server = Running::start(None);
    let mut client = server.client();
    let select = std::cell::OnceCell::new();
    check_point_selects(&mut client, &mut |client, k| {
        let select = select.get_or_init(|| {
            client
                .prepare_typed("SELECT k, v, n FROM kv WHERE k = $1", &[Type::INT8])
                .unwrap()
        });
        client
            .query(select, &[&k])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    });
}

#[test]
fn simple_point_selects_with_changing_results_send_the_right_rows() {
    let server = Running::start(None);
    let mut client = server.client();
    check_point_selects(&mut client, &mut |client, k| {
        simple_rows(client, &format!("SELECT k, v, n FROM kv WHERE k = {k}"))
            .into_iter()
            .map(|row| {
                let int = |cell: &Option<String>| cell.as_deref().unwrap().parse::<i64>().unwrap();
                (int(&row[0]), row[1].clone(), int(&row[2]))
            })
            .collect()
    });
}

#[test]
fn scram_password_is_required_and_checked() {
    let server = Running::start(Some("sesame"));
    let mut client = Client::connect(&server.params(Some("sesame")), NoTls).unwrap();
    assert_eq!(
        simple_rows(&mut client, "SELECT 1"),
        vec![vec![Some("1".into())]]
    );
    let e = Client::connect(&server.params(Some("wrong")), NoTls)
        .err()
        .unwrap();
    assert_eq!(code(&e), &SqlState::INVALID_PASSWORD);
    assert!(Client::connect(&server.params(None), NoTls).is_err());
}

/// Reads one backend message: its type and body.
fn read_message(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut header = [0u8; 5];
    stream.read_exact(&mut header).unwrap();
    let len = i32::from_be_bytes(header[1..].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len - 4];
    stream.read_exact(&mut body).unwrap();
    (header[0], body)
}

#[test]
fn a_cancel_request_stops_a_query_sending_rows() {
    let server = Running::start(None);
    let mut client = server.client();
    client.batch_execute("CREATE TABLE w (s TEXT)").unwrap();
    let wide = "x".repeat(2000);
    let insert = client.prepare("INSERT INTO w VALUES ($1)").unwrap();
    for _ in 0..200 {
        client.execute(&insert, &[&wide]).unwrap();
    }
    // A raw connection that sends a query of 40,000 rows of 4 KB, far
    // more than the socket buffers hold, and does not read: the server
    // blocks writing them.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(&startup_bytes()).unwrap();
    let key = loop {
        let (tag, body) = read_message(&mut stream);
        if tag == b'K' {
            break body;
        }
        assert_ne!(tag, b'E');
    };
    assert_eq!(read_message(&mut stream).0, b'Z');
    let sql = b"SELECT a.s, b.s FROM w a, w b\0";
    let mut query = vec![b'Q'];
    query.extend_from_slice(&((sql.len() + 4) as i32).to_be_bytes());
    query.extend_from_slice(sql);
    stream.write_all(&query).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // The cancel request, on a new connection, with the key.
    let mut cancel = TcpStream::connect(server.addr).unwrap();
    let mut request = 16i32.to_be_bytes().to_vec();
    request.extend_from_slice(&80_877_102i32.to_be_bytes());
    request.extend_from_slice(&key);
    cancel.write_all(&request).unwrap();
    assert!(read_to_close(cancel).is_empty());
    let mut rows = 0;
    let error = loop {
        match read_message(&mut stream) {
            (b'D', _) => rows += 1,
            (b'T', _) => {}
            (b'E', body) => break String::from_utf8_lossy(&body).into_owned(),
            (tag, _) => panic!("unexpected message {}", tag as char),
        }
    };
    assert!(error.contains("57014"), "{error}");
    assert!(rows < 40_000, "{rows}");
    assert_eq!(read_message(&mut stream), (b'Z', vec![b'I']));
    // The data is intact.
    let mut client2 = server.client();
    assert_eq!(
        simple_rows(&mut client2, "SELECT COUNT(*) FROM w"),
        vec![vec![Some("200".into())]]
    );
}

/// Reads what the server sends until it closes the connection.
fn read_to_close(mut stream: TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).unwrap();
    got
}

fn startup_bytes() -> Vec<u8> {
    let mut body = 196_608i32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0student\0\0");
    let mut message = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    message.extend_from_slice(&body);
    message
}

#[test]
fn malformed_and_oversized_messages_get_an_error_and_a_close() {
    let server = Running::start(None);
    // An SSL request is answered 'N'; then a startup packet over the limit.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .unwrap();
    stream.write_all(&[0x7f, 0xff, 0xff, 0xff]).unwrap();
    let got = read_to_close(stream);
    assert_eq!(got[0], b'N');
    assert_eq!(got[1], b'E', "{got:?}");
    assert!(String::from_utf8_lossy(&got).contains("08P01"));

    // After a good startup: a message claiming 2 GB, then an unknown type.
    for bad in [
        vec![b'Q', 0x7f, 0xff, 0xff, 0xff],
        vec![b'?', 0, 0, 0, 4],
        vec![b'Q', 0, 0, 0, 2],
        vec![b'B', 0, 0, 0, 6, 0, 0],
    ] {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream.write_all(&startup_bytes()).unwrap();
        stream.write_all(&bad).unwrap();
        let got = read_to_close(stream);
        let text = String::from_utf8_lossy(&got);
        // AuthenticationOk ... ReadyForQuery, then the error.
        assert!(got.starts_with(&[b'R', 0, 0, 0, 8, 0, 0, 0, 0]), "{text}");
        assert!(text.contains("08P01"), "{bad:?}: {text}");
    }
    // The server goes on.
    let mut client = server.client();
    assert_eq!(
        simple_rows(&mut client, "SELECT 2"),
        vec![vec![Some("2".into())]]
    );
}

/// A Query message as bytes.
fn query_bytes(sql: &str) -> Vec<u8> {
    let mut query = vec![b'Q'];
    query.extend_from_slice(&((sql.len() + 5) as i32).to_be_bytes());
    query.extend_from_slice(sql.as_bytes());
    query.push(0);
    query
}

#[test]
fn raw_simple_query_message_flow() {
    let server = Running::start(None);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(&startup_bytes()).unwrap();
    let mut startup = Vec::new();
    loop {
        let (tag, body) = read_message(&mut stream);
        startup.push(tag);
        if tag == b'S' {
            let text = String::from_utf8_lossy(&body).into_owned();
            if text.starts_with("client_encoding") {
                assert_eq!(text, "client_encoding\0UTF8\0");
            }
        }
        if tag == b'Z' {
            assert_eq!(body, b"I");
            break;
        }
    }
    assert_eq!(startup[0], b'R');
    assert!(startup.contains(&b'K'));
    // Empty: EmptyQueryResponse, ReadyForQuery.
    stream.write_all(&query_bytes("")).unwrap();
    assert_eq!(read_message(&mut stream), (b'I', vec![]));
    assert_eq!(read_message(&mut stream), (b'Z', vec![b'I']));
    // Two statements: CommandComplete for each, then inside BEGIN the
    // status is 'T', and after a failed statement 'E'.
    stream
        .write_all(&query_bytes("CREATE TABLE t (a INTEGER); BEGIN"))
        .unwrap();
    assert_eq!(
        read_message(&mut stream),
        (b'C', b"CREATE TABLE\0".to_vec())
    );
    assert_eq!(read_message(&mut stream), (b'C', b"BEGIN\0".to_vec()));
    assert_eq!(read_message(&mut stream), (b'Z', vec![b'T']));
    stream
        .write_all(&query_bytes("INSERT INTO t VALUES (1), (2); SELEC"))
        .unwrap();
    assert_eq!(read_message(&mut stream).0, b'E');
    assert_eq!(read_message(&mut stream), (b'Z', vec![b'E']));
    stream.write_all(&query_bytes("ROLLBACK")).unwrap();
    assert_eq!(read_message(&mut stream), (b'C', b"ROLLBACK\0".to_vec()));
    assert_eq!(read_message(&mut stream), (b'Z', vec![b'I']));
    stream
        .write_all(&query_bytes(
            "INSERT INTO t VALUES (1), (2); SELECT a FROM t",
        ))
        .unwrap();
    assert_eq!(read_message(&mut stream), (b'C', b"INSERT 0 2\0".to_vec()));
    let (tag, description) = read_message(&mut stream);
    assert_eq!(tag, b'T');
    // One column "a" of type int8 (OID 20), 8 bytes, text format.
    assert_eq!(&description[..4], &[0, 1, b'a', 0]);
    assert_eq!(&description[10..14], &20u32.to_be_bytes());
    assert_eq!(
        read_message(&mut stream),
        (b'D', vec![0, 1, 0, 0, 0, 1, b'1'])
    );
    assert_eq!(
        read_message(&mut stream),
        (b'D', vec![0, 1, 0, 0, 0, 1, b'2'])
    );
    assert_eq!(read_message(&mut stream), (b'C', b"SELECT 2\0".to_vec()));
    assert_eq!(read_message(&mut stream), (b'Z', vec![b'I']));
    // Terminate closes.
    stream.write_all(&[b'X', 0, 0, 0, 4]).unwrap();
    assert!(read_to_close(stream).is_empty());
}
