//! Delivery benchmark: events per second from the outbox to a local webhook receiver, one at
//! a time and batched, and to a JSON-lines file (printed); and the memory target, which
//! fails the test: each batched sink delivers a backlog and one ten times larger, and the
//! delivering process's peak RSS (`ru_maxrss`, exact) with the larger must stay within
//! `bench::flat_memory_limit` (25%, at least 8 MiB) of that with the smaller — the outbox is
//! read in pages, so the backlog must not be held. A peak that could not be measured fails.
//!
//! Run: `cargo test --release --test it sink_bench -- --ignored --nocapture`
//! (`DIRSYNC_BENCH_EVENTS` sets the larger backlog, default 1,000,000; the smaller is a tenth).
//! The same machinery runs with every test at 300 and 3,000 events.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::support::*;
use dirsync::store::sql::params;
use dirsync_testkit::bench;
use dirsync_testkit::webhook::*;
use dirsync_testkit::*;

/// Fills the outbox with `n` small synthetic events (straight SQL: a sync of a million users
/// would benchmark the diff, not delivery).
fn fill_outbox(env: &ConfigDir, tenant: &str, n: u64) {
    let store = env.store();
    let mut conn = store.connect().unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO events (tenant, seq, id, type, subject_id, occurred_at, sync_id, body)
                 VALUES (?1, ?2, ?3, 'group.user_added', ?4, ?5, 1, ?6)",
            )
            .unwrap();
        let now = dirsync::store::now_ms();
        for seq in 1..=n {
            let id = format!("evt_{}", ulid::Ulid::new());
            let body = format!(
                r#"{{"id":"{id}","tenant":"{tenant}","seq":{seq},"type":"group.user_added","occurred_at":"2026-11-28T14:00:00.000Z","sync_id":1,"source":"google","data":{{"user":{{"id":"u{seq}","email":"u{seq}@example.com"}},"group":{{"id":"g1","email":"all@example.com","name":"All"}}}}}}"#
            );
            insert
                .execute(params![
                    tenant,
                    seq as i64,
                    id,
                    format!("u{seq}"),
                    now,
                    body
                ])
                .unwrap();
        }
    }
    tx.execute(
        "INSERT INTO tenants (tenant, last_seq) VALUES (?1, ?2)",
        params![tenant, n as i64],
    )
    .unwrap();
    tx.commit().unwrap();
}

/// Runs a command and prints, as its last stderr line, the peak resident memory of that child
/// (`ru_maxrss` of the one child this Python process waited for, in KiB): exact, where
/// sampling `/proc/PID/status` from outside can miss a peak just before the exit.
const PEAK_RSS_WRAPPER: &str = r#"
import resource, subprocess, sys
code = subprocess.call(sys.argv[1:])
print("peak_rss_kib", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
sys.exit(code)
"#;

/// What one `dirsync deliver --once` cost.
struct Delivery {
    elapsed: Duration,
    /// The delivering process's peak RSS; `None` when it could not be measured.
    peak_rss: Option<u64>,
}

/// Runs `dirsync deliver --once` (under [`PEAK_RSS_WRAPPER`]) until it exits, checks that
/// `total` events arrived, and prints the rate and the peak RSS.
fn measure(env: &ConfigDir, label: &str, total: u64, progress: impl Fn() -> u64) -> Delivery {
    let deliver = env.command(&["deliver", "--once"]);
    let mut command = std::process::Command::new(dirsync_testkit::python());
    command
        .env_clear()
        .envs(
            deliver
                .get_envs()
                .filter_map(|(name, value)| Some((name, value?))),
        )
        .arg("-c")
        .arg(PEAK_RSS_WRAPPER)
        .arg(deliver.get_program())
        .args(deliver.get_args())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let started = Instant::now();
    let output = command.output().unwrap();
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{label}: deliver failed: {stderr}");
    assert_eq!(progress(), total, "{label}: not everything arrived");
    let peak_rss = stderr
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("peak_rss_kib "))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .filter(|&kib| kib > 0)
        .map(|kib| kib * 1024);
    println!(
        "{label}: {total} events in {:.2}s = {:.0} events/s, peak RSS {}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        peak_rss.map_or_else(|| "not measured".to_owned(), |b| bench::mib(b as f64)),
    );
    Delivery { elapsed, peak_rss }
}

fn webhook_env(receiver_addr: std::net::SocketAddr, batch_size: usize) -> ConfigDir {
    let env = sink_dir("");
    env.tenant(
        "bench",
        &format!("[[sinks]]\ntype = \"webhook\"\nname = \"hook\"\nurl = \"http://{receiver_addr}/hook\"\nsecret_file = \"secret\"\nbatch_size = {batch_size}\n"),
    );
    env
}

