#!/usr/bin/env bash
# The fault soak (tests/src/bin/soak.rs): the release binary against the loopback platform stub
# with seeded random faults, SIGKILL restarts and an agent draining the inbox. Not part of CI
# or the tests; exits non-zero if a message was lost or delivered again after its pop.
#
#   bash scripts/soak.sh                 # 30 minutes (the default)
#   bash scripts/soak.sh --minutes 1     # a quick try
#   bash scripts/soak.sh --seed 1234     # replay a fault schedule (the seed is printed)
#
# The report goes to stdout, progress to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p molecule-mcp-cli --bin molecule-mcp -p molecule-mcp-tests --bin soak >&2
exec target/release/soak --bin target/release/molecule-mcp "$@"
