//! State files: the state machine's part of a snapshot, in a file of its
//! own beside the `.snap` files (as etcd v3 keeps its state in
//! `member/snap/db` beside them), so that no snapshot is ever whole in
//! memory.
//!
//! A raft snapshot whose state lives in a file carries, as its `data`, only
//! a [`StateFileRef`]: that small reference is what `MemoryStorage`, the
//! `.snap` file and a MsgSnap hold. Its encoding:
//!
//! | bytes | field | meaning |
//! | --- | --- | --- |
//! | 4 | magic | `RRSF` |
//! | 1 | version | 1 |
//! | rest | reference | protobuf: index (1, uint64), size in bytes (2, uint64), CRC-32C of the whole file (3, uint32) |
//!
//! The file is named `{index:016x}-{crc32c:08x}.snap.db` (derived from the
//! reference, never taken from a peer, so a name cannot point elsewhere;
//! two files of one index with different bytes never collide). Files being
//! written end in `.tmp` and are removed when the snapshot directory is
//! next opened ([`super::Snapshotter::new`]).
//!
//! Owns: the reference format, state file names, writing a state file
//! durably, receiving one chunk by chunk, reading one back with its size
//! and CRC checked, and removing state files no snapshot needs.
//! Guarantees: a state file appears under its final name only complete and
//! fsynced (file, then directory); a reader reports a size or CRC mismatch
//! as an error naming the file instead of returning wrong bytes silently.
//! May not touch: what the bytes mean (the node's snapshot framing and the
//! state machine's), the `.snap` files and WAL markers.

use super::error::SnapError;
use crate::raftpb::Snapshot;
use crate::wal::fs::{create_private_file, sync_dir};
use prost::Message as _;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// The first bytes of a raft snapshot's data that refers to a state file.
pub const STATE_FILE_MAGIC: &[u8; 4] = b"RRSF";
/// The reference format version.
pub const STATE_FILE_REF_VERSION: u8 = 1;
/// Suffix of state files.
pub const STATE_FILE_SUFFIX: &str = ".snap.db";
/// Suffix of any file still being written in the snapshot directory.
pub const TEMPORARY_SUFFIX: &str = ".tmp";
/// Buffer of the writers: large sequential writes.
const WRITE_BUFFER_BYTES: usize = 1024 * 1024;
/// A receiver fdatasyncs every this many bytes, so the final fsync (which
/// the sender waits for) is short and dirty pages do not pile up.
const RECEIVE_SYNC_EVERY_BYTES: u64 = 64 * 1024 * 1024;
/// How a local state file is written: fdatasynced every `sync_every_bytes`
/// and no faster than `bytes_per_second`. Why: written flat out, a state
/// file of hundreds of MiB fills the device queue (by the kernel's
/// writeback in bursts, or by large syncs), and every WAL fdatasync (which
/// on ext4 may also wait for a journal commit entangled with that data)
/// queues behind it: measured, write p99 went from 2.3 ms to 14 ms while
/// snapshots of a 310 MiB state were saved back to back; synced every
/// 1 MiB and paced at 128 MiB/s it stayed at 3.5 ms (BENCHMARKS.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WritePacing {
    /// fdatasync after this many bytes.
    pub sync_every_bytes: u64,
    /// Write at most this many bytes a second (0: as fast as it goes).
    pub bytes_per_second: u64,
}

/// Default [`WritePacing::bytes_per_second`]: 128 MiB/s (a 2 GiB state,
/// the default quota, is written in 16 s).
pub const DEFAULT_WRITE_BYTES_PER_SECOND: u64 = 128 * 1024 * 1024;

impl WritePacing {
    /// Synced every 1 MiB, at most `bytes_per_second` (0: unlimited).
    pub fn at(bytes_per_second: u64) -> WritePacing {
        WritePacing {
            sync_every_bytes: 1024 * 1024,
            bytes_per_second,
        }
    }

    /// No pacing at all: synced only at the end (tests, tools).
    pub fn unpaced() -> WritePacing {
        WritePacing {
            sync_every_bytes: u64::MAX,
            bytes_per_second: 0,
        }
    }
}

impl Default for WritePacing {
    fn default() -> WritePacing {
        WritePacing::at(DEFAULT_WRITE_BYTES_PER_SECOND)
    }
}

