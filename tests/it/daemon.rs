//! End-to-end tests of `dirsync run`: the real binary, real SCIM servers on loopback (the
//! Python scim2-server for a healthy IdP, a gated loopback server for a slow or failing one),
//! the control socket, signals, the HTTP listener and systemd's NOTIFY_SOCKET.
#![allow(clippy::unwrap_used)]

use dirsync::daemon::tenant::Trigger;
use dirsync_testkit::daemon::{Daemon, GatedScim, NotifySocket, TOKEN};
use dirsync_testkit::scim as scim_support;
use dirsync_testkit::{http_get, wait_for, ConfigDir};
use scim_support::{ScimServer, Spc};

use crate::support::{config_dir, DaemonControl};
use serde_json::Value;

const EVERY_SECOND: &str = "* * * * * *";
const YEARLY: &str = "0 0 0 1 1 *";

fn json_lines(output: &std::process::Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_runs_happen_and_systemd_health_and_metrics_see_them() {
    let scim = ScimServer::start(Spc::Default).await;
    scim.seed().await;
    let setup = config_dir(true);
    setup.scheduled_scim_tenant(
        "acme",
        &scim.base_url,
        scim_support::TOKEN,
        EVERY_SECOND,
        "",
    );
    let notify = NotifySocket::bind(setup.path());
    // systemd sets WATCHDOG_USEC with WatchdogSec=; the daemon pings at half of it.
    let mut daemon =
        Daemon::start_with_env(&setup, Some(&notify.path), &[("WATCHDOG_USEC", "400000")]).await;
    notify.expect("READY=1", 10).await;
    notify.expect("WATCHDOG=1", 10).await;

    // Several scheduled runs, the first of which committed the seeded directory.
    wait_for(30, "three scheduled runs of acme", || async {
        setup
            .daemon_state("acme")
            .await
            .is_some_and(|s| s.runs >= 3)
    })
    .await;
    let status = setup.status_async("acme").await;
    assert_eq!(status["stored"]["users"], 5, "{status}");
    assert_eq!(status["stored"]["groups"], 2, "{status}");
    assert!(status["last_success"].is_string(), "{status}");
    assert!(status["daemon"]["next_run"].is_string(), "{status}");
    assert_eq!(status["daemon"]["consecutive_failures"], 0);

    let addr = setup.http.unwrap();
    let (code, body) = http_get(addr, "/healthz").await.unwrap();
    assert_eq!((code, body.trim()), (200, "ok"));
    let (code, metrics) = http_get(addr, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    for expected in [
        "dirsync_runs_total{tenant=\"acme\",outcome=\"committed\"} 1\n",
        "dirsync_stored_users{tenant=\"acme\"} 5\n",
        "dirsync_stored_groups{tenant=\"acme\"} 2\n",
        "dirsync_events_emitted_total{tenant=\"acme\",type=\"user.created\"} 5\n",
        "dirsync_last_success_timestamp_seconds{tenant=\"acme\"} ",
        "dirsync_api_requests_total{tenant=\"acme\"} ",
        "# TYPE dirsync_runs_total counter\n",
    ] {
        assert!(metrics.contains(expected), "{expected:?} not in\n{metrics}");
    }
    assert!(
        metrics.contains("dirsync_runs_total{tenant=\"acme\",outcome=\"no_changes\"} "),
        "{metrics}"
    );

    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(20).await, 0, "{}", daemon.log_text());
    notify.expect("STOPPING=1", 5).await;
    assert!(!setup.socket().exists(), "the control socket is removed");
    assert!(http_get(addr, "/healthz").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_sync_goes_through_the_daemon_with_dry_run_guard_and_exit_codes() {
    let scim = ScimServer::start(Spc::Default).await;
    let ids = scim.seed().await;
    let setup = config_dir(false);
    // Only force syncs run; the guard trips on any deletion.
    setup.scheduled_scim_tenant(
        "acme",
        &scim.base_url,
        scim_support::TOKEN,
        YEARLY,
        "[guard]\nmax_delete_percent = 0\nmin_deletes = 0\n",
    );
    let _daemon = Daemon::start(&setup, None).await;

    let dry = setup.output_async(&["sync", "acme", "--dry-run"]).await;
    assert_eq!(dry.status.code(), Some(0), "{dry:?}");
    let events = json_lines(&dry);
    assert!(events.len() >= 7, "{events:?}");
    assert!(events.iter().all(|e| e["tenant"] == "acme"));
    assert_eq!(setup.status_async("acme").await["last_seq"], 0);

    let real = setup.output_async(&["sync", "acme", "--json"]).await;
    assert_eq!(real.status.code(), Some(0), "{real:?}");
    let report = &json_lines(&real)[0];
    assert_eq!(report["outcome"], "committed", "{report}");
    assert_eq!(report["events"], events.len());
    assert_eq!(setup.daemon_state("acme").await.unwrap().runs, 2);

    scim.delete(&format!("/Users/{}", ids["dave"])).await;
    let refused = setup.output_async(&["sync", "acme"]).await;
    assert_eq!(refused.status.code(), Some(3), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("refused") && stderr.contains("--allow-mass-delete"),
        "{stderr}"
    );

    let allowed = setup
        .output_async(&["sync", "acme", "--allow-mass-delete", "--json"])
        .await;
    assert_eq!(allowed.status.code(), Some(0), "{allowed:?}");
    let report = &json_lines(&allowed)[0];
    assert_eq!(report["outcome"], "committed");
    assert_eq!(report["counts"]["user.deleted"], 1, "{report}");
    assert_eq!(setup.daemon_state("acme").await.unwrap().runs, 4);

    // The same report shape from a stand-alone sync once the daemon is gone.
    drop(_daemon);
    let local = setup.output_async(&["sync", "acme", "--json"]).await;
    assert_eq!(local.status.code(), Some(0), "{local:?}");
    let local_report = &json_lines(&local)[0];
    assert_eq!(local_report["outcome"], "no_changes");
    let keys = |v: &Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.retain(|k| {
            ![
                "first_seq",
                "last_seq",
                "peak_rss_bytes",
                "cpu_ms",
                "fetch_ms",
                "plan_ms",
                "commit_ms",
            ]
            .contains(&k.as_str())
        });
        keys.sort();
        keys
    };
    assert_eq!(keys(report), keys(local_report));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_syncs_during_a_scheduled_run_are_coalesced_into_one_later_run() {
    let idp = GatedScim::start(false, false).await;
    let setup = config_dir(false);
    setup.scheduled_scim_tenant("slow", &idp.base_url, TOKEN, EVERY_SECOND, "");
    let _daemon = Daemon::start(&setup, None).await;

    wait_for(20, "a scheduled run held at the IdP", || async {
        idp.waiting() > 0
            && setup.daemon_state("slow").await.is_some_and(|s| {
                s.running
                    .as_ref()
                    .is_some_and(|r| r.trigger == Trigger::Schedule)
            })
    })
    .await;
    let forced: Vec<_> = (0..3)
        .map(|_| {
            let command = setup.dirsync().clone();
            tokio::spawn(async move { command.output_async(&["sync", "slow", "--json"]).await })
        })
        .collect();
    wait_for(20, "three queued force syncs", || async {
        setup
            .daemon_state("slow")
            .await
            .is_some_and(|s| s.queued_requests == 3)
    })
    .await;
    idp.open();

    let mut sync_ids = Vec::new();
    for task in forced {
        let output = task.await.unwrap();
        assert_eq!(output.status.code(), Some(0), "{output:?}");
        let report = &json_lines(&output)[0];
        assert_eq!(report["outcome"], "no_changes", "{report}");
        sync_ids.push(report["sync_id"].as_i64().unwrap());
    }
    sync_ids.dedup();
    assert_eq!(
        sync_ids.len(),
        1,
        "one run answered all three: {sync_ids:?}"
    );
    // The scheduled run was the first (sync 1); the forced run started after it.
    assert!(sync_ids[0] > 1, "{sync_ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_idp_backs_off_while_another_tenant_keeps_syncing() {
    let scim = ScimServer::start(Spc::Default).await;
    scim.seed().await;
    let down = GatedScim::start(true, true).await;
    let setup = config_dir(true);
    setup.scheduled_scim_tenant(
        "healthy",
        &scim.base_url,
        scim_support::TOKEN,
        EVERY_SECOND,
        "",
    );
    setup.scheduled_scim_tenant("broken", &down.base_url, TOKEN, EVERY_SECOND, "");
    let _daemon = Daemon::start(&setup, None).await;

    wait_for(30, "four runs of the healthy tenant", || async {
        setup
            .daemon_state("healthy")
            .await
            .is_some_and(|s| s.runs >= 4)
    })
    .await;
    let broken = setup.daemon_state("broken").await.unwrap();
    // Backoff starts at 30 s: one failed run, then waiting, while healthy ran every second.
    assert_eq!(broken.runs, 1, "{broken:?}");
    assert_eq!(broken.consecutive_failures, 1);
    assert_eq!(broken.last_outcome.as_deref(), Some("failed"));
    assert!(
        broken.last_error.as_deref().unwrap().contains("500"),
        "{broken:?}"
    );
    let until =
        chrono::DateTime::parse_from_rfc3339(broken.backoff_until.as_deref().unwrap()).unwrap();
    let next = chrono::DateTime::parse_from_rfc3339(broken.next_run.as_deref().unwrap()).unwrap();
    assert!(next >= until, "{broken:?}");
    let healthy = setup.daemon_state("healthy").await.unwrap();
    assert_eq!(healthy.consecutive_failures, 0);

    let text = setup.output_async(&["status", "broken"]).await;
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("backoff:") && text.contains("1 failed run"),
        "{text}"
    );

    let (_, metrics) = http_get(setup.http.unwrap(), "/metrics").await.unwrap();
    assert!(
        metrics.contains("dirsync_runs_total{tenant=\"broken\",outcome=\"failed\"} 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("dirsync_consecutive_failures{tenant=\"broken\"} 1\n"));

    // A force sync is the operator's call: it runs now, backoff or not.
    let forced = setup.output_async(&["sync", "broken"]).await;
    assert_eq!(forced.status.code(), Some(1), "{forced:?}");
    assert_eq!(
        setup
            .daemon_state("broken")
            .await
            .unwrap()
            .consecutive_failures,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_removes_and_keeps_tenants_with_broken_files() {
    let idp = GatedScim::start(true, false).await;
    let setup = config_dir(false);
    setup.scheduled_scim_tenant("alpha", &idp.base_url, TOKEN, YEARLY, "");
    setup.scheduled_scim_tenant("beta", &idp.base_url, TOKEN, YEARLY, "");
    let notify = NotifySocket::bind(setup.path());
    let daemon = Daemon::start(&setup, Some(&notify.path)).await;
    notify.expect("READY=1", 10).await;
    let names = || async {
        setup
            .daemon_states()
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.tenant, s.schedule))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names().await,
        [
            ("alpha".into(), YEARLY.into()),
            ("beta".into(), YEARLY.into())
        ]
    );

    setup.remove_tenant("alpha");
    setup.scheduled_scim_tenant("gamma", &idp.base_url, TOKEN, YEARLY, "");
    setup.write_tenant("beta", "schedule = \"not a cron\"\n");
    setup.write_tenant("delta", "[source]\ntype = \"ldap\"\n");
    notify.clear();
    daemon.signal("HUP");
    notify.expect("RELOADING=1", 10).await;
    notify.expect("READY=1", 10).await;
    assert!(
        notify
            .received()
            .iter()
            .any(|m| m.lines().any(|l| l.starts_with("MONOTONIC_USEC="))),
        "{:?}",
        notify.received()
    );
    // beta keeps its previous config, the broken new delta is not started.
    assert_eq!(
        names().await,
        [
            ("beta".into(), YEARLY.into()),
            ("gamma".into(), YEARLY.into())
        ]
    );
    let log = daemon.log_text();
    assert!(
        log.contains("beta.toml") && log.contains("keeping its previous configuration"),
        "{log}"
    );

    // A fixed file applies on the next reload; a broken global file changes nothing.
    setup.scheduled_scim_tenant("beta", &idp.base_url, TOKEN, "0 0 12 * * *", "");
    setup.remove_tenant("delta");
    daemon.signal("HUP");
    wait_for(10, "beta's new schedule", || async {
        names()
            .await
            .contains(&("beta".into(), "0 0 12 * * *".into()))
    })
    .await;
    let global = std::fs::read_to_string(setup.config()).unwrap();
    std::fs::write(setup.config(), format!("{global}unknown_key = 1\n")).unwrap();
    setup.remove_tenant("gamma");
    notify.clear();
    daemon.signal("HUP");
    notify.expect("READY=1", 10).await;
    assert_eq!(
        names().await.len(),
        2,
        "nothing applied from a broken global file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_slow_fetch_exits_promptly_and_commits_nothing() {
    let idp = GatedScim::start(false, false).await;
    let setup = config_dir(false);
    setup.scheduled_scim_tenant("slow", &idp.base_url, TOKEN, EVERY_SECOND, "");
    let mut daemon = Daemon::start(&setup, None).await;
    wait_for(20, "a fetch held at the IdP", || async {
        idp.waiting() > 0
    })
    .await;

    daemon.signal("TERM");
    // The daemon's drain deadline is 30 s: exiting well before it means the fetch was abandoned.
    assert_eq!(daemon.wait_exit(10).await, 0, "{}", daemon.log_text());
    let status = setup.status_async("slow").await;
    assert_eq!(status["last_seq"], 0, "{status}");
    assert!(status["last_success"].is_null(), "{status}");
    assert_eq!(status["last_run"]["outcome"], "failed", "{status}");
    assert!(status.get("daemon").is_none(), "{status}");
}

/// Issue 18: `max_concurrent_runs` bounds the runs of the whole daemon; due runs wait for a
/// slot (and are not skipped), then run when one frees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_runs_beyond_max_concurrent_runs_wait_for_a_slot() {
    let idp = GatedScim::start(false, false).await;
    let setup = ConfigDir::builder(crate::support::dirsync())
        .global("max_concurrent_runs = 1\n")
        .build();
    for tenant in ["one", "two", "three"] {
        setup.scheduled_scim_tenant(tenant, &idp.base_url, TOKEN, EVERY_SECOND, "");
    }
    let _daemon = Daemon::start(&setup, None).await;

    // One run held at the IdP, the two others due and waiting for the slot, not running.
    wait_for(
        20,
        "one run at the IdP and two due runs waiting for a slot",
        || async {
            let Some(states) = setup.daemon_states().await else {
                return false;
            };
            let now = chrono::Utc::now();
            let running = states.iter().filter(|s| s.running.is_some()).count();
            let waiting = states
                .iter()
                .filter(|s| s.running.is_none())
                .filter(|s| {
                    s.next_run.as_deref().is_some_and(|at| {
                        chrono::DateTime::parse_from_rfc3339(at).is_ok_and(|at| at < now)
                    })
                })
                .count();
            running == 1 && waiting == 2 && idp.waiting() == 1
        },
    )
    .await;
    assert_eq!(
        idp.waiting(),
        1,
        "only the run holding the slot reached the IdP"
    );

    idp.open();
    wait_for(30, "every tenant ran", || async {
        setup
            .daemon_states()
            .await
            .is_some_and(|states| states.len() == 3 && states.iter().all(|s| s.runs >= 1))
    })
    .await;
}
