//! Several `dirsync run` nodes on one store: every scheduled slot of a tenant runs on exactly
//! one node (the runs spread over the nodes, each tenant's stream stays gap-free), `status`
//! shows who holds a tenant and the nodes, and `dirsync deliver` beside a daemon delivers no
//! duplicates (one deliverer per tenant and sink, on SQLite as on PostgreSQL).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use dirsync_testkit::daemon::Daemon;
use dirsync_testkit::emulator::GoogleEmulator;
use dirsync_testkit::postgres::{psql, PgDatabase};
use dirsync_testkit::webhook::{Receiver, SECRET};
use dirsync_testkit::{wait_for, ConfigDir, Running};
use serde_json::{json, Value};

use crate::support::dirsync;

const NODES: usize = 3;
const TENANTS: usize = 30;
/// Every 2 s: short enough for many slots, long enough for a run on a busy machine.
const EVERY_2S: &str = "*/2 * * * * *";
const INTERVAL_MS: i64 = 2000;
/// Runs per tenant the test waits for.
const SLOTS: usize = 4;

fn fixture() -> Value {
    json!({
        "domain": "example.com",
        "users": [
            {"primaryEmail": "admin@example.com", "name": {"givenName": "Ada", "familyName": "Admin"}},
            {"primaryEmail": "bob@example.com", "name": {"givenName": "Bob", "familyName": "Builder"}},
        ],
        "groups": [],
    })
}

/// A node's config folder: the shared store, `tenants` tenants on `schedule` against the
/// emulator, `tenant_extra` appended to each tenant file.
fn node_dir(
    global: &str,
    emulator: &GoogleEmulator,
    tenants: usize,
    schedule: &str,
    tenant_extra: &str,
) -> ConfigDir {
    let dir = ConfigDir::builder(dirsync()).global(global).build();
    dir.write("tenants/secret", SECRET);
    for n in 0..tenants {
        let name = format!("t{n:02}");
        dir.emulator_tenant(&name, emulator, "requests_per_minute = 0", tenant_extra);
        let path = dir.tenant_file(&name);
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "schedule = \"0 0 * * * *\"",
            &format!("schedule = \"{schedule}\""),
        );
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// Rows of `sql` as `|`-split columns.
fn rows(url: &str, sql: &str) -> Vec<Vec<String>> {
    psql(url, sql)
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| line.split('|').map(str::to_owned).collect())
        .collect()
}

