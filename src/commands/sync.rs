//! `dirsync sync TENANT`: force a sync now.

use tokio_util::sync::CancellationToken;

use super::{open_store, tenant, Outcome};
use crate::cli::SyncArgs;
use crate::config::Config;
use crate::sync::{run_sync, SyncOptions, SyncReport};

pub async fn run(config: &Config, args: &SyncArgs) -> Outcome {
    let tenant = tenant(config, &args.tenant)?;
    let options = SyncOptions {
        dry_run: args.dry_run,
        allow_mass_delete: args.allow_mass_delete,
    };
    let store = open_store(config)?;
    let cancel = CancellationToken::new();
    let ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            ctrl_c.cancel();
        }
    });
    let report = run_sync(&store, tenant, options, &cancel).await;
    if args.json {
        // In-process runs also report this process's figures (for benchmarks).
        let mut json = serde_json::to_value(&report).unwrap_or_default();
        if let (Some(object), Ok(serde_json::Value::Object(process))) = (
            json.as_object_mut(),
            serde_json::to_value(crate::process_stats::current()),
        ) {
            object.extend(process);
        }
        println!("{json}");
    } else {
        print_report(&report, false);
    }
    Ok(report.exit_code())
}

/// Prints a run's summary: JSON (`--json`) or text, and a dry run's events.
pub fn print_report(report: &SyncReport, json: bool) {
    if report.outcome == crate::store::RunOutcome::DryRun && !json {
        for event in &report.dry_run_events {
            println!("{}", serde_json::to_string(event).unwrap_or_default());
        }
    }
    if json {
        println!("{}", serde_json::to_string(report).unwrap_or_default());
    } else if report.error.is_some() {
        eprintln!("{}", report.summary_line());
    } else {
        println!("{}", report.summary_line());
    }
}
