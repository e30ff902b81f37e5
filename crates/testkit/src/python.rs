//! The Python of the test peers (Google's API client, `scim2-server`, `standardwebhooks`).

use std::path::PathBuf;

/// The Python with `tests/requirements.txt` installed: `$DIRSYNC_TEST_PYTHON` (what
/// `scripts/test.sh` sets), else the workspace's `.venv/bin/python` when it exists, else
/// `python3` from `PATH` (enough for the stdlib-only drivers; the peers then fail to import,
/// and their helpers say how to create the venv).
pub fn python() -> PathBuf {
    match std::env::var_os("DIRSYNC_TEST_PYTHON") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => {
            let venv = crate::workspace_root().join(".venv/bin/python");
            if venv.exists() {
                venv
            } else {
                PathBuf::from("python3")
            }
        }
    }
}

/// What to tell someone whose Python lacks the test packages.
pub const HOW_TO_CREATE: &str = "create it with `python3 -m venv .venv && .venv/bin/pip install -r tests/requirements.txt` or set DIRSYNC_TEST_PYTHON";
