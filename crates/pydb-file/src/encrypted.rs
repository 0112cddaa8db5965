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
//! ## Why the last block lives in two alternating slots (version 2)
//!
//! A log appends 100 bytes at a time, so its last block changes with every
//! append, and sealing it again with a fresh nonce changes *all* its bytes.
//! Version 1 rewrote that block in place. If the disk tore that write (some
//! sectors new, some old) and the power went, the block failed its tag, and
//! the bytes of it that an earlier `sync_data` had made durable were gone
//! with it. A plain file cannot lose synced bytes this way: an append never
//! rewrites them.
//!
//! Version 2 never overwrites the last synced copy of the last block. The
//! last block (1 to 4096 bytes) is kept in one of two **slots** near the
//! front of the file, each stamped with a sequence number and the block's
//! number. A new version of it always goes into the slot that does *not*
//! hold the version the last `sync_data` made durable. A torn write can
//! then only damage a version that was never synced, and on open the valid
//! slot with the highest sequence number wins: the newest version that
//! reached the disk whole. The blocks before the last one are whole blocks
//! of 4096 bytes, stored after the slots at fixed places; an append writes
//! each of them once, when it stops being the last block.
//!
//! Rules that keep this true:
//! - The version being made durable by a `sync_data` in progress is
//!   protected too. A write that changes the last block while a sync is in
//!   flight, with both slots protected, keeps the block in memory; the sync
//!   seals it into the freed slot when its `fsync` returns.
//! - A shrinking `set_len` writes the new last block into a slot and syncs
//!   it before it cuts the whole blocks past it (so a shrink is also a
//!   sync). So the synced state never
//!   needs whole blocks past the current last block, and a write that grows
//!   the file again never overwrites bytes the synced state needs. (Whole
//!   blocks past the last block, left by a crash, are ignored: a slot names
//!   the block it holds.)
//! - A slot that checks out but was not chosen on open (it names a block
//!   the whole blocks do not reach: a crash cut the write that wrote it) is
//!   overwritten, and synced, before the first write after the open, so
//!   that it can never come back when the file grows again.
//!
//! Version 1 files still open and are written the version 1 way.
//!
//! ## Layout, version 2 (little-endian)
//!
//! ```text
//! header (72 bytes)
//!   0  [u8; 8]   magic "PYDBENCF"
//!   8  u32       version (2; 1 for the older layout below)
//!  12  u32       plaintext block size (4096)
//!  16  [u8; 16]  file id, random when the file is created
//!  32  [u8; 24]  nonce of the header tag
//!  56  [u8; 16]  tag sealing an empty plaintext with bytes 0..32 as
//!                associated data: the header, and the key, check out
//! slot s (s = 0, 1), at 72 + s * 4160, 4160 bytes reserved
//!   0  u64       seq: 1 for the first version written, +1 for each next
//!   8  u64       block: the number of the last block
//!  16  u32       n: its plaintext bytes, 1..=4096 (0 only with block 0:
//!                an empty file)
//!  20  u32       zero
//!  24  [u8; 24]  nonce, random for every write
//!  48  [u8; n]   ciphertext
//!  48+n [u8; 16] tag; associated data = file id (16) ++ slot bytes 0..24
//! whole block i, at 8392 + i * 4136, for every block before the last
//!   0  [u8; 24]  nonce, random for every write of this block
//!  24  [u8;4096] ciphertext
//! 4120 [u8; 16]  tag; associated data = file id (16) ++ i as u64 LE (8)
//! ```
//!
//! The logical length is `block * 4096 + n` of the chosen slot. The space
//! overhead is 40 bytes per 4096 (0.98%) plus 8392 bytes per file (the
//! header and both slots; a slot that was never written is a hole).
//!
//! Version 1 is the same header (version 1) followed directly by the
//! blocks, `72 + i * 4136`, the last one `n + 40` bytes long and rewritten
//! in place; its physical length gives its logical length.
//!
//! ## Choosing the slot on open
//!
//! Let `W` be the number of whole blocks the file's length covers. Among
//! the slots that pass their tag and name a block `<= W`, the highest
//! sequence number wins. If the whole block just before the one it names
//! fails its tag, and the other slot names an earlier block, the write that
//! made the winner crossed a block boundary and its whole block was torn
//! (never synced: the winner is newer than the last sync), so the other
//! slot is taken. No slot at all means an empty file; a file with bytes but
//! no valid slot reports them as a dropped torn tail
//! ([`EncryptedFile::dropped_tail`]), as does a newer slot that lost.
//!
//! ## The last block: sealed by each write, or once per sync
//!
//! By default every write seals the blocks it touches, the last block
//! included, and hands them to the inner file before it returns
//! (write-through, like a plain file). For a log of 100-byte records that
//! means sealing up to 4 KiB per append.
//!
//! [`EncryptedFile::with_tail_sealed_at_sync`] (and the same on
//! [`EncryptedOpener`]) keeps the last block in memory as plaintext
//! instead, and seals it at [`File::sync_data`] (and best-effort when the
//! file is dropped). Readers see it at once, from memory. It is off by
//! default because it moves two things: a write error of that block now
//! surfaces at `sync_data`, where a WAL must treat it as a failed sync and
//! poison itself (the flush retries a failed write once first, which
//! absorbs a transient torn write), and a process killed between a write
//! and its sync loses that write, where a plain file's write usually
//! survives in the kernel's cache.
//!
//! ## What is not detected
//!
//! - Damage to the newest slot reads as a torn tail: the older slot (or an
//!   empty file) is taken. That is the same call the WAL makes for its last
//!   record: damage after which nothing valid follows cannot be told from
//!   a crash.
//! - The replacement of a block by an older version of itself needs a
//!   per-block version tree (a Merkle tree), which this layer does not keep.
//! - A whole block (not the last) torn by an in-place rewrite is damaged,
//!   as a torn page of a plain file is: the B+tree's full-page images in its
//!   WAL repair it.
//!
//! ## Pages and blocks
//!
//! A B+tree page of 4096 bytes (the default) is exactly one block: writing
//! it seals one block without reading the old one. Pages smaller than a
//! block share one: a page write must read, decrypt and reseal its
//! neighbours, and a torn write can damage them too. So encrypted databases
//! should use page sizes that are multiples of 4096.
//!
//! ## The block cache
//!
//! A random read of a few bytes must decrypt (and authenticate) the whole
//! 4 KiB block that holds them, which costs more than the read itself.
//! An [`EncryptedOpener`] therefore shares a bounded [`BlockCache`] of
//! decrypted whole blocks among its files (8 MiB by default). Single-block
//! reads fill it; every write of a whole block removes that block's entry
//! first, under the file's write lock, so a cached block is always the
//! block as it is on disk now. The last block is never cached: it is in
//! memory already.
//!
//! ## Concurrency
//!
//! Readers and writers share one `RwLock`: any number of reads at once, and
//! a write excludes them while it rewrites blocks, so that no reader sees a
//! block half-written (which would fail its tag). `sync_data` holds no lock
//! across the `fsync`, so a group-commit leader's `fsync` does not stall
//! other appends; syncs run one at a time. The plaintext of the last block
//! is kept in memory: appends do not read it back from disk.

use std::path::Path;
use std::sync::Arc;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use parking_lot::{Mutex, RwLock, RwLockWriteGuard};
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
/// The encrypted-file format version this build writes (it also reads and
/// appends to version 1 files).
pub const ENCRYPTED_VERSION: u32 = 2;
/// The first layout: the last block rewritten in place.
pub const ENCRYPTED_VERSION_V1: u32 = 1;
/// Bytes of the random file id.
pub const FILE_ID_LEN: usize = 16;
/// Bytes of a slot's clear header (seq, block, n, zero).
pub const SLOT_HEADER_LEN: usize = 24;
/// Bytes reserved for each of the two last-block slots.
pub const SLOT_LEN: usize = SLOT_HEADER_LEN + STORED_BLOCK_LEN;
/// Where slot 0 starts (slot 1 follows it).
pub const SLOTS_AT: u64 = ENCRYPTED_HEADER_LEN as u64;
/// Where the whole blocks start in a version 2 file.
pub const ENCRYPTED_DATA_AT: u64 = SLOTS_AT + 2 * SLOT_LEN as u64;

