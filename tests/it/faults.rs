//! Faults of a cluster on PostgreSQL (issue 16), with the real `dirsync` binary, the Google
//! emulator and a real PostgreSQL server: a node killed (`kill -9`) while it fetches and while
//! it commits, a node stopped (`SIGSTOP`) past its lease and resumed, PostgreSQL restarted
//! under two nodes' scheduled syncs and a delivering sink, and a webhook receiver down while
//! nodes come and go. After each, the stored directory and the event stream are exact (the
//! stream, folded from seq 1 without a gap, is the emulator's directory) and every event
//! reaches the sink, in order.
//!
//! Leases last 2 s here (`DIRSYNC_TEST_LEASE_TTL_MS`), so "past its lease" is quick; a node
//! killed on this host is taken over at once anyway (its pid is gone).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use dirsync::sync::LEASE_TTL_ENV;
use dirsync_emulator::{FaultKind, FaultRule};
use dirsync_testkit::daemon::Daemon;
use dirsync_testkit::emulator::GoogleEmulator;
use dirsync_testkit::postgres::{psql, try_psql};
use dirsync_testkit::webhook::{assert_no_loss_no_reorder, Receiver, SECRET};
use dirsync_testkit::{wait_for, wait_until_or, ConfigDir, PgCluster, PgDatabase};
use serde_json::{json, Value};

use crate::lease_signals::Watched;
use crate::support::dirsync;

/// The lease ttl of every node in these tests, in milliseconds.
const LEASE_TTL_MS: &str = "2000";

/// One node of the cluster: its own config folder (state dir, control socket) over the
/// shared database at `url`.
fn node(url: &str) -> ConfigDir {
    ConfigDir::builder(dirsync().env(LEASE_TTL_ENV, LEASE_TTL_MS))
        .global(&format!("database_url = \"{url}\"\n"))
        .build()
}

/// `dirsync run` on `node`, with the tests' lease ttl.
async fn start_daemon(node: &ConfigDir) -> Daemon {
    Daemon::start_with_env(node, None, &[(LEASE_TTL_ENV, LEASE_TTL_MS)]).await
}

/// Writes tenant `name` on every node: the emulator as its source, `schedule`, `extra`
/// appended (sinks).
fn tenant(
    nodes: &[&ConfigDir],
    name: &str,
    emulator: &GoogleEmulator,
    schedule: &str,
    extra: &str,
) {
    for node in nodes {
        node.emulator_tenant(
            name,
            emulator,
            "requests_per_minute = 0\nrequest_timeout_seconds = 120\nretry_max_seconds = 1",
            extra,
        );
        let file = node.tenant_file(name);
        let text = std::fs::read_to_string(&file).unwrap().replacen(
            "schedule = \"0 0 * * * *\"",
            &format!("schedule = \"{schedule}\""),
            1,
        );
        std::fs::write(&file, text).unwrap();
        node.write(format!("tenants/{name}-secret"), SECRET);
    }
}

fn webhook_sink(tenant: &str, hook: std::net::SocketAddr) -> String {
    format!(
        "[[sinks]]\ntype = \"webhook\"\nname = \"app\"\nurl = \"http://{hook}/{tenant}\"\nsecret_file = \"{tenant}-secret\"\nmax_backoff_seconds = 1\n"
    )
}

fn small_org() -> Value {
    json!({
        "domain": "example.com",
        "users": [
            {"primaryEmail": "admin@example.com", "name": {"givenName": "Ada", "familyName": "Admin"}},
            {"primaryEmail": "bob@example.com", "name": {"givenName": "Bob", "familyName": "Builder"}},
            {"primaryEmail": "cy@example.com", "name": {"givenName": "Cy", "familyName": "Clerk"}},
        ],
        "groups": [
            {"email": "staff@example.com", "name": "Staff", "members": [
                {"email": "bob@example.com"}, {"email": "cy@example.com"}
            ]},
        ],
    })
}

/// The stream folded from seq 1, checked on the way: seq grows by exactly one, nothing is
/// created twice, updated or deleted before it exists, or joined before both ends exist.
#[derive(Default, Debug)]
struct Folded {
    seq: u64,
    users: BTreeMap<String, Value>,
    groups: BTreeMap<String, Value>,
    members: BTreeSet<(String, String)>,
}

impl Folded {
    fn of(events: &[Value]) -> Self {
        let mut folded = Self::default();
        for event in events {
            folded.apply(event);
        }
        folded
    }

