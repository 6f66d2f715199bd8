#!/usr/bin/env bash
# Start-up profile of the release binary with everything on (heartbeat and inbox against the
# loopback stub), for BENCHMARKS.md "Start-up profile". Not part of CI or the tests.
#
#   bash scripts/profile-startup.sh strace -f -tt -o /tmp/startup.strace
#   bash scripts/profile-startup.sh strace -f -c -o /tmp/startup.strace-c
#   bash scripts/profile-startup.sh perf stat -e page-faults,task-clock,context-switches
#   SMAPS=1 bash scripts/profile-startup.sh     # resident memory by mapping, 1 s after start
#   EXTRA_ENV=MALLOC_ARENA_MAX=1 SMAPS=1 bash scripts/profile-startup.sh
#   PLATFORM_SCHEME=https bash scripts/profile-startup.sh ...   # the stub's port spoken to in TLS
#
# The arguments are a wrapper command put in front of molecule-mcp (none: run it bare). It
# gets `initialize`, `notifications/initialized` and `tools/list` on a pipe, stdin stays open
# HOLD seconds (default 1.5), then EOF ends it. Needs `bash scripts/bench.sh` (or the same
# cargo build) first: it uses target/release/{molecule-mcp,bench}.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${BIN:-target/release/molecule-mcp}"
work="$(mktemp -d)"
# The stub serves until its stdin (fd 3 here) closes; it is also ended by its pid on exit,
# in case a child still holds fd 3.
mkfifo "$work/stub-in"
target/release/bench --serve-stub <"$work/stub-in" >"$work/stub.env" 2>/dev/null &
stub=$!
trap 'exec 3>&-; kill "$stub" 2>/dev/null; rm -rf "$work"' EXIT
exec 3>"$work/stub-in"
for _ in $(seq 50); do grep -q TOKEN "$work/stub.env" 2>/dev/null && break; sleep 0.1; done
# shellcheck disable=SC1091
. "$work/stub.env"
if [ "${PLATFORM_SCHEME:-http}" = https ]; then PLATFORM_URL="${PLATFORM_URL/http:/https:}"; fi
mkdir -m 700 "$work/state"
requests='{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"profile","version":"0"}}}
{"jsonrpc":"2.0","method":"notifications/initialized"}
{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
run() {
  { printf '%s\n' "$requests"; sleep "${HOLD:-1.5}"; } |
    env -i PATH="$PATH" HOME="$work" PLATFORM_URL="$PLATFORM_URL" WORKSPACE_ID="$WORKSPACE_ID" \
      MOLECULE_WORKSPACE_TOKEN="$MOLECULE_WORKSPACE_TOKEN" CONFIGS_DIR="$work/state" ${EXTRA_ENV:-} \
      "$@" "$bin" | cat >/dev/null
}
if [ -n "${SMAPS:-}" ]; then
  run "$@" &
  runner=$!
  sleep 1
  pid="$(pgrep -n -f "^$bin\$")"
  grep -E 'VmHWM|RssAnon|RssFile|Threads' "/proc/$pid/status"
  awk '/^[0-9a-f]+-/{n=$6; if(n=="")n="[anon]"} /^Rss:/{r[n]+=$2} END{for(n in r) if(r[n]) printf "%8d kB  %s\n", r[n], n}' \
    "/proc/$pid/smaps" | sort -nr
  wait "$runner"
else
  run "$@"
fi
