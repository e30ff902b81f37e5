//! dirsync's test kit: the one harness that the integration tests (`tests/it`) and the
//! benchmark (`benches/sync.rs`) share. It owns everything a test needs around the product
//! without being the product: a throw-away config folder ([`ConfigDir`]), the real `dirsync`
//! binary run with a scrubbed environment ([`Dirsync`]), free ports, the Python venv of the
//! test peers ([`python()`]) and the npm ones ([`node_peer()`]), deadline waits ([`wait_for`],
//! [`wait_until`]), the daemon as a child process, the Google emulator in-process or as a
//! subprocess, and the fake servers (an independent fake of Google, a gated and a scripted
//! SCIM server, the real `scim2-server`, a webhook receiver), headless Chromium over WebDriver
//! for the web console ([`browser`]), a real PostgreSQL ([`postgres`]: a fresh database on the
//! shared test cluster, [`PgDatabase`], or a private server to stop and kill, [`PgCluster`]),
//! and the benchmarks' PASS/FAIL verdicts ([`bench`]).
//!
//! It depends on no dirsync crate but the emulator: tests talk to the product through its
//! binary, its files and its wire protocols, and whatever needs the library's types stays in
//! the test binary. Tests may unwrap; a harness failure is a test failure.
//!
//! The binary path comes from the caller, who has `env!("CARGO_BIN_EXE_dirsync")`:
//! `Dirsync::new(env!("CARGO_BIN_EXE_dirsync"))`.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod bench;
pub mod browser;
pub mod config_dir;
pub mod daemon;
pub mod emulator;
pub mod fake_google;
pub mod net;
pub mod node;
pub mod postgres;
pub mod python;
pub mod runner;
pub mod scim;
pub mod scim_fixture;
pub mod wait;
pub mod webhook;

pub use config_dir::ConfigDir;
pub use net::{closed_port, free_port, http_get, ClosedPort};
pub use node::node_peer;
pub use postgres::{PgCluster, PgDatabase};
pub use python::python;
pub use runner::{Dirsync, Run, Running};
pub use wait::{wait_for, wait_until, wait_until_or};

/// The workspace root (where `.venv` and `tests/` live).
pub fn workspace_root() -> std::path::PathBuf {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .and_then(std::path::Path::parent)
        .unwrap_or(here)
        .to_path_buf()
}