    fn apply(&mut self, event: &Value) {
        self.seq += 1;
        assert_eq!(event["seq"], self.seq, "seq grows by exactly 1: {event}");
        let data = &event["data"];
        let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
        let kind = event["type"].as_str().unwrap();
        match kind {
            "user.created" => assert!(
                self.users.insert(id(data), data.clone()).is_none(),
                "{event}"
            ),
            "group.created" => assert!(
                self.groups.insert(id(data), data.clone()).is_none(),
                "{event}"
            ),
            "user.updated" => assert!(
                self.users.insert(id(data), data.clone()).is_some(),
                "{event}"
            ),
            "group.updated" => assert!(
                self.groups.insert(id(data), data.clone()).is_some(),
                "{event}"
            ),
            "user.deleted" => assert!(self.users.remove(&id(data)).is_some(), "{event}"),
            "group.deleted" => assert!(self.groups.remove(&id(data)).is_some(), "{event}"),
            "group.user_added" | "group.user_removed" => {
                let edge = (id(&data["group"]), id(&data["user"]));
                assert!(
                    self.groups.contains_key(&edge.0) && self.users.contains_key(&edge.1),
                    "{event}"
                );
                if kind == "group.user_added" {
                    assert!(self.members.insert(edge), "{event}");
                } else {
                    assert!(self.members.remove(&edge), "{event}");
                }
            }
            other => panic!("unknown event type {other}: {event}"),
        }
    }

