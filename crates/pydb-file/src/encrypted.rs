//! `EncryptedFile`: a [`File`] decorator that encrypts and authenticates
//! every byte with XChaCha20-Poly1305, block by block.
//!
//! The engine above sees an ordinary byte device: the same offsets, the
//! same lengths. Underneath, the file is cut into blocks of 4 KiB of
//! plaintext, each sealed on its own, so a read decrypts only the blocks it
//! touches and a B+tree page write re-encrypts only its own block.
//!
//! ## Why authenticated encryption (AEAD)
//!
//! Encryption alone hides the bytes but does not notice when someone changes
//! them: flip a ciphertext bit of a stream cipher and the same plaintext bit
//! flips, silently. Poly1305 adds a 16-byte tag computed over the
//! ciphertext *and* some associated data; decryption checks it first and
//! returns nothing if it fails. Here the associated data is the file's
//! random id and the block number, so a block is bound to its place: moved
//! within the file, copied from another file, flipped, or cut short, it
//! fails its tag, and the read is an [`Error::Corrupted`] naming the file
//! and the block's physical offset, never wrong data.
//!
//! ## Why a fresh random nonce for every write
//!
//! A stream cipher must never encrypt two different plaintexts with the
//! same key and nonce: XOR the two ciphertexts and the keystream cancels
//! out, and Poly1305's one-time key is reused, which lets an attacker forge
//! tags. A B+tree rewrites the same page many times, so a nonce derived from
//! the block number would repeat. XChaCha20 has 192-bit nonces, large
//! enough to draw at random for every block write (a collision among 2^48
//! writes has probability about 2^-96), so each rewrite gets a new one,
//! stored beside the block.
//!
//! ## Layout (little-endian)
//!
//! ```text
//! header (72 bytes)
//!   0  [u8; 8]   magic "PYDBENCF"
//!   8  u32       version (1)
//!  12  u32       plaintext block size (4096)
//!  16  [u8; 16]  file id, random when the file is created
//!  32  [u8; 24]  nonce of the header tag
//!  56  [u8; 16]  tag sealing an empty plaintext with bytes 0..32 as
//!                associated data: the header, and the key, check out
//! block i, at 72 + i * 4136
//!   0  [u8; 24]  nonce, random for every write of this block
//!  24  [u8; n]   ciphertext, n = 4096 except for the last block (1..=4096)
//!  24+n [u8; 16] tag; associated data = file id (16) ++ i as u64 LE (8)
//! ```
//!
//! The logical length follows from the physical one: `full * 4096 + n` for
//! `full` whole stored blocks and a last block of `n + 40` bytes. The space
//! overhead is 40 bytes per 4096, 0.98% (plus 72 bytes per file).
//!
//! ## The last block: sealed by each write, or once per sync
//!
//! By default every write seals the blocks it touches, the partial last
//! block included, and hands them to the inner file before it returns
//! (write-through, like a plain file). For a log of 100-byte records that
//! means sealing up to 4 KiB per append.
//!
//! [`EncryptedFile::with_tail_sealed_at_sync`] (and the same on
//! [`EncryptedOpener`]) keeps the partial last block in memory as
//! plaintext instead: whole blocks are sealed and written as soon as they
//! fill, and the partial block is sealed and written by
//! [`File::sync_data`] (and by `set_len`, and best-effort when the file is
//! dropped). Readers see it at once, from memory. This keeps the [`File`]
//! contract, which promises durability only after `sync_data`, so no synced
//! byte is ever at risk; a run of appends between two syncs seals the block
//! once. It is off by default because it moves two things: a write error of
//! that block now surfaces at `sync_data`, where a WAL must treat it as a
//! failed sync and poison itself (the flush retries a failed write once
//! first, which absorbs a transient torn write), and a process killed
//! between a write and its sync loses that write, where a plain file's
//! write usually survives in the kernel's cache.
//!
//! ## Torn tails and their limits
//!
//! Sealing the partial last block rewrites it whole (a new nonce changes
//! all its bytes). On open, the last stored block is verified:
//! if it is shorter than a nonce and a tag, or fails its tag, it is taken as
//! the torn tail of an interrupted write, left out of the logical length,
//! and reported by [`EncryptedFile::dropped_tail`]. The engines then see a
//! file that ends early, which is how they already recognize a torn tail,
//! and cut it off. A bad block anywhere else is corruption.
//!
//! Two consequences a student should know:
//! - Damage to the last block (a bit flip there) also reads as a torn
//!   tail. That is the same call the WAL makes for its last record: damage
//!   after which nothing valid follows cannot be told from a crash.
//! - Rewriting the last block in place means a real disk that tears that
//!   write can lose bytes of that block that were synced before. A plain
//!   file does not have this risk (its old bytes are not rewritten). The
//!   fix, alternating two slots for the last block, is not built yet; the
//!   simulated power cut of [`crate::FaultyOpener`] does not tear sectors.
//! - A whole-block truncation, or the replacement of a block by an older
//!   version of itself, is not detected: the first looks exactly like a
//!   crash before the lost appends were synced, the second needs a
//!   per-block version tree (a Merkle tree), which this layer does not keep.
//!
//! ## Pages and blocks
//!
//! A B+tree page of 4096 bytes (the default) is exactly one block: writing
//! it seals one block without reading the old one, and a torn page write
//! damages that page alone, which the B+tree's full-page images in its WAL
//! repair. Pages smaller than a block share one: a page write must read,
//! decrypt and reseal its neighbours, and a torn write can damage them too
//! (both meta pages live in block 0 with 512-byte pages). So encrypted
//! databases should use page sizes that are multiples of 4096.
//!
//! ## Concurrency
//!
//! Readers and writers share one `RwLock`: any number of reads at once, and
//! a write excludes them while it rewrites blocks, so that no reader sees a
//! block half-written (which would fail its tag). `sync_data` takes no lock,
//! so a group-commit leader's `fsync` does not stall other appends. The
//! plaintext of a partial last block is kept in memory: appends do not read
//! it back from disk.

