//! The directory metadata file `PYDB`: which engine wrote a database, and in
//! which format version.
//!
//! Every persistent database directory holds one small `PYDB` file, written
//! when the database is created. Opening a directory reads it first, so that
//! a database is never opened by the wrong engine (which would read its
//! files as garbage, or worse, write into them), a directory that is not a
//! database is never written into, and a database written by a newer pydb is
//! refused instead of misread.
//!
//! ## Layout (20 bytes, little-endian; docs/formats.md draws it)
//!
//! ```text
//!   0  [u8; 8]  magic "PYDBMETA"
//!   8  u32      format version (2; 1 before transactions, same layout)
//!  12  u8       engine id: 1 = log, 2 = btree
//!  13  u8       index id: 0 = none, 1 = hash, 2 = btree, 3 = skiplist
//!  14  [u8; 2]  reserved, zero
//!  16  u32      CRC-32 of bytes 0..16
//! ```
//!
//! ## Invariants
//!
//! - The file is replaced atomically: written to `PYDB.tmp`, synced, renamed
//!   over `PYDB`, and the directory synced. A crash leaves either the old
//!   file or the new one, never a mix; a leftover `PYDB.tmp` is removed.
//! - The version is checked before the length and the checksum: a newer
//!   format may be longer or keep its checksum elsewhere, so all a reader of
//!   version 1 may rely on in a newer file is bytes 0..12. Every future
//!   version keeps the magic and the version where they are.

use std::path::{Path, PathBuf};

use crate::db::{EngineKind, IndexKind};
use crate::{Error, Result};

/// The name of the metadata file inside a database directory.
pub const META_FILE_NAME: &str = "PYDB";
/// The name of the temporary file the metadata is written to before the
/// rename that makes it visible.
pub const META_TEMP_FILE_NAME: &str = "PYDB.tmp";
/// The magic bytes that open the metadata file.
pub const META_MAGIC: [u8; 8] = *b"PYDBMETA";
/// The newest metadata format version this build writes and reads.
///
/// - 1: the engine holds the user's keys as they are.
/// - 2: the engine holds *version keys* of `pydb-txn` (`key | inverted
///   commit timestamp`) and its metadata keys; the `PYDB` layout itself is
///   unchanged. A version 1 directory is refused with
///   [`Error::OldFormat`]: its plain keys would
///   read as damaged versions.
pub const META_FORMAT_VERSION: u32 = 2;
/// The oldest format version this build opens (the first with version keys).
pub const META_OLDEST_OPENABLE_VERSION: u32 = 2;

/// Offset of the magic.
pub const META_MAGIC_OFFSET: usize = 0;
/// Offset of the format version.
pub const META_VERSION_OFFSET: usize = 8;
/// Offset of the engine id.
pub const META_ENGINE_OFFSET: usize = 12;
/// Offset of the index id.
pub const META_INDEX_OFFSET: usize = 13;
/// Offset of the two reserved bytes.
pub const META_RESERVED_OFFSET: usize = 14;
/// Offset of the checksum.
pub const META_CRC_OFFSET: usize = 16;
/// The length of the whole file in format versions 1 and 2.
pub const META_LEN: usize = 20;

/// Engine id of the append-only log engine.
pub const ENGINE_ID_LOG: u8 = 1;
/// Engine id of the B+tree engine.
pub const ENGINE_ID_BTREE: u8 = 2;
/// Engine id of the LSM-tree engine.
pub const ENGINE_ID_LSM: u8 = 3;
/// Index id meaning "the engine keeps no separate index".
pub const INDEX_ID_NONE: u8 = 0;
/// Index id of the hash index.
pub const INDEX_ID_HASH: u8 = 1;
/// Index id of the B-tree (`BTreeMap`) index.
pub const INDEX_ID_BTREE: u8 = 2;
/// Index id of the skip-list index.
pub const INDEX_ID_SKIPLIST: u8 = 3;

/// What the metadata file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    /// The format version the file was written in.
    pub format_version: u32,
    /// The engine that owns the directory (never [`EngineKind::Memory`]).
    pub engine: EngineKind,
    /// The in-memory index the engine was last opened with, if it has one.
    pub index: Option<IndexKind>,
}

impl Metadata {
    /// The metadata of a database of `engine` with `index`, in the current
    /// format version.
    pub fn new(engine: EngineKind, index: Option<IndexKind>) -> Self {
        Self {
            format_version: META_FORMAT_VERSION,
            engine,
            index,
        }
    }
}

/// The id stored for `engine`, or `None` for the memory engine, which has no
/// directory.
pub fn engine_id(engine: EngineKind) -> Option<u8> {
    match engine {
        EngineKind::Log => Some(ENGINE_ID_LOG),
        EngineKind::BTree => Some(ENGINE_ID_BTREE),
        EngineKind::Lsm => Some(ENGINE_ID_LSM),
        EngineKind::Memory => None,
    }
}

