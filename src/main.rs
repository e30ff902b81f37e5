//! The `dirsync` binary: parse, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use dirsync::cli::Cli;
use dirsync::commands;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
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
