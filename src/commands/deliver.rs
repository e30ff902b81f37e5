//! `dirsync deliver [TENANT] [--once] [--unpark SINK]` (an extension of the contract): runs the
//! daemon's delivery tasks in this process, for operators without the daemon and for tests.
//! Without `--once` it delivers until SIGINT/SIGTERM; SIGHUP reopens JSON-lines files.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{exit, open_store, tenant, Failure, Outcome};
use crate::cli::DeliverArgs;
use crate::config::{Config, TenantConfig};
use crate::feed::CommitFeed;
use crate::sink::Deliveries;
use crate::store;

/// How long in-flight deliveries get to finish after a stop signal.
const DRAIN: Duration = Duration::from_secs(10);

pub async fn run(config: &Config, args: &DeliverArgs) -> Outcome {
    let tenants: Vec<&TenantConfig> = match &args.tenant {
        Some(id) => vec![tenant(config, id)?],
        None => config
            .tenants
            .values()
            .filter(|t| !t.sinks.is_empty())
            .collect(),
    };
    let store = open_store(config)?;
    if let Some(sink) = &args.unpark {
        return unpark(&store, tenants[0], sink);
    }
    if tenants.iter().all(|t| t.sinks.is_empty()) {
        return Err(Failure::usage(anyhow::anyhow!(
            "no [[sinks]] configured{}: add one to the tenant file to deliver events",
            args.tenant
                .as_deref()
                .map(|t| format!(" for tenant {t}"))
                .unwrap_or_default()
        )));
    }
    let deliveries = Deliveries::new(store.clone(), config.global.event_retention);
    if args.once {
        return once(&deliveries, &tenants, config).await;
    }

    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    // Nothing commits in this process: the workers find other processes' commits by polling,
    // and sooner on PostgreSQL, where the commits' notifications are announced here.
    let commits = CommitFeed::default();
    crate::daemon::cluster::spawn_commit_listener(&store, commits.clone(), cancel.clone());
    for tenant in &tenants {
        deliveries.spawn(tenant, &commits.subscribe(&tenant.id), &cancel, &tracker);
    }
    tracker.close();
    wait_for_stop(&deliveries).await?;
    cancel.cancel();
    if tokio::time::timeout(DRAIN, tracker.wait()).await.is_err() {
        tracing::warn!("deliveries did not stop within {DRAIN:?}; exiting anyway (undelivered events stay pending)");
    }
    Ok(exit::SUCCESS)
}

async fn once(deliveries: &Deliveries, tenants: &[&TenantConfig], config: &Config) -> Outcome {
    let mut failed = false;
    for tenant in tenants {
        for report in deliveries.deliver_once(tenant).await {
            if let Some(holder) = &report.held_by {
                println!(
                    "tenant {} sink {}: delivered by another process ({holder}); nothing delivered here, cursor at seq {}",
                    tenant.id, report.sink, report.delivered_seq
                );
                continue;
            }
            match &report.error {
                None => println!(
                    "tenant {} sink {}: delivered {} events, cursor at seq {}",
                    tenant.id, report.sink, report.delivered, report.delivered_seq
                ),
                Some(err) => {
                    failed = true;
                    eprintln!(
                        "tenant {} sink {}: delivered {} events, cursor held at seq {}: {err}",
                        tenant.id, report.sink, report.delivered, report.delivered_seq
                    );
                }
            }
        }
        if let Some(retention) = config.global.event_retention {
            deliveries
                .prune(tenant, retention)
                .await
                .map_err(Failure::run)?;
        }
    }
    Ok(if failed {
        exit::RUN_FAILED
    } else {
        exit::SUCCESS
    })
}

fn unpark(store: &store::Store, tenant: &TenantConfig, sink: &str) -> Outcome {
    if !tenant.sinks.iter().any(|s| s.name == sink) {
        return Err(Failure::usage(anyhow::anyhow!(
            "tenant {} has no sink {sink:?} (its sinks: {}); sinks are named by `name`, else type-position such as \"webhook-1\"",
            tenant.id,
            tenant
                .sinks
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let unparked = store
        .run_blocking(|conn| store::unpark(conn, &tenant.id, sink))
        .map_err(Failure::run)?;
    if unparked {
        println!(
            "tenant {} sink {sink}: unparked; a running daemon or `dirsync deliver` resumes delivery from the held cursor",
            tenant.id
        );
    } else {
        println!("tenant {} sink {sink}: was not parked", tenant.id);
    }
    Ok(exit::SUCCESS)
}

async fn wait_for_stop(deliveries: &Deliveries) -> Result<(), Failure> {
    use tokio::signal::unix::{signal, SignalKind};
    let listen = |kind: SignalKind| {
        signal(kind)
            .map_err(|err| Failure::run(anyhow::anyhow!("cannot listen for signals: {err}")))
    };
    let (mut term, mut int, mut hup) = (
        listen(SignalKind::terminate())?,
        listen(SignalKind::interrupt())?,
        listen(SignalKind::hangup())?,
    );
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reopening JSON-lines files");
                deliveries.reopen_files();
            }
        }
    }
}