use std::path::Path;
use std::sync::Arc;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use parking_lot::{RwLock, RwLockWriteGuard};
use rand::RngCore;

use crate::keys::DataKey;
use crate::{Error, File, FileOpener, Result};

/// Plaintext bytes per block.
pub const BLOCK_SIZE: usize = 4096;
/// Bytes of a block's nonce.
pub const NONCE_LEN: usize = 24;
/// Bytes of a block's tag.
pub const TAG_LEN: usize = 16;
/// Bytes a stored block adds to its plaintext.
pub const BLOCK_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Bytes of a whole stored block.
pub const STORED_BLOCK_LEN: usize = BLOCK_SIZE + BLOCK_OVERHEAD;
/// Bytes of the file header.
pub const ENCRYPTED_HEADER_LEN: usize = 72;
/// The magic bytes of an encrypted file.
pub const ENCRYPTED_MAGIC: [u8; 8] = *b"PYDBENCF";
/// The encrypted-file format version this build writes and reads.
pub const ENCRYPTED_VERSION: u32 = 1;
/// Bytes of the random file id.
pub const FILE_ID_LEN: usize = 16;

const VERSION_AT: usize = 8;
const BLOCK_SIZE_AT: usize = 12;
const FILE_ID_AT: usize = 16;
const HEADER_NONCE_AT: usize = 32;
const HEADER_TAG_AT: usize = 56;

/// The longest encrypted file (2^62 bytes): its physical offsets cannot
/// overflow `u64`.
pub const MAX_LEN: u64 = 1 << 62;

/// Blocks sealed per write or read buffer (1 MiB of plaintext), so that a
/// large `set_len` extension does not build one huge buffer.
const BLOCKS_PER_IO: u64 = 256;

/// Why the last stored block of a file was left out when it was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedTail {
    /// The physical offset of the dropped stored block.
    pub offset: u64,
    /// The physical bytes that were left out.
    pub stored_len: u64,
    /// Why: too short to be a block, or its tag did not check out.
    pub reason: &'static str,
}

/// The header and block structure of an encrypted file, for tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedLayout {
    /// The random id of the file (`None`: nothing written yet).
    pub file_id: Option<[u8; FILE_ID_LEN]>,
    /// Plaintext bytes.
    pub logical_len: u64,
    /// Bytes on disk that hold the logical bytes (header and blocks).
    pub physical_len: u64,
    /// Stored blocks, the partial last one included.
    pub blocks: u64,
    /// The last block found torn on open, if any.
    pub dropped_tail: Option<DroppedTail>,
}

#[derive(Debug)]
struct State {
    /// `None` until the header is written (a new, or never-written, file).
    file_id: Option<[u8; FILE_ID_LEN]>,
    /// The logical length.
    len: u64,
    /// The plaintext of the partial last block (empty when `len` is a
    /// multiple of the block size).
    tail: Vec<u8>,
    /// The logical length the stored blocks on disk hold. Below `len` when
    /// the partial last block has changes not sealed yet (they live in
    /// `tail` only, until [`File::sync_data`]); never above it.
    disk_len: u64,
    /// Whether `tail` holds changes that are not sealed on disk yet.
    tail_dirty: bool,
    /// The inner file may hold bytes past `physical_len(len)` (a dropped
    /// tail, or a write that failed part-way): cut them before the next
    /// write or sync, or a reopen would misread them.
    trim_needed: bool,
}

/// A [`File`] whose bytes are encrypted and authenticated in 4 KiB blocks
/// (see the module docs).
pub struct EncryptedFile<F: File> {
    inner: F,
    cipher: XChaCha20Poly1305,
    state: RwLock<State>,
    dropped_tail: Option<DroppedTail>,
    /// Whether a partial last block is sealed at the next sync rather than
    /// by the write that changed it (see the module docs). Off by default.
    tail_sealed_at_sync: bool,
}

impl<F: File> std::fmt::Debug for EncryptedFile<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedFile")
            .field("inner", &self.inner)
            .field("len", &self.state.read().len)
            .finish_non_exhaustive()
    }
}

/// Where stored block `block` starts.
fn block_offset(block: u64) -> u64 {
    ENCRYPTED_HEADER_LEN as u64 + block * STORED_BLOCK_LEN as u64
}

