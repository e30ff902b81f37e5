//! The daemon's extension points, as sink delivery and the events API use them: routes merged
//! into the HTTP listener, per-tenant tasks started with the tenant and restarted/stopped on
//! reload, a call after every commit, extra metrics. The daemon runs in this process (the
//! library's `daemon::run`) against a real scim2-server.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use dirsync::daemon::{self, DaemonOptions, Extension, ExtensionContext, TenantHook};
use dirsync_testkit::scim as scim_support;
use dirsync_testkit::{http_get, wait_for};
use scim_support::{ScimServer, Spc};

use crate::support::{config_dir, DaemonControl};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Recorder {
    started: Mutex<Vec<String>>,
    stops: Mutex<Vec<(String, CancellationToken)>>,
    commits: Mutex<Vec<(String, u64)>>,
    fed: Mutex<Vec<(String, u64)>>,
    reloads: Mutex<u32>,
}

/// The extension the daemon holds; the test keeps the recorder.
struct Ext(Arc<Recorder>);

impl Extension for Ext {
    fn routes(&self, context: &ExtensionContext) -> Option<axum::Router> {
        let commits = context.commits.clone();
        Some(axum::Router::new().route(
            "/v1/tenants/{tenant}/last-seq",
            axum::routing::get(
                move |axum::extract::Path(tenant): axum::extract::Path<String>| async move {
                    commits.subscribe(&tenant).borrow().to_string()
                },
            ),
        ))
    }

    fn start_tenant(&self, hook: TenantHook) {
        self.0.started.lock().unwrap().push(hook.config.id.clone());
        self.0
            .stops
            .lock()
            .unwrap()
            .push((hook.config.id.clone(), hook.stop.clone()));
        let fed = Arc::clone(&self.0);
        let (id, mut commits, stop) = (hook.config.id.clone(), hook.commits, hook.stop);
        hook.tracker.spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    changed = commits.changed() => if changed.is_err() { return },
                }
                let seq = *commits.borrow_and_update();
                fed.fed.lock().unwrap().push((id.clone(), seq));
            }
        });
    }

    fn on_commit(&self, tenant: &str, last_seq: u64) {
        self.0
            .commits
            .lock()
            .unwrap()
            .push((tenant.to_owned(), last_seq));
    }

    fn on_reload(&self) {
        *self.0.reloads.lock().unwrap() += 1;
    }

    fn collect_metrics(&self, out: &mut dirsync::telemetry::metrics::Exposition) {
        out.family(
            "dirsync_test_extension_info",
            dirsync::telemetry::metrics::Kind::Gauge,
            "The test extension is loaded.",
        )
        .sample(&[], 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extensions_get_routes_tenant_tasks_commits_reloads_and_metrics() {
    let scim = ScimServer::start(Spc::Default).await;
    scim.seed().await;
    let setup = config_dir(true);
    setup.scheduled_scim_tenant(
        "acme",
        &scim.base_url,
        scim_support::TOKEN,
        "0 0 0 1 1 *",
        "",
    );
    setup.scheduled_scim_tenant(
        "other",
        &scim.base_url,
        scim_support::TOKEN,
        "0 0 0 1 1 *",
        "",
    );
    let config = dirsync::config::load_strict(&setup.config()).unwrap();

    let recorder = Arc::new(Recorder::default());
    let stop = CancellationToken::new();
    let options = DaemonOptions {
        extensions: vec![Arc::new(Ext(recorder.clone()))],
        ..DaemonOptions::new(setup.config())
    };
    let daemon = tokio::spawn(daemon::run(config, options, stop.clone().cancelled_owned()));
    wait_for(20, "the control socket", || async {
        setup.daemon_states().await.is_some()
    })
    .await;
    assert_eq!(*recorder.started.lock().unwrap(), ["acme", "other"]);

    let sync = setup.output_async(&["sync", "acme", "--json"]).await;
    assert_eq!(sync.status.code(), Some(0), "{sync:?}");
    let report: serde_json::Value = serde_json::from_slice(&sync.stdout).unwrap();
    let last_seq = report["last_seq"].as_u64().unwrap();
    assert!(last_seq > 0);
    assert_eq!(
        *recorder.commits.lock().unwrap(),
        [("acme".to_owned(), last_seq)]
    );
    wait_for(10, "the tenant task to see the commit", || async {
        recorder
            .fed
            .lock()
            .unwrap()
            .contains(&("acme".to_owned(), last_seq))
    })
    .await;

    let addr = setup.http.unwrap();
    let (code, body) = http_get(addr, "/v1/tenants/acme/last-seq").await.unwrap();
    assert_eq!((code, body), (200, last_seq.to_string()));
    let (_, metrics) = http_get(addr, "/metrics").await.unwrap();
    assert!(
        metrics.contains("dirsync_test_extension_info 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "dirsync_last_event_seq{{tenant=\"acme\"}} {last_seq}\n"
    )));

    // Reload without `other`: its tasks are stopped; acme's are restarted with its new config.
    setup.remove_tenant("other");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for(10, "the reload", || async {
        *recorder.reloads.lock().unwrap() == 1
    })
    .await;
    {
        let stops = recorder.stops.lock().unwrap();
        assert_eq!(stops.len(), 3, "acme, other, then acme again");
        assert!(stops[0].1.is_cancelled() && stops[1].1.is_cancelled());
        assert_eq!(stops[2].0, "acme");
        assert!(!stops[2].1.is_cancelled());
    }

    stop.cancel();
    daemon.await.unwrap().unwrap();
    assert!(recorder.stops.lock().unwrap()[2].1.is_cancelled());
}
