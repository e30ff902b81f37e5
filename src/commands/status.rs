//! `dirsync status [TENANT]`: per tenant, the last run, the next scheduled run, stored counts
//! and the last event seq. When a daemon runs, it adds what only it knows: the next run as
//! scheduled (jitter and backoff included), a run in progress, queued force syncs, backoff.

use serde::Serialize;

use super::{tenant, Failure, Outcome};
use crate::cli::StatusArgs;
use crate::config::{self, Config, Problem, TenantConfig};
use crate::daemon::control::{self, Request};
use crate::daemon::tenant::TenantState;
use crate::run::RunSummary;
use crate::store::{self, Store, StoredCounts};

#[derive(Debug, Serialize)]
pub struct PushStatus {
    pub last_request: Option<store::push::PushRequest>,
    pub last_hour: store::push::RequestCounts,
    /// Refused requests (status 400 and up) of the last hour, as a share of them.
    pub error_rate: f64,
}

#[derive(Debug, Serialize)]
pub struct TenantStatus {
    pub tenant: String,
    pub enabled: bool,
    pub schedule: String,
    pub next_run: Option<String>,
    pub last_run: Option<RunSummary>,
    pub last_success: Option<String>,
    pub stored: StoredCounts,
    pub last_seq: u64,
    /// Delivery state of each `[[sinks]]` entry.
    pub sinks: Vec<crate::sink::SinkStatus>,
    /// A push tenant's IdP requests: the last one, and the last hour's count and refusals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<PushStatus>,
    /// Which node holds the tenant's sync lease now and which claimed its last scheduled run
    /// (the store's view, across every node); absent when there is no store yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<store::cluster::TenantCluster>,
    /// The running daemon's view; absent when no daemon runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daemon: Option<TenantState>,
}

/// Reads one tenant's status from the database.
pub fn tenant_status(
    store: Option<&Store>,
    tenant: &TenantConfig,
) -> Result<TenantStatus, store::StoreError> {
    let next_run = tenant
        .enabled
        .then_some(tenant.scheduled)
        .filter(|scheduled| *scheduled)
        .and_then(|_| tenant.schedule.upcoming(chrono::Utc).next())
        .map(crate::event::format_timestamp);
    let mut status = TenantStatus {
        tenant: tenant.id.clone(),
        enabled: tenant.enabled,
        schedule: tenant.schedule_text.clone(),
        next_run,
        last_run: None,
        last_success: None,
        stored: StoredCounts::default(),
        last_seq: 0,
        sinks: Vec::new(),
        push: None,
        cluster: None,
        daemon: None,
    };
    if let Some(store) = store {
        let (runs, stored, last_seq, sinks, cluster) = store.run_blocking(|conn| {
            Ok((
                store::last_runs(conn, &tenant.id, 50)?,
                store::stored_counts(conn, &tenant.id)?,
                store::last_seq(conn, &tenant.id)?,
                crate::sink::sink_statuses(conn, tenant)?,
                store::cluster::tenant_cluster(conn, &tenant.id)?,
            ))
        })?;
        status.cluster = Some(cluster);
        status.last_success = runs
            .iter()
            .find(|r| r.outcome.is_success())
            .map(|r| r.finished_at.to_rfc3339());
        status.last_run = runs.into_iter().next();
        status.stored = stored;
        status.last_seq = last_seq;
        status.sinks = sinks;
        if tenant.source.is_push() {
            let hour_ago = store::now_ms() - 3_600_000;
            let (last, counts) = store.run_blocking(|conn| {
                Ok((
                    store::push::latest_requests(conn, &tenant.id, 1)?,
                    store::push::request_counts(conn, &tenant.id, hour_ago)?,
                ))
            })?;
            status.push = Some(PushStatus {
                last_request: last.into_iter().next().map(|mut request| {
                    request.body = None;
                    request
                }),
                error_rate: if counts.requests == 0 {
                    0.0
                } else {
                    counts.errors as f64 / counts.requests as f64
                },
                last_hour: counts,
            });
        }
    } else {
        status.sinks = tenant
            .sinks
            .iter()
            .map(crate::sink::SinkStatus::never_delivered)
            .collect();
    }
    Ok(status)
}

