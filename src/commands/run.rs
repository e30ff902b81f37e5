//! `dirsync run`: the daemon. Loads the configuration (a broken tenant file is logged and left
//! out; a broken global file is a usage error), then runs `daemon::run` until SIGTERM/SIGINT.

use std::path::Path;

use super::{exit, Failure, Outcome};
use crate::config;
use crate::daemon::{self, DaemonOptions};

pub async fn run(config_path: &Path) -> Outcome {
    let loaded = config::load(config_path);
    let Some(global) = loaded.global.clone() else {
        let problems: Vec<String> = loaded.problems.iter().map(|p| p.to_string()).collect();
        return Err(Failure::usage(anyhow::anyhow!(
            "{}\n(the global config file {} has problems: fix them and start again)",
            problems.join("\n"),
            config_path.display()
        )));
    };
    super::init_tracing(global.log_format, "info");
    for warning in &loaded.warnings {
        tracing::warn!("config: {warning}");
    }
    for problem in &loaded.problems {
        tracing::error!("config problem (this tenant is not scheduled until it is fixed and the daemon reloaded): {problem}");
    }
    if loaded.problems.iter().any(|p| p.file == global.file) {
        let problems: Vec<String> = loaded.problems.iter().map(|p| p.to_string()).collect();
        return Err(Failure::usage(anyhow::anyhow!(
            "{}\n(fix the global config file {} and start again)",
            problems.join("\n"),
            config_path.display()
        )));
    }
    let options = DaemonOptions {
        extensions: super::extensions(&global),
        ..DaemonOptions::new(config_path.to_owned())
    };
    let config = config::Config {
        global,
        tenants: loaded.tenants,
    };
    daemon::run(config, options, shutdown_signal())
        .await
        .map_err(Failure::run)?;
    Ok(exit::SUCCESS)
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(err) => {
                tracing::error!("cannot install the SIGTERM handler: {err}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => tracing::info!("SIGTERM received"),
        result = tokio::signal::ctrl_c() => {
            if result.is_ok() {
                tracing::info!("SIGINT received");
            }
        }
    }
}
