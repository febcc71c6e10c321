//! Reading a snapshot back: frame by frame, every checksum, length and
//! rule of the store checked before the store is built. Bad input is an
//! error naming the byte offset and the record, never a panic, and no
//! length read from the input is allocated before the bytes arrive.

use super::MvccStore;
use super::error::SnapshotError;
use super::format::{
    FLAG_TOMBSTONE, FORMAT_VERSION, FRAME_HEAD_BYTES, MAGIC, MAX_BODY_BYTES, TAG_END, TAG_HEADER,
    TAG_VERSION, frame_crc,
};
use super::history::Record;
use super::restore_check::Builder;
use bytes::Bytes;
use std::io::{BufRead, BufReader, ErrorKind, Read};

impl MvccStore {
    /// Rebuilds a store from what [`super::MvccSnapshot::write_to`] wrote;
    /// reads `input` to its end (data after the end frame is an error).
    pub fn restore(input: &mut dyn Read) -> Result<MvccStore, SnapshotError> {
        let mut buffered = BufReader::with_capacity(RESTORE_BUFFER_BYTES, input);
        let mut frames = Frames {
            input: &mut buffered,
            offset: 0,
        };
        let store = frames.store()?;
        frames.expect_end()?;
        Ok(store)
    }

    /// Like [`MvccStore::restore`], but stops right after the end frame and
    /// leaves whatever follows in `input`: for a container format that
    /// appends its own sections to the MVCC snapshot. `input` is buffered
    /// (a `BufRead`) so that nothing past the end frame is consumed by
    /// read-ahead; wrap a plain reader in a `BufReader` of
    /// [`RESTORE_BUFFER_BYTES`] and read the rest from that same
    /// `BufReader`. Returns the store and the bytes read.
    pub fn restore_prefix(input: &mut dyn BufRead) -> Result<(MvccStore, u64), SnapshotError> {
        let mut frames = Frames { input, offset: 0 };
        let store = frames.store()?;
        Ok((store, frames.offset))
    }
}

/// The buffer [`MvccStore::restore`] reads through (large: a snapshot is
/// read once, front to back).
pub const RESTORE_BUFFER_BYTES: usize = 256 * 1024;

impl Frames<'_> {
    /// Reads the preamble and every frame up to and including the end
    /// frame, and builds the store.
    fn store(&mut self) -> Result<MvccStore, SnapshotError> {
        let frames = self;
        frames.preamble()?;
        let header = frames.frame(0)?;
        let mut builder = header_of(&header)?;
        loop {
            let frame = frames.frame(builder.records())?;
            match frame.tag {
                TAG_VERSION => {
                    let (key, record) = version_of(&frame, builder.records())?;
                    builder
                        .add(key, record)
                        .map_err(|reason| frame.invalid(builder.records(), reason))?;
                }
                TAG_END => {
                    let store = end_of(&frame, builder.records()).and_then(|(records, keys)| {
                        builder
                            .finish(records, keys)
                            .map_err(|reason| frame.invalid(records, reason))
                    })?;
                    return Ok(store);
                }
                tag => {
                    return Err(
                        frame.invalid(builder.records(), format!("unknown frame tag {tag}"))
                    );
                }
            }
        }
    }
}

/// The most a frame body is allocated before its bytes arrive.
const PREALLOCATE_LIMIT_BYTES: usize = 1024 * 1024;

/// One frame whose checksum matched.
struct Frame {
    offset: u64,
    tag: u8,
    body: Bytes,
}

impl Frame {
    fn invalid(&self, record: u64, reason: String) -> SnapshotError {
        SnapshotError::Invalid {
            offset: self.offset,
            record,
            reason,
        }
    }
}

struct Frames<'r> {
    input: &'r mut dyn BufRead,
    offset: u64,
}

