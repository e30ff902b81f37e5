#!/usr/bin/env bash
# Runs every test. Creates .venv with the Python packages the tests talk to (Google's own API
# client, scim2-server, standardwebhooks) and .node-peers with the npm ones (scimmy, scim-patch:
# the PATCH oracles, pinned by tests/peers/npm/package-lock.json) on first use, starts a
# throw-away PostgreSQL cluster (Debian's `postgresql`, which .ci/run installs) in a temp dir on
# 127.0.0.1, then runs cargo test; the cluster is stopped and its dir removed on exit, pass or fail.
set -euo pipefail
cd "$(dirname "$0")/.."

# PostgreSQL's server binaries: $DIRSYNC_TEST_PG_BIN, else the newest Debian
# /usr/lib/postgresql/N/bin (the package does not put initdb on PATH), else initdb's dir on PATH.
pg_bin=${DIRSYNC_TEST_PG_BIN:-}
if [ -z "$pg_bin" ]; then
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ]; then pg_bin=$dir; break; fi
  done
fi
if [ -z "$pg_bin" ] && command -v initdb >/dev/null 2>&1; then
  pg_bin=$(dirname "$(readlink -f "$(command -v initdb)")")
fi
for tool in initdb pg_ctl postgres psql pg_isready; do
  if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/$tool" ]; then
    echo "scripts/test.sh: no PostgreSQL server binaries (initdb, pg_ctl, postgres, psql, pg_isready) in ${pg_bin:-/usr/lib/postgresql/*/bin or on PATH}." >&2
    echo "  Run .ci/run (it installs them), or install Debian's postgresql (apt-get install postgresql), or set DIRSYNC_TEST_PG_BIN to their directory." >&2
    exit 1
  fi
done
# initdb and postgres refuse to run as root: as root, the cluster runs as the `postgres` user
# that Debian's package creates (or a dedicated system user, made here if there is none).
pg_os_user=
if [ "$(id -u)" = 0 ]; then
  pg_os_user=${DIRSYNC_TEST_PG_OS_USER:-}
  if [ -z "$pg_os_user" ]; then
    if id -u postgres >/dev/null 2>&1; then
      pg_os_user=postgres
    else
      pg_os_user=dirsync-pg
      if ! id -u "$pg_os_user" >/dev/null 2>&1; then
        echo "== creating the system user $pg_os_user (PostgreSQL refuses to run as root)"
        useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$pg_os_user"
      fi
    fi
  fi
fi
as_pg() { if [ -n "$pg_os_user" ]; then runuser -u "$pg_os_user" -- "$@"; else "$@"; fi; }

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

pg_dir=
stop_postgres() {
  local rc=$?
  if [ -n "$pg_dir" ]; then
    if [ -f "$pg_dir/data/postmaster.pid" ]; then
      echo "== stopping the test PostgreSQL ($pg_dir)"
      as_pg "$pg_bin/pg_ctl" stop -D "$pg_dir/data" -m immediate -w -t 60 >/dev/null 2>&1 || true
    fi
    rm -rf "$pg_dir"
  fi
  exit "$rc"
}
trap stop_postgres EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/dirsync-test-pg.XXXXXX")
[ -z "$pg_os_user" ] || chown "$pg_os_user:" "$pg_dir"
echo "== starting a throw-away PostgreSQL ($("$pg_bin/postgres" --version), $pg_dir)"
as_pg "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth=trust --encoding=UTF8 --no-locale \
  >"$pg_dir/initdb.log" 2>&1 || { cat "$pg_dir/initdb.log" >&2; exit 1; }
# trust for local and 127.0.0.1 is initdb's --auth=trust; TCP on 127.0.0.1 only, the unix
# socket in the temp dir (not /var/run/postgresql). fsync=off: the data is thrown away, and a
# crash of postgres alone (no OS crash) loses nothing with it.
cat >>"$pg_dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$pg_dir'
fsync = off
max_connections = 300
CONF
pg_port=
for attempt in 1 2 3 4 5; do
  rm -f "$pg_dir/postgres.log"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  if as_pg "$pg_bin/pg_ctl" start -D "$pg_dir/data" -l "$pg_dir/postgres.log" -o "-p $port" -w -t 60 >/dev/null; then
    pg_port=$port
    break
  fi
  # Another process took the port between the probe and postgres's bind: try a new one.
  grep -q 'could not bind\|could not create any TCP/IP sockets' "$pg_dir/postgres.log" || break
done
if [ -z "$pg_port" ] || ! "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" -t 30; then
  echo "scripts/test.sh: the test PostgreSQL did not start; its log ($pg_dir/postgres.log):" >&2
  cat "$pg_dir/postgres.log" >&2 || true
  exit 1
fi
export DIRSYNC_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
export DIRSYNC_TEST_PG_BIN="$pg_bin"
[ -z "$pg_os_user" ] || export DIRSYNC_TEST_PG_OS_USER="$pg_os_user"
echo "== DIRSYNC_TEST_DATABASE_URL=$DIRSYNC_TEST_DATABASE_URL"

# Every package, unless the arguments pick some (`scripts/test.sh -p dirsync-testkit`: cargo
# would otherwise let --workspace win over -p).
scope=(--workspace)
for arg in "$@"; do
  case $arg in
    --) break ;;
    -p | -p* | --package | --package=*) scope=() ;;
  esac
done
cargo test "${scope[@]}" --all-targets "$@"
