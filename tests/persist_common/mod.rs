//! Helpers shared by the persistence actor tests: scratch data directories,
//! starting the actor on either backend (optionally behind the fault
//! injector), numbered Readies, waiting for acknowledgements, and reading the
//! WAL back.

#![allow(dead_code)]

use ringraft::persist::fault_injection::{FaultPlan, FaultyIo, IoEvent, IoLog};
use ringraft::persist::std_backend::StdIo;
use ringraft::persist::uring_backend::{UringIo, probe_uring};
use ringraft::persist::{
    BackendChoice, BackendKind, PersistActor, PersistConfig, Persisted, PersistedWatch,
    ReadyToPersist, SharedPersistError,
};
use ringraft::raftpb::{Entry, HardState, Metadata, walpb};
use ringraft::snap::Snapshotter;
use ringraft::storage::DataDir;
use ringraft::wal::{Wal, WalContents, WalOptions};
use std::path::Path;
use std::sync::OnceLock;

/// Whether io_uring works here (probed once per test binary).
pub fn uring_works() -> bool {
    static WORKS: OnceLock<bool> = OnceLock::new();
    *WORKS.get_or_init(|| match probe_uring() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("io_uring unavailable here ({e}); uring variants are skipped");
            false
        }
    })
}

/// Runs `test` for `kind`, skipping (with a note) a uring run where io_uring
/// does not work.
pub fn run_for(kind: BackendKind, test: fn(BackendKind)) {
    if kind == BackendKind::Uring && !uring_works() {
        eprintln!("skipped: io_uring unavailable");
        return;
    }
    test(kind);
}

/// Generates `mod $name { fn std(); fn uring(); }` running `$name(kind)`.
#[macro_export]
macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn std() {
                    super::persist_common::run_for(
                        ringraft::persist::BackendKind::Std,
                        super::$name,
                    );
                }
                #[test]
                fn uring() {
                    super::persist_common::run_for(
                        ringraft::persist::BackendKind::Uring,
                        super::$name,
                    );
                }
            }
        )*
    };
}

/// A scratch directory on tmpfs when there is one (fsync is free there, so
/// the tests stay fast; the bench uses the real disk).
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().expect("temporary directory")
}

pub fn metadata() -> Metadata {
    Metadata {
        node_id: 1,
        cluster_id: 7,
    }
}

/// A new WAL and snapshotter in `root`.
pub fn create_storage(root: &Path, segment_size_bytes: u64) -> (Wal, Snapshotter, DataDir) {
    let data_dir = DataDir::ringraft(root);
    let wal = Wal::create(
        &data_dir.wal_dir,
        &metadata(),
        WalOptions { segment_size_bytes },
    )
    .expect("create WAL");
    let snapshotter = Snapshotter::new(&data_dir.snap_dir).expect("snapshotter");
    (wal, snapshotter, data_dir)
}

pub fn config_for(kind: BackendKind) -> PersistConfig {
    PersistConfig {
        backend: match kind {
            BackendKind::Uring => BackendChoice::Uring,
            BackendKind::Std => BackendChoice::Std,
        },
        max_batch_bytes: 64 * 1024,
        ..PersistConfig::default()
    }
}

/// Starts the actor on `kind`.
pub fn start(kind: BackendKind, root: &Path, segment_size_bytes: u64) -> (PersistActor, DataDir) {
    let (wal, snapshotter, data_dir) = create_storage(root, segment_size_bytes);
    let actor = PersistActor::start(wal, snapshotter, config_for(kind)).expect("start actor");
    assert_eq!(actor.backend(), kind);
    (actor, data_dir)
}

/// Starts the actor on `kind` behind the fault injector.
pub fn start_recorded(
    kind: BackendKind,
    root: &Path,
    segment_size_bytes: u64,
    plan: FaultPlan,
) -> (PersistActor, DataDir, IoLog) {
    let (wal, snapshotter, data_dir) = create_storage(root, segment_size_bytes);
    let log = IoLog::default();
    let recorder = log.clone();
    let config = config_for(kind);
    let actor = match kind {
        BackendKind::Std => PersistActor::start_with_backend(wal, snapshotter, config, move || {
            FaultyIo::new(StdIo::new().expect("std backend"), recorder, plan)
        }),
        BackendKind::Uring => {
            PersistActor::start_with_backend(wal, snapshotter, config, move || {
                FaultyIo::new(UringIo, recorder, plan)
            })
        }
    }
    .expect("start actor");
    assert_eq!(actor.backend(), kind);
    (actor, data_dir, log)
}

/// An entry whose data names its Ready, `len` bytes long.
pub fn entry(index: u64, ready_number: u64, len: usize) -> Entry {
    let mut data = ready_number.to_le_bytes().to_vec();
    data.resize(len.max(8), (index % 251) as u8);
    Entry {
        entry_type: 0,
        term: 1,
        index,
        data: data.into(),
    }
}

/// A Ready appending `count` entries from `first_index`, with a hard state
/// committing a little behind.
pub fn ready_with_entries(number: u64, first_index: u64, count: u64) -> ReadyToPersist {
    let entries: Vec<Entry> = (first_index..first_index + count)
        .map(|index| entry(index, number, 64))
        .collect();
    ReadyToPersist {
        number,
        hard_state: Some(HardState {
            term: 1,
            vote: 1,
            commit: first_index - 1,
        }),
        entries,
        snapshot: None,
        must_sync: true,
    }
}

/// Blocks until Ready `number` is acknowledged (or the actor failed).
pub fn wait_for(watch: &PersistedWatch, number: u64) -> Result<Persisted, SharedPersistError> {
    let mut watch = watch.clone();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(watch.wait_for(number))
}

/// Everything in the WAL of `data_dir` from the beginning.
pub fn read_back(data_dir: &DataDir) -> WalContents {
    let (wal, contents) = Wal::open(
        &data_dir.wal_dir,
        &walpb::Snapshot::default(),
        WalOptions::default(),
    )
    .expect("open WAL");
    drop(wal);
    contents
}

/// The Ready numbers acknowledged, in the order recorded.
pub fn acknowledged(events: &[IoEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            IoEvent::Acknowledged { number } => Some(*number),
            _ => None,
        })
        .collect()
}
