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