/// Per tenant, the start times (ms) of its runs, oldest first.
fn run_starts(url: &str) -> BTreeMap<String, Vec<i64>> {
    let mut starts: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for row in rows(
        url,
        "SELECT tenant, started_at FROM runs ORDER BY tenant, started_at;",
    ) {
        starts
            .entry(row[0].clone())
            .or_default()
            .push(row[1].parse().unwrap());
    }
    starts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_run_every_scheduled_slot_once_spread_over_the_nodes() {
    let db = PgDatabase::create();
    let emulator = GoogleEmulator::start(&fixture());
    let global = format!("database_url = \"{}\"\n", db.url());
    let dirs: Vec<ConfigDir> = (0..NODES)
        .map(|_| node_dir(&global, &emulator, TENANTS, EVERY_2S, ""))
        .collect();
    let mut nodes = Vec::new();
    for dir in &dirs {
        nodes.push(Daemon::start(dir, None).await);
    }
    let url = db.url().to_owned();
    wait_for(180, &format!("{SLOTS} runs of every tenant"), || {
        let starts = run_starts(&url);
        async move { starts.len() == TENANTS && starts.values().all(|runs| runs.len() >= SLOTS) }
    })
    .await;
    // Halfway through: a new user, which every tenant's next run commits once.
    emulator
        .directory()
        .insert_user(&json!({"primaryEmail": "zed@example.com", "name": {"givenName": "Zed", "familyName": "New"}}))
        .unwrap();
    let before: BTreeMap<String, usize> = run_starts(&url)
        .into_iter()
        .map(|(tenant, runs)| (tenant, runs.len()))
        .collect();
    wait_for(180, "every tenant's runs after the new user", || {
        let starts = run_starts(&url);
        let before = before.clone();
        async move {
            starts
                .iter()
                .all(|(tenant, runs)| runs.len() >= before[tenant] + SLOTS)
        }
    })
    .await;

    // status, while the nodes run: who holds each tenant, who claimed its last slot, the nodes.
    let status = dirs[0].run_async(&["status", "--json"]).await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    let tenants: Vec<Value> = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(tenants.len(), TENANTS);
    let mut claimers = BTreeSet::new();
    for tenant in &tenants {
        let claim = &tenant["cluster"]["last_claim"];
        assert!(claim["node"].is_string(), "{tenant:#}");
        claimers.insert(claim["node"].as_str().unwrap().to_owned());
    }
    let listed = dirs[0].run_async(&["status", "--nodes", "--json"]).await;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let listed: Vec<Value> = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(listed.len(), NODES, "{listed:#?}");
    let node_ids: BTreeSet<String> = listed
        .iter()
        .map(|n| n["node"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        claimers.is_subset(&node_ids),
        "{claimers:?} vs {node_ids:?}"
    );
    assert!(
        claimers.len() > 1,
        "the last slots of all {TENANTS} tenants were claimed by one node: {claimers:?}"
    );

    for node in &nodes {
        node.signal("TERM");
    }
    for node in &mut nodes {
        assert_eq!(node.wait_exit(60).await, 0, "{}", node.log_text());
    }
    assert_eq!(
        psql(&url, "SELECT count(*) FROM nodes;"),
        "0",
        "stopped nodes deregister"
    );

    // Every slot ran once: no two runs of a tenant start within half an interval of each other
    // (without the claim, the three nodes ran each slot one after another, milliseconds apart),
    // and no more runs than slots passed.
    let starts = run_starts(&url);
    for (tenant, runs) in &starts {
        for pair in runs.windows(2) {
            assert!(
                pair[1] - pair[0] >= INTERVAL_MS / 2,
                "tenant {tenant}: two runs {} ms apart (one slot ran twice): {runs:?}",
                pair[1] - pair[0]
            );
        }
        let slots = (runs[runs.len() - 1] - runs[0]) / INTERVAL_MS + 1;
        assert!(
            runs.len() as i64 <= slots + 1,
            "tenant {tenant}: {} runs in {slots} slots",
            runs.len()
        );
    }
    let total: usize = starts.values().map(Vec::len).sum();
    eprintln!(
        "{total} runs of {TENANTS} tenants on {NODES} nodes; last slots claimed by {} nodes",
        claimers.len()
    );

    // Each stream is gap-free from seq 1, and holds the new user once.
    for row in rows(
        &url,
        "SELECT tenant, count(*), min(seq), max(seq),
                sum(CASE WHEN body LIKE '%zed@example.com%' AND type = 'user.created' THEN 1 ELSE 0 END)
         FROM events GROUP BY tenant ORDER BY tenant;",
    ) {
        assert_eq!(row[1], row[3], "tenant {}: a gap in its seqs: {row:?}", row[0]);
        assert_eq!(row[2], "1", "{row:?}");
        assert_eq!(row[4], "1", "tenant {}: the new user's event, once: {row:?}", row[0]);
    }
}

/// `dirsync deliver` running beside the daemon, both with the tenant's webhook sink: every
/// event reaches the receiver exactly once.
async fn deliver_beside_the_daemon_delivers_no_duplicates(global: &str) {
    let emulator = GoogleEmulator::start(&fixture());
    let receiver = Receiver::default();
    // Slow answers: both deliverers would be in flight on the same events at once.
    receiver
        .delay_ms
        .store(200, std::sync::atomic::Ordering::Relaxed);
    let hook = receiver.start("127.0.0.1:0");
    let sink = format!(
        "[[sinks]]\ntype = \"webhook\"\nname = \"app\"\nurl = \"http://{hook}/hook\"\nsecret_file = \"secret\"\nbatch_size = 1\n"
    );
    let dir = node_dir(global, &emulator, 1, "0 0 0 1 1 *", &sink);
    let daemon = Daemon::start(&dir, None).await;
    let _deliver = Running(
        dir.dirsync()
            .clone()
            .env("RUST_LOG", "info")
            .command(&["deliver"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut last_seq = 0;
    for round in 0..4 {
        for n in 0..3 {
            emulator
                .directory()
                .insert_user(&json!({"primaryEmail": format!("u{round}-{n}@example.com"),
                    "name": {"givenName": "U", "familyName": format!("{round}-{n}")}}))
                .unwrap();
        }
        let run = dir.run_async(&["sync", "t00", "--json"]).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        let report: Value = serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
        last_seq = report["last_seq"].as_u64().unwrap_or(last_seq);
        let want = last_seq;
        wait_for(60, &format!("seq {want} at the webhook"), || {
            let max = receiver.seqs().into_iter().max().unwrap_or(0);
            async move { max >= want }
        })
        .await;
    }
    assert!(last_seq > 10, "{last_seq}");
    let seqs = receiver.seqs();
    assert_eq!(
        seqs,
        (1..=last_seq).collect::<Vec<_>>(),
        "each event once, in order; daemon log:\n{}",
        daemon.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_beside_the_daemon_delivers_no_duplicates_on_sqlite() {
    deliver_beside_the_daemon_delivers_no_duplicates("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_beside_the_daemon_delivers_no_duplicates_on_postgres() {
    let db = PgDatabase::create();
    deliver_beside_the_daemon_delivers_no_duplicates(&format!("database_url = \"{}\"\n", db.url()))
        .await;
}
