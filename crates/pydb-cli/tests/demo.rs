//! Guards the demo that `cargo run` shows: the three lines of the original pydb, then the value surviving a close and reopen.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

fn demo_output(args: &[&str]) -> String {
    let output = assert_cmd::Command::new(common::pydb_bin())
        .args(args)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    String::from_utf8(output).unwrap()
}

fn assert_demo(out: &str) {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.get(..3),
        Some(&["SET: hello = world", "SET: hello = all", "GET: hello = all"][..]),
        "{out}"
    );
    assert!(
        lines.contains(&"GET after reopen: hello = all"),
        "the value did not survive the reopen:\n{out}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("stats (log engine)")),
        "{out}"
    );
}

#[test]
fn no_arguments_runs_the_demo() {
    assert_demo(&demo_output(&[]));
}

#[test]
fn demo_subcommand_runs_the_demo() {
    assert_demo(&demo_output(&["demo"]));
}