/// The physical length that holds `len` logical bytes (with a header).
fn physical_len(len: u64) -> u64 {
    let rem = len % BLOCK_SIZE as u64;
    block_offset(len / BLOCK_SIZE as u64)
        + if rem == 0 {
            0
        } else {
            rem + BLOCK_OVERHEAD as u64
        }
}

fn block_aad(file_id: &[u8; FILE_ID_LEN], block: u64) -> [u8; FILE_ID_LEN + 8] {
    let mut aad = [0u8; FILE_ID_LEN + 8];
    aad[..FILE_ID_LEN].copy_from_slice(file_id);
    aad[FILE_ID_LEN..].copy_from_slice(&block.to_le_bytes());
    aad
}

fn random_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    nonce
}

impl<F: File> EncryptedFile<F> {
    /// Wraps `inner`, whose bytes are (or will be) encrypted with `key`.
    ///
    /// Reads the header and verifies the last block; writes nothing, so a
    /// read-only inner file works. A file shorter than a header is an empty
    /// file whose creation was interrupted: it gets a header (and a new id)
    /// at its first write. A header that fails its tag, a damaged header or
    /// a wrong key alike, is [`Error::Corrupted`] at offset 0.
    pub fn open(inner: F, key: &DataKey) -> Result<Self> {
        let cipher = key.cipher();
        let physical = inner.len()?;
        let empty = |inner, cipher| Self {
            inner,
            cipher,
            state: RwLock::new(State {
                file_id: None,
                len: 0,
                tail: Vec::new(),
                disk_len: 0,
                tail_dirty: false,
                trim_needed: physical > 0,
            }),
            dropped_tail: None,
            tail_sealed_at_sync: false,
        };
        if physical < ENCRYPTED_HEADER_LEN as u64 {
            return Ok(empty(inner, cipher));
        }
        let mut header = [0u8; ENCRYPTED_HEADER_LEN];
        inner.read_at(0, &mut header)?;
        let file_id = check_header(&cipher, &header, inner.path())?;

        let body = physical - ENCRYPTED_HEADER_LEN as u64;
        let full = body / STORED_BLOCK_LEN as u64;
        let rem = body % STORED_BLOCK_LEN as u64;
        let mut file = Self {
            inner,
            cipher,
            state: RwLock::new(State {
                file_id: Some(file_id),
                len: full * BLOCK_SIZE as u64,
                tail: Vec::new(),
                disk_len: 0,
                tail_dirty: false,
                trim_needed: false,
            }),
            dropped_tail: None,
            tail_sealed_at_sync: false,
        };
        // The last stored block, whole or partial, decides the length.
        let (last, last_len) = if rem > 0 {
            (full, rem)
        } else if full > 0 {
            (full - 1, STORED_BLOCK_LEN as u64)
        } else {
            return Ok(file);
        };
        let state = file.state.get_mut();
        state.len = last * BLOCK_SIZE as u64;
        state.disk_len = state.len;
        let dropped = |reason| DroppedTail {
            offset: block_offset(last),
            stored_len: last_len,
            reason,
        };
        if last_len <= BLOCK_OVERHEAD as u64 {
            file.dropped_tail = Some(dropped("shorter than a nonce and a tag"));
            state.trim_needed = true;
            return Ok(file);
        }
        let mut stored = vec![0u8; last_len as usize];
        file.inner.read_at(block_offset(last), &mut stored)?;
        match open_block(&file.cipher, &file_id, last, &mut stored) {
            Ok(plain) => {
                state.len += plain.len() as u64;
                state.disk_len = state.len;
                if plain.len() < BLOCK_SIZE {
                    state.tail = plain.to_vec();
                }
            }
            Err(()) => {
                file.dropped_tail = Some(dropped("failed authentication"));
                state.trim_needed = true;
            }
        }
        Ok(file)
    }

    /// Seals a partial last block at the next sync instead of at every
    /// write that changes it (see the module docs): appends between two
    /// syncs cost a copy, not a 4 KiB seal each. The price is that a write
    /// error of that block surfaces at `sync_data`, where a log treats it as
    /// a failed sync, and that a process killed before the sync loses the
    /// unsynced bytes. Off by default.
    pub fn with_tail_sealed_at_sync(mut self, on: bool) -> Self {
        self.tail_sealed_at_sync = on;
        self
    }

    /// The wrapped file.
    pub fn inner(&self) -> &F {
        &self.inner
    }

    /// The last block that was found torn (and left out) on open.
    pub fn dropped_tail(&self) -> Option<&DroppedTail> {
        self.dropped_tail.as_ref()
    }

    /// The header and block structure, as `pydb inspect` shows it.
    pub fn layout(&self) -> EncryptedLayout {
        let state = self.state.read();
        let physical = match state.file_id {
            Some(_) => physical_len(state.disk_len),
            None => 0,
        };
        EncryptedLayout {
            file_id: state.file_id,
            logical_len: state.len,
            physical_len: physical,
            blocks: state.len.div_ceil(BLOCK_SIZE as u64),
            dropped_tail: self.dropped_tail.clone(),
        }
    }

    fn corrupted(&self, block: u64, reason: &str) -> Error {
        Error::Corrupted {
            path: self.inner.path().to_path_buf(),
            offset: block_offset(block),
            reason: format!("encrypted block {block}: {reason}"),
        }
    }