impl Frames<'_> {
    fn preamble(&mut self) -> Result<(), SnapshotError> {
        let mut magic = [0u8; 8];
        self.read_exact(&mut magic, "the magic")?;
        if magic != MAGIC {
            return Err(SnapshotError::BadMagic {
                found: magic.to_vec(),
            });
        }
        let mut version = [0u8; 4];
        self.read_exact(&mut version, "the format version")?;
        let found = u32::from_le_bytes(version);
        if found != FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedVersion {
                found,
                supported: FORMAT_VERSION,
            });
        }
        Ok(())
    }

    fn read_exact(&mut self, buf: &mut [u8], reading: &'static str) -> Result<(), SnapshotError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.input.read(&mut buf[filled..]) {
                Ok(0) => {
                    return Err(SnapshotError::Truncated {
                        offset: self.offset + filled as u64,
                        reading,
                    });
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(SnapshotError::Io {
                        offset: self.offset + filled as u64,
                        source,
                    });
                }
            }
        }
        self.offset += buf.len() as u64;
        Ok(())
    }

    /// The next frame, its length bounded and its checksum verified.
    fn frame(&mut self, record: u64) -> Result<Frame, SnapshotError> {
        let offset = self.offset;
        let mut head = [0u8; FRAME_HEAD_BYTES];
        self.read_exact(&mut head, "a frame head")?;
        let tag = head[0];
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
        let stored = u32::from_le_bytes([head[5], head[6], head[7], head[8]]);
        if len > MAX_BODY_BYTES {
            return Err(SnapshotError::Invalid {
                offset,
                record,
                reason: format!("frame body of {len} bytes exceeds the limit {MAX_BODY_BYTES}"),
            });
        }
        // Exactly the claim up to a bound, so that a value's allocation is
        // its size (growing by doubling would hold up to twice the state
        // in memory); beyond the bound it grows with the bytes that
        // actually arrive, so a lying length costs at most the bound.
        let mut body = Vec::with_capacity((len as usize).min(PREALLOCATE_LIMIT_BYTES));
        let read = (&mut self.input)
            .take(u64::from(len))
            .read_to_end(&mut body)
            .map_err(|source| SnapshotError::Io {
                offset: self.offset,
                source,
            })?;
        self.offset += read as u64;
        if read < len as usize {
            return Err(SnapshotError::Truncated {
                offset: self.offset,
                reading: "a frame body",
            });
        }
        let computed = frame_crc(tag, len, &[&body]);
        if computed != stored {
            return Err(SnapshotError::Checksum {
                offset,
                stored,
                computed,
            });
        }
        Ok(Frame {
            offset,
            tag,
            body: Bytes::from(body),
        })
    }

    fn expect_end(&mut self) -> Result<(), SnapshotError> {
        let mut byte = [0u8; 1];
        loop {
            return match self.input.read(&mut byte) {
                Ok(0) => Ok(()),
                Ok(_) => Err(SnapshotError::TrailingData {
                    offset: self.offset,
                }),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(source) => Err(SnapshotError::Io {
                    offset: self.offset,
                    source,
                }),
            };
        }
    }
}

/// Reads fixed-size fields off a frame body.
struct Fields<'a> {
    body: &'a Bytes,
    at: usize,
}

impl Fields<'_> {
    fn take(&mut self, n: usize) -> Result<Bytes, String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.body.len())
            .ok_or_else(|| format!("body of {} bytes ends inside a field", self.body.len()))?;
        let field = self.body.slice(self.at..end);
        self.at = end;
        Ok(field)
    }

    fn i64(&mut self) -> Result<i64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&b);
        Ok(i64::from_le_bytes(a))
    }

    fn u64(&mut self) -> Result<u64, String> {
        self.i64().map(|v| v as u64)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    /// A u32 length, then that many bytes.
    fn sized(&mut self) -> Result<Bytes, String> {
        let len = self.u32()?;
        self.take(len as usize)
    }

    fn done(&self) -> Result<(), String> {
        match self.body.len() - self.at {
            0 => Ok(()),
            extra => Err(format!("{extra} bytes after the last field")),
        }
    }
}

fn parse<T>(
    frame: &Frame,
    record: u64,
    read: impl FnOnce(&mut Fields<'_>) -> Result<T, String>,
) -> Result<T, SnapshotError> {
    let mut fields = Fields {
        body: &frame.body,
        at: 0,
    };
    read(&mut fields)
        .and_then(|v| fields.done().map(|_| v))
        .map_err(|reason| frame.invalid(record, reason))
}

fn header_of(frame: &Frame) -> Result<Builder, SnapshotError> {
    if frame.tag != TAG_HEADER {
        return Err(frame.invalid(
            0,
            format!("frame tag {} where the header belongs", frame.tag),
        ));
    }
    let (current, compacted) = parse(frame, 0, |f| Ok((f.i64()?, f.i64()?)))?;
    Builder::new(current, compacted).map_err(|reason| frame.invalid(0, reason))
}

fn version_of(frame: &Frame, record: u64) -> Result<(Bytes, Record), SnapshotError> {
    parse(frame, record, |f| {
        let key = f.sized()?;
        let main = f.i64()?;
        let sub = f.i64()?;
        let flags = f.u8()?;
        if flags & !FLAG_TOMBSTONE != 0 {
            return Err(format!("unknown flags {flags:#04x}"));
        }
        let record = Record {
            main,
            sub,
            tombstone: flags & FLAG_TOMBSTONE != 0,
            create_revision: f.i64()?,
            version: f.i64()?,
            lease: f.i64()?,
            value: f.sized()?,
        };
        Ok((key, record))
    })
}

fn end_of(frame: &Frame, record: u64) -> Result<(u64, u64), SnapshotError> {
    parse(frame, record, |f| Ok((f.u64()?, f.u64()?)))
}
