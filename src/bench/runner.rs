//! Driving clients against a target and measuring them.
//!
//! Owns: the client tasks (closed loop, pipelined closed loop, or open loop
//! at a fixed rate), the
//! warm-up, the stop condition, the progress line on stderr, and the
//! before/after readings (target counters, CPU clocks) around the
//! measurement.
//!
//! Guarantees:
//! - an operation is counted (its latency in the histogram, `acknowledged`
//!   and `writes`/`reads` incremented) exactly when it succeeded and began
//!   after the measurement started; so `ops == acknowledged` by
//!   construction, and with `--ops N` exactly `N` operations are counted
//!   unless the run stalls (a failed one gives its slot back);
//! - pipelined (`--pipeline D`): each client runs `D` closed loops on its
//!   one connection ([`Client::share`]), each with its own operations and
//!   latencies, so up to `D` of its operations are in flight at once;
//! - open loop: client `i` of `C` at total rate `R` is scheduled at
//!   `t0 + (i + k·C)/R`; when a client is still busy with its previous
//!   operation at the scheduled time, the latency counts from the
//!   scheduled time (no coordinated omission); when it was idle, from the
//!   moment it actually sent (so timer slack is not blamed on the target);
//! - the run ends: every operation has a timeout ([`OP_TIMEOUT`], or the
//!   client's own when that is shorter), and a run with no
//!   acknowledgement for [`STALL_LIMIT`] stops and says so.
//!
//! May not touch: how an operation reaches the target (the drivers).

use super::cpu;
use super::driver::{Client, Driver, OpFailure};
use super::error::BenchError;
use super::histogram::Latencies;
use super::options::{BenchOptions, Stop};
use super::scrape::Counters;
use super::summary::{LatencySummary, thousands};
use super::workload::{OpGenerator, OpKind};
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Longest one operation may take before it counts as failed.
pub const OP_TIMEOUT: Duration = Duration::from_secs(15);
/// A run with no acknowledged operation for this long stops.
pub const STALL_LIMIT: Duration = Duration::from_secs(30);
/// How long a client waits after a failure before its next operation.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// What the measurement produced.
#[derive(Debug)]
pub struct Measured {
    /// From the start of measurement to the last counted answer.
    pub elapsed: Duration,
    /// Latency of every counted operation, microseconds.
    pub latencies: Histogram<u64>,
    /// Counted operations.
    pub acknowledged: u64,
    /// Counted writes.
    pub writes: u64,
    /// Counted reads.
    pub reads: u64,
    /// Failed operations during the measurement.
    pub errors: u64,
    /// The first failure seen (warm-up included).
    pub first_error: Option<String>,
    /// Why the run stopped early, if it did.
    pub stalled: Option<String>,
    /// The target's counters, after minus before.
    pub counters: Counters,
    /// This process's CPU time during the measurement.
    pub cpu: Duration,
    /// `--server-pid`'s CPU time during the measurement.
    pub server_cpu: Option<Duration>,
    /// With `--client-threads`: the client threads' CPU time during the
    /// measurement (the rest of `cpu` is the nodes').
    pub client_cpu: Option<Duration>,
}

/// State shared by the clients and the coordinator.
struct Shared {
    latencies: Latencies,
    t0: Instant,
    measure_start: OnceLock<Instant>,
    deadline: OnceLock<Instant>,
    stop: AtomicBool,
    /// `--ops`: counted operations still to claim.
    remaining: Option<AtomicU64>,
    acknowledged: AtomicU64,
    writes: AtomicU64,
    reads: AtomicU64,
    errors: AtomicU64,
    warmup_acks: AtomicU64,
    /// Nanoseconds after `measure_start` of the last counted answer.
    last_end_ns: AtomicU64,
    first_error: Mutex<Option<String>>,
    alive: AtomicUsize,
    all_done: Notify,
}

impl Shared {
    fn note_error(&self, failure: &OpFailure) {
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if first.is_none() {
            *first = Some(failure.0.clone());
        }
    }

