//! Benchmark targets as verdicts that count: each target is a measured figure checked against
//! its limit, printed as PASS or FAIL, and the benchmark fails (exit status 1, or a failed
//! test) when any target fails. A figure that was not measured — a report without the key, a
//! run answered by another process that reports its own figures, a sampler that never saw the
//! process — is a FAIL saying so, never a zero that passes.
//!
//! Used by `benches/sync.rs` and the delivery benchmark (`tests/it/sink_bench.rs`). It only
//! judges and prints; measuring is the caller's.

use std::fmt::Write as _;

/// One target's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub passed: bool,
    /// `PASS …` or `FAIL …`, as printed.
    pub line: String,
}

/// The targets of one benchmark run, in the order they were checked.
#[derive(Debug, Default)]
pub struct Targets {
    verdicts: Vec<Verdict>,
}

impl Targets {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks `figure` (None: not measured) with `ok`; `describe` renders a measured figure
    /// and its limit for the line after `PASS`/`FAIL` and `what`.
    pub fn check(
        &mut self,
        what: &str,
        figure: Option<f64>,
        ok: impl FnOnce(f64) -> bool,
        describe: impl FnOnce(f64) -> String,
    ) -> &Verdict {
        let verdict = match figure {
            Some(value) if value.is_finite() => {
                let passed = ok(value);
                Verdict {
                    passed,
                    line: format!("{} {what}: {}", pass_fail(passed), describe(value)),
                }
            }
            Some(value) => Verdict {
                passed: false,
                line: format!("FAIL {what}: the figure is {value}, not a measurement"),
            },
            None => Verdict {
                passed: false,
                line: format!("FAIL {what}: not measured (the figure is missing)"),
            },
        };
        self.verdicts.push(verdict);
        self.verdicts.last().expect("just pushed")
    }

    /// `figure <= limit`, shown with `show`.
    pub fn at_most(
        &mut self,
        what: &str,
        figure: Option<f64>,
        limit: f64,
        show: impl Fn(f64) -> String,
    ) -> &Verdict {
        self.check(
            what,
            figure,
            |value| value <= limit,
            |value| format!("{} (limit {})", show(value), show(limit)),
        )
    }

    pub fn verdicts(&self) -> &[Verdict] {
        &self.verdicts
    }

    pub fn failed(&self) -> usize {
        self.verdicts.iter().filter(|v| !v.passed).count()
    }

    /// Every line, indented, under `targets:`; then a total.
    pub fn report(&self) -> String {
        let mut text = String::from("targets:\n");
        for verdict in &self.verdicts {
            let _ = writeln!(text, "  {}", verdict.line);
        }
        let failed = self.failed();
        if self.verdicts.is_empty() {
            text.push_str("FAIL: no target was checked\n");
        } else if failed == 0 {
            let _ = writeln!(text, "all {} targets met", self.verdicts.len());
        } else {
            let _ = writeln!(text, "{failed} of {} targets FAILED", self.verdicts.len());
        }
        text
    }

    /// 0 when every target passed (and there was at least one), else 1.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.verdicts.is_empty() || self.failed() > 0)
    }
}

fn pass_fail(passed: bool) -> &'static str {
    if passed {
        "PASS"
    } else {
        "FAIL"
    }
}

pub const MIB: u64 = 1024 * 1024;

/// The most a delivering process may peak at with the larger backlog, given its peak with the
/// smaller one, for memory to count as flat: 25% more, and at least 8 MiB more (allocator
/// arenas and page-cache-sized buffers move by a few MiB from run to run whatever the
/// backlog). Holding the backlog in memory breaks it by far: a million small events are
/// about 400 MiB.
pub fn flat_memory_limit(smaller_backlog_peak: u64) -> u64 {
    smaller_backlog_peak + (smaller_backlog_peak / 4).max(8 * MIB)
}

/// `bytes` in MiB, one decimal.
pub fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / MIB as f64)
}

