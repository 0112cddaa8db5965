//! An event loop: one thread serving many connections, and applying the
//! writes of all of them as one batch per turn.
//!
//! ```text
//!   one turn of the loop
//!   --------------------
//!   poll()                 wait until some sockets are ready (epoll)
//!   for each ready socket: write what waits, read, parse, answer;
//!                          plain SETs are set aside (pending)
//!   one transaction        every connection's pending SETs, one commit:
//!                          one log append and, with --sync always, one fsync
//!   for each socket served: append the SETs' +OK, write the replies
//! ```
//!
//! This is Redis's design (`aeMain` and `beforeSleep` in `ae.c` and
//! `server.c`): a turn gathers the requests of *every* client that is
//! ready, and the append-only file is written and fsynced once before any
//! reply of the turn leaves. The durability promise holds the same way:
//! a `SET`'s `+OK` is appended to its connection's output only after the
//! batch that holds it was committed (and, with `--sync always`, synced).
//!
//! The server runs one loop or a few (`--event-loops`, by default
//! [`super::default_event_loops`]); each connection belongs to one loop for its
//! life, handed over by the accept thread through an inbox and a
//! [`mio::Waker`]. Loops commit independently; the transaction layer's
//! group commit merges their batches when they meet at the log.
//!
//! Readiness is edge-triggered: the loop hears about a socket when it
//! *becomes* readable (or writable), so a connection reads until the
//! socket says `WouldBlock`, or it would never hear about those bytes
//! again. The exception is a client that does not read its replies: its
//! connection stops reading (backpressure) and asks for writability
//! instead; when its replies have left, it reads again. Those replies may
//! leave in the turn's last write rather than on a writability event; then
//! no edge will ever come for the requests it still holds, so the loop
//! serves it again in the next turn by itself (`again`,
//! [`Connection::needs_service`]).
//!
//! Nothing in a turn may block: a wrong password's delay is a *hold*
//! ([`Connection::held_until`]) that the loop's timer releases, and the
//! write timeout, soft output limit and idle timeout are checked by the
//! timer too (a few times a second), not by socket timeouts.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use parking_lot::Mutex;

use super::Shared;
use super::conn::{Connection, Ended};
use pydb::{Db, Isolation};

/// The token of the loop's waker (connections use their client id).
const WAKER: Token = Token(usize::MAX);

/// How often the timers (write timeout, output limits, idle timeout) are
/// checked.
const TIMER_TICK: Duration = Duration::from_millis(100);

/// The loop's connections by client id.
type IdMap<V> = HashMap<usize, V, BuildHasherDefault<IdHasher>>;

/// A set of client ids.
type IdSet = HashSet<usize, BuildHasherDefault<IdHasher>>;

/// Hashes a client id for the loop's maps, which are looked up a few
/// times per turn and request (the default SipHash was 4% to 6% of a
/// loop's instructions per `SET`). Ids come from the server's own
/// counter, not from the network, so nobody can choose colliding ones and
/// a keyed hash buys nothing: a multiplication by a large odd constant
/// (Fibonacci hashing) spreads consecutive ids over the buckets (low bits)
/// and over the tag bits the table compares first (high bits).
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by `usize` keys; any input still hashes.
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(FIBONACCI);
        }
    }

    fn write_usize(&mut self, id: usize) {
        self.0 = (id as u64).wrapping_mul(FIBONACCI);
    }
}

/// 2^64 divided by the golden ratio, made odd: Fibonacci hashing's factor.
const FIBONACCI: u64 = 0x9E37_79B9_7F4A_7C15;

/// The accept thread's end of a loop: hands connections over.
#[derive(Clone)]
pub(crate) struct LoopHandle {
    inbox: Arc<Mutex<Vec<Connection>>>,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for LoopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopHandle").finish_non_exhaustive()
    }
}

impl LoopHandle {
    /// Gives a new connection to the loop.
    pub(crate) fn hand_over(&self, connection: Connection) -> std::io::Result<()> {
        self.inbox.lock().push(connection);
        self.waker.wake()
    }

