//! Guards `pydb server --pg-bind`: PostgreSQL clients beside Redis ones on
//! one database, --pg-only, protected mode, acknowledged SQL commits
//! surviving kill -9, and a clean SIGTERM.

#![allow(clippy::unwrap_used)]

mod server_support;

use std::process::Command;

use postgres::{Client, NoTls, SimpleQueryMessage};
use server_support::Server;

fn pg(server: &Server, password: Option<&str>) -> Client {
    let addr = server.pg_addr.unwrap();
    let mut params = format!(
        "host={} port={} user=test dbname=pydb connect_timeout=10",
        addr.ip(),
        addr.port()
    );
    if let Some(password) = password {
        params.push_str(&format!(" password={password}"));
    }
    Client::connect(&params, NoTls).unwrap()
}

fn one_value(client: &mut Client, sql: &str) -> String {
    client
        .simple_query(sql)
        .unwrap()
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap()
}

#[test]
fn sql_and_redis_clients_share_one_server_and_sigterm_stops_both() {
    let mut server = Server::start(&["--pg-bind", "127.0.0.1:0"]);
    let mut sql = pg(&server, None);
    sql.batch_execute(
        "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a')",
    )
    .unwrap();
    assert_eq!(one_value(&mut sql, "SELECT v FROM t WHERE k = 1"), "a");
    // The Redis side answers meanwhile (SQL rows live in their own keyspace).
    let mut redis = server.redis();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut redis)
        .unwrap();
    let n: u64 = redis::cmd("DBSIZE").query(&mut redis).unwrap();
    assert_eq!(n, 1);
    server.signal("TERM");
    assert!(server.wait().success());
}

#[test]
fn acknowledged_sql_commits_survive_kill9_and_pg_only_serves_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mut server = Server::start_in(&db, &["--pg-only", "--pg-bind", "127.0.0.1:0"]);
    let mut sql = pg(&server, None);
    sql.batch_execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
        .unwrap();
    let insert = sql
        .prepare_typed("INSERT INTO t VALUES ($1)", &[postgres::types::Type::INT8])
        .unwrap();
    for k in 0..20i64 {
        sql.execute(&insert, &[&k]).unwrap();
    }
    let mut tx = sql.transaction().unwrap();
    tx.execute("INSERT INTO t VALUES (100)", &[]).unwrap();
    tx.commit().unwrap();
    server.kill9();
    let mut server = Server::start_in(&db, &["--pg-only", "--pg-bind", "127.0.0.1:0"]);
    let mut sql = pg(&server, Some("ignored"));
    assert_eq!(one_value(&mut sql, "SELECT COUNT(*) FROM t"), "21");
    server.signal("TERM");
    assert!(server.wait().success());
}

#[test]
fn a_public_pg_bind_needs_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let out = Command::new(env!("CARGO_BIN_EXE_pydb"))
        .args(["server", "--pg-only", "--pg-bind", "0.0.0.0:0", "--dir"])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("without --requirepass"), "{stderr}");
    assert!(!db.exists(), "the database was opened before the check");
    // With a password it starts, and the password is required.
    let server = Server::start(&["--pg-only", "--pg-bind", "0.0.0.0:0", "--requirepass", "pw"]);
    let port = server.pg_addr.unwrap().port();
    let connect = |password: &str| {
        Client::connect(
            &format!("host=127.0.0.1 port={port} user=u password={password} connect_timeout=10"),
            NoTls,
        )
    };
    assert!(connect("wrong").is_err());
    let mut sql = connect("pw").unwrap();
    assert_eq!(one_value(&mut sql, "SELECT 40 + 2"), "42");
}
