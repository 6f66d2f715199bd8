#!/usr/bin/env bash
# The wheel, end to end: builds it with maturin (`bindings = "bin"`, see pyproject.toml),
# installs it into a fresh venv, and drives the *installed* `molecule-mcp` with the official
# Python `mcp` client against the loopback stub (tests/tests/python_client.rs, pointed at
# the installed binary through MOLECULE_MCP_BIN). Needs .venv from
# scripts/setup-python-client.sh.
#
# Built with the dev profile: what is checked is the packaging (the wheel installs a working
# binary on the venv's PATH), and the dev profile reuses the debug build the test command
# already made, where a release build would take minutes on CI's two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
target="${CARGO_TARGET_DIR:-target}"
venv="$target/wheel-venv"
rm -rf "$venv" "$target/wheels"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "maturin>=1.5,<2"
"$venv/bin/maturin" build --profile dev --out "$target/wheels"
"$venv/bin/pip" install --quiet --disable-pip-version-check "$target/wheels"/molecule_mcp-*.whl
installed="$(cd "$venv/bin" && pwd)/molecule-mcp"
"$installed" --version
MOLECULE_MCP_BIN="$installed" cargo test --locked -p molecule-mcp-tests --test python_client
echo "wheel check: $(($(date +%s) - start)) s"
