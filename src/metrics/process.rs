//! The `process_*` family that every Prometheus exporter carries (CPU, resident memory, open
//! and maximum file descriptors, start time), read from `/proc/self` at scrape time: nothing
//! on the data path. It does not own any other family. A file that cannot be read (not Linux)
//! leaves its metric out.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`): 100 on every Linux architecture
/// the gateway is built for, and reading `sysconf` would need `libc`.
const TICKS_PER_SECOND: f64 = 100.0;

/// Reads `/proc/self` on each scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// One reading of the process's figures; `None` where `/proc` did not say.
#[derive(Debug, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads `/proc/self/{stat,status,fd,limits}` and `/proc/stat` (boot time).
    pub fn read() -> ProcessStats {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let stat = read("/proc/self/stat");
        let (cpu_seconds, start_ticks) = stat.as_deref().map(parse_stat).unwrap_or_default();
        let boot = read("/proc/stat").as_deref().and_then(parse_boot_time);
        ProcessStats {
            cpu_seconds,
            resident_bytes: read("/proc/self/status").as_deref().and_then(parse_rss),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as f64),
            max_fds: read("/proc/self/limits").as_deref().and_then(parse_max_fds),
            start_time_seconds: boot.zip(start_ticks).map(|(b, t)| b + t / TICKS_PER_SECOND),
        }
    }
}

/// CPU seconds (user + system) and the start time in ticks after boot, from `/proc/PID/stat`.
fn parse_stat(stat: &str) -> (Option<f64>, Option<f64>) {
    // The command name is parenthesized and may hold spaces: fields count after its `)`.
    let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 1..)) else {
        return (None, None);
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    // Fields 14 (utime), 15 (stime) and 22 (starttime), numbered from 1 with pid and comm.
    let cpu = field(14)
        .zip(field(15))
        .map(|(u, s)| (u + s) / TICKS_PER_SECOND);
    (cpu, field(22))
}

fn parse_boot_time(stat: &str) -> Option<f64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn parse_rss(status: &str) -> Option<f64> {
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024.0)
}

/// The soft limit of `Max open files` (`unlimited` leaves it out).
fn parse_max_fds(limits: &str) -> Option<f64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = ProcessStats::read();
        if let Some(v) = s.cpu_seconds {
            let c = ConstCounter::new(v);
            let m = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                c.metric_type(),
            )?;
            c.encode(m)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                s.resident_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                s.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                s.max_fds,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                s.start_time_seconds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let g = ConstGauge::new(v);
                let m = encoder.encode_descriptor(name, help, None, g.metric_type())?;
                g.encode(m)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "4242 (cross gate) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 \
                    3 0 12345 1000000 500 18446744073709551615";
        assert_eq!(parse_stat(stat), (Some(3.0), Some(12345.0)));
        assert_eq!(parse_boot_time("cpu 1 2\nbtime 1700000000\n"), Some(1.7e9));
        assert_eq!(
            parse_rss("Name:\tcrossgate\nVmRSS:\t    2048 kB\n"),
            Some(2048.0 * 1024.0)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 1048576              files\n";
        assert_eq!(parse_max_fds(limits), Some(1024.0));
    }

    #[test]
    fn reads_this_process() {
        let s = ProcessStats::read();
        assert!(s.resident_bytes.is_some_and(|v| v > 0.0), "{s:?}");
        assert!(s.open_fds.is_some_and(|v| v >= 3.0), "{s:?}");
        assert!(
            s.max_fds.is_some_and(|v| v >= s.open_fds.unwrap_or(0.0)),
            "{s:?}"
        );
        let now = crate::identity::unix_now() as f64;
        assert!(
            s.start_time_seconds
                .is_some_and(|t| t <= now + 1.0 && t > now - 86400.0 * 365.0),
            "{s:?}"
        );
    }
}
