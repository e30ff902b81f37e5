//! Delivery inside `dirsync run`: the daemon delivers each commit to the tenant's webhook, serves
//! the events API (bearer token, long-poll woken by the commit) and reports sink metrics.
#![allow(clippy::unwrap_used)]

use dirsync_testkit::daemon::Daemon;
use dirsync_testkit::scim as scim_support;
use dirsync_testkit::webhook::{Receiver, SECRET};
use dirsync_testkit::{http_get, wait_for, ConfigDir};
use scim_support::{ScimServer, Spc};
use serde_json::Value;

use crate::support::config_dir;

const YEARLY: &str = "0 0 0 1 1 *";

async fn stored_events(setup: &ConfigDir) -> Vec<Value> {
    let out = setup.output_async(&["events", "acme"]).await;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_delivers_commits_serves_the_events_api_and_reports_sink_metrics() {
    let scim = ScimServer::start(Spc::Default).await;
    scim.seed().await;
    let receiver = Receiver::default();
    let hook = receiver.start("127.0.0.1:0");
    let setup = config_dir(true);
    let global = setup.config();
    let mut text = std::fs::read_to_string(&global).unwrap();
    text.push_str("events_api_token_file = \"api-token\"\n");
    std::fs::write(&global, text).unwrap();
    std::fs::write(setup.path().join("api-token"), "api-s3cret\n").unwrap();
    std::fs::write(setup.path().join("tenants/secret"), SECRET).unwrap();
    setup.scheduled_scim_tenant(
        "acme",
        &scim.base_url,
        scim_support::TOKEN,
        YEARLY,
        &format!("[[sinks]]\ntype = \"webhook\"\nname = \"app\"\nurl = \"http://{hook}/hook\"\nsecret_file = \"secret\"\n"),
    );
    let mut daemon = Daemon::start(&setup, None).await;

    let out = setup.output_async(&["sync", "acme", "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored = stored_events(&setup).await;
    assert!(!stored.is_empty());
    let first_count = stored.len();
    wait_for(30, "the first sync's events at the webhook", || {
        let n = receiver.seqs().len();
        async move { n == first_count }
    })
    .await;
    assert_eq!(receiver.events(), stored);

    let addr = setup.http.unwrap();
    let client = reqwest::Client::new();
    let url = |after: usize, wait: u32| {
        format!("http://{addr}/v1/tenants/acme/events?after={after}&limit=1000&wait={wait}")
    };
    let response = client.get(url(0, 0)).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let page: Value = client
        .get(url(0, 0))
        .bearer_auth("api-s3cret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["events"].as_array().unwrap(), &stored);

    // A long-poll from the last seq is answered by the next commit.
    let poll = tokio::spawn({
        let (client, url) = (client.clone(), url(stored.len(), 60));
        async move {
            client
                .get(url)
                .bearer_auth("api-s3cret")
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    });
    scim.create_user("newcomer").await;
    let out = setup.output_async(&["sync", "acme", "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = tokio::time::timeout(std::time::Duration::from_secs(60), poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(page["events"][0]["seq"], stored.len() + 1);
    assert_eq!(
        page["events"][0]["data"]["username"],
        "newcomer@example.com"
    );

    let all = stored_events(&setup).await;
    let total = all.len();
    wait_for(
        30,
        "the new events at the webhook and in the metrics",
        || {
            let delivered = receiver.seqs().len();
            let expected = format!(
                "dirsync_sink_delivered_events_total{{tenant=\"acme\",sink=\"app\"}} {}\n",
                total
            );
            async move {
                delivered == total
                    && http_get(addr, "/metrics")
                        .await
                        .is_some_and(|(_, text)| text.contains(&expected))
            }
        },
    )
    .await;
    let (_, metrics) = http_get(addr, "/metrics").await.unwrap();
    assert!(
        metrics.contains("dirsync_sink_lag_events{tenant=\"acme\",sink=\"app\"} 0\n"),
        "{metrics}"
    );
    let status = setup.status_async("acme").await;
    assert_eq!(status["sinks"][0]["delivered_seq"], all.len());

    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(20).await, 0, "{}", daemon.log_text());
}
