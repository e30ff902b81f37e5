#![allow(clippy::unwrap_used)]

use std::path::Path;

use super::*;

const TENANT: &str = "schedule = \"*/5 * * * * *\"\n[source]\ntype = \"scim\"\nbase_url = \"http://127.0.0.1:9/scim/v2\"\ntoken_file = \"token\"\n";

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tenants")).unwrap();
    std::fs::write(
        dir.path().join("dirsync.toml"),
        "state_dir = \"state\"\ntenants_dir = \"tenants\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("tenants/token"), "secret-token\n").unwrap();
    dir
}

fn write_tenant(dir: &Path, id: &str, text: &str) {
    std::fs::write(dir.join("tenants").join(format!("{id}.toml")), text).unwrap();
}

fn previous(dir: &Path) -> BTreeMap<String, Arc<TenantConfig>> {
    let loaded = config::load(&dir.join("dirsync.toml"));
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    loaded
        .tenants
        .into_iter()
        .map(|(id, t)| (id, Arc::new(t)))
        .collect()
}

#[test]
fn a_broken_tenant_file_keeps_its_previous_config_and_others_apply() {
    let dir = setup();
    write_tenant(dir.path(), "acme", TENANT);
    write_tenant(dir.path(), "globex", TENANT);
    write_tenant(dir.path(), "gone", TENANT);
    let before = previous(dir.path());

    write_tenant(dir.path(), "acme", "schedule = \"not cron\"\n");
    write_tenant(
        dir.path(),
        "globex",
        &TENANT.replace("*/5 * * * * *", "0 0 * * * *"),
    );
    std::fs::remove_file(dir.path().join("tenants/gone.toml")).unwrap();
    write_tenant(dir.path(), "newbie", TENANT);
    write_tenant(dir.path(), "broken-new", "[source]\ntype = \"nope\"\n");

    let config_path = dir.path().join("dirsync.toml");
    let plan = plan_reload(&config_path, &before, config::load(&config_path)).unwrap();
    let ids: Vec<&str> = plan.tenants.keys().map(String::as_str).collect();
    assert_eq!(ids, ["acme", "globex", "newbie"]);
    assert_eq!(plan.tenants["acme"].schedule_text, "*/5 * * * * *");
    assert_eq!(plan.tenants["globex"].schedule_text, "0 0 * * * *");
    assert_eq!(plan.kept_previous, ["acme"]);
    assert!(plan
        .problems
        .iter()
        .any(|p| p.file.ends_with("broken-new.toml")));
}

#[test]
fn a_broken_global_file_keeps_everything() {
    let dir = setup();
    write_tenant(dir.path(), "acme", TENANT);
    let before = previous(dir.path());
    let config_path = dir.path().join("dirsync.toml");
    std::fs::write(&config_path, "state_dir = \"state\"\nbogus = 1\n").unwrap();
    let problems = plan_reload(&config_path, &before, config::load(&config_path)).unwrap_err();
    assert!(problems.iter().any(|p| p.file == config_path));
}

/// A tenant task under paused tokio time: over a minute of a 5-second schedule it runs once
/// per fire time (each run fails fast against a closed port, and backoff is off), never
/// twice for one fire time, and the next run it reports is always ahead of the clock.
#[tokio::test(start_paused = true)]
async fn a_tenant_task_runs_once_per_fire_time_under_paused_time() {
    let dir = setup();
    // No retries within a run: a refused connection fails the run at once.
    write_tenant(
        dir.path(),
        "acme",
        &format!("{TENANT}retry_max_seconds = 0\n"),
    );
    let config = previous(dir.path()).remove("acme").unwrap();
    let store = Store::open(&dir.path().join("state")).unwrap();
    let start = chrono::DateTime::parse_from_rfc3339("2026-12-02T10:00:00.000Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let clock = Clock::following_tokio(start);
    let (_config_tx, config_rx) = tokio::sync::watch::channel(config);
    let (_requests_tx, requests_rx) = tokio::sync::mpsc::unbounded_channel();
    let state = Arc::new(Mutex::new(TenantState::default()));
    let stop = CancellationToken::new();
    let task = TenantTask {
        store,
        config: config_rx,
        requests: requests_rx,
        state: state.clone(),
        stop: stop.clone(),
        metrics: Metrics::default(),
        commits: CommitFeed::default(),
        extensions: Arc::from(Vec::<Arc<dyn Extension>>::new()),
        backoff: BackoffPolicy {
            base: Duration::ZERO,
            cap: Duration::ZERO,
        },
        clock,
    };
    let running = tokio::spawn(task.run());

    let mut seen_runs = 0;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let snapshot = crate::mutex::lock(&state).clone();
        assert!(snapshot.runs >= seen_runs, "the run count went back");
        seen_runs = snapshot.runs;
        if let Some(next) = snapshot.next_run.as_deref() {
            let next = chrono::DateTime::parse_from_rfc3339(next).unwrap();
            assert!(
                next > clock.now(),
                "next run {next} is not ahead of the clock"
            );
        }
    }
    // Fire times 10:00:05 … 10:01:00, each delayed by at most half a second of jitter.
    assert!(
        (11..=12).contains(&seen_runs),
        "{seen_runs} runs in a minute"
    );
    let snapshot = crate::mutex::lock(&state).clone();
    assert_eq!(snapshot.last_outcome.as_deref(), Some("failed"));
    stop.cancel();
    running.await.unwrap();
}
