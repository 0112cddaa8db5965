//! A simulated disk for the B+tree tests: in-memory files that remember what
//! was synced, count every mutating operation, and can "lose power" at any
//! chosen operation.
//!
//! - Each file has `live` bytes (what reads see) and `durable` bytes (what
//!   survives a power cut): `sync_data` copies live to durable.
//! - `arm(n)` makes the n-th mutating operation from now the crash point: a
//!   write there lands only its first half (a torn write) and fails; every
//!   later mutation fails.
//! - `snapshot(PowerCut)` is the disk after a power cut (durable bytes only);
//!   `snapshot(Process)` keeps every byte written (the OS survived);
//!   `snapshot(WalLost)` keeps page-file bytes but only synced WAL bytes.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use pydb_file::{File, FileOpener};

#[derive(Debug, Default)]
pub struct SimData {
    pub live: Mutex<Vec<u8>>,
    pub durable: Mutex<Vec<u8>>,
}

#[derive(Debug)]
pub struct SimFs {
    files: Mutex<HashMap<PathBuf, Arc<SimData>>>,
    ops: AtomicU64,
    crash_at: AtomicU64,
    crashed: AtomicBool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// Only synced bytes survive.
    PowerCut,
    /// Every written byte survives.
    Process,
    /// The OS wrote back every page-file byte but no unsynced WAL byte:
    /// the case the write-ahead rule exists for.
    WalLost,
}

impl SimFs {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            files: Mutex::new(HashMap::new()),
            ops: AtomicU64::new(0),
            crash_at: AtomicU64::new(u64::MAX),
            crashed: AtomicBool::new(false),
        })
    }

    pub fn opener(self: &Arc<Self>) -> SimOpener {
        SimOpener(Arc::clone(self))
    }

    /// The `n`-th mutating operation from now (1 = the next one) crashes.
    pub fn arm(&self, n: u64) {
        let now = self.ops.load(Ordering::SeqCst);
        self.crash_at.store(now + n, Ordering::SeqCst);
    }

    pub fn crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// A new disk holding what survives `crash` of this one.
    pub fn snapshot(&self, crash: Crash) -> Arc<SimFs> {
        let fs = SimFs::new();
        let mut files = fs.files.lock();
        for (path, data) in self.files.lock().iter() {
            let is_wal = path.extension().is_some_and(|e| e == "log");
            let bytes = match crash {
                Crash::PowerCut => data.durable.lock().clone(),
                Crash::Process => data.live.lock().clone(),
                Crash::WalLost if is_wal => data.durable.lock().clone(),
                Crash::WalLost => data.live.lock().clone(),
            };
            files.insert(
                path.clone(),
                Arc::new(SimData {
                    live: Mutex::new(bytes.clone()),
                    durable: Mutex::new(bytes),
                }),
            );
        }
        drop(files);
        fs
    }

    pub fn file(&self, path: &Path) -> Option<Arc<SimData>> {
        self.files.lock().get(path).cloned()
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.files.lock().keys().cloned().collect();
        v.sort();
        v
    }

    /// Replaces a file's bytes (live and durable), e.g. to damage it.
    pub fn set_bytes(&self, path: &Path, bytes: Vec<u8>) {
        let data = self.file(path).expect("file exists");
        *data.live.lock() = bytes.clone();
        *data.durable.lock() = bytes;
    }

    pub fn bytes(&self, path: &Path) -> Vec<u8> {
        self.file(path).expect("file exists").live.lock().clone()
    }

    /// Counts one mutation. `Ok(true)`: this is the crash point.
    fn tick(&self, path: &Path) -> pydb_file::Result<bool> {
        if self.crashed() {
            return Err(power_cut(path));
        }
        let n = self.ops.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.crash_at.load(Ordering::SeqCst) {
            self.crashed.store(true, Ordering::SeqCst);
            return Ok(true);
        }
        Ok(false)
    }
}

fn power_cut(path: &Path) -> pydb_file::Error {
    pydb_file::Error::io(path, std::io::Error::other("simulated power cut"))
}

#[derive(Debug, Clone)]
pub struct SimOpener(pub Arc<SimFs>);

#[derive(Debug)]
pub struct SimFile {
    path: PathBuf,
    data: Arc<SimData>,
    fs: Arc<SimFs>,
}

impl FileOpener for SimOpener {
    type File = SimFile;

    fn open(&self, path: &Path, create: bool) -> pydb_file::Result<SimFile> {
        let mut files = self.0.files.lock();
        let data = match files.get(path) {
            Some(d) => Arc::clone(d),
            None if create => {
                let d = Arc::new(SimData::default());
                files.insert(path.to_path_buf(), Arc::clone(&d));
                d
            }
            None => {
                return Err(pydb_file::Error::io(
                    path,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ));
            }
        };
        Ok(SimFile {
            path: path.to_path_buf(),
            data,
            fs: Arc::clone(&self.0),
        })
    }

    fn remove(&self, path: &Path) -> pydb_file::Result<()> {
        if self.0.crashed() {
            return Err(power_cut(path));
        }
        match self.0.files.lock().remove(path) {
            Some(_) => Ok(()),
            None => Err(pydb_file::Error::io(
                path,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )),
        }
    }

    fn sync_dir(&self, dir: &Path) -> pydb_file::Result<()> {
        if self.0.crashed() {
            return Err(power_cut(dir));
        }
        Ok(())
    }
}

fn write_into(live: &mut Vec<u8>, offset: usize, data: &[u8]) {
    let end = offset + data.len();
    if live.len() < end {
        live.resize(end, 0);
    }
    live[offset..end].copy_from_slice(data);
}

impl File for SimFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> pydb_file::Result<u64> {
        Ok(self.data.live.lock().len() as u64)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> pydb_file::Result<()> {
        let live = self.data.live.lock();
        let end = offset as usize + buf.len();
        if end > live.len() {
            return Err(pydb_file::Error::ReadPastEnd {
                path: self.path.clone(),
                offset,
                len: buf.len(),
                file_len: live.len() as u64,
            });
        }
        buf.copy_from_slice(&live[offset as usize..end]);
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> pydb_file::Result<()> {
        let torn = self.fs.tick(&self.path)?;
        let mut live = self.data.live.lock();
        if torn {
            write_into(&mut live, offset as usize, &data[..data.len() / 2]);
            return Err(power_cut(&self.path));
        }
        write_into(&mut live, offset as usize, data);
        Ok(())
    }

    fn append(&self, data: &[u8]) -> pydb_file::Result<u64> {
        let torn = self.fs.tick(&self.path)?;
        let mut live = self.data.live.lock();
        let offset = live.len();
        if torn {
            write_into(&mut live, offset, &data[..data.len() / 2]);
            return Err(power_cut(&self.path));
        }
        write_into(&mut live, offset, data);
        Ok(offset as u64)
    }

    fn set_len(&self, len: u64) -> pydb_file::Result<()> {
        if self.fs.tick(&self.path)? {
            return Err(power_cut(&self.path));
        }
        self.data.live.lock().resize(len as usize, 0);
        Ok(())
    }

    fn sync_data(&self) -> pydb_file::Result<()> {
        if self.fs.tick(&self.path)? {
            return Err(power_cut(&self.path));
        }
        let live = self.data.live.lock().clone();
        *self.data.durable.lock() = live;
        Ok(())
    }
}
