#!/usr/bin/env bash
# Long fuzzing run (NOT part of CI, which only replays the committed corpora through
# tests/tests/corpus_replay.rs).
#
#   bash scripts/fuzz.sh [seconds per target, default 600] [target ...]
#
# Runs each cargo-fuzz target for the given time on stable (RUSTC_BOOTSTRAP=1 unlocks the
# nightly flags cargo-fuzz needs), then minimises its corpus (cargo fuzz cmin) so the grown
# corpus stays small enough to commit. Needs `cargo install cargo-fuzz`. Prints one summary
# line per target; the full libFuzzer logs go to fuzz/logs/<target>.log. Crashes land in
# fuzz/artifacts/<target>/ and make the script exit non-zero.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(session_ops config_validate inbox_ops mcp_frames)
export RUSTC_BOOTSTRAP=1
mkdir -p logs
status=0
for t in "${targets[@]}"; do
  before=$(find "corpus/$t" -type f | wc -l)
  cargo fuzz build "$t" >/dev/null
  if ! cargo fuzz run "$t" -- -max_total_time="$secs" -print_final_stats=1 >"logs/$t.log" 2>&1; then
    status=1
  fi
  cargo fuzz cmin "$t" >>"logs/$t.log" 2>&1 || status=1
  # cmin keeps only what adds coverage; the committed, named seeds are pinned by tests
  # (tests/tests/corpus_replay.rs, session_properties.rs), so put them back.
  git checkout -- "corpus/$t"
  after=$(find "corpus/$t" -type f | wc -l)
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | tail -1 | grep -o '[0-9]*$' || echo '?')
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "logs/$t.log" | tail -1 | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -o 'cov: [0-9]*' "logs/$t.log" | tail -1 | grep -o '[0-9]*$' || echo '?')
  crashes=$(find "artifacts/$t" -type f 2>/dev/null | wc -l)
  echo "$t: ${secs}s, $runs executions ($rate/s), coverage $cov edges, corpus $before -> $after files, $crashes crash artifacts"
done
exit $status