/// libtest's options that take their value as the next argument (`cargo test -- --skip X`).
const LIBTEST_VALUED: &[&str] = &[
    "--test-threads",
    "--skip",
    "--color",
    "--format",
    "--logfile",
    "-Z",
];

/// Ends a smoke run that `cargo test FILTER` did not ask for. `cargo test` runs the
/// `harness = false` bench targets too (without `--bench`: a smoke run), and hands every target
/// libtest's arguments: a name filter (as `scripts/test.sh FILTER` passes it), `--nocapture`,
/// `--skip X`. `unknown` is what the bench did not take as its own options. libtest runs the
/// tests whose names contain a filter; a bench is one test, named `name`.
pub fn exit_unless_a_filter_names(name: &str, unknown: &[String]) {
    let filters = filters(unknown);
    if !filters.is_empty() && !filters.iter().any(|filter| name.contains(filter)) {
        eprintln!("{name} bench: not run (the test filter {filters:?} does not name it)");
        std::process::exit(0);
    }
}

/// The name filters among libtest's arguments.
fn filters(unknown: &[String]) -> Vec<&str> {
    let mut filters = Vec::new();
    let mut arguments = unknown.iter();
    while let Some(argument) = arguments.next() {
        if LIBTEST_VALUED.contains(&argument.as_str()) {
            arguments.next();
        } else if !argument.starts_with('-') {
            filters.push(argument.as_str());
        }
    }
    filters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_figure_fails_instead_of_reading_as_zero() {
        let mut targets = Targets::new();
        let verdict = targets.at_most("resync: peak RSS", None, 400.0, |v| format!("{v}"));
        assert!(!verdict.passed);
        assert!(verdict.line.contains("not measured"), "{}", verdict.line);
        assert_eq!(targets.exit_code(), 1);
        assert!(targets.report().contains("1 of 1 targets FAILED"));
    }

    #[test]
    fn a_nan_is_not_a_measurement() {
        let mut targets = Targets::new();
        assert!(
            !targets
                .at_most("x", Some(f64::NAN), 1.0, |v| v.to_string())
                .passed
        );
        assert_eq!(targets.exit_code(), 1);
    }

    #[test]
    fn one_fail_among_passes_fails_the_run() {
        let mut targets = Targets::new();
        assert!(
            targets
                .at_most("a", Some(1.0), 2.0, |v| v.to_string())
                .passed
        );
        assert!(
            targets
                .at_most("b", Some(2.0), 2.0, |v| v.to_string())
                .passed
        );
        assert_eq!(targets.exit_code(), 0);
        let failed = targets.check("c", Some(3.0), |v| v == 0.0, |v| format!("{v} events"));
        assert_eq!(failed.line, "FAIL c: 3 events");
        assert_eq!(targets.exit_code(), 1);
        let report = targets.report();
        assert!(report.contains("  PASS a: 1 (limit 2)"), "{report}");
        assert!(report.contains("1 of 3 targets FAILED"), "{report}");
    }

    #[test]
    fn no_target_at_all_is_a_failure() {
        assert_eq!(Targets::new().exit_code(), 1);
    }

    #[test]
    fn memory_that_grows_with_the_backlog_is_not_flat() {
        let small = 16 * MIB;
        assert_eq!(flat_memory_limit(small), 24 * MIB);
        assert_eq!(flat_memory_limit(100 * MIB), 125 * MIB);
        // A process that held a 10x larger backlog would far exceed it.
        assert!(small + 400 * MIB > flat_memory_limit(small));
    }

    #[test]
    fn libtest_arguments_yield_the_name_filters_only() {
        let arguments: Vec<String> = [
            "push",
            "--nocapture",
            "--skip",
            "slow",
            "--test-threads",
            "2",
            "--exact",
            "sync",
        ]
        .iter()
        .map(|argument| (*argument).to_owned())
        .collect();
        assert_eq!(super::filters(&arguments), vec!["push", "sync"]);
        assert!(super::filters(&[]).is_empty());
    }
}
