//! Standard `process_*` metrics of the exporter itself, read from /proc
//! (the same families and meanings as the Go and Rust Prometheus clients).

use crate::exposition::catalogue::{self, FamilyDef};
use crate::exposition::MetricFamily;

pub fn families() -> Vec<MetricFamily> {
    #[cfg(target_os = "linux")]
    {
        linux::families()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Vec::new()
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use super::*;

    fn one(def: &FamilyDef, value: f64) -> MetricFamily {
        def.family().with_sample(vec![], value)
    }

    /// Fields of /proc/self/stat after the parenthesised command name,
    /// which may itself contain spaces.
    fn stat_fields() -> Option<Vec<String>> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let after = &stat[stat.rfind(')')? + 1..];
        Some(after.split_whitespace().map(str::to_owned).collect())
    }

    /// Boot time never changes while we run: read /proc/stat once.
    fn boot_time() -> Option<f64> {
        static BOOT: std::sync::OnceLock<Option<f64>> = std::sync::OnceLock::new();
        *BOOT.get_or_init(|| {
            let stat = std::fs::read_to_string("/proc/stat").ok()?;
            stat.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse().ok())
        })
    }

    pub fn families() -> Vec<MetricFamily> {
        let mut out = Vec::with_capacity(6);
        // SAFETY: sysconf and getrlimit only read process-wide settings.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
        if let Some(f) = stat_fields() {
            // Indices are field numbers from proc(5) minus 3 (pid and comm removed).
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
            if let (Some(utime), Some(stime)) = (num(11), num(12)) {
                if ticks > 0.0 {
                    out.push(one(
                        &catalogue::PROCESS_CPU_SECONDS_TOTAL,
                        (utime + stime) / ticks,
                    ));
                }
            }
            if let (Some(start), Some(boot)) = (num(19), boot_time()) {
                if ticks > 0.0 {
                    out.push(one(
                        &catalogue::PROCESS_START_TIME_SECONDS,
                        boot + start / ticks,
                    ));
                }
            }
            if let Some(vsize) = num(20) {
                out.push(one(&catalogue::PROCESS_VIRTUAL_MEMORY_BYTES, vsize));
            }
            if let Some(rss) = num(21) {
                out.push(one(&catalogue::PROCESS_RESIDENT_MEMORY_BYTES, rss * page));
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            out.push(one(
                &catalogue::PROCESS_OPEN_FDS, // One entry is the descriptor read_dir itself holds.
                dir.count().saturating_sub(1) as f64,
            ));
        }
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            out.push(one(&catalogue::PROCESS_MAX_FDS, limit.rlim_cur as f64));
        }
        out
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn reports_plausible_values() {
            let fams = super::families();
            let get = |n: &str| {
                fams.iter()
                    .find(|f| f.name == n)
                    .unwrap_or_else(|| panic!("{n}"))
                    .samples[0]
                    .value
            };
            assert!(get("process_resident_memory_bytes") > 1024.0 * 1024.0);
            assert!(get("process_open_fds") >= 3.0);
            assert!(get("process_max_fds") >= get("process_open_fds"));
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            let start = get("process_start_time_seconds");
            assert!(
                start <= now + 1.0 && start > now - 3600.0,
                "{start} vs {now}"
            );
        }
    }
}
