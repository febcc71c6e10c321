//! [`Wal`]: a write-ahead log open for appending, with its segment files.
//!
//! Owns: creating a WAL (in a temporary directory renamed into place),
//! opening one at a snapshot (reading everything after it and positioning the
//! writer at the end), saving entries and hard states, saving snapshot
//! markers, syncing, cutting segments (the next one is prepared and
//! preallocated ahead on a helper thread, by the syscall or through io_uring
//! as the writer asks with [`Wal::set_preallocation`]), and the locks that
//! keep segments still needed from being purged, released only by the
//! snapshot rules of [`super::release`] (a marker needs a
//! [`SnapshotMarker`]; a release needs a [`SyncPoint`] covering the marker
//! and a commit of its index).
//! Guarantees: a `save` that must sync (new entries, or a new term or vote)
//! returns only after `fdatasync`; a segment is named (renamed into place)
//! only after its header is synced, and the directory is synced after every
//! rename and removal; after any failed write or sync the WAL refuses all
//! further writes and never retries the sync; `open` syncs the tail segment
//! and the directory before returning, so whatever it read is durable even
//! if the previous process died before its own fdatasync. Each segment is locked with
//! `flock` while this WAL may need it, so another process cannot open it for
//! writing or purge it.
//! May not touch: the frame format (the encoder and decoder own it), snapshot
//! files.

use super::encoder::Encoder;
use super::error::WalError;
use super::fs;
use super::pipeline::{PREPARED_SUFFIX, SegmentPipeline};
pub use super::pipeline::{Preallocation, PreallocationFault, PreparationFailed};
use super::record_type::RecordType;
use super::release::{PendingRelease, SnapshotMarker, SyncPoint};
use super::replay::{Replay, WalContents};
use super::scan::scan_segments;
use super::segment_name::{SegmentName, list_segments, segment_path, segments_from_index};
use super::tail::TailSegment;
use crate::raftpb::{Entry, HardState, Metadata, walpb};
use prost::Message as _;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// Segment size at which the WAL cuts a new segment (etcd's value).
pub const DEFAULT_SEGMENT_SIZE_BYTES: u64 = 64_000_000;

/// Settings of a WAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalOptions {
    /// Cut a new segment once the tail reaches this size; also the size
    /// segments are preallocated to. Tests use small values.
    pub segment_size_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> WalOptions {
        WalOptions {
            segment_size_bytes: DEFAULT_SEGMENT_SIZE_BYTES,
        }
    }
}

/// Encoded WAL bytes handed to a caller that writes them itself.
#[derive(Debug)]
pub struct UnwrittenBytes {
    /// The segment they belong to.
    pub segment: SegmentName,
    /// Where in that segment they start.
    pub file_offset: u64,
    /// The frames.
    pub bytes: Vec<u8>,
}

/// A segment this WAL holds a lock on.
#[derive(Debug)]
struct LockedSegment {
    name: SegmentName,
    file: File,
}

/// A write-ahead log open for appending.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    options: WalOptions,
    metadata_bytes: Vec<u8>,
    hard_state: HardState,
    last_entry_index: u64,
    encoder: Encoder,
    /// Reused buffer for encoding one record's data.
    scratch: Vec<u8>,
    tail: TailSegment,
    locked: Vec<LockedSegment>,
    /// The newest snapshot marker whose older segments are still locked.
    pending_release: PendingRelease,
    pipeline: SegmentPipeline,
    unusable: bool,
    closed: bool,
}

impl Wal {
    /// Creates a WAL in `dir` (which must hold no segments) for `metadata`:
    /// its first segment holds a crc record (0), the metadata and an empty
    /// snapshot marker. The directory appears complete or not at all.
    pub fn create(dir: &Path, metadata: &Metadata, options: WalOptions) -> Result<Wal, WalError> {
        Wal::create_with_log(dir, metadata, &HardState::default(), &[], options)
    }