/// Where a snapshot's state lives and how to check it.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct StateFileRef {
    /// The snapshot's index.
    #[prost(uint64, tag = "1")]
    pub index: u64,
    /// The file's length.
    #[prost(uint64, tag = "2")]
    pub size_bytes: u64,
    /// CRC-32C (Castagnoli) of the whole file.
    #[prost(uint32, tag = "3")]
    pub crc32c: u32,
}

impl StateFileRef {
    /// The reference as raft snapshot data.
    pub fn encode_data(&self) -> Vec<u8> {
        let mut data = Vec::with_capacity(5 + self.encoded_len());
        data.extend_from_slice(STATE_FILE_MAGIC);
        data.push(STATE_FILE_REF_VERSION);
        self.encode_raw(&mut data);
        data
    }

    /// The reference in raft snapshot `data`; `Ok(None)` when the data is
    /// not a reference (the state travels inline, as older snapshots do).
    pub fn decode_data(data: &[u8]) -> Result<Option<StateFileRef>, String> {
        let Some(rest) = data.strip_prefix(STATE_FILE_MAGIC) else {
            return Ok(None);
        };
        let Some((&version, reference)) = rest.split_first() else {
            return Err("state file reference without a version".to_string());
        };
        if version != STATE_FILE_REF_VERSION {
            return Err(format!(
                "state file reference version {version}, not {STATE_FILE_REF_VERSION}"
            ));
        }
        StateFileRef::decode(reference)
            .map(Some)
            .map_err(|e| format!("state file reference: {e}"))
    }

    /// The state file `snapshot` refers to, checked against the snapshot's
    /// index; `Ok(None)` when its state travels inline.
    pub fn of_snapshot(snapshot: &Snapshot) -> Result<Option<StateFileRef>, String> {
        let index = snapshot.metadata.index;
        match StateFileRef::decode_data(&snapshot.data)? {
            Some(reference) if reference.index != index => Err(format!(
                "the state file reference names index {}, the snapshot is at {index}",
                reference.index
            )),
            checked => Ok(checked),
        }
    }

    /// The file's name.
    pub fn file_name(&self) -> String {
        format!("{:016x}-{:08x}{STATE_FILE_SUFFIX}", self.index, self.crc32c)
    }

    /// The file's path in snapshot directory `dir`.
    pub fn path(&self, dir: &Path) -> PathBuf {
        dir.join(self.file_name())
    }
}

/// The index in a state file's name, if `name` is one.
fn state_file_index(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(STATE_FILE_SUFFIX)?;
    let (index, crc) = stem.split_once('-')?;
    if index.len() != 16 || crc.len() != 8 {
        return None;
    }
    u32::from_str_radix(crc, 16).ok()?;
    u64::from_str_radix(index, 16).ok()
}

/// A file written by [`WritePacing`].
struct Paced {
    file: File,
    pacing: WritePacing,
    unsynced_bytes: u64,
    written_bytes: u64,
    started: std::time::Instant,
}

