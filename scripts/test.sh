#!/usr/bin/env bash
# Runs every test. Creates .venv with the Python packages the tests talk to (Google's own API
# client, scim2-server, standardwebhooks) on first use, then runs cargo test.
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

cargo test --workspace --all-targets "$@"
