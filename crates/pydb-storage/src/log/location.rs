//! `Location`: where the latest record of a key lives.
//!
//! This is the value the index holds for every live key, so its size is
//! what the index memory is made of: four integers, no heap, 32 bytes (28
//! of fields, padded to the alignment of the `u64`s).

/// The position of one record in the log, and the sequence number it
/// carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Location {
    /// The id of the segment holding the record.
    pub segment: u64,
    /// The offset of the record in its segment.
    pub offset: u64,
    /// The whole record's length on disk, header included: a point read
    /// reads exactly this many bytes (one copy out of a memory map, or one
    /// `pread` with plain files).
    pub len: u32,
    /// The sequence number of the entry in the record; the read checks it,
    /// so a location can never return another version of the key.
    pub seq: u64,
}
