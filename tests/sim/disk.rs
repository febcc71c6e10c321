//! One node's simulated disk: the WAL in the real encoding, snapshot files,
//! and exactly what fdatasync and a directory fsync guarantee.
//!
//! Owns: the WAL bytes as the page cache holds them, the prefix a completed
//! fdatasync made durable, the snapshot files and whether their directory
//! entry is durable, and what a crash leaves of all that.
//!
//! Guarantees (the model): bytes up to the last completed fdatasync survive
//! a crash; bytes written after it are, by the seed's choice, all lost, all
//! kept (the page cache survived: a process crash), or torn at a 512-byte
//! sector boundary (a prefix kept, then a lost or garbage sector, possibly
//! with later sectors written; sectors are atomic, so synced bytes are never
//! damaged). A snapshot file is written to a temporary name, fsynced, then
//! renamed; the rename is durable only once the directory is fsynced, so a
//! crash before that keeps or loses the file (seeded), and a temporary file
//! never survives (boot removes them). Records are framed by the real
//! `wal::encoder::Encoder`; recovery decodes with the real
//! `wal::decoder::SegmentDecoder`, cuts a torn tail at the last valid frame
//! as `wal::repair` does, zeroes stale bytes after a clean end as
//! `Wal::open` does, picks the newest snapshot file a WAL marker at or below
//! the committed index vouches for (`Storage::open`), and replays from it by
//! the rules of `wal::replay` (restated here: that module is crate-private).
//! Anything the decoder calls corruption is an error: this disk only ever
//! produces damage a torn write explains.
//!
//! The WAL is one segment (no cuts, no segment release): the simulation's
//! logs stay small, and recovery then never lacks the segments an older
//! snapshot needs.
//!
//! May not touch: raft, the state machine, or when things happen (the node
//! decides when to write and sync; the cluster when to crash).

use crate::rng::SimRng;
use prost::Message as _;
use ringraft::raftpb::{Entry, HardState, Metadata, Snapshot, walpb};
use ringraft::snap::codec::{decode_snapshot_file, encode_snapshot_file};
use ringraft::wal::RecordType;
use ringraft::wal::decoder::{Chain, Decoded, SECTOR_BYTES, SegmentDecoder, SegmentRole};
use ringraft::wal::encoder::Encoder;
use ringraft::wal::payload;
use std::collections::BTreeMap;

/// The cluster id every simulated WAL carries.
pub const CLUSTER_ID: u64 = 0x51a1;

/// A snapshot file under its final name.
#[derive(Debug, Clone)]
struct SnapFile {
    bytes: Vec<u8>,
    /// Whether the rename that gave it its name is durable.
    dir_synced: bool,
}

/// What a crash did to the unsynced tail of the WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailFate {
    /// Nothing was unsynced.
    Clean,
    /// Everything after the last fdatasync is gone.
    Lost,
    /// Everything written survived.
    Kept,
    /// A sector-aligned prefix survived, then garbage or nothing.
    Torn,
    /// A sector-aligned prefix survived, then a lost sector, then the rest.
    Hole,
}

/// What a restart reads back.
#[derive(Debug)]
pub struct Recovered {
    /// The snapshot to start from, if any.
    pub snapshot: Option<Snapshot>,
    /// The last hard state in the WAL.
    pub hard_state: HardState,
    /// The entries after the snapshot.
    pub entries: Vec<Entry>,
    /// Whether a torn tail was cut off.
    pub repaired_torn_tail: bool,
}

/// One node's disk.
#[derive(Debug)]
pub struct SimDisk {
    node_id: u64,
    wal: Vec<u8>,
    synced_len: usize,
    encoder: Encoder,
    snap_files: BTreeMap<(u64, u64), SnapFile>,
    /// State records and snapshot markers written after the synced prefix:
    /// (end offset, commit) and (end offset, index).
    unsynced_commits: Vec<(usize, u64)>,
    unsynced_markers: Vec<(usize, u64)>,
    synced_commit: u64,
    synced_marker: u64,
}

/// Snapshot files kept besides those a restart may still need.
const MAX_SNAP_FILES: usize = 3;

