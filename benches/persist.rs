//! The persistence actor against the disk's limit, on the real disk (the
//! system temporary directory, not tmpfs).
//!
//! `persist/bytes_per_sync/<size>`: WAL bytes per second at equal bytes per
//! fdatasync (64 KiB, 256 KiB, 1 MiB), 256 B entries in Readies of 16:
//! - `raw_pwrite_fdatasync`: a loop of one pwrite and one fdatasync of
//!   `size` bytes, appending to 64 MB files preallocated like WAL segments
//!   (the disk's limit);
//! - `actor_group_commit/<backend>`: the actor with its batch cap set to
//!   `size`, fed faster than it syncs, so every fdatasync covers `size`
//!   bytes of frames.
//!
//! `persist/64_producers_256B`: entries per second with 64 closed-loop
//! producers (tokio tasks), each submitting one Ready of one 256 B entry
//! and awaiting its acknowledgement:
//! - `group_commit/<backend>`: the default batch cap;
//! - `fsync_per_ready/<backend>`: a 1-byte batch cap, so every Ready gets
//!   its own fdatasync.
//!
//! Run: `cargo bench --bench persist`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringraft::persist::uring_backend::probe_uring;
use ringraft::persist::{
    BackendChoice, PersistActor, PersistConfig, PersistSender, PersistedWatch, ReadyToPersist,
};
use ringraft::raftpb::{Entry, Metadata};
use ringraft::snap::Snapshotter;
use ringraft::storage::DataDir;
use ringraft::wal::encoder::Encoder;
use ringraft::wal::{RecordType, Wal, WalOptions};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ENTRY_BYTES: usize = 256;
const ENTRIES_PER_READY: usize = 16;
const SEGMENT_BYTES: u64 = 64_000_000;
const BATCH_SIZES: [usize; 3] = [64 * 1024, 256 * 1024, 1024 * 1024];
const PRODUCERS: usize = 64;

fn backends() -> Vec<(&'static str, BackendChoice)> {
    let mut backends = vec![("std", BackendChoice::Std)];
    match probe_uring() {
        Ok(()) => backends.push(("uring", BackendChoice::Uring)),
        Err(e) => eprintln!("io_uring unavailable ({e}); uring not measured"),
    }
    backends
}

/// A scratch directory on the real disk.
fn disk_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(std::env::temp_dir()).expect("temporary directory")
}

fn entry(index: u64) -> Entry {
    Entry {
        entry_type: 0,
        term: 1,
        index,
        data: vec![0xab; ENTRY_BYTES].into(),
    }
}

/// Bytes of one entry's WAL frame.
fn entry_frame_bytes() -> usize {
    let mut frame = Vec::new();
    let data = prost::Message::encode_to_vec(&entry(1_000_000));
    Encoder::new(0).encode(RecordType::Entry, &data, &mut frame);
    frame.len()
}

/// A new WAL and snapshot directory for node 1 under `root`.
fn new_wal_and_snapshotter(root: &Path) -> (Wal, Snapshotter) {
    let data_dir = DataDir::ringraft(root);
    let wal = Wal::create(
        &data_dir.wal_dir,
        &Metadata {
            node_id: 1,
            cluster_id: 1,
        },
        WalOptions::default(),
    )
    .expect("create WAL");
    let snapshotter = Snapshotter::new(&data_dir.snap_dir).expect("snapshotter");
    (wal, snapshotter)
}

/// The actor over a new WAL in `root`.
fn start_actor(root: &Path, backend: BackendChoice, max_batch_bytes: usize) -> PersistActor {
    let (wal, snapshotter) = new_wal_and_snapshotter(root);
    let config = PersistConfig {
        backend,
        max_batch_bytes,
        // Enough Readies queued for two batches: the actor never waits for
        // the producer, the producer never runs far ahead.
        queue_capacity: Some((2 * max_batch_bytes / (ENTRY_BYTES * ENTRIES_PER_READY)).max(64)),
        ..PersistConfig::default()
    };
    PersistActor::start(wal, snapshotter, config).expect("start actor")
}

/// Appends to 64 MB files preallocated like WAL segments.
struct RawAppender {
    dir: tempfile::TempDir,
    file: File,
    offset: u64,
    files: u64,
}

impl RawAppender {
    fn new() -> RawAppender {
        let dir = disk_dir();
        let file = Self::segment(dir.path(), 0);
        RawAppender {
            dir,
            file,
            offset: 0,
            files: 1,
        }
    }

