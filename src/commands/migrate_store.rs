//! `dirsync migrate-store --to postgres://…` (extension): copies the SQLite store of
//! `state_dir` into an empty PostgreSQL database, every tenant's seq, event ids and run ids
//! kept, so sinks resume where they were once the nodes run with `database_url`. Refused
//! while a daemon runs on this config (its writes would miss the copy) and when the global
//! config already names a PostgreSQL store.

use super::{exit, Failure, Outcome};
use crate::cli::MigrateStoreArgs;
use crate::config::Config;
use crate::daemon::control::{self, Request};
use crate::store::{self, Location, PostgresConfig, Store};

pub async fn run(config: &Config, args: &MigrateStoreArgs) -> Outcome {
    let global = &config.global;
    if global.database.is_some() {
        return Err(Failure::usage(anyhow::anyhow!(
            "{} already sets database_url: migrate-store copies the SQLite store of state_dir; run it with the config the SQLite nodes used",
            global.file.display()
        )));
    }
    let status = Request::Status { tenant: None };
    if let Ok(Some(_)) = control::request(&global.control_socket, &status).await {
        return Err(Failure::usage(anyhow::anyhow!(
            "a daemon runs on this config (control socket {}): stop it first (systemctl stop dirsync) so that no write misses the copy",
            global.control_socket.display()
        )));
    }
    let password = match &args.password_file {
        Some(file) => Some(
            std::fs::read_to_string(file)
                .map(|text| text.trim().to_owned())
                .map_err(|err| {
                    Failure::usage(anyhow::anyhow!(
                        "cannot read --password-file {}: {err}",
                        file.display()
                    ))
                })?,
        ),
        None => None,
    };
    let target = PostgresConfig::parse(&args.to, password.as_deref()).map_err(|err| {
        Failure::usage(anyhow::anyhow!(
            "--to {}: not a PostgreSQL URL ({err}); write it as postgres://USER@HOST:5432/DATABASE",
            store::sql::redact_url(&args.to)
        ))
    })?;
    let source = Store::open_existing(&global.state_dir)
        .map_err(|err| Failure::run(anyhow::anyhow!("opening the SQLite store: {err}")))?
        .ok_or_else(|| {
            Failure::usage(anyhow::anyhow!(
                "no SQLite store in {} (state_dir of {}): nothing to migrate",
                global.state_dir.display(),
                global.file.display()
            ))
        })?;
    let shown = target.display().to_owned();
    let copied = tokio::task::spawn_blocking(move || -> Result<_, store::StoreError> {
        let destination = Store::open_at(Location::Postgres {
            config: target,
            pool_size: 2,
        })?;
        let from = source.connect()?;
        let mut to = destination.connect()?;
        store::transfer(&from, &mut to, |table, rows| {
            eprintln!("migrate-store: {table}: {rows} rows");
        })
    })
    .await
    .map_err(|err| Failure::run(anyhow::anyhow!("the copy stopped: {err}")))?
    .map_err(|err| Failure::run(anyhow::anyhow!("copying into {shown}: {err}")))?;
    println!(
        "copied into {shown}: {} tenants, {} events, {} users, {} groups, {} runs; set database_url = {:?} in {} on every node",
        copied.rows("tenants"),
        copied.rows("events"),
        copied.rows("users"),
        copied.rows("groups"),
        copied.rows("runs"),
        shown,
        global.file.display()
    );
    Ok(exit::SUCCESS)
}
