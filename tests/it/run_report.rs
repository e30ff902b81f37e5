//! What `sync --json` reports for a run: a run that fails at the commit committed nothing,
//! so it reports `events: 0` and what it planned as `planned_events`, and `status` records 0.

use dirsync_testkit::emulator::GoogleEmulator;
use serde_json::json;

#[test]
fn a_run_that_fails_at_the_commit_reports_zero_events_and_the_planned_count() {
    let emulator = GoogleEmulator::start(&json!({
        "domain": "example.com",
        "users": [{"primaryEmail": "admin@example.com", "name": {"givenName": "Ada", "familyName": "Admin"}}],
        "groups": [],
    }));
    let dir = crate::support::config_dir(false);
    dir.emulator_tenant("acme", &emulator, "requests_per_minute = 0", "");
    let (code, first) = dir.sync("acme", &[]);
    assert_eq!((code, first["events"].as_u64()), (0, Some(1)), "{first}");

    // The next commit fails inside its transaction, as on a full disk.
    let conn = rusqlite::Connection::open(dir.state_dir().join("dirsync.db")).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER test_full_disk BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
    )
    .unwrap();
    for n in 0..2 {
        emulator
            .directory()
            .insert_user(&json!({"primaryEmail": format!("u{n}@example.com"), "name": {"givenName": "U", "familyName": "N"}}))
            .unwrap();
    }
    let (code, failed) = dir.sync("acme", &[]);
    assert_eq!(code, 1, "{failed}");
    assert_eq!(failed["outcome"], "failed", "{failed}");
    assert_eq!(failed["events"], 0, "nothing was committed: {failed}");
    assert_eq!(failed["counts"], json!({}), "{failed}");
    assert_eq!(failed["planned_events"], 2, "{failed}");
    assert!(failed.get("first_seq").is_none() && failed.get("last_seq").is_none());

    let status = dir.status("acme");
    assert_eq!(status["last_run"]["outcome"], "failed", "{status}");
    assert_eq!(status["last_run"]["events"], 0, "{status}");
}

/// A run that never got the tenant's lease (another live process held it past
/// `max_run_seconds`) is still a failed run of the history, with its error.
#[test]
fn a_run_that_never_got_its_lease_is_recorded_as_failed() {
    let emulator = GoogleEmulator::start(&json!({
        "domain": "example.com",
        "users": [{"primaryEmail": "admin@example.com", "name": {"givenName": "Ada", "familyName": "Admin"}}],
        "groups": [],
    }));
    let dir = crate::support::config_dir(false);
    dir.emulator_tenant(
        "acme",
        &emulator,
        "requests_per_minute = 0\nmax_run_seconds = 1",
        "",
    );
    let (code, first) = dir.sync("acme", &[]);
    assert_eq!(code, 0, "{first}");

    // This test process holds the lease (alive, so never taken over) for longer than the run
    // may wait.
    let store = dirsync::store::Store::open(&dir.state_dir()).unwrap();
    let mut conn = store.connect().unwrap();
    let holder = dirsync::store::new_holder();
    dirsync::store::acquire_lease(
        &mut conn,
        "acme",
        &holder,
        std::time::Duration::from_secs(600),
    )
    .unwrap();

    let (code, failed) = dir.sync("acme", &[]);
    assert_eq!(code, 1, "{failed}");
    assert_eq!(failed["outcome"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("max_run_seconds"), "{failed}");
    assert!(failed["sync_id"].is_i64(), "the run was recorded: {failed}");

    let recorded: Vec<(String, Option<String>)> = conn
        .prepare("SELECT outcome, error FROM runs WHERE tenant = 'acme' ORDER BY started_at")
        .unwrap()
        .query_map((), |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert_eq!(recorded[1].0, "failed");
    assert_eq!(recorded[1].1.as_deref(), Some(error.as_str()));
    let status = dir.status("acme");
    assert_eq!(status["last_run"]["outcome"], "failed", "{status}");
}