/// The engine stored as `id`.
pub fn engine_from_id(id: u8) -> Option<EngineKind> {
    match id {
        ENGINE_ID_LOG => Some(EngineKind::Log),
        ENGINE_ID_BTREE => Some(EngineKind::BTree),
        ENGINE_ID_LSM => Some(EngineKind::Lsm),
        _ => None,
    }
}

/// The id stored for `index`.
pub fn index_id(index: Option<IndexKind>) -> u8 {
    match index {
        None => INDEX_ID_NONE,
        Some(IndexKind::Hash) => INDEX_ID_HASH,
        Some(IndexKind::BTree) => INDEX_ID_BTREE,
        Some(IndexKind::SkipList) => INDEX_ID_SKIPLIST,
    }
}

/// The index stored as `id`: `Some(None)` for "no index", `None` if unknown.
pub fn index_from_id(id: u8) -> Option<Option<IndexKind>> {
    match id {
        INDEX_ID_NONE => Some(None),
        INDEX_ID_HASH => Some(Some(IndexKind::Hash)),
        INDEX_ID_BTREE => Some(Some(IndexKind::BTree)),
        INDEX_ID_SKIPLIST => Some(Some(IndexKind::SkipList)),
        _ => None,
    }
}

/// Encodes `meta` in the current format version. Fails for the memory
/// engine, which is never recorded on disk.
pub fn encode(meta: &Metadata) -> Result<[u8; META_LEN]> {
    let engine = engine_id(meta.engine)
        .ok_or_else(|| Error::InvalidArgument("the memory engine keeps no metadata file".into()))?;
    let mut out = [0u8; META_LEN];
    out[META_MAGIC_OFFSET..META_VERSION_OFFSET].copy_from_slice(&META_MAGIC);
    out[META_VERSION_OFFSET..META_ENGINE_OFFSET]
        .copy_from_slice(&META_FORMAT_VERSION.to_le_bytes());
    out[META_ENGINE_OFFSET] = engine;
    out[META_INDEX_OFFSET] = index_id(meta.index);
    // Bytes 14..16 stay zero: reserved.
    let crc = crc32fast::hash(&out[..META_CRC_OFFSET]);
    out[META_CRC_OFFSET..META_LEN].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Decodes and verifies the bytes of the metadata file at `path` (used in
/// error reports only).
pub fn decode(path: &Path, bytes: &[u8]) -> Result<Metadata> {
    let corrupted = |offset: usize, reason: String| Error::corrupted(path, offset as u64, reason);
    let magic = bytes
        .get(META_MAGIC_OFFSET..META_VERSION_OFFSET)
        .ok_or_else(|| corrupted(0, format!("metadata file of {} bytes", bytes.len())))?;
    if magic != META_MAGIC {
        return Err(corrupted(0, "not a pydb metadata file (bad magic)".into()));
    }
    let version = read_u32(bytes, META_VERSION_OFFSET)
        .ok_or_else(|| corrupted(0, format!("metadata file of {} bytes", bytes.len())))?;
    if version > META_FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: META_FORMAT_VERSION,
        });
    }
    if bytes.len() != META_LEN {
        return Err(corrupted(
            0,
            format!(
                "metadata file of {} bytes, expected {META_LEN}",
                bytes.len()
            ),
        ));
    }
    let stored = read_u32(bytes, META_CRC_OFFSET).unwrap_or_default();
    let computed = crc32fast::hash(&bytes[..META_CRC_OFFSET]);
    if stored != computed {
        return Err(corrupted(
            META_CRC_OFFSET,
            format!(
                "metadata checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
        ));
    }
    if version == 0 {
        return Err(corrupted(META_VERSION_OFFSET, "format version 0".into()));
    }
    let engine = engine_from_id(bytes[META_ENGINE_OFFSET]).ok_or_else(|| {
        corrupted(
            META_ENGINE_OFFSET,
            format!("unknown engine id {}", bytes[META_ENGINE_OFFSET]),
        )
    })?;
    let index = index_from_id(bytes[META_INDEX_OFFSET]).ok_or_else(|| {
        corrupted(
            META_INDEX_OFFSET,
            format!("unknown index id {}", bytes[META_INDEX_OFFSET]),
        )
    })?;
    if bytes[META_RESERVED_OFFSET..META_CRC_OFFSET] != [0, 0] {
        return Err(corrupted(
            META_RESERVED_OFFSET,
            "reserved bytes are not zero".into(),
        ));
    }
    Ok(Metadata {
        format_version: version,
        engine,
        index,
    })
}