    fn overflow(&self, offset: u64) -> Error {
        Error::Overflow {
            path: self.inner.path().to_path_buf(),
            offset,
        }
    }

    /// Decrypts the whole blocks `first..first + count` (none of them the
    /// partial tail) into `out` (`count * BLOCK_SIZE` bytes).
    fn read_whole_blocks(
        &self,
        file_id: &[u8; FILE_ID_LEN],
        first: u64,
        count: u64,
        out: &mut [u8],
    ) -> Result<()> {
        let mut stored = vec![0u8; count as usize * STORED_BLOCK_LEN];
        self.inner
            .read_at(block_offset(first), &mut stored)
            .map_err(|e| match e {
                Error::ReadPastEnd { .. } => self.corrupted(first, "stored block past end of file"),
                other => other,
            })?;
        for (i, (stored, out)) in stored
            .chunks_exact_mut(STORED_BLOCK_LEN)
            .zip(out.chunks_exact_mut(BLOCK_SIZE))
            .enumerate()
        {
            let block = first + i as u64;
            let plain = open_block(&self.cipher, file_id, block, stored).map_err(|()| {
                self.corrupted(
                    block,
                    "failed authentication (damaged, moved, or from another file or key)",
                )
            })?;
            out.copy_from_slice(plain);
        }
        Ok(())
    }

    /// The current plaintext of `block`, `want` bytes of it.
    fn block_plaintext(&self, state: &State, block: u64, want: usize) -> Result<Vec<u8>> {
        let mut plain = vec![0u8; BLOCK_SIZE];
        if block == state.len / BLOCK_SIZE as u64 {
            plain[..state.tail.len()].copy_from_slice(&state.tail);
        } else if let Some(id) = &state.file_id {
            self.read_whole_blocks(id, block, 1, &mut plain)?;
        }
        plain.truncate(want);
        Ok(plain)
    }

    /// Writes the header if the file has none yet.
    fn ensure_header(&self, state: &mut State) -> Result<[u8; FILE_ID_LEN]> {
        if let Some(id) = state.file_id {
            return Ok(id);
        }
        let mut id = [0u8; FILE_ID_LEN];
        rand::rng().fill_bytes(&mut id);
        let mut header = [0u8; ENCRYPTED_HEADER_LEN];
        header[..8].copy_from_slice(&ENCRYPTED_MAGIC);
        header[VERSION_AT..BLOCK_SIZE_AT].copy_from_slice(&ENCRYPTED_VERSION.to_le_bytes());
        header[BLOCK_SIZE_AT..FILE_ID_AT].copy_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
        header[FILE_ID_AT..HEADER_NONCE_AT].copy_from_slice(&id);
        let nonce = random_nonce();
        header[HEADER_NONCE_AT..HEADER_TAG_AT].copy_from_slice(&nonce);
        let tag = self
            .cipher
            .encrypt_in_place_detached(
                XNonce::from_slice(&nonce),
                &header[..HEADER_NONCE_AT],
                &mut [],
            )
            .map_err(|_| self.corrupted(0, "sealing the header failed"))?;
        header[HEADER_TAG_AT..].copy_from_slice(&tag);
        if state.trim_needed {
            self.inner.set_len(0)?;
        }
        self.inner.write_at(0, &header)?;
        state.trim_needed = false;
        state.file_id = Some(id);
        Ok(id)
    }

    fn trim(&self, state: &mut State) -> Result<()> {
        if state.trim_needed {
            let physical = match state.file_id {
                Some(_) => physical_len(state.disk_len),
                None => 0,
            };
            self.inner.set_len(physical)?;
            state.trim_needed = false;
        }
        Ok(())
    }

