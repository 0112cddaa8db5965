//! Encrypted and compressed databases in the file tools: the key and the
//! compression setting of `pydb check` and `pydb inspect`, and the view of
//! a file through its decorators.
//!
//! A database created with `--encryption-key-file` or `--compression lz4`
//! stores every file as a [`pydb_file::EncryptedFile`] or a
//! [`pydb_file::CompressedFile`] (compressed first, then encrypted, when
//! both are on). Its `PYDB` records the settings and the wrapped data key
//! ([`pydb::meta`]). The tools read that record, unwrap the data key with
//! the key file given, and then read each file *through* the same
//! decorators the engine uses: every block is authenticated and every frame
//! checksummed on the way, and the plaintext reaches the usual record
//! walkers. Without the key, only the public structure of an encrypted
//! file (its header and block count) can be shown.
//!
//! The decoders are the decorators' own (`pydb-file` owns those formats);
//! this module only chooses the stack and prints what they report.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pydb::meta::{self, Metadata};
use pydb::{Compression, Error, KeyMaterial, Result};
use pydb_file::compressed::COMPRESSED_MAGIC;
use pydb_file::encrypted::{self, ENCRYPTED_DATA_AT, ENCRYPTED_MAGIC, SLOT_LEN, STORED_BLOCK_LEN};
use pydb_file::{CompressedFile, DataKey, EncryptedFile, File, MonolithicFile};

/// The storage arguments of a file tool: the key file's material and the
/// compression asked for, if any.
#[derive(Debug, Clone, Default)]
pub struct StorageArgs {
    /// The key material of `--encryption-key-file`.
    pub key: Option<KeyMaterial>,
    /// The compression of `--compression`; `None` takes the one in `PYDB`.
    pub compression: Option<Compression>,
}

impl StorageArgs {
    /// Reads the key file, if one is given.
    pub fn load(key_file: Option<&Path>, compression: Option<Compression>) -> Result<Self> {
        Ok(Self {
            key: key_file.map(pydb::db::load_key_file).transpose()?,
            compression,
        })
    }
}

/// How the files of one database are stored: what its `PYDB` says, with the
/// data key unwrapped when the key was given.
#[derive(Debug, Clone)]
pub struct Stack {
    /// The database directory.
    pub dir: PathBuf,
    /// The compression of its files.
    pub compression: Compression,
    /// Whether its files are encrypted.
    pub encrypted: bool,
    /// The data key (`None`: not encrypted, or no key given).
    pub data_key: Option<DataKey>,
}

impl Stack {
    /// Whether the files are stored as the engine writes them.
    pub fn is_plain(&self) -> bool {
        !self.encrypted && self.compression == Compression::None
    }

