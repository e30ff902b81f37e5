//! `cargo bench --bench cluster`: several `dirsync run` nodes on one PostgreSQL database
//! (issue 16). N nodes of the release binary share the same tenant files (T small tenants of
//! one `dirsync emulator`, default 1,000 of 100 users) and `database_url`; after every tenant's
//! first sync it watches a window of the schedule (default: every tenant once a minute, for
//! three minutes) and prints, from the runs table and PostgreSQL's own view:
//!
//! - runs per minute achieved against scheduled (each tenant's slot, fire time + its offset,
//!   counts once), and runs beyond one per slot (a slot run twice: none allowed);
//! - lateness p50 / p99 of a run after its slot;
//! - the database connections the nodes held (peak of `pg_stat_activity`, client backends
//!   only: autovacuum workers are not the nodes'), against the
//!   documented bound, nodes × (`database_pool_size` + 1).
//!
//! Needs a PostgreSQL server to create its database on: `DIRSYNC_TEST_DATABASE_URL` (which
//! scripts/test.sh exports) or `--database-url`. Exits 1 when a target is missed.
//!
//! ```text
//! cargo bench --bench cluster -- --tenants 1000 --nodes 3 --minutes 3
//! ```
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dirsync::daemon::schedule::offset_of;
use dirsync_testkit::daemon::control_status;
use dirsync_testkit::emulator::EmulatorProcess;
use dirsync_testkit::postgres::psql;
use dirsync_testkit::{ConfigDir, Dirsync, PgDatabase};

const BIN: &str = env!("CARGO_BIN_EXE_dirsync");
/// The pool size each node is given, and so the bound on connections.
const POOL_SIZE: usize = 10;

struct Options {
    tenants: usize,
    nodes: usize,
    users: usize,
    groups: usize,
    schedule: String,
    minutes: u64,
    database_url: Option<String>,
}

impl Options {
    fn parse() -> Self {
        let mut options = Options {
            tenants: 1000,
            nodes: 3,
            users: 100,
            groups: 10,
            schedule: "0 * * * * *".into(),
            minutes: 3,
            database_url: std::env::var("DIRSYNC_TEST_DATABASE_URL").ok(),
        };
        // cargo bench passes --bench to every harness = false target; cargo test does not.
        let benchmarking = std::env::args().any(|arg| arg == "--bench");
        let mut unknown: Vec<String> = Vec::new();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .unwrap_or_else(|| usage(&format!("{name} needs a value")))
            };
            let number = |name: &str, text: String| -> usize {
                text.parse()
                    .unwrap_or_else(|_| usage(&format!("{name}: {text:?} is not a number")))
            };
            match arg.as_str() {
                "--tenants" => options.tenants = number("--tenants", value("--tenants")),
                "--nodes" => options.nodes = number("--nodes", value("--nodes")).max(1),
                "--users" => options.users = number("--users", value("--users")),
                "--groups" => options.groups = number("--groups", value("--groups")),
                "--schedule" => options.schedule = value("--schedule"),
                "--minutes" => options.minutes = number("--minutes", value("--minutes")) as u64,
                "--database-url" => options.database_url = Some(value("--database-url")),
                "--bench" => {}
                "-h" | "--help" => usage(""),
                // `cargo test` hands libtest's arguments to every target: see below.
                other if !benchmarking => unknown.push(other.to_owned()),
                other => usage(&format!("unknown argument {other:?}")),
            }
        }
        if !benchmarking {
            dirsync_testkit::bench::exit_unless_a_filter_names("cluster", &unknown);
            // `cargo test --all-targets` runs this target too: a small smoke run.
            options.tenants = options.tenants.min(12);
            options.nodes = options.nodes.min(2);
            options.users = options.users.min(10);
            options.groups = options.groups.min(2);
            options.schedule = "*/5 * * * * *".into();
            options.minutes = 0;
        }
        if cron::Schedule::from_str(&options.schedule).is_err() {
            usage(&format!(
                "--schedule {:?} is not a cron line",
                options.schedule
            ));
        }
        options
    }
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("cluster bench: {problem}");
    }
    eprintln!(
        "usage: cargo bench --bench cluster -- [--tenants N] [--nodes N] [--users N] [--groups N] \
         [--schedule CRON] [--minutes N] [--database-url URL]"
    );
    std::process::exit(if problem.is_empty() { 0 } else { 2 });
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.saturating_sub(1).min(sorted.len() - 1)])
}