    /// [`create`](Self::create), with `entries` (consecutive from index 1)
    /// and then `hard_state` (skipped when empty) written after the header
    /// of the first segment, and synced, before the directory is renamed
    /// into place: a crash leaves no WAL or one holding all of them (a new
    /// cluster's bootstrap entries must never be missing from a WAL that
    /// exists). The records are the ones `save` writes (etcd's format).
    pub fn create_with_log(
        dir: &Path,
        metadata: &Metadata,
        hard_state: &HardState,
        entries: &[Entry],
        options: WalOptions,
    ) -> Result<Wal, WalError> {
        assert_appendable(entries, 0, 0);
        ensure_no_wal(dir)?;
        let tmp_dir = fresh_sibling_tmp_dir(dir)?;
        let name = SegmentName {
            seq: 0,
            first_index: 0,
        };
        let metadata_bytes = metadata.encode_to_vec();
        let (file, encoder, header_bytes) = write_first_segment(
            &segment_path(&tmp_dir, &name),
            &metadata_bytes,
            hard_state,
            entries,
            options.segment_size_bytes,
        )?;
        fs::sync_dir(&tmp_dir).map_err(|e| WalError::io(&tmp_dir, e))?;
        move_into_place(&tmp_dir, dir)?;

        let path = segment_path(dir, &name);
        let tail_file = file.try_clone().map_err(|e| WalError::io(&path, e))?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            options,
            metadata_bytes,
            hard_state: *hard_state,
            last_entry_index: entries.last().map_or(0, |e| e.index),
            encoder,
            scratch: Vec::new(),
            tail: TailSegment::new(name, path, tail_file, header_bytes),
            locked: vec![LockedSegment { name, file }],
            pending_release: PendingRelease::default(),
            pipeline: SegmentPipeline::start(dir, options.segment_size_bytes),
            unusable: false,
            closed: false,
        })
    }

    /// Opens the WAL in `dir` for appending, reading everything from the
    /// snapshot marker `at` on (use `walpb::Snapshot::default()` for the
    /// beginning). A torn tail is [`WalError::TornTail`]: run
    /// [`repair`](super::repair::repair) and open again.
    pub fn open(
        dir: &Path,
        at: &walpb::Snapshot,
        options: WalOptions,
    ) -> Result<(Wal, WalContents), WalError> {
        let all = list_segments(dir)?;
        let selected = segments_from_index(dir, &all, at.index)?;
        let locked = selected
            .iter()
            .map(|name| lock_existing_segment(dir, *name))
            .collect::<Result<Vec<_>, _>>()?;
        let mut replay = Replay::new(at);
        let end = scan_segments(dir, &selected, |place, record| replay.apply(place, record))?;
        if let Some(torn) = end.torn {
            return Err(WalError::TornTail {
                path: torn.path,
                offset: torn.offset,
                reason: torn.reason,
            });
        }
        let replayed = replay.finish(dir)?;

        let path = segment_path(dir, &end.last);
        let tail_file = match locked.last() {
            Some(last) => last.file.try_clone().map_err(|e| WalError::io(&path, e))?,
            None => return Err(WalError::io(&path, io::ErrorKind::NotFound.into())),
        };
        if end.stale_bytes_after_end {
            // Leftovers of a torn write after a zero length word: zero them so
            // new frames never sit in front of old bytes.
            fs::zero_from(&tail_file, end.data_end, end.file_len)
                .map_err(|e| WalError::io(&path, e))?;
        }
        // What was just read may exist only in the page cache: the previous
        // process can have died between its write and its fdatasync. The
        // caller treats everything returned as persisted (raft answers votes
        // and appends from it), so it must be durable before anyone builds on
        // it; a power loss after this restart must not take back a vote.
        // Earlier segments were synced when they were cut.
        tail_file.sync_data().map_err(|e| WalError::io(&path, e))?;
        fs::sync_dir(dir).map_err(|e| WalError::io(dir, e))?;
        remove_prepared_files(dir)?;
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            options,
            metadata_bytes: replayed.metadata_bytes,
            hard_state: replayed.contents.hard_state,
            last_entry_index: replayed.last_entry_index,
            encoder: Encoder::new(end.running_crc),
            scratch: Vec::new(),
            tail: TailSegment::new(end.last, path, tail_file, end.data_end),
            locked,
            pending_release: PendingRelease::default(),
            pipeline: SegmentPipeline::start(dir, options.segment_size_bytes),
            unusable: false,
            closed: false,
        };
        wal.complete_tail_header(end.last_record_count)?;
        Ok((wal, replayed.contents))
    }

    /// Appends `entries` and then `hard_state` (skipped when empty), syncing
    /// when raft requires it: when there are entries, or the term or vote
    /// changed. A commit-only change is buffered. Cuts a new segment when the
    /// tail reaches the segment size.
    pub fn save(&mut self, hard_state: &HardState, entries: &[Entry]) -> Result<(), WalError> {
        let must_sync = self.encode_save(hard_state, entries)?;
        if self.tail.offset() >= self.options.segment_size_bytes {
            return self.cut();
        }
        if must_sync {
            return self.sync();
        }
        let result = self.tail.write_full_pages_if_large();
        self.io_result(result)
    }

    /// The encoding half of [`save`](Self::save), for a caller that does
    /// the IO itself (the persistence actor's group commit): appends the
    /// frames of `entries` and `hard_state` to the unwritten buffer and
    /// returns whether raft requires a sync before acknowledging them. No
    /// IO; the caller then uses [`take_unwritten`](Self::take_unwritten),
    /// syncs, and [`cut_if_full`](Self::cut_if_full).
    pub fn encode_save(
        &mut self,
        hard_state: &HardState,
        entries: &[Entry],
    ) -> Result<bool, WalError> {
        self.check_usable()?;
        if hard_state.is_empty() && entries.is_empty() {
            return Ok(false);
        }
        let must_sync = !entries.is_empty()
            || hard_state.term != self.hard_state.term
            || hard_state.vote != self.hard_state.vote;
        assert_appendable(entries, self.last_entry_index, self.hard_state.commit);
        for entry in entries {
            // One scratch buffer for every record: no allocation per entry.
            self.scratch.clear();
            entry.encode_raw(&mut self.scratch);
            self.encoder
                .encode(RecordType::Entry, &self.scratch, self.tail.pending_mut());
            self.last_entry_index = entry.index;
        }
        if !hard_state.is_empty() {
            let data = hard_state.encode_to_vec();
            self.encoder
                .encode(RecordType::State, &data, self.tail.pending_mut());
            self.hard_state = *hard_state;
        }
        Ok(must_sync)
    }

    /// Appends a snapshot marker and syncs. The marker exists only once its
    /// snapshot file is durable (see [`super::release`]).
    pub fn save_snapshot(&mut self, marker: &SnapshotMarker) -> Result<(), WalError> {
        self.encode_snapshot_marker(marker)?;
        self.sync()
    }

    /// The encoding half of [`save_snapshot`](Self::save_snapshot): appends
    /// the marker to the unwritten buffer without IO, and remembers it as
    /// the snapshot whose older segments
    /// [`release_if_committed`](Self::release_if_committed) may release
    /// once a sync covers the marker and a commit of its index.
    pub fn encode_snapshot_marker(&mut self, marker: &SnapshotMarker) -> Result<(), WalError> {
        self.check_usable()?;
        let data = marker.record().encode_to_vec();
        self.encoder
            .encode(RecordType::Snapshot, &data, self.tail.pending_mut());
        self.last_entry_index = self.last_entry_index.max(marker.index());
        self.pending_release.marker_encoded(marker.index());
        Ok(())
    }

    /// What a sync of everything encoded so far makes durable (the commit
    /// index and the newest unreleased marker). A caller syncing through its
    /// own IO backend takes it after writing every encoded byte, just before
    /// starting the sync, and hands it to
    /// [`release_if_committed`](Self::release_if_committed) once that sync
    /// succeeded.
    pub fn sync_point(&self) -> SyncPoint {
        self.pending_release.sync_point(self.hard_state.commit)
    }

    /// After a sync that started at `synced` succeeded: if it made both the
    /// newest snapshot marker and a commit of its index durable, releases
    /// the locks of the segments that snapshot no longer needs and returns
    /// its index (the caller may then [`purge`](Self::purge)). Otherwise
    /// releases nothing.
    pub fn release_if_committed(&mut self, synced: SyncPoint) -> Option<u64> {
        let index = self.pending_release.take_releasable(synced)?;
        self.release_lock_to(index);
        Some(index)
    }

    /// Hands every encoded, unwritten byte to the caller, which must write
    /// them at [`UnwrittenBytes::file_offset`] of the tail segment
    /// ([`tail_file`](Self::tail_file)) before its next sync. The WAL counts
    /// them as written from now on, so the caller must call
    /// [`mark_failed`](Self::mark_failed) if that write fails. Pass the
    /// buffer back with [`reuse_buffer`](Self::reuse_buffer) to keep its
    /// capacity.
    pub fn take_unwritten(&mut self) -> Result<UnwrittenBytes, WalError> {
        self.check_usable()?;
        let (file_offset, bytes) = self.tail.take_pending();
        Ok(UnwrittenBytes {
            segment: self.tail.name,
            file_offset,
            bytes,
        })
    }

    /// Gives an emptied buffer from [`take_unwritten`](Self::take_unwritten)
    /// back, so the next batch is encoded without growing a new one.
    pub fn reuse_buffer(&mut self, buffer: Vec<u8>) {
        self.tail.reuse_buffer(buffer);
    }

    /// True when encoded bytes wait to be written.
    pub fn has_unwritten(&self) -> bool {
        self.tail.offset() > self.tail.written_bytes()
    }

    /// The tail segment's open file, for a caller writing and syncing it
    /// through its own IO backend.
    pub fn tail_file(&self) -> &File {
        self.tail.file()
    }

    /// The tail segment's path.
    pub fn tail_path(&self) -> &Path {
        &self.tail.path
    }

    /// Cuts a new segment when the tail has reached the segment size; a cut
    /// writes and syncs anything unwritten first. Returns whether it cut.
    pub fn cut_if_full(&mut self) -> Result<bool, WalError> {
        self.check_usable()?;
        if self.tail.offset() < self.options.segment_size_bytes {
            return Ok(false);
        }
        self.cut()?;
        Ok(true)
    }

    /// How the next segments are preallocated, ahead of their cut, on the
    /// WAL's helper thread: a writer that does its IO through io_uring (the
    /// persistence actor's uring backend) asks for
    /// [`Preallocation::Uring`]. Applies from the next preparation on; the
    /// one started when the WAL was opened or last cut finishes as it began.
    /// Either way the segment is the same file.
    pub fn set_preallocation(&mut self, preallocation: Preallocation) {
        self.pipeline.set_preallocation(preallocation);
    }

    /// Test-only fault injection: `fault` may fail the preallocation of the
    /// segments prepared from now on (see [`PreallocationFault`]); `None`
    /// (the default) removes it.
    pub fn set_preallocation_fault(&mut self, fault: Option<PreallocationFault>) {
        self.pipeline.set_fault(fault);
    }

    /// Records that a write or sync done by the caller failed: the WAL then
    /// refuses all further writes and never syncs again (not even when
    /// dropped), since the kernel may have dropped the unsynced pages.
    pub fn mark_failed(&mut self) {
        self.unusable = true;
    }

    /// Writes everything buffered and waits for `fdatasync`.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.check_usable()?;
        let result = self.tail.sync();
        self.io_result(result)
    }

    /// Releases the locks of segments no longer needed for a snapshot at
    /// `index`: every segment before the last one whose first index is below
    /// `index` (etcd's rule, which keeps one segment of margin). The tail is
    /// never released. Only
    /// [`release_if_committed`](Self::release_if_committed) calls it.
    fn release_lock_to(&mut self, index: u64) {
        let first_at_or_after = self
            .locked
            .iter()
            .position(|segment| segment.name.first_index >= index)
            .unwrap_or(self.locked.len());
        let release_count = first_at_or_after
            .saturating_sub(1)
            .min(self.locked.len() - 1);
        self.locked.drain(..release_count);
    }

    /// Removes the oldest released segment files while the directory holds
    /// more than `max_wal_files` segments; never a segment this WAL still
    /// locks or another process has locked. Returns the removed paths.
    pub fn purge(&mut self, max_wal_files: usize) -> Result<Vec<PathBuf>, WalError> {
        let segments = list_segments(&self.dir)?;
        let oldest_locked = self
            .locked
            .first()
            .map_or(self.tail.name.seq, |s| s.name.seq);
        let mut remaining = segments.len();
        let mut removed = Vec::new();
        for segment in segments {
            if remaining <= max_wal_files || segment.seq >= oldest_locked {
                break;
            }
            let path = segment_path(&self.dir, &segment);
            if !unlocked_elsewhere(&path)? {
                break;
            }
            std::fs::remove_file(&path).map_err(|e| WalError::io(&path, e))?;
            removed.push(path);
            remaining -= 1;
        }
        if !removed.is_empty() {
            fs::sync_dir(&self.dir).map_err(|e| WalError::io(&self.dir, e))?;
        }
        Ok(removed)
    }

    /// Syncs and closes the WAL.
    pub fn close(mut self) -> Result<(), WalError> {
        self.sync()?;
        self.closed = true;
        Ok(())
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The index of the last entry (or snapshot marker) written or read.
    pub fn last_entry_index(&self) -> u64 {
        self.last_entry_index
    }

    /// The last hard state saved or read.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// The segment being appended to.
    pub fn tail_segment(&self) -> SegmentName {
        self.tail.name
    }

    /// The segments this WAL still locks, oldest first (the tail last).
    pub fn locked_segments(&self) -> Vec<SegmentName> {
        self.locked.iter().map(|s| s.name).collect()
    }

    /// Finishes the tail and continues in a new segment named after the next
    /// entry index, whose header (crc, metadata, hard state) is synced before
    /// it is renamed into place.
    fn cut(&mut self) -> Result<(), WalError> {
        let finished = self.tail.finish();
        self.io_result(finished)?;
        let prepared = self.pipeline.take();
        let prepared = self.io_result(prepared)?;
        let name = SegmentName {
            seq: self.tail.name.seq + 1,
            first_index: self.last_entry_index + 1,
        };
        let mut header = Vec::new();
        self.encoder.encode(RecordType::Crc, &[], &mut header);
        self.encoder
            .encode(RecordType::Metadata, &self.metadata_bytes, &mut header);
        if !self.hard_state.is_empty() {
            let data = self.hard_state.encode_to_vec();
            self.encoder.encode(RecordType::State, &data, &mut header);
        }
        let path = segment_path(&self.dir, &name);
        let written = fs::write_all_at_in_pages(&prepared.file, 0, &header)
            .and_then(|()| prepared.file.sync_data())
            .and_then(|()| std::fs::rename(&prepared.path, &path))
            .and_then(|()| fs::sync_dir(&self.dir))
            .and_then(|()| prepared.file.try_clone());
        let tail_file = self.io_result(written)?;
        self.tail = TailSegment::new(name, path, tail_file, header.len() as u64);
        self.locked.push(LockedSegment {
            name,
            file: prepared.file,
        });
        Ok(())
    }

    /// Gives a last segment cut short inside its header (only a repair of
    /// damage that no crash produces can leave one) the missing crc and
    /// metadata records, so it reads like every other segment.
    fn complete_tail_header(&mut self, records_present: usize) -> Result<(), WalError> {
        if records_present >= 2 {
            return Ok(());
        }
        if records_present == 0 {
            self.encoder
                .encode(RecordType::Crc, &[], self.tail.pending_mut());
        }
        self.encoder.encode(
            RecordType::Metadata,
            &self.metadata_bytes,
            self.tail.pending_mut(),
        );
        if !self.hard_state.is_empty() {
            let data = self.hard_state.encode_to_vec();
            self.encoder
                .encode(RecordType::State, &data, self.tail.pending_mut());
        }
        self.sync()
    }

    fn check_usable(&self) -> Result<(), WalError> {
        if self.unusable {
            return Err(WalError::Unusable {
                dir: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// Maps an IO result, marking the WAL unusable on failure.
    fn io_result<T>(&mut self, result: io::Result<T>) -> Result<T, WalError> {
        result.map_err(|e| {
            self.unusable = true;
            WalError::io(&self.tail.path, e)
        })
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if !self.closed && !self.unusable {
            // Like closing etcd's WAL: make what was buffered durable. An
            // error here cannot be reported; nothing unsynced was promised.
            let _ = self.tail.sync();
        }
    }
}

/// Raft hands the WAL entries that continue or overwrite its log, never a
/// gap and never a committed index; writing anything else would produce a
/// WAL that fails its own reading rules, so it is a bug upstream.
fn assert_appendable(entries: &[Entry], last_entry_index: u64, commit: u64) {
    let Some(first) = entries.first() else {
        return;
    };
    assert!(
        first.index <= last_entry_index + 1,
        "entry {} would leave a gap after {last_entry_index}",
        first.index
    );
    assert!(
        first.index > commit,
        "entry {} would overwrite the committed index {commit}",
        first.index
    );
    for pair in entries.windows(2) {
        assert_eq!(
            pair[1].index,
            pair[0].index + 1,
            "entries saved together must have consecutive indexes"
        );
    }
}

/// Fails if `dir` holds segments; a directory holding anything else is
/// refused too, since creating replaces it. A missing `dir` is fine; one
/// that cannot be listed is an error naming it, not "empty".
fn ensure_no_wal(dir: &Path) -> Result<(), WalError> {
    let mut entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(WalError::io(dir, e)),
    };
    let Some(entry) = entries.next() else {
        return Ok(());
    };
    let name = entry.map_err(|e| WalError::io(dir, e))?.file_name();
    if !list_segments(dir)?.is_empty() {
        return Err(WalError::AlreadyExists {
            dir: dir.to_path_buf(),
        });
    }
    Err(WalError::BadDirectory {
        dir: dir.to_path_buf(),
        reason: format!("not empty (holds {})", name.to_string_lossy()),
    })
}

fn parent_dir(dir: &Path) -> PathBuf {
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// An empty `<dir>.tmp` beside `dir`, where a new WAL is assembled so that
/// it appears whole or not at all.
fn fresh_sibling_tmp_dir(dir: &Path) -> Result<PathBuf, WalError> {
    let parent = parent_dir(dir);
    std::fs::create_dir_all(&parent).map_err(|e| WalError::io(&parent, e))?;
    let mut name = dir.as_os_str().to_os_string();
    name.push(PREPARED_SUFFIX);
    let tmp_dir = PathBuf::from(name);
    if tmp_dir.exists() {
        std::fs::remove_dir_all(&tmp_dir).map_err(|e| WalError::io(&tmp_dir, e))?;
    }
    fs::create_private_dir(&tmp_dir).map_err(|e| WalError::io(&tmp_dir, e))?;
    Ok(tmp_dir)
}

/// Creates the first segment at `path` with its synced header: crc (0),
/// metadata, empty snapshot marker, then `entries` and `hard_state` (when
/// not empty). Returns the locked file, the encoder after them, and their
/// length.
fn write_first_segment(
    path: &Path,
    metadata_bytes: &[u8],
    hard_state: &HardState,
    entries: &[Entry],
    segment_size_bytes: u64,
) -> Result<(File, Encoder, u64), WalError> {
    let file = create_locked_segment(path, segment_size_bytes)?;
    let mut encoder = Encoder::new(0);
    let mut header = Vec::new();
    encoder.encode(RecordType::Crc, &[], &mut header);
    encoder.encode(RecordType::Metadata, metadata_bytes, &mut header);
    let empty_snapshot = walpb::Snapshot::default().encode_to_vec();
    encoder.encode(RecordType::Snapshot, &empty_snapshot, &mut header);
    for entry in entries {
        encoder.encode(RecordType::Entry, &entry.encode_to_vec(), &mut header);
    }
    if !hard_state.is_empty() {
        encoder.encode(RecordType::State, &hard_state.encode_to_vec(), &mut header);
    }
    fs::write_all_at_in_pages(&file, 0, &header)
        .and_then(|()| file.sync_data())
        .map_err(|e| WalError::io(path, e))?;
    Ok((file, encoder, header.len() as u64))
}

/// Renames the assembled `tmp_dir` to `dir` (replacing an empty `dir`) and
/// syncs the parent so the rename is durable.
fn move_into_place(tmp_dir: &Path, dir: &Path) -> Result<(), WalError> {
    if dir.exists() {
        std::fs::remove_dir(dir).map_err(|e| WalError::io(dir, e))?;
    }
    std::fs::rename(tmp_dir, dir).map_err(|e| WalError::io(dir, e))?;
    let parent = parent_dir(dir);
    fs::sync_dir(&parent).map_err(|e| WalError::io(&parent, e))
}

fn create_locked_segment(path: &Path, size_bytes: u64) -> Result<File, WalError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(fs::SEGMENT_FILE_MODE)
        .open(path)
        .map_err(|e| WalError::io(path, e))?;
    fs::try_lock_exclusive(&file).map_err(|e| WalError::io(path, e))?;
    fs::preallocate(&file, size_bytes).map_err(|e| WalError::io(path, e))?;
    Ok(file)
}

fn lock_existing_segment(dir: &Path, name: SegmentName) -> Result<LockedSegment, WalError> {
    let path = segment_path(dir, &name);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| WalError::io(&path, e))?;
    match fs::try_lock_exclusive(&file) {
        Ok(()) => Ok(LockedSegment { name, file }),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(WalError::Locked { path }),
        Err(e) => Err(WalError::io(&path, e)),
    }
}

/// True when no one holds the lock of the segment at `path`.
fn unlocked_elsewhere(path: &Path) -> Result<bool, WalError> {
    let file = File::open(path).map_err(|e| WalError::io(path, e))?;
    match fs::try_lock_exclusive(&file) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(WalError::io(path, e)),
    }
}

fn remove_prepared_files(dir: &Path) -> Result<(), WalError> {
    let entries = std::fs::read_dir(dir).map_err(|e| WalError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io(dir, e))?;
        if entry
            .file_name()
            .to_string_lossy()
            .ends_with(PREPARED_SUFFIX)
        {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| WalError::io(&path, e))?;
        }
    }
    Ok(())
}
