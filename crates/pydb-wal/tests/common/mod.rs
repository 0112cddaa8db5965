//! Helpers shared by the WAL tests: an in-memory `File`, deterministic
//! payloads, and a log built from known batches.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use pydb_file::{Error as FileError, File, Result as FileResult};
use pydb_wal::{LogWriter, Record, Scanner, SyncPolicy};

/// A `File` kept in memory, so that a test can scan thousands of damaged
/// copies of a log without touching the disk.
#[derive(Debug)]
pub struct MemFile {
    path: PathBuf,
    data: Mutex<Vec<u8>>,
}

impl MemFile {
    pub fn new(name: &str, data: Vec<u8>) -> Self {
        Self {
            path: PathBuf::from(name),
            data: Mutex::new(data),
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.data.lock().clone()
    }
}

impl File for MemFile {
    fn path(&self) -> &Path {
        &self.path
    }
    fn len(&self) -> FileResult<u64> {
        Ok(self.data.lock().len() as u64)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> FileResult<()> {
        let data = self.data.lock();
        let start = offset as usize;
        match data.get(start..start + buf.len()) {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                Ok(())
            }
            None => Err(FileError::ReadPastEnd {
                path: self.path.clone(),
                offset,
                len: buf.len(),
                file_len: data.len() as u64,
            }),
        }
    }
    fn write_at(&self, offset: u64, bytes: &[u8]) -> FileResult<()> {
        let mut data = self.data.lock();
        let end = offset as usize + bytes.len();
        if data.len() < end && !bytes.is_empty() {
            data.resize(end, 0);
        }
        data[offset as usize..end].copy_from_slice(bytes);
        Ok(())
    }
    fn append(&self, bytes: &[u8]) -> FileResult<u64> {
        let mut data = self.data.lock();
        let offset = data.len() as u64;
        data.extend_from_slice(bytes);
        Ok(offset)
    }
    fn set_len(&self, len: u64) -> FileResult<()> {
        self.data.lock().resize(len as usize, 0);
        Ok(())
    }
    fn sync_data(&self) -> FileResult<()> {
        Ok(())
    }
}

/// `len` deterministic, varied bytes (SplitMix64 of `seed`).
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ len as u64;
    (0..len)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

/// Batches of varied shapes: empty payloads, single records, long batches,
/// a record longer than the others. `scale` multiplies the payload sizes.
pub fn sample_batches(scale: usize) -> Vec<Vec<Vec<u8>>> {
    let shapes: &[&[usize]] = &[
        &[5],
        &[0],
        &[12, 40, 3],
        &[100 * scale],
        &[1, 1, 1, 1, 1],
        &[7, 0, 30],
        &[64],
        &[20 * scale, 9],
    ];
    let mut seed = 0;
    shapes
        .iter()
        .map(|sizes| {
            sizes
                .iter()
                .map(|&len| {
                    seed += 1;
                    payload(seed, len)
                })
                .collect()
        })
        .collect()
}

/// One batch as written: its records' offsets and where it ends.
#[derive(Debug, Clone)]
pub struct Written {
    pub payloads: Vec<Vec<u8>>,
    pub record_offsets: Vec<u64>,
    pub start: u64,
    pub end: u64,
}

/// Writes `batches` into a fresh in-memory log; returns its bytes and where
/// every batch and record landed.
pub fn build_log(batches: &[Vec<Vec<u8>>]) -> (Vec<u8>, Vec<Written>) {
    let writer = LogWriter::new(MemFile::new("log", Vec::new()), SyncPolicy::Never).unwrap();
    let mut written = Vec::new();
    for batch in batches {
        let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        let appended = writer.append_batch(&refs).unwrap();
        let mut offsets = Vec::new();
        let mut at = appended.start;
        for payload in batch {
            offsets.push(at);
            at += pydb_wal::record_len(payload.len());
        }
        assert_eq!(at, appended.end);
        written.push(Written {
            payloads: batch.clone(),
            record_offsets: offsets,
            start: appended.start,
            end: appended.end,
        });
    }
    (writer.file().bytes(), written)
}

/// Every batch a scan yields, until the end of the valid log or an error.
pub fn scan_all<F: File>(file: &F) -> pydb_wal::Result<Vec<Vec<Record>>> {
    let mut scanner = Scanner::new(file)?;
    let mut batches = Vec::new();
    while let Some(batch) = scanner.next_batch()? {
        batches.push(batch);
    }
    Ok(batches)
}

/// Asserts that `scanned` is exactly `expected`, payloads and offsets.
pub fn assert_batches(scanned: &[Vec<Record>], expected: &[Written], context: &str) {
    assert_eq!(
        scanned.len(),
        expected.len(),
        "{context}: number of batches"
    );
    for (i, (got, want)) in scanned.iter().zip(expected).enumerate() {
        let payloads: Vec<&[u8]> = got.iter().map(|r| r.payload.as_ref()).collect();
        let want_payloads: Vec<&[u8]> = want.payloads.iter().map(Vec::as_slice).collect();
        assert_eq!(payloads, want_payloads, "{context}: payloads of batch {i}");
        let offsets: Vec<u64> = got.iter().map(|r| r.offset).collect();
        assert_eq!(
            offsets, want.record_offsets,
            "{context}: offsets of batch {i}"
        );
    }
}
