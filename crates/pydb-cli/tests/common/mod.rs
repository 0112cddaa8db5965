//! Helpers shared by the tests that drive the `pydb` binary as a process.

#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "shared by several test crates; a test fails by panicking"
)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

/// How long a reply may take before the test fails instead of hanging: a
/// shell that does not flush each reply would block the test forever.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// The path of the `pydb` binary under test.
pub fn pydb_bin() -> &'static Path {
    assert_cmd::cargo::cargo_bin!("pydb")
}

/// The persistent engine configurations every shell test runs against, as
/// `pydb shell` arguments.
pub fn persistent_engines() -> Vec<Vec<&'static str>> {
    vec![
        vec!["--engine", "log", "--index", "hash"],
        vec!["--engine", "log", "--index", "btree"],
        vec!["--engine", "log", "--index", "skiplist"],
        vec!["--engine", "btree"],
    ]
}

/// A `pydb shell` process driven through pipes, one line at a time.
pub struct Shell {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Shell {
    /// Starts `pydb shell` with `args`.
    pub fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(pydb_bin())
            .arg("shell")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn pydb shell");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        // A reader thread, so that a missing reply times out instead of
        // blocking the test.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            lines: rx,
        }
    }

    /// Writes one command line (a newline is added).
    pub fn send(&mut self, line: &str) {
        self.send_bytes(line.as_bytes());
    }

    /// Writes one command line of raw bytes (a newline is added).
    pub fn send_bytes(&mut self, line: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// The next output line, failing the test if none comes in time.
    pub fn read_line(&mut self) -> String {
        match self.lines.recv_timeout(REPLY_TIMEOUT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("no reply within {REPLY_TIMEOUT:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the shell closed its output"),
        }
    }

    /// The next `n` output lines joined with `\n` endings.
    pub fn read_lines(&mut self, n: usize) -> String {
        let mut out = String::new();
        for _ in 0..n {
            out.push_str(&self.read_line());
            out.push('\n');
        }
        out
    }

    /// Sends `line` and returns the one-line reply.
    pub fn call(&mut self, line: &str) -> String {
        self.send(line);
        self.read_line()
    }

    /// Sends `QUIT` and waits for the process to exit successfully, with
    /// nothing more printed.
    pub fn quit(mut self) {
        self.send("QUIT");
        self.stdin.take();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "shell exited with {status}");
        assert!(
            self.lines.recv_timeout(REPLY_TIMEOUT).is_err(),
            "output after QUIT"
        );
    }

    /// Closes stdin (end of input) and waits for a successful exit.
    pub fn close_input(mut self) {
        self.stdin.take();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "shell exited with {status}");
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        self.stdin.take();
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
