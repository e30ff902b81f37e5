//! The verbs: each turns parsed arguments into work and maps failures to the contract's exit
//! codes. The only place with `anyhow`-style context.

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Exit codes of the contract.
pub mod exit {
    pub const SUCCESS: u8 = 0;
    pub const RUN_FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const GUARD_REFUSED: u8 = 3;
}

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn new(code: u8, error: impl Into<anyhow::Error>) -> Self {
        Self {
            code,
            error: error.into(),
        }
    }
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self::new(exit::USAGE, error)
    }
    pub fn run(error: impl Into<anyhow::Error>) -> Self {
        Self::new(exit::RUN_FAILED, error)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Self::run(error)
    }
}

pub type Outcome = Result<u8, Failure>;

pub async fn dispatch(cli: Cli) -> Outcome {
    let config = cli.config;
    match cli.command {
        Command::Emulator(args) => crate::emulator::cli::run(args)
            .await
            .map(|()| exit::SUCCESS)
            .map_err(|err| {
                if err.is_usage() {
                    Failure::usage(err)
                } else {
                    Failure::run(err)
                }
            }),
        other => {
            let _ = (config, other);
            Err(Failure::usage(anyhow::anyhow!("not built yet")))
        }
    }
}

/// Prints a failure the contract's way: one readable line (or a few) on stderr.
pub fn report(failure: &Failure) -> ExitCode {
    eprintln!("dirsync: {:#}", failure.error);
    ExitCode::from(failure.code)
}
