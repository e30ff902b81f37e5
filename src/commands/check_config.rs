//! `dirsync check-config [--connect]`: every problem in every file at once; with `--connect`,
//! a token and one page from each tenant's source.

use std::path::Path;
use std::sync::Arc;

use super::{exit, Outcome};
use crate::cli::CheckConfigArgs;
use crate::config;
use crate::source::{FetchStats, Source};

pub async fn run(path: &Path, args: &CheckConfigArgs) -> Outcome {
    let loaded = config::load(path);
    for problem in &loaded.problems {
        eprintln!("{problem}");
    }
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    // A file is OK only when it has no problem: the global file's tenants are still listed.
    if let Some(global) = &loaded.global {
        println!(
            "{}: OK (state_dir {}, tenants_dir {})",
            global.file.display(),
            global.state_dir.display(),
            global.tenants_dir.display()
        );
    }
    for tenant in loaded.tenants.values() {
        println!(
            "{}: tenant {} OK ({} source, schedule \"{}\"{})",
            tenant.file.display(),
            tenant.id,
            tenant.source.kind().as_str(),
            tenant.schedule_text,
            if tenant.enabled { "" } else { ", disabled" }
        );
    }
    let mut code = if loaded.problems.is_empty() && loaded.global.is_some() {
        exit::SUCCESS
    } else {
        exit::USAGE
    };
    if args.connect {
        for tenant in loaded.tenants.values() {
            let stats = Arc::new(FetchStats::default());
            let result = match Source::new(tenant, stats).await {
                Ok(source) => source.check().await,
                Err(err) => Err(err),
            };
            match result {
                Ok(description) => println!("tenant {}: connected: {description}", tenant.id),
                Err(err) => {
                    let hint = err
                        .hint()
                        .map(|h| format!(" (hint: {h})"))
                        .unwrap_or_default();
                    eprintln!(
                        "tenant {} ({}): cannot connect: {err}{hint}",
                        tenant.id,
                        tenant.file.display()
                    );
                    if code == exit::SUCCESS {
                        code = exit::RUN_FAILED;
                    }
                }
            }
        }
    }
    if !loaded.warnings.is_empty() {
        eprintln!("{} warning(s)", loaded.warnings.len());
    }
    if code == exit::USAGE {
        eprintln!("{} problem(s) found", loaded.problems.len());
    }
    Ok(code)
}