const VERSION_AT: usize = 8;
const BLOCK_SIZE_AT: usize = 12;
const FILE_ID_AT: usize = 16;
const HEADER_NONCE_AT: usize = 32;
const HEADER_TAG_AT: usize = 56;
const SLOT_SEQ_AT: usize = 0;
const SLOT_BLOCK_AT: usize = 8;
const SLOT_LEN_AT: usize = 16;
const SLOT_ZERO_AT: usize = 20;

/// The longest encrypted file (2^62 bytes): its physical offsets cannot
/// overflow `u64`.
pub const MAX_LEN: u64 = 1 << 62;

/// Blocks sealed per write or read buffer (1 MiB of plaintext), so that a
/// large `set_len` extension does not build one huge buffer.
const BLOCKS_PER_IO: u64 = 256;

/// Why the last stored block of a file was left out when it was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedTail {
    /// The physical offset of the dropped stored block (or slot).
    pub offset: u64,
    /// The physical bytes that were left out.
    pub stored_len: u64,
    /// Why: too short to be a block, or its tag did not check out.
    pub reason: &'static str,
}

/// One last-block slot of a version 2 file, as found on open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// Which slot (0 or 1).
    pub slot: usize,
    /// Its sequence number.
    pub seq: u64,
    /// The block it holds.
    pub block: u64,
    /// The plaintext bytes it holds.
    pub len: u32,
    /// Whether it is the one the file's length comes from.
    pub chosen: bool,
}

/// The header and block structure of an encrypted file, for tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedLayout {
    /// The layout version (1 or 2).
    pub version: u32,
    /// The random id of the file (`None`: nothing written yet).
    pub file_id: Option<[u8; FILE_ID_LEN]>,
    /// Plaintext bytes.
    pub logical_len: u64,
    /// Bytes on disk that hold the logical bytes (header, slots, blocks).
    pub physical_len: u64,
    /// Blocks, the last one included.
    pub blocks: u64,
    /// The slots that checked out on open (version 2).
    pub slots: Vec<SlotInfo>,
    /// The last block found torn on open, if any.
    pub dropped_tail: Option<DroppedTail>,
}

#[derive(Debug)]
struct State {
    /// `None` until the header is written (a new, or never-written, file).
    file_id: Option<[u8; FILE_ID_LEN]>,
    /// The logical length.
    len: u64,
    /// The plaintext of the last block, the one [`EncryptedFile::last_block`]
    /// names (empty when there is none).
    tail: Vec<u8>,
    /// Version 1: the logical length the stored blocks on disk hold.
    disk_len: u64,
    /// Whether `tail` holds changes that are not sealed on disk yet.
    tail_dirty: bool,
    /// Version 1: the inner file may hold bytes past its physical length
    /// (a dropped tail, or a write that failed part-way): cut them before
    /// the next write or sync. Version 2: whole blocks past the last block
    /// may be left; they are cut once the slot naming the last block is
    /// synced.
    trim_needed: bool,
    /// Version 2: the highest sequence number used or seen.
    seq: u64,
    /// Version 2: the slot holding the newest version of the last block.
    newest_slot: Option<usize>,
    /// Version 2: the slot the last completed `sync_data` made durable.
    synced_slot: Option<usize>,
    /// Version 2: the slot a `sync_data` in progress is making durable.
    in_flight_slot: Option<usize>,
    /// Version 2: a slot that checked out on open but lost; it is
    /// overwritten (and synced) before the first write.
    stale_slot: Option<usize>,
}

/// A [`File`] whose bytes are encrypted and authenticated in 4 KiB blocks
/// (see the module docs).
pub struct EncryptedFile<F: File> {
    inner: F,
    cipher: XChaCha20Poly1305,
    /// The layout version of this file (new files get the current one).
    version: u32,
    state: RwLock<State>,
    /// Syncs run one at a time (see the module docs).
    sync_lock: Mutex<()>,
    dropped_tail: Option<DroppedTail>,
    slots: Vec<SlotInfo>,
    /// Whether the last block is sealed at the next sync rather than by the
    /// write that changed it (see the module docs). Off by default.
    tail_sealed_at_sync: bool,
    /// Decrypted whole blocks (shared with the opener's other files).
    cache: Option<Arc<BlockCache>>,
}

impl<F: File> std::fmt::Debug for EncryptedFile<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedFile")
            .field("inner", &self.inner)
            .field("version", &self.version)
            .field("len", &self.state.read().len)
            .finish_non_exhaustive()
    }
}

/// Where slot `slot` starts.
fn slot_offset(slot: usize) -> u64 {
    SLOTS_AT + (slot * SLOT_LEN) as u64
}

fn block_aad(file_id: &[u8; FILE_ID_LEN], block: u64) -> [u8; FILE_ID_LEN + 8] {
    let mut aad = [0u8; FILE_ID_LEN + 8];
    aad[..FILE_ID_LEN].copy_from_slice(file_id);
    aad[FILE_ID_LEN..].copy_from_slice(&block.to_le_bytes());
    aad
}

fn slot_aad(
    file_id: &[u8; FILE_ID_LEN],
    header: &[u8; SLOT_HEADER_LEN],
) -> [u8; FILE_ID_LEN + SLOT_HEADER_LEN] {
    let mut aad = [0u8; FILE_ID_LEN + SLOT_HEADER_LEN];
    aad[..FILE_ID_LEN].copy_from_slice(file_id);
    aad[FILE_ID_LEN..].copy_from_slice(header);
    aad
}

fn slot_header(seq: u64, block: u64, n: u32) -> [u8; SLOT_HEADER_LEN] {
    let mut header = [0u8; SLOT_HEADER_LEN];
    header[SLOT_SEQ_AT..SLOT_BLOCK_AT].copy_from_slice(&seq.to_le_bytes());
    header[SLOT_BLOCK_AT..SLOT_LEN_AT].copy_from_slice(&block.to_le_bytes());
    header[SLOT_LEN_AT..SLOT_ZERO_AT].copy_from_slice(&n.to_le_bytes());
    header
}

fn random_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    nonce
}

/// A slot that passed its tag, with its plaintext.
struct FoundSlot {
    slot: usize,
    seq: u64,
    block: u64,
    plain: Vec<u8>,
}

/// Decrypted whole blocks, shared by the files of one [`EncryptedOpener`]
/// (see the module docs): a random read of a cached block costs a copy
/// instead of a read and a 4 KiB decryption. Keyed by the random file id
/// and the block number; bounded, oldest entry out first.
///
/// Invariant: an entry is the authenticated plaintext of that block as it
/// is now. Every write of a whole block removes its entry (under the file's
/// write lock, so a reader never sees the old one), and only single-block
/// reads fill it, so that scans do not flush it.
pub struct BlockCache {
    capacity_blocks: usize,
    blocks: Mutex<CachedBlocks>,
}

#[derive(Default)]
struct CachedBlocks {
    map: std::collections::HashMap<([u8; FILE_ID_LEN], u64), Arc<[u8]>>,
    /// Insertion order, for eviction; may name entries already removed.
    order: std::collections::VecDeque<([u8; FILE_ID_LEN], u64)>,
    hits: u64,
    misses: u64,
}

impl BlockCache {
    /// A cache of at most `bytes` of plaintext (whole 4 KiB blocks).
    pub fn new(bytes: usize) -> Self {
        Self {
            capacity_blocks: bytes / BLOCK_SIZE,
            blocks: Mutex::new(CachedBlocks::default()),
        }
    }