/// For `status` of every tenant: the valid tenants, and the problems of the tenant files that
/// are not (shown after the others' status; they make the exit code 2). A problem in the
/// global file is an error as for every verb.
pub fn load_every_valid_tenant(path: &std::path::Path) -> Result<(Config, Vec<Problem>), Failure> {
    let loaded = config::load(path);
    let Some(global) = loaded.global else {
        return super::load_config(path).map(|config| (config, Vec::new()));
    };
    Ok((
        Config {
            global,
            tenants: loaded.tenants,
        },
        loaded.problems,
    ))
}

pub async fn run(config: &Config, args: &StatusArgs, problems: &[Problem]) -> Outcome {
    let tenants: Vec<&TenantConfig> = match &args.tenant {
        Some(id) => vec![tenant(config, id)?],
        None => config.tenants.values().collect(),
    };
    let store = Store::open_existing_global(&config.global).map_err(Failure::run)?;
    let nodes = match &store {
        Some(store) => store
            .run_blocking(|conn| store::cluster::list_nodes(conn))
            .map_err(Failure::run)?,
        None => Vec::new(),
    };
    if args.nodes {
        return print_nodes(&nodes, args.json);
    }
    let mut statuses = Vec::new();
    for tenant in tenants {
        statuses.push(tenant_status(store.as_ref(), tenant).map_err(Failure::run)?);
    }
    let daemon = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        control::request(
            &config.global.control_socket,
            &Request::Status {
                tenant: args.tenant.clone(),
            },
        ),
    )
    .await;
    match daemon {
        Err(_) => {
            tracing::warn!("the daemon did not answer within 10 s; showing what the database knows")
        }
        Ok(daemon) => match daemon {
            Ok(Some(response)) if response.ok => {
                for status in &mut statuses {
                    let state = response
                        .tenants
                        .iter()
                        .find(|s| s.tenant == status.tenant)
                        .cloned();
                    match &state {
                        Some(state) => status.next_run = state.next_run.clone(),
                        // The daemon does not schedule it (e.g. added since its last reload).
                        None => status.next_run = None,
                    }
                    status.daemon = state;
                }
            }
            Ok(Some(response)) => tracing::warn!(
                "the daemon did not answer the status request: {}",
                response.error.unwrap_or_default()
            ),
            Ok(None) => {}
            Err(err) => tracing::warn!("{err}; showing what the database knows"),
        },
    }
    if args.json {
        let json = if args.tenant.is_some() {
            serde_json::to_string_pretty(&statuses[0])
        } else {
            serde_json::to_string_pretty(&statuses)
        };
        println!("{}", json.unwrap_or_default());
    } else {
        for status in &statuses {
            print_text(status);
        }
        if statuses.is_empty() && problems.is_empty() {
            println!(
                "no tenants configured in {}",
                config.global.tenants_dir.display()
            );
        }
        if !nodes.is_empty() && args.tenant.is_none() {
            println!("nodes:");
            print_node_lines(&nodes);
        }
    }
    if problems.is_empty() {
        return Ok(super::exit::SUCCESS);
    }
    let mut files: Vec<&std::path::Path> = problems.iter().map(|p| p.file.as_path()).collect();
    files.dedup();
    for file in files {
        eprintln!(
            "dirsync: {} has problems, so its tenant is left out above (and not scheduled until it is fixed):",
            file.display()
        );
        for problem in problems.iter().filter(|p| p.file == file) {
            eprintln!("  {problem}");
        }
    }
    eprintln!("(`dirsync check-config` lists every problem)");
    Ok(super::exit::USAGE)
}

