//! Background work that must not delay the commit path: a job run on a
//! thread of its own at a lower CPU priority.
//!
//! Why: the state file of a periodic snapshot is written while writes go
//! on. On a machine with few cores the writer shares them with the
//! persistence thread and the raft and apply tasks, and the kernel's
//! scheduler lets a running thread finish its slice before a thread it
//! woke gets the core: a scheduler trace of the 1-node bench showed the
//! persistence thread waiting 1.4 ms behind the snapshot writer, with all
//! 256 writers waiting on it. At nice +10 a thread weighs about a tenth of
//! a normal one, so the commit path preempts it at once, while a
//! snapshot still gets the cores whenever they are idle (measured in
//! BENCHMARKS.md, "The hot path (issue 18)").
//!
//! Owns: [`run_at_low_priority`]. Guarantees: the job runs exactly once,
//! to completion, and its result (or its panic) comes back to the caller;
//! only the job's own thread is lowered, never the caller's. May not
//! touch: what the job does.

use std::io;

/// The nice value of the job's thread (normal is 0, lowest 19).
const BACKGROUND_NICE: i32 = 10;

/// Runs `job` on a new thread named `name` at nice 10 (or the caller's
/// nice, if that is lower already) and waits for it (blocking: call it
/// where blocking is allowed). Lowering the priority is best effort: where
/// it is refused the job runs at the caller's. Fails only when the thread
/// cannot be started.
pub(crate) fn run_at_low_priority<T: Send>(
    name: &str,
    job: impl FnOnce() -> T + Send,
) -> io::Result<T> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn_scoped(scope, || {
                lower_this_thread();
                job()
            })?;
        Ok(thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })
}

/// Lowers the calling thread's CPU priority (Linux: a thread id given to
/// `setpriority` names that thread alone).
fn lower_this_thread() {
    let thread = rustix::thread::gettid();
    if let Err(error) = rustix::process::setpriority_process(Some(thread), BACKGROUND_NICE) {
        tracing::debug!(%error, "background thread keeps its priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_runs_lowered_on_its_own_thread_and_the_caller_is_not() {
        let caller = rustix::process::getpriority_process(None).expect("own priority");
        let (name, priority) = run_at_low_priority("bg-test", || {
            let name = std::thread::current().name().map(str::to_string);
            let own = rustix::process::getpriority_process(Some(rustix::thread::gettid()));
            (name, own.expect("thread priority"))
        })
        .expect("thread started");
        assert_eq!(name.as_deref(), Some("bg-test"));
        // setpriority sets an absolute nice value; raising a priority that
        // is already lower is refused and leaves the inherited one.
        // Lowering is best effort (a sandbox may refuse it), but the job
        // never runs above the caller.
        assert!(
            priority == caller.max(BACKGROUND_NICE) || priority == caller,
            "job at nice {priority}, caller at {caller}"
        );
        let after = rustix::process::getpriority_process(Some(rustix::thread::gettid()));
        assert_eq!(after.expect("caller priority"), caller);
    }

    #[test]
    fn a_panic_in_the_job_reaches_the_caller() {
        let outcome =
            std::panic::catch_unwind(|| run_at_low_priority("bg-panic", || panic!("boom")));
        assert!(outcome.is_err());
    }
}
