#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::Value;

use super::sql::{params, TransactionBehavior};
use super::*;
use crate::diff::{diff, diff_indexed, needed_previous};
use crate::event::SourceKind;
use crate::model::{Email, Group, Id, RawAttributes, Snapshot, StoredIndex, User, UserState};

fn user(id: &str, email: &str, active: bool, title: &str) -> User {
    User {
        id: Id::from(id),
        email: email.to_owned(),
        username: email.to_owned(),
        first_name: Some("First".into()),
        last_name: Some(id.to_owned()),
        display_name: None,
        emails: vec![Email {
            value: email.to_owned(),
            primary: true,
        }],
        state: if active {
            UserState::Active
        } else {
            UserState::Inactive
        },
        roles: Vec::new(),
        custom_attributes: BTreeMap::from([("title".to_owned(), Value::from(title))]).into(),
        raw_attributes: RawAttributes::from_value(&serde_json::json!({"id": id, "title": title})),
    }
}

fn group(id: &str, name: &str) -> Group {
    Group {
        id: Id::from(id),
        email: Some(format!("{id}@example.com")),
        name: name.to_owned(),
        description: None,
        raw_attributes: RawAttributes::empty(),
    }
}

fn snapshot_strategy() -> impl Strategy<Value = Snapshot> {
    let users = proptest::collection::btree_map(0u8..12, (0u8..3, any::<bool>(), 0u8..3), 0..12);
    let groups = proptest::collection::btree_map(0u8..6, 0u8..3, 0..6);
    let members = proptest::collection::btree_set((0u8..6, 0u8..12), 0..40);
    (users, groups, members).prop_map(|(users, groups, members)| {
        let mut snapshot = Snapshot::default();
        for (n, (email, active, title)) in users {
            let u = user(
                &format!("u{n}"),
                &format!("user{n}.{email}@example.com"),
                active,
                &format!("t{title}"),
            );
            snapshot.users.insert(u.id.clone(), u);
        }
        for (n, name) in groups {
            let g = group(&format!("g{n}"), &format!("Group {name}"));
            snapshot.groups.insert(g.id.clone(), g);
        }
        for (g, u) in members {
            snapshot
                .members
                .entry(Id::from(format!("g{g}")))
                .or_default()
                .insert(Id::from(format!("u{u}")));
        }
        snapshot.prune_dangling_memberships();
        snapshot
    })
}

/// Folds a tenant's whole event stream into a directory.
type Folded = (
    BTreeMap<String, Value>,
    BTreeMap<String, Value>,
    BTreeSet<(String, String)>,
);

fn fold(events: &[Value]) -> Folded {
    let (mut users, mut groups, mut members) = (BTreeMap::new(), BTreeMap::new(), BTreeSet::new());
    for event in events {
        let data = &event["data"];
        match event["type"].as_str().unwrap() {
            "user.created" | "user.updated" => {
                users.insert(data["id"].as_str().unwrap().to_owned(), data.clone());
            }
            "user.deleted" => {
                assert!(
                    users.remove(data["id"].as_str().unwrap()).is_some(),
                    "deleting an unknown user"
                );
            }
            "group.created" | "group.updated" => {
                groups.insert(data["id"].as_str().unwrap().to_owned(), data.clone());
            }
            "group.deleted" => {
                let id = data["id"].as_str().unwrap();
                assert!(
                    members.iter().all(|(g, _)| g != id),
                    "group deleted before its memberships were removed"
                );
                assert!(groups.remove(id).is_some());
            }
            "group.user_added" => {
                let (g, u) = (
                    data["group"]["id"].as_str().unwrap(),
                    data["user"]["id"].as_str().unwrap(),
                );
                assert!(
                    groups.contains_key(g) && users.contains_key(u),
                    "membership of unknown objects"
                );
                assert!(members.insert((g.to_owned(), u.to_owned())));
            }
            "group.user_removed" => {
                let (g, u) = (
                    data["group"]["id"].as_str().unwrap(),
                    data["user"]["id"].as_str().unwrap(),
                );
                assert!(members.remove(&(g.to_owned(), u.to_owned())));
            }
            other => panic!("unknown type {other}"),
        }
    }
    (users, groups, members)
}

fn commit_snapshot(conn: &mut Connection, lease: &Lease, after: &Snapshot) -> CommitSummary {
    commit_snapshot_with_digest(conn, lease, after, None)
}

fn commit_snapshot_with_digest(
    conn: &mut Connection,
    lease: &Lease,
    after: &Snapshot,
    digest: Option<&FetchDigest>,
) -> CommitSummary {
    // As a sync does: the stored index, and only the stored objects the changes need.
    let tenant = lease.tenant.as_str();
    let index = load_index(conn, tenant).unwrap();
    let before = load_objects(conn, tenant, &needed_previous(&index, after)).unwrap();
    let changes = diff_indexed(&index, &before, after);
    // The direct graph mirrors the memberships here, so every commit also rewrites it.
    let graph: crate::model::DirectGraph = after
        .members
        .iter()
        .flat_map(|(g, users)| {
            users
                .iter()
                .map(move |u| (g.clone(), crate::model::MemberKind::User, u.clone()))
        })
        .collect();
    let run = crate::run::RunSummary::begun(tenant, crate::run::Millis::now());
    commit(
        conn,
        NewEvents {
            tenant,
            source: SourceKind::Google,
            lease,
            before: &before,
            after,
            changes: &changes,
            run,
            exclusions: Vec::new(),
            direct: Some(&graph),
            digest,
        },
    )
    .unwrap()
}

/// Where a conformance test's store lives: dropped, it removes the database.
#[allow(dead_code)] // Held for their Drop.
enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres(PgTestDatabase),
}