    /// Hits and misses so far.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        let blocks = self.blocks.lock();
        (blocks.hits, blocks.misses)
    }

    fn get(&self, file_id: &[u8; FILE_ID_LEN], block: u64) -> Option<Arc<[u8]>> {
        let mut blocks = self.blocks.lock();
        let found = blocks.map.get(&(*file_id, block)).cloned();
        match found {
            Some(_) => blocks.hits += 1,
            None => blocks.misses += 1,
        }
        found
    }

    fn insert(&self, file_id: &[u8; FILE_ID_LEN], block: u64, plain: &[u8]) {
        if self.capacity_blocks == 0 {
            return;
        }
        let mut blocks = self.blocks.lock();
        while blocks.map.len() >= self.capacity_blocks {
            match blocks.order.pop_front() {
                Some(old) => {
                    blocks.map.remove(&old);
                }
                None => break,
            }
        }
        if blocks.map.insert((*file_id, block), plain.into()).is_none() {
            blocks.order.push_back((*file_id, block));
        }
        // Keep the order queue from growing without bound when entries are
        // removed by writes.
        if blocks.order.len() > 2 * self.capacity_blocks.max(1) {
            let CachedBlocks { map, order, .. } = &mut *blocks;
            order.retain(|key| map.contains_key(key));
        }
    }

    fn remove(&self, file_id: &[u8; FILE_ID_LEN], first: u64, count: u64) {
        let mut blocks = self.blocks.lock();
        if blocks.map.is_empty() {
            return;
        }
        for block in first..first + count {
            blocks.map.remove(&(*file_id, block));
        }
    }
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("capacity_blocks", &self.capacity_blocks)
            .finish_non_exhaustive()
    }
}

/// The block cache an [`EncryptedOpener`] shares among its files by
/// default: 8 MiB of plaintext.
pub const DEFAULT_BLOCK_CACHE_BYTES: usize = 8 << 20;

impl<F: File> EncryptedFile<F> {
    /// Wraps `inner`, whose bytes are (or will be) encrypted with `key`.
    ///
    /// Reads the header and finds the last block; writes nothing, so a
    /// read-only inner file works. A file shorter than a header is an empty
    /// file whose creation was interrupted: it gets a header (and a new id)
    /// at its first write. A header that fails its tag, a damaged header or
    /// a wrong key alike, is [`Error::Corrupted`] at offset 0.
    pub fn open(inner: F, key: &DataKey) -> Result<Self> {
        let cipher = key.cipher();
        let physical = inner.len()?;
        let mut file = Self {
            inner,
            cipher,
            version: ENCRYPTED_VERSION,
            state: RwLock::new(State {
                file_id: None,
                len: 0,
                tail: Vec::new(),
                disk_len: 0,
                tail_dirty: false,
                trim_needed: physical > 0,
                seq: 0,
                newest_slot: None,
                synced_slot: None,
                in_flight_slot: None,
                stale_slot: None,
            }),
            sync_lock: Mutex::new(()),
            dropped_tail: None,
            slots: Vec::new(),
            tail_sealed_at_sync: false,
            cache: None,
        };
        if physical < ENCRYPTED_HEADER_LEN as u64 {
            return Ok(file);
        }
        let mut header = [0u8; ENCRYPTED_HEADER_LEN];
        file.inner.read_at(0, &mut header)?;
        let (version, file_id) = check_header(&file.cipher, &header, file.inner.path())?;
        file.version = version;
        let state = file.state.get_mut();
        state.file_id = Some(file_id);
        state.trim_needed = false;
        if version == ENCRYPTED_VERSION_V1 {
            file.open_v1(&file_id, physical)?;
        } else {
            file.open_v2(&file_id, physical)?;
        }
        Ok(file)
    }

    /// Version 1: the physical length gives the logical one; the last
    /// stored block is verified.
    fn open_v1(&mut self, file_id: &[u8; FILE_ID_LEN], physical: u64) -> Result<()> {
        let body = physical - ENCRYPTED_HEADER_LEN as u64;
        let full = body / STORED_BLOCK_LEN as u64;
        let rem = body % STORED_BLOCK_LEN as u64;
        // The last stored block, whole or partial, decides the length.
        let (last, last_len) = if rem > 0 {
            (full, rem)
        } else if full > 0 {
            (full - 1, STORED_BLOCK_LEN as u64)
        } else {
            return Ok(());
        };
        let offset = self.block_offset(last);
        let state = self.state.get_mut();
        state.len = last * BLOCK_SIZE as u64;
        state.disk_len = state.len;
        let dropped = |reason| DroppedTail {
            offset,
            stored_len: last_len,
            reason,
        };
        if last_len <= BLOCK_OVERHEAD as u64 {
            self.dropped_tail = Some(dropped("shorter than a nonce and a tag"));
            state.trim_needed = true;
            return Ok(());
        }
        let mut stored = vec![0u8; last_len as usize];
        self.inner.read_at(offset, &mut stored)?;
        match open_block(&self.cipher, file_id, last, &mut stored) {
            Ok(plain) => {
                state.len += plain.len() as u64;
                state.disk_len = state.len;
                if plain.len() < BLOCK_SIZE {
                    state.tail = plain.to_vec();
                }
            }
            Err(()) => {
                self.dropped_tail = Some(dropped("failed authentication"));
                state.trim_needed = true;
            }
        }
        Ok(())
    }

    /// Version 2: the valid slot with the highest sequence number that the
    /// whole blocks reach gives the last block (see the module docs).
    fn open_v2(&mut self, file_id: &[u8; FILE_ID_LEN], physical: u64) -> Result<()> {
        let whole = physical.saturating_sub(ENCRYPTED_DATA_AT) / STORED_BLOCK_LEN as u64;
        let mut found = Vec::new();
        for slot in 0..2 {
            if let Some(f) = self.read_slot(file_id, slot, physical)? {
                found.push(f);
            }
        }
        let mut usable: Vec<&FoundSlot> = found.iter().filter(|f| f.block <= whole).collect();
        usable.sort_by_key(|f| std::cmp::Reverse(f.seq));
        let mut chosen = usable.first().copied();
        if let (Some(newest), Some(older)) = (chosen, usable.get(1).copied())
            && newest.block > 0
            && older.block < newest.block
        {
            // Was the whole block before the newest slot's block torn by
            // the write that made that slot? Then the older slot is the
            // last version that reached the disk whole.
            let before = newest.block - 1;
            let mut stored = vec![0u8; STORED_BLOCK_LEN];
            self.inner.read_at(self.block_offset(before), &mut stored)?;
            if open_block(&self.cipher, file_id, before, &mut stored).is_err() {
                chosen = Some(older);
            }
        }
        let state = self.state.get_mut();
        state.seq = found.iter().map(|f| f.seq).max().unwrap_or(0);
        match chosen {
            Some(c) => {
                state.len = c.block * BLOCK_SIZE as u64 + c.plain.len() as u64;
                state.tail = c.plain.clone();
                state.newest_slot = Some(c.slot);
                state.synced_slot = Some(c.slot);
                // Whole blocks past the last block are left over from a
                // write a crash cut, or from a shrink: cut them after the
                // next sync.
                state.trim_needed = whole > c.block;
                if let Some(lost) = found.iter().find(|f| f.slot != c.slot && f.seq > c.seq) {
                    state.stale_slot = Some(lost.slot);
                    self.dropped_tail = Some(DroppedTail {
                        offset: slot_offset(lost.slot),
                        stored_len: (SLOT_HEADER_LEN + BLOCK_OVERHEAD + lost.plain.len()) as u64,
                        reason: "a newer last-block slot whose whole blocks did not reach the disk",
                    });
                }
            }
            None if physical > ENCRYPTED_HEADER_LEN as u64 => {
                state.trim_needed = true;
                if let Some(lost) = found.first() {
                    state.stale_slot = Some(lost.slot);
                }
                self.dropped_tail = Some(DroppedTail {
                    offset: SLOTS_AT,
                    stored_len: physical - SLOTS_AT,
                    reason: "no last-block slot checks out",
                });
            }
            None => {}
        }
        self.slots = found
            .iter()
            .map(|f| SlotInfo {
                slot: f.slot,
                seq: f.seq,
                block: f.block,
                len: f.plain.len() as u32,
                chosen: chosen.is_some_and(|c| c.slot == f.slot),
            })
            .collect();
        Ok(())
    }

