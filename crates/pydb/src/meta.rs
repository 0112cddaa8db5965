//! The directory metadata file `PYDB`: which engine wrote a database, in
//! which format version, and how its files are stored (encrypted,
//! compressed).
//!
//! Every persistent database directory holds one small `PYDB` file, written
//! when the database is created. Opening a directory reads it first, so that
//! a database is never opened by the wrong engine (which would read its
//! files as garbage, or worse, write into them), a directory that is not a
//! database is never written into, a database written by a newer pydb is
//! refused instead of misread, and an encrypted or compressed database is
//! never read as plain files (or a plain one written with a decorator).
//!
//! ## Layout (little-endian; docs/formats.md draws it)
//!
//! ```text
//!   0  [u8; 8]   magic "PYDBMETA"
//!   8  u32       format version (3; 2 and 1 had no flags, same first 20 bytes)
//!  12  u8        engine id: 1 = log, 2 = btree, 3 = lsm
//!  13  u8        index id: 0 = none, 1 = hash, 2 = btree, 3 = skiplist, 4 = bplustree
//!  14  u8        flags: bit 0 = encrypted, bit 1 = lz4-compressed (zero in v1, v2)
//!  15  u8        reserved, zero
//!  16  [u8; 112] the wrapped data key (`pydb_file::WrappedKey`), only when encrypted
//!  16 or 128 u32 CRC-32 of every byte before it
//! ```
//!
//! So the file is 20 bytes, or 132 for an encrypted database.
//!
//! ## Invariants
//!
//! - The file is replaced atomically: written to `PYDB.tmp`, synced, renamed
//!   over `PYDB`, and the directory synced. A crash leaves either the old
//!   file or the new one, never a mix; a leftover `PYDB.tmp` is removed.
//!   Key rotation ([`crate::db::rotate_key`]) relies on this: the old and
//!   the new wrapped key are never both half there.
//! - The version is checked before the length and the checksum: a newer
//!   format may be longer or keep its checksum elsewhere, so all a reader of
//!   version 1 may rely on in a newer file is bytes 0..12. Every future
//!   version keeps the magic and the version where they are.
//! - The wrapped key is public (it is encrypted with the key-encryption key
//!   derived from the user's key file); the data key itself is never written.

use std::path::{Path, PathBuf};

use pydb_file::WrappedKey;
use pydb_file::keys::WRAPPED_KEY_LEN;

use crate::db::{Compression, EngineKind, IndexKind};
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
/// - 3: byte 14 holds flags (encrypted, lz4), and an encrypted database
///   stores its wrapped data key after byte 16. A version 2 directory opens
///   as a plain (unencrypted, uncompressed) one and is rewritten as
///   version 3 on open.
pub const META_FORMAT_VERSION: u32 = 3;
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
/// Offset of the flags byte (reserved and zero before version 3).
pub const META_FLAGS_OFFSET: usize = 14;
/// Offset of the reserved byte.
pub const META_RESERVED_OFFSET: usize = 15;
/// Offset of the wrapped data key of an encrypted database.
pub const META_WRAPPED_KEY_OFFSET: usize = 16;
/// Offset of the checksum of a database without encryption.
pub const META_CRC_OFFSET: usize = 16;
/// The length of the whole file without encryption (every version).
pub const META_LEN: usize = 20;
/// Offset of the checksum of an encrypted database.
pub const META_ENCRYPTED_CRC_OFFSET: usize = META_WRAPPED_KEY_OFFSET + WRAPPED_KEY_LEN;
/// The length of the whole file of an encrypted database.
pub const META_ENCRYPTED_LEN: usize = META_ENCRYPTED_CRC_OFFSET + 4;

