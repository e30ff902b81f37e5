//! Figures about this process (peak resident memory, CPU time) from `/proc`, for run summaries
//! and benchmarks. Linux only; elsewhere they are absent.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcessStats {
    /// Peak resident set size (VmHWM).
    pub peak_rss_bytes: Option<u64>,
    /// User + system CPU time.
    pub cpu_ms: Option<u64>,
}

pub fn current() -> ProcessStats {
    ProcessStats {
        peak_rss_bytes: peak_rss_bytes(),
        cpu_ms: cpu_ms(),
    }
}

/// Resident memory now (VmRSS), in MiB, for tracing a sync's phases.
pub fn rss_mib() -> Option<u64> {
    status_kib("VmRSS:").map(|kib| kib / 1024)
}

fn peak_rss_bytes() -> Option<u64> {
    status_kib("VmHWM:").map(|kib| kib * 1024)
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn cpu_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the full line: 11 and 12 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // The kernel reports in USER_HZ, which is 100 on every Linux that dirsync targets.
    Some(ticks * 10)
}

/// Whether `err` is this process (EMFILE) or the whole system (ENFILE) out of file
/// descriptors.
pub fn is_out_of_descriptors(err: &std::io::Error) -> bool {
    matches!(err.raw_os_error(), Some(23 | 24))
}

/// Whether an error's text (a library's message, a panic's) is EMFILE or ENFILE, in any of
/// the forms `std::io::Error` prints.
pub fn mentions_out_of_descriptors(text: &str) -> bool {
    [
        "os error 24",
        "os error 23",
        "Too many open files",
        "Too many open files in system",
    ]
    .iter()
    .any(|form| text.contains(form))
}

/// Whether this process is (nearly) out of descriptors right now: it cannot hold a few more
/// files open at once. Libraries that open files (SQLite, a TCP connect) report exhaustion in
/// their own words ("unable to open database file"), and give back what they had opened when
/// they fail, so the caller of a failed open asks the system for as many as such an open
/// needs (SQLite: the database, its `-wal` and `-shm`, a journal).
pub fn descriptors_exhausted() -> bool {
    let mut held = Vec::with_capacity(4);
    for _ in 0..4 {
        match std::fs::File::open("/dev/null") {
            Ok(file) => held.push(file),
            Err(err) => return is_out_of_descriptors(&err),
        }
    }
    false
}

/// The soft limit on open files (`ulimit -n`, systemd's `LimitNOFILE=`), read once: when it
/// matters, descriptors have run out and `/proc/self/limits` cannot be opened any more.
pub fn open_files_limit() -> Option<u64> {
    static LIMIT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = limits
            .lines()
            .find(|line| line.starts_with("Max open files"))?;
        line.trim_start_matches("Max open files")
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// What an operator should do when descriptors ran out.
pub fn descriptors_advice() -> String {
    let limit = open_files_limit()
        .map(|limit| format!(" of {limit}"))
        .unwrap_or_default();
    format!(
        "too many open files: dirsync reached its limit{limit} open file descriptors (or the system ran out). Raise the limit: LimitNOFILE= in the systemd unit (the shipped dirsync.service sets 65536), or `ulimit -n` in the shell that starts dirsync"
    )
}