/// `n` events delivered by a webhook sink in batches of 1000 to `receiver`.
fn webhook_batches(receiver: &Receiver, addr: std::net::SocketAddr, n: u64) -> Delivery {
    let env = webhook_env(addr, 1000);
    fill_outbox(&env, "bench", n);
    let base = receiver.count.load(Ordering::SeqCst);
    measure(
        &env,
        &format!("webhook, batches of 1000, {n} events"),
        n,
        || receiver.count.load(Ordering::SeqCst) - base,
    )
}

/// `n` events delivered by a JSON-lines sink in batches of 1000.
fn jsonl_batches(n: u64) -> Delivery {
    let env = sink_dir("");
    let file = env.path().join("events.jsonl");
    env.tenant(
        "bench",
        &format!(
            "[[sinks]]\ntype = \"jsonl\"\npath = \"{}\"\nbatch_size = 1000\n",
            file.display()
        ),
    );
    fill_outbox(&env, "bench", n);
    let conn = env.store().connect().unwrap();
    measure(
        &env,
        &format!("jsonl, batches of 1000 (fsync per batch), {n} events"),
        n,
        || {
            // Progress from the stored cursor: counting lines of a big file would dominate.
            dirsync::store::load_cursor(&conn, "bench", "jsonl-1")
                .unwrap()
                .map_or(0, |c| c.delivered_seq)
        },
    )
}

/// The memory target: the peak RSS with the larger backlog within
/// [`bench::flat_memory_limit`] of the peak with the smaller one.
fn check_flat(
    targets: &mut bench::Targets,
    sink: &str,
    small: (u64, &Delivery),
    big: (u64, &Delivery),
) {
    let (small_n, small_run) = small;
    let (big_n, big_run) = big;
    let limit = small_run.peak_rss.map(bench::flat_memory_limit);
    targets.check(
        &format!("{sink}: peak RSS with {big_n} events pending within 25% (at least 8 MiB) of that with {small_n}"),
        small_run.peak_rss.and(big_run.peak_rss).map(|b| b as f64),
        |peak| limit.is_some_and(|limit| peak <= limit as f64),
        |peak| {
            format!(
                "{} vs {} (limit {})",
                bench::mib(peak),
                small_run.peak_rss.map_or_else(|| "not measured".to_owned(), |b| bench::mib(b as f64)),
                limit.map_or_else(|| "none".to_owned(), |b| bench::mib(b as f64)),
            )
        },
    );
}

/// Delivers `small` then `big` events through each batched sink and judges the memory.
fn delivery_memory_targets(small: u64, big: u64) -> bench::Targets {
    let receiver = Receiver::default();
    receiver.discard.store(true, Ordering::SeqCst);
    let addr = receiver.start("127.0.0.1:0");
    let mut targets = bench::Targets::new();
    let (webhook_small, webhook_big) = (
        webhook_batches(&receiver, addr, small),
        webhook_batches(&receiver, addr, big),
    );
    check_flat(
        &mut targets,
        "webhook",
        (small, &webhook_small),
        (big, &webhook_big),
    );
    let (jsonl_small, jsonl_big) = (jsonl_batches(small), jsonl_batches(big));
    check_flat(
        &mut targets,
        "jsonl",
        (small, &jsonl_small),
        (big, &jsonl_big),
    );
    for (sink, run) in [("webhook", &webhook_big), ("jsonl", &jsonl_big)] {
        println!(
            "{sink}: {big} events at {:.0} events/s",
            big as f64 / run.elapsed.as_secs_f64()
        );
    }
    targets
}

/// The benchmark's machinery at a size that runs with every test: the peak RSS is measured
/// (a missing figure fails) and a backlog ten times larger does not raise it.
#[test]
fn delivery_memory_is_measured_and_flat_at_a_small_scale() {
    let targets = delivery_memory_targets(300, 3_000);
    let report = targets.report();
    println!("{report}");
    assert_eq!(targets.verdicts().len(), 2, "{report}");
    assert_eq!(targets.exit_code(), 0, "{report}");
}

/// Events per second one event per request, in batches and to a file; and the delivering
/// process's peak RSS with a backlog of `DIRSYNC_BENCH_EVENTS` (default 1,000,000) against a
/// tenth of it, failing when memory grows with the backlog beyond
/// [`bench::flat_memory_limit`].
#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn delivery_throughput_and_memory() {
    let backlog: u64 = std::env::var("DIRSYNC_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);

    let receiver = Receiver::default();
    receiver.discard.store(true, Ordering::SeqCst);
    let addr = receiver.start("127.0.0.1:0");
    let single = 20_000.min(backlog);
    let env = webhook_env(addr, 1);
    fill_outbox(&env, "bench", single);
    let base = receiver.count.load(Ordering::SeqCst);
    measure(&env, "webhook, one event per request", single, || {
        receiver.count.load(Ordering::SeqCst) - base
    });

    let targets = delivery_memory_targets((backlog / 10).max(1), backlog);
    let report = targets.report();
    println!("{report}");
    assert_eq!(targets.exit_code(), 0, "{report}");
}
