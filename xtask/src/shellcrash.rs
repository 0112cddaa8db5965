//! `cargo xtask crashtest --target shell`: kill `pydb shell --sync always`
//! mid-stream, many times, and check that every SET it answered `OK` to is
//! there after a restart, and nothing that was never sent.
//!
//! This drives the real binary exactly as a user's program would: commands
//! down a pipe, one reply per line back. A reply of `OK` is the
//! acknowledgement; the kill can land anywhere, including between the engine
//! acknowledging a write and the shell printing `OK` (then the write may or
//! may not be there, and both are accepted).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::crashtest::{CrashArgs, Rng};

/// Keys the driver writes (few, so that they are overwritten often).
const KEYS: u64 = 64;

struct Shell {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Shell {
    fn start(pydb: &Path, dir: &Path, engine: &str) -> Result<Self, String> {
        let mut child = Command::new(pydb)
            .args(["shell", "--sync", "always", "--engine", engine, "--dir"])
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", pydb.display()))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(Self {
            child,
            stdin,
            stdout,
        })
    }

    /// Sends one command and reads its one-line reply; `None` once the
    /// shell is gone.
    fn call(&mut self, line: &str) -> Option<String> {
        writeln!(self.stdin, "{line}").ok()?;
        self.stdin.flush().ok()?;
        let mut reply = String::new();
        match self.stdout.read_line(&mut reply) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(reply.trim_end_matches(['\r', '\n']).to_string()),
        }
    }
}

/// Runs the shell crash rounds; prints the same summary line as the engine
/// crash test.
pub fn run(args: &CrashArgs, pydb: &Path) -> Result<(), String> {
    let root: PathBuf = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("pydb-shellcrash-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let dir = root.join("db");
    let started = Instant::now();
    let mut rng = Rng::new(args.seed);
    // What every key must hold: the last acknowledged value, or (for the
    // one write in flight at the kill) the value sent.
    let mut model: BTreeMap<String, String> = BTreeMap::new();
    let (mut checked, mut lost, mut phantom, mut failed_opens, mut rounds) = (0u64, 0, 0, 0, 0);
    for round in 0..args.iterations {
        if args.duration > 0 && started.elapsed() > Duration::from_secs(args.duration) {
            break;
        }
        rounds += 1;
        let mut shell = Shell::start(pydb, &dir, &args.engine)?;
        // Verify what the previous round left, through the shell itself.
        let mut opened = true;
        for (key, expected) in &model {
            checked += 1;
            match shell.call(&format!("GET {key}")) {
                Some(reply) if reply == format!("\"{expected}\"") => {}
                Some(reply) if reply.starts_with("(error)") => {
                    eprintln!("round {round}: GET {key} failed: {reply}");
                    opened = false;
                    break;
                }
                Some(reply) => {
                    eprintln!("round {round}: LOST {key}: expected \"{expected}\", got {reply}");
                    lost += 1;
                }
                None => {
                    opened = false;
                    break;
                }
            }
        }
        if !opened {
            eprintln!("round {round}: FAILED to open or read the database");
            failed_opens += 1;
            let _ = shell.child.kill();
            let _ = shell.child.wait();
            break;
        }
        // Write until the kill lands. The kill comes from another thread at
        // a random moment, so it can hit anywhere in a SET.
        let kill_after = Duration::from_millis(5 + rng.below(args.max_kill_ms.max(1)));
        let pid = shell.child.id();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(kill_after);
            // SIGKILL by pid: the parent still owns the Child and reaps it.
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        });
        let mut in_flight: Option<(String, String)> = None;
        for op in 0u64.. {
            let key = format!("k{}", rng.below(KEYS));
            let value = format!("r{round}o{op}");
            in_flight = Some((key.clone(), value.clone()));
            match shell.call(&format!("SET {key} {value}")) {
                Some(reply) if reply == "OK" => {
                    model.insert(key, value);
                    in_flight = None;
                }
                Some(reply) => return Err(format!("round {round}: SET replied {reply}")),
                None => break,
            }
        }
        let _ = killer.join();
        let _ = shell.child.wait();
        // The write in flight may or may not have landed: read it back now
        // and adopt what is there if it is the sent value.
        if let Some((key, value)) = in_flight {
            let mut probe = Shell::start(pydb, &dir, &args.engine)?;
            match probe.call(&format!("GET {key}")) {
                Some(reply) if reply == format!("\"{value}\"") => {
                    model.insert(key, value);
                }
                Some(reply) => {
                    let expected = model.get(&key).map(|v| format!("\"{v}\""));
                    if expected.as_deref().unwrap_or("(nil)") != reply {
                        eprintln!("round {round}: PHANTOM or LOST {key}: got {reply}");
                        phantom += 1;
                    }
                }
                None => failed_opens += 1,
            }
            let _ = probe.call("QUIT");
            let _ = probe.child.wait();
        }
    }
    println!(
        "crashtest: target=shell engine={} seed={} iterations={rounds} acknowledged_checked={checked} lost={lost} phantom={phantom} failed_opens={failed_opens} elapsed={:.1?}",
        args.engine,
        args.seed,
        started.elapsed()
    );
    let _ = std::fs::remove_dir_all(&root);
    if lost == 0 && phantom == 0 && failed_opens == 0 {
        Ok(())
    } else {
        Err("shell crash test FAILED".into())
    }
}