/// A fresh database on the PostgreSQL server the test run started (scripts/test.sh sets
/// `DIRSYNC_TEST_DATABASE_URL`), dropped afterwards.
pub(crate) struct PgTestDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PgTestDatabase {
    pub(crate) fn create() -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let admin_url = std::env::var("DIRSYNC_TEST_DATABASE_URL").expect(
            "DIRSYNC_TEST_DATABASE_URL is not set: run the tests with scripts/test.sh, which starts a PostgreSQL server",
        );
        let name = format!(
            "store_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            ulid::Ulid::new().to_string().to_lowercase()
        );
        let admin = Self::admin(&admin_url);
        admin
            .execute_batch(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&format!("/{name}"));
        Self {
            admin_url,
            name,
            url: url.to_string(),
        }
    }

    fn admin(url: &str) -> Connection {
        Connection::connect_postgres(&PostgresConfig::parse(url, None).unwrap()).unwrap()
    }

    pub(crate) fn store(&self) -> Store {
        Store::open_at(Location::Postgres {
            config: PostgresConfig::parse(&self.url, None).unwrap(),
            pool_size: 8,
        })
        .unwrap()
    }
}

impl Drop for PgTestDatabase {
    fn drop(&mut self) {
        let admin = Self::admin(&self.admin_url);
        let _ = admin.execute_batch(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

fn open_store(backend: Backend) -> (TestDb, Store) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            (TestDb::Sqlite(dir), store)
        }
        Backend::Postgres => {
            let db = PgTestDatabase::create();
            let store = db.store();
            (TestDb::Postgres(db), store)
        }
    }
}

/// Each test of the store's behaviour, once per backend: `name::sqlite`, `name::postgres`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(super::Backend::Sqlite)
            }
            #[test]
            fn postgres() {
                super::$name(super::Backend::Postgres)
            }
        }
    )*};
}

conformance!(
    folding_every_event_gives_the_stored_directory,
    the_indexed_diff_gives_the_changes_and_events_of_the_full_one,
    a_no_change_commit_writes_no_events_and_no_rows,
    the_direct_graph_is_written_with_the_commit_and_only_where_it_changed,
    indexes_set_aside_for_a_bulk_insert_come_back_with_the_commit_or_the_rollback,
    a_lease_excludes_other_holders_until_released_and_a_lost_lease_cannot_commit,
    a_stale_holder_cannot_commit_after_a_takeover,
    the_run_history_keeps_the_configured_number_of_runs_per_tenant,
    a_committed_runs_stored_duration_includes_the_commit,
    a_user_is_found_by_any_address_through_the_index_kept_with_each_commit,
    the_push_request_log_pages_back_from_the_newest_one_tenant_at_a_time,
    seq_stays_gap_free_when_commits_of_one_tenant_race,
    a_large_commit_stores_every_character_as_given,
    batch_inserts_interleave_and_a_broken_constraint_fails_the_transaction,
    a_fetch_digest_describes_the_store_until_its_last_seq_moves,
);

fn a_fetch_digest_describes_the_store_until_its_last_seq_moves(backend: Backend) {
    let (_db, _store, mut conn, lease) = open_temp(backend);
    let digest = |text: &str| FetchDigest {
        digest: text.to_owned(),
        counts: DigestCounts {
            users: 2,
            stored_users: 2,
            ..DigestCounts::default()
        },
    };
    let runs = |conn: &Connection| -> Vec<String> {
        let mut statement = conn
            .prepare("SELECT outcome FROM runs WHERE tenant = 'acme' ORDER BY id")
            .unwrap();
        let rows = statement.query_map((), |row| row.get(0)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    };
    let mut a = Snapshot::default();
    for n in 0..2 {
        let u = user(&format!("u{n}"), &format!("u{n}@example.com"), true, "t");
        a.users.insert(u.id.clone(), u);
    }
    assert_eq!(current_digest(&conn, "acme").unwrap(), None);
    commit_snapshot_with_digest(&mut conn, &lease, &a, Some(&digest("d1")));
    assert_eq!(current_digest(&conn, "acme").unwrap(), Some(digest("d1")));
    assert_eq!(current_digest(&conn, "other").unwrap(), None);

    // A run of the same digest records itself, as a no-change run, and writes nothing else.
    let probe = rows_written_probe(&conn);
    let run = crate::run::RunSummary::begun("acme", crate::run::Millis::now());
    let unchanged = commit_unchanged(&mut conn, &lease, run.clone(), "d1")
        .unwrap()
        .unwrap();
    assert_eq!((unchanged.events, unchanged.first_seq), (0, None));
    assert_eq!(unchanged.last_seq, 2);
    assert_eq!(runs(&conn), ["committed", "no_changes"]);
    if backend == Backend::Postgres {
        assert_eq!(rows_written_probe(&conn), probe, "no data row was written");
    }
    // Another digest records nothing: the caller plans in full.
    assert_eq!(
        commit_unchanged(&mut conn, &lease, run.clone(), "d2").unwrap(),
        None
    );
    assert_eq!(runs(&conn).len(), 2);

    // A no-change commit of the same directory keeps a digest it is given.
    commit_snapshot_with_digest(&mut conn, &lease, &a, Some(&digest("d3")));
    assert_eq!(current_digest(&conn, "acme").unwrap(), Some(digest("d3")));
    // A commit without one forgets it.
    commit_snapshot(&mut conn, &lease, &a);
    assert_eq!(current_digest(&conn, "acme").unwrap(), None);

    // Events from anywhere else (a push write) move last_seq past the digest.
    commit_snapshot_with_digest(&mut conn, &lease, &a, Some(&digest("d4")));
    conn.execute(
        "UPDATE tenants SET last_seq = last_seq + 1 WHERE tenant = 'acme'",
        (),
    )
    .unwrap();
    assert_eq!(current_digest(&conn, "acme").unwrap(), None);
    assert_eq!(
        commit_unchanged(&mut conn, &lease, run.clone(), "d4").unwrap(),
        None
    );

    // Not without the lease.
    commit_snapshot_with_digest(&mut conn, &lease, &a, Some(&digest("d5")));
    release_lease(&conn, &lease).unwrap();
    assert!(commit_unchanged(&mut conn, &lease, run, "d5").is_err());
}

/// What a commit wrote, to compare before and after: SQLite counts changed rows; PostgreSQL
/// lists each data row's creating transaction (`xmin`), which any insert, update or delete
/// changes.
fn rows_written_probe(conn: &Connection) -> String {
    match conn.backend() {
        Backend::Sqlite => conn
            .query_row("SELECT total_changes()", (), |r| r.get::<_, i64>(0))
            .unwrap()
            .to_string(),
        Backend::Postgres => conn
            .query_row(
                "SELECT concat_ws('|',
                    (SELECT string_agg(xmin::text, ',' ORDER BY id) FROM users),
                    (SELECT string_agg(xmin::text, ',' ORDER BY id) FROM groups),
                    (SELECT string_agg(xmin::text, ',' ORDER BY group_id, user_id) FROM memberships),
                    (SELECT string_agg(xmin::text, ',' ORDER BY group_id, member_id) FROM group_edges),
                    (SELECT string_agg(xmin::text, ',' ORDER BY seq) FROM events),
                    (SELECT string_agg(xmin::text, ',' ORDER BY tenant) FROM tenants),
                    (SELECT string_agg(xmin::text, ',' ORDER BY address) FROM user_addresses))",
                (),
                |r| r.get(0),
            )
            .unwrap(),
    }
}

