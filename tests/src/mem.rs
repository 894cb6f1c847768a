//! Process memory figures for the bench binaries (Linux `/proc`); also included by
//! `analysis/benches/analysis_bench.rs`.

/// A `/proc/self/status` field in KiB (`VmHWM`, `VmRSS`), if readable.
pub fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// KiB as whole MiB, or `n/a`.
pub fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "n/a".to_owned(), |k| format!("{} MiB", k / 1024))
}

/// Resets `VmHWM` to the current RSS (Linux >= 4.0); false where not possible.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// CPU seconds (user + system) this process has used, all threads, from
/// `/proc/self/stat` (clock ticks of 1/100 s, the Linux default).
#[allow(dead_code)] // the benches that include this file by path do not all use it
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // fields after the command name, which is in parentheses and may hold spaces
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
