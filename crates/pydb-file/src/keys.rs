//! Keys for encrypted files: key material, the data key, and the wrapped
//! data key that a database stores in its metadata.
//!
//! ## Two keys, and why
//!
//! The bytes of an [`EncryptedFile`](crate::EncryptedFile) are encrypted
//! with a random **data key** ([`DataKey`]), one per database. The user
//! never sees it. What the user holds is a **key file**: at least 32 bytes
//! of key material ([`KeyMaterial`]), any content (random bytes, a long
//! passphrase, a hex string). From the key material and a random salt,
//! HKDF-SHA256 derives the **key-encryption key**, which encrypts ("wraps")
//! the data key. The database stores only the wrapped data key
//! ([`WrappedKey`], 112 bytes) in its `PYDB` metadata.
//!
//! This split is what every serious encrypted store does (LUKS, PostgreSQL's
//! TDE proposals, cloud KMS envelopes), for two reasons:
//! - **Rotation is cheap.** A new key file means rewrapping 32 bytes
//!   ([`WrappedKey::rewrap`]), not re-encrypting every file.
//! - **A wrong key is a clear error.** Unwrapping is authenticated
//!   encryption: with the wrong key material the tag check fails and
//!   [`Error::WrongKey`] is returned before a single data block is read.
//!   Nothing on disk changes on the way.
//!
//! ## Why a KDF and not the key file's bytes as the key
//!
//! A key file may hold text or bytes that are far from uniform. HKDF
//! (RFC 5869) extracts a uniform 32-byte key from any input with enough
//! entropy, and its salt makes the same key file give a different
//! key-encryption key in every database. HKDF is not a password hash: a
//! short, guessable passphrase stays guessable. That is why at least 32
//! bytes are required; generate them (`head -c 32 /dev/urandom > key`).
//!
//! ## The wrapped-key blob, byte by byte (little-endian)
//!
//! ```text
//!   0  [u8; 8]   magic "PYDBWKEY"
//!   8  u32       version (1)
//!  12  u32       KDF (1 = HKDF-SHA256, info "pydb key-encryption key v1")
//!  16  [u8; 16]  salt of the KDF (random per wrap)
//!  32  [u8; 8]   data key id: HKDF-SHA256 of the data key, info "pydb data key id v1"
//!  40  [u8; 24]  XChaCha20-Poly1305 nonce (random per wrap)
//!  64  [u8; 32]  the data key, encrypted with the key-encryption key
//!  96  [u8; 16]  Poly1305 tag; the associated data is bytes 0..40
//! 112  end
//! ```
//!
//! The data key id is public and survives rewraps: it tells which data key
//! a database uses without revealing it, and a rewrap can be checked to
//! keep it. It is also compared after unwrapping, as a second key check.
//!
//! Key material and data keys are kept in ordinary memory and are not
//! wiped on drop; their `Debug` output never shows them.

use std::path::Path;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;

use crate::{Error, Result};

/// The fewest bytes of key material a key file must hold.
pub const MIN_KEY_MATERIAL_LEN: usize = 32;
/// The length of a data key (XChaCha20-Poly1305 takes 256-bit keys).
pub const DATA_KEY_LEN: usize = 32;
/// The length of an encoded [`WrappedKey`].
pub const WRAPPED_KEY_LEN: usize = 112;
/// The magic bytes of a wrapped-key blob.
pub const WRAPPED_KEY_MAGIC: [u8; 8] = *b"PYDBWKEY";
/// The wrapped-key format version this build writes and reads.
pub const WRAPPED_KEY_VERSION: u32 = 1;
/// The KDF id of HKDF-SHA256.
pub const KDF_HKDF_SHA256: u32 = 1;

const KEK_INFO: &[u8] = b"pydb key-encryption key v1";
const KEY_ID_INFO: &[u8] = b"pydb data key id v1";
const SALT_AT: usize = 16;
const KEY_ID_AT: usize = 32;
const NONCE_AT: usize = 40;
const SEALED_AT: usize = 64;
const TAG_AT: usize = 96;