fn open_temp(backend: Backend) -> (TestDb, Store, Connection, Lease) {
    let (db, store) = open_store(backend);
    let mut conn = store.connect().unwrap();
    let lease = acquire_lease(
        &mut conn,
        "acme",
        "test",
        std::time::Duration::from_secs(600),
    )
    .unwrap();
    (db, store, conn, lease)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn a_diff_of_a_snapshot_with_itself_is_empty(snapshot in snapshot_strategy()) {
        prop_assert!(diff(&snapshot, &snapshot).is_empty());
    }

    #[test]
    fn applying_a_diff_gives_the_target(a in snapshot_strategy(), b in snapshot_strategy()) {
        let mut applied = a.clone();
        crate::diff::apply(&mut applied, &diff(&a, &b), &b);
        prop_assert_eq!(applied, b);
    }
}

fn proptest_runner(backend: Backend) -> proptest::test_runner::TestRunner {
    // A PostgreSQL commit costs round trips: fewer cases, the same properties.
    let cases = match backend {
        Backend::Sqlite => 48,
        Backend::Postgres => 16,
    };
    proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        ..ProptestConfig::default()
    })
}

/// A tenant of its own per proptest case, all in one database.
fn case_tenant(store: &Store) -> (Connection, Lease) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let tenant = format!(
        "case{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut conn = store.connect().unwrap();
    let lease = acquire_lease(
        &mut conn,
        &tenant,
        "test",
        std::time::Duration::from_secs(600),
    )
    .unwrap();
    (conn, lease)
}

fn folding_every_event_gives_the_stored_directory(backend: Backend) {
    let (_db, store) = open_store(backend);
    let strategy = proptest::collection::vec(snapshot_strategy(), 1..6);
    proptest_runner(backend)
        .run(&strategy, |snapshots| {
            let (mut conn, lease) = case_tenant(&store);
            let tenant = lease.tenant.clone();
            let mut expected_seq = 0;
            for snapshot in &snapshots {
                let summary = commit_snapshot(&mut conn, &lease, snapshot);
                expected_seq += summary.events;
                prop_assert_eq!(summary.last_seq, expected_seq);
                prop_assert_eq!(&load_snapshot(&conn, &tenant).unwrap(), snapshot);
            }
            let events: Vec<Value> = events_after(&conn, &tenant, 0, None)
                .unwrap()
                .iter()
                .map(|(_, b)| serde_json::from_str(b).unwrap())
                .collect();
            for (index, event) in events.iter().enumerate() {
                prop_assert_eq!(
                    event["seq"].as_u64().unwrap(),
                    index as u64 + 1,
                    "seq has gaps"
                );
            }
            let (users, groups, members) = fold(&events);
            let last = snapshots.last().unwrap();
            let want_users: BTreeMap<String, Value> = last
                .users
                .iter()
                .map(|(id, u)| (id.to_string(), serde_json::to_value(u).unwrap()))
                .collect();
            let want_groups: BTreeMap<String, Value> = last
                .groups
                .iter()
                .map(|(id, g)| (id.to_string(), serde_json::to_value(g).unwrap()))
                .collect();
            let want_members: BTreeSet<(String, String)> = last
                .members
                .iter()
                .flat_map(|(g, us)| us.iter().map(move |u| (g.to_string(), u.to_string())))
                .collect();
            prop_assert_eq!(users, want_users);
            prop_assert_eq!(groups, want_groups);
            prop_assert_eq!(members, want_members);
            Ok(())
        })
        .unwrap();
}

fn the_indexed_diff_gives_the_changes_and_events_of_the_full_one(backend: Backend) {
    let (_db, store) = open_store(backend);
    proptest_runner(backend)
        .run(&(snapshot_strategy(), snapshot_strategy()), |(a, b)| {
            let (mut conn, lease) = case_tenant(&store);
            let tenant = lease.tenant.clone();
            commit_snapshot(&mut conn, &lease, &a);
            let index = load_index(&conn, &tenant).unwrap();
            prop_assert_eq!(&index, &StoredIndex::of(&a));
            let needed = needed_previous(&index, &b);
            let previous = load_objects(&conn, &tenant, &needed).unwrap();
            prop_assert_eq!(previous.users.len(), needed.users.len());
            prop_assert_eq!(previous.groups.len(), needed.groups.len());
            let changes = diff(&a, &b);
            prop_assert_eq!(&diff_indexed(&index, &previous, &b), &changes);
            let render = |before: &Snapshot, change: &crate::event::Change| {
                crate::event::EventRenderer::new(before, &b)
                    .render(
                        change,
                        "evt_1",
                        &tenant,
                        1,
                        1,
                        SourceKind::Google,
                        "2026-01-01T00:00:00.000Z",
                    )
                    .unwrap()
            };
            for change in &changes {
                prop_assert_eq!(render(&previous, change), render(&a, change));
            }
            // Only the objects the events need are read: changed, deleted, or in a removed
            // membership.
            let in_removed = |id: &Id| {
                changes.iter().any(
                    |c| matches!(c, crate::event::Change::UserRemoved { user, .. } if user == id),
                )
            };
            for (id, old) in &previous.users {
                prop_assert!(
                    b.users.get(id) != Some(old) || in_removed(id),
                    "unchanged user {} was read",
                    id
                );
            }
            Ok(())
        })
        .unwrap();
}

