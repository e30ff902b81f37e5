//! `dirsync sync TENANT`: force a sync now. Through the running daemon when one listens on the
//! control socket (it runs the sync in its tenant task and answers with the report); otherwise
//! in this process, under the same per-tenant lease.

use tokio_util::sync::CancellationToken;

use super::{open_store, tenant, Failure, Outcome};
use crate::cli::SyncArgs;
use crate::config::Config;
use crate::daemon::control::{self, Request, Response};
use crate::run::RunOutcome;
use crate::sync::{run_sync, RunResult, SyncOptions};

pub async fn run(config: &Config, args: &SyncArgs) -> Outcome {
    let tenant = tenant(config, &args.tenant)?;
    if !args.local {
        let request = Request::Sync {
            tenant: args.tenant.clone(),
            dry_run: args.dry_run,
            allow_mass_delete: args.allow_mass_delete,
        };
        let socket = &config.global.control_socket;
        if let Some(response) = control::request(socket, &request)
            .await
            .map_err(Failure::run)?
        {
            return print_daemon_report(&response, args.json);
        }
        tracing::debug!(socket = %socket.display(), "no daemon: syncing in this process");
    }
    let options = SyncOptions {
        dry_run: args.dry_run,
        allow_mass_delete: args.allow_mass_delete,
        // Asked for by an operator: planned in full.
        reuse_unchanged: false,
    };
    let store = open_store(config)?;
    let cancel = CancellationToken::new();
    let stopped_by = std::sync::Arc::new(std::sync::OnceLock::new());
    let listener = tokio::spawn({
        let (cancel, stopped_by) = (cancel.clone(), stopped_by.clone());
        async move {
            // SIGTERM (systemd, `kill`, a CI timeout) like Ctrl-C: cancel the run, which then
            // records itself and gives the lease back, instead of dying holding it.
            let _ = stopped_by.set(stop_signal().await);
            cancel.cancel();
        }
    });
    let result = run_sync(&store, tenant, options, &cancel).await;
    listener.abort();
    let report = &result.summary;
    if let Some(signal) = stopped_by.get() {
        eprintln!(
            "dirsync: {signal} received: the sync of tenant {} was {}; its lease is released",
            crate::terminal::escape(&tenant.id),
            if report.outcome.is_success() {
                "already committing and finished"
            } else {
                "stopped, nothing was committed"
            }
        );
    }
    if args.json {
        // In-process runs also report this process's figures (for benchmarks).
        let mut json = serde_json::to_value(report).unwrap_or_default();
        if let Some(object) = json.as_object_mut() {
            for figures in [
                serde_json::to_value(crate::process_stats::current()),
                serde_json::to_value(result.timings),
            ] {
                if let Ok(serde_json::Value::Object(figures)) = figures {
                    object.extend(figures);
                }
            }
        }
        println!("{json}");
        // Errors go to stderr whatever the output format.
        if report.error.is_some() || report.warning.is_some() {
            eprintln!("{}", report.summary_line());
        }
    } else {
        print_report(&result, false);
    }
    Ok(report.exit_code())
}

/// Resolves with the signal's name on SIGTERM or SIGINT; never when neither can be watched.
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(err) => {
                tracing::warn!("cannot watch SIGTERM: {err}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => "SIGTERM",
        Ok(()) = tokio::signal::ctrl_c() => "SIGINT",
    }
}

/// Prints a run's summary: JSON (`--json`) or text, and a dry run's events.
pub fn print_report(result: &RunResult, json: bool) {
    let report = &result.summary;
    if report.outcome == RunOutcome::DryRun && !json {
        for event in &result.dry_run_events {
            println!("{}", serde_json::to_string(event).unwrap_or_default());
        }
    }
    if json {
        println!("{}", serde_json::to_string(report).unwrap_or_default());
        if report.error.is_some() || report.warning.is_some() {
            eprintln!("{}", report.summary_line());
        }
    } else if report.error.is_some() || report.warning.is_some() {
        eprintln!("{}", report.summary_line());
    } else {
        println!("{}", report.summary_line());
    }
}

/// Prints the daemon's answer exactly as a stand-alone sync prints its report.
fn print_daemon_report(response: &Response, json: bool) -> Outcome {
    if !response.ok {
        let message = response
            .error
            .as_deref()
            .unwrap_or("the daemon refused the request");
        return Err(Failure::new(
            response.exit_code.max(1),
            anyhow::anyhow!("{message}"),
        ));
    }
    if !json {
        for event in &response.events {
            println!("{}", serde_json::to_string(event).unwrap_or_default());
        }
    }
    if json {
        let report = response.report.clone().unwrap_or_default();
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
        let warned = report.get("warning").is_some_and(|w| !w.is_null());
        if response.exit_code != 0 || warned {
            eprintln!("{}", response.summary.as_deref().unwrap_or_default());
        }
    } else {
        let summary = response.summary.as_deref().unwrap_or_default();
        let warned = response
            .report
            .as_ref()
            .and_then(|r| r.get("warning"))
            .is_some_and(|w| !w.is_null());
        if response.exit_code == 0 && !warned {
            println!("{summary}");
        } else {
            eprintln!("{summary}");
        }
    }
    Ok(response.exit_code)
}