    /// Writes `data` at `offset` (zeros between the old end and `offset`),
    /// sealing every block it touches with a fresh nonce.
    fn write_locked(&self, state: &mut State, offset: u64, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|end| *end <= MAX_LEN)
            .ok_or_else(|| self.overflow(offset))?;
        let file_id = self.ensure_header(state)?;
        self.trim(state)?;
        let new_len = state.len.max(end);
        let bs = BLOCK_SIZE as u64;
        let mut block = offset.min(state.len) / bs;
        let last = (end - 1) / bs;
        while block <= last {
            let batch_end = (block + BLOCKS_PER_IO).min(last + 1);
            let first = block;
            let mut out = Vec::with_capacity((batch_end - first) as usize * STORED_BLOCK_LEN);
            let mut new_tail = None;
            let mut sealed_upto = 0;
            while block < batch_end {
                let start = block * bs;
                let block_len = (new_len - start).min(bs) as usize;
                let old_len = state.len.saturating_sub(start).min(bs) as usize;
                let covered = offset <= start && end >= start + block_len as u64;
                let mut plain = if covered || old_len == 0 {
                    vec![0u8; block_len]
                } else {
                    let mut plain = self.block_plaintext(state, block, old_len)?;
                    plain.resize(block_len, 0);
                    plain
                };
                let lo = offset.max(start);
                let hi = end.min(start + block_len as u64);
                if lo < hi {
                    plain[(lo - start) as usize..(hi - start) as usize]
                        .copy_from_slice(&data[(lo - offset) as usize..(hi - offset) as usize]);
                }
                block += 1;
                if block_len < BLOCK_SIZE && self.tail_sealed_at_sync {
                    // The new partial last block: sealed at the next sync
                    // (see the module docs), kept in memory until then.
                    new_tail = Some((plain, true));
                } else {
                    self.seal_block(&file_id, block - 1, &plain, &mut out)?;
                    sealed_upto = start + block_len as u64;
                    if block_len < BLOCK_SIZE {
                        new_tail = Some((plain, false));
                    }
                }
            }
            if !out.is_empty()
                && let Err(err) = self.inner.write_at(block_offset(first), &out)
            {
                // Part of `out` may have landed: the bytes past the old
                // physical end must go before anything else is written.
                state.trim_needed = true;
                return Err(err);
            }
            // The blocks up to `sealed_upto` are on disk; an older sealed
            // version of a block past them may still be too.
            state.disk_len = state.disk_len.max(sealed_upto);
            state.len = state.len.max((batch_end * bs).min(new_len));
            match new_tail {
                Some((tail, dirty)) => {
                    state.tail = tail;
                    state.tail_dirty = dirty;
                }
                None if state.len.is_multiple_of(bs) => {
                    state.tail.clear();
                    state.tail_dirty = false;
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Seals `plain` as block `block` and appends the stored form to `out`.
    fn seal_block(
        &self,
        file_id: &[u8; FILE_ID_LEN],
        block: u64,
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        seal_into(&self.cipher, file_id, block, plain, out)
            .map_err(|()| self.corrupted(block, "sealing failed"))
    }

    /// Seals and writes the partial last block if it has changes that are
    /// only in memory. Afterwards the stored blocks hold every byte.
    fn flush_tail(&self, state: &mut State) -> Result<()> {
        if !state.tail_dirty {
            return Ok(());
        }
        let Some(file_id) = state.file_id else {
            return Ok(());
        };
        self.trim(state)?;
        let block = state.len / BLOCK_SIZE as u64;
        let mut out = Vec::with_capacity(state.tail.len() + BLOCK_OVERHEAD);
        self.seal_block(&file_id, block, &state.tail, &mut out)?;
        if self.inner.write_at(block_offset(block), &out).is_err() {
            // A failed *write* (not a failed fsync) can be retried: the
            // plaintext is still here and nothing was synced. Cut what may
            // have landed, then write once more; a second failure is
            // returned, and the caller's sync fails with it.
            state.trim_needed = true;
            self.trim(state)?;
            if let Err(err) = self.inner.write_at(block_offset(block), &out) {
                state.trim_needed = true;
                return Err(err);
            }
        }
        state.disk_len = state.len;
        state.tail_dirty = false;
        Ok(())
    }

    fn set_len_locked(&self, state: &mut State, new_len: u64) -> Result<()> {
        self.flush_tail(state)?;
        let bs = BLOCK_SIZE as u64;
        if new_len > state.len {
            let zeros = vec![0u8; (BLOCKS_PER_IO * bs) as usize];
            while state.len < new_len {
                let step = (new_len - state.len).min(zeros.len() as u64) as usize;
                let at = state.len;
                self.write_locked(state, at, &zeros[..step])?;
            }
            return self.trim(state);
        }
        if new_len == state.len {
            return self.trim(state);
        }
        let Some(file_id) = state.file_id else {
            return Ok(());
        };
        let block = new_len / bs;
        let rem = (new_len % bs) as usize;
        let mut tail = Vec::new();
        if rem > 0 {
            // The new last block, cut to `rem` bytes and sealed afresh.
            tail = self.block_plaintext(state, block, rem)?;
            let mut out = Vec::with_capacity(rem + BLOCK_OVERHEAD);
            self.seal_block(&file_id, block, &tail, &mut out)?;
            if let Err(err) = self.inner.write_at(block_offset(block), &out) {
                state.trim_needed = true;
                return Err(err);
            }
        }
        state.len = new_len;
        state.disk_len = new_len;
        state.tail = tail;
        state.trim_needed = true;
        self.trim(state)
    }

    fn write_guard(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write()
    }
}

/// Checks a header's magic, version, block size and tag; returns the file id.
fn check_header(
    cipher: &XChaCha20Poly1305,
    header: &[u8; ENCRYPTED_HEADER_LEN],
    path: &Path,
) -> Result<[u8; FILE_ID_LEN]> {
    let corrupted = |reason: &str| Error::Corrupted {
        path: path.to_path_buf(),
        offset: 0,
        reason: reason.to_string(),
    };
    if header[..8] != ENCRYPTED_MAGIC {
        return Err(corrupted("not an encrypted pydb file (bad magic)"));
    }
    let u32_at = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let version = u32_at(VERSION_AT);
    if version != ENCRYPTED_VERSION {
        return Err(Error::Unsupported {
            path: path.to_path_buf(),
            reason: format!(
                "encrypted file version {version}; this build reads {ENCRYPTED_VERSION}"
            ),
        });
    }
    let block_size = u32_at(BLOCK_SIZE_AT);
    if block_size as usize != BLOCK_SIZE {
        return Err(corrupted("encrypted file header: unexpected block size"));
    }
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&header[HEADER_TAG_AT..]);
    cipher
        .decrypt_in_place_detached(
            XNonce::from_slice(&header[HEADER_NONCE_AT..HEADER_TAG_AT]),
            &header[..HEADER_NONCE_AT],
            &mut [],
            Tag::from_slice(&tag),
        )
        .map_err(|_| {
            corrupted(
                "encrypted file header failed authentication: a different data key, or a damaged header",
            )
        })?;
    let mut id = [0u8; FILE_ID_LEN];
    id.copy_from_slice(&header[FILE_ID_AT..HEADER_NONCE_AT]);
    Ok(id)
}

/// Seals `plain` as block `block` of the file `file_id` with a fresh nonce
/// and appends the stored form (nonce, ciphertext, tag) to `out`.
fn seal_into(
    cipher: &XChaCha20Poly1305,
    file_id: &[u8; FILE_ID_LEN],
    block: u64,
    plain: &[u8],
    out: &mut Vec<u8>,
) -> std::result::Result<(), ()> {
    let nonce = random_nonce();
    out.extend_from_slice(&nonce);
    let at = out.len();
    out.extend_from_slice(plain);
    let tag = cipher
        .encrypt_in_place_detached(
            XNonce::from_slice(&nonce),
            &block_aad(file_id, block),
            &mut out[at..],
        )
        .map_err(|_| ())?;
    out.extend_from_slice(&tag);
    Ok(())
}

/// Verifies and decrypts a stored block in place; returns its plaintext.
fn open_block<'a>(
    cipher: &XChaCha20Poly1305,
    file_id: &[u8; FILE_ID_LEN],
    block: u64,
    stored: &'a mut [u8],
) -> std::result::Result<&'a [u8], ()> {
    if stored.len() <= BLOCK_OVERHEAD || stored.len() > STORED_BLOCK_LEN {
        return Err(());
    }
    let (nonce, rest) = stored.split_at_mut(NONCE_LEN);
    let (body, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
    cipher
        .decrypt_in_place_detached(
            XNonce::from_slice(nonce),
            &block_aad(file_id, block),
            body,
            Tag::from_slice(tag),
        )
        .map_err(|_| ())?;
    Ok(body)
}

impl<F: File> File for EncryptedFile<F> {
    fn path(&self) -> &Path {
        self.inner.path()
    }

