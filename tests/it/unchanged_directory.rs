//! A scheduled run of a Google directory whose pages say what the stored directory was last
//! planned from records a no-change run without planning it: and yet every change that
//! matters reaches the event stream — an edit in the IdP, a policy change on reload, a forced
//! sync — while sign-ins (volatile fields) change nothing. The real binary, the emulator.
#![allow(clippy::unwrap_used)]

use dirsync_testkit::daemon::Daemon;
use dirsync_testkit::emulator::GoogleEmulator;
use dirsync_testkit::{wait_for, ConfigDir};
use serde_json::{json, Value};

use crate::support::{config_dir, DaemonControl};

/// How many runs the daemon logged as recorded without planning.
fn unchanged_runs(daemon: &Daemon) -> usize {
    daemon
        .log_text()
        .lines()
        .filter(|line| line.contains("sync finished") && line.contains("unchanged=true"))
        .count()
}

/// Waits until `more` further runs were recorded without planning.
async fn wait_unchanged(daemon: &Daemon, more: usize, what: &str) -> usize {
    let target = unchanged_runs(daemon) + more;
    wait_for(60, what, || async { unchanged_runs(daemon) >= target }).await;
    unchanged_runs(daemon)
}

async fn events(setup: &ConfigDir) -> Vec<Value> {
    setup.events_async("acme", 0).await
}

fn every_second(setup: &ConfigDir, policy: &str) {
    let file = setup.tenant_file("acme");
    let text = std::fs::read_to_string(&file).unwrap();
    let (head, _) = text.split_once("\n[filters]").unwrap_or((&text, ""));
    let text = head.replace("schedule = \"0 0 * * * *\"", "schedule = \"* * * * * *\"");
    std::fs::write(&file, format!("{}\n{policy}", text.trim_end())).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_directory_is_not_planned_again_and_every_real_change_still_is() {
    let emulator = GoogleEmulator::start_generated(12, 3);
    let setup = config_dir(false);
    setup.emulator_tenant("acme", &emulator, "", "");
    every_second(&setup, "");
    let daemon = Daemon::start(&setup, None).await;

    wait_unchanged(&daemon, 2, "two runs of an unchanged directory").await;
    let first = events(&setup).await;
    assert!(!first.is_empty());
    assert!(
        first
            .iter()
            .all(|e| e["type"].as_str().unwrap().ends_with(".created")
                || e["type"] == "group.user_added"),
        "only the first run's creations: {first:?}"
    );
    let state = setup.daemon_state("acme").await.unwrap();
    assert_eq!(state.consecutive_failures, 0, "{}", daemon.log_text());

    // Sign-ins move only volatile fields: still no plan, still no event.
    assert!(emulator.directory().record_logins(5) > 0);
    wait_unchanged(&daemon, 2, "runs after the sign-ins").await;
    assert_eq!(events(&setup).await.len(), first.len());

    // An edit in the IdP is seen by the next run.
    let someone = emulator.directory().user_emails()[0].clone();
    emulator
        .directory()
        .update_user(
            &someone,
            &json!({"name": {"givenName": "Renamed", "familyName": "Person"}}),
        )
        .unwrap();
    wait_for(60, "the rename's event", || async {
        events(&setup).await.len() > first.len()
    })
    .await;
    let after_rename = events(&setup).await;
    let renamed = &after_rename[first.len()..];
    assert_eq!(renamed.len(), 1, "{renamed:?}");
    assert_eq!(renamed[0]["type"], "user.updated");
    assert_eq!(renamed[0]["data"]["first_name"], "Renamed");
    // And the run after it reuses the new digest.
    wait_unchanged(&daemon, 2, "runs after the rename").await;
    assert_eq!(events(&setup).await.len(), after_rename.len());

    // A policy change on reload plans the same pages again, in full.
    let group = emulator.directory().group_emails()[0].clone();
    every_second(&setup, &format!("[filters]\ngroups = [\"{group}\"]\n"));
    daemon.signal("HUP");
    wait_for(60, "the policy change's events", || async {
        events(&setup)
            .await
            .iter()
            .any(|e| e["type"] == "group.deleted")
    })
    .await;
    let after_policy = events(&setup).await;
    let deleted: Vec<&Value> = after_policy[after_rename.len()..]
        .iter()
        .filter(|e| e["type"] == "group.deleted")
        .collect();
    assert_eq!(
        deleted.len(),
        2,
        "the two groups left out: {after_policy:?}"
    );
    wait_unchanged(&daemon, 2, "runs after the reload").await;
    assert_eq!(events(&setup).await.len(), after_policy.len());

    // A forced sync plans in full, and finds nothing to do.
    let planned_no_change = |daemon: &Daemon| {
        daemon
            .log_text()
            .lines()
            .filter(|line| {
                line.contains("sync finished")
                    && line.contains("unchanged=false")
                    && line.contains("events=0 ")
            })
            .count()
    };
    let before = planned_no_change(&daemon);
    let (code, report) = setup.sync_async("acme", &[]).await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["events"], 0, "{report}");
    assert_eq!(report["outcome"], "no_changes", "{report}");
    assert_eq!(
        planned_no_change(&daemon),
        before + 1,
        "{}",
        daemon.log_text()
    );
}
