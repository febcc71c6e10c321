//! The constants of the snapshot format (documented field by field in the
//! module documentation of [`super`]) and the frame checksum both the
//! writer and the reader compute.

/// The first 8 bytes of a snapshot. CR LF catch a text-mode copy.
pub const MAGIC: [u8; 8] = *b"RRMVCC\r\n";
/// The format version written after the magic.
pub const FORMAT_VERSION: u32 = 1;
/// Frame tag of the header frame.
pub const TAG_HEADER: u8 = 1;
/// Frame tag of a version record.
pub const TAG_VERSION: u8 = 2;
/// Frame tag of the end frame.
pub const TAG_END: u8 = 3;
/// Bytes of a frame before its body: tag, body length, checksum.
pub const FRAME_HEAD_BYTES: usize = 9;
/// The largest frame body: a reader refuses a longer claim before reading
/// it (so a corrupt length never makes it read or allocate more), and the
/// writer refuses to write one. Keys and values are capped far below
/// (etcd's request limit is 1.5 MiB).
pub const MAX_BODY_BYTES: u32 = 64 * 1024 * 1024;
/// The flags bit of a tombstone.
pub const FLAG_TOMBSTONE: u8 = 1;
/// Bytes of a version's own fields (main, sub, flags, create revision,
/// version, lease), as [`record_fields`] lays them out.
pub const RECORD_FIELDS_BYTES: usize = 8 + 8 + 1 + 8 + 8 + 8;

/// A version's own fields in the order and encoding both the snapshot's
/// version record and the hashes use: main, sub, flags (tombstone bit),
/// create revision, version, lease, little-endian.
pub fn record_fields(record: &super::history::Record) -> [u8; RECORD_FIELDS_BYTES] {
    let mut fields = [0u8; RECORD_FIELDS_BYTES];
    let flags = if record.tombstone { FLAG_TOMBSTONE } else { 0 };
    let mut at = 0;
    for field in [
        &record.main.to_le_bytes()[..],
        &record.sub.to_le_bytes(),
        &[flags],
        &record.create_revision.to_le_bytes(),
        &record.version.to_le_bytes(),
        &record.lease.to_le_bytes(),
    ] {
        fields[at..at + field.len()].copy_from_slice(field);
        at += field.len();
    }
    fields
}

/// The CRC-32C of a frame: over the tag, the body length (little-endian)
/// and the body, given in parts.
pub fn frame_crc(tag: u8, body_len: u32, body_parts: &[&[u8]]) -> u32 {
    let mut crc = crc32c::crc32c(&[tag]);
    crc = crc32c::crc32c_append(crc, &body_len.to_le_bytes());
    for part in body_parts {
        crc = crc32c::crc32c_append(crc, part);
    }
    crc
}