impl Write for Paced {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.file.write(buf)?;
        self.unsynced_bytes += written as u64;
        self.written_bytes += written as u64;
        if self.unsynced_bytes >= self.pacing.sync_every_bytes {
            self.file.sync_data()?;
            self.unsynced_bytes = 0;
            if self.pacing.bytes_per_second > 0 {
                let due = std::time::Duration::from_secs_f64(
                    self.written_bytes as f64 / self.pacing.bytes_per_second as f64,
                );
                if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
                    std::thread::sleep(ahead);
                }
            }
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Counts and checksums what passes through to the inner writer.
struct Checksummed<W> {
    inner: W,
    size_bytes: u64,
    crc32c: u32,
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.crc32c = crc32c::crc32c_append(self.crc32c, &buf[..written]);
        self.size_bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the state file of the snapshot at `index` into `dir` with
/// `write` (which streams the state), durably and at the pace of `pacing`:
/// a temporary file, fsync, rename, directory fsync. Returns its reference.
/// Blocking: run it on a blocking thread.
pub fn write_state_file<E>(
    dir: &Path,
    index: u64,
    pacing: WritePacing,
    write: impl FnOnce(&mut dyn Write) -> Result<(), E>,
) -> Result<StateFileRef, E>
where
    E: From<SnapError>,
{
    let writing = dir.join(format!(
        "{index:016x}{STATE_FILE_SUFFIX}.local{TEMPORARY_SUFFIX}"
    ));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e| E::from(SnapError::io(&path, e))
    };
    let file = create_private_file(&writing).map_err(io(&writing))?;
    let paced = Paced {
        file,
        pacing,
        unsynced_bytes: 0,
        written_bytes: 0,
        started: std::time::Instant::now(),
    };
    let mut out = Checksummed {
        inner: BufWriter::with_capacity(WRITE_BUFFER_BYTES, paced),
        size_bytes: 0,
        crc32c: 0,
    };
    let written = write(&mut out).and_then(|()| {
        let paced = out.inner.into_inner().map_err(|e| e.into_error());
        paced
            .and_then(|paced| paced.file.sync_all())
            .map_err(io(&writing))
    });
    if let Err(error) = written {
        let _ = std::fs::remove_file(&writing);
        return Err(error);
    }
    let reference = StateFileRef {
        index,
        size_bytes: out.size_bytes,
        crc32c: out.crc32c,
    };
    let path = reference.path(dir);
    std::fs::rename(&writing, &path).map_err(io(&path))?;
    sync_dir(dir).map_err(io(dir))?;
    Ok(reference)
}

/// A state file arriving from a peer, written to a temporary file until
/// [`finish`](Self::finish) checks, fsyncs and renames it. Dropped
/// unfinished, it removes the temporary file. Blocking.
#[derive(Debug)]
pub struct StateFileReceiver {
    dir: PathBuf,
    expected: StateFileRef,
    temporary: PathBuf,
    out: Option<BufWriter<File>>,
    received_bytes: u64,
    synced_bytes: u64,
    crc32c: u32,
}

impl StateFileReceiver {
    /// Starts receiving `expected` into `dir`; `tag` makes the temporary
    /// name unique among concurrent transfers (e.g. sender and time).
    pub fn create(
        dir: &Path,
        expected: StateFileRef,
        tag: &str,
    ) -> Result<StateFileReceiver, SnapError> {
        let temporary = dir.join(format!("{}.{tag}{TEMPORARY_SUFFIX}", expected.file_name()));
        let file = create_private_file(&temporary).map_err(|e| SnapError::io(&temporary, e))?;
        Ok(StateFileReceiver {
            dir: dir.to_path_buf(),
            expected,
            temporary,
            out: Some(BufWriter::with_capacity(WRITE_BUFFER_BYTES, file)),
            received_bytes: 0,
            synced_bytes: 0,
            crc32c: 0,
        })
    }

    /// Bytes received so far.
    pub fn received_bytes(&self) -> u64 {
        self.received_bytes
    }

    /// Appends `chunk`; refuses more bytes than the reference announces.
    pub fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), SnapError> {
        let total = self.received_bytes + chunk.len() as u64;
        if total > self.expected.size_bytes {
            return Err(self.corrupt(format!(
                "{total} bytes received, {} announced",
                self.expected.size_bytes
            )));
        }
        let out = self.writer()?;
        out.write_all(chunk)
            .map_err(|e| SnapError::io(&self.temporary, e))?;
        self.crc32c = crc32c::crc32c_append(self.crc32c, chunk);
        self.received_bytes = total;
        if self.received_bytes - self.synced_bytes >= RECEIVE_SYNC_EVERY_BYTES {
            let out = self.writer()?;
            out.flush()
                .and_then(|()| out.get_ref().sync_data())
                .map_err(|e| SnapError::io(&self.temporary, e))?;
            self.synced_bytes = self.received_bytes;
        }
        Ok(())
    }

    /// Checks size and CRC against the reference, fsyncs, renames into
    /// place and fsyncs the directory; returns the final path.
    pub fn finish(mut self) -> Result<PathBuf, SnapError> {
        if self.received_bytes != self.expected.size_bytes {
            return Err(self.corrupt(format!(
                "{} bytes received, {} announced",
                self.received_bytes, self.expected.size_bytes
            )));
        }
        if self.crc32c != self.expected.crc32c {
            return Err(SnapError::CrcMismatch {
                path: self.temporary.clone(),
                expected: self.expected.crc32c,
                actual: self.crc32c,
            });
        }
        let out = self
            .out
            .take()
            .ok_or_else(|| self.corrupt("finished twice".into()))?;
        let file = out
            .into_inner()
            .map_err(|e| SnapError::io(&self.temporary, e.into_error()))?;
        file.sync_all()
            .map_err(|e| SnapError::io(&self.temporary, e))?;
        drop(file);
        let path = self.expected.path(&self.dir);
        std::fs::rename(&self.temporary, &path).map_err(|e| SnapError::io(&path, e))?;
        // Renamed: nothing left for `drop` to remove.
        self.temporary = PathBuf::new();
        sync_dir(&self.dir).map_err(|e| SnapError::io(&self.dir, e))?;
        Ok(path)
    }

