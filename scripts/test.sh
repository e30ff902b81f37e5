#!/usr/bin/env bash
# Runs every test. Creates .venv with the Python packages the tests talk to (Google's own API
# client, scim2-server, standardwebhooks) and .node-peers with the npm ones (scimmy, scim-patch:
# the PATCH oracles, pinned by tests/peers/npm/package-lock.json) on first use, then runs cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
stamp="$venv/.requirements.sha256"
want=$(sha256sum tests/requirements.txt | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "== creating $venv (tests/requirements.txt)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt
  echo "$want" > "$stamp"
fi
export DIRSYNC_TEST_PYTHON="$PWD/$venv/bin/python"

peers=.node-peers
stamp="$peers/.lock.sha256"
want=$(cat tests/peers/npm/package.json tests/peers/npm/package-lock.json | sha256sum | cut -d' ' -f1)
if [ ! -d "$peers/node_modules" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "== installing $peers (tests/peers/npm/package-lock.json)"
  rm -rf "$peers"
  mkdir -p "$peers"
  cp tests/peers/npm/package.json tests/peers/npm/package-lock.json "$peers/"
  (cd "$peers" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
fi
export DIRSYNC_TEST_NODE_MODULES="$PWD/$peers/node_modules"

cargo test --workspace --all-targets "$@"
