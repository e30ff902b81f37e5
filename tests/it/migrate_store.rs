//! `dirsync migrate-store`: a tenant's history moves from the SQLite file to PostgreSQL with
//! its seq and event ids, and the nodes go on from there with `database_url`.

#![allow(clippy::unwrap_used)]

use dirsync_testkit::emulator::GoogleEmulator;
use dirsync_testkit::{PgDatabase, Run};
use serde_json::{json, Value};

fn fixture() -> Value {
    let mut users: Vec<Value> = (0..12)
        .map(|n| json!({"primaryEmail": format!("u{n:02}@example.com"), "name": {"givenName": format!("U{n}"), "familyName": "X"}}))
        .collect();
    users.push(json!({"primaryEmail": "admin@example.com", "name": {"givenName": "Ada", "familyName": "Admin"}}));
    json!({
        "domain": "example.com",
        "users": users,
        "groups": [{"email": "all@example.com", "name": "All",
                    "members": (0..12).map(|n| json!({"email": format!("u{n:02}@example.com")})).collect::<Vec<_>>()}]
    })
}

fn events(run: &Run) -> Vec<Value> {
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn a_sqlite_history_moves_to_postgres_with_its_seq_and_ids_and_continues_there() {
    let dir = crate::support::config_dir(false);
    let emulator = GoogleEmulator::start(&fixture());
    dir.emulator_tenant("acme", &emulator, "requests_per_minute = 0", "");
    let synced = dir.run_async(&["sync", "acme"]).await;
    assert_eq!(synced.code, 0, "{}", synced.stderr);
    let on_sqlite = events(&dir.run_async(&["events", "acme"]).await);
    assert_eq!(on_sqlite.len(), 13 + 1 + 12);

    let database = PgDatabase::create();
    let migrated = dir
        .run_async(&["migrate-store", "--to", database.url()])
        .await;
    assert_eq!(migrated.code, 0, "{}", migrated.stderr);
    assert!(migrated.stdout.contains("26 events"), "{}", migrated.stdout);
    // Into a database that holds data already: refused, nothing merged.
    let again = dir
        .run_async(&["migrate-store", "--to", database.url()])
        .await;
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("empty database"), "{}", again.stderr);

    let global = std::fs::read_to_string(dir.config()).unwrap();
    dir.write(
        "dirsync.toml",
        format!("{global}database_url = {:?}\n", database.url()),
    );
    let on_postgres = events(&dir.run_async(&["events", "acme"]).await);
    assert_eq!(on_postgres, on_sqlite, "the same events, seq and ids");
    let status = dir.run_async(&["status", "acme", "--json"]).await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    let status: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["last_seq"], 26, "{status}");

    // The next sync on PostgreSQL diffs against the migrated snapshot: nothing changed.
    let resync = dir.run_async(&["sync", "acme", "--json"]).await;
    assert_eq!(resync.code, 0, "{}", resync.stderr);
    let summary: Value = serde_json::from_str(resync.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["outcome"], "no_changes", "{summary}");
    assert_eq!(summary["events"], 0);
}