    /// Claims one counted operation (`--ops`); false when none is left.
    fn claim(&self) -> bool {
        match &self.remaining {
            None => true,
            Some(remaining) => remaining
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| r.checked_sub(1))
                .is_ok(),
        }
    }

    fn release(&self) {
        if let Some(remaining) = &self.remaining {
            remaining.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Open-loop schedule of one client.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    t0: Instant,
    rate: f64,
    clients: u64,
    index: u64,
}

impl Schedule {
    fn at(&self, k: u64) -> Instant {
        let offset = (self.index as f64 + k as f64 * self.clients as f64) / self.rate;
        self.t0 + Duration::from_secs_f64(offset.min(1e9))
    }
}

async fn client_loop<C: Client>(
    index: usize,
    mut client: C,
    shared: Arc<Shared>,
    mut ops: OpGenerator,
    schedule: Option<Schedule>,
) {
    let answers_in_time = client.gives_up_after().is_some_and(|d| d <= OP_TIMEOUT);
    let mut k = 0u64;
    let mut previous_end = shared.t0;
    loop {
        if shared.stop.load(Ordering::Acquire)
            || (schedule.is_none() && shared.deadline.get().is_some_and(|&d| Instant::now() >= d))
        {
            break;
        }
        let scheduled = schedule.map(|s| s.at(k));
        k += 1;
        if let Some(at) = scheduled {
            if shared.deadline.get().is_some_and(|&d| at >= d) {
                break;
            }
            if at > Instant::now() {
                tokio::time::sleep_until(at.into()).await;
                if shared.stop.load(Ordering::Acquire) {
                    break;
                }
            }
        }
        let started = Instant::now();
        // Busy past its slot: the wait counts (coordinated omission).
        let from = match scheduled {
            Some(at) if previous_end > at => at,
            _ => started,
        };
        let counted = shared.measure_start.get().is_some_and(|&m| from >= m);
        if counted && !shared.claim() {
            break;
        }
        let op = ops.next_op();
        let result = if answers_in_time {
            client.execute(op).await
        } else {
            tokio::time::timeout(OP_TIMEOUT, client.execute(op))
                .await
                .unwrap_or_else(|_| Err(OpFailure(format!("no answer within {OP_TIMEOUT:?}"))))
        };
        let ended = Instant::now();
        previous_end = ended;
        match result {
            Ok(()) if counted => {
                shared.latencies.record(index, ended - from);
                shared.acknowledged.fetch_add(1, Ordering::AcqRel);
                match op.kind {
                    OpKind::Write => shared.writes.fetch_add(1, Ordering::Relaxed),
                    OpKind::Read => shared.reads.fetch_add(1, Ordering::Relaxed),
                };
                if let Some(&m) = shared.measure_start.get() {
                    let ns = u64::try_from((ended - m).as_nanos()).unwrap_or(u64::MAX);
                    shared.last_end_ns.fetch_max(ns, Ordering::AcqRel);
                }
            }
            Ok(()) => {
                shared.warmup_acks.fetch_add(1, Ordering::Relaxed);
            }
            Err(failure) => {
                if counted {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    shared.release();
                }
                shared.note_error(&failure);
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
    if shared.alive.fetch_sub(1, Ordering::AcqRel) == 1 {
        shared.all_done.notify_one();
    }
}

fn progress_line(
    elapsed: Duration,
    interval: &Histogram<u64>,
    seconds: f64,
    errors: u64,
) -> String {
    let summary = LatencySummary::of(interval);
    format!(
        "[{:>6.1}s] {:>10} ops/s  p99 {:>8.3} ms  errors {}",
        elapsed.as_secs_f64(),
        thousands((interval.len() as f64 / seconds.max(1e-9)).round() as u64),
        summary.p99_ms,
        thousands(errors)
    )
}

async fn server_cpu(pid: Option<u32>) -> Result<Option<Duration>, BenchError> {
    pid.map(cpu::process_cpu_time).transpose()
}

/// Runs `options`' workload against `driver` and measures it.
pub async fn run<D: Driver>(
    driver: Arc<D>,
    options: &BenchOptions,
) -> Result<Measured, BenchError> {
    let clients = connect_loops(&*driver, options).await?;
    let t0 = Instant::now();
    let shared = Arc::new(Shared {
        latencies: Latencies::new(options.loops())?,
        t0,
        measure_start: OnceLock::new(),
        deadline: OnceLock::new(),
        stop: AtomicBool::new(false),
        remaining: match options.stop {
            Stop::Ops(n) => Some(AtomicU64::new(n)),
            Stop::Duration(_) => None,
        },
        acknowledged: AtomicU64::new(0),
        writes: AtomicU64::new(0),
        reads: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        warmup_acks: AtomicU64::new(0),
        last_end_ns: AtomicU64::new(0),
        first_error: Mutex::new(None),
        alive: AtomicUsize::new(options.loops()),
        all_done: Notify::new(),
    });

    let client_runtime = client_runtime(options.client_threads)?;
    // With no warm-up the baseline is read before any client starts.
    let mut baseline = None;
    if options.warmup.is_zero() {
        baseline = Some(start_measuring(&*driver, &shared, options).await?);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (index, client) in clients.into_iter().enumerate() {
        let ops = OpGenerator::new(&options.workload, options.seed, index);
        let schedule = options.rate.map(|rate| Schedule {
            t0,
            rate,
            clients: options.clients as u64,
            index: index as u64,
        });
        let client = client_loop(index, client, Arc::clone(&shared), ops, schedule);
        match &client_runtime {
            Some(runtime) => tasks.spawn_on(client, runtime.handle()),
            None => tasks.spawn(client),
        };
    }

    let mut ticker =
        tokio::time::interval_at((t0 + Duration::from_secs(1)).into(), Duration::from_secs(1));
    let mut last_tick = t0;
    let mut last_progress = (0u64, t0);
    let mut stalled = None;
    loop {
        // Everything claimed (`--ops`), or every client gone.
        if shared.alive.load(Ordering::Acquire) == 0 {
            break;
        }
        let warming_up = baseline.is_none();
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shared.all_done.notified() => break,
            _ = tokio::time::sleep_until((t0 + options.warmup).into()), if warming_up => {
                // Warm-up operations were never recorded: nothing to drop.
                baseline = Some(start_measuring(&*driver, &shared, options).await?);
                continue;
            }
        }
        let now = Instant::now();
        let interval = shared.latencies.take_interval();
        if options.progress {
            let line = match shared.measure_start.get() {
                Some(&m) => progress_line(
                    now - m,
                    &interval,
                    (now - last_tick).as_secs_f64(),
                    shared.errors.load(Ordering::Relaxed),
                ),
                None => format!(
                    "[warm-up] {} operations",
                    thousands(shared.warmup_acks.load(Ordering::Relaxed))
                ),
            };
            eprintln!("{line}");
        }
        last_tick = now;
        if shared.deadline.get().is_some_and(|&d| now >= d) {
            shared.stop.store(true, Ordering::Release);
        }
        let progressed = shared.acknowledged.load(Ordering::Relaxed)
            + shared.warmup_acks.load(Ordering::Relaxed);
        if progressed != last_progress.0 {
            last_progress = (progressed, now);
        } else if now - last_progress.1 >= STALL_LIMIT && stalled.is_none() {
            stalled = Some(format!(
                "no operation acknowledged for {STALL_LIMIT:?}; stopping"
            ));
            shared.stop.store(true, Ordering::Release);
        }
    }
    shared.stop.store(true, Ordering::Release);
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| BenchError::Task(e.to_string()))?;
    }
    // Read before the client threads end (an ended thread has no clock).
    let clients_after = clients_cpu(options)?;
    if let Some(runtime) = client_runtime {
        // Every client task ended; dropping a runtime here would block.
        runtime.shutdown_background();
    }
    let Some((before, cpu_before, server_before, clients_before)) = baseline else {
        return Err(BenchError::Task(
            "every client stopped during the warm-up".to_string(),
        ));
    };
    let after = driver.counters().await;
    let cpu_after = cpu::own_cpu_time()?;
    let server_after = server_cpu(options.server_pid).await?;
    let measure_start = shared.measure_start.get().copied().unwrap_or(t0);
    let last_end = Duration::from_nanos(shared.last_end_ns.load(Ordering::Acquire));
    let elapsed = if last_end.is_zero() {
        measure_start.elapsed()
    } else {
        last_end
    };
    let first_error = shared
        .first_error
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    Ok(Measured {
        elapsed,
        latencies: shared.latencies.total(),
        acknowledged: shared.acknowledged.load(Ordering::Acquire),
        writes: shared.writes.load(Ordering::Acquire),
        reads: shared.reads.load(Ordering::Acquire),
        errors: shared.errors.load(Ordering::Acquire),
        first_error,
        stalled,
        counters: before.delta(&after),
        cpu: cpu_after.saturating_sub(cpu_before),
        server_cpu: match (server_before, server_after) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        },
        client_cpu: match (clients_before, clients_after) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        },
    })
}

