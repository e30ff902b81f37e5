//! `dirsync forget TENANT` (extension): deletes what the store holds of a tenant whose config
//! file is gone — its snapshot, events, runs, cursors and lease. Removing a tenant's file only
//! stops its syncs and its events API; its data stays until this verb, so a file removed by
//! mistake loses nothing. Refused while the file exists, while the running daemon still
//! schedules the tenant (reload it first) and while a sync holds its lease.

use std::path::Path;

use super::{exit, Failure, Outcome};
use crate::cli::ForgetArgs;
use crate::config::{self, valid_tenant_id};
use crate::daemon::control::{self, Request};
use crate::store::{self, Store};

pub async fn run(config_path: &Path, args: &ForgetArgs) -> Outcome {
    let id = &args.tenant;
    if !valid_tenant_id(id) {
        return Err(Failure::usage(anyhow::anyhow!(
            "{id:?} is not a tenant id (letters, digits, '-' and '_')"
        )));
    }
    let loaded = config::load(config_path);
    let Some(global) = loaded.global else {
        // The global file has problems: the strict load reports them all.
        return Err(match super::load_config(config_path) {
            Err(failure) => failure,
            Ok(_) => Failure::usage(anyhow::anyhow!("cannot read {}", config_path.display())),
        });
    };
    let file = global.tenants_dir.join(format!("{id}.toml"));
    if file.exists() {
        return Err(Failure::usage(anyhow::anyhow!(
            "tenant {id} still has its config file {}: dirsync forgets only a tenant without one. Remove the file (and reload the daemon: systemctl reload dirsync) first",
            file.display()
        )));
    }
    let status = Request::Status {
        tenant: Some(id.clone()),
    };
    if let Ok(Some(response)) = control::request(&global.control_socket, &status).await {
        if response.tenants.iter().any(|t| t.tenant == *id) {
            return Err(Failure::usage(anyhow::anyhow!(
                "the running daemon still schedules tenant {id} (its file was removed since its last reload): reload it first (systemctl reload dirsync, or SIGHUP)"
            )));
        }
    }
    let store = Store::open_global(&global).map_err(|err| {
        Failure::run(anyhow::anyhow!(
            "opening the store (state_dir in {}): {err}",
            global.file.display()
        ))
    })?;
    let tenant = id.clone();
    let forgotten = store
        .run(move |conn| store::forget_tenant(conn, &tenant))
        .await
        .map_err(|err| Failure::run(anyhow::anyhow!("forgetting tenant {id}: {err}")))?;
    if forgotten.rows == 0 {
        println!("tenant {id}: nothing stored, nothing to forget");
    } else {
        println!(
            "tenant {id} forgotten: {} users, {} groups, {} events and {} rows in all deleted",
            forgotten.users, forgotten.groups, forgotten.events, forgotten.rows
        );
    }
    Ok(exit::SUCCESS)
}