fn a_no_change_commit_writes_no_events_and_no_rows(backend: Backend) {
    let (_db, _store, mut conn, lease) = open_temp(backend);
    let mut snapshot = Snapshot::default();
    let u = user("u1", "a@example.com", true, "x");
    snapshot.users.insert(u.id.clone(), u);
    commit_snapshot(&mut conn, &lease, &snapshot);
    let written_before = rows_written_probe(&conn);
    let summary = commit_snapshot(&mut conn, &lease, &snapshot);
    let written_after = rows_written_probe(&conn);
    assert_eq!(summary.events, 0);
    match backend {
        // Only the run record itself is written.
        Backend::Sqlite => assert_eq!(
            written_after.parse::<i64>().unwrap() - written_before.parse::<i64>().unwrap(),
            1
        ),
        // No data row was inserted, updated or deleted (runs are not in the probe).
        Backend::Postgres => assert_eq!(written_after, written_before),
    }
}

fn the_direct_graph_is_written_with_the_commit_and_only_where_it_changed(backend: Backend) {
    let (_db, _store, mut conn, lease) = open_temp(backend);
    let mut snapshot = Snapshot::default();
    for (id, email) in [("u1", "a@example.com"), ("u2", "b@example.com")] {
        let u = user(id, email, true, "x");
        snapshot.users.insert(u.id.clone(), u);
    }
    let g = group("g1", "eng");
    snapshot.groups.insert(g.id.clone(), g);
    snapshot
        .members
        .insert(Id::from("g1"), [Id::from("u1"), Id::from("u2")].into());
    commit_snapshot(&mut conn, &lease, &snapshot);
    let edges = |conn: &Connection| -> Vec<String> {
        let mut statement = conn
            .prepare("SELECT group_id || '>' || member_id FROM group_edges WHERE tenant = 'acme' ORDER BY 1")
            .unwrap();
        statement
            .query_map((), |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(edges(&conn), ["g1>u1", "g1>u2"]);
    snapshot
        .members
        .insert(Id::from("g1"), [Id::from("u2")].into());
    let before = rows_written_probe(&conn);
    let summary = commit_snapshot(&mut conn, &lease, &snapshot);
    let after = rows_written_probe(&conn);
    assert_eq!(summary.events, 1);
    assert_eq!(edges(&conn), ["g1>u2"]);
    if backend == Backend::Sqlite {
        // The run, the event, the membership row, the tenant's seq and one edge.
        assert_eq!(
            after.parse::<i64>().unwrap() - before.parse::<i64>().unwrap(),
            5
        );
    }
}

#[test]
fn processes_creating_the_database_together_all_succeed() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let openers: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let store = Store::open(&path)?;
                    let conn = store.connect()?;
                    last_seq(&conn, "acme")
                })
            })
            .collect();
        for opener in openers {
            assert_eq!(opener.join().unwrap().unwrap(), 0);
        }
    }
}

#[test]
fn a_database_newer_than_the_binary_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .connect()
        .unwrap()
        .execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
        .unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
}

