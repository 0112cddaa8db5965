//! Guards `pydb sql` as a process: `-c` and `-f` print aligned tables, a pipe prints plain rows, errors carry a caret and set exit code 1, and tables survive a restart on every persistent engine.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use assert_cmd::Command;

fn pydb() -> Command {
    Command::new(assert_cmd::cargo::cargo_bin!("pydb"))
}

/// `pydb sql ARGS` with `stdin`, returning (exit code, stdout, stderr).
fn sql(args: &[&str], stdin: &str) -> (i32, String, String) {
    let out = pydb()
        .arg("sql")
        .args(args)
        .write_stdin(stdin)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn command_flag_prints_aligned_tables_and_survives_a_restart() {
    for engine in ["log", "btree", "lsm"] {
        let dir = tempfile::tempdir().unwrap();
        let dir_arg = dir.path().to_str().unwrap();
        let base = ["--dir", dir_arg, "--engine", engine];
        let (code, out, err) = sql(
            &[
                &base[..],
                &[
                    "-c",
                    "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT);\n\
                INSERT INTO t VALUES (1, 'one'), (22, NULL);",
                ],
            ]
            .concat(),
            "",
        );
        assert_eq!((code, err.as_str()), (0, ""), "{engine}");
        assert_eq!(out, "CREATE TABLE\nINSERT 0 2\n", "{engine}");

        let (code, out, err) = sql(
            &[
                &base[..],
                &["--command", "SELECT id, name FROM t ORDER BY id"],
            ]
            .concat(),
            "",
        );
        assert_eq!((code, err.as_str()), (0, ""), "{engine}");
        assert_eq!(
            out, " id | name\n----+------\n  1 | one\n 22 |\n(2 rows)\n\n",
            "{engine}"
        );
    }
}

#[test]
fn a_pipe_prints_plain_rows_and_errors_with_a_caret() {
    let (code, out, err) = sql(
        &["--engine", "memory"],
        "CREATE TABLE t(a INTEGER, b TEXT);\n\
         INSERT INTO t\n  VALUES (1, 'x'),\n  (2, 'y|z');\n\
         SELECT a, b FROM t ORDER BY a;\n\
         SELECT a FROM WHERE b;\n\
         SELECT count(*) FROM t;\n",
    );
    assert_eq!(code, 1, "a statement failed");
    assert_eq!(out, "1|x\n2|y|z\n2\n");
    assert_eq!(
        err,
        "ERROR:  syntax error: expected a table name, found keyword WHERE\n\
         line 1, column 15\nSELECT a FROM WHERE b\n              ^^^^^\n"
    );
}

#[test]
fn a_pipe_without_errors_exits_zero_and_meta_commands_work() {
    let (code, out, err) = sql(
        &["--engine", "memory"],
        "CREATE TABLE t1(id INTEGER PRIMARY KEY);\n\\dt\n\\q\nSELECT 1;\n",
    );
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        " Name | Type\n------+-------\n t1   | table\n(1 row)\n\n"
    );
}

#[test]
fn file_flag_runs_a_script() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        "-- a comment\nCREATE TABLE t(a INTEGER);\nINSERT INTO t VALUES (5);\n\
         UPDATE t SET a = a + 1;\nSELECT a FROM t;\nDELETE FROM t;\n",
    )
    .unwrap();
    let (code, out, err) = sql(&["--engine", "memory", "-f", script.to_str().unwrap()], "");
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        "CREATE TABLE\nINSERT 0 1\nUPDATE 1\n a\n---\n 6\n(1 row)\n\nDELETE 1\n"
    );
}

#[test]
fn bad_arguments_exit_two() {
    let (code, ..) = sql(&["--engine", "memory", "-c", "SELECT 1", "-f", "x.sql"], "");
    assert_eq!(code, 2, "-c and -f conflict");
    let (code, _, err) = sql(&["--engine", "memory", "-f", "/nonexistent/x.sql"], "");
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/x.sql"), "{err}");
}
