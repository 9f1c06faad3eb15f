//! What `/proc` says about a running process (CPU time, resident memory) and about the machine
//! (load average), for benchmarks that measure the daemon from outside. Read-only.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};

/// One reading of a process's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessSample {
    /// User plus system CPU time of all its threads, live and exited, since it started.
    pub cpu: Duration,
    /// Resident memory now (`VmRSS`) and at its peak (`VmHWM`), KiB.
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
}

impl ProcessSample {
    /// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`.
    pub fn read(pid: u32) -> Result<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("read /proc/{pid}/stat"))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("read /proc/{pid}/status"))?;
        Ok(Self {
            cpu: cpu_time(&stat)?,
            rss_kib: status_kib(&status, "VmRSS")?,
            peak_rss_kib: status_kib(&status, "VmHWM")?,
        })
    }
}

/// CPU time used between two samples, as a percentage of one core over `wall`.
#[must_use]
pub fn cpu_percent(before: &ProcessSample, after: &ProcessSample, wall: Duration) -> f64 {
    let used = after.cpu.saturating_sub(before.cpu);
    100.0 * used.as_secs_f64() / wall.as_secs_f64().max(f64::EPSILON)
}

/// The machine's 1-minute load average.
pub fn load_average() -> Result<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").context("read /proc/loadavg")?;
    text.split_whitespace()
        .next()
        .and_then(|first| first.parse().ok())
        .context("/proc/loadavg starts with a number")
}

/// `utime + stime` (fields 14 and 15, in clock ticks) of a `/proc/<pid>/stat` line. The
/// command name (field 2) may hold spaces and parentheses, so fields count from its last `)`.
fn cpu_time(stat: &str) -> Result<Duration> {
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("/proc/<pid>/stat has a command name in parentheses")?;
    // Field 3 (state) is the first after the name, so fields 14 and 15 are the 12th and 13th.
    let mut fields = after_name.split_whitespace().skip(11);
    let mut ticks = 0u64;
    for name in ["utime", "stime"] {
        ticks += fields
            .next()
            .and_then(|field| field.parse::<u64>().ok())
            .with_context(|| format!("/proc/<pid>/stat has no {name}"))?;
    }
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let Ok(per_second) = u64::try_from(per_second) else {
        bail!("sysconf(_SC_CLK_TCK) failed");
    };
    Ok(Duration::from_nanos(
        ticks.saturating_mul(1_000_000_000) / per_second.max(1),
    ))
}

/// The value of a `Key:   123 kB` line of `/proc/<pid>/status`.
fn status_kib(status: &str, key: &str) -> Result<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("/proc/<pid>/status has no {key}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let sample = ProcessSample::read(std::process::id()).unwrap();
        assert!(sample.rss_kib > 0 && sample.peak_rss_kib >= sample.rss_kib);
    }

    #[test]
    fn a_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        // SAFETY: sysconf has no preconditions.
        let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap();
        assert_eq!(
            cpu_time(stat).unwrap(),
            Duration::from_nanos(300 * 1_000_000_000 / hz)
        );
    }

    #[test]
    fn status_values_are_kib() {
        let status = "Name:\thotspotd\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kib(status, "VmRSS").unwrap(), 10_240);
        assert_eq!(status_kib(status, "VmHWM").unwrap(), 20_480);
        assert!(status_kib(status, "VmSwap").is_err());
    }
}
