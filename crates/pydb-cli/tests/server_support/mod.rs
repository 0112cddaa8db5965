//! Helpers for the tests that run `pydb server` as a real process.

#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "shared by several test crates; a test fails by panicking"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// How long anything may take before a test fails instead of hanging.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A `pydb server` process on an ephemeral loopback port.
pub struct Server {
    child: Option<Child>,
    /// Where it listens (for Redis clients; with --pg-only, for
    /// PostgreSQL ones).
    pub addr: SocketAddr,
    /// Where it listens for PostgreSQL clients (with --pg-bind).
    pub pg_addr: Option<SocketAddr>,
    /// Its stderr lines, as they come.
    log: Receiver<String>,
    _dir: Option<tempfile::TempDir>,
    /// The database directory.
    pub dir: PathBuf,
}

impl Server {
    /// Starts a server on a fresh temporary directory with `args` added.
    pub fn start(args: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let mut server = Self::start_in(&path, args);
        server._dir = Some(dir);
        server
    }

    /// Starts a server on `dir` with `args` added.
    /// Binds to an ephemeral loopback port unless `args` has `--bind`.
    pub fn start_in(dir: &Path, args: &[&str]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pydb"));
        command.arg("server").arg("--dir").arg(dir);
        if !args.contains(&"--bind") {
            command.args(["--bind", "127.0.0.1:0"]);
        }
        let mut child = command
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + TIMEOUT;
        // The Redis address (unless --pg-only) and the PostgreSQL one
        // (with --pg-bind), in whichever order they are logged.
        let wants_redis = !args.contains(&"--pg-only");
        let wants_pg = args.contains(&"--pg-bind");
        let (mut addr, mut pg_addr) = (None, None);
        while (wants_redis && addr.is_none()) || (wants_pg && pg_addr.is_none()) {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("the server did not log its address");
            let parse = |marker: &str| -> Option<SocketAddr> {
                let at = line.find(marker)?;
                line[at + marker.len()..].trim().parse().ok()
            };
            if let Some(a) = parse("listening addr=") {
                addr = Some(a);
            }
            if let Some(a) = parse("listening for PostgreSQL clients addr=") {
                pg_addr = Some(a);
            }
        }
        Server {
            child: Some(child),
            addr: addr.or(pg_addr).unwrap(),
            pg_addr,
            log: rx,
            _dir: None,
            dir: dir.to_path_buf(),
        }
    }

    /// A `redis` crate connection.
    pub fn redis(&self) -> redis::Connection {
        self.redis_with_password(None)
    }

    /// A `redis` crate connection that authenticates with `password`.
    pub fn redis_with_password(&self, password: Option<&str>) -> redis::Connection {
        let url = match password {
            Some(p) => format!("redis://:{p}@{}/", self.addr),
            None => format!("redis://{}/", self.addr),
        };
        let client = redis::Client::open(url).unwrap();
        client.get_connection_with_timeout(TIMEOUT).unwrap()
    }

    /// A raw TCP connection.
    pub fn raw(&self) -> Raw {
        Raw::connect(self.addr)
    }

    /// Sends a signal to the server (`kill -SIG pid`).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// A field of the server's `/proc/PID/status` in kB (`VmHWM` is the
    /// peak resident memory, `VmRSS` the current one).
    pub fn proc_status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with(&format!("{field}:")))
            .unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process with SIGKILL and waits for it.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// The log lines received so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A raw socket speaking RESP by hand.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends one request as a RESP array.
    pub fn send_command(&mut self, args: &[&str]) {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.send(out.as_bytes());
    }

    /// Reads one reply and returns its raw bytes (as decoded by pydb's own
    /// client decoder, which the unit tests check).
    pub fn read_reply(&mut self) -> pydb_server::Reply {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some((reply, used)) =
                pydb_server::server::resp::decode_reply(&self.buf, &Default::default()).unwrap()
            {
                self.buf.drain(..used);
                return reply;
            }
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "connection closed while waiting for a reply");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends a request and reads its reply.
    pub fn call(&mut self, args: &[&str]) -> pydb_server::Reply {
        self.send_command(args);
        self.read_reply()
    }

    /// Asserts that the server closes the connection (after any bytes it
    /// still sends, which are returned).
    pub fn expect_closed(&mut self) -> Vec<u8> {
        let mut rest = std::mem::take(&mut self.buf);
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return rest,
                Ok(n) => rest.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return rest,
                Err(e) => panic!("expected the server to close the connection: {e}"),
            }
        }
    }
}
