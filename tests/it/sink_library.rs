//! The sink library as the daemon uses it: `Deliveries` (spawn, woken by the commit feed,
//! metrics, retention) and the events API router served on loopback.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::*;
use dirsync::config::{self, Secret};
use dirsync::feed::CommitFeed;
use dirsync::sink::api::{events_api_router, ServedTenants};
use dirsync::sink::Deliveries;
use dirsync::telemetry::metrics::render;
use dirsync_testkit::webhook::*;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const WAIT: Duration = Duration::from_secs(60);

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    dirsync_testkit::wait_for(WAIT.as_secs(), what, || std::future::ready(condition())).await;
}

fn metric(text: &str, line_start: &str) -> String {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_spawned_per_tenant_deliver_after_notify_and_report_metrics() {
    let receiver = Receiver::default();
    receiver
        .fail_next
        .store(2, std::sync::atomic::Ordering::SeqCst);
    let addr = receiver.start("127.0.0.1:0");
    let env = sink_dir("");
    env.tenant(
        "acme",
        &format!("[[sinks]]\ntype = \"webhook\"\nname = \"hook\"\nurl = \"http://{addr}/hook\"\nsecret_file = \"secret\"\nmax_backoff_seconds = 1\n"),
    );
    let config = config::load_strict(&env.config()).unwrap();
    let store = env.store();
    let deliveries = Deliveries::new(store.clone(), None);
    let commits = CommitFeed::default();
    let (cancel, tracker) = (CancellationToken::new(), TaskTracker::new());
    deliveries.spawn(
        config.tenant("acme").unwrap(),
        &commits.subscribe("acme"),
        &cancel,
        &tracker,
    );

    let s = store.clone();
    let last_seq = tokio::task::spawn_blocking(move || commit_users(&s, "acme", 0..5))
        .await
        .unwrap();
    commits.publish("acme", last_seq);
    wait_for("5 events", || receiver.seqs().len() == 5).await;
    assert_eq!(receiver.seqs(), vec![1, 2, 3, 4, 5]);

    let labels = "{tenant=\"acme\",sink=\"hook\"}";
    // The receiver sees an event before the cursor (and the counters) move.
    let delivered = format!("dirsync_sink_delivered_events_total{labels} 5\n");
    wait_for("the metrics to count 5 deliveries", || {
        render(&deliveries).contains(&delivered)
    })
    .await;
    let text = render(&deliveries);
    assert_eq!(
        metric(
            &text,
            &format!("dirsync_sink_delivered_events_total{labels}")
        ),
        "5"
    );
    assert_eq!(
        metric(&text, &format!("dirsync_sink_failures_total{labels}")),
        "2"
    );
    assert_eq!(
        metric(&text, &format!("dirsync_sink_retries_total{labels}")),
        "2"
    );
    assert_eq!(
        metric(&text, &format!("dirsync_sink_lag_events{labels}")),
        "0"
    );
    assert_eq!(
        metric(&text, &format!("dirsync_sink_lag_seconds{labels}")),
        "0.000"
    );
    assert!(text.contains("# TYPE dirsync_sink_delivered_events_total counter"));

    // A reload with the sink removed stops it and drops its metrics.
    let mut reloaded = config.tenant("acme").unwrap().clone();
    reloaded.sinks.clear();
    deliveries.spawn(&reloaded, &commits.subscribe("acme"), &cancel, &tracker);
    let text = render(&deliveries);
    assert!(!text.contains("sink=\"hook\""), "{text}");

    cancel.cancel();
    tracker.close();
    tokio::time::timeout(WAIT, tracker.wait()).await.unwrap();
}

/// Issue 13 item 15: a reload restarts a tenant's delivery tasks; the metrics of the sinks it
/// keeps must carry on, whichever runs first — the old tasks' stop (the daemon cancels them
/// before it hands over the new config) or the new `spawn`. A removed tenant's go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_metrics_survive_a_reload_that_keeps_the_sink() {
    let env = sink_dir("");
    let path = env.path().join("events.jsonl");
    env.tenant(
        "acme",
        &format!(
            "[[sinks]]\ntype = \"jsonl\"\nname = \"file\"\npath = \"{}\"\n",
            path.display()
        ),
    );
    let config = config::load_strict(&env.config()).unwrap();
    let tenant = config.tenant("acme").unwrap();
    let store = env.store();
    let deliveries = Deliveries::new(store.clone(), None);
    let commits = CommitFeed::default();
    let tracker = TaskTracker::new();
    let delivered = |n: u64| {
        format!("dirsync_sink_delivered_events_total{{tenant=\"acme\",sink=\"file\"}} {n}\n")
    };

    let first = CancellationToken::new();
    deliveries.spawn(tenant, &commits.subscribe("acme"), &first, &tracker);
    let s = store.clone();
    let seq = tokio::task::spawn_blocking(move || commit_users(&s, "acme", 0..3))
        .await
        .unwrap();
    commits.publish("acme", seq);
    wait_for("3 deliveries counted", || {
        render(&deliveries).contains(&delivered(3))
    })
    .await;

    // The daemon's reload: the old hook's token is cancelled first, and the old tasks may well
    // finish stopping before the new config arrives.
    first.cancel();
    wait_for("the old delivery tasks to stop", || tracker.is_empty()).await;
    let second = CancellationToken::new();
    deliveries.spawn(tenant, &commits.subscribe("acme"), &second, &tracker);
    let text = render(&deliveries);
    assert!(text.contains(&delivered(3)), "{text}");

    let s = store.clone();
    let seq = tokio::task::spawn_blocking(move || commit_users(&s, "acme", 3..5))
        .await
        .unwrap();
    commits.publish("acme", seq);
    wait_for("5 deliveries counted across the reload", || {
        render(&deliveries).contains(&delivered(5))
    })
    .await;

    // The tenant removed: its metrics go.
    deliveries.stop("acme");
    let text = render(&deliveries);
    assert!(!text.contains("tenant=\"acme\""), "{text}");
    second.cancel();
    tracker.close();
    tokio::time::timeout(WAIT, tracker.wait()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_only_what_every_sink_acknowledged_and_seq_continues() {
    let env = sink_dir("event_retention_days = 30\n");
    let (a, b) = (env.path().join("a.jsonl"), env.path().join("b.jsonl"));
    env.tenant(
        "acme",
        &format!(
            "[[sinks]]\ntype = \"jsonl\"\nname = \"a\"\npath = \"{}\"\n[[sinks]]\ntype = \"jsonl\"\nname = \"b\"\npath = \"{}\"\n",
            a.display(),
            b.display()
        ),
    );
    let config = config::load_strict(&env.config()).unwrap();
    assert_eq!(
        config.global.event_retention,
        Some(Duration::from_secs(30 * 86_400))
    );
    let mut tenant = config.tenant("acme").unwrap().clone();
    env.commit_users("acme", 0..6);
    let deliveries = Deliveries::new(env.store(), None);

    // Only sink "a" has delivered: nothing may be pruned.
    let only_a = {
        let mut t = tenant.clone();
        t.sinks.retain(|s| s.name == "a");
        t
    };
    let reports = deliveries.deliver_once(&only_a).await;
    assert_eq!(reports[0].delivered, 6);
    assert_eq!(deliveries.prune(&tenant, Duration::ZERO).await.unwrap(), 0);
    assert_eq!(env.events("acme", 0).len(), 6);

    // Both delivered: everything older than the (zero) retention goes, seq does not restart.
    tenant.sinks.retain(|s| s.name == "b");
    deliveries.deliver_once(&tenant).await;
    let tenant = config.tenant("acme").unwrap();
    // A young event is kept under a long retention.
    assert_eq!(
        deliveries
            .prune(tenant, Duration::from_secs(86_400))
            .await
            .unwrap(),
        0
    );
    assert_eq!(deliveries.prune(tenant, Duration::ZERO).await.unwrap(), 6);
    assert!(env.events("acme", 0).is_empty());
    assert_eq!(env.commit_users("acme", 6..8), 8);
    let events = env.events("acme", 0);
    assert_eq!(events[0]["seq"], 7);
    assert_eq!(env.status("acme")["last_seq"], 8);
}

fn spawn_api(router: axum::Router) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        axum::serve(listener, router).await.unwrap();
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_api_pages_authenticates_and_long_polls() {
    let env = sink_dir("");
    env.tenant("acme", "");
    let store = env.store();
    env.commit_users("acme", 0..5);
    let commits = CommitFeed::default();
    let served = ServedTenants::default();
    served.insert("acme");
    let addr = spawn_api(events_api_router(
        store.clone(),
        Some(Secret::new("s3cret")),
        commits.clone(),
        served.clone(),
    ));
    let disabled = spawn_api(events_api_router(
        store.clone(),
        None,
        commits.clone(),
        served.clone(),
    ));
    let client = reqwest::Client::new();
    let url = |after: u64, extra: &str| {
        format!("http://{addr}/v1/tenants/acme/events?after={after}{extra}")
    };

    let response = client.get(url(0, "")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let response = client
        .get(url(0, ""))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = client
        .get(format!("http://{disabled}/v1/tenants/acme/events"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    let page: Value = client
        .get(url(0, "&limit=3"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["next_after"], 3);
    assert_eq!(page["last_seq"], 5);
    let stored = env.events("acme", 0);
    assert_eq!(page["events"].as_array().unwrap()[..], stored[..3]);
    let page: Value = client
        .get(url(3, ""))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["events"].as_array().unwrap()[..], stored[3..]);
    assert_eq!(page["next_after"], 5);

    // Caught up without wait: an empty page that keeps the cursor.
    let page: Value = client
        .get(url(5, ""))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["events"], Value::Array(Vec::new()));
    assert_eq!(page["next_after"], 5);

    // Long-poll: held until a commit, then answered with the new event.
    let poll = tokio::spawn({
        let (client, url) = (client.clone(), url(5, "&wait=60"));
        async move {
            client
                .get(url)
                .bearer_auth("s3cret")
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    });
    let s = store.clone();
    let last_seq = tokio::task::spawn_blocking(move || commit_users(&s, "acme", 5..6))
        .await
        .unwrap();
    commits.publish("acme", last_seq);
    let page = tokio::time::timeout(WAIT, poll).await.unwrap().unwrap();
    assert_eq!(page["events"][0]["seq"], 6);
    assert_eq!(page["next_after"], 6);

    let response = client
        .get(url(0, "&limit=x"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}
