//! The Node.js test peers (the npm `scimmy` and `scim-patch` packages, the PATCH oracles),
//! pinned by `tests/peers/npm/package-lock.json` and installed by `scripts/test.sh` into
//! `.node-peers/`, as the Python peers are into `.venv`.

use std::path::PathBuf;
use std::process::Command;

/// What to tell someone whose checkout lacks the npm peers.
pub const HOW_TO_INSTALL: &str = "install them with `scripts/test.sh` (or: mkdir -p .node-peers && cp tests/peers/npm/package*.json .node-peers/ && (cd .node-peers && npm ci --ignore-scripts)), or set DIRSYNC_TEST_NODE_MODULES";

/// The installed npm peers: `node` and the `node_modules` folder it resolves them from.
#[derive(Debug, Clone)]
pub struct NodePeer {
    pub node: PathBuf,
    pub node_modules: PathBuf,
}

impl NodePeer {
    /// `node SCRIPT` (a path under `tests/peers/npm/`) with the peers on `NODE_PATH`.
    pub fn command(&self, script: &str) -> Command {
        let mut command = Command::new(&self.node);
        command
            .arg(crate::workspace_root().join("tests/peers/npm").join(script))
            .env("NODE_PATH", &self.node_modules);
        command
    }
}

/// The npm peers: `$DIRSYNC_TEST_NODE_MODULES` (what `scripts/test.sh` sets), else the
/// workspace's `.node-peers/node_modules`; `node` from `$DIRSYNC_TEST_NODE`, else `PATH`.
/// Panics, saying how to install them, when they are not there.
pub fn node_peer() -> NodePeer {
    let node_modules = match std::env::var_os("DIRSYNC_TEST_NODE_MODULES") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => crate::workspace_root().join(".node-peers/node_modules"),
    };
    assert!(
        node_modules.join("scimmy").is_dir() && node_modules.join("scim-patch").is_dir(),
        "the npm test peers are not installed in {}: {HOW_TO_INSTALL}",
        node_modules.display()
    );
    let node = std::env::var_os("DIRSYNC_TEST_NODE")
        .filter(|path| !path.is_empty())
        .map_or_else(|| PathBuf::from("node"), PathBuf::from);
    NodePeer { node, node_modules }
}
