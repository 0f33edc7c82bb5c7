//! CPU time of the server side, from `/proc/<pid>/task/*/schedstat` (nanoseconds on CPU per
//! thread). In-process, every thread not named `loadgen*` (the load generator's runtime and
//! main thread) is server: the server runtime's workers and the SQLite driver's threads. For
//! a target in another process, all of its threads count.
//!
//! Threads that exit during a run take their time with them; the runtimes here keep theirs.

use std::{fs, path::Path, time::Duration};

/// Whose CPU time to read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CpuProbe {
    /// This process, minus the load generator's own threads.
    InProcess,
    /// Another process, all of it.
    Process(u32),
    /// Not measurable.
    None,
}

/// Name prefix of the load generator's threads (the main thread is `loadgen` too).
pub(crate) const CLIENT_THREAD_PREFIX: &str = "loadgen";

impl CpuProbe {
    /// CPU time used so far.
    pub(crate) fn read(self) -> Option<Duration> {
        match self {
            CpuProbe::InProcess => Some(sum_tasks(Path::new("/proc/self/task"), |comm| {
                !comm.starts_with(CLIENT_THREAD_PREFIX)
            })?),
            CpuProbe::Process(pid) => Some(sum_tasks(
                &Path::new("/proc").join(pid.to_string()).join("task"),
                |_| true,
            )?),
            CpuProbe::None => None,
        }
    }
}

/// CPU time the load generator's own threads used so far.
pub(crate) fn client() -> Option<Duration> {
    sum_tasks(Path::new("/proc/self/task"), |comm| {
        comm.starts_with(CLIENT_THREAD_PREFIX)
    })
}

fn sum_tasks(dir: &Path, include: impl Fn(&str) -> bool) -> Option<Duration> {
    let mut total = 0u64;
    for entry in fs::read_dir(dir).ok()? {
        let Ok(entry) = entry else { continue };
        let task = entry.path();
        let Ok(comm) = fs::read_to_string(task.join("comm")) else {
            continue;
        };
        if !include(comm.trim_end()) {
            continue;
        }
        let Ok(schedstat) = fs::read_to_string(task.join("schedstat")) else {
            continue;
        };
        if let Some(ns) = schedstat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
        {
            total += ns;
        }
    }
    Some(Duration::from_nanos(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_cpu_time() {
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert_ne!(x, 1);
        let all = sum_tasks(Path::new("/proc/self/task"), |_| true).unwrap();
        assert!(all > Duration::ZERO);
    }
}