    fn segment(dir: &Path, n: u64) -> File {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.join(format!("{n}.raw")))
            .expect("open");
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, SEGMENT_BYTES)
            .expect("fallocate");
        file
    }

    fn append_and_sync(&mut self, bytes: &[u8]) {
        if self.offset + bytes.len() as u64 > SEGMENT_BYTES {
            let old = self.dir.path().join(format!("{}.raw", self.files - 1));
            self.file = Self::segment(self.dir.path(), self.files);
            self.files += 1;
            self.offset = 0;
            let _ = std::fs::remove_file(old);
        }
        self.file.write_all_at(bytes, self.offset).expect("pwrite");
        self.file.sync_data().expect("fdatasync");
        self.offset += bytes.len() as u64;
    }
}

/// The numbering of Readies and entries, shared by producers.
struct Sequencer {
    next_number: u64,
    next_index: u64,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

fn bytes_per_sync(c: &mut Criterion) {
    let frame_bytes = entry_frame_bytes();
    let mut group = c.benchmark_group("persist/bytes_per_sync");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for size in BATCH_SIZES {
        let entries_per_sync = size / frame_bytes;
        let wal_bytes_per_sync = entries_per_sync * frame_bytes;
        group.throughput(Throughput::Bytes(wal_bytes_per_sync as u64));
        group.bench_function(BenchmarkId::new("raw_pwrite_fdatasync", size), |b| {
            let mut raw = RawAppender::new();
            let bytes = vec![0xabu8; wal_bytes_per_sync];
            b.iter(|| raw.append_and_sync(&bytes));
        });
        for (name, backend) in backends() {
            let id = BenchmarkId::new(format!("actor_group_commit/{name}"), size);
            group.bench_function(id, |b| {
                let dir = disk_dir();
                let actor = start_actor(dir.path(), backend, wal_bytes_per_sync);
                let sender = actor.sender();
                let mut watch = actor.watch();
                let rt = runtime();
                let mut sequencer = Sequencer {
                    next_number: 1,
                    next_index: 1,
                };
                b.iter_custom(|iters| {
                    let entries = iters as usize * entries_per_sync;
                    let started = Instant::now();
                    let mut sent = 0;
                    while sent < entries {
                        let count = ENTRIES_PER_READY.min(entries - sent);
                        let first = sequencer.next_index;
                        let ready = ReadyToPersist {
                            number: sequencer.next_number,
                            entries: (first..first + count as u64).map(entry).collect(),
                            must_sync: true,
                            ..ReadyToPersist::default()
                        };
                        sender.submit(ready).expect("submit");
                        sequencer.next_number += 1;
                        sequencer.next_index += count as u64;
                        sent += count;
                    }
                    rt.block_on(watch.wait_for(sequencer.next_number - 1))
                        .expect("persisted");
                    started.elapsed()
                });
                drop(actor);
            });
        }
    }
    group.finish();
}

/// Runs `entries` single-entry Readies through 64 closed-loop producers.
fn run_producers(
    rt: &tokio::runtime::Runtime,
    sender: &PersistSender,
    watch: &PersistedWatch,
    sequencer: &Arc<Mutex<Sequencer>>,
    entries: u64,
) -> Duration {
    let started = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..PRODUCERS as u64)
            .map(|producer| {
                let sender = sender.clone();
                let mut watch = watch.clone();
                let sequencer = Arc::clone(sequencer);
                let mine =
                    entries / PRODUCERS as u64 + u64::from(producer < entries % PRODUCERS as u64);
                tokio::spawn(async move {
                    for _ in 0..mine {
                        let number = {
                            let mut s = sequencer.lock().expect("sequencer");
                            let ready = ReadyToPersist {
                                number: s.next_number,
                                entries: vec![entry(s.next_index)],
                                must_sync: true,
                                ..ReadyToPersist::default()
                            };
                            sender.submit(ready).expect("submit");
                            s.next_number += 1;
                            s.next_index += 1;
                            s.next_number - 1
                        };
                        watch.wait_for(number).await.expect("persisted");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("producer");
        }
    });
    started.elapsed()
}

fn many_producers(c: &mut Criterion) {
    let mut group = c.benchmark_group("persist/64_producers_256B");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(1));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    for (name, backend) in backends() {
        for (mode, max_batch_bytes) in [
            ("group_commit", ringraft::persist::DEFAULT_MAX_BATCH_BYTES),
            ("fsync_per_ready", 1),
        ] {
            group.bench_function(BenchmarkId::new(mode, name), |b| {
                let dir = disk_dir();
                let (wal, snapshotter) = new_wal_and_snapshotter(dir.path());
                let config = PersistConfig {
                    backend,
                    max_batch_bytes,
                    ..PersistConfig::default()
                };
                let actor = PersistActor::start(wal, snapshotter, config).expect("start");
                let sender = actor.sender();
                let watch = actor.watch();
                let sequencer = Arc::new(Mutex::new(Sequencer {
                    next_number: 1,
                    next_index: 1,
                }));
                b.iter_custom(|iters| run_producers(&rt, &sender, &watch, &sequencer, iters));
                drop(actor);
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bytes_per_sync, many_producers);
criterion_main!(benches);
