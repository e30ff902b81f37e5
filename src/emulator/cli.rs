//! `dirsync emulator`: arguments and the command.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// Address to listen on (loopback only by default)
    #[arg(long, default_value = "127.0.0.1:8085")]
    pub listen: SocketAddr,
    /// Users in the generated organisation
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// Groups in the generated organisation
    #[arg(long, default_value_t = 10)]
    pub groups: usize,
    /// Seed of the generator (same seed, same organisation)
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write a service-account key JSON whose token_uri points at the emulator
    #[arg(long, value_name = "FILE")]
    pub key_out: Option<PathBuf>,
}

pub async fn run(args: EmulatorArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("the emulator is not built yet")
}