/// The fields of a metadata file as stored, whether or not they verify:
/// what `pydb inspect` shows next to its hex dump. A field is `None` when
/// the file is too short to hold it. [`decode`] is the verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaFields {
    /// The format version.
    pub version: Option<u32>,
    /// The engine id byte.
    pub engine: Option<u8>,
    /// The index id byte.
    pub index: Option<u8>,
    /// The two reserved bytes.
    pub reserved: Option<[u8; 2]>,
    /// The checksum as stored.
    pub stored_crc: Option<u32>,
    /// The checksum of the bytes it covers, when the file holds them.
    pub computed_crc: Option<u32>,
}

/// Reads the fields of a metadata file without judging them (see
/// [`MetaFields`]).
pub fn fields(bytes: &[u8]) -> MetaFields {
    MetaFields {
        version: read_u32(bytes, META_VERSION_OFFSET),
        engine: bytes.get(META_ENGINE_OFFSET).copied(),
        index: bytes.get(META_INDEX_OFFSET).copied(),
        reserved: bytes
            .get(META_RESERVED_OFFSET..META_CRC_OFFSET)
            .and_then(|r| r.try_into().ok()),
        stored_crc: read_u32(bytes, META_CRC_OFFSET),
        computed_crc: bytes.get(..META_CRC_OFFSET).map(crc32fast::hash),
    }
}

/// The path of the metadata file of `dir`.
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(META_FILE_NAME)
}

/// Reads the metadata of `dir`; `Ok(None)` if the directory has no `PYDB`.
pub fn read(dir: &Path) -> Result<Option<Metadata>> {
    let path = path_in(dir);
    // Refuse to read a huge file into memory: anything far longer than a
    // metadata file is not one.
    const READ_LIMIT: u64 = 4096;
    let bytes = match std::fs::File::open(&path) {
        Ok(file) => {
            use std::io::Read;
            let mut bytes = Vec::new();
            file.take(READ_LIMIT)
                .read_to_end(&mut bytes)
                .map_err(|e| Error::io(&path, e))?;
            bytes
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    decode(&path, &bytes).map(Some)
}

/// Writes the metadata of `dir` atomically: temp file, fsync, rename over
/// `PYDB`, fsync of the directory.
pub fn write(dir: &Path, meta: &Metadata) -> Result<()> {
    use std::io::Write;
    let bytes = encode(meta)?;
    let temp = dir.join(META_TEMP_FILE_NAME);
    let path = path_in(dir);
    let mut file = std::fs::File::create(&temp).map_err(|e| Error::io(&temp, e))?;
    file.write_all(&bytes).map_err(|e| Error::io(&temp, e))?;
    file.sync_all().map_err(|e| Error::io(&temp, e))?;
    drop(file);
    std::fs::rename(&temp, &path).map_err(|e| Error::io(&path, e))?;
    pydb_file::sync_dir(dir).map_err(|e| Error::Storage(e.into()))?;
    Ok(())
}

/// Removes a `PYDB.tmp` left behind by a crash during [`write()`].
pub fn remove_stale_temp(dir: &Path) -> Result<()> {
    let temp = dir.join(META_TEMP_FILE_NAME);
    match std::fs::remove_file(&temp) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(&temp, e)),
    }
}

/// Reads a little-endian `u32` at `at`, or `None` past the end.
fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let word: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> &'static Path {
        Path::new("PYDB")
    }

    #[test]
    fn round_trips_every_engine_and_index() {
        for engine in [EngineKind::Log, EngineKind::BTree] {
            for index in [
                None,
                Some(IndexKind::Hash),
                Some(IndexKind::BTree),
                Some(IndexKind::SkipList),
            ] {
                let meta = Metadata::new(engine, index);
                let bytes = encode(&meta).unwrap();
                assert_eq!(decode(path(), &bytes).unwrap(), meta);
            }
        }
    }

    #[test]
    fn memory_engine_is_never_encoded() {
        assert!(encode(&Metadata::new(EngineKind::Memory, None)).is_err());
    }

    #[test]
    fn every_bit_flip_and_truncation_is_an_error() {
        let bytes = encode(&Metadata::new(EngineKind::Log, Some(IndexKind::BTree))).unwrap();
        for cut in 0..META_LEN {
            assert!(decode(path(), &bytes[..cut]).is_err(), "cut at {cut}");
        }
        for byte in 0..META_LEN {
            for bit in 0..8 {
                let mut damaged = bytes;
                damaged[byte] ^= 1 << bit;
                let err = decode(path(), &damaged).unwrap_err();
                // A flip in the version field may read as a newer version;
                // every other flip is damage.
                assert!(
                    err.is_corruption() || matches!(err, Error::UnsupportedVersion { .. }),
                    "flip of bit {bit} in byte {byte}: {err}"
                );
            }
        }
    }

    #[test]
    fn newer_version_is_refused_even_with_another_layout() {
        let mut bytes = b"PYDBMETA".to_vec();
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&[9; 40]);
        let err = decode(path(), &bytes).unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnsupportedVersion {
                    found: 3,
                    supported: 2,
                    ..
                }
            ),
            "{err}"
        );
    }
}
