//! `dirsync demo` end to end: the real binary with its in-process emulator and daemon, for a
//! few seconds; the initial sync, then changes to the organisation and the events they cause.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_syncs_changes_the_organisation_and_prints_the_events() {
    let run = crate::support::dirsync()
        .tokio_command(&[
            "demo",
            "--users",
            "20",
            "--groups",
            "4",
            "--every",
            "1",
            "--duration",
            "10",
        ])
        .output();
    let output = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the demo stops after --duration")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let first = stdout.find("events (seq 1..").expect("the initial sync");
    assert!(stdout[first..].contains("× user.created"), "{stdout}");
    let change = stdout
        .find("~ the IdP changes:")
        .expect("a change to the organisation");
    assert!(change > first, "{stdout}");
    // A later sync prints the change's events one per line: "#SEQ type subject".
    let after: Vec<&str> = stdout[change..]
        .lines()
        .filter(|line| line.trim_start().starts_with('#'))
        .collect();
    assert!(
        !after.is_empty(),
        "no event after the first change:\n{stdout}"
    );
    assert!(stdout.trim_end().ends_with("demo stopped"), "{stdout}");

    let config_line = stdout
        .lines()
        .find(|l| l.starts_with("config in "))
        .unwrap();
    let dir = config_line["config in ".len()..].split(';').next().unwrap();
    assert!(
        !std::path::Path::new(dir).exists(),
        "the throw-away config is removed"
    );
}
