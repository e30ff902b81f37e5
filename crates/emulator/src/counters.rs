//! Request counters by API method and HTTP status, so tests and benchmarks can assert how many
//! calls a sync made. Read and reset through the library or `/_emulator/counters`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

/// Counts of one method.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MethodCounts {
    pub total: u64,
    /// HTTP status (as a string, for JSON) → requests.
    pub by_status: BTreeMap<String, u64>,
}

/// A snapshot of all counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CounterSnapshot {
    pub total: u64,
    /// Method id (`users.list`, `oauth.token`, `unknown`, ...) → counts.
    pub methods: BTreeMap<String, MethodCounts>,
}

impl CounterSnapshot {
    /// Requests to `method`, whatever their status.
    pub fn method(&self, method: &str) -> u64 {
        self.methods.get(method).map_or(0, |m| m.total)
    }

    /// Requests to `method` that got `status`.
    pub fn status(&self, method: &str, status: u16) -> u64 {
        self.methods
            .get(method)
            .and_then(|m| m.by_status.get(&status.to_string()))
            .copied()
            .unwrap_or(0)
    }
}

#[derive(Debug, Default)]
pub struct Counters {
    counts: Mutex<BTreeMap<(&'static str, u16), u64>>,
}

impl Counters {
    pub fn record(&self, method: &'static str, status: u16) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *counts.entry((method, status)).or_default() += 1;
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut snapshot = CounterSnapshot::default();
        for ((method, status), count) in counts.iter() {
            let entry = snapshot.methods.entry((*method).to_owned()).or_default();
            entry.total += count;
            *entry.by_status.entry(status.to_string()).or_default() += count;
            snapshot.total += count;
        }
        snapshot
    }

    pub fn reset(&self) {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }
}
