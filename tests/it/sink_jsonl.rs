//! End to end: the JSON-lines sink of the real binary, its cursor, and logrotate (the file moved
//! or deleted between batches, SIGHUP).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::*;
use dirsync_testkit::*;

const WAIT: Duration = Duration::from_secs(60);

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_file_gets_every_event_as_stored_and_follows_logrotate() {
    let env = sink_dir("");
    let file = env.path().join("out/events.jsonl");
    std::fs::create_dir(env.path().join("out")).unwrap();
    env.tenant(
        "acme",
        "[[sinks]]\ntype = \"jsonl\"\npath = \"../out/events.jsonl\"\nbatch_size = 4\n",
    );
    env.commit_users("acme", 0..10);
    let out = env.output(&["deliver", "acme", "--once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("delivered 10 events"));
    let stored: Vec<String> = String::from_utf8(env.output(&["events", "acme"]).stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines(&file), stored);

    // Nothing new: nothing appended.
    assert!(env.output(&["deliver", "acme", "--once"]).status.success());
    assert_eq!(lines(&file).len(), 10);
    assert_eq!(env.sink_status("acme", "jsonl-1")["delivered_seq"], 10);

    // logrotate moved the file: new events go to a new file at the path.
    let rotated = env.path().join("out/events.jsonl.1");
    std::fs::rename(&file, &rotated).unwrap();
    env.commit_users("acme", 10..13);
    let mut deliver = Running(env.spawn_deliver(&["acme"]));
    wait_until("a new file with the new events", WAIT, || {
        lines(&file).len() == 3
    });
    assert_eq!(lines(&rotated).len(), 10);
    assert!(lines(&file)[0].contains("\"seq\":11,"));

    // Deleted while the daemon runs: recreated with the next batch.
    std::fs::remove_file(&file).unwrap();
    env.commit_users("acme", 13..15);
    wait_until("the file recreated", WAIT, || lines(&file).len() == 2);
    assert!(lines(&file)[0].contains("\"seq\":14,"));

    // SIGHUP asks for a reopen (logrotate's postrotate); delivery goes on.
    let pid = deliver.0.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    wait_until("the reopen to be logged", WAIT, || {
        env.log().contains("SIGHUP")
    });
    env.commit_users("acme", 15..16);
    wait_until("the next event", WAIT, || lines(&file).len() == 3);
    assert!(
        deliver.0.try_wait().unwrap().is_none(),
        "SIGHUP stopped the process"
    );
}

#[test]
fn a_partial_line_left_by_a_crash_is_replaced_by_the_whole_event() {
    let env = sink_dir("");
    let file = env.path().join("events.jsonl");
    env.tenant(
        "acme",
        "[[sinks]]\ntype = \"jsonl\"\npath = \"../events.jsonl\"\n",
    );
    env.commit_users("acme", 0..3);
    assert!(env.output(&["deliver", "acme", "--once"]).status.success());
    // A write cut short by a crash before the cursor moved.
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("{\"id\":\"evt_");
    std::fs::write(&file, text).unwrap();
    env.commit_users("acme", 3..5);
    assert!(env.output(&["deliver", "acme", "--once"]).status.success());
    let all = lines(&file);
    assert_eq!(all.len(), 5);
    for (index, line) in all.iter().enumerate() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(event["seq"], index as u64 + 1);
    }
}

#[test]
fn an_unwritable_path_is_reported_and_the_cursor_held() {
    let env = sink_dir("");
    env.tenant(
        "acme",
        "[[sinks]]\ntype = \"jsonl\"\nname = \"file\"\npath = \"../missing-dir/events.jsonl\"\n",
    );
    env.commit_users("acme", 0..2);
    let out = env.output(&["deliver", "acme", "--once"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("missing-dir") && stderr.contains("cursor held at seq 0"),
        "{stderr}"
    );
    let status = env.sink_status("acme", "file");
    assert_eq!(status["delivered_seq"], 0);
    assert_eq!(status["lag_events"], 2);
    assert!(status["last_error"]
        .as_str()
        .unwrap()
        .contains("cannot open"));
}