impl SimDisk {
    /// A new member's disk: a WAL holding its header (crc, metadata, the
    /// empty snapshot marker), synced, as `Wal::create` leaves it.
    pub fn create(node_id: u64) -> SimDisk {
        let mut disk = SimDisk {
            node_id,
            wal: Vec::new(),
            synced_len: 0,
            encoder: Encoder::new(0),
            snap_files: BTreeMap::new(),
            unsynced_commits: Vec::new(),
            unsynced_markers: Vec::new(),
            synced_commit: 0,
            synced_marker: 0,
        };
        let metadata = Metadata {
            node_id,
            cluster_id: CLUSTER_ID,
        }
        .encode_to_vec();
        disk.encoder.encode(RecordType::Crc, &[], &mut disk.wal);
        disk.encoder
            .encode(RecordType::Metadata, &metadata, &mut disk.wal);
        let empty = walpb::Snapshot::default().encode_to_vec();
        disk.encoder
            .encode(RecordType::Snapshot, &empty, &mut disk.wal);
        disk.synced_len = disk.wal.len();
        disk
    }

    /// Bytes written so far (page cache).
    pub fn written_len(&self) -> usize {
        self.wal.len()
    }

    /// Bytes a crash cannot lose.
    pub fn synced_len(&self) -> usize {
        self.synced_len
    }

    /// Encodes a Ready's entries, then its hard state, as `Wal::encode_save`.
    pub fn write_entries_and_state(&mut self, hard_state: Option<HardState>, entries: &[Entry]) {
        for entry in entries {
            self.encoder
                .encode(RecordType::Entry, &entry.encode_to_vec(), &mut self.wal);
        }
        if let Some(hard_state) = hard_state.filter(|h| !h.is_empty()) {
            self.encoder.encode(
                RecordType::State,
                &hard_state.encode_to_vec(),
                &mut self.wal,
            );
            self.unsynced_commits
                .push((self.wal.len(), hard_state.commit));
        }
    }

    /// Encodes the WAL marker of a snapshot whose file is durable.
    pub fn write_snapshot_marker(&mut self, snapshot: &Snapshot) {
        let marker = walpb::Snapshot {
            index: snapshot.metadata.index,
            term: snapshot.metadata.term,
            conf_state: Some(snapshot.metadata.conf_state.clone()),
        };
        self.encoder
            .encode(RecordType::Snapshot, &marker.encode_to_vec(), &mut self.wal);
        self.unsynced_markers
            .push((self.wal.len(), snapshot.metadata.index));
    }

    /// An fdatasync that started when `target_len` bytes were written has
    /// completed. Then, as the persistence actor does once a synced hard
    /// state commits the newest synced snapshot, older snapshot files
    /// beyond the newest few are purged.
    pub fn complete_sync(&mut self, target_len: usize) {
        self.synced_len = self.synced_len.max(target_len.min(self.wal.len()));
        let synced = self.synced_len;
        for (_, commit) in self
            .unsynced_commits
            .iter()
            .filter(|(end, _)| *end <= synced)
        {
            self.synced_commit = self.synced_commit.max(*commit);
        }
        for (_, index) in self
            .unsynced_markers
            .iter()
            .filter(|(end, _)| *end <= synced)
        {
            self.synced_marker = self.synced_marker.max(*index);
        }
        self.unsynced_commits.retain(|(end, _)| *end > synced);
        self.unsynced_markers.retain(|(end, _)| *end > synced);
        if self.synced_marker > 0 && self.synced_commit >= self.synced_marker {
            self.purge_snapshots_before(self.synced_marker);
        }
    }

    fn purge_snapshots_before(&mut self, released_index: u64) {
        let removable: Vec<(u64, u64)> = self
            .snap_files
            .iter()
            .rev()
            .skip(MAX_SNAP_FILES)
            .filter(|((_, index), file)| *index < released_index && file.dir_synced)
            .map(|(name, _)| *name)
            .collect();
        for name in removable {
            self.snap_files.remove(&name);
        }
    }

    /// The temporary file was written and fsynced and is now renamed into
    /// place (not yet durable: the directory is not synced).
    pub fn rename_snapshot_file(&mut self, snapshot: &Snapshot) {
        let name = (snapshot.metadata.term, snapshot.metadata.index);
        self.snap_files.insert(
            name,
            SnapFile {
                bytes: encode_snapshot_file(snapshot),
                dir_synced: false,
            },
        );
    }

    /// The snapshot directory was fsynced: every rename is durable.
    pub fn sync_snapshot_dir(&mut self) {
        for file in self.snap_files.values_mut() {
            file.dir_synced = true;
        }
    }

