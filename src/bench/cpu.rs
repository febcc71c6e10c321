//! CPU time: of this process (getrusage) and of a server process on this
//! machine (`/proc/PID/stat`).
//!
//! Owns: reading CPU clocks.
//! Guarantees: user + system time; errors are typed, never a panic; a
//! server's clock has the kernel's tick resolution (usually 10 ms), this
//! process's microseconds.
//! May not touch: anything else about the processes.

use super::error::BenchError;
use nix::sys::resource::{UsageWho, getrusage};
use std::time::Duration;

/// User + system CPU time of this process (all its threads) so far.
pub fn own_cpu_time() -> Result<Duration, BenchError> {
    let usage = getrusage(UsageWho::RUSAGE_SELF).map_err(|errno| BenchError::Io {
        what: "getrusage of",
        path: "this process".into(),
        source: std::io::Error::from(errno),
    })?;
    let of = |tv: nix::sys::time::TimeVal| {
        Duration::from_secs(tv.tv_sec().max(0) as u64)
            + Duration::from_micros(tv.tv_usec().max(0) as u64)
    };
    Ok(of(usage.user_time()) + of(usage.system_time()))
}

/// User + system CPU time so far of this process's threads whose name
/// starts with `prefix` (Linux `/proc/self/task`; threads that already
/// ended are not counted).
pub fn threads_cpu_time(prefix: &str) -> Result<Duration, BenchError> {
    let dir = "/proc/self/task";
    let tasks = std::fs::read_dir(dir).map_err(BenchError::io("cannot list", dir))?;
    let mut ticks = 0u64;
    for task in tasks.flatten() {
        let path = task.path().join("stat");
        // A thread that ended since the listing has no stat any more.
        let Ok(stat) = std::fs::read_to_string(&path) else {
            continue;
        };
        if thread_name(&stat).is_some_and(|name| name.starts_with(prefix)) {
            ticks += parse_stat_cpu_ticks(&stat).unwrap_or(0);
        }
    }
    let per_second = rustix::param::clock_ticks_per_second().max(1);
    Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

/// The name (field 2, without its parentheses) of a `/proc/…/stat` line.
fn thread_name(stat: &str) -> Option<&str> {
    stat.get(stat.find('(')? + 1..stat.rfind(')')?)
}

/// User + system CPU time of process `pid` so far (Linux `/proc`).
pub fn process_cpu_time(pid: u32) -> Result<Duration, BenchError> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(BenchError::io("cannot read", &path))?;
    let ticks = parse_stat_cpu_ticks(&stat).ok_or_else(|| BenchError::Io {
        what: "cannot parse",
        path: path.into(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "unexpected format"),
    })?;
    let per_second = rustix::param::clock_ticks_per_second().max(1);
    Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line, in clock
/// ticks. The command name (field 2) may hold spaces and parentheses, so
/// fields are counted after its last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name: field 3 (state) is the first; utime is field 14.
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_fields_after_a_tricky_name() {
        let line =
            "4242 (we ird) name)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 8 0 123 0 0";
        assert_eq!(parse_stat_cpu_ticks(line), Some(325));
        assert_eq!(parse_stat_cpu_ticks("no name here"), None);
        assert_eq!(parse_stat_cpu_ticks("1 (x) S 1 2"), None);
        assert_eq!(thread_name("7 (bench-client) S 1"), Some("bench-client"));
        assert_eq!(thread_name("7 (a (b)) S 1"), Some("a (b)"));
        assert_eq!(thread_name("no name"), None);
    }

    #[test]
    fn own_and_proc_clocks_move_forward() {
        let before = own_cpu_time().expect("getrusage");
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = own_cpu_time().expect("getrusage");
        assert!(after > before);
        assert!(process_cpu_time(std::process::id()).is_ok());
        assert!(process_cpu_time(u32::MAX).is_err());
    }
}
