//! Deterministic simulation of whole ringraft clusters: the real raft core,
//! the node's real apply machinery (`node::applier::Applier`, the proposal
//! envelope, the snapshot framing) over a real state machine and its codec,
//! the real WAL encoding and decoding and snapshot file codec, driven by one
//! seeded scheduler with a simulated clock, network and disk (see `cluster`
//! for a run, `disk` for what a crash keeps, `node` for how the node's
//! actors are played, `machine` for the state machines: the built-in
//! `KvStore` and the ledger of `examples/ledger`).
//!
//! Environment:
//! - `RINGRAFT_SEED=<seed>`: run exactly that seed (reproduces a failure
//!   byte for byte);
//! - `RINGRAFT_SIM_SEEDS` (default 1000), `RINGRAFT_SIM_FIRST_SEED`
//!   (default 0), `RINGRAFT_SIM_STEPS` (default 2000);
//! - `RINGRAFT_SIM_STATE_MACHINE=kv|ledger|both` (default both: even seeds
//!   replicate the key-value store, odd seeds the ledger);
//! - `RINGRAFT_SIM_BREAK=ack-before-fsync|read-before-apply`: run the main
//!   test with that safety rule broken (to reproduce a seed the break tests
//!   report);
//! - `RINGRAFT_SIM_STRICT=1`: a run that does not converge at the end
//!   fails (by default it is reported and counted);
//! - `RINGRAFT_SIM_TRACE_FROM_STEP=<step>`: print every delivered message
//!   and client answer from that step on.
//!
//! Seeds run on 2 threads. Owns: the tests and the run loop over seeds.
//! May not touch: anything outside the simulation.

mod checks;
mod cluster;
mod disk;
// The ledger of `examples/ledger`, the simulation's second state machine
// (its own unit tests, `ledger::tests`, run in this binary too).
#[path = "../../examples/ledger/ledger.rs"]
mod ledger;
mod machine;
mod network;
mod node;
mod persistence;
mod rng;
mod scheduler;
mod stats;
mod workload;

use cluster::RunOutcome;
use machine::Choice;
use node::BreakMode;
use stats::Stats;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

const THREADS: usize = 2;

/// Which seeds to run and how.
#[derive(Debug, Clone, Copy)]
struct Plan {
    first_seed: u64,
    seeds: u64,
    steps: u64,
    break_mode: BreakMode,
    /// Which state machine each seed replicates.
    choice: Choice,
    /// Stop at the first seed that breaks a safety rule (the break tests).
    stop_at_first_failure: bool,
}

/// What a batch of runs found.
struct Report {
    stats: Stats,
    /// The same counters by state machine, with the seeds that failed a
    /// check.
    by_machine: BTreeMap<&'static str, (Stats, u64)>,
    failures: Vec<RunOutcome>,
    stalls: Vec<(u64, String)>,
    seeds_run: u64,
    elapsed_ms: u128,
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn break_mode_from_env() -> BreakMode {
    match std::env::var("RINGRAFT_SIM_BREAK").as_deref() {
        Ok("ack-before-fsync") => BreakMode::AckBeforeFsync,
        Ok("read-before-apply") => BreakMode::ReadBeforeApply,
        _ => BreakMode::None,
    }
}

fn break_name(mode: BreakMode) -> Option<&'static str> {
    match mode {
        BreakMode::None => None,
        BreakMode::AckBeforeFsync => Some("ack-before-fsync"),
        BreakMode::ReadBeforeApply => Some("read-before-apply"),
    }
}

fn reproduce_command(seed: u64, plan: &Plan) -> String {
    let mut command = format!("RINGRAFT_SEED={seed} ");
    if plan.steps != 2000 {
        command.push_str(&format!("RINGRAFT_SIM_STEPS={} ", plan.steps));
    }
    if let Some(name) = break_name(plan.break_mode) {
        command.push_str(&format!("RINGRAFT_SIM_BREAK={name} "));
    }
    if let Some(machine) = plan.choice.env_value() {
        command.push_str(&format!("RINGRAFT_SIM_STATE_MACHINE={machine} "));
    }
    command.push_str("cargo test --release --test sim -- --nocapture");
    command
}

fn run_one(seed: u64, plan: &Plan) -> RunOutcome {
    let steps = plan.steps;
    let mode = plan.break_mode;
    let choice = plan.choice;
    match std::panic::catch_unwind(|| cluster::run(seed, steps, mode, choice)) {
        Ok(outcome) => outcome,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            RunOutcome {
                seed,
                machine: choice.machine(seed),
                violations: vec![format!("panic: {message}")],
                stall: None,
                stats: Stats::default(),
            }
        }
    }
}

/// A message storm is a livelock, not a broken safety rule.
fn is_livelock(violation: &str) -> bool {
    violation.starts_with("message storm")
}

fn breaks_safety(outcome: &RunOutcome) -> bool {
    outcome.violations.iter().any(|v| !is_livelock(v))
}