/// Secret bytes read from a key file, from which key-encryption keys are
/// derived. Never printed.
#[derive(Clone)]
pub struct KeyMaterial(Vec<u8>);

impl KeyMaterial {
    /// Key material from bytes; at least [`MIN_KEY_MATERIAL_LEN`] of them.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Result<Self> {
        let bytes = bytes.into();
        if bytes.len() < MIN_KEY_MATERIAL_LEN {
            return Err(Error::WrongKey {
                reason: format!(
                    "key material is {} bytes; at least {MIN_KEY_MATERIAL_LEN} are needed",
                    bytes.len()
                ),
            });
        }
        Ok(Self(bytes))
    }

    /// Reads a key file: all of its bytes are key material (binary or text;
    /// a trailing newline is part of it, so keep the file as it was made).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(bytes).map_err(|e| match e {
            Error::WrongKey { reason } => Error::WrongKey {
                reason: format!("key file {}: {reason}", path.display()),
            },
            other => other,
        })
    }

    /// The key-encryption key for `salt`.
    fn key_encryption_key(&self, salt: &[u8; 16]) -> XChaCha20Poly1305 {
        let mut kek = [0u8; 32];
        hkdf_expand(Some(salt), &self.0, KEK_INFO, &mut kek);
        XChaCha20Poly1305::new(Key::from_slice(&kek))
    }
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyMaterial({} bytes)", self.0.len())
    }
}

/// The random key that encrypts a database's files. Never printed; its
/// [`DataKey::id`] is what reports show.
#[derive(Clone)]
pub struct DataKey([u8; DATA_KEY_LEN]);

impl DataKey {
    /// A fresh random data key (from the operating system's CSPRNG, through
    /// `rand`'s thread-local generator).
    pub fn generate() -> Self {
        let mut key = [0u8; DATA_KEY_LEN];
        rand::rng().fill_bytes(&mut key);
        Self(key)
    }

    /// A data key with the given bytes (tests and tools that hold a key
    /// already; a database gets its key from [`WrappedKey::unwrap`]).
    pub fn from_bytes(bytes: [u8; DATA_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// A public 8-byte fingerprint of the key: equal ids, same key (with
    /// overwhelming probability); the id reveals nothing about the key.
    pub fn id(&self) -> [u8; 8] {
        let mut id = [0u8; 8];
        hkdf_expand(None, &self.0, KEY_ID_INFO, &mut id);
        id
    }

    /// The cipher for file blocks.
    pub(crate) fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(Key::from_slice(&self.0))
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataKey(id {})", hex(&self.id()))
    }
}

/// A data key encrypted with a key-encryption key: what the `PYDB`
/// metadata stores (see the module docs for the 112 bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    salt: [u8; 16],
    key_id: [u8; 8],
    nonce: [u8; 24],
    sealed: [u8; DATA_KEY_LEN],
    tag: [u8; 16],
}

