//! Delivery of events from real syncs: the `dirsync` binary syncs a real SCIM server
//! (scim2-server on loopback) while `dirsync deliver` pushes the committed events to a webhook
//! receiver and a JSON-lines file.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::*;
use dirsync_testkit::scim::{ScimServer, Spc, TOKEN};
use dirsync_testkit::webhook::*;
use dirsync_testkit::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_real_syncs_are_delivered_in_order_as_stored() {
    let server = ScimServer::start(Spc::Default).await;
    server.seed().await;
    let receiver = Receiver::default();
    let addr = receiver.start("127.0.0.1:0");
    let env = sink_dir("");
    std::fs::write(env.path().join("tenants/acme-token"), TOKEN).unwrap();
    let file = env.path().join("acme.jsonl");
    env.write_tenant(
        "acme",
        &format!(
            "[source]\ntype = \"scim\"\nbase_url = \"{}\"\ntoken_file = \"acme-token\"\n\n\
             [[sinks]]\ntype = \"webhook\"\nname = \"app\"\nurl = \"http://{addr}/hook\"\nsecret_file = \"secret\"\nbatch_size = 5\n\n\
             [[sinks]]\ntype = \"jsonl\"\nname = \"file\"\npath = \"{}\"\n",
            server.base_url,
            file.display()
        ),
    );
    // Created here so the two processes below never race to create the database.
    env.store();
    let deliver = Running(env.spawn_deliver(&["acme"]));

    let sync = env.output(&["sync", "acme", "--json"]);
    assert!(
        sync.status.success(),
        "{}",
        String::from_utf8_lossy(&sync.stderr)
    );
    let report: Value = serde_json::from_slice(&sync.stdout).unwrap();
    let first = report["events"].as_u64().unwrap();
    assert!(first > 0);
    let log = env.path().join("deliver.log");
    tokio::task::spawn_blocking({
        let receiver = receiver.clone();
        move || {
            wait_until_or(
                "the first sync's events",
                WAIT,
                || receiver.seqs().len() as u64 == first,
                || std::fs::read_to_string(&log).unwrap_or_default(),
            )
        }
    })
    .await
    .unwrap();

    server.create_user("newcomer").await;
    let sync = env.output(&["sync", "acme", "--json"]);
    assert!(
        sync.status.success(),
        "{}",
        String::from_utf8_lossy(&sync.stderr)
    );
    let stored = env.events("acme", 0);
    let total = stored.len() as u64;
    assert!(total > first);
    let (r, f) = (receiver.clone(), file.clone());
    tokio::task::spawn_blocking(move || {
        wait_until("every event at both sinks", WAIT, || {
            r.seqs().len() as u64 == total
                && std::fs::read_to_string(&f)
                    .unwrap_or_default()
                    .lines()
                    .count() as u64
                    == total
        })
    })
    .await
    .unwrap();

    assert_eq!(receiver.events(), stored);
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, stored);
    assert!(stored
        .iter()
        .any(|e| e["type"] == "user.created" && e["data"]["username"] == "newcomer@example.com"));
    // The receiver sees the last batch just before the cursor moves.
    wait_until("the cursor at the last event", WAIT, || {
        env.sink_status("acme", "app")["delivered_seq"] == total
    });
    let status = env.sink_status("acme", "app");
    assert_eq!(status["lag_events"], 0);
    drop(deliver);
}
