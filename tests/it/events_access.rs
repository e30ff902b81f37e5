//! Reading events, at the edges: the events API takes the bearer scheme in any case (RFC
//! 9110), refuses `limit=0` and an `after` above the largest storable seq (400) as
//! `dirsync events --after` does (exit 2), and stops serving a tenant whose config file was
//! removed — its data stays until `dirsync forget TENANT`, which refuses while the file exists.

use dirsync_testkit::daemon::Daemon;
use dirsync_testkit::emulator::GoogleEmulator;
use dirsync_testkit::wait_for;
use serde_json::{json, Value};
const TOO_LARGE: &str = "9223372036854775808"; // 2^63

#[test]
fn events_after_above_the_largest_seq_is_a_usage_error() {
    let dir = crate::support::config_dir(false);
    dir.scim_tenant("acme", "http://127.0.0.1:9/scim/v2", "token", "", "");
    let run = dir.run(&["events", "acme", "--after", TOO_LARGE]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("largest seq"), "{}", run.stderr);
    let run = dir.run(&["events", "acme", "--after", "9223372036854775807"]);
    assert_eq!(run.code, 0, "{}", run.all());
}

fn rows_of(dir: &dirsync_testkit::ConfigDir, tenant: &str) -> i64 {
    let conn = rusqlite::Connection::open(dir.state_dir().join("dirsync.db")).unwrap();
    let mut total = 0;
    for table in [
        "users",
        "groups",
        "memberships",
        "events",
        "runs",
        "tenants",
    ] {
        total += conn
            .query_row(
                &format!("SELECT count(*) FROM {table} WHERE tenant = ?1"),
                [tenant],
                |r| r.get::<_, i64>(0),
            )
            .unwrap();
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_api_edges_and_a_removed_tenant_until_forget() {
    let emulator = GoogleEmulator::start(&json!({
        "domain": "example.com",
        "users": [
            {"primaryEmail": "admin@example.com", "name": {"givenName": "Ada", "familyName": "Admin"}},
            {"primaryEmail": "bob@example.com", "name": {"givenName": "Bob", "familyName": "B"}},
        ],
        "groups": [],
    }));
    let setup = crate::support::config_dir(true);
    let global = setup.config();
    let mut text = std::fs::read_to_string(&global).unwrap();
    text.push_str("events_api_token_file = \"api-token\"\n");
    std::fs::write(&global, text).unwrap();
    std::fs::write(setup.path().join("api-token"), "api-s3cret\n").unwrap();
    setup.emulator_tenant("acme", &emulator, "requests_per_minute = 0", "");
    let daemon = Daemon::start(&setup, None).await;
    let out = setup.output_async(&["sync", "acme", "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let addr = setup.http.unwrap();
    let client = reqwest::Client::new();
    let get = |query: &str, authorization: &str| {
        client
            .get(format!("http://{addr}/v1/tenants/acme/events?{query}"))
            .header("authorization", authorization.to_owned())
            .send()
    };
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let response = get("limit=2", &format!("{scheme} api-s3cret"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "scheme {scheme}");
        let page: Value = response.json().await.unwrap();
        assert_eq!(page["events"].as_array().unwrap().len(), 2, "{page}");
    }
    let response = get("limit=2", "Basic api-s3cret").await.unwrap();
    assert_eq!(response.status(), 401);

    let response = get("limit=0", "Bearer api-s3cret").await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("limit"), "{body}");

    let response = get(&format!("after={TOO_LARGE}"), "Bearer api-s3cret")
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("largest seq"),
        "{body}"
    );

    // While the file exists, forget refuses and the data stays.
    let stored = rows_of(&setup, "acme");
    assert!(stored > 0);
    let run = setup.run_async(&["forget", "acme"]).await;
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("config file"), "{}", run.stderr);

    // Removed and reloaded: no longer served; a forget before the reload is refused.
    setup.remove_tenant("acme");
    let run = setup.run_async(&["forget", "acme"]).await;
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("reload"), "{}", run.stderr);
    daemon.signal("HUP");
    wait_for(
        30,
        "the removed tenant's events API to answer 404",
        || async {
            get("", "Bearer api-s3cret")
                .await
                .is_ok_and(|r| r.status() == 404)
        },
    )
    .await;
    assert_eq!(rows_of(&setup, "acme"), stored, "the data stays");

    let run = setup.run_async(&["forget", "acme"]).await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains("tenant acme forgotten"),
        "{}",
        run.stdout
    );
    assert_eq!(rows_of(&setup, "acme"), 0);
    let run = setup.run_async(&["forget", "acme"]).await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("nothing stored"), "{}", run.stdout);
}