    fn len(&self) -> Result<u64> {
        Ok(self.state.read().len)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let state = self.state.read();
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or_else(|| self.overflow(offset))?;
        if end > state.len {
            return Err(Error::ReadPastEnd {
                path: self.inner.path().to_path_buf(),
                offset,
                len: buf.len(),
                file_len: state.len,
            });
        }
        if buf.is_empty() {
            return Ok(());
        }
        let Some(file_id) = state.file_id else {
            return Ok(());
        };
        let bs = BLOCK_SIZE as u64;
        let tail_block = (!state.len.is_multiple_of(bs)).then_some(state.len / bs);
        let mut block = offset / bs;
        let last = (end - 1) / bs;
        let mut plain = Vec::new();
        while block <= last {
            let start = block * bs;
            let (count, bytes) = if Some(block) == tail_block {
                (1, &state.tail[..])
            } else {
                let stop = (block + BLOCKS_PER_IO)
                    .min(last + 1)
                    .min(tail_block.unwrap_or(u64::MAX));
                let count = stop - block;
                plain.resize(count as usize * BLOCK_SIZE, 0);
                self.read_whole_blocks(&file_id, block, count, &mut plain)?;
                (count, &plain[..])
            };
            let from = offset.max(start);
            let to = end.min(start + bytes.len() as u64);
            buf[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&bytes[(from - start) as usize..(to - start) as usize]);
            block += count;
        }
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        let mut state = self.write_guard();
        self.write_locked(&mut state, offset, data)
    }

    fn append(&self, data: &[u8]) -> Result<u64> {
        let mut state = self.write_guard();
        let offset = state.len;
        self.write_locked(&mut state, offset, data)?;
        Ok(offset)
    }

    fn set_len(&self, len: u64) -> Result<()> {
        let mut state = self.write_guard();
        self.set_len_locked(&mut state, len)
    }

    fn sync_data(&self) -> Result<()> {
        let pending = {
            let state = self.state.read();
            state.trim_needed || state.tail_dirty
        };
        if pending {
            let mut state = self.write_guard();
            self.trim(&mut state)?;
            self.flush_tail(&mut state)?;
        }
        // Every byte is now in `inner`; no lock is held across the fsync,
        // so a group-commit leader's fsync does not stall other appends.
        self.inner.sync_data()
    }
}

impl<F: File> Drop for EncryptedFile<F> {
    fn drop(&mut self) {
        // Best effort: hand the unsealed tail to the OS, so a clean close
        // keeps it. Not a sync; a failure here is what a crash would do.
        let state = self.state.get_mut();
        if state.tail_dirty
            && let Some(file_id) = state.file_id
        {
            let block = state.len / BLOCK_SIZE as u64;
            let mut out = Vec::with_capacity(state.tail.len() + BLOCK_OVERHEAD);
            if seal_into(&self.cipher, &file_id, block, &state.tail, &mut out).is_ok() {
                let _ = self.inner.write_at(block_offset(block), &out);
            }
        }
    }
}

/// Opens [`EncryptedFile`]s over the files of another opener, all with one
/// data key. Directory operations go to the inner opener unchanged.
#[derive(Clone)]
pub struct EncryptedOpener<O> {
    inner: O,
    key: Arc<DataKey>,
    tail_sealed_at_sync: bool,
}

impl<O> EncryptedOpener<O> {
    /// Encrypts the files of `inner` with `key`.
    pub fn new(inner: O, key: DataKey) -> Self {
        Self {
            inner,
            key: Arc::new(key),
            tail_sealed_at_sync: false,
        }
    }