    /// Reads and verifies slot `slot`; `None` if it is missing, cut short
    /// or fails its tag.
    fn read_slot(
        &self,
        file_id: &[u8; FILE_ID_LEN],
        slot: usize,
        physical: u64,
    ) -> Result<Option<FoundSlot>> {
        let at = slot_offset(slot);
        let available = physical.saturating_sub(at).min(SLOT_LEN as u64) as usize;
        if available < SLOT_HEADER_LEN + BLOCK_OVERHEAD {
            return Ok(None);
        }
        let mut raw = vec![0u8; available];
        self.inner.read_at(at, &mut raw)?;
        let mut header = [0u8; SLOT_HEADER_LEN];
        header.copy_from_slice(&raw[..SLOT_HEADER_LEN]);
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let seq = u64_at(SLOT_SEQ_AT);
        let block = u64_at(SLOT_BLOCK_AT);
        let mut n = [0u8; 4];
        n.copy_from_slice(&header[SLOT_LEN_AT..SLOT_ZERO_AT]);
        let n = u32::from_le_bytes(n) as usize;
        let valid_len = n <= BLOCK_SIZE && (n > 0 || block == 0);
        let end = SLOT_HEADER_LEN + BLOCK_OVERHEAD + n;
        if seq == 0 || !valid_len || end > available || block >= MAX_LEN / BLOCK_SIZE as u64 {
            return Ok(None);
        }
        let (nonce, rest) = raw[SLOT_HEADER_LEN..end].split_at_mut(NONCE_LEN);
        let (body, tag) = rest.split_at_mut(n);
        let opened = self.cipher.decrypt_in_place_detached(
            XNonce::from_slice(nonce),
            &slot_aad(file_id, &header),
            body,
            Tag::from_slice(tag),
        );
        Ok(opened.ok().map(|()| FoundSlot {
            slot,
            seq,
            block,
            plain: body.to_vec(),
        }))
    }

    /// Seals the last block at the next sync instead of at every write
    /// that changes it (see the module docs): appends between two syncs
    /// cost a copy, not a 4 KiB seal each. The price is that a write error
    /// of that block surfaces at `sync_data`, where a log treats it as a
    /// failed sync, and that a process killed before the sync loses the
    /// unsynced bytes. Off by default.
    pub fn with_tail_sealed_at_sync(mut self, on: bool) -> Self {
        self.tail_sealed_at_sync = on;
        self
    }