/// One client per loop: client `c`'s connection, made by the driver, is
/// shared by loops `c·D` to `c·D + D − 1` (`D` = `--pipeline`).
async fn connect_loops<D: Driver>(
    driver: &D,
    options: &BenchOptions,
) -> Result<Vec<D::Client>, BenchError> {
    let mut loops = Vec::with_capacity(options.loops());
    for index in 0..options.clients {
        let client = driver.client(index).await?;
        for _ in 1..options.pipeline {
            let shared = client.share().ok_or_else(|| {
                BenchError::option(
                    "--pipeline",
                    "this target's connections carry one request at a time",
                )
            })?;
            loops.push(shared);
        }
        loops.push(client);
    }
    Ok(loops)
}

/// Name prefix of the client runtime's threads.
const CLIENT_THREAD_NAME: &str = "bench-client";

/// The clients' own runtime, with `--client-threads` threads.
fn client_runtime(threads: usize) -> Result<Option<tokio::runtime::Runtime>, BenchError> {
    if threads == 0 {
        return Ok(None);
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(CLIENT_THREAD_NAME)
        .enable_all()
        .build()
        .map(Some)
        .map_err(BenchError::Runtime)
}

/// The client threads' CPU time so far, with `--client-threads`.
fn clients_cpu(options: &BenchOptions) -> Result<Option<Duration>, BenchError> {
    if options.client_threads == 0 {
        return Ok(None);
    }
    cpu::threads_cpu_time(CLIENT_THREAD_NAME).map(Some)
}

/// Reads the baselines, then opens the measurement window.
async fn start_measuring<D: Driver>(
    driver: &D,
    shared: &Shared,
    options: &BenchOptions,
) -> Result<Baseline, BenchError> {
    let counters = driver.counters().await;
    let cpu = cpu::own_cpu_time()?;
    let server = server_cpu(options.server_pid).await?;
    let clients = clients_cpu(options)?;
    let start = Instant::now();
    let _ = shared.measure_start.set(start);
    if let Stop::Duration(duration) = options.stop {
        let _ = shared.deadline.set(start + duration);
    }
    Ok((counters, cpu, server, clients))
}

/// What the measurement window starts from: the target's counters, this
/// process's CPU time, the server's and the client threads'.
type Baseline = (Counters, Duration, Option<Duration>, Option<Duration>);