    /// The stack of the database in `dir` with `metadata`, checking the
    /// arguments against it: a compression that differs is refused, and a
    /// key must unwrap the data key ([`Error::WrongKey`]). Without a key the
    /// data key stays `None` (the caller decides whether that is enough).
    pub fn new(dir: &Path, metadata: &Metadata, args: &StorageArgs) -> Result<Self> {
        if let Some(asked) = args.compression
            && asked != metadata.compression
        {
            return Err(Error::SettingsMismatch {
                dir: dir.to_path_buf(),
                reason: format!(
                    "it was created with compression {}, not {asked}",
                    metadata.compression
                ),
            });
        }
        let data_key = match (&metadata.wrapped_key, &args.key) {
            (Some(wrapped), Some(material)) => {
                Some(wrapped.unwrap(material).map_err(|e| Error::WrongKey {
                    dir: dir.to_path_buf(),
                    reason: e.to_string(),
                })?)
            }
            (None, Some(_)) => {
                return Err(Error::SettingsMismatch {
                    dir: dir.to_path_buf(),
                    reason: "it is not encrypted, and an encryption key was given".into(),
                });
            }
            (_, None) => None,
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            compression: metadata.compression,
            encrypted: metadata.is_encrypted(),
            data_key,
        })
    }

    /// The stack of the database a file belongs to: the first ancestor
    /// directory of `path` that holds a `PYDB` (the B+tree's WAL segments
    /// sit one level down). `None` when there is none.
    pub fn for_file(path: &Path, args: &StorageArgs) -> Result<Option<Self>> {
        for dir in path.ancestors().skip(1) {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if meta::path_in(dir).is_file() {
                return match meta::read(dir) {
                    Ok(Some(found)) => Self::new(dir, &found, args).map(Some),
                    Ok(None) => Ok(None),
                    // A damaged PYDB is reported by inspecting PYDB itself.
                    Err(e) if e.is_corruption() => Ok(None),
                    Err(e) => Err(e),
                };
            }
        }
        Ok(None)
    }

    /// The file at `path` through the decorators, read-only. Fails with
    /// [`Error::KeyRequired`] for an encrypted file without the key.
    pub fn open(&self, path: &Path) -> Result<Arc<dyn File>> {
        let inner = MonolithicFile::open_read_only(path).map_err(pydb_storage::Error::from)?;
        let storage = |e: pydb_file::Error| Error::from(pydb_storage::Error::from(e));
        let encrypted = |inner| -> Result<EncryptedFile<MonolithicFile>> {
            let key = self.data_key.as_ref().ok_or_else(|| Error::KeyRequired {
                dir: self.dir.clone(),
            })?;
            EncryptedFile::open(inner, key).map_err(storage)
        };
        Ok(match (self.encrypted, self.compression) {
            (false, Compression::None) => Arc::new(inner),
            (true, Compression::None) => Arc::new(encrypted(inner)?),
            (false, Compression::Lz4) => Arc::new(CompressedFile::open(inner).map_err(storage)?),
            (true, Compression::Lz4) => {
                Arc::new(CompressedFile::open(encrypted(inner)?).map_err(storage)?)
            }
        })
    }

    /// Describes the decorator layers of the file at `path` (header, blocks,
    /// chunks, torn tail, compression ratio) into `out`, and returns the
    /// file opened through them, or `None` when the key is missing (then
    /// only the public header of an encrypted file is shown).
    ///
    /// A layer that fails its checks (a block that does not authenticate, a
    /// damaged frame) is an error naming the file and offset.
    pub fn describe(&self, path: &Path, out: &mut String) -> Result<Option<Arc<dyn File>>> {
        let storage = |e: pydb_file::Error| Error::from(pydb_storage::Error::from(e));
        let physical = std::fs::metadata(path)
            .map_err(|e| Error::io(path, e))?
            .len();
        if self.encrypted {
            let _ = writeln!(
                out,
                "encrypted file (XChaCha20-Poly1305, 4 KiB blocks), {physical} bytes on disk"
            );
            describe_encrypted_header(path, out)?;
        }
        if self.encrypted && self.data_key.is_none() {
            let _ = writeln!(
                out,
                "no key given: the plaintext is not shown (use --encryption-key-file)"
            );
            return Ok(None);
        }
        let inner = MonolithicFile::open_read_only(path).map_err(pydb_storage::Error::from)?;
        let file: Arc<dyn File> = match (self.encrypted, self.compression) {
            (false, Compression::None) => Arc::new(inner),
            (true, compression) => {
                let key = self.data_key.as_ref().ok_or_else(|| Error::KeyRequired {
                    dir: self.dir.clone(),
                })?;
                let file = EncryptedFile::open(inner, key).map_err(storage)?;
                let layout = file.layout();
                let _ = writeln!(
                    out,
                    "  the key opens the header; {} blocks hold {} plaintext bytes",
                    layout.blocks, layout.logical_len
                );
                if let Some(chosen) = layout.slots.iter().find(|s| s.chosen) {
                    let _ = writeln!(
                        out,
                        "  the last block (block {}, {} bytes) is slot {}, seq {}",
                        chosen.block, chosen.len, chosen.slot, chosen.seq
                    );
                }
                if let Some(tail) = &layout.dropped_tail {
                    let _ = writeln!(
                        out,
                        "  torn tail: {} bytes at offset {} ({}); the engine cuts them off on open",
                        tail.stored_len, tail.offset, tail.reason
                    );
                }
                if compression == Compression::Lz4 {
                    let file = CompressedFile::open(file).map_err(storage)?;
                    describe_compressed(&file, out);
                    Arc::new(file)
                } else {
                    Arc::new(file)
                }
            }
            (false, Compression::Lz4) => {
                let file = CompressedFile::open(inner).map_err(storage)?;
                describe_compressed(&file, out);
                Arc::new(file)
            }
        };
        Ok(Some(file))
    }
}