fn print_text(status: &TenantStatus) {
    println!(
        "{}{}",
        status.tenant,
        if status.enabled { "" } else { " (disabled)" }
    );
    match &status.last_run {
        Some(run) => {
            println!(
                "  last run:    {} {} in {:.1}s, {} events (sync {})",
                run.finished_at.to_rfc3339(),
                run.outcome.as_str(),
                run.duration_ms as f64 / 1000.0,
                run.events,
                run.sync_id.unwrap_or_default()
            );
            if let Some(error) = &run.error {
                println!("  last error:  {}", crate::terminal::escape(error));
            }
        }
        None => println!("  last run:    never"),
    }
    if let Some(success) = &status.last_success {
        println!("  last success: {success}");
    }
    if status.push.is_some() && status.next_run.is_none() {
        println!("  next run:    - (a push tenant: its IdP's writes keep it current; `dirsync sync` re-applies its policy)");
    } else {
        println!(
            "  next run:    {} (schedule \"{}\")",
            status.next_run.as_deref().unwrap_or("-"),
            status.schedule
        );
    }
    if let Some(daemon) = &status.daemon {
        if let Some(running) = &daemon.running {
            println!(
                "  running:     since {} ({}{})",
                running.since,
                match running.trigger {
                    crate::daemon::tenant::Trigger::Schedule => "scheduled",
                    crate::daemon::tenant::Trigger::Force => "forced",
                },
                if running.dry_run { ", dry run" } else { "" }
            );
        }
        if daemon.queued_requests > 0 {
            println!(
                "  queued:      {} force sync request(s)",
                daemon.queued_requests
            );
        }
        if daemon.consecutive_failures > 0 {
            println!(
                "  backoff:     {} failed run(s) in a row; next attempt not before {}",
                daemon.consecutive_failures,
                daemon.backoff_until.as_deref().unwrap_or("-")
            );
        }
    } else if status.enabled {
        println!("  daemon:      not running (next run is what the schedule says)");
    }
    if let Some(cluster) = &status.cluster {
        if let Some(holder) = &cluster.lease_holder {
            println!(
                "  held by:     {} (sync lease until {})",
                cluster.lease_node.as_deref().unwrap_or(holder),
                cluster.lease_until.as_deref().unwrap_or("-")
            );
        }
        if let Some(claim) = &cluster.last_claim {
            println!(
                "  last slot:   {} claimed by {} at {}",
                claim.slot, claim.node, claim.claimed_at
            );
        }
    }
    println!(
        "  stored:      {} users, {} groups, {} memberships; last event seq {}",
        status.stored.users, status.stored.groups, status.stored.memberships, status.last_seq
    );
    if let Some(push) = &status.push {
        match &push.last_request {
            Some(request) => {
                let at = chrono::DateTime::from_timestamp_millis(request.at_ms)
                    .map(crate::event::format_timestamp)
                    .unwrap_or_default();
                println!(
                    "  last push:   {at} {} {} -> {}",
                    request.method,
                    crate::terminal::escape(&request.path),
                    request.status
                );
            }
            None => println!("  last push:   no request from the IdP yet"),
        }
        println!(
            "  pushes:      {} in the last hour, {} refused ({:.1}%)",
            push.last_hour.requests,
            push.last_hour.errors,
            push.error_rate * 100.0
        );
    }
    if let Some(queue) = status
        .daemon
        .as_ref()
        .and_then(|daemon| daemon.extensions.get("push_queue"))
    {
        println!(
            "  push queue:  {} write(s) waiting (429 beyond {})",
            queue["pending"], queue["limit"]
        );
    }
    for sink in &status.sinks {
        print_sink(sink);
    }
}

fn print_sink(sink: &crate::sink::SinkStatus) {
    let lag = match sink.lag_seconds {
        Some(age) if sink.lag_events > 0 => {
            format!("{} events behind, oldest {age:.0}s old", sink.lag_events)
        }
        _ => "up to date".to_owned(),
    };
    println!(
        "  sink {} ({}): delivered up to seq {}, {lag}{}",
        sink.name,
        sink.kind,
        sink.delivered_seq,
        if sink.parked {
            " — PARKED: fix the receiver, then `dirsync deliver TENANT --unpark SINK`"
        } else {
            ""
        }
    );
    if let Some(error) = &sink.last_error {
        println!(
            "    last error ({}): {}",
            sink.last_error_at.as_deref().unwrap_or("-"),
            crate::terminal::escape(error)
        );
    }
}

/// `status --nodes`: the `dirsync run` processes registered in the store.
fn print_nodes(nodes: &[store::cluster::Node], json: bool) -> Outcome {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(nodes).unwrap_or_default()
        );
    } else if nodes.is_empty() {
        println!("no nodes registered: no `dirsync run` uses this store now");
    } else {
        print_node_lines(nodes);
    }
    Ok(super::exit::SUCCESS)
}

fn print_node_lines(nodes: &[store::cluster::Node]) {
    for node in nodes {
        println!(
            "  {}  started {}, last seen {}",
            node.node, node.started_at, node.seen_at
        );
    }
}
