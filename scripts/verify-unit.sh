#!/usr/bin/env bash
# Checks systemd/dirsync.service with `systemd-analyze verify`, in a way that works without a
# running systemd (CI containers, as root or not): the unit is copied to a temporary folder
# with its ExecStart binary pointed at a file that exists, and verify runs in that folder.
# Any message verify prints about the unit is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

unit=systemd/dirsync.service
command -v systemd-analyze >/dev/null || {
  echo "verify-unit: systemd-analyze is missing: apt-get install -y systemd" >&2
  exit 2
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# verify insists that ExecStart's binary exists and is executable.
binary="$work/dirsync"
if [ -x target/debug/dirsync ]; then cp target/debug/dirsync "$binary"; else cp /bin/true "$binary"; fi
sed "s|/usr/local/bin/dirsync|$binary|g" "$unit" > "$work/dirsync.service"

export SYSTEMD_LOG_LEVEL=notice SYSTEMD_LOG_COLOR=0 SYSTEMD_PAGER=cat
status=0
output=$(cd "$work" && systemd-analyze verify --man=no "$work/dirsync.service" 2>&1) || status=$?
# Without a running systemd, verify cannot load the units the service is ordered after
# (network-online.target, ...) from the host: those complaints are about the environment,
# not the unit.
problems=$(printf '%s\n' "$output" | grep -v -E '^$|network-online\.target|multi-user\.target|sysinit\.target|basic\.target|shutdown\.target|system\.slice|-\.slice' || true)
if [ -n "$problems" ]; then
  echo "verify-unit: systemd-analyze verify reported problems in $unit:" >&2
  printf '%s\n' "$problems" >&2
  exit 1
fi
if [ "$status" -ne 0 ] && [ -n "$output" ] && [ -z "$problems" ]; then
  echo "verify-unit: ignoring environment-only complaints:"; printf '%s\n' "$output"
elif [ "$status" -ne 0 ]; then
  echo "verify-unit: systemd-analyze verify failed (exit $status) without a message" >&2
  exit 1
fi
echo "verify-unit: $unit OK"