impl WrappedKey {
    /// Wraps `data_key` with the key-encryption key derived from `material`
    /// and a fresh salt.
    pub fn wrap(data_key: &DataKey, material: &KeyMaterial) -> Self {
        let mut rng = rand::rng();
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        let mut nonce = [0u8; 24];
        rng.fill_bytes(&mut nonce);
        let mut wrapped = Self {
            salt,
            key_id: data_key.id(),
            nonce,
            sealed: data_key.0,
            tag: [0; 16],
        };
        let aad = wrapped.associated_data();
        let tag = material
            .key_encryption_key(&salt)
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), &aad, &mut wrapped.sealed);
        // Encryption fails only for plaintexts beyond 256 GiB; ours is 32
        // bytes, so the tag is always there.
        if let Ok(tag) = tag {
            wrapped.tag.copy_from_slice(&tag);
        }
        wrapped
    }

    /// A new database's data key and its wrapped form.
    pub fn generate(material: &KeyMaterial) -> (DataKey, Self) {
        let key = DataKey::generate();
        let wrapped = Self::wrap(&key, material);
        (key, wrapped)
    }

    /// Unwraps the data key with `material`. Wrong key material is
    /// [`Error::WrongKey`]; nothing else is touched.
    pub fn unwrap(&self, material: &KeyMaterial) -> Result<DataKey> {
        let mut key = self.sealed;
        material
            .key_encryption_key(&self.salt)
            .decrypt_in_place_detached(
                XNonce::from_slice(&self.nonce),
                &self.associated_data(),
                &mut key,
                Tag::from_slice(&self.tag),
            )
            .map_err(|_| Error::WrongKey {
                reason: format!(
                    "the key file does not unwrap data key {} (a different key file, or a damaged wrapped key)",
                    hex(&self.key_id)
                ),
            })?;
        let key = DataKey(key);
        if key.id() != self.key_id {
            return Err(Error::WrongKey {
                reason: "the unwrapped data key does not match its recorded id".into(),
            });
        }
        Ok(key)
    }

    /// Key rotation: the same data key, wrapped by `new` instead of `old`.
    /// No data file changes; store the result in place of `self`.
    pub fn rewrap(&self, old: &KeyMaterial, new: &KeyMaterial) -> Result<Self> {
        Ok(Self::wrap(&self.unwrap(old)?, new))
    }

    /// The id of the wrapped data key (see [`DataKey::id`]).
    pub fn key_id(&self) -> [u8; 8] {
        self.key_id
    }

    /// The 112-byte blob.
    pub fn encode(&self) -> [u8; WRAPPED_KEY_LEN] {
        let mut out = [0u8; WRAPPED_KEY_LEN];
        out[..NONCE_AT].copy_from_slice(&self.associated_data());
        out[NONCE_AT..SEALED_AT].copy_from_slice(&self.nonce);
        out[SEALED_AT..TAG_AT].copy_from_slice(&self.sealed);
        out[TAG_AT..].copy_from_slice(&self.tag);
        out
    }

    /// Decodes a blob written by [`WrappedKey::encode`]. Only the framing is
    /// checked here; the tag is checked by [`WrappedKey::unwrap`].
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = |reason: String| Error::WrongKey {
            reason: format!("invalid wrapped key: {reason}"),
        };
        let bytes: &[u8; WRAPPED_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| bad(format!("{} bytes, expected {WRAPPED_KEY_LEN}", bytes.len())))?;
        if bytes[..8] != WRAPPED_KEY_MAGIC {
            return Err(bad("bad magic".into()));
        }
        let version = le_u32(bytes, 8);
        if version != WRAPPED_KEY_VERSION {
            return Err(bad(format!(
                "version {version}, this build reads {WRAPPED_KEY_VERSION}"
            )));
        }
        let kdf = le_u32(bytes, 12);
        if kdf != KDF_HKDF_SHA256 {
            return Err(bad(format!("unknown KDF {kdf}")));
        }
        let mut wrapped = Self {
            salt: [0; 16],
            key_id: [0; 8],
            nonce: [0; 24],
            sealed: [0; DATA_KEY_LEN],
            tag: [0; 16],
        };
        wrapped.salt.copy_from_slice(&bytes[SALT_AT..KEY_ID_AT]);
        wrapped.key_id.copy_from_slice(&bytes[KEY_ID_AT..NONCE_AT]);
        wrapped.nonce.copy_from_slice(&bytes[NONCE_AT..SEALED_AT]);
        wrapped.sealed.copy_from_slice(&bytes[SEALED_AT..TAG_AT]);
        wrapped.tag.copy_from_slice(&bytes[TAG_AT..]);
        Ok(wrapped)
    }

    /// Bytes 0..40 of the blob: authenticated, not encrypted.
    fn associated_data(&self) -> [u8; NONCE_AT] {
        let mut ad = [0u8; NONCE_AT];
        ad[..8].copy_from_slice(&WRAPPED_KEY_MAGIC);
        ad[8..12].copy_from_slice(&WRAPPED_KEY_VERSION.to_le_bytes());
        ad[12..16].copy_from_slice(&KDF_HKDF_SHA256.to_le_bytes());
        ad[SALT_AT..KEY_ID_AT].copy_from_slice(&self.salt);
        ad[KEY_ID_AT..NONCE_AT].copy_from_slice(&self.key_id);
        ad
    }
}

