//! `dirsync demo` end to end: the real binary with its in-process emulator and daemon, for a
//! few seconds; the initial sync, then changes to the organisation and the events they cause;
//! and beside it the push tenant its simulated Okta provisions over HTTP.
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

    let first = stdout
        .lines()
        .find(|line| line.contains("(source google):") && line.contains("events (seq 1.."))
        .and_then(|line| stdout.find(line))
        .expect("the initial sync");
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

    // Each event is printed once: no (tenant, seq) twice.
    let mut seen = std::collections::BTreeSet::new();
    let mut tenant = "";
    for line in stdout.lines() {
        if let Some((heading, _)) = line
            .split_once(", sync ")
            .or(line.split_once(", push request "))
        {
            tenant = heading;
        } else if let Some(rest) = line.trim_start().strip_prefix('#') {
            let seq = rest.split_whitespace().next().unwrap();
            assert!(
                seen.insert((tenant, seq.to_owned())),
                "{tenant} #{seq} printed twice:\n{stdout}"
            );
        }
    }

    // The push tenant: Okta's requests over HTTP, their events printed with their source.
    assert!(
        stdout.contains("a simulated Okta provisions it at http://127.0.0.1:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("~ Okta (push to okta-demo) provisioned 6 users and 2 groups"),
        "{stdout}"
    );
    let pushed: Vec<&str> = stdout
        .split("\nokta-demo, push request ")
        .skip(1)
        .filter(|part| {
            part.lines()
                .next()
                .unwrap_or("")
                .contains("(source scim_push):")
        })
        .collect();
    assert!(
        pushed
            .iter()
            .any(|part| part.contains("user.created") && part.contains("@okta-demo.example")),
        "no scim_push user.created:\n{stdout}"
    );
    assert!(
        pushed
            .iter()
            .any(|part| part.contains("group.user_added") && part.contains("→ Sales")),
        "no scim_push membership:\n{stdout}"
    );

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
