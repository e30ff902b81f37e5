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
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => commands::report(&failure),
    }
}