    /// A crash (power loss or process kill, the seed decides what survives).
    pub fn crash(&mut self, rng: &mut SimRng) -> TailFate {
        for file in self.snap_files.values_mut() {
            if !file.dir_synced && rng.chance(500) {
                file.bytes.clear();
            }
        }
        self.snap_files.retain(|_, file| !file.bytes.is_empty());
        for file in self.snap_files.values_mut() {
            file.dir_synced = true;
        }
        let fate = self.crash_wal_tail(rng);
        self.encoder = Encoder::new(0);
        self.unsynced_commits.clear();
        self.unsynced_markers.clear();
        fate
    }

    fn crash_wal_tail(&mut self, rng: &mut SimRng) -> TailFate {
        let written = self.wal.len();
        let synced = self.synced_len;
        if written == synced {
            return TailFate::Clean;
        }
        let first_boundary = synced.div_ceil(SECTOR_BYTES) * SECTOR_BYTES;
        let boundaries = if first_boundary < written {
            (written - 1 - first_boundary) / SECTOR_BYTES + 1
        } else {
            0
        };
        match rng.below(5) {
            0 | 1 => {
                self.wal.truncate(synced);
                TailFate::Lost
            }
            2 => TailFate::Kept,
            choice => {
                if boundaries == 0 {
                    // Everything unsynced is in the sector holding the
                    // synced end: that sector's write tore after it.
                    self.wal.truncate(synced);
                    let garbage = rng.bytes(first_boundary.max(synced + 8) - synced);
                    self.wal.extend_from_slice(&garbage);
                    return TailFate::Torn;
                }
                let cut = first_boundary + rng.below(boundaries as u64) as usize * SECTOR_BYTES;
                if choice == 3 {
                    self.wal.truncate(cut);
                    if rng.chance(500) {
                        let garbage = rng.bytes(SECTOR_BYTES);
                        self.wal.extend_from_slice(&garbage);
                    }
                    TailFate::Torn
                } else {
                    let hole_end = (cut + SECTOR_BYTES).min(written);
                    self.wal[cut..hole_end].fill(0);
                    TailFate::Hole
                }
            }
        }
    }

    /// Reads the disk back as a restarting node does; repairs the WAL tail
    /// (a torn tail cut, stale bytes after a clean end zeroed, all synced)
    /// and positions the encoder to append after the last valid record.
    /// An error means the WAL or the snapshots are damaged in a way no
    /// crash explains, or replay rules are broken: a violation.
    pub fn recover(&mut self) -> Result<Recovered, String> {
        let (records, end, torn) = self.decode_wal()?;
        self.wal.truncate(end);
        // `Wal::open` repairs, then fdatasyncs the tail and the directory:
        // whatever a restart read back is durable from here on, even if the
        // previous process died before its own fdatasync.
        self.synced_len = end;
        let mut last_commit = 0;
        let mut markers = Vec::new();
        for (offset_end, record_type, data) in &records {
            match record_type {
                RecordType::State => {
                    let state = payload::decode_hard_state(data)?;
                    last_commit = state.commit;
                    if *offset_end <= self.synced_len {
                        self.synced_commit = self.synced_commit.max(state.commit);
                    } else {
                        self.unsynced_commits.push((*offset_end, state.commit));
                    }
                }
                RecordType::Snapshot => {
                    let marker = payload::decode_snapshot_marker(data)?;
                    if *offset_end > self.synced_len {
                        self.unsynced_markers.push((*offset_end, marker.index));
                    }
                    markers.push(marker);
                }
                _ => {}
            }
        }
        markers.retain(|m| m.index <= last_commit);
        let snapshot = self.newest_vouched_snapshot(&markers)?;
        let at = snapshot
            .as_ref()
            .map_or((0, 0), |s| (s.metadata.index, s.metadata.term));
        let (hard_state, entries) = replay(self.node_id, &records, at)?;
        Ok(Recovered {
            snapshot,
            hard_state,
            entries,
            repaired_torn_tail: torn,
        })
    }

