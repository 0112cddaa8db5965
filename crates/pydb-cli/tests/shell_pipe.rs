//! Guards `pydb shell` driven by a program through a pipe: every command, quoting, error replies, one flushed reply per command, no prompt or banner, and data surviving a restart.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::{Shell, persistent_engines};

/// Runs every command once against a shell started with `args`.
fn exercise(args: &[&str]) {
    let mut shell = Shell::spawn(args);
    // No banner, no prompt: the first line out is the first reply.
    assert_eq!(shell.call("PING"), "PONG");
    assert_eq!(shell.call("ping \"hello world\""), "\"hello world\"");

    // SET / GET, names in any case.
    assert_eq!(shell.call("SET k v"), "OK");
    assert_eq!(shell.call("get k"), "\"v\"");
    assert_eq!(shell.call("GeT missing"), "(nil)");

    // Quoting: double quotes with escapes, single quotes, binary values.
    assert_eq!(shell.call(r#"set "a key" "line\nbreak \"q\" \\""#), "OK");
    assert_eq!(shell.call(r#"get "a key""#), r#""line\nbreak \"q\" \\""#);
    assert_eq!(shell.call(r"set 'it\'s' 'no \n escape'"), "OK");
    assert_eq!(shell.call(r#"get "it's""#), r#""no \\n escape""#);
    assert_eq!(shell.call(r#"set bin "\x00\xff\x41""#), "OK");
    assert_eq!(shell.call("get bin"), r#""\x00\xffA""#);

    // Errors, and the shell goes on after each of them.
    assert_eq!(
        shell.call("foo bar"),
        "(error) ERR unknown command 'foo', with args beginning with: 'bar' "
    );
    assert_eq!(
        shell.call("GET"),
        "(error) ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        shell.call("set k"),
        "(error) ERR wrong number of arguments for 'set' command"
    );
    assert_eq!(
        shell.call("set \"unclosed v"),
        "(error) ERR Protocol error: unbalanced quotes in request"
    );
    assert_eq!(
        shell.call("set 'a'b v"),
        "(error) ERR Protocol error: unbalanced quotes in request"
    );
    assert_eq!(
        shell.call("mset a"),
        "(error) ERR wrong number of arguments for 'mset' command"
    );
    assert_eq!(shell.call("get k"), "\"v\"");

    // A blank line has no reply.
    shell.send("");
    shell.send("   ");
    assert_eq!(shell.call("ping"), "PONG");

    // DEL / EXISTS count.
    assert_eq!(shell.call("MSET x 1 y 2 z 3"), "OK");
    assert_eq!(shell.call("EXISTS x y nope x"), "(integer) 3");
    assert_eq!(shell.call("DEL x nope x"), "(integer) 1");
    assert_eq!(shell.call("exists x"), "(integer) 0");

    // MGET replies with an array, one element per line.
    shell.send("MGET y nope z");
    assert_eq!(shell.read_lines(3), "1) \"2\"\n2) (nil)\n3) \"3\"\n");

    // Keys now: "a key", bin, it's, k, y, z.
    assert_eq!(shell.call("DBSIZE"), "(integer) 6");
    shell.send("RANGE k +");
    assert_eq!(
        shell.read_lines(6),
        "1) \"k\"\n2) \"v\"\n3) \"y\"\n4) \"2\"\n5) \"z\"\n6) \"3\"\n"
    );
    shell.send("range - + LIMIT 2");
    assert_eq!(
        shell.read_lines(4),
        "1) \"a key\"\n2) \"line\\nbreak \\\"q\\\" \\\\\"\n3) \"bin\"\n4) \"\\x00\\xffA\"\n"
    );
    assert_eq!(shell.call("range y y"), "(empty array)");
    assert_eq!(
        shell.call("RANGE a b LIMIT -1"),
        "(error) ERR value is not an integer or out of range"
    );

    assert_eq!(shell.call("COMPACT"), "OK");
    assert_eq!(shell.call("get z"), "\"3\"");

    // STATS and HELP are arrays of unknown length: read up to a PONG.
    shell.send("STATS");
    shell.send("PING");
    let mut stats = Vec::new();
    loop {
        let line = shell.read_line();
        if line == "PONG" {
            break;
        }
        stats.push(line);
    }
    // Indexes are padded to the widest one: " 1)" once there are ten.
    assert_eq!(stats[0].trim_start(), "1) \"engine\"");
    assert!(
        stats.iter().any(|l| l.ends_with(") \"live_keys\"")),
        "{stats:?}"
    );
    assert!(stats.len() >= 2 && stats.len() % 2 == 0, "{stats:?}");

    shell.send("help");
    shell.send("PING");
    let mut help = Vec::new();
    loop {
        let line = shell.read_line();
        if line == "PONG" {
            break;
        }
        help.push(line);
    }
    for command in [
        "SET", "GET", "DEL", "EXISTS", "MSET", "MGET", "DBSIZE", "PING", "RANGE", "COMPACT",
        "STATS", "QUIT",
    ] {
        assert!(
            help.iter().any(|l| l.contains(&format!(") {command}"))),
            "HELP does not list {command}: {help:?}"
        );
    }
    shell.quit();
}

#[test]
fn memory_engine_answers_every_command() {
    exercise(&["--engine", "memory"]);
}

#[test]
fn persistent_engines_answer_every_command_and_keep_data_across_restarts() {
    for engine in persistent_engines() {
        let dir = tempfile::tempdir().unwrap();
        let dir_arg = dir.path().join("db");
        let dir_arg = dir_arg.to_str().unwrap();
        let mut args = vec!["--dir", dir_arg];
        args.extend(&engine);
        exercise(&args);

        let mut shell = Shell::spawn(&args);
        assert_eq!(shell.call("get k"), "\"v\"", "{engine:?}");
        assert_eq!(shell.call("get x"), "(nil)", "{engine:?}");
        assert_eq!(shell.call("dbsize"), "(integer) 6", "{engine:?}");
        // EXIT works like QUIT.
        shell.send("EXIT");
        shell.close_input();

        // End of input ends the shell too, and the data stays.
        let mut shell = Shell::spawn(&args);
        assert_eq!(shell.call("get y"), "\"2\"", "{engine:?}");
        shell.close_input();
    }
}

#[test]
fn dir_defaults_to_pydb_data_in_the_working_directory() {
    let cwd = tempfile::tempdir().unwrap();
    let output = assert_cmd::Command::new(common::pydb_bin())
        .current_dir(cwd.path())
        .args(["shell"])
        .write_stdin("set k v\nget k\n")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(String::from_utf8(output).unwrap(), "OK\n\"v\"\n");
    assert!(cwd.path().join("pydb-data").join("PYDB").is_file());
}

#[test]
fn a_directory_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let assert = assert_cmd::Command::new(common::pydb_bin())
        .args(["shell", "--dir"])
        .arg(dir.path())
        .write_stdin("set k v\n")
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(stderr.contains("is not a pydb database"), "{stderr}");
    assert!(assert.get_output().stdout.is_empty());
    // Nothing was written into it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn bad_options_are_refused_with_a_message() {
    let assert = assert_cmd::Command::new(common::pydb_bin())
        .args(["shell", "--engine", "trie"])
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(stderr.contains("unknown engine 'trie'"), "{stderr}");
}
