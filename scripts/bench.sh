#!/usr/bin/env bash
# The benchmark command (BENCHMARKS.md is made from its output). Builds the release binary and
# the bench programs (bench, floor, core_memory), then runs every section and prints a Markdown report on stdout
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
BENCH_COMMAND="bash scripts/bench.sh${*:+ $*}" exec target/release/bench --bin target/release/molecule-mcp "$@"