/// The public header of an encrypted file: what anyone can read without
/// the key (the magic, the version, the block size, the file id, and in
/// version 2 the slots' sequence numbers), as `pydb-file` describes it.
fn describe_encrypted_header(path: &Path, out: &mut String) -> Result<()> {
    let storage = |e: pydb_file::Error| Error::from(pydb_storage::Error::from(e));
    let inner = MonolithicFile::open_read_only(path).map_err(storage)?;
    let Some(public) = encrypted::describe_public(&inner).map_err(storage)? else {
        let _ = writeln!(
            out,
            "  header cut short: a file whose creation was interrupted"
        );
        return Ok(());
    };
    let id: String = public.file_id.iter().map(|b| format!("{b:02x}")).collect();
    let _ = writeln!(
        out,
        "  header: magic {} ({}), version {}, block size {}, file id {id}",
        crate::inspect::show(&ENCRYPTED_MAGIC),
        if public.magic_ok { "ok" } else { "BAD" },
        public.version,
        public.block_size,
    );
    if public.version == encrypted::ENCRYPTED_VERSION_V1 {
        let _ = writeln!(
            out,
            "  {} whole stored blocks of {STORED_BLOCK_LEN} bytes and a last block of {} bytes",
            public.whole_blocks, public.partial_stored_len
        );
        return Ok(());
    }
    let _ = writeln!(
        out,
        "  {} whole stored blocks of {STORED_BLOCK_LEN} bytes at {ENCRYPTED_DATA_AT}; the last block in a slot",
        public.whole_blocks
    );
    for slot in &public.slots {
        let _ = writeln!(
            out,
            "  slot {} at {}: seq {}, block {}, {} bytes (unverified without the key)",
            slot.slot,
            encrypted::SLOTS_AT + (slot.slot * SLOT_LEN) as u64,
            slot.seq,
            slot.block,
            slot.len
        );
    }
    Ok(())
}

fn describe_compressed<F: File>(file: &CompressedFile<F>, out: &mut String) {
    let stats = file.stats();
    let _ = writeln!(
        out,
        "lz4-compressed file: {} logical bytes in {} stored ({:.3}x), {} whole chunks of {} bytes",
        stats.logical_bytes,
        stats.physical_bytes,
        stats.ratio(),
        stats.chunks,
        file.chunk_size()
    );
    if let Some(tail) = file.dropped_tail() {
        let _ = writeln!(
            out,
            "  torn tail: {} bytes at offset {} ({}); the engine cuts them off on open",
            tail.stored_len, tail.offset, tail.reason
        );
    }
}

/// Whether the first bytes of a file are an encrypted or compressed file's
/// magic.
pub fn is_decorated(head: &[u8]) -> bool {
    let magic = head.get(..8).unwrap_or(head);
    magic == ENCRYPTED_MAGIC || magic == COMPRESSED_MAGIC
}

/// Reads every logical byte of `file` (so every block is authenticated and
/// every frame checked); returns the bytes read.
pub fn read_through(file: &dyn File) -> Result<u64> {
    let storage = |e: pydb_file::Error| Error::from(pydb_storage::Error::from(e));
    let len = file.len().map_err(storage)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(buf.len() as u64) as usize;
        file.read_at(at, &mut buf[..n]).map_err(storage)?;
        at += n as u64;
    }
    Ok(len)
}
