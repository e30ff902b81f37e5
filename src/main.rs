//! The `dirsync` binary: parse, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use dirsync::cli::Cli;
use dirsync::commands;

/// jemalloc instead of glibc's malloc. A run is thousands of small allocations (JSON values,
/// strings, tree nodes) made on one thread and freed on another, and glibc spent about a third
/// of a no-change run's CPU in its slow paths (consolidating and unlinking free chunks across
/// per-thread arenas) and kept each arena at its peak after a burst; jemalloc's size classes
/// and thread caches make those allocations cheap, and its decay gives freed pages back to the
/// system seconds after a burst. (mimalloc was tried too: as fast, but its per-thread heaps
/// held 1.3 GiB at 1,000 tenants.) It is built unprefixed, so it also serves `malloc` for the
/// bundled SQLite and for libc: with SQLite on glibc's malloc beside it, 3,000 idle tenants
/// held 193 MiB instead of 104. Its options are compiled in: see `.cargo/config.toml`.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    install_panic_hook();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) if dirsync::process_stats::is_out_of_descriptors(&err) => {
            eprintln!(
                "dirsync: cannot start the async runtime: {}",
                dirsync::process_stats::descriptors_advice()
            );
            return ExitCode::from(commands::exit::RUN_FAILED);
        }
        Err(err) => {
            eprintln!("dirsync: cannot start the async runtime: {err}");
            return ExitCode::from(commands::exit::RUN_FAILED);
        }
    };
    let outcome = runtime.block_on(commands::dispatch(cli));
    // Every verb awaits its own work; what is left (a blocking send to a stuck socket) must not
    // hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(failure) => commands::report(&failure),
    }
}

/// A panic is a bug: one log line saying where, not a backtrace (unless `RUST_BACKTRACE` asks
/// for one). A panic inside a sync is caught and reported as that run's failure.
fn install_panic_hook() {
    if std::env::var_os("RUST_BACKTRACE").is_some() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let message = dirsync::sync::unwind::panic_message(info.payload());
        let location = info
            .location()
            .map(|at| format!("{}:{}", at.file(), at.line()))
            .unwrap_or_default();
        // A library that panics when it cannot open a descriptor (tokio's signal driver does)
        // is the process's limit, not a bug.
        if dirsync::process_stats::mentions_out_of_descriptors(&message) {
            let advice = dirsync::process_stats::descriptors_advice();
            if tracing::dispatcher::has_been_set() {
                tracing::error!("{advice} (at {location}: {message})");
            } else {
                eprintln!("dirsync: {advice} (at {location}: {message})");
            }
            return;
        }
        if tracing::dispatcher::has_been_set() {
            tracing::error!("internal error (a bug): panic at {location}: {message}");
        } else {
            eprintln!("dirsync: internal error (a bug): panic at {location}: {message}");
        }
    }));
}
