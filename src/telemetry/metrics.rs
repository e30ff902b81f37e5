//! The one metrics registry and renderer of a process: collectors (the scheduler's per-tenant
//! counters, sink delivery) register once and are asked for their samples at scrape time; the
//! renderer writes the Prometheus text exposition format (version 0.0.4) that `/metrics` serves,
//! with one label escaper for everyone. Names follow `dirsync_<name>_<unit>[_total]`.
//!
//! An in-house renderer rather than the `prometheus-client` crate: that crate writes
//! OpenMetrics (a `# EOF` line, `_total` appended to counter names, other number formats), and
//! dashboards rely on today's exact lines. A leaf module: must not import anything of dirsync,
//! and collectors must not block or query the database at scrape time.

use std::borrow::Cow;
use std::fmt::{Display, Write as _};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The `Content-Type` of what [`Registry::render`] returns.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The Prometheus type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// Something that knows current values: asked for its families at every scrape.
pub trait Collector: Send + Sync {
    fn collect(&self, out: &mut Exposition);
}

/// Every collector of the process, rendered in registration order. Cheap to clone.
#[derive(Clone, Default)]
pub struct Registry {
    collectors: Arc<Mutex<Vec<Arc<dyn Collector>>>>,
    /// The last scrape's length: the next one starts with that room instead of growing a
    /// text of megabytes (10,000 tenants) by doubling and copying.
    last_len: Arc<std::sync::atomic::AtomicUsize>,
}

impl Registry {
    pub fn register(&self, collector: Arc<dyn Collector>) {
        lock(&self.collectors).push(collector);
    }

    /// The text for `/metrics`.
    pub fn render(&self) -> String {
        // Collect outside the lock: a collector takes its own locks.
        let collectors = lock(&self.collectors).clone();
        let room = self.last_len.load(std::sync::atomic::Ordering::Relaxed);
        let mut out = Exposition {
            text: String::with_capacity(room + room / 8),
        };
        for collector in collectors {
            collector.collect(&mut out);
        }
        self.last_len
            .store(out.text.len(), std::sync::atomic::Ordering::Relaxed);
        out.into_text()
    }
}

/// The text of one collector alone (tests, tools).
pub fn render(collector: &dyn Collector) -> String {
    let mut out = Exposition::default();
    collector.collect(&mut out);
    out.into_text()
}

/// The text being written for one scrape.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// Starts a family: its `# HELP` and `# TYPE` lines are written even when no sample
    /// follows, so a scraper sees every family the process has.
    pub fn family<'a>(&'a mut self, name: &'a str, kind: Kind, help: &str) -> Family<'a> {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.as_str());
        Family {
            text: &mut self.text,
            name,
        }
    }

    pub fn into_text(self) -> String {
        self.text
    }
}

/// The samples of one family; write them right after [`Exposition::family`].
pub struct Family<'a> {
    text: &'a mut String,
    name: &'a str,
}

impl Family<'_> {
    /// One sample line: `name{label="value",…} value` (no braces without labels). `value` is
    /// written with its `Display`, so callers keep control of number formats.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Display) -> &mut Self {
        self.text.push_str(self.name);
        if !labels.is_empty() {
            self.text.push('{');
            for (index, (label, label_value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.text.push(',');
                }
                self.text.push_str(label);
                self.text.push_str("=\"");
                self.text.push_str(&escape_label(label_value));
                self.text.push('"');
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
        self
    }
}

/// A sample value as `f64`'s `Display` writes it, but integral values (counts, seqs, most
/// timestamps) through integer formatting: with ten thousand tenants a scrape writes over a
/// hundred thousand of them, and the shortest-float search was a tenth of its CPU.
#[derive(Debug, Clone, Copy)]
pub struct Number(pub f64);

impl Display for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = self.0;
        // Below 2^53 every integral f64 is an exact i64; -0.0 stays on the float path.
        if value.fract() == 0.0
            && value.abs() < 9.0e15
            && !(value == 0.0 && value.is_sign_negative())
        {
            write!(f, "{}", value as i64)
        } else {
            write!(f, "{value}")
        }
    }
}

/// A label value as the text format wants it: backslash, double quote and newline escaped.
/// Tenant ids and the like never need it: they are written as they are, not copied.
fn escape_label(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(value);
    }
    Cow::Owned(
        value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n"),
    )
}

/// A poisoned lock only means a task panicked mid-update of plain data; keep going. (Leaves
/// import nothing of dirsync, so this is not `crate::mutex::lock`.)
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_f64_display_writes_them() {
        for value in [
            0.0,
            -0.0,
            1.0,
            3.0,
            1.5,
            -2.0,
            1_733_312_345.0,
            1_733_312_345.123,
            9.1e15,
            1e300,
            f64::INFINITY,
            f64::NAN,
        ] {
            assert_eq!(Number(value).to_string(), value.to_string(), "{value:?}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    struct Two;
    impl Collector for Two {
        fn collect(&self, out: &mut Exposition) {
            out.family("dirsync_things", Kind::Gauge, "Things.")
                .sample(&[], 2.0)
                .sample(&[("tenant", "a\"b"), ("sink", "s")], 1.5);
            out.family("dirsync_none_total", Kind::Counter, "Nothing yet.");
        }
    }

    #[test]
    fn families_render_in_the_text_format_in_registration_order() {
        let registry = Registry::default();
        registry.register(Arc::new(Two));
        registry.register(Arc::new(Two));
        let one = "# HELP dirsync_things Things.\n# TYPE dirsync_things gauge\ndirsync_things 2\n\
                   dirsync_things{tenant=\"a\\\"b\",sink=\"s\"} 1.5\n\
                   # HELP dirsync_none_total Nothing yet.\n# TYPE dirsync_none_total counter\n";
        assert_eq!(render(&Two), one);
        assert_eq!(registry.render(), format!("{one}{one}"));
    }
}
