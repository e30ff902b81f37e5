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

/// A tenant task under paused tokio time, with a 5-second schedule and no retries or backoff
/// (each run fails fast against a closed port).
struct PausedTask {
    _dir: tempfile::TempDir,
    state: Arc<Mutex<TenantState>>,
    config: tokio::sync::watch::Sender<Arc<TenantConfig>>,
    _requests: tenant::ForceSender,
    stop: CancellationToken,
    clock: Clock,
    running: tokio::task::JoinHandle<()>,
}

impl PausedTask {
    fn start() -> Self {
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
        let (config_tx, config_rx) = tokio::sync::watch::channel(config);
        let (requests_tx, requests_rx) = tenant::force_queue();
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
            run_slots: super::slots::RunSlots::new(1),
            stored_objects: 0,
            node: "test-node".into(),
        };
        Self {
            _dir: dir,
            state,
            config: config_tx,
            _requests: requests_tx,
            stop,
            clock,
            running: tokio::spawn(task.run()),
        }
    }

    fn snapshot(&self) -> TenantState {
        crate::mutex::lock(&self.state).clone()
    }

    async fn stop(self) {
        self.stop.cancel();
        self.running.await.unwrap();
    }
}

/// Over a minute of a 5-second schedule the task runs once per fire time, never twice for one,
/// and the next run it reports is never behind the clock.
#[tokio::test(start_paused = true)]
async fn a_tenant_task_runs_once_per_fire_time_under_paused_time() {
    let task = PausedTask::start();
    let mut seen_runs = 0;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let snapshot = task.snapshot();
        assert!(snapshot.runs >= seen_runs, "the run count went back");
        seen_runs = snapshot.runs;
        if let Some(next) = snapshot.next_run.as_deref() {
            let next = chrono::DateTime::parse_from_rfc3339(next).unwrap();
            // At the very instant of its run the state may still show it: not before.
            assert!(
                next >= task.clock.now(),
                "next run {next} is behind the clock"
            );
        }
    }
    // Fire times 10:00:05 … 10:01:00, each run at the tenant's offset (under 5 s) after it.
    assert!(
        (11..=12).contains(&seen_runs),
        "{seen_runs} runs in a minute: {:?}",
        task.snapshot()
    );
    assert_eq!(task.snapshot().last_outcome.as_deref(), Some("failed"));
    task.stop().await;
}

/// Issue 18: a reload hands every tenant its config again; one that arrives between a fire
/// time and the tenant's run (its offset) must not push the run to the next fire time.
#[tokio::test(start_paused = true)]
async fn reloads_between_a_fire_time_and_its_run_skip_no_run() {
    let task = PausedTask::start();
    let config = task.config.borrow().clone();
    // A reload every 250 ms for a minute: always some between a fire time and its run.
    for _ in 0..240 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        task.config.send_replace(config.clone());
    }
    let runs = task.snapshot().runs;
    assert!(
        (11..=12).contains(&runs),
        "{runs} runs in a minute of reloads"
    );
    task.stop().await;
}
