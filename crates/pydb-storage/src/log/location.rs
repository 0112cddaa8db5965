//! `Location`: where the latest record of a key lives.
//!
//! This is the value the index holds for every live key, so its size is
//! what the index memory is made of: four integers, no heap.

/// The position of one record in the log, and the sequence number it
/// carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Location {
    /// The id of the segment holding the record.
    pub segment: u64,
    /// The offset of the record in its segment.
    pub offset: u64,
    /// The whole record's length on disk, header included: a point read is
    /// one `pread` of exactly this many bytes.
    pub len: u32,
    /// The sequence number of the entry in the record; the read checks it,
    /// so a location can never return another version of the key.
    pub seq: u64,
}
