//! Delivery benchmark (printed figures, not a timed test): events per second from the outbox
//! to a local webhook receiver, one at a time and batched, and to a JSON-lines file; and a large
//! backlog delivered in batches while the delivering process's memory is sampled, to show it
//! does not grow with the backlog (the outbox is read in pages).
//!
//! Run: `cargo test --release --test sink_bench -- --ignored --nocapture`
//! (`DIRSYNC_BENCH_EVENTS` sets the backlog, default 1,000,000).
#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::support::*;
use dirsync_testkit::webhook::*;
use dirsync_testkit::*;
use rusqlite::params;

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

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Runs `dirsync deliver --once` until `done()`, sampling RSS at each tenth of `total`.
fn measure(env: &ConfigDir, label: &str, total: u64, progress: impl Fn() -> u64) {
    let started = Instant::now();
    let mut child = env
        .command(&["deliver", "--once"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut samples = Vec::new();
    let mut next_tenth = 1;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{label}: deliver failed");
            break;
        }
        let done = progress();
        if done * 10 >= total * next_tenth {
            if let Some(rss) = rss_kib(pid) {
                samples.push((done, rss));
            }
            next_tenth += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed();
    assert_eq!(progress(), total, "{label}: not everything arrived");
    println!(
        "{label}: {total} events in {:.2}s = {:.0} events/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    if !samples.is_empty() {
        let line: Vec<String> = samples
            .iter()
            .map(|(done, rss)| format!("{}%: {:.1} MiB", done * 100 / total, *rss as f64 / 1024.0))
            .collect();
        println!(
            "  RSS of the delivering process by progress: {}",
            line.join(", ")
        );
    }
}

fn webhook_env(receiver_addr: std::net::SocketAddr, batch_size: usize) -> ConfigDir {
    let env = sink_dir("");
    env.tenant(
        "bench",
        &format!("[[sinks]]\ntype = \"webhook\"\nname = \"hook\"\nurl = \"http://{receiver_addr}/hook\"\nsecret_file = \"secret\"\nbatch_size = {batch_size}\n"),
    );
    env
}

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

    let env = webhook_env(addr, 1000);
    fill_outbox(&env, "bench", backlog);
    let base = receiver.count.load(Ordering::SeqCst);
    measure(&env, "webhook, batches of 1000", backlog, || {
        receiver.count.load(Ordering::SeqCst) - base
    });

    let env = sink_dir("");
    let file = env.path().join("events.jsonl");
    env.tenant(
        "bench",
        &format!(
            "[[sinks]]\ntype = \"jsonl\"\npath = \"{}\"\nbatch_size = 1000\n",
            file.display()
        ),
    );
    fill_outbox(&env, "bench", backlog);
    let conn = env.store().connect().unwrap();
    measure(
        &env,
        "jsonl, batches of 1000 (fsync per batch)",
        backlog,
        || {
            // Progress from the stored cursor: counting lines of a big file would dominate.
            dirsync::store::load_cursor(&conn, "bench", "jsonl-1")
                .unwrap()
                .map_or(0, |c| c.delivered_seq)
        },
    );
}
