#!/usr/bin/env bash
# The benchmark command (BENCHMARKS.md is made from its output). Builds the release binary and
# the bench programs (bench, floor, core_memory), and the static musl build of molecule-mcp and
# the floor when that target is installed, then runs every section and prints a Markdown report on stdout
# (progress on stderr). Not part of CI or the tests.
#
#   bash scripts/bench.sh              # full run (about 8 minutes on 2 cores, after the build)
#   bash scripts/bench.sh --quick      # smoke run (under 1 minute after the build)
#   bash scripts/bench.sh --only scale # one section (startup, core, tools, scale, latency; comma list)
#   bash scripts/bench.sh > report.md  # keep the report
#
# The Python baseline of the start-up section needs .venv (bash scripts/setup-python-client.sh);
# without it that ratio is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p molecule-mcp-cli --bin molecule-mcp -p molecule-mcp-tests --bin bench --bin floor --bin core_memory >&2
# The build users install (scripts/dist.sh: static musl) and a floor built the same way, so
# the start-up goals are also judged on what ships, like for like (section 1b).
shipped=()
wants_startup=yes
prev=
for arg in "$@"; do
  if [ "$prev" = --only ] && [[ ",$arg," != *,startup,* ]]; then wants_startup=no; fi
  prev=$arg
done
# shellcheck source=scripts/musl-env.sh
. scripts/musl-env.sh
if [ "$wants_startup" = yes ] && musl_installed; then
  cargo build --release --locked -p molecule-mcp-cli --bin molecule-mcp -p molecule-mcp-tests --bin floor --target "$musl" >&2
  out="${CARGO_TARGET_DIR:-target}/$musl/release"
  shipped=(--shipped "$out/molecule-mcp" --shipped-floor "$out/floor")
elif [ "$wants_startup" = yes ]; then
  echo "bench: the $musl target is not installed (rustup target add $musl): the shipped build is not measured" >&2
fi
BENCH_COMMAND="bash scripts/bench.sh${*:+ $*}" exec target/release/bench --bin target/release/molecule-mcp ${shipped[@]+"${shipped[@]}"} "$@"