    /// The stream equals the emulator's directory: the same user and group ids, and (with
    /// `members`) the same direct user memberships.
    fn assert_is(&self, emulator: &GoogleEmulator, members: bool) {
        let directory = emulator.directory();
        let users: BTreeSet<String> = directory
            .user_emails()
            .iter()
            .map(|email| emulator.user(email)["id"].as_str().unwrap().to_owned())
            .collect();
        let groups: BTreeSet<String> = directory
            .group_emails()
            .iter()
            .map(|email| emulator.group(email)["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            self.users.keys().cloned().collect::<BTreeSet<_>>(),
            users,
            "users"
        );
        assert_eq!(
            self.groups.keys().cloned().collect::<BTreeSet<_>>(),
            groups,
            "groups"
        );
        if members {
            let expected: BTreeSet<(String, String)> = directory
                .group_emails()
                .iter()
                .flat_map(|email| {
                    let group = emulator.group(email)["id"].as_str().unwrap().to_owned();
                    directory
                        .members(email)
                        .unwrap()
                        .into_iter()
                        .filter(|m| m["type"] == "USER")
                        .map(move |m| (group.clone(), m["id"].as_str().unwrap().to_owned()))
                })
                .collect();
            assert_eq!(self.members, expected, "memberships");
        }
    }
}

/// Every stored event of `tenant`, folded.
fn stream(node: &ConfigDir, tenant: &str) -> Folded {
    Folded::of(&node.events(tenant, 0))
}

fn lease_holder(url: &str, tenant: &str) -> Option<String> {
    // An error before the first node created the schema: no holder yet.
    let holder = try_psql(
        url,
        &format!("SELECT holder FROM leases WHERE tenant = '{tenant}';"),
    );
    holder
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Waits until `first` holds `tenant`'s lease with its delayed `users.list` in flight (the
/// one-shot delay fired).
fn holds_the_lease_mid_fetch(url: &str, emulator: &GoogleEmulator, first: &Watched) {
    let pid = first.pid();
    wait_until_or(
        "the first sync to hold the lease, its users.list in flight",
        Duration::from_secs(60),
        || {
            lease_holder(url, "acme").is_some_and(|h| h.starts_with(&format!("pid {pid} ")))
                && emulator.faults().list().is_empty()
        },
        || first.stderr(),
    );
}

fn delay_first_users_list(emulator: &GoogleEmulator, latency_ms: u64) {
    emulator
        .faults()
        .add(FaultRule {
            method: Some("users.list".into()),
            fault: FaultKind::Delay,
            latency_ms: Some(latency_ms),
            times: 1,
            ..FaultRule::default()
        })
        .unwrap();
}

fn add_user(emulator: &GoogleEmulator, local: &str) -> String {
    let user = emulator
        .directory()
        .insert_user(&json!({
            "primaryEmail": format!("{local}@example.com"),
            "name": {"givenName": local, "familyName": "Added"},
        }))
        .unwrap();
    emulator
        .directory()
        .add_member(
            "staff@example.com",
            &json!({"email": format!("{local}@example.com")}),
        )
        .unwrap();
    user["id"].as_str().unwrap().to_owned()
}

#[test]
fn a_node_killed_mid_fetch_leaves_nothing_and_another_node_syncs_the_tenant_exactly() {
    let db = PgDatabase::create();
    let emulator = GoogleEmulator::start(&small_org());
    let (a, b) = (node(db.url()), node(db.url()));
    tenant(&[&a, &b], "acme", &emulator, "0 0 * * * *", "");
    delay_first_users_list(&emulator, 120_000);

    let mut first = Watched::spawn(&a, &["sync", "acme", "--local"]);
    holds_the_lease_mid_fetch(db.url(), &emulator, &first);
    first.signal("KILL");
    assert_eq!(first.wait_exit(Duration::from_secs(30)), None, "killed");
    assert!(b.events("acme", 0).is_empty(), "nothing was committed");

    // The other node takes the tenant (the dead holder's lease at once) and syncs it all.
    let report = b.sync_committed("acme");
    assert_eq!(report["first_seq"], 1, "{report}");
    stream(&b, "acme").assert_is(&emulator, true);

    // And the next run on the first node catches up exactly from there.
    let synced = report["last_seq"].as_u64().unwrap();
    add_user(&emulator, "dee");
    emulator.directory().delete_user("cy@example.com").unwrap();
    let report = a.sync_committed("acme");
    assert_eq!(report["first_seq"].as_u64(), Some(synced + 1), "{report}");
    let folded = stream(&a, "acme");
    assert_eq!(Some(folded.seq), report["last_seq"].as_u64(), "{report}");
    folded.assert_is(&emulator, true);
}

/// Waits until a transaction of `url`'s database is writing a sync's rows (an xid assigned,
/// its last statement an insert of objects or events): the commit is under way.
fn committing(url: &str) -> bool {
    try_psql(
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
           AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL
           AND (query ILIKE '%INSERT INTO events%' OR query ILIKE '%INSERT INTO users%'
                OR query ILIKE '%INSERT INTO groups%' OR query ILIKE '%INSERT INTO group_%'
                OR query ILIKE '%COPY%');",
    )
    .is_ok_and(|count| count.trim() != "0")
}

#[test]
fn a_node_killed_mid_commit_commits_nothing_and_the_next_sync_commits_it_all_once() {
    let db = PgDatabase::create();
    let emulator = GoogleEmulator::start_generated(20_000, 200);
    let (a, b) = (node(db.url()), node(db.url()));
    tenant(&[&a, &b], "acme", &emulator, "0 0 * * * *", "");

    let mut first = Watched::spawn(&a, &["sync", "acme", "--local"]);
    wait_until_or(
        "the first sync's commit to be under way",
        Duration::from_secs(300),
        || committing(db.url()),
        || first.stderr(),
    );
    first.signal("KILL");
    assert_eq!(first.wait_exit(Duration::from_secs(30)), None, "killed");
    assert_eq!(
        psql(db.url(), "SELECT count(*) FROM events;").trim(),
        "0",
        "the killed commit left nothing"
    );
    assert_eq!(psql(db.url(), "SELECT count(*) FROM users;").trim(), "0");

    let report = b.sync_committed("acme");
    assert_eq!(report["first_seq"], 1, "{report}");
    let folded = stream(&b, "acme");
    assert_eq!(Some(folded.seq), report["last_seq"].as_u64(), "{report}");
    folded.assert_is(&emulator, false);
    assert_eq!(
        Some(folded.members.len() as u64),
        report["stored_memberships"].as_u64(),
        "{report}"
    );
    // The store is the directory: a resync finds nothing to change.
    let (code, again) = a.sync("acme", &[]);
    assert_eq!(
        (code, again["outcome"].as_str()),
        (0, Some("no_changes")),
        "{again}"
    );
}

/// A node stopped in the middle of a big commit holds that tenant (by design: its lease
/// check passed, so a takeover waits for the commit) but no other tenant: their reads and
/// commits go on, and once resumed the commit lands, exactly once.
#[test]
fn a_node_stopped_mid_commit_blocks_no_other_tenant_and_its_commit_lands_once_resumed() {
    let db = PgDatabase::create();
    // 60k events: past the bulk size at which a commit rebuilds the events table's indexes
    // rather than updating them row by row.
    let big = GoogleEmulator::start_generated(20_000, 400);
    let small = GoogleEmulator::start(&small_org());
    let (a, b) = (node(db.url()), node(db.url()));
    tenant(&[&a, &b], "big", &big, "0 0 * * * *", "");
    tenant(&[&a, &b], "acme", &small, "0 0 * * * *", "");
    b.sync_committed("acme");

    let mut stopped = Watched::spawn(&a, &["sync", "big", "--local"]);
    wait_until_or(
        "the big first sync's commit to be under way",
        Duration::from_secs(300),
        || committing(db.url()),
        || stopped.stderr(),
    );
    stopped.signal("STOP");

    // The other tenant is read and synced meanwhile.
    let mut read = Watched::spawn(&b, &["events", "acme"]);
    assert_eq!(
        read.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        read.stderr()
    );
    let added = add_user(&small, "dee");
    let mut sync = Watched::spawn(&b, &["sync", "acme", "--local"]);
    assert_eq!(
        sync.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        sync.stderr()
    );
    wait_for_user_event(db.url(), "acme", &added, String::new);
    stream(&b, "acme").assert_is(&small, true);

    stopped.signal("CONT");
    assert_eq!(
        stopped.wait_exit(Duration::from_secs(120)),
        Some(0),
        "the commit that passed its lease check lands: {}",
        stopped.stderr()
    );
    let folded = stream(&b, "big");
    folded.assert_is(&big, false);
    let (code, again) = b.sync("big", &[]);
    assert_eq!(
        (code, again["outcome"].as_str()),
        (0, Some("no_changes")),
        "{again}"
    );
    assert_eq!(
        Some(folded.members.len() as u64),
        again["stored_memberships"].as_u64(),
        "{again}"
    );
}

#[test]
fn a_node_stopped_past_its_lease_cannot_commit_when_it_resumes() {
    let db = PgDatabase::create();
    let emulator = GoogleEmulator::start(&small_org());
    let (a, b) = (node(db.url()), node(db.url()));
    tenant(&[&a, &b], "acme", &emulator, "0 0 * * * *", "");
    // Answered a moment after the node is stopped; it reads the answer once resumed.
    delay_first_users_list(&emulator, 1_000);

    let mut stopped = Watched::spawn(&a, &["sync", "acme", "--local"]);
    holds_the_lease_mid_fetch(db.url(), &emulator, &stopped);
    stopped.signal("STOP");
    let stale = lease_holder(db.url(), "acme").unwrap();

    // The lease lapses; the other node takes the tenant and commits.
    let report = b.sync_committed("acme");
    assert_eq!(report["first_seq"], 1, "{report}");
    assert_ne!(
        lease_holder(db.url(), "acme").as_deref(),
        Some(stale.as_str())
    );
    let committed = stream(&b, "acme");
    committed.assert_is(&emulator, true);
    // A change the stopped node's diff knows nothing of.
    add_user(&emulator, "dee");

    stopped.signal("CONT");
    let code = stopped.wait_exit(Duration::from_secs(60));
    let stderr = stopped.stderr();
    assert_eq!(code, Some(1), "the resumed run fails: {stderr}");
    assert!(
        stderr.contains("sync lease of tenant acme was lost"),
        "{stderr}"
    );
    assert!(
        stderr.matches("cannot renew the sync lease").count() <= 1,
        "a lost lease is reported once, not renewed again and again: {stderr}"
    );
    assert_eq!(
        b.events("acme", 0).len() as u64,
        committed.seq,
        "the resumed node committed nothing"
    );

    let report = b.sync_committed("acme");
    assert_eq!(
        report["first_seq"].as_u64(),
        Some(committed.seq + 1),
        "{report}"
    );
    stream(&b, "acme").assert_is(&emulator, true);
}

/// Waits until the daemon `node` holds `tenant`'s lease with its delayed `users.list` in
/// flight.
async fn daemon_holds_the_lease_mid_fetch(url: &str, emulator: &GoogleEmulator, node: &Daemon) {
    let pid = format!("pid {} ", node.child.id());
    wait_for(
        60,
        "the daemon to hold the lease, its users.list in flight",
        || {
            let held = lease_holder(url, "acme").is_some_and(|h| h.starts_with(&pid));
            let fired = emulator.faults().list().is_empty();
            async move { fired && held }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_mid_fetch_has_its_tenant_synced_exactly_by_another_node() {
    let db = PgDatabase::create();
    let url = db.url().to_owned();
    let emulator = GoogleEmulator::start(&small_org());
    let (a, b) = (node(&url), node(&url));
    tenant(&[&a, &b], "acme", &emulator, "* * * * * *", "");
    delay_first_users_list(&emulator, 120_000);

    let mut first = start_daemon(&a).await;
    daemon_holds_the_lease_mid_fetch(&url, &emulator, &first).await;
    first.signal("KILL");
    first.wait_exit(30).await;
    assert!(
        a.events_async("acme", 0).await.is_empty(),
        "nothing was committed"
    );

    // The other node's scheduled runs pick the tenant up and catch up exactly.
    let second = start_daemon(&b).await;
    let added = add_user(&emulator, "dee");
    wait_for_user_event(&url, "acme", &added, || second.log_text());
    let folded = Folded::of(&b.events_async("acme", 0).await);
    folded.assert_is(&emulator, true);
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_stopped_past_its_lease_fails_its_run_when_resumed_and_syncs_on() {
    let db = PgDatabase::create();
    let url = db.url().to_owned();
    let emulator = GoogleEmulator::start(&small_org());
    let (a, b) = (node(&url), node(&url));
    // Yearly: only the forced syncs below run.
    tenant(&[&a, &b], "acme", &emulator, "0 0 0 1 1 *", "");
    delay_first_users_list(&emulator, 1_000);
    let stopped = start_daemon(&a).await;
    let other = start_daemon(&b).await;

    // A forced sync on the first node, through its control socket.
    let mut forced = Watched::spawn(&a, &["sync", "acme", "--json"]);
    daemon_holds_the_lease_mid_fetch(&url, &emulator, &stopped).await;
    stopped.signal("STOP");

    let (code, report) = b.sync_async("acme", &[]).await;
    assert_eq!(
        (code, report["outcome"].as_str()),
        (0, Some("committed")),
        "{report}"
    );
    let committed = Folded::of(&b.events_async("acme", 0).await);
    committed.assert_is(&emulator, true);
    add_user(&emulator, "dee");

    stopped.signal("CONT");
    let code = tokio::task::spawn_blocking(move || {
        let code = forced.wait_exit(Duration::from_secs(60));
        (code, forced.stderr())
    })
    .await
    .unwrap();
    assert_eq!(code.0, Some(1), "the resumed run fails: {}", code.1);
    assert_eq!(
        b.events_async("acme", 0).await.len() as u64,
        committed.seq,
        "the resumed node committed nothing; its log:\n{}",
        stopped.log_text()
    );
    assert!(
        stopped
            .log_text()
            .contains("sync lease of tenant acme was lost"),
        "{}",
        stopped.log_text()
    );

    // The resumed node carries on: its next run commits what changed, exactly.
    let (code, report) = a.sync_async("acme", &[]).await;
    assert_eq!(
        (code, report["outcome"].as_str()),
        (0, Some("committed")),
        "{report}"
    );
    assert_eq!(
        report["first_seq"].as_u64(),
        Some(committed.seq + 1),
        "{report}"
    );
    Folded::of(&a.events_async("acme", 0).await).assert_is(&emulator, true);
    drop((stopped, other));
}

/// Waits until `tenant`'s stream holds `user_id`'s creation.
fn wait_for_user_event(url: &str, tenant: &str, user_id: &str, context: impl Fn() -> String) {
    wait_until_or(
        &format!("user {user_id} in {tenant}'s stream"),
        Duration::from_secs(120),
        || {
            try_psql(
                url,
                &format!("SELECT count(*) FROM events WHERE tenant = '{tenant}' AND type = 'user.created' AND subject_id = '{user_id}';"),
            )
            .is_ok_and(|n| n.trim() == "1")
        },
        context,
    );
}

fn last_seq(url: &str, tenant: &str) -> u64 {
    psql(
        url,
        &format!("SELECT coalesce(max(seq), 0) FROM events WHERE tenant = '{tenant}';"),
    )
    .trim()
    .parse()
    .unwrap()
}

/// Waits until the receiver has every event of `tenant` up to its last seq, then checks that
/// they came in order, none skipped, and that they are the stored ones.
fn assert_all_delivered(node: &ConfigDir, url: &str, receiver: &Receiver, tenant: &str) {
    let last = last_seq(url, tenant);
    let path = format!("/{tenant}");
    let received = || -> Vec<(u64, String)> {
        receiver
            .deliveries()
            .iter()
            .filter(|d| d.path == path)
            .flat_map(|d| d.events.iter())
            .map(|e| {
                (
                    e["seq"].as_u64().unwrap(),
                    e["id"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    wait_until_or(
        &format!("every event of {tenant} (up to {last}) at the receiver"),
        Duration::from_secs(120),
        || received().iter().map(|(seq, _)| *seq).max() == Some(last),
        || {
            format!(
                "{:?}",
                received().iter().map(|(s, _)| *s).collect::<Vec<_>>()
            )
        },
    );
    let received = received();
    assert_no_loss_no_reorder(&received, last);
    let stored: BTreeMap<u64, String> = node
        .events(tenant, 0)
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                e["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (seq, id) in &received {
        assert_eq!(stored.get(seq), Some(id), "seq {seq} is the stored event");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_loses_nothing_and_the_nodes_carry_on() {
    let cluster = PgCluster::start();
    let url = cluster.url();
    let emulator = GoogleEmulator::start(&small_org());
    let receiver = Receiver::default();
    let hook = receiver.start("127.0.0.1:0");
    let (a, b) = (node(&url), node(&url));
    let tenants = ["acme", "globex", "initech"];
    for name in tenants {
        tenant(
            &[&a, &b],
            name,
            &emulator,
            "* * * * * *",
            &webhook_sink(name, hook),
        );
    }
    let first = start_daemon(&a).await;
    let second = start_daemon(&b).await;
    let logs = || {
        format!(
            "node a:\n{}\nnode b:\n{}",
            first.log_text(),
            second.log_text()
        )
    };

    let before = add_user(&emulator, "before");
    for name in tenants {
        wait_for_user_event(&url, name, &before, logs);
    }

    cluster.restart();
    let restarted = add_user(&emulator, "restarted");
    for name in tenants {
        wait_for_user_event(&url, name, &restarted, logs);
    }
    // A crash this time: no shutdown checkpoint, connections cut mid-statement.
    cluster.kill();
    cluster.start_again();
    let crashed = add_user(&emulator, "crashed");
    emulator.directory().delete_user("cy@example.com").unwrap();
    for name in tenants {
        wait_for_user_event(&url, name, &crashed, logs);
    }

    for name in tenants {
        stream(&a, name).assert_is(&emulator, true);
        assert_all_delivered(&a, &url, &receiver, name);
    }
    let mut nodes = [first, second];
    for daemon in &mut nodes {
        assert!(
            daemon.child.try_wait().unwrap().is_none(),
            "{}",
            daemon.log_text()
        );
        daemon.signal("TERM");
        assert_eq!(daemon.wait_exit(30).await, 0, "{}", daemon.log_text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_while_nodes_come_and_go_gets_every_event_in_order_once_back() {
    let db = PgDatabase::create();
    let url = db.url().to_owned();
    let emulator = GoogleEmulator::start(&small_org());
    let receiver = Receiver::default();
    let hook = receiver.start("127.0.0.1:0");
    // Down: every request answered 503.
    receiver
        .status
        .store(503, std::sync::atomic::Ordering::SeqCst);
    let (a, b) = (node(&url), node(&url));
    tenant(
        &[&a, &b],
        "acme",
        &emulator,
        "* * * * * *",
        &webhook_sink("acme", hook),
    );

    let mut first = start_daemon(&a).await;
    let one = add_user(&emulator, "one");
    wait_for_user_event(&url, "acme", &one, || first.log_text());
    first.signal("KILL");
    first.wait_exit(30).await;

    let mut second = start_daemon(&b).await;
    let two = add_user(&emulator, "two");
    wait_for_user_event(&url, "acme", &two, || second.log_text());
    second.signal("TERM");
    assert_eq!(second.wait_exit(30).await, 0, "{}", second.log_text());

    let first = start_daemon(&a).await;
    let second = start_daemon(&b).await;
    let three = add_user(&emulator, "three");
    wait_for_user_event(&url, "acme", &three, || first.log_text());
    assert!(
        receiver.seqs().is_empty(),
        "nothing acknowledged while down"
    );

    receiver
        .status
        .store(0, std::sync::atomic::Ordering::SeqCst);
    assert_all_delivered(&a, &url, &receiver, "acme");
    stream(&a, "acme").assert_is(&emulator, true);
    drop((first, second));
}
