//! `dirsync events TENANT`: stored events as JSON lines, oldest first.

use std::io::Write;
use std::time::Duration;

use super::{open_store, tenant, Failure, Outcome};
use crate::cli::EventsArgs;
use crate::config::Config;
use crate::store;

pub async fn run(config: &Config, args: &EventsArgs) -> Outcome {
    tenant(config, &args.tenant)?;
    if args.resend_to.is_some() {
        return Err(Failure::usage(anyhow::anyhow!(
            "--resend-to needs event delivery, which this build does not have"
        )));
    }
    let store = open_store(config)?;
    let mut after = args.after;
    let mut remaining = args.limit;
    loop {
        let (store2, tenant_id) = (store.clone(), args.tenant.clone());
        let batch_limit = remaining.map(|r| r.min(10_000)).unwrap_or(10_000);
        let batch = tokio::task::spawn_blocking(move || {
            store::events_after(&store2.connect()?, &tenant_id, after, Some(batch_limit))
        })
        .await
        .map_err(|err| Failure::run(anyhow::anyhow!("{err}")))?
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
