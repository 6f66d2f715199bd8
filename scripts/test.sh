#!/usr/bin/env bash
# The project's test command (README): the whole workspace, including the end-to-end tests
# that spawn the real `molecule-mcp` binary against the loopback platform stub and the
# corpus replay of the fuzz targets.
set -euo pipefail
cd "$(dirname "$0")/.."
# The binary without default features (no demo, no stub), kept as
# target/debug/molecule-mcp-no-default-features for tests/tests/product_dependencies.rs.
# Only the cli is rebuilt for it; the default build below puts target/debug/molecule-mcp back.
cargo build --locked -p molecule-mcp-cli --bin molecule-mcp --no-default-features
bin="${CARGO_TARGET_DIR:-target}/debug"
cp "$bin/molecule-mcp" "$bin/molecule-mcp-no-default-features"
# The e2e tests spawn target/debug/molecule-mcp; build it first so they never race the build.
cargo build --locked -p molecule-mcp-cli --bin molecule-mcp
cargo test --workspace --locked "$@"
