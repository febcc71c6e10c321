//! The floor of a durable write on this disk (`--raw-fsync`): each client
//! thread writes one value and calls `fdatasync`, again and again, on its
//! own file.
//!
//! Owns: the loop and its files: preallocated to 64 MB with `fallocate`
//! like a WAL segment, written sequentially (wrapping at the end), in a
//! temporary directory removed at the end.
//! Guarantees: one `pwrite` + one `fdatasync` per counted operation, on
//! plain threads (no async runtime in the way), latency from just before
//! the write to just after the sync; IO errors end the run with a typed
//! error, never a panic.
//! May not touch: the WAL or any node.

use super::cpu;
use super::embedded::data_parent;
use super::error::BenchError;
use super::histogram::Latencies;
use super::options::{BenchOptions, Stop};
use super::runner::Measured;
use super::scrape::Counters;
use super::summary::{LatencySummary, thousands};
use super::workload::value_bytes;
use rustix::fs::{FallocateFlags, fallocate, fdatasync};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Bytes each file is preallocated to (a WAL segment's size).
pub const FILE_BYTES: u64 = 64_000_000;

fn open_file(dir: &Path, index: usize) -> Result<File, BenchError> {
    let path = dir.join(format!("raw-{index}.bin"));
    let file = File::options()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(BenchError::io("cannot create", &path))?;
    fallocate(&file, FallocateFlags::empty(), 0, FILE_BYTES)
        .map_err(|e| BenchError::io("cannot preallocate", &path)(e.into()))?;
    fdatasync(&file).map_err(|e| BenchError::io("cannot sync", &path)(e.into()))?;
    if let Some(parent) = path.parent() {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(BenchError::io("cannot sync", parent))?;
    }
    Ok(file)
}

/// Runs the loop per `options` (target [`super::options::Target::RawFsync`]).
pub fn run(options: &BenchOptions, dir: Option<&Path>) -> Result<Measured, BenchError> {
    let parent = data_parent(dir);
    let tmp = tempfile::Builder::new()
        .prefix("ringraft-bench-raw-")
        .tempdir_in(&parent)
        .map_err(BenchError::io("cannot create a directory in", &parent))?;
    let files = (0..options.clients)
        .map(|i| open_file(tmp.path(), i))
        .collect::<Result<Vec<_>, _>>()?;
    let value = value_bytes(options.workload.value_size);
    let latencies = Latencies::new(options.clients)?;
    let remaining = AtomicU64::new(match options.stop {
        Stop::Ops(n) => n,
        Stop::Duration(_) => u64::MAX,
    });
    let stop = AtomicBool::new(false);
    let measuring = AtomicBool::new(options.warmup.is_zero());
    let done = AtomicU64::new(0);
    let sync_ns = AtomicU64::new(0);
    let t0 = Instant::now();
    let mut cpu_before = cpu::own_cpu_time()?;
    let mut measure_start = t0;
    let mut last_end = t0;
    let outcome = std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .iter()
            .enumerate()
            .map(|(index, file)| {
                let (latencies, remaining, stop, measuring, value, done, sync_ns) = (
                    &latencies, &remaining, &stop, &measuring, &value, &done, &sync_ns,
                );
                scope.spawn(move || -> Result<Instant, BenchError> {
                    let mut offset = 0u64;
                    let mut last = Instant::now();
                    while !stop.load(Ordering::Acquire) {
                        let counted = measuring.load(Ordering::Acquire);
                        if counted
                            && remaining
                                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
                                    r.checked_sub(1)
                                })
                                .is_err()
                        {
                            break;
                        }
                        if offset + value.len() as u64 > FILE_BYTES {
                            offset = 0;
                        }
                        let began = Instant::now();
                        file.write_all_at(value, offset)
                            .map_err(BenchError::io("cannot write", "the raw file"))?;
                        let syncing = Instant::now();
                        fdatasync(file)
                            .map_err(|e| BenchError::io("cannot sync", "the raw file")(e.into()))?;
                        last = Instant::now();
                        offset += value.len() as u64;
                        if counted {
                            let ns = u64::try_from((last - syncing).as_nanos()).unwrap_or(u64::MAX);
                            sync_ns.fetch_add(ns, Ordering::Relaxed);
                            latencies.record(index, last - began);
                            done.fetch_add(1, Ordering::AcqRel);
                        }
                    }
                    Ok(last)
                })
            })
            .collect();
        let deadline = |start: Instant| match options.stop {
            Stop::Duration(d) => Some(start + d),
            Stop::Ops(_) => None,
        };
        let mut end = deadline(t0);
        if !options.warmup.is_zero() {
            end = None;
        }
        let mut last_tick = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(20));
            let now = Instant::now();
            if !measuring.load(Ordering::Acquire) && now - t0 >= options.warmup {
                cpu_before = cpu::own_cpu_time()?;
                measure_start = Instant::now();
                end = deadline(measure_start);
                measuring.store(true, Ordering::Release);
            }
            if workers.iter().all(|w| w.is_finished()) {
                break;
            }
            if end.is_some_and(|e| now >= e) {
                stop.store(true, Ordering::Release);
            }
            if options.progress && now - last_tick >= Duration::from_secs(1) {
                let interval = latencies.take_interval();
                eprintln!(
                    "[{:>6.1}s] {:>10} fsyncs/s  p99 {:>8.3} ms",
                    (now - measure_start).as_secs_f64(),
                    thousands(
                        (interval.len() as f64 / (now - last_tick).as_secs_f64()).round() as u64
                    ),
                    LatencySummary::of(&interval).p99_ms
                );
                last_tick = now;
            }
        }
        for worker in workers {
            let finished = worker
                .join()
                .map_err(|_| BenchError::Task("a raw fsync thread panicked".to_string()))??;
            last_end = last_end.max(finished);
        }
        Ok::<(), BenchError>(())
    });
    stop.store(true, Ordering::Release);
    outcome?;
    let cpu_after = cpu::own_cpu_time()?;
    let ops = done.load(Ordering::Acquire);
    let path = tmp.path().to_path_buf();
    tmp.close().map_err(BenchError::io("cannot remove", path))?;
    Ok(Measured {
        elapsed: last_end.saturating_duration_since(measure_start),
        latencies: latencies.total(),
        acknowledged: ops,
        writes: ops,
        reads: 0,
        errors: 0,
        first_error: None,
        stalled: None,
        counters: Counters {
            fsyncs: Some(ops as f64),
            fsync_seconds: Some(sync_ns.load(Ordering::Acquire) as f64 / 1e9),
            entries: Some(ops as f64),
            position: None,
            messages: None,
        },
        cpu: cpu_after.saturating_sub(cpu_before),
        server_cpu: None,
        client_cpu: None,
    })
}
