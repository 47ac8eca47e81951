//! What `/proc` tells about the server under test: its resident memory and its CPU time.

use anyhow::Context as _;

/// Linux reports `utime`/`stime` in `/proc/<pid>/stat` in units of `USER_HZ`, which is 100 on
/// every architecture Linux runs on.
const USER_HZ: f64 = 100.0;

/// Resident memory of `pid` in bytes (`VmRSS`) and its peak (`VmHWM`), from
/// `/proc/<pid>/status`.
pub(crate) fn rss(pid: u32) -> anyhow::Result<(u64, u64)> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in {path}"))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("cannot parse {line:?}"))?;
        Ok(kib * 1024)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU seconds (user + system, every thread) `pid` has used so far, from `/proc/<pid>/stat`.
pub(crate) fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name (field 2) may contain spaces and parentheses: count from the last ')'.
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .with_context(|| format!("cannot parse {path}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("cannot parse {path}"))
    };
    Ok((ticks(11)? + ticks(12)?) as f64 / USER_HZ)
}

/// CPU seconds `pid` used between two readings, when there is a pid to read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuMeter {
    pid: Option<u32>,
    start: Option<f64>,
}

impl CpuMeter {
    /// Starts measuring `pid` (nothing when `None` or unreadable).
    pub(crate) fn start(pid: Option<u32>) -> CpuMeter {
        CpuMeter {
            pid,
            start: pid.and_then(|p| cpu_secs(p).ok()),
        }
    }

    /// CPU seconds since [`start`](Self::start).
    pub(crate) fn elapsed(&self) -> Option<f64> {
        let now = cpu_secs(self.pid?).ok()?;
        Some(now - self.start?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let (rss, peak) = rss(me).unwrap();
        assert!(rss > 0 && peak >= rss);
        assert!(cpu_secs(me).unwrap() >= 0.0);
        assert!(CpuMeter::start(Some(me)).elapsed().unwrap() >= 0.0);
        assert!(CpuMeter::start(None).elapsed().is_none());
    }
}