    /// Opens files that seal their partial last block at sync (see
    /// [`EncryptedFile::with_tail_sealed_at_sync`]).
    pub fn with_tail_sealed_at_sync(mut self, on: bool) -> Self {
        self.tail_sealed_at_sync = on;
        self
    }

    /// The wrapped opener.
    pub fn inner(&self) -> &O {
        &self.inner
    }
}

impl<O: std::fmt::Debug> std::fmt::Debug for EncryptedOpener<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedOpener")
            .field("inner", &self.inner)
            .field("key", &self.key)
            .finish()
    }
}

impl<O: FileOpener> FileOpener for EncryptedOpener<O> {
    type File = EncryptedFile<O::File>;

    fn open(&self, path: &Path, create: bool) -> Result<Self::File> {
        Ok(
            EncryptedFile::open(self.inner.open(path, create)?, &self.key)?
                .with_tail_sealed_at_sync(self.tail_sealed_at_sync),
        )
    }

    fn remove(&self, path: &Path) -> Result<()> {
        self.inner.remove(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.inner.rename(from, to)
    }

    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        self.inner.create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> Result<Vec<std::ffi::OsString>> {
        self.inner.list_dir(dir)
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        self.inner.sync_dir(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MonolithicFile;

    fn key() -> DataKey {
        DataKey::from_bytes([7; 32])
    }

    fn open(path: &Path) -> EncryptedFile<MonolithicFile> {
        EncryptedFile::open(MonolithicFile::create(path).unwrap(), &key()).unwrap()
    }

    fn read_all(file: &impl File) -> Vec<u8> {
        let mut buf = vec![0u8; file.len().unwrap() as usize];
        file.read_at(0, &mut buf).unwrap();
        buf
    }

    #[test]
    fn the_header_and_block_mapping_are_as_documented() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = open(&path);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            0,
            "open writes nothing"
        );
        file.append(&[0xAA; 5000]).unwrap();
        file.sync_data().unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(&raw[..8], b"PYDBENCF");
        assert_eq!(raw[8..12], 1u32.to_le_bytes());
        assert_eq!(raw[12..16], 4096u32.to_le_bytes());
        let layout = file.layout();
        assert_eq!(&raw[16..32], &layout.file_id.unwrap());
        // One whole block and a last block of 904 bytes.
        assert_eq!(raw.len(), 72 + 4136 + 904 + 40);
        assert_eq!(layout.physical_len, raw.len() as u64);
        assert_eq!(layout.blocks, 2);
        // No plaintext run survives.
        assert!(!raw.windows(16).any(|w| w == [0xAA; 16]));
        // Reopened, the same bytes.
        drop(file);
        assert_eq!(read_all(&open(&path)), vec![0xAA; 5000]);
    }

    #[test]
    fn appends_between_syncs_seal_the_last_block_once_at_the_sync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = open(&path).with_tail_sealed_at_sync(true);
        let disk = || std::fs::metadata(&path).unwrap().len();
        let mut model = Vec::new();
        for i in 0..31u8 {
            file.append(&[i; 100]).unwrap();
            model.extend_from_slice(&[i; 100]);
        }
        // 3100 bytes in one partial block: only the header is on disk, and
        // readers see every append from memory.
        assert_eq!(disk(), 72);
        assert_eq!(read_all(&file), model);
        assert_eq!(file.layout().physical_len, 72);
        file.sync_data().unwrap();
        assert_eq!(disk(), 72 + 3100 + 40);
        let first_seal = std::fs::read(&path).unwrap();
        // A sync with nothing new writes nothing.
        file.sync_data().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), first_seal);
        // Filling the block writes it whole at once; the new partial block
        // waits for the next sync.
        file.append(&[0xEE; 2000]).unwrap();
        model.extend_from_slice(&[0xEE; 2000]);
        assert_eq!(disk(), 72 + 4136);
        file.sync_data().unwrap();
        assert_eq!(disk(), 72 + 4136 + 1004 + 40);
        // An in-place write into the partial block is held the same way.
        file.write_at(4096 + 10, b"held").unwrap();
        model[4096 + 10..4096 + 14].copy_from_slice(b"held");
        let mut buf = [0u8; 4];
        file.read_at(4096 + 10, &mut buf).unwrap();
        assert_eq!(&buf, b"held");
        file.sync_data().unwrap();
        drop(file);
        let back = read_all(&open(&path));
        let first_difference = back.iter().zip(&model).position(|(a, b)| a != b);
        assert_eq!((back.len(), first_difference), (model.len(), None));
    }

    #[test]
    fn a_closed_file_hands_its_unsealed_tail_to_the_os() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = open(&path).with_tail_sealed_at_sync(true);
        file.append(b"not synced, but closed").unwrap();
        drop(file);
        assert_eq!(read_all(&open(&path)), b"not synced, but closed");
    }

    #[test]
    fn space_overhead_is_under_one_and_a_half_percent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = open(&path);
        file.append(&vec![1u8; 1 << 20]).unwrap();
        let physical = std::fs::metadata(&path).unwrap().len();
        let overhead = physical as f64 / (1u64 << 20) as f64 - 1.0;
        assert!(overhead <= 0.015, "{overhead}");
        assert!(overhead > 0.009, "{overhead}: 40 bytes per 4096 expected");
    }

    #[test]
    fn a_partial_block_write_reencrypts_only_its_block_with_a_new_nonce() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = open(&path);
        file.append(&[1u8; 3 * 4096]).unwrap();
        let before = std::fs::read(&path).unwrap();
        file.write_at(4096 + 10, b"hello").unwrap();
        let after = std::fs::read(&path).unwrap();
        let block = |raw: &[u8], i: usize| raw[72 + i * 4136..72 + (i + 1) * 4136].to_vec();
        assert_eq!(block(&before, 0), block(&after, 0));
        assert_eq!(block(&before, 2), block(&after, 2));
        assert_ne!(
            block(&before, 1)[..24],
            block(&after, 1)[..24],
            "fresh nonce"
        );
        // Rewriting the same bytes still changes the stored block.
        file.write_at(4096 + 10, b"hello").unwrap();
        assert_ne!(block(&after, 1), block(&std::fs::read(&path).unwrap(), 1));
        let mut buf = [0u8; 7];
        file.read_at(4096 + 9, &mut buf).unwrap();
        assert_eq!(&buf, b"\x01hello\x01");
    }

    #[test]
    fn appends_cross_block_boundaries_and_gaps_read_as_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = open(&path);
        let mut model = Vec::new();
        for i in 0..40u32 {
            let piece = vec![i as u8; 333 + i as usize * 17];
            assert_eq!(file.append(&piece).unwrap(), model.len() as u64);
            model.extend_from_slice(&piece);
        }
        file.write_at(model.len() as u64 + 5000, b"far").unwrap();
        model.resize(model.len() + 5000, 0);
        model.extend_from_slice(b"far");
        assert_eq!(read_all(&file), model);
        drop(file);
        assert_eq!(read_all(&open(&path)), model);
    }

    #[test]
    fn set_len_truncates_and_extends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = open(&path);
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        file.append(&data).unwrap();
        file.set_len(5000).unwrap();
        assert_eq!(read_all(&file), data[..5000]);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            72 + 4136 + 904 + 40
        );
        file.set_len(4096).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 72 + 4136);
        file.set_len(9000).unwrap();
        let mut want = data[..4096].to_vec();
        want.resize(9000, 0);
        assert_eq!(read_all(&file), want);
        file.set_len(0).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 72);
        drop(file);
        let file = open(&path);
        assert_eq!(file.len().unwrap(), 0);
        file.append(b"again").unwrap();
        assert_eq!(read_all(&file), b"again");
    }

    #[test]
    fn a_wrong_key_fails_at_open_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        open(&path).append(b"secret").unwrap();
        let before = std::fs::read(&path).unwrap();
        let other = DataKey::from_bytes([8; 32]);
        let err =
            EncryptedFile::open(MonolithicFile::open(&path, false).unwrap(), &other).unwrap_err();
        assert!(
            matches!(&err, Error::Corrupted { offset: 0, reason, .. } if reason.contains("data key")),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_torn_last_block_is_left_out_and_cut_at_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = open(&path);
        file.append(&[3u8; 4096 + 100]).unwrap();
        drop(file);
        // Cut the last stored block in the middle of its ciphertext.
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 30]).unwrap();
        let file = open(&path);
        assert_eq!(file.len().unwrap(), 4096);
        let dropped = file.dropped_tail().unwrap();
        assert_eq!(dropped.offset, 72 + 4136);
        assert_eq!(dropped.reason, "failed authentication");
        file.append(b"next").unwrap();
        drop(file);
        let file = open(&path);
        assert!(file.dropped_tail().is_none());
        let mut want = vec![3u8; 4096];
        want.extend_from_slice(b"next");
        assert_eq!(read_all(&file), want);
    }

    #[test]
    fn a_damaged_middle_block_is_a_corrupted_error_naming_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        open(&path).append(&[5u8; 3 * 4096]).unwrap();
        let mut raw = std::fs::read(&path).unwrap();
        raw[72 + 4136 + 100] ^= 1;
        std::fs::write(&path, &raw).unwrap();
        let file = open(&path);
        let mut buf = [0u8; 10];
        file.read_at(0, &mut buf).unwrap();
        let err = file.read_at(4096, &mut buf).unwrap_err();
        assert!(
            matches!(&err, Error::Corrupted { offset, path: p, .. } if *offset == 72 + 4136 && p == &path),
            "{err}"
        );
        // A write into the damaged block cannot keep its other bytes: refused.
        assert!(file.write_at(4096 + 5, b"x").is_err());
    }
}
