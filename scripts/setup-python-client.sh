#!/usr/bin/env bash
# Creates .venv with the official Python `mcp` SDK, used as a scripted real MCP client in the
# end-to-end tests. Idempotent; skips the install when the venv already has it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ] && .venv/bin/python -c "import mcp" 2>/dev/null; then
  echo "python mcp client already installed"
  exit 0
fi
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check "mcp>=2.3,<3"
.venv/bin/python -c "import mcp, importlib.metadata as m; print('mcp', m.version('mcp'))"
