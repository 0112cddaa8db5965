//! The harness of the server tests: a server in this process on an
//! ephemeral loopback port, and raw connections that compare reply bytes.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use pydb::Db;
use pydb_server::client::Client;
use pydb_server::server::{Server, ServerConfig, ShutdownHandle};

/// A server on an ephemeral loopback port, over a memory database, shut
/// down when dropped.
pub struct Running {
    pub addr: SocketAddr,
    /// The database directory of an on-disk server.
    _dir: Option<tempfile::TempDir>,
    stop: ShutdownHandle,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    pub fn start() -> Self {
        Self::start_with(Db::memory().unwrap(), None)
    }

    /// A server over the default engine (the log, every commit synced) in
    /// a scratch directory: commits take an fsync each, so concurrent ones
    /// wait in groups.
    pub fn start_on_disk() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path().join("db"), pydb::Options::default()).unwrap();
        Self::start_with(db, Some(dir))
    }

    /// An on-disk server (as [`Running::start_on_disk`]) with `loops`
    /// event loops, whatever the machine's cores.
    pub fn start_on_disk_with_loops(loops: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path().join("db"), pydb::Options::default()).unwrap();
        let config = ServerConfig {
            event_loops: loops,
            ..Self::config()
        };
        Self::start_configured(db, config, Some(dir))
    }

    fn config() -> ServerConfig {
        ServerConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            ..ServerConfig::default()
        }
    }

    fn start_with(db: Db, dir: Option<tempfile::TempDir>) -> Self {
        Self::start_configured(db, Self::config(), dir)
    }

    fn start_configured(db: Db, config: ServerConfig, dir: Option<tempfile::TempDir>) -> Self {
        let server = Server::bind(db, config).unwrap();
        let addr = server.local_addr();
        let stop = server.shutdown_handle();
        let thread = std::thread::spawn(move || server.run().unwrap());
        Self {
            addr,
            _dir: dir,
            stop,
            thread: Some(thread),
        }
    }

    pub fn connect(&self) -> Raw {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Raw(stream)
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.addr.to_string()).unwrap()
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

/// A raw connection: requests go out as RESP arrays, replies are compared
/// byte for byte.
pub struct Raw(pub TcpStream);

impl Raw {
    pub fn send(&mut self, args: &[&str]) {
        let mut out = format!("*{}\r\n", args.len());
        for arg in args {
            out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        self.0.write_all(out.as_bytes()).unwrap();
    }

    /// Sends `args` and expects exactly `reply` back: a shorter reply times
    /// out, a longer one breaks the next expectation.
    pub fn expect(&mut self, args: &[&str], reply: &[u8]) {
        self.send(args);
        let mut got = vec![0; reply.len()];
        self.0.read_exact(&mut got).unwrap_or_else(|e| {
            panic!(
                "{args:?}: expected {:?}: {e}",
                String::from_utf8_lossy(reply)
            )
        });
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(reply),
            "reply to {args:?}"
        );
    }

    /// Sends `requests` in one write (one pipeline) and expects exactly
    /// `replies` back.
    pub fn pipeline(&mut self, requests: &[u8], replies: &[u8]) {
        self.0.write_all(requests).unwrap();
        let mut got = vec![0; replies.len()];
        self.0.read_exact(&mut got).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(replies)
        );
    }

    /// Sends `args` and reads until the reply ends with `suffix`.
    pub fn expect_ending(&mut self, args: &[&str], suffix: &[u8]) {
        self.send(args);
        let mut got = Vec::new();
        let mut byte = [0];
        while !got.ends_with(suffix) {
            self.0.read_exact(&mut byte).unwrap();
            got.push(byte[0]);
        }
    }
}
