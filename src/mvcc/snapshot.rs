//! The point-in-time view of the store and how it writes itself in the
//! snapshot format (see the module documentation of [`super`]).
//!
//! The view holds the key map with its copy-on-write histories: taking it
//! copies one key handle and one pointer per key, never a value, and the
//! store may go on applying while the view is written on another thread.

use super::MvccStore;
use super::format::{
    FORMAT_VERSION, MAGIC, MAX_BODY_BYTES, TAG_END, TAG_HEADER, TAG_VERSION, frame_crc,
    record_fields,
};
use super::history::{KeyHistory, Record};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::io::{self, Write};

/// A point-in-time view of an [`MvccStore`], `Send + 'static`.
#[derive(Debug, Clone)]
pub struct MvccSnapshot {
    keys: BTreeMap<Bytes, KeyHistory>,
    current: i64,
    compacted: i64,
}

impl MvccStore {
    /// A view of the store as it is now, to be written out with
    /// [`MvccSnapshot::write_to`] (possibly on another thread).
    pub fn snapshot(&self) -> MvccSnapshot {
        MvccSnapshot {
            keys: self.keys.clone(),
            current: self.current,
            compacted: self.compacted,
        }
    }
}

impl MvccSnapshot {
    /// The store's revision as of the view.
    pub fn current_revision(&self) -> i64 {
        self.current
    }

    /// Writes the view in the snapshot format. Fails with the writer's
    /// error, or `InvalidInput` for a version too large for a frame.
    pub fn write_to(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut out = io::BufWriter::with_capacity(256 * 1024, out);
        out.write_all(&MAGIC)?;
        out.write_all(&FORMAT_VERSION.to_le_bytes())?;
        let mut header = [0u8; 16];
        header[..8].copy_from_slice(&self.current.to_le_bytes());
        header[8..].copy_from_slice(&self.compacted.to_le_bytes());
        write_frame(&mut out, TAG_HEADER, &[&header])?;
        let mut records = 0u64;
        for (key, history) in &self.keys {
            for record in history.records() {
                write_version(&mut out, key, record)?;
                records += 1;
            }
        }
        let mut end = [0u8; 16];
        end[..8].copy_from_slice(&records.to_le_bytes());
        end[8..].copy_from_slice(&(self.keys.len() as u64).to_le_bytes());
        write_frame(&mut out, TAG_END, &[&end])?;
        out.flush()
    }
}

/// One version record: the fixed fields around the key and the value,
/// written from the shared buffers.
fn write_version(out: &mut dyn Write, key: &[u8], record: &Record) -> io::Result<()> {
    let too_long = || io::Error::new(io::ErrorKind::InvalidInput, "key or value too long");
    let key_len = u32::try_from(key.len()).map_err(|_| too_long())?;
    let value_len = u32::try_from(record.value.len()).map_err(|_| too_long())?;
    let fixed = record_fields(record);
    write_frame(
        out,
        TAG_VERSION,
        &[
            &key_len.to_le_bytes(),
            key,
            &fixed,
            &value_len.to_le_bytes(),
            &record.value,
        ],
    )
}

/// A frame: tag, body length, CRC-32C, then the body (given in parts).
fn write_frame(out: &mut dyn Write, tag: u8, parts: &[&[u8]]) -> io::Result<()> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let len = u32::try_from(len)
        .ok()
        .filter(|&l| l <= MAX_BODY_BYTES)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "snapshot frame too long"))?;
    out.write_all(&[tag])?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&frame_crc(tag, len, parts).to_le_bytes())?;
    for part in parts {
        out.write_all(part)?;
    }
    Ok(())
}