fn count(url: &str, sql: &str) -> u64 {
    psql(url, sql).trim().parse().unwrap_or(0)
}

fn main() {
    let options = Options::parse();
    let Some(server) = options.database_url.clone() else {
        eprintln!(
            "cluster bench: no PostgreSQL server: set DIRSYNC_TEST_DATABASE_URL or --database-url (scripts/test.sh starts one); skipped"
        );
        // Not a verdict: nothing was measured.
        std::process::exit(if std::env::args().any(|a| a == "--bench") {
            1
        } else {
            0
        });
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let failed = runtime.block_on(bench(&options, &server));
    if !failed.is_empty() {
        eprintln!("cluster bench: missed targets: {}", failed.join(", "));
        std::process::exit(1);
    }
}

async fn bench(options: &Options, server: &str) -> Vec<String> {
    let schedule = cron::Schedule::from_str(&options.schedule).unwrap();
    let database = PgDatabase::create_on(server);
    let keys = tempfile::Builder::new()
        .prefix("dirsync-cluster-bench-")
        .tempdir()
        .unwrap();
    let dirsync = Dirsync::new(BIN).env("RUST_LOG", "warn");
    let (users, groups) = (options.users.to_string(), options.groups.to_string());
    let emulator = EmulatorProcess::spawn(
        &dirsync,
        &keys.path().join("key.json"),
        &["--users", &users, "--groups", &groups],
        Stdio::null(),
    );
    let tenant_ids: Vec<String> = (0..options.tenants).map(|i| format!("t{i:05}")).collect();
    let tenant_text = format!(
        "schedule = {:?}\n\n[source]\ntype = \"google\"\ncredentials_file = {:?}\n\
         subject = \"admin@example.com\"\napi_base = {:?}\n",
        options.schedule,
        emulator.key_file.display().to_string(),
        emulator.base_url
    );
    eprintln!(
        "cluster bench: {} tenants of {} users / {} groups on {} nodes, schedule {:?}, {} min watched, database {}",
        options.tenants,
        options.users,
        options.groups,
        options.nodes,
        options.schedule,
        options.minutes,
        database.name()
    );
    let mut nodes: Vec<(ConfigDir, Child)> = Vec::new();
    for node in 0..options.nodes {
        let config = ConfigDir::builder(dirsync.clone())
            .global(&format!(
                "database_url = {:?}\ndatabase_pool_size = {POOL_SIZE}\n",
                database.url()
            ))
            .build();
        for tenant in &tenant_ids {
            config.write_tenant(tenant, &tenant_text);
        }
        let child = config
            .command(&["run"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(config.path().join("daemon.log")).unwrap())
            .spawn()
            .unwrap();
        eprintln!(
            "cluster bench: node {node} started (log {})",
            config.path().join("daemon.log").display()
        );
        nodes.push((config, child));
    }
    for (config, _) in &nodes {
        let up = Instant::now();
        while control_status(&config.socket())
            .await
            .is_none_or(|answer| answer["ok"] != true)
        {
            assert!(
                up.elapsed() < Duration::from_secs(120),
                "a node did not answer on its control socket; see {}",
                config.path().join("daemon.log").display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Warm-up: every tenant's first, full sync.
    let warm = Instant::now();
    loop {
        let synced = count(
            database.url(),
            "SELECT count(DISTINCT tenant) FROM runs WHERE outcome = 'committed'",
        );
        if synced as usize >= options.tenants {
            break;
        }
        assert!(
            warm.elapsed() < Duration::from_secs(900),
            "only {synced} of {} tenants synced within 15 min",
            options.tenants
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!(
        "cluster bench: every tenant synced once in {:.0} s",
        warm.elapsed().as_secs_f64()
    );

    let window_start = Utc::now();
    let window = Duration::from_secs(options.minutes * 60).max(Duration::from_secs(20));
    let window_end = window_start + chrono::Duration::from_std(window).unwrap();
    let connections_sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND backend_type = 'client backend'",
        database.name()
    );
    let mut peak_connections = 0;
    while Utc::now() < window_end {
        peak_connections = peak_connections.max(count(server, &connections_sql));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // Runs that started in the window finish and are recorded.
    tokio::time::sleep(Duration::from_secs(10)).await;
    for (_, child) in &mut nodes {
        let _ = child.kill();
        let _ = child.wait();
    }

    let rows: Vec<(String, i64)> = psql(
        database.url(),
        &format!(
            "SELECT tenant, started_at FROM runs WHERE started_at >= {} AND outcome <> 'failed' ORDER BY started_at",
            window_start.timestamp_millis()
        ),
    )
    .lines()
    .filter_map(|line| line.split_once('|'))
    .map(|(tenant, at)| (tenant.to_owned(), at.trim().parse().unwrap()))
    .collect();
    let failed_runs = count(
        database.url(),
        &format!(
            "SELECT count(*) FROM runs WHERE started_at >= {} AND outcome = 'failed'",
            window_start.timestamp_millis()
        ),
    );
    // Each tenant's slots (fire time + its offset), from before the window to after it: a run
    // serves its tenant's latest slot at or before its start (2 ms of slack for rounding), and
    // only the slots inside the window are counted as scheduled.
    let margin = chrono::Duration::minutes(2);
    let in_window = |slot: &DateTime<Utc>| *slot >= window_start && *slot < window_end;
    let mut slots: BTreeMap<&str, Vec<DateTime<Utc>>> = BTreeMap::new();
    for tenant in &tenant_ids {
        let list = schedule
            .after(&(window_start - margin))
            .take_while(|fire| *fire < window_end + margin)
            .map(|fire| {
                fire + chrono::Duration::from_std(offset_of(tenant, &schedule, fire)).unwrap()
            })
            .collect();
        slots.insert(tenant, list);
    }
    let scheduled: usize = slots
        .values()
        .map(|list| list.iter().filter(|slot| in_window(slot)).count())
        .sum();
    let mut served = BTreeSet::new();
    let mut extra_runs = 0;
    let mut lateness_s = Vec::new();
    for (tenant, started_ms) in &rows {
        let started = DateTime::from_timestamp_millis(*started_ms).unwrap();
        let Some(slot) = slots.get(tenant.as_str()).and_then(|list| {
            list.iter()
                .rev()
                .find(|slot| **slot <= started + chrono::Duration::milliseconds(2))
        }) else {
            continue;
        };
        if !served.insert((tenant.clone(), *slot)) {
            extra_runs += 1;
            eprintln!(
                "cluster bench: {tenant}: a second run for its slot {slot} started {started}"
            );
        } else if in_window(slot) {
            lateness_s.push((started - *slot).num_milliseconds() as f64 / 1000.0);
        }
    }
    served.retain(|(_, slot)| in_window(slot));
    lateness_s.sort_by(f64::total_cmp);
    let minutes = window.as_secs_f64() / 60.0;
    let achieved = served.len() as f64 / minutes;
    let wanted = scheduled as f64 / minutes;
    let bound = options.nodes * (POOL_SIZE + 1);

    println!();
    println!(
        "cluster: {} nodes, {} tenants, schedule {:?}, window {} .. {} ({:.0} s)",
        options.nodes,
        options.tenants,
        options.schedule,
        window_start.format("%H:%M:%S"),
        window_end.format("%H:%M:%S"),
        window.as_secs_f64()
    );
    println!(
        "runs per minute: {achieved:.1} achieved of {wanted:.1} scheduled ({} of {scheduled} slots); {extra_runs} runs beyond one per slot; {failed_runs} failed",
        served.len()
    );
    println!(
        "lateness after the slot: p50 {:.2} s, p99 {:.2} s",
        percentile(&lateness_s, 50.0).unwrap_or(f64::NAN),
        percentile(&lateness_s, 99.0).unwrap_or(f64::NAN)
    );
    println!("database connections held: peak {peak_connections} (bound {bound} = nodes x (pool {POOL_SIZE} + 1 listener))");

    let mut failed = Vec::new();
    let mut check = |name: &str, ok: bool, shown: String| {
        println!("  {} {name}: {shown}", if ok { "PASS" } else { "FAIL" });
        if !ok {
            failed.push(name.to_owned());
        }
    };
    println!("targets:");
    check(
        "every slot ran",
        scheduled > 0 && served.len() == scheduled,
        format!("{} of {scheduled}", served.len()),
    );
    check(
        "no slot ran twice",
        extra_runs == 0,
        format!("{extra_runs} extra runs"),
    );
    check("no run failed", failed_runs == 0, format!("{failed_runs}"));
    let p99 = percentile(&lateness_s, 99.0);
    check(
        "lateness p99 within 5 s of the slot",
        p99.is_some_and(|p| p <= 5.0),
        format!("{:.2} s", p99.unwrap_or(f64::NAN)),
    );
    check(
        "connections within the documented bound",
        peak_connections as usize <= bound,
        format!("{peak_connections} of {bound}"),
    );
    failed
}