    /// Keeps decrypted whole blocks in `cache` (see [`BlockCache`]).
    pub fn with_block_cache(mut self, cache: Option<Arc<BlockCache>>) -> Self {
        self.cache = cache;
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
            None => 0,
            Some(_) if self.version == ENCRYPTED_VERSION_V1 => self.v1_physical_len(state.disk_len),
            Some(_) if state.len == 0 => ENCRYPTED_HEADER_LEN as u64,
            Some(_) => self.area_end(state.len),
        };
        EncryptedLayout {
            version: self.version,
            file_id: state.file_id,
            logical_len: state.len,
            physical_len: physical,
            blocks: state.len.div_ceil(BLOCK_SIZE as u64),
            slots: self.slots.clone(),
            dropped_tail: self.dropped_tail.clone(),
        }
    }

    /// Where the whole blocks start.
    fn data_at(&self) -> u64 {
        if self.version == ENCRYPTED_VERSION_V1 {
            ENCRYPTED_HEADER_LEN as u64
        } else {
            ENCRYPTED_DATA_AT
        }
    }

    /// Where stored block `block` starts (the last block of a version 2
    /// file lives in a slot instead).
    fn block_offset(&self, block: u64) -> u64 {
        self.data_at() + block * STORED_BLOCK_LEN as u64
    }

    /// The block whose plaintext `State::tail` holds for a file of `len`
    /// bytes: version 1, a partial last block; version 2, the last block.
    fn last_block(&self, len: u64) -> Option<u64> {
        let bs = BLOCK_SIZE as u64;
        if self.version == ENCRYPTED_VERSION_V1 {
            (!len.is_multiple_of(bs)).then_some(len / bs)
        } else {
            (len > 0).then(|| (len - 1) / bs)
        }
    }

    /// Version 2: where the whole blocks of a file of `len` bytes end.
    fn area_end(&self, len: u64) -> u64 {
        self.block_offset(self.last_block(len).unwrap_or(0))
    }

    /// Version 1: the physical length that holds `len` logical bytes.
    fn v1_physical_len(&self, len: u64) -> u64 {
        let rem = len % BLOCK_SIZE as u64;
        self.block_offset(len / BLOCK_SIZE as u64)
            + if rem == 0 {
                0
            } else {
                rem + BLOCK_OVERHEAD as u64
            }
    }

    fn corrupted(&self, block: u64, reason: &str) -> Error {
        Error::Corrupted {
            path: self.inner.path().to_path_buf(),
            offset: self.block_offset(block),
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
    /// block kept in memory) into `out` (`count * BLOCK_SIZE` bytes).
    fn read_whole_blocks(
        &self,
        file_id: &[u8; FILE_ID_LEN],
        first: u64,
        count: u64,
        out: &mut [u8],
    ) -> Result<()> {
        let mut stored = vec![0u8; count as usize * STORED_BLOCK_LEN];
        self.inner
            .read_at(self.block_offset(first), &mut stored)
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
        if Some(block) == self.last_block(state.len) {
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
        header[VERSION_AT..BLOCK_SIZE_AT].copy_from_slice(&self.version.to_le_bytes());
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

    /// Version 1: cuts bytes past the physical length before a write.
    fn trim_v1(&self, state: &mut State) -> Result<()> {
        if state.trim_needed {
            let physical = match state.file_id {
                Some(_) => self.v1_physical_len(state.disk_len),
                None => 0,
            };
            self.inner.set_len(physical)?;
            state.trim_needed = false;
        }
        Ok(())
    }

    /// Version 2: cuts whole blocks past the last block, once the slot
    /// naming the last block is durable (see the module docs).
    fn trim_v2(&self, state: &mut State) -> Result<()> {
        if !state.trim_needed
            || state.tail_dirty
            || state.file_id.is_none()
            || state.newest_slot != state.synced_slot
        {
            return Ok(());
        }
        let end = self.area_end(state.len);
        if self.inner.len()? > end {
            self.inner.set_len(end)?;
        }
        state.trim_needed = false;
        Ok(())
    }

    /// Version 2: a slot that neither the last sync nor a sync in progress
    /// protects, preferring the one with the newest (unsynced) version.
    fn free_slot(state: &State) -> Option<usize> {
        let free = |s: usize| Some(s) != state.synced_slot && Some(s) != state.in_flight_slot;
        match state.newest_slot {
            Some(s) if free(s) => Some(s),
            _ => (0..2).find(|&s| free(s)),
        }
    }

    /// Version 2: seals `plain` as the last block `block` into `slot` with
    /// the next sequence number.
    fn write_slot(
        &self,
        state: &mut State,
        file_id: &[u8; FILE_ID_LEN],
        slot: usize,
        block: u64,
        plain: &[u8],
    ) -> Result<()> {
        state.seq += 1;
        let header = slot_header(state.seq, block, plain.len() as u32);
        let mut out = Vec::with_capacity(SLOT_HEADER_LEN + BLOCK_OVERHEAD + plain.len());
        out.extend_from_slice(&header);
        let nonce = random_nonce();
        out.extend_from_slice(&nonce);
        let at = out.len();
        out.extend_from_slice(plain);
        let tag = self
            .cipher
            .encrypt_in_place_detached(
                XNonce::from_slice(&nonce),
                &slot_aad(file_id, &header),
                &mut out[at..],
            )
            .map_err(|_| self.corrupted(block, "sealing failed"))?;
        out.extend_from_slice(&tag);
        if let Err(err) = self.inner.write_at(slot_offset(slot), &out) {
            if state.newest_slot == Some(slot) {
                // The newest version was there, and may be torn now: the
                // plaintext in memory is sealed again before the next sync.
                state.newest_slot = None;
            }
            return Err(err);
        }
        state.newest_slot = Some(slot);
        if state.stale_slot == Some(slot) {
            state.stale_slot = None;
        }
        Ok(())
    }

    /// Version 2: before the first write after an open that found a slot
    /// that lost, overwrite that slot with the current last block and sync,
    /// so that it cannot win once the file grows again.
    fn retire_stale_slot(&self, state: &mut State, file_id: &[u8; FILE_ID_LEN]) -> Result<()> {
        let Some(slot) = state.stale_slot else {
            return Ok(());
        };
        let block = self.last_block(state.len).unwrap_or(0);
        let tail = state.tail.clone();
        self.write_slot(state, file_id, slot, block, &tail)?;
        self.inner.sync_data()?;
        state.synced_slot = Some(slot);
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
        if self.version == ENCRYPTED_VERSION_V1 {
            self.trim_v1(state)?;
        } else {
            self.retire_stale_slot(state, &file_id)?;
        }
        let v2 = self.version != ENCRYPTED_VERSION_V1;
        let new_len = state.len.max(end);
        let new_last = self.last_block(new_len);
        let bs = BLOCK_SIZE as u64;
        let mut block = offset.min(state.len) / bs;
        if v2 && let Some(old_last) = self.last_block(state.len) {
            // The old last block moves from its slot to the whole blocks
            // when the write makes a later block the last.
            if Some(old_last) != new_last {
                block = block.min(old_last);
            }
        }
        let last = (end - 1) / bs;
        let mut new_tail = None;
        while block <= last {
            let batch_end = (block + BLOCKS_PER_IO).min(last + 1);
            let first = block;
            let mut out = Vec::with_capacity((batch_end - first) as usize * STORED_BLOCK_LEN);
            let mut sealed_upto = 0;
            let mut batch_tail = None;
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
                if v2 && Some(block - 1) == new_last {
                    // The last block goes to a slot, after the whole blocks.
                    new_tail = Some(plain);
                } else if !v2 && block_len < BLOCK_SIZE && self.tail_sealed_at_sync {
                    // Version 1's partial last block, sealed at the next sync.
                    batch_tail = Some((plain, true));
                } else {
                    self.seal_block(&file_id, block - 1, &plain, &mut out)?;
                    sealed_upto = start + block_len as u64;
                    if block_len < BLOCK_SIZE {
                        batch_tail = Some((plain, false));
                    }
                }
            }
            if let Some(cache) = &self.cache {
                // Before the write: a failed write leaves the block unknown.
                cache.remove(&file_id, first, batch_end - first);
            }
            if !out.is_empty()
                && let Err(err) = self.inner.write_at(self.block_offset(first), &out)
            {
                // Version 1: part of `out` may have landed past the old
                // physical end; cut it before anything else is written.
                // Version 2: whole blocks past the last one are ignored.
                state.trim_needed = true;
                return Err(err);
            }
            if !v2 {
                // The blocks up to `sealed_upto` are on disk; an older
                // sealed version of a block past them may still be too.
                state.disk_len = state.disk_len.max(sealed_upto);
                state.len = state.len.max((batch_end * bs).min(new_len));
                match batch_tail {
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
        }
        if let (true, Some(tail), Some(last_block)) = (v2, new_tail, new_last) {
            self.store_last_block(state, &file_id, last_block, tail, new_len)?;
        }
        Ok(())
    }

    /// Version 2: makes `plain` the last block `block` of a file of
    /// `new_len` bytes, sealed into a free slot now, or kept in memory
    /// until the next sync (sealed at sync, or both slots protected).
    fn store_last_block(
        &self,
        state: &mut State,
        file_id: &[u8; FILE_ID_LEN],
        block: u64,
        plain: Vec<u8>,
        new_len: u64,
    ) -> Result<()> {
        let slot = match Self::free_slot(state) {
            Some(slot) if !self.tail_sealed_at_sync => slot,
            _ => {
                state.len = new_len;
                state.tail = plain;
                state.tail_dirty = true;
                return Ok(());
            }
        };
        if let Err(err) = self.write_slot(state, file_id, slot, block, &plain) {
            // The file keeps its old length and last block; if the newest
            // version of that block was torn, it is sealed again at sync.
            state.tail_dirty |= state.newest_slot.is_none();
            return Err(err);
        }
        state.len = new_len;
        state.tail = plain;
        state.tail_dirty = false;
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

    /// Seals and writes the last block if it has changes that are only in
    /// memory. Afterwards the stored blocks hold every byte, unless
    /// (version 2) both slots are protected by syncs.
    fn flush_tail(&self, state: &mut State) -> Result<()> {
        if !state.tail_dirty {
            return Ok(());
        }
        let Some(file_id) = state.file_id else {
            return Ok(());
        };
        if self.version != ENCRYPTED_VERSION_V1 {
            let Some(slot) = Self::free_slot(state) else {
                return Ok(());
            };
            let block = self.last_block(state.len).unwrap_or(0);
            let tail = std::mem::take(&mut state.tail);
            // A failed *write* (not a failed fsync) can be retried once:
            // the plaintext is still here, and the slot holds no synced
            // version.
            let result = self
                .write_slot(state, &file_id, slot, block, &tail)
                .or_else(|_| self.write_slot(state, &file_id, slot, block, &tail));
            state.tail = tail;
            result?;
            state.tail_dirty = false;
            return Ok(());
        }
        self.trim_v1(state)?;
        let block = state.len / BLOCK_SIZE as u64;
        let mut out = Vec::with_capacity(state.tail.len() + BLOCK_OVERHEAD);
        self.seal_block(&file_id, block, &state.tail, &mut out)?;
        if self.inner.write_at(self.block_offset(block), &out).is_err() {
            // A failed *write* (not a failed fsync) can be retried: the
            // plaintext is still here and nothing was synced. Cut what may
            // have landed, then write once more; a second failure is
            // returned, and the caller's sync fails with it.
            state.trim_needed = true;
            self.trim_v1(state)?;
            if let Err(err) = self.inner.write_at(self.block_offset(block), &out) {
                state.trim_needed = true;
                return Err(err);
            }
        }
        state.disk_len = state.len;
        state.tail_dirty = false;
        Ok(())
    }

    fn set_len_locked(&self, state: &mut State, new_len: u64) -> Result<()> {
        if new_len > MAX_LEN {
            return Err(self.overflow(new_len));
        }
        if self.version == ENCRYPTED_VERSION_V1 {
            self.flush_tail(state)?;
        }
        let bs = BLOCK_SIZE as u64;
        if new_len > state.len {
            let zeros = vec![0u8; (BLOCKS_PER_IO * bs) as usize];
            while state.len < new_len {
                let step = (new_len - state.len).min(zeros.len() as u64) as usize;
                let at = state.len;
                self.write_locked(state, at, &zeros[..step])?;
            }
            return if self.version == ENCRYPTED_VERSION_V1 {
                self.trim_v1(state)
            } else {
                Ok(())
            };
        }
        if new_len == state.len {
            return if self.version == ENCRYPTED_VERSION_V1 {
                self.trim_v1(state)
            } else {
                Ok(())
            };
        }
        let Some(file_id) = state.file_id else {
            return Ok(());
        };
        if self.version != ENCRYPTED_VERSION_V1 {
            return self.shrink_v2(state, &file_id, new_len);
        }
        let block = new_len / bs;
        let rem = (new_len % bs) as usize;
        let mut tail = Vec::new();
        if rem > 0 {
            // The new last block, cut to `rem` bytes and sealed afresh.
            tail = self.block_plaintext(state, block, rem)?;
            let mut out = Vec::with_capacity(rem + BLOCK_OVERHEAD);
            self.seal_block(&file_id, block, &tail, &mut out)?;
            if let Err(err) = self.inner.write_at(self.block_offset(block), &out) {
                state.trim_needed = true;
                return Err(err);
            }
        }
        state.len = new_len;
        state.disk_len = new_len;
        state.tail = tail;
        state.trim_needed = true;
        self.trim_v1(state)
    }

    /// Version 2: cuts the file to `new_len` bytes. The new last block goes
    /// into a free slot and is synced before the whole blocks past it are
    /// cut: the synced state never names whole blocks that a later write
    /// could overwrite (see the module docs). The caller holds `sync_lock`,
    /// so no sync is in flight and a free slot exists.
    fn shrink_v2(
        &self,
        state: &mut State,
        file_id: &[u8; FILE_ID_LEN],
        new_len: u64,
    ) -> Result<()> {
        self.retire_stale_slot(state, file_id)?;
        let block = self.last_block(new_len).unwrap_or(0);
        let want = (new_len - block * BLOCK_SIZE as u64) as usize;
        let tail = self.block_plaintext(state, block, want)?;
        let slot = Self::free_slot(state).ok_or_else(|| self.corrupted(block, "no free slot"))?;
        if let Err(err) = self.write_slot(state, file_id, slot, block, &tail) {
            state.tail_dirty |= state.newest_slot.is_none();
            return Err(err);
        }
        state.len = new_len;
        state.tail = tail;
        state.tail_dirty = false;
        self.inner.sync_data()?;
        state.synced_slot = Some(slot);
        state.trim_needed = true;
        self.trim_v2(state)
    }

    fn write_guard(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write()
    }
}

/// What anyone can read of an encrypted file without the key: the header's
/// clear fields and, in version 2, the clear fields of both slots. Nothing
/// here is authenticated; [`EncryptedFile::layout`] is, with the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicLayout {
    /// The file's length on disk.
    pub physical_len: u64,
    /// Whether the magic is `PYDBENCF`.
    pub magic_ok: bool,
    /// The layout version (1 or 2, or whatever a damaged header says).
    pub version: u32,
    /// The plaintext block size the header names.
    pub block_size: u32,
    /// The random file id.
    pub file_id: [u8; FILE_ID_LEN],
    /// Whole stored blocks the length covers (version 1: the last one
    /// included when whole).
    pub whole_blocks: u64,
    /// Version 1: bytes of a partial last stored block.
    pub partial_stored_len: u64,
    /// Version 2: the slots whose clear fields say they were written
    /// (seq not zero); `SlotInfo::chosen` is always false here.
    pub slots: Vec<SlotInfo>,
}

/// Reads the clear fields of an encrypted file (see [`PublicLayout`]);
/// `None` for a file shorter than a header.
pub fn describe_public<F: File>(inner: &F) -> Result<Option<PublicLayout>> {
    let physical = inner.len()?;
    if physical < ENCRYPTED_HEADER_LEN as u64 {
        return Ok(None);
    }
    let mut header = [0u8; ENCRYPTED_HEADER_LEN];
    inner.read_at(0, &mut header)?;
    let u32_at = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let mut file_id = [0u8; FILE_ID_LEN];
    file_id.copy_from_slice(&header[FILE_ID_AT..HEADER_NONCE_AT]);
    let version = u32_at(VERSION_AT);
    let mut layout = PublicLayout {
        physical_len: physical,
        magic_ok: header[..8] == ENCRYPTED_MAGIC,
        version,
        block_size: u32_at(BLOCK_SIZE_AT),
        file_id,
        whole_blocks: 0,
        partial_stored_len: 0,
        slots: Vec::new(),
    };
    if version == ENCRYPTED_VERSION_V1 {
        let body = physical - ENCRYPTED_HEADER_LEN as u64;
        layout.whole_blocks = body / STORED_BLOCK_LEN as u64;
        layout.partial_stored_len = body % STORED_BLOCK_LEN as u64;
        return Ok(Some(layout));
    }
    layout.whole_blocks = physical.saturating_sub(ENCRYPTED_DATA_AT) / STORED_BLOCK_LEN as u64;
    for slot in 0..2 {
        let at = slot_offset(slot);
        if physical < at + SLOT_HEADER_LEN as u64 {
            continue;
        }
        let mut raw = [0u8; SLOT_HEADER_LEN];
        inner.read_at(at, &mut raw)?;
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&raw[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let seq = u64_at(SLOT_SEQ_AT);
        if seq == 0 {
            continue;
        }
        let mut n = [0u8; 4];
        n.copy_from_slice(&raw[SLOT_LEN_AT..SLOT_ZERO_AT]);
        layout.slots.push(SlotInfo {
            slot,
            seq,
            block: u64_at(SLOT_BLOCK_AT),
            len: u32::from_le_bytes(n),
            chosen: false,
        });
    }
    Ok(Some(layout))
}

/// Checks a header's magic, version, block size and tag; returns the
/// version and the file id.
fn check_header(
    cipher: &XChaCha20Poly1305,
    header: &[u8; ENCRYPTED_HEADER_LEN],
    path: &Path,
) -> Result<(u32, [u8; FILE_ID_LEN])> {
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
    if version != ENCRYPTED_VERSION && version != ENCRYPTED_VERSION_V1 {
        return Err(Error::Unsupported {
            path: path.to_path_buf(),
            reason: format!(
                "encrypted file version {version}; this build reads {ENCRYPTED_VERSION_V1} and {ENCRYPTED_VERSION}"
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
    Ok((version, id))
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
        let tail_block = self.last_block(state.len);
        let mut block = offset / bs;
        let last = (end - 1) / bs;
        let mut plain = Vec::new();
        while block <= last {
            let start = block * bs;
            let hit = match &self.cache {
                Some(cache) if Some(block) != tail_block && last == block => {
                    cache.get(&file_id, block)
                }
                _ => None,
            };
            let (count, bytes) = if let Some(hit) = &hit {
                // A read within one cached block: copy straight from it.
                (1, &hit[..])
            } else if Some(block) == tail_block {
                (1, &state.tail[..])
            } else {
                let stop = (block + BLOCKS_PER_IO)
                    .min(last + 1)
                    .min(tail_block.unwrap_or(u64::MAX));
                let count = stop - block;
                plain.resize(count as usize * BLOCK_SIZE, 0);
                self.read_whole_blocks(&file_id, block, count, &mut plain)?;
                if let Some(cache) = &self.cache
                    && count == 1
                {
                    cache.insert(&file_id, block, &plain);
                }
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
        // A shrink syncs (see `shrink_v2`), so it waits for a sync in flight.
        let _one_sync_at_a_time = self.sync_lock.lock();
        let mut state = self.write_guard();
        self.set_len_locked(&mut state, len)
    }

    fn sync_data(&self) -> Result<()> {
        if self.version == ENCRYPTED_VERSION_V1 {
            let pending = {
                let state = self.state.read();
                state.trim_needed || state.tail_dirty
            };
            if pending {
                let mut state = self.write_guard();
                self.trim_v1(&mut state)?;
                self.flush_tail(&mut state)?;
            }
            return self.inner.sync_data();
        }
        let _one_sync_at_a_time = self.sync_lock.lock();
        {
            let mut state = self.write_guard();
            if let Some(file_id) = state.file_id {
                self.retire_stale_slot(&mut state, &file_id)?;
            }
            self.flush_tail(&mut state)?;
            state.in_flight_slot = state.newest_slot;
        }
        // Every byte is now in `inner`; no lock is held across the fsync,
        // so a group-commit leader's fsync does not stall other appends.
        let synced = self.inner.sync_data();
        let mut state = self.write_guard();
        let in_flight = state.in_flight_slot.take();
        synced?;
        if in_flight.is_some() {
            state.synced_slot = in_flight;
        }
        // Cut leftover whole blocks now that the last block's slot is
        // durable, then seal a last block that waited for this sync. Both
        // are best effort: this sync's bytes are durable whatever happens
        // here, and the next sync retries (and reports) them.
        let _ = self.trim_v2(&mut state);
        let _ = self.flush_tail(&mut state);
        Ok(())
    }
}

impl<F: File> Drop for EncryptedFile<F> {
    fn drop(&mut self) {
        // Best effort: hand the unsealed last block to the OS, so a clean
        // close keeps it. Not a sync; a failure here is what a crash would
        // do.
        let (dirty, file_id, len) = {
            let state = self.state.get_mut();
            (state.tail_dirty, state.file_id, state.len)
        };
        let Some(file_id) = file_id.filter(|_| dirty) else {
            return;
        };
        if self.version != ENCRYPTED_VERSION_V1 {
            let mut state = self.state.write();
            let _ = self.flush_tail(&mut state);
            return;
        }
        let block = len / BLOCK_SIZE as u64;
        let at = self.block_offset(block);
        let mut out = Vec::with_capacity(BLOCK_SIZE + BLOCK_OVERHEAD);
        let tail = &self.state.get_mut().tail;
        if seal_into(&self.cipher, &file_id, block, tail, &mut out).is_ok() {
            let _ = self.inner.write_at(at, &out);
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
    cache: Option<Arc<BlockCache>>,
}

impl<O> EncryptedOpener<O> {
    /// Encrypts the files of `inner` with `key`.
    pub fn new(inner: O, key: DataKey) -> Self {
        Self {
            inner,
            key: Arc::new(key),
            tail_sealed_at_sync: false,
            cache: Some(Arc::new(BlockCache::new(DEFAULT_BLOCK_CACHE_BYTES))),
        }
    }

    /// Shares a cache of `bytes` of decrypted blocks among the files it
    /// opens (0: none). Default [`DEFAULT_BLOCK_CACHE_BYTES`].
    pub fn with_block_cache_bytes(mut self, bytes: usize) -> Self {
        self.cache = (bytes >= BLOCK_SIZE).then(|| Arc::new(BlockCache::new(bytes)));
        self
    }

    /// The shared block cache, if any.
    pub fn block_cache(&self) -> Option<&Arc<BlockCache>> {
        self.cache.as_ref()
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
                .with_tail_sealed_at_sync(self.tail_sealed_at_sync)
                .with_block_cache(self.cache.clone()),
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
#[cfg(test)]
impl<F: File> EncryptedFile<F> {
    /// Writes the version 1 layout (tests of old files only); call before
    /// the first write.
    pub(crate) fn with_version_for_tests(mut self, version: u32) -> Self {
        self.version = version;
        self
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

    fn u32_at(raw: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(raw[at..at + 4].try_into().unwrap())
    }

    fn u64_at(raw: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(raw[at..at + 8].try_into().unwrap())
    }

    /// (seq, block, n) of slot `s` as stored in the clear.
    fn slot(raw: &[u8], s: usize) -> (u64, u64, u32) {
        let at = 72 + s * 4160;
        assert_eq!(u32_at(raw, at + 20), 0, "the zero field");
        (u64_at(raw, at), u64_at(raw, at + 8), u32_at(raw, at + 16))
    }

    /// The pinned example of docs/formats.md: every clear byte of the
    /// header and of the slots after three appends and syncs.
    #[test]
    fn the_header_slots_and_blocks_are_as_documented() {
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
        assert_eq!(raw[8..12], 2u32.to_le_bytes());
        assert_eq!(raw[12..16], 4096u32.to_le_bytes());
        let layout = file.layout();
        assert_eq!(layout.version, 2);
        assert_eq!(&raw[16..32], &layout.file_id.unwrap());
        // Block 0 is a whole block after both slots; the last block (904
        // bytes) is in slot 0, seq 1.
        assert_eq!(slot(&raw, 0), (1, 1, 904));
        assert_eq!(raw.len(), 8392 + 4136);
        assert_eq!(
            &raw[72 + 4160..72 + 2 * 4160],
            &[0u8; 4160][..],
            "slot 1 unused"
        );
        assert_eq!(layout.physical_len, raw.len() as u64);
        assert_eq!(layout.blocks, 2);
        // No plaintext run survives.
        assert!(!raw.windows(16).any(|w| w == [0xAA; 16]));

        // The next version of the last block goes to the other slot; the
        // synced one is not touched.
        file.append(&[0xBB; 100]).unwrap();
        let raw2 = std::fs::read(&path).unwrap();
        assert_eq!(slot(&raw2, 1), (2, 1, 1004));
        assert_eq!(raw2[72..72 + 4160], raw[72..72 + 4160]);
        // Unsynced, further versions stay in slot 1.
        file.append(&[0xCC; 10]).unwrap();
        let raw3 = std::fs::read(&path).unwrap();
        assert_eq!(slot(&raw3, 1), (3, 1, 1014));
        assert_eq!(raw3[72..72 + 4160], raw[72..72 + 4160]);
        file.sync_data().unwrap();
        // Crossing into block 2: block 1 becomes a whole block, and block 2
        // goes to slot 0 (slot 1 holds the synced version).
        file.append(&[0xDD; 4000]).unwrap();
        let raw4 = std::fs::read(&path).unwrap();
        assert_eq!(slot(&raw4, 0), (4, 2, 5000 + 100 + 10 + 4000 - 8192));
        assert_eq!(raw4.len(), 8392 + 2 * 4136);
        drop(file);
        let file = open(&path);
        let mut want = vec![0xAA; 5000];
        want.extend_from_slice(&[0xBB; 100]);
        want.extend_from_slice(&[0xCC; 10]);
        want.extend_from_slice(&[0xDD; 4000]);
        assert_eq!(read_all(&file), want);
        let slots = file.layout().slots;
        assert_eq!(slots.len(), 2);
        assert!(slots.iter().any(|s| s.chosen && s.seq == 4 && s.slot == 0));
    }

    #[test]
    fn a_torn_reseal_of_the_last_block_never_damages_its_synced_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = open(&path);
        file.append(&[1u8; 5000]).unwrap();
        file.sync_data().unwrap();
        file.append(&[2u8; 300]).unwrap();
        drop(file);
        // Tear the unsynced version (slot 1) at every sector boundary and
        // in the middle of its ciphertext: the synced 5000 bytes come back.
        let whole = std::fs::read(&path).unwrap();
        for cut in [512usize, 1000, 200, 48, 30] {
            let mut raw = whole.clone();
            let at = 72 + 4160 + cut;
            for b in &mut raw[at..at + 100] {
                *b ^= 0x5A;
            }
            std::fs::write(&path, &raw).unwrap();
            let file = open(&path);
            assert_eq!(read_all(&file), vec![1u8; 5000], "cut at {cut}");
        }
        // Untorn, the newest version wins.
        std::fs::write(&path, &whole).unwrap();
        let mut want = vec![1u8; 5000];
        want.extend_from_slice(&[2u8; 300]);
        assert_eq!(read_all(&open(&path)), want);
    }

    #[test]
    fn a_crossing_write_whose_whole_block_was_torn_falls_back_to_the_older_slot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = open(&path);
        file.append(&[1u8; 3000]).unwrap();
        file.sync_data().unwrap();
        file.append(&[2u8; 3000]).unwrap();
        drop(file);
        // Slot 1 (block 1) landed, but the whole block 0 it needs did not.
        let mut raw = std::fs::read(&path).unwrap();
        raw[8392 + 100] ^= 1;
        std::fs::write(&path, &raw).unwrap();
        let file = open(&path);
        assert_eq!(read_all(&file), vec![1u8; 3000]);
        assert!(file.dropped_tail().is_some());
        // The slot that lost is retired before the file grows again, so it
        // can never come back.
        file.append(&[3u8; 2000]).unwrap();
        file.sync_data().unwrap();
        drop(file);
        let mut want = vec![1u8; 3000];
        want.extend_from_slice(&[3u8; 2000]);
        assert_eq!(read_all(&open(&path)), want);
    }

    #[test]
    fn version_1_files_still_open_and_grow_in_their_own_layout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = open(&path).with_version_for_tests(ENCRYPTED_VERSION_V1);
        file.append(&[0xAA; 5000]).unwrap();
        file.sync_data().unwrap();
        drop(file);
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(raw[8..12], 1u32.to_le_bytes());
        // One whole block and a last block of 904 bytes, right after the
        // header.
        assert_eq!(raw.len(), 72 + 4136 + 904 + 40);
        let file = open(&path);
        assert_eq!(file.layout().version, 1);
        assert_eq!(read_all(&file), vec![0xAA; 5000]);
        file.append(b"more").unwrap();
        file.set_len(4100).unwrap();
        file.sync_data().unwrap();
        drop(file);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 72 + 4136 + 4 + 40);
        let mut want = vec![0xAA; 4096];
        want.extend_from_slice(&[0xAA; 4]);
        assert_eq!(read_all(&open(&path)), want);
    }

    #[test]
    fn appends_between_syncs_seal_the_last_block_once_at_the_sync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = open(&path).with_tail_sealed_at_sync(true);
        let disk = || std::fs::read(&path).unwrap();
        let mut model = Vec::new();
        for i in 0..31u8 {
            file.append(&[i; 100]).unwrap();
            model.extend_from_slice(&[i; 100]);
        }
        // 3100 bytes in the last block: only the header is on disk, and
        // readers see every append from memory.
        assert_eq!(disk().len(), 72);
        assert_eq!(read_all(&file), model);
        file.sync_data().unwrap();
        assert_eq!(slot(&disk(), 0), (1, 0, 3100));
        let first_seal = disk();
        // A sync with nothing new writes nothing.
        file.sync_data().unwrap();
        assert_eq!(disk(), first_seal);
        // Filling the block writes it whole at once; the new last block
        // waits for the next sync.
        file.append(&[0xEE; 2000]).unwrap();
        model.extend_from_slice(&[0xEE; 2000]);
        assert_eq!(disk().len(), 8392 + 4136);
        file.sync_data().unwrap();
        assert_eq!(slot(&disk(), 1), (2, 1, 1004));
        // An in-place write into the last block is held the same way.
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
        let block = |raw: &[u8], i: usize| raw[8392 + i * 4136..8392 + (i + 1) * 4136].to_vec();
        let slots = |raw: &[u8]| raw[72..8392].to_vec();
        assert_eq!(block(&before, 0), block(&after, 0));
        assert_eq!(slots(&before), slots(&after), "the last block is untouched");
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
        file.sync_data().unwrap();
        file.set_len(5000).unwrap();
        assert_eq!(read_all(&file), data[..5000]);
        // The new last block went to a slot; the whole blocks past it are
        // cut only after the sync that makes that slot durable.
        assert_eq!(slot(&std::fs::read(&path).unwrap(), 1), (2, 1, 904));
        file.sync_data().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8392 + 4136);
        file.set_len(4096).unwrap();
        file.sync_data().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8392);
        file.set_len(9000).unwrap();
        let mut want = data[..4096].to_vec();
        want.resize(9000, 0);
        assert_eq!(read_all(&file), want);
        file.set_len(0).unwrap();
        file.sync_data().unwrap();
        drop(file);
        let file = open(&path);
        assert_eq!(file.len().unwrap(), 0);
        file.append(b"again").unwrap();
        assert_eq!(read_all(&file), b"again");
        drop(file);
        assert_eq!(read_all(&open(&path)), b"again");
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
    fn a_cut_file_keeps_its_last_synced_length_or_reports_a_dropped_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = open(&path);
        file.append(&[3u8; 4096 + 100]).unwrap();
        drop(file);
        // Cut into the whole block: the slot names a block the file no
        // longer reaches, so nothing checks out.
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 30]).unwrap();
        let file = open(&path);
        assert_eq!(file.len().unwrap(), 0);
        let dropped = file.dropped_tail().unwrap();
        assert_eq!(dropped.offset, 72);
        assert_eq!(dropped.reason, "no last-block slot checks out");
        file.append(b"next").unwrap();
        drop(file);
        let file = open(&path);
        assert!(file.dropped_tail().is_none());
        assert_eq!(read_all(&file), b"next");
    }

    #[test]
    fn a_damaged_middle_block_is_a_corrupted_error_naming_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        open(&path).append(&[5u8; 3 * 4096]).unwrap();
        let mut raw = std::fs::read(&path).unwrap();
        raw[8392 + 4136 + 100] ^= 1;
        std::fs::write(&path, &raw).unwrap();
        let file = open(&path);
        let mut buf = [0u8; 10];
        file.read_at(0, &mut buf).unwrap();
        let err = file.read_at(4096, &mut buf).unwrap_err();
        assert!(
            matches!(&err, Error::Corrupted { offset, path: p, .. } if *offset == 8392 + 4136 && p == &path),
            "{err}"
        );
        // A write into the damaged block cannot keep its other bytes: refused.
        assert!(file.write_at(4096 + 5, b"x").is_err());
    }
    #[test]
    fn the_block_cache_serves_repeated_reads_and_forgets_rewritten_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let opener = EncryptedOpener::new(crate::MonolithicOpener, key());
        let file = opener.open(&path, true).unwrap();
        file.append(&[1u8; 3 * 4096]).unwrap();
        let cache = opener.block_cache().unwrap().clone();
        let mut buf = [0u8; 100];
        file.read_at(4096 + 10, &mut buf).unwrap();
        file.read_at(4096 + 500, &mut buf).unwrap();
        assert_eq!(cache.hits_and_misses(), (1, 1));
        // A write of the block removes it; the next read sees the new bytes.
        file.write_at(4096 + 500, &[2u8; 100]).unwrap();
        file.read_at(4096 + 500, &mut buf).unwrap();
        assert_eq!(buf, [2u8; 100]);
        assert_eq!(cache.hits_and_misses(), (1, 2));
        // So does a shrink and a regrowth through it.
        file.set_len(4096 + 4000).unwrap();
        file.append(&[3u8; 5000]).unwrap();
        file.read_at(4096 + 4000, &mut buf).unwrap();
        assert_eq!(buf, [3u8; 100]);
        // Bounded: a cache of two blocks holds two.
        let small = BlockCache::new(2 * 4096);
        for block in 0..5 {
            small.insert(&[9; FILE_ID_LEN], block, &[0u8; 4096]);
        }
        assert_eq!(small.blocks.lock().map.len(), 2);
        assert!(small.get(&[9; FILE_ID_LEN], 4).is_some());
        assert!(small.get(&[9; FILE_ID_LEN], 0).is_none());
    }
}
