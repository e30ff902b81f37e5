//! `dirsync events TENANT`: stored events as JSON lines, oldest first; with `--resend-to SINK`,
//! replays them to one of the tenant's sinks instead.

use std::io::Write;
use std::time::Duration;

use super::{open_store, tenant, Failure, Outcome};
use crate::cli::EventsArgs;
use crate::config::{Config, TenantConfig};
use crate::store::{self, Store};

pub async fn run(config: &Config, args: &EventsArgs) -> Outcome {
    let tenant_config = tenant(config, &args.tenant)?;
    let store = open_store(config)?;
    if let Some(sink_name) = &args.resend_to {
        return resend(store, tenant_config, sink_name, args).await;
    }
    let mut after = args.after;
    let mut remaining = args.limit;
    loop {
        let tenant_id = args.tenant.clone();
        let batch_limit = remaining.map(|r| r.min(10_000)).unwrap_or(10_000);
        let batch = store
            .run(move |conn| store::events_after(conn, &tenant_id, after, Some(batch_limit)))
            .await
            .map_err(Failure::run)?;
        let mut out = std::io::stdout().lock();
        for (seq, body) in &batch {
            if writeln!(out, "{body}").is_err() {
                return Ok(super::exit::SUCCESS);
            }
            after = *seq;
        }
        let _ = out.flush();
        drop(out);
        if let Some(r) = remaining.as_mut() {
            *r -= batch.len() as u64;
            if *r == 0 {
                return Ok(super::exit::SUCCESS);
            }
        }
        if batch.len() as u64 == batch_limit {
            continue;
        }
        if !args.follow {
            return Ok(super::exit::SUCCESS);
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(super::exit::SUCCESS),
        }
    }
}

/// `--resend-to`: sends the selected events to the sink now, in order, with their original ids;
/// the sink's delivery cursor is not moved.
async fn resend(
    store: Store,
    tenant: &TenantConfig,
    sink_name: &str,
    args: &EventsArgs,
) -> Outcome {
    let Some(sink) = tenant.sinks.iter().find(|s| s.name == sink_name) else {
        return Err(Failure::usage(anyhow::anyhow!(
            "tenant {} has no sink {sink_name:?} (its sinks: {}); sinks are named by `name`, else type-position such as \"webhook-1\"",
            tenant.id,
            if tenant.sinks.is_empty() {
                "none".to_owned()
            } else {
                tenant.sinks.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
            }
        )));
    };
    let range = |report: &crate::sink::ResendReport| match (report.first_seq, report.last_seq) {
        (Some(first), Some(last)) => format!(" (seq {first}..={last})"),
        _ => String::new(),
    };
    match crate::sink::resend(store, &tenant.id, sink, args.after, args.limit).await {
        Ok(report) => {
            println!(
                "resent {} events{} of tenant {} to sink {}",
                report.events,
                range(&report),
                tenant.id,
                sink.name
            );
            Ok(super::exit::SUCCESS)
        }
        Err((report, err)) => Err(Failure::run(anyhow::anyhow!(
            "resending to sink {} of tenant {} stopped after {} events{}: {err}",
            sink.name,
            tenant.id,
            report.events,
            range(&report)
        ))),
    }
}