    /// Asks the loop to end (after its connections are gone).
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

/// One event loop and the connections it serves.
pub(crate) struct EventLoop {
    poll: Poll,
    db: Db,
    shared: Arc<Shared>,
    inbox: Arc<Mutex<Vec<Connection>>>,
    stop: Arc<AtomicBool>,
    connections: IdMap<Connection>,
    /// Connections that asked for writability (their client is slow).
    want_write: IdSet,
    /// The connections served in this turn.
    served: Vec<usize>,
    /// Those of them whose client closed its side (read them to the end).
    hung_up: IdSet,
    /// Connections to serve in the next turn without an event: their
    /// replies left after `service` stopped for backpressure
    /// ([`Connection::needs_service`]).
    again: Vec<usize>,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("connections", &self.connections.len())
            .finish_non_exhaustive()
    }
}

impl EventLoop {
    /// A loop with no connections yet, and the handle to give it some.
    pub(crate) fn new(db: Db, shared: Arc<Shared>) -> std::io::Result<(Self, LoopHandle)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let inbox = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = LoopHandle {
            inbox: Arc::clone(&inbox),
            waker,
            stop: Arc::clone(&stop),
        };
        let this = Self {
            poll,
            db,
            shared,
            inbox,
            stop,
            connections: IdMap::default(),
            want_write: IdSet::default(),
            served: Vec::new(),
            hung_up: IdSet::default(),
            again: Vec::new(),
        };
        Ok((this, handle))
    }

    /// Runs turns until stopped.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + TIMER_TICK;
        loop {
            let now = Instant::now();
            let due = self
                .connections
                .values()
                .filter_map(Connection::held_until)
                .fold(next_tick, Instant::min);
            let timeout = if self.again.is_empty() {
                due.saturating_duration_since(now)
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != ErrorKind::Interrupted {
                    tracing::error!(error = %e, "event loop: poll failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            self.served.clear();
            self.served.append(&mut self.again);
            for event in events.iter() {
                if event.token() == WAKER {
                    self.adopt();
                } else {
                    self.served.push(event.token().0);
                    if event.is_read_closed() || event.is_error() {
                        self.hung_up.insert(event.token().0);
                    }
                }
            }
            let now = Instant::now();
            if now >= next_tick || now >= due {
                self.check_timers(now);
                next_tick = now + TIMER_TICK;
            }
            self.turn();
        }
        for (id, mut connection) in self.connections.drain() {
            let _ = self.poll.registry().deregister(connection.stream_mut());
            self.shared.remove_client(id as u64);
        }
    }

    /// Registers the connections the accept thread handed over, and
    /// serves them at once (a client may have written before it was
    /// registered: no edge would report those bytes).
    fn adopt(&mut self) {
        let new: Vec<Connection> = std::mem::take(&mut *self.inbox.lock());
        for mut connection in new {
            let id = connection.id() as usize;
            if let Err(e) = self.poll.registry().register(
                connection.stream_mut(),
                Token(id),
                Interest::READABLE,
            ) {
                tracing::warn!(id, error = %e, "cannot register the connection");
                self.shared.remove_client(id as u64);
                continue;
            }
            self.connections.insert(id, connection);
            self.served.push(id);
        }
    }

    /// Runs the timers of every connection: ends holds, closes the ones
    /// past a timeout or the soft output limit.
    fn check_timers(&mut self, now: Instant) {
        let mut closed = Vec::new();
        for (&id, connection) in &mut self.connections {
            match connection.check_timers(now) {
                Ok(true) => self.served.push(id),
                Ok(false) => {}
                Err(reason) => closed.push((id, reason)),
            }
        }
        for (id, reason) in closed {
            self.close(id, Ok(reason));
        }
    }

    /// One turn: serve the ready connections, commit their pending SETs
    /// as one batch, send the replies.
    fn turn(&mut self) {
        self.served.sort_unstable();
        self.served.dedup();
        let served = std::mem::take(&mut self.served);
        let mut failed = Vec::new();
        for &id in &served {
            let hung_up = self.hung_up.contains(&id);
            if let Some(connection) = self.connections.get_mut(&id)
                && let Err(e) = connection.service(hung_up)
            {
                failed.push((id, e));
            }
        }
        self.commit_pending_sets(&served);
        for &id in &served {
            let Some(connection) = self.connections.get_mut(&id) else {
                continue;
            };
            let outcome = connection.write_some().map(|_| connection.finished());
            match outcome {
                Ok(Some(reason)) => self.close(id, Ok(reason)),
                Ok(None) => {
                    if connection.needs_service() {
                        self.again.push(id);
                    }
                    self.watch_writability(id);
                }
                Err(e) => failed.push((id, e)),
            }
        }
        for (id, e) in failed {
            self.close(id, Err(e));
        }
        self.served = served;
        self.hung_up.clear();
    }

    /// Applies the pending `SET`s of every served connection as one
    /// transaction: one commit for the whole turn. The keys and values are
    /// read where the connections keep them (no batch is built).
    fn commit_pending_sets(&mut self, served: &[usize]) {
        let connections = &self.connections;
        let writers = served
            .iter()
            .filter_map(|id| connections.get(id))
            .filter(|connection| !connection.pending_sets().is_empty())
            .count();
        if writers == 0 {
            return;
        }
        // One connection's SETs alone are applied as it would apply them
        // (one SET on its own is a plain `set`, not a batch of one).
        let written = writers > 1
            && self
                .db
                .transaction(Isolation::ReadCommitted, |tx| {
                    for id in served {
                        if let Some(connection) = connections.get(id) {
                            connection.pending_sets().write_into(tx)?;
                        }
                    }
                    Ok(())
                })
                .is_ok();
        for id in served {
            if let Some(connection) = self.connections.get_mut(id) {
                connection.take_pending_sets(written);
            }
        }
    }

    /// Asks for writability while a connection has replies the socket did
    /// not take, and stops asking once they left.
    fn watch_writability(&mut self, id: usize) {
        let Some(connection) = self.connections.get_mut(&id) else {
            return;
        };
        let wants = connection.has_output();
        if wants == self.want_write.contains(&id) {
            return;
        }
        let interest = if wants {
            self.want_write.insert(id);
            Interest::READABLE | Interest::WRITABLE
        } else {
            self.want_write.remove(&id);
            Interest::READABLE
        };
        if let Err(e) =
            self.poll
                .registry()
                .reregister(connection.stream_mut(), Token(id), interest)
        {
            self.close(id, Err(e));
        }
    }

    /// Ends a connection: unregisters and drops it (which closes the
    /// socket) and removes it from the client list.
    fn close(&mut self, id: usize, outcome: std::io::Result<Ended>) {
        let Some(mut connection) = self.connections.remove(&id) else {
            return;
        };
        self.want_write.remove(&id);
        let _ = self.poll.registry().deregister(connection.stream_mut());
        match outcome {
            Ok(reason) => tracing::debug!(id, %reason, "disconnected"),
            Err(e) => tracing::debug!(id, error = %e, "connection error"),
        }
        drop(connection);
        self.shared.remove_client(id as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_ids_spread_over_buckets_and_tags() {
        let hash = |id: usize| {
            let mut hasher = IdHasher::default();
            hasher.write_usize(id);
            hasher.finish()
        };
        // 1,024 consecutive ids: all in different buckets of a table of
        // 1,024 (low bits), and over most of the 128 tags (top 7 bits).
        let buckets: HashSet<u64> = (5000..6024).map(|id| hash(id) & 1023).collect();
        assert_eq!(buckets.len(), 1024);
        let tags: HashSet<u64> = (5000..6024).map(|id| hash(id) >> 57).collect();
        assert!(tags.len() > 100, "{} tags", tags.len());
        let mut map = IdMap::default();
        for id in 0..10_000 {
            map.insert(id, id * 2);
        }
        assert!((0..10_000).all(|id| map.get(&id) == Some(&(id * 2))));
    }
}