fn run_plan(plan: Plan) -> Report {
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let merged = Mutex::new((
        Stats::default(),
        Vec::new(),
        Vec::new(),
        0u64,
        BTreeMap::new(),
    ));
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                loop {
                    let offset = next.fetch_add(1, Ordering::Relaxed);
                    if offset >= plan.seeds || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let seed = plan.first_seed + offset;
                    let outcome = run_one(seed, &plan);
                    let mut merged = merged.lock().unwrap_or_else(|e| e.into_inner());
                    merged.0.add(&outcome.stats);
                    merged.3 += 1;
                    let (machine_stats, machine_failures): &mut (Stats, u64) =
                        merged.4.entry(outcome.machine).or_default();
                    machine_stats.add(&outcome.stats);
                    *machine_failures += u64::from(!outcome.violations.is_empty());
                    if let Some(stall) = &outcome.stall {
                        merged.2.push((seed, stall.clone()));
                    }
                    if !outcome.violations.is_empty() {
                        if plan.stop_at_first_failure && breaks_safety(&outcome) {
                            stop.store(true, Ordering::Relaxed);
                        }
                        merged.1.push(outcome);
                    }
                }
            });
        }
    });
    let (stats, mut failures, mut stalls, seeds_run, by_machine) =
        merged.into_inner().unwrap_or_else(|e| e.into_inner());
    failures.sort_by_key(|f| f.seed);
    stalls.sort_by_key(|s| s.0);
    Report {
        stats,
        by_machine,
        failures,
        stalls,
        seeds_run,
        elapsed_ms: started.elapsed().as_millis(),
    }
}

fn print_report(title: &str, plan: &Plan, report: &Report) {
    let per_seed_ms = report.elapsed_ms as f64 / report.seeds_run.max(1) as f64;
    println!(
        "\n== {title}: {} seeds from {} × {} steps in {:.1} s on {THREADS} threads ({per_seed_ms:.1} ms wall per seed)",
        report.seeds_run,
        plan.first_seed,
        plan.steps,
        report.elapsed_ms as f64 / 1000.0
    );
    let counts: Vec<String> = report
        .by_machine
        .iter()
        .map(|(machine, (stats, failed))| {
            format!(
                "{machine} {} seeds ({failed} with violations, {} stalls)",
                stats.seeds, stats.stalls
            )
        })
        .collect();
    println!(
        "state machines: {}; violations in {} seeds",
        counts.join(", "),
        report.failures.len()
    );
    for (machine, (stats, _)) in &report.by_machine {
        println!("-- {machine}:\n{}", stats.summary());
    }
    if report.by_machine.len() > 1 {
        println!("-- all:\n{}", report.stats.summary());
    }
    for (seed, stall) in report.stalls.iter().take(5) {
        println!("stall at seed {seed}: {stall}");
        println!("  reproduce: {}", reproduce_command(*seed, plan));
    }
    for failure in report.failures.iter().take(5) {
        println!("VIOLATION at seed {} ({}):", failure.seed, failure.machine);
        for violation in failure.violations.iter().take(5) {
            println!("  - {violation}");
        }
        println!("  reproduce: {}", reproduce_command(failure.seed, plan));
    }
}

/// The plan the environment asks for.
fn plan_from_env(break_mode: BreakMode) -> Plan {
    let steps = env_u64("RINGRAFT_SIM_STEPS").unwrap_or(2000);
    let choice = Choice::from_env().unwrap_or_else(|e| panic!("{e}"));
    match env_u64("RINGRAFT_SEED") {
        Some(seed) => Plan {
            first_seed: seed,
            seeds: 1,
            steps,
            break_mode,
            choice,
            stop_at_first_failure: false,
        },
        None => Plan {
            first_seed: env_u64("RINGRAFT_SIM_FIRST_SEED").unwrap_or(0),
            seeds: env_u64("RINGRAFT_SIM_SEEDS").unwrap_or(1000),
            steps,
            break_mode,
            choice,
            stop_at_first_failure: false,
        },
    }
}

#[test]
fn simulated_clusters_keep_every_safety_property() {
    let plan = plan_from_env(break_mode_from_env());
    let report = run_plan(plan);
    print_report("simulation", &plan, &report);
    assert!(
        report.failures.is_empty(),
        "{} of {} seeds failed a check; first: seed {} ({})",
        report.failures.len(),
        report.seeds_run,
        report.failures[0].seed,
        reproduce_command(report.failures[0].seed, &plan)
    );
    let strict = std::env::var("RINGRAFT_SIM_STRICT").is_ok_and(|v| v == "1");
    assert!(
        !strict || report.stalls.is_empty(),
        "{} seeds did not converge (strict mode)",
        report.stalls.len()
    );
}

/// Runs the CI seed budget with `mode` broken and asserts the checks catch
/// it.
fn assert_break_is_caught(mode: BreakMode) {
    if env_u64("RINGRAFT_SEED").is_some() {
        println!("reproducing one seed: the break tests do not run");
        return;
    }
    let mut plan = plan_from_env(mode);
    plan.stop_at_first_failure = true;
    let report = run_plan(plan);
    let title = format!("break {}", break_name(mode).unwrap_or("none"));
    print_report(&title, &plan, &report);
    // A message storm alone (a livelock the break can cause) does not
    // count: the point is that a safety check sees the damage.
    let caught = report.failures.iter().find(|f| breaks_safety(f));
    let Some(caught) = caught else {
        panic!(
            "with {title} no safety violation was found in {} seeds",
            report.seeds_run
        );
    };
    println!(
        "{title}: caught after {} seeds run (seed {}, {}: {})",
        report.seeds_run,
        caught.seed,
        caught.machine,
        caught
            .violations
            .iter()
            .find(|v| !is_livelock(v))
            .map_or("", |v| v.split(':').next().unwrap_or(v))
    );
}

#[test]
fn acknowledging_before_fdatasync_is_caught() {
    assert_break_is_caught(BreakMode::AckBeforeFsync);
}

#[test]
fn reading_before_applying_to_the_read_index_is_caught() {
    assert_break_is_caught(BreakMode::ReadBeforeApply);
}