    /// Every valid record as (end offset, type, data), where the valid data
    /// ends, and whether it ended in a torn write.
    #[allow(clippy::type_complexity)]
    fn decode_wal(&mut self) -> Result<(Vec<(usize, RecordType, Vec<u8>)>, usize, bool), String> {
        let mut decoder = SegmentDecoder::new(&self.wal, Chain::Continues(0), SegmentRole::Last);
        let mut records = Vec::new();
        loop {
            match decoder.next_record() {
                Ok(Decoded::Record(record)) => {
                    records.push((
                        decoder.valid_end() as usize,
                        record.record_type,
                        record.record.data,
                    ));
                }
                Ok(Decoded::End { data_end }) => {
                    self.encoder = Encoder::new(decoder.running_crc());
                    return Ok((records, data_end as usize, false));
                }
                Ok(Decoded::TornTail { offset, .. }) => {
                    self.encoder = Encoder::new(decoder.running_crc());
                    return Ok((records, offset as usize, true));
                }
                Err(error) => {
                    return Err(format!(
                        "node {}: WAL corrupt after a crash (synced {} of {} bytes): {error}",
                        self.node_id,
                        self.synced_len,
                        self.wal.len()
                    ));
                }
            }
        }
    }

    fn newest_vouched_snapshot(
        &self,
        markers: &[walpb::Snapshot],
    ) -> Result<Option<Snapshot>, String> {
        for ((term, index), file) in self.snap_files.iter().rev() {
            if !markers.iter().any(|m| m.term == *term && m.index == *index) {
                continue;
            }
            return decode_snapshot_file(&file.bytes).map(Some).map_err(|e| {
                format!(
                    "node {}: snapshot file {term}-{index} does not decode: {e:?}",
                    self.node_id
                )
            });
        }
        Ok(None)
    }
}

/// The replay rules of `wal::replay` from the snapshot at `at` (index,
/// term): the last hard state and the entries after the snapshot.
fn replay(
    node_id: u64,
    records: &[(usize, RecordType, Vec<u8>)],
    at: (u64, u64),
) -> Result<(HardState, Vec<Entry>), String> {
    let (start_index, start_term) = at;
    let mut hard_state = HardState::default();
    let mut entries: Vec<Entry> = Vec::new();
    let mut last_entry_index = 0;
    let mut matched = false;
    let fail = |what: String| format!("node {node_id}: WAL replay: {what}");
    for (_, record_type, data) in records {
        match record_type {
            RecordType::Crc => {}
            RecordType::Metadata => {
                let metadata = payload::decode_metadata(data).map_err(fail)?;
                if metadata.node_id != node_id || metadata.cluster_id != CLUSTER_ID {
                    return Err(fail(format!("foreign metadata {metadata:?}")));
                }
            }
            RecordType::Entry => {
                let entry = payload::decode_entry(data).map_err(fail)?;
                last_entry_index = entry.index;
                if entry.index <= start_index {
                    // A truncation below everything kept: they are stale.
                    entries.clear();
                    continue;
                }
                let kept = (entry.index - start_index - 1) as usize;
                if kept > entries.len() {
                    return Err(fail(format!("entry {} leaves a gap", entry.index)));
                }
                if entry.index <= hard_state.commit {
                    return Err(fail(format!(
                        "entry {} rewrites a committed index (commit {})",
                        entry.index, hard_state.commit
                    )));
                }
                entries.truncate(kept);
                // Below the snapshot's term only as a stale suffix that a
                // later record overwrites (checked at the end).
                let previous_term = entries.last().map_or(0, |e| e.term);
                if entry.term < previous_term {
                    return Err(fail(format!(
                        "entry {} has term {} below {previous_term}",
                        entry.index, entry.term
                    )));
                }
                entries.push(entry);
            }
            RecordType::State => {
                let state = payload::decode_hard_state(data).map_err(fail)?;
                if state.term < hard_state.term {
                    return Err(fail(format!("hard state term {} goes back", state.term)));
                }
                if state.commit > last_entry_index.max(start_index) {
                    return Err(fail(format!(
                        "hard state commits {} beyond the last index {}",
                        state.commit,
                        last_entry_index.max(start_index)
                    )));
                }
                hard_state = state;
            }
            RecordType::Snapshot => {
                let marker = payload::decode_snapshot_marker(data).map_err(fail)?;
                last_entry_index = last_entry_index.max(marker.index);
                if marker.index == start_index {
                    if marker.term != start_term {
                        return Err(fail(format!(
                            "snapshot marker {} has term {}, file has {start_term}",
                            marker.index, marker.term
                        )));
                    }
                    matched = true;
                }
            }
        }
    }
    if !matched {
        return Err(fail(format!("no marker for snapshot {start_index}")));
    }
    if let Some(first) = entries.first()
        && first.term < start_term
    {
        return Err(fail(format!(
            "entry {} has term {} below the snapshot's {start_term}",
            first.index, first.term
        )));
    }
    Ok((hard_state, entries))
}