/// Flag bit: the database's files are encrypted ([`pydb_file::EncryptedFile`])
/// and the wrapped data key follows the flags.
pub const META_FLAG_ENCRYPTED: u8 = 0x01;
/// Flag bit: the database's files are lz4-compressed
/// ([`pydb_file::CompressedFile`]).
pub const META_FLAG_LZ4: u8 = 0x02;
/// Every flag bit this build knows.
const KNOWN_FLAGS: u8 = META_FLAG_ENCRYPTED | META_FLAG_LZ4;

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
/// Index id of the B+tree index with inline key prefixes.
pub const INDEX_ID_BPLUSTREE: u8 = 4;

/// What the metadata file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The format version the file was written in.
    pub format_version: u32,
    /// The engine that owns the directory (never [`EngineKind::Memory`]).
    pub engine: EngineKind,
    /// The in-memory index the engine was last opened with, if it has one.
    pub index: Option<IndexKind>,
    /// How the database's files are compressed.
    pub compression: Compression,
    /// The wrapped data key, when the database's files are encrypted.
    pub wrapped_key: Option<WrappedKey>,
}

impl Metadata {
    /// The metadata of a plain (unencrypted, uncompressed) database of
    /// `engine` with `index`, in the current format version.
    pub fn new(engine: EngineKind, index: Option<IndexKind>) -> Self {
        Self {
            format_version: META_FORMAT_VERSION,
            engine,
            index,
            compression: Compression::None,
            wrapped_key: None,
        }
    }

    /// Whether the database's files are encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.wrapped_key.is_some()
    }

    /// The flags byte of this metadata.
    pub fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.wrapped_key.is_some() {
            flags |= META_FLAG_ENCRYPTED;
        }
        if self.compression == Compression::Lz4 {
            flags |= META_FLAG_LZ4;
        }
        flags
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
        Some(IndexKind::BPlusTree) => INDEX_ID_BPLUSTREE,
    }
}

/// The index stored as `id`: `Some(None)` for "no index", `None` if unknown.
pub fn index_from_id(id: u8) -> Option<Option<IndexKind>> {
    match id {
        INDEX_ID_NONE => Some(None),
        INDEX_ID_HASH => Some(Some(IndexKind::Hash)),
        INDEX_ID_BTREE => Some(Some(IndexKind::BTree)),
        INDEX_ID_SKIPLIST => Some(Some(IndexKind::SkipList)),
        INDEX_ID_BPLUSTREE => Some(Some(IndexKind::BPlusTree)),
        _ => None,
    }
}

/// The length of a file with `flags`, and where its checksum is.
fn layout_for(flags: u8) -> (usize, usize) {
    if flags & META_FLAG_ENCRYPTED != 0 {
        (META_ENCRYPTED_LEN, META_ENCRYPTED_CRC_OFFSET)
    } else {
        (META_LEN, META_CRC_OFFSET)
    }
}