#[test]
fn migration_3_keeps_every_user_and_event_of_a_version_2_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dirsync.db");
    {
        let mut conn = Connection::from_sqlite(rusqlite::Connection::open(&path).unwrap());
        migrations::migrate_to(&mut conn, &path, 2).unwrap();
        conn.execute_batch(
            r#"INSERT INTO users (tenant, id, email, data) VALUES
                   ('acme', 'u2', 'b@acme.test', '{"id":"u2"}'),
                   ('acme', 'u1', 'a@acme.test', '{"id":"u1"}'),
                   ('globex', 'u1', 'a@globex.test', '{"id":"u1"}');
               INSERT INTO events (tenant, seq, id, type, subject_id, occurred_at, sync_id, body)
               VALUES ('acme', 1, 'evt_1', 'user.created', 'u1', 10, 1, '{"seq":1}'),
                      ('acme', 2, 'evt_2', 'user.created', 'u2', 10, 1, '{"seq":2}'),
                      ('globex', 1, 'evt_3', 'user.created', 'u1', 11, 2, '{"seq":1}');"#,
        )
        .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let conn = store.connect().unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", (), |row| row.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let users: Vec<(String, String, String)> = conn
        .prepare("SELECT tenant, id, email FROM users ORDER BY tenant, id")
        .unwrap()
        .query_map((), |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        users,
        [
            ("acme".into(), "u1".into(), "a@acme.test".into()),
            ("acme".into(), "u2".into(), "b@acme.test".into()),
            ("globex".into(), "u1".into(), "a@globex.test".into()),
        ]
    );
    assert_eq!(
        outbox::events_after(&conn, "acme", 0, None).unwrap(),
        [
            (1, r#"{"seq":1}"#.to_owned()),
            (2, r#"{"seq":2}"#.to_owned())
        ]
    );
    assert_eq!(
        outbox::events_after(&conn, "globex", 0, None)
            .unwrap()
            .len(),
        1
    );
    // The upserts and the per-tenant uniqueness still hold on the rebuilt tables.
    conn.execute(
        "INSERT INTO users (tenant, id, email, data) VALUES ('acme', 'u1', 'new@acme.test', '{}')
         ON CONFLICT (tenant, id) DO UPDATE SET email = excluded.email",
        (),
    )
    .unwrap();
    let email: String = conn
        .query_row(
            "SELECT email FROM users WHERE tenant = 'acme' AND id = 'u1'",
            (),
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(email, "new@acme.test");
    assert!(conn
        .execute(
            "INSERT INTO events (tenant, seq, id, type, subject_id, occurred_at, sync_id, body)
             VALUES ('acme', 2, 'evt_9', 'user.created', 'u9', 12, 3, '{}')",
            (),
        )
        .is_err());
    // Event ids stay unique across tenants.
    assert!(conn
        .execute(
            "INSERT INTO events (tenant, seq, id, type, subject_id, occurred_at, sync_id, body)
             VALUES ('globex', 2, 'evt_1', 'user.created', 'u9', 12, 3, '{}')",
            (),
        )
        .is_err());
}

fn indexes_set_aside_for_a_bulk_insert_come_back_with_the_commit_or_the_rollback(backend: Backend) {
    let (_db, _store, mut conn, _lease) = open_temp(backend);
    let indexes = |conn: &Connection| -> Vec<String> {
        conn.prepare(match conn.backend() {
            Backend::Sqlite => {
                "SELECT name FROM sqlite_schema
                 WHERE type = 'index' AND tbl_name = 'memberships' AND sql IS NOT NULL"
            }
            Backend::Postgres => {
                "SELECT indexname::text FROM pg_indexes
                 WHERE tablename = 'memberships' AND indexname <> 'memberships_pkey'"
            }
        })
        .unwrap()
        .query_map((), |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    assert_eq!(indexes(&conn), ["memberships_by_user"]);
    {
        let tx = conn.transaction().unwrap();
        // Fewer rows to insert than the threshold: nothing is set aside.
        assert!(outbox::set_aside_indexes(&tx, &[("memberships", 2)], 3)
            .unwrap()
            .is_empty());
        let set_aside = outbox::set_aside_indexes(&tx, &[("memberships", 3)], 3).unwrap();
        assert_eq!(set_aside.len(), 1);
        assert!(indexes(&tx).is_empty());
        // Dropped without commit: rolled back.
    }
    assert_eq!(indexes(&conn), ["memberships_by_user"]);
    {
        let tx = conn.transaction().unwrap();
        let set_aside = outbox::set_aside_indexes(&tx, &[("memberships", 3)], 3).unwrap();
        tx.execute_batch(
            "INSERT INTO memberships (tenant, group_id, user_id)
             VALUES ('acme', 'g1', 'u1'), ('acme', 'g2', 'u1'), ('acme', 'g2', 'u2')",
        )
        .unwrap();
        for definition in &set_aside {
            tx.execute_batch(definition).unwrap();
        }
        tx.commit().unwrap();
    }
    assert_eq!(indexes(&conn), ["memberships_by_user"]);
    if backend == Backend::Sqlite {
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT group_id FROM memberships WHERE tenant = 'acme' AND user_id = 'u1'",
                (),
                |row| row.get(3),
            )
            .unwrap();
        assert!(plan.contains("memberships_by_user"), "{plan}");
    } else {
        // A hash index on PostgreSQL (migration 3), put back as it was.
        let definition: String = conn
            .query_row(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'memberships_by_user'",
                (),
                |row| row.get(0),
            )
            .unwrap();
        assert!(definition.contains("USING hash (user_id)"), "{definition}");
    }
    // A table holding more rows than the commit inserts keeps its indexes.
    let tx = conn.transaction().unwrap();
    assert!(outbox::set_aside_indexes(&tx, &[("memberships", 3)], 1)
        .unwrap()
        .is_empty());
}

fn a_lease_excludes_other_holders_until_released_and_a_lost_lease_cannot_commit(backend: Backend) {
    let (_db, store, mut conn, lease) = open_temp(backend);
    let mut other = store.connect().unwrap();
    let err = acquire_lease(
        &mut other,
        "acme",
        "other",
        std::time::Duration::from_secs(60),
    )
    .unwrap_err();
    assert!(
        matches!(err, StoreError::Lease(LeaseError::Held { .. })),
        "{err}"
    );
    release_lease(&conn, &lease).unwrap();
    let _taken = acquire_lease(
        &mut other,
        "acme",
        "other",
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    let before = load_snapshot(&conn, "acme").unwrap();
    let mut after = Snapshot::default();
    let u = user("u1", "a@example.com", true, "x");
    after.users.insert(u.id.clone(), u);
    let changes = diff(&before, &after);
    let run = crate::run::RunSummary::begun("acme", crate::run::Millis(0));
    let err = commit(
        &mut conn,
        NewEvents {
            tenant: "acme",
            source: SourceKind::Google,
            lease: &lease,
            before: &before,
            after: &after,
            changes: &changes,
            run,
            exclusions: Vec::new(),
            direct: None,
            digest: None,
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, StoreError::Lease(LeaseError::Lost { .. })),
        "{err}"
    );
    assert_eq!(last_seq(&conn, "acme").unwrap(), 0);
    assert!(load_snapshot(&conn, "acme").unwrap().users.is_empty());
}

#[test]
fn the_database_and_its_side_files_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // A write with the connection still open: the -wal and -shm files exist.
    let conn = store.connect().unwrap();
    conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    for name in ["dirsync.db", "dirsync.db-wal", "dirsync.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{name}: {mode:o}");
    }
}

fn the_run_history_keeps_the_configured_number_of_runs_per_tenant(backend: Backend) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap()
        .block_on(run_history_is_kept(backend));
}

async fn run_history_is_kept(backend: Backend) {
    let (_db, store) = open_store(backend);
    let store = store.keep_run_history(3);
    for tenant in ["acme", "globex"] {
        for n in 0..5 {
            let mut run = crate::run::RunSummary::begun(tenant, crate::run::Millis(n));
            run.error = Some(format!("run {n}"));
            store.record_run(run).await.unwrap();
        }
    }
    let runs_of = |tenant: &'static str| store.run(move |conn| last_runs(conn, tenant, 100));
    for tenant in ["acme", "globex"] {
        let runs = runs_of(tenant).await.unwrap();
        let errors: Vec<_> = runs.iter().map(|r| r.error.clone().unwrap()).collect();
        assert_eq!(errors, ["run 4", "run 3", "run 2"], "{tenant}");
    }
    // Ids are never reused after pruning.
    let mut run = crate::run::RunSummary::begun("acme", crate::run::Millis(9));
    run.error = Some("run 9".into());
    let id = store.record_run(run).await.unwrap();
    assert_eq!(id, 11);
}

/// Issue 13.11: the stored duration of a committed run includes writing its events (the run
/// record is written last, with the time the commit finished).
fn a_committed_runs_stored_duration_includes_the_commit(backend: Backend) {
    let (_db, _store, mut conn, lease) = open_temp(backend);
    let mut snapshot = Snapshot::default();
    for n in 0..20_000 {
        let u = user(&format!("u{n:05}"), &format!("u{n}@example.com"), true, "x");
        snapshot.users.insert(u.id.clone(), u);
    }
    let started = std::time::Instant::now();
    let summary = commit_snapshot(&mut conn, &lease, &snapshot);
    let elapsed_ms = started.elapsed().as_millis() as u64;
    assert_eq!(summary.events, 20_000);
    let run = last_runs(&conn, "acme", 1).unwrap().remove(0);
    // Planning in `commit_snapshot` (before the run begins) is a small part of the time; the
    // old record, finished before the events were written, stored about 0 ms.
    assert!(
        run.duration_ms * 3 >= elapsed_ms,
        "stored {} ms of a {elapsed_ms} ms commit",
        run.duration_ms
    );
}

fn aliased(id: &str, email: &str, aliases: &[&str]) -> User {
    let mut user = user(id, email, true, "t");
    user.emails.push(Email {
        value: format!("{id}.Second@Example.com"),
        primary: false,
    });
    user.raw_attributes =
        RawAttributes::from_value(&serde_json::json!({"id": id, "aliases": aliases}));
    user
}

fn a_user_is_found_by_any_address_through_the_index_kept_with_each_commit(backend: Backend) {
    let (_db, _store, mut conn, lease) = open_temp(backend);
    let mut snapshot = Snapshot::default();
    let alice = aliased("u1", "alice@example.com", &["Ali@Example.com"]);
    snapshot.users.insert(alice.id.clone(), alice);
    commit_snapshot(&mut conn, &lease, &snapshot);
    let found = |key: &str| {
        lookup::find_user(&conn, "acme", key)
            .unwrap()
            .map(|u| u.id.to_string())
    };
    assert_eq!(found("u1").as_deref(), Some("u1"));
    assert_eq!(found("ALICE@example.com").as_deref(), Some("u1"));
    assert_eq!(found("ali@example.com").as_deref(), Some("u1"));
    assert_eq!(found("u1.second@example.com").as_deref(), Some("u1"));
    assert_eq!(found("nobody@example.com"), None);

    // An alias removed upstream no longer finds the user; a deleted user is found by none.
    let alice = aliased("u1", "alice@example.com", &["new@example.com"]);
    snapshot.users.insert(alice.id.clone(), alice);
    commit_snapshot(&mut conn, &lease, &snapshot);
    let found = |key: &str| lookup::find_user(&conn, "acme", key).unwrap().is_some();
    assert!(!found("ali@example.com") && found("new@example.com"));
    snapshot.users.clear();
    commit_snapshot(&mut conn, &lease, &snapshot);
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM user_addresses", (), |row| row.get(0))
        .unwrap();
    assert_eq!(rows, 0);
}

#[test]
fn migration_5_indexes_the_addresses_of_users_already_stored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dirsync.db");
    {
        let mut conn = Connection::from_sqlite(rusqlite::Connection::open(&path).unwrap());
        migrations::migrate_to(&mut conn, &path, 4).unwrap();
        let alice = aliased("u1", "alice@example.com", &["Ali@Example.com"]);
        conn.execute(
            "INSERT INTO users (tenant, id, email, data) VALUES ('acme', 'u1', 'alice@example.com', ?1)",
            [serde_json::to_string(&alice).unwrap()],
        )
        .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let conn = store.connect().unwrap();
    let mut addresses: Vec<String> = conn
        .prepare("SELECT address FROM user_addresses ORDER BY address")
        .unwrap()
        .query_map((), |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    addresses.sort();
    assert_eq!(addresses, ["ali@example.com", "u1.second@example.com"]);
    let plan: String = conn
        .query_row(
            "EXPLAIN QUERY PLAN SELECT body FROM events INDEXED BY events_deletions
             WHERE tenant = 'acme' AND type IN ('user.deleted', 'group.deleted') ORDER BY seq DESC",
            (),
            |row| row.get(3),
        )
        .unwrap();
    assert!(plan.contains("events_deletions"), "{plan}");
}

fn the_push_request_log_pages_back_from_the_newest_one_tenant_at_a_time(backend: Backend) {
    let (_db, _store, conn, _lease) = open_temp(backend);
    for n in 0..7 {
        for tenant in ["acme", "other"] {
            push::insert_request(
                &conn,
                &push::NewPushRequest {
                    tenant: tenant.into(),
                    method: "GET".into(),
                    path: format!("/Users/{n}"),
                    status: 200,
                    ..push::NewPushRequest::default()
                },
            )
            .unwrap();
        }
    }
    let paths = |page: &[push::PushRequest]| -> Vec<String> {
        page.iter().map(|r| r.path.clone()).collect()
    };
    let first = push::requests_before(&conn, "acme", None, 3).unwrap();
    assert_eq!(paths(&first), ["/Users/6", "/Users/5", "/Users/4"]);
    let second = push::requests_before(&conn, "acme", Some(first[2].id), 3).unwrap();
    assert_eq!(paths(&second), ["/Users/3", "/Users/2", "/Users/1"]);
    let last = push::requests_before(&conn, "acme", Some(second[2].id), 3).unwrap();
    assert_eq!(paths(&last), ["/Users/0"]);
    assert!(push::requests_before(&conn, "acme", Some(last[0].id), 3)
        .unwrap()
        .is_empty());
}

/// A holder whose lease lapsed and was taken by another holder (a node paused past its lease,
/// then resumed) can neither renew nor commit: the new holder's fencing token is newer.
fn a_stale_holder_cannot_commit_after_a_takeover(backend: Backend) {
    let (_db, store) = open_store(backend);
    let mut conn = store.connect().unwrap();
    // Expired as soon as taken.
    let stale = acquire_lease(&mut conn, "acme", "paused", std::time::Duration::ZERO).unwrap();
    let mut other = store.connect().unwrap();
    let fresh = acquire_lease(
        &mut other,
        "acme",
        "resumed-elsewhere",
        std::time::Duration::from_secs(600),
    )
    .unwrap();
    assert!(fresh.token > stale.token, "{fresh:?} after {stale:?}");
    assert!(matches!(
        renew_lease(&conn, &stale).unwrap_err(),
        StoreError::Lease(LeaseError::Lost { .. })
    ));
    // The same holder name taking the lease again gets a new token: the old one stays stale.
    let retaken = acquire_lease(
        &mut other,
        "acme",
        "paused",
        std::time::Duration::from_secs(600),
    );
    assert!(retaken.is_err(), "held by resumed-elsewhere");
    let mut snapshot = Snapshot::default();
    let u = user("u1", "a@example.com", true, "x");
    snapshot.users.insert(u.id.clone(), u);
    let changes = diff(&Snapshot::default(), &snapshot);
    let err = commit(
        &mut conn,
        NewEvents {
            tenant: "acme",
            source: SourceKind::Google,
            lease: &stale,
            before: &Snapshot::default(),
            after: &snapshot,
            changes: &changes,
            run: crate::run::RunSummary::begun("acme", crate::run::Millis(0)),
            exclusions: Vec::new(),
            direct: None,
            digest: None,
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, StoreError::Lease(LeaseError::Lost { .. })),
        "{err}"
    );
    assert_eq!(last_seq(&conn, "acme").unwrap(), 0);
    let summary = commit_snapshot(&mut other, &fresh, &snapshot);
    assert_eq!((summary.first_seq, summary.last_seq), (Some(1), 1));
}

/// Writers of one tenant on several connections (several nodes, for PostgreSQL), each taking
/// the lease in turn: every commit gets the next seq, none is lost or repeated.
fn seq_stays_gap_free_when_commits_of_one_tenant_race(backend: Backend) {
    const WRITERS: usize = 4;
    const COMMITS: usize = 5;
    let (_db, store) = open_store(backend);
    std::thread::scope(|scope| {
        for writer in 0..WRITERS {
            let store = store.clone();
            scope.spawn(move || {
                let mut conn = store.connect().unwrap();
                let holder = format!("writer{writer}");
                for commit_number in 0..COMMITS {
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                    let lease = loop {
                        match acquire_lease(
                            &mut conn,
                            "acme",
                            &holder,
                            std::time::Duration::from_secs(60),
                        ) {
                            Ok(lease) => break lease,
                            Err(StoreError::Lease(LeaseError::Held { .. })) => {
                                assert!(
                                    std::time::Instant::now() < deadline,
                                    "no turn within 60 s"
                                );
                                std::thread::yield_now();
                            }
                            Err(err) => panic!("{err}"),
                        }
                    };
                    let mut snapshot = load_snapshot(&conn, "acme").unwrap();
                    let u = user(
                        &format!("w{writer}c{commit_number}"),
                        &format!("w{writer}c{commit_number}@example.com"),
                        true,
                        "x",
                    );
                    snapshot.users.insert(u.id.clone(), u);
                    commit_snapshot(&mut conn, &lease, &snapshot);
                    release_lease(&conn, &lease).unwrap();
                }
            });
        }
    });
    let conn = store.connect().unwrap();
    let seqs: Vec<u64> = events_after(&conn, "acme", 0, None)
        .unwrap()
        .into_iter()
        .map(|(seq, _)| seq)
        .collect();
    assert_eq!(seqs, (1..=(WRITERS * COMMITS) as u64).collect::<Vec<_>>());
    assert_eq!(
        load_snapshot(&conn, "acme").unwrap().users.len(),
        WRITERS * COMMITS
    );
}

#[test]
fn a_postgres_schema_newer_than_the_binary_is_refused() {
    let db = PgTestDatabase::create();
    drop(db.store());
    let admin = PgTestDatabase::admin(&db.url);
    admin
        .execute_batch(&format!(
            "UPDATE dirsync_schema SET version = {}",
            migrations::POSTGRES_SCHEMA_VERSION + 1
        ))
        .unwrap();
    let err = Store::open_at(Location::Postgres {
        config: PostgresConfig::parse(&db.url, None).unwrap(),
        pool_size: 2,
    })
    .unwrap_err();
    assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
    assert!(
        err.to_string().contains("newer than this dirsync knows"),
        "{err}"
    );
}

/// `sslmode` as libpq means it, against a real server with a self-signed certificate:
/// `require` encrypts without checking the certificate, `verify-full` checks it against
/// `sslrootcert` (and refuses a server it cannot verify), `disable` speaks plain text.
#[test]
fn tls_to_postgres_follows_sslmode() {
    use std::os::unix::fs::MetadataExt;
    let cluster = dirsync_testkit::PgCluster::start();
    let data = cluster.data_dir();
    let owner = std::fs::metadata(&data).unwrap();
    let (cert, key) = (data.join("server.crt"), data.join("server.key"));
    let roots = tempfile::tempdir().unwrap();
    let (root_cert, root_key) = (roots.path().join("root.pem"), roots.path().join("root.key"));
    let openssl = |args: &[&str]| {
        let made = std::process::Command::new("openssl")
            .args(args)
            .current_dir(roots.path())
            .output()
            .unwrap();
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
    };
    let path = |p: &std::path::Path| p.display().to_string();
    // A CA of the test's own, and the server's certificate for 127.0.0.1 signed by it.
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        &path(&root_key),
        "-out",
        &path(&root_cert),
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &path(&key),
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        roots.path().join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        &path(&root_cert),
        "-CAkey",
        &path(&root_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        &path(&cert),
    ]);
    for file in [&cert, &key] {
        std::os::unix::fs::chown(file, Some(owner.uid()), Some(owner.gid())).unwrap();
        std::fs::set_permissions(file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
    }
    dirsync_testkit::postgres::psql(&cluster.url(), "ALTER SYSTEM SET ssl = on");
    cluster.restart();

    let encrypted = |query: &str| -> Result<bool, String> {
        let url = format!("{}?{query}", cluster.url());
        let config = PostgresConfig::parse(&url, None)?;
        let conn = Connection::connect_postgres(&config).map_err(|err| err.to_string())?;
        conn.query_row(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            (),
            |row| row.get::<_, bool>(0),
        )
        .map_err(|err| err.to_string())
    };
    assert_eq!(encrypted("sslmode=require"), Ok(true));
    assert_eq!(encrypted("sslmode=disable"), Ok(false));
    assert_eq!(
        encrypted(&format!(
            "sslmode=verify-full&sslrootcert={}",
            root_cert.display()
        )),
        Ok(true)
    );
    let refused = encrypted("sslmode=verify-full").unwrap_err();
    assert!(refused.contains("certificate"), "{refused}");
}

/// Past a hundred rows PostgreSQL gets them by `COPY` (text format): tabs, newlines,
/// backslashes and what looks like its NULL marker come back as they went in.
fn a_large_commit_stores_every_character_as_given(backend: Backend) {
    let (_db, _store, mut conn, lease) = open_temp(backend);
    let mut snapshot = Snapshot::default();
    let tricky = [
        "tab\there",
        "line\nbreak\r",
        "back\\slash \\N \\x00",
        "naïve ☃ \u{1F600}",
        "",
    ];
    for n in 0..250 {
        let u = user(
            &format!("u{n:03}"),
            &format!("u{n}@example.com"),
            n % 7 != 0,
            tricky[n % tricky.len()],
        );
        snapshot.users.insert(u.id.clone(), u);
    }
    let g = group("g1", "Tab\tand\\slash");
    snapshot.groups.insert(g.id.clone(), g);
    snapshot
        .members
        .insert(Id::from("g1"), snapshot.users.keys().cloned().collect());
    let summary = commit_snapshot(&mut conn, &lease, &snapshot);
    assert_eq!(summary.events, 250 + 1 + 250);
    assert_eq!(load_snapshot(&conn, "acme").unwrap(), snapshot);
    let again = commit_snapshot(&mut conn, &lease, &snapshot);
    assert_eq!(again.events, 0, "what was stored reads back equal");
}

/// Batch inserts into several tables at once, with statements between their rows, land
/// whole (on PostgreSQL each keeps its `COPY` open until another needs the connection);
/// a duplicate key fails the transaction, which then leaves nothing behind.
fn batch_inserts_interleave_and_a_broken_constraint_fails_the_transaction(backend: Backend) {
    const ROWS: usize = 9_000;
    let (_db, _store, mut conn, _lease) = open_temp(backend);
    let count = |conn: &Connection, table: &str| -> i64 {
        conn.query_row(
            &format!("SELECT count(*) FROM {table} WHERE tenant = 'acme'"),
            (),
            |row| row.get(0),
        )
        .unwrap()
    };
    let fill = |tx: &Connection, duplicate_at: Option<usize>| -> Result<(), sql::Error> {
        let mut users = tx.batch_insert(
            "INSERT INTO users (tenant, id, email, data) VALUES (?1, ?2, ?3, ?4)",
            4,
        )?;
        let mut members = tx.batch_insert(
            "INSERT INTO memberships (tenant, group_id, user_id) VALUES (?1, ?2, ?3)",
            3,
        )?;
        for n in 0..ROWS {
            let id = format!("u{n:05}");
            users.push(params!["acme", id, format!("{id}@example.com"), "{}"])?;
            members.push(params!["acme", "g1", id])?;
            if Some(n) == duplicate_at {
                members.push(params!["acme", "g1", id])?;
            }
            if n % 2_500 == 0 {
                tx.execute(
                    "INSERT INTO tenants (tenant, last_seq) VALUES ('acme', ?1)
                     ON CONFLICT (tenant) DO UPDATE SET last_seq = excluded.last_seq",
                    params![n as i64],
                )?;
            }
        }
        users.finish()?;
        members.finish()
    };

    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    let failed = fill(&tx, Some(6_123)).and_then(|()| tx.commit());
    assert!(
        failed.is_err(),
        "a duplicate membership must fail the transaction"
    );
    assert_eq!(count(&conn, "users"), 0);
    assert_eq!(count(&conn, "memberships"), 0);

    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    fill(&tx, None).unwrap();
    tx.commit().unwrap();
    assert_eq!(count(&conn, "users"), ROWS as i64);
    assert_eq!(count(&conn, "memberships"), ROWS as i64);
    let last: i64 = conn
        .query_row(
            "SELECT last_seq FROM tenants WHERE tenant = 'acme'",
            (),
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(last, 7_500);
}