impl std::fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WrappedKey(data key id {})", hex(&self.key_id))
    }
}

fn hkdf_expand(salt: Option<&[u8]>, ikm: &[u8], info: &[u8], out: &mut [u8]) {
    // `expand` fails only for outputs longer than 255 * 32 bytes; ours are
    // at most 32.
    let _ = Hkdf::<Sha256>::new(salt, ikm).expand(info, out);
}

fn le_u32(bytes: &[u8; WRAPPED_KEY_LEN], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Lower-case hex, for key ids in messages.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn material(byte: u8) -> KeyMaterial {
        KeyMaterial::from_bytes(vec![byte; 40]).unwrap()
    }

    #[test]
    fn wrap_unwrap_round_trips_through_the_blob() {
        let (key, wrapped) = WrappedKey::generate(&material(1));
        let blob = wrapped.encode();
        assert_eq!(&blob[..8], b"PYDBWKEY");
        assert_eq!(&blob[KEY_ID_AT..NONCE_AT], &key.id());
        let back = WrappedKey::decode(&blob).unwrap();
        assert_eq!(back, wrapped);
        assert_eq!(back.unwrap(&material(1)).unwrap().0, key.0);
        // The data key itself is nowhere in the blob.
        assert!(!blob.windows(DATA_KEY_LEN).any(|w| w == key.0));
    }

    #[test]
    fn a_wrong_key_is_a_clear_error() {
        let (_, wrapped) = WrappedKey::generate(&material(1));
        let err = wrapped.unwrap(&material(2)).unwrap_err();
        assert!(matches!(err, Error::WrongKey { .. }), "{err}");
        assert!(err.to_string().contains("does not unwrap"), "{err}");
    }

    #[test]
    fn every_byte_of_the_blob_is_checked() {
        let (_, wrapped) = WrappedKey::generate(&material(1));
        let blob = wrapped.encode();
        for at in 0..WRAPPED_KEY_LEN {
            let mut bad = blob;
            bad[at] ^= 0x01;
            let result = WrappedKey::decode(&bad).and_then(|w| w.unwrap(&material(1)));
            assert!(
                matches!(result, Err(Error::WrongKey { .. })),
                "flip at {at}"
            );
        }
        assert!(WrappedKey::decode(&blob[..111]).is_err());
    }

    #[test]
    fn rewrap_keeps_the_data_key_and_drops_the_old_key_file() {
        let (key, wrapped) = WrappedKey::generate(&material(1));
        let rotated = wrapped.rewrap(&material(1), &material(3)).unwrap();
        assert_eq!(rotated.key_id(), wrapped.key_id());
        assert_eq!(rotated.unwrap(&material(3)).unwrap().0, key.0);
        assert!(rotated.unwrap(&material(1)).is_err());
        assert!(wrapped.rewrap(&material(2), &material(3)).is_err());
    }

    #[test]
    fn key_files_need_32_bytes_of_any_content() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, b"too short").unwrap();
        let err = KeyMaterial::load(&short).unwrap_err();
        assert!(err.to_string().contains("at least 32"), "{err}");
        let text = dir.path().join("text");
        std::fs::write(&text, "a long passphrase, typed by a person, 1234\n").unwrap();
        let (key, wrapped) = WrappedKey::generate(&KeyMaterial::load(&text).unwrap());
        assert_eq!(
            wrapped
                .unwrap(&KeyMaterial::load(&text).unwrap())
                .unwrap()
                .0,
            key.0
        );
        assert!(KeyMaterial::load(dir.path().join("missing")).is_err());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let key = DataKey::from_bytes([0xAB; 32]);
        let shown = format!("{key:?} {:?}", material(0xAB));
        assert!(!shown.contains("abab"), "{shown}");
        assert!(!shown.contains("171"), "{shown}");
    }
}