/// Encodes `meta` in the current format version: 20 bytes, or 132 with a
/// wrapped key. Fails for the memory engine, which is never recorded on
/// disk.
pub fn encode(meta: &Metadata) -> Result<Vec<u8>> {
    let engine = engine_id(meta.engine)
        .ok_or_else(|| Error::InvalidArgument("the memory engine keeps no metadata file".into()))?;
    let flags = meta.flags();
    let (len, crc_at) = layout_for(flags);
    let mut out = vec![0u8; len];
    out[META_MAGIC_OFFSET..META_VERSION_OFFSET].copy_from_slice(&META_MAGIC);
    out[META_VERSION_OFFSET..META_ENGINE_OFFSET]
        .copy_from_slice(&META_FORMAT_VERSION.to_le_bytes());
    out[META_ENGINE_OFFSET] = engine;
    out[META_INDEX_OFFSET] = index_id(meta.index);
    out[META_FLAGS_OFFSET] = flags;
    // Byte 15 stays zero: reserved.
    if let Some(wrapped) = &meta.wrapped_key {
        out[META_WRAPPED_KEY_OFFSET..META_ENCRYPTED_CRC_OFFSET].copy_from_slice(&wrapped.encode());
    }
    let crc = crc32fast::hash(&out[..crc_at]);
    out[crc_at..].copy_from_slice(&crc.to_le_bytes());
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
    // The flags decide the length, so they are read before the checksum
    // that covers them; a flipped flag then shows as a wrong length or a
    // checksum mismatch, never as a different setting.
    let flags = bytes.get(META_FLAGS_OFFSET).copied().unwrap_or(0);
    let (len, crc_at) = layout_for(flags);
    if bytes.len() != len {
        return Err(corrupted(
            0,
            format!(
                "metadata file of {} bytes, expected {len} for flags {flags:#04x}",
                bytes.len()
            ),
        ));
    }
    let stored = read_u32(bytes, crc_at).unwrap_or_default();
    let computed = crc32fast::hash(&bytes[..crc_at]);
    if stored != computed {
        return Err(corrupted(
            crc_at,
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
    // Before version 3 byte 14 was reserved: it must be zero there.
    if flags & !KNOWN_FLAGS != 0 || (version < 3 && flags != 0) {
        return Err(corrupted(
            META_FLAGS_OFFSET,
            format!("unknown flags {flags:#04x} for format version {version}"),
        ));
    }
    if bytes[META_RESERVED_OFFSET] != 0 {
        return Err(corrupted(
            META_RESERVED_OFFSET,
            "reserved byte is not zero".into(),
        ));
    }
    let wrapped_key = if flags & META_FLAG_ENCRYPTED != 0 {
        let blob = &bytes[META_WRAPPED_KEY_OFFSET..META_ENCRYPTED_CRC_OFFSET];
        Some(
            WrappedKey::decode(blob)
                .map_err(|e| corrupted(META_WRAPPED_KEY_OFFSET, e.to_string()))?,
        )
    } else {
        None
    };
    let compression = if flags & META_FLAG_LZ4 != 0 {
        Compression::Lz4
    } else {
        Compression::None
    };
    Ok(Metadata {
        format_version: version,
        engine,
        index,
        compression,
        wrapped_key,
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
    /// The flags byte (reserved before version 3).
    pub flags: Option<u8>,
    /// The reserved byte.
    pub reserved: Option<u8>,
    /// The id of the wrapped data key, when the flags say encrypted and
    /// the file holds the blob.
    pub data_key_id: Option<[u8; 8]>,
    /// Where the checksum is (it follows the wrapped key when encrypted).
    pub crc_offset: usize,
    /// The checksum as stored.
    pub stored_crc: Option<u32>,
    /// The checksum of the bytes it covers, when the file holds them.
    pub computed_crc: Option<u32>,
}

/// Reads the fields of a metadata file without judging them (see
/// [`MetaFields`]).
pub fn fields(bytes: &[u8]) -> MetaFields {
    let flags = bytes.get(META_FLAGS_OFFSET).copied();
    let (_, crc_offset) = layout_for(flags.unwrap_or(0));
    let data_key_id = flags
        .filter(|f| f & META_FLAG_ENCRYPTED != 0)
        .and_then(|_| bytes.get(META_WRAPPED_KEY_OFFSET..META_ENCRYPTED_CRC_OFFSET))
        .and_then(|blob| WrappedKey::decode(blob).ok())
        .map(|w| w.key_id());
    MetaFields {
        version: read_u32(bytes, META_VERSION_OFFSET),
        engine: bytes.get(META_ENGINE_OFFSET).copied(),
        index: bytes.get(META_INDEX_OFFSET).copied(),
        flags,
        reserved: bytes.get(META_RESERVED_OFFSET).copied(),
        data_key_id,
        crc_offset,
        stored_crc: read_u32(bytes, crc_offset),
        computed_crc: bytes.get(..crc_offset).map(crc32fast::hash),
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
        for engine in [EngineKind::Log, EngineKind::BTree, EngineKind::Lsm] {
            for index in [
                None,
                Some(IndexKind::Hash),
                Some(IndexKind::BTree),
                Some(IndexKind::SkipList),
                Some(IndexKind::BPlusTree),
            ] {
                let meta = Metadata::new(engine, index);
                let bytes = encode(&meta).unwrap();
                assert_eq!(decode(path(), &bytes).unwrap(), meta);
            }
        }
    }

    fn encrypted_lz4() -> Metadata {
        let material = pydb_file::KeyMaterial::from_bytes(vec![7u8; 32]).unwrap();
        let (_, wrapped) = WrappedKey::generate(&material);
        Metadata {
            compression: Compression::Lz4,
            wrapped_key: Some(wrapped),
            ..Metadata::new(EngineKind::Lsm, None)
        }
    }

    #[test]
    fn version_3_records_flags_and_the_wrapped_key() {
        let meta = encrypted_lz4();
        let bytes = encode(&meta).unwrap();
        assert_eq!(bytes.len(), META_ENCRYPTED_LEN);
        assert_eq!(bytes.len(), 132);
        assert_eq!(
            bytes[META_VERSION_OFFSET..META_ENGINE_OFFSET],
            3u32.to_le_bytes()
        );
        assert_eq!(
            bytes[META_FLAGS_OFFSET],
            META_FLAG_ENCRYPTED | META_FLAG_LZ4
        );
        assert_eq!(&bytes[16..24], b"PYDBWKEY");
        assert_eq!(decode(path(), &bytes).unwrap(), meta);
        let lz4_only = Metadata {
            wrapped_key: None,
            ..meta
        };
        let bytes = encode(&lz4_only).unwrap();
        assert_eq!(bytes.len(), META_LEN);
        assert_eq!(bytes[META_FLAGS_OFFSET], META_FLAG_LZ4);
        assert_eq!(decode(path(), &bytes).unwrap(), lz4_only);
    }

    #[test]
    fn a_version_2_file_decodes_as_plain() {
        // The 20 bytes pydb wrote before encryption: version 2, log, B-tree
        // index, bytes 14..16 zero.
        let mut v2 = b"PYDBMETA".to_vec();
        v2.extend_from_slice(&2u32.to_le_bytes());
        v2.extend_from_slice(&[ENGINE_ID_LOG, INDEX_ID_BTREE, 0, 0]);
        let crc = crc32fast::hash(&v2);
        v2.extend_from_slice(&crc.to_le_bytes());
        let meta = decode(path(), &v2).unwrap();
        assert_eq!(meta.format_version, 2);
        assert_eq!(meta.compression, Compression::None);
        assert!(!meta.is_encrypted());
        // A flag in a version 2 file is damage, not a setting.
        let mut flagged = v2[..16].to_vec();
        flagged[META_FLAGS_OFFSET] = META_FLAG_LZ4;
        let crc = crc32fast::hash(&flagged);
        flagged.extend_from_slice(&crc.to_le_bytes());
        assert!(decode(path(), &flagged).unwrap_err().is_corruption());
    }

    #[test]
    fn every_bit_flip_and_truncation_of_an_encrypted_file_is_an_error() {
        let bytes = encode(&encrypted_lz4()).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode(path(), &bytes[..cut]).is_err(), "cut at {cut}");
        }
        for byte in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[byte] ^= 1 << bit;
                let err = decode(path(), &damaged).unwrap_err();
                assert!(
                    err.is_corruption() || matches!(err, Error::UnsupportedVersion { .. }),
                    "flip of bit {bit} in byte {byte}: {err}"
                );
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
                let mut damaged = bytes.clone();
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
        bytes.extend_from_slice(&4u32.to_le_bytes());
        bytes.extend_from_slice(&[9; 40]);
        let err = decode(path(), &bytes).unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnsupportedVersion {
                    found: 4,
                    supported: 3,
                    ..
                }
            ),
            "{err}"
        );
    }
}