    fn writer(&mut self) -> Result<&mut BufWriter<File>, SnapError> {
        let temporary = self.temporary.clone();
        self.out.as_mut().ok_or_else(|| SnapError::Corrupt {
            path: temporary,
            reason: "written after finishing".into(),
        })
    }

    fn corrupt(&self, reason: String) -> SnapError {
        SnapError::Corrupt {
            path: self.temporary.clone(),
            reason,
        }
    }
}

impl Drop for StateFileReceiver {
    fn drop(&mut self) {
        if !self.temporary.as_os_str().is_empty() {
            self.out = None;
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

/// Reads a state file, checking at its end that size and CRC match the
/// reference (an error then, naming the file). Call
/// [`finish`](Self::finish) after the reader's user is done, to check a
/// file the user did not read to its end.
#[derive(Debug)]
pub struct StateFileReader {
    path: PathBuf,
    expected: StateFileRef,
    file: std::io::BufReader<File>,
    read_bytes: u64,
    crc32c: u32,
    checked: bool,
}

impl StateFileReader {
    /// Opens the state file of `reference` in `dir`.
    pub fn open(dir: &Path, reference: StateFileRef) -> Result<StateFileReader, SnapError> {
        let path = reference.path(dir);
        let file = File::open(&path).map_err(|e| SnapError::io(&path, e))?;
        let size = file.metadata().map_err(|e| SnapError::io(&path, e))?.len();
        if size != reference.size_bytes {
            return Err(SnapError::Corrupt {
                path,
                reason: format!("{size} bytes, the snapshot says {}", reference.size_bytes),
            });
        }
        Ok(StateFileReader {
            path,
            expected: reference,
            file: std::io::BufReader::with_capacity(WRITE_BUFFER_BYTES, file),
            read_bytes: 0,
            crc32c: 0,
            checked: false,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads what is left and checks size and CRC.
    pub fn finish(mut self) -> Result<(), SnapError> {
        std::io::copy(&mut self, &mut std::io::sink())
            .map(|_| ())
            .map_err(|e| match e.into_inner() {
                Some(inner) => match inner.downcast::<SnapError>() {
                    Ok(snap) => *snap,
                    Err(other) => SnapError::io(&self.path, std::io::Error::other(other)),
                },
                None => SnapError::Corrupt {
                    path: self.path.clone(),
                    reason: "read failed".into(),
                },
            })
    }

    fn check(&mut self) -> std::io::Result<()> {
        if self.checked {
            return Ok(());
        }
        self.checked = true;
        let error = if self.read_bytes != self.expected.size_bytes {
            SnapError::Corrupt {
                path: self.path.clone(),
                reason: format!(
                    "{} bytes read, the snapshot says {}",
                    self.read_bytes, self.expected.size_bytes
                ),
            }
        } else if self.crc32c != self.expected.crc32c {
            SnapError::CrcMismatch {
                path: self.path.clone(),
                expected: self.expected.crc32c,
                actual: self.crc32c,
            }
        } else {
            return Ok(());
        };
        Err(std::io::Error::new(std::io::ErrorKind::InvalidData, error))
    }
}

impl Read for StateFileReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.check()?;
            return Ok(0);
        }
        self.crc32c = crc32c::crc32c_append(self.crc32c, &buf[..n]);
        self.read_bytes += n as u64;
        Ok(n)
    }
}

/// Removes the state files of `dir` older than `oldest_kept_index` (the
/// oldest snapshot kept); returns the removed paths.
pub fn purge_state_files(dir: &Path, oldest_kept_index: u64) -> Result<Vec<PathBuf>, SnapError> {
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| SnapError::io(dir, e))? {
        let entry = entry.map_err(|e| SnapError::io(dir, e))?;
        let name = entry.file_name();
        let Some(index) = name.to_str().and_then(state_file_index) else {
            continue;
        };
        if index < oldest_kept_index {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| SnapError::io(&path, e))?;
            removed.push(path);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, index: u64, bytes: &[u8]) -> StateFileRef {
        write_state_file::<SnapError>(dir, index, WritePacing::at(0), |out| {
            out.write_all(bytes).map_err(|e| SnapError::io(dir, e))
        })
        .expect("written")
    }

    #[test]
    fn reference_round_trips_and_other_data_is_not_one() {
        let reference = StateFileRef {
            index: 42,
            size_bytes: 1 << 33,
            crc32c: 0xdead_beef,
        };
        let data = reference.encode_data();
        assert_eq!(StateFileRef::decode_data(&data), Ok(Some(reference)));
        assert_eq!(StateFileRef::decode_data(b"RRSN\x01...."), Ok(None));
        assert!(StateFileRef::decode_data(b"RRSF\x02").is_err());
        assert_eq!(reference.file_name(), "000000000000002a-deadbeef.snap.db");
        assert_eq!(state_file_index(&reference.file_name()), Some(42));
        assert_eq!(state_file_index("000000000000002a.snap"), None);
    }

    #[test]
    fn written_file_reads_back_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reference = write(dir.path(), 7, b"hello state");
        assert_eq!(reference.size_bytes, 11);
        assert_eq!(reference.crc32c, crc32c::crc32c(b"hello state"));
        let mut reader = StateFileReader::open(dir.path(), reference).expect("open");
        let mut read = Vec::new();
        reader.read_to_end(&mut read).expect("read");
        assert_eq!(read, b"hello state");
        reader.finish().expect("checked");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(reference.file_name())]);
    }

    #[test]
    fn damaged_file_fails_its_check_at_the_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reference = write(dir.path(), 7, b"hello state");
        std::fs::write(reference.path(dir.path()), b"hello stats").expect("damage");
        let reader = StateFileReader::open(dir.path(), reference).expect("open");
        match reader.finish() {
            Err(SnapError::CrcMismatch { path, .. }) => {
                assert_eq!(path, reference.path(dir.path()))
            }
            other => panic!("expected a CRC mismatch, got {other:?}"),
        }
        std::fs::write(reference.path(dir.path()), b"short").expect("truncate");
        assert!(matches!(
            StateFileReader::open(dir.path(), reference),
            Err(SnapError::Corrupt { .. })
        ));
    }

    #[test]
    fn receiver_checks_before_renaming_and_cleans_up_when_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes = b"0123456789".repeat(100);
        let reference = StateFileRef {
            index: 9,
            size_bytes: bytes.len() as u64,
            crc32c: crc32c::crc32c(&bytes),
        };
        let mut receiver = StateFileReceiver::create(dir.path(), reference, "a").expect("create");
        for chunk in bytes.chunks(64) {
            receiver.write_chunk(chunk).expect("chunk");
        }
        assert!(receiver.write_chunk(b"x").is_err(), "more than announced");
        let path = receiver.finish().expect("finished");
        assert_eq!(std::fs::read(&path).expect("read"), bytes);

        let wrong = StateFileRef {
            crc32c: reference.crc32c ^ 1,
            ..reference
        };
        let mut receiver = StateFileReceiver::create(dir.path(), wrong, "b").expect("create");
        receiver.write_chunk(&bytes).expect("chunk");
        assert!(matches!(
            receiver.finish(),
            Err(SnapError::CrcMismatch { .. })
        ));

        let mut receiver = StateFileReceiver::create(dir.path(), reference, "c").expect("create");
        receiver.write_chunk(&bytes[..10]).expect("chunk");
        drop(receiver);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        assert_eq!(left, vec![reference.file_name()], "no temporary file left");
    }

    #[test]
    fn purge_keeps_files_from_the_oldest_kept_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = write(dir.path(), 5, b"old");
        let kept = write(dir.path(), 10, b"kept");
        let newer = write(dir.path(), 20, b"newer");
        let removed = purge_state_files(dir.path(), 10).expect("purge");
        assert_eq!(removed, vec![old.path(dir.path())]);
        assert!(kept.path(dir.path()).exists() && newer.path(dir.path()).exists());
    }
}
