//! Guards the server's promises across process ends: with --sync always no acknowledged write is lost to kill -9, and SIGTERM shuts down cleanly (exit 0, data flushed, directory lock released).

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod server_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use server_support::Server;

#[test]
fn kill_9_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(dir.path(), &["--sync", "always"]);
    let stop = Arc::new(AtomicBool::new(false));
    // Writers run until the kill; each records what was acknowledged.
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let mut con = server.redis();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w{t}:{i}");
                    let result = if i.is_multiple_of(3) {
                        // A pipeline: batched SETs must be durable too.
                        redis::pipe()
                            .cmd("SET")
                            .arg(&key)
                            .arg(i)
                            .cmd("SET")
                            .arg(format!("{key}b"))
                            .arg(i)
                            .query::<()>(&mut con)
                            .map(|()| vec![key.clone(), format!("{key}b")])
                    } else {
                        redis::cmd("SET")
                            .arg(&key)
                            .arg(i)
                            .query::<()>(&mut con)
                            .map(|()| vec![key])
                    };
                    match result {
                        Ok(keys) => acknowledged.extend(keys.into_iter().map(|k| (k, i))),
                        Err(_) => break,
                    }
                    i += 1;
                }
                acknowledged
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(700));
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    let acknowledged: Vec<(String, u64)> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(acknowledged.len() > 10, "too few writes to mean anything");

    let server = Server::start_in(dir.path(), &["--sync", "always"]);
    let mut con = server.redis();
    for (key, value) in &acknowledged {
        let got: Option<u64> = redis::cmd("GET").arg(key).query(&mut con).unwrap();
        assert_eq!(got, Some(*value), "acknowledged write of {key} lost");
    }
}

#[test]
fn sigterm_shuts_down_cleanly_and_releases_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    for signal in ["TERM", "INT"] {
        let mut server = Server::start_in(dir.path(), &["--sync", "never"]);
        let mut con = server.redis();
        let _: () = redis::cmd("SET")
            .arg(signal)
            .arg("kept")
            .query(&mut con)
            .unwrap();
        // A client still connected must not keep the server up.
        let idle = server.raw();
        server.signal(signal);
        let status = server.wait();
        assert_eq!(status.code(), Some(0), "exit status after SIG{signal}");
        drop(idle);
        assert!(
            server
                .log_lines()
                .iter()
                .any(|l| l.contains("database flushed")),
            "no shutdown log"
        );
    }
    // The directory is free: a new server opens it and finds the data.
    let server = Server::start_in(dir.path(), &["--sync", "never"]);
    let mut con = server.redis();
    for key in ["TERM", "INT"] {
        let got: String = redis::cmd("GET").arg(key).query(&mut con).unwrap();
        assert_eq!(got, "kept");
    }
}
