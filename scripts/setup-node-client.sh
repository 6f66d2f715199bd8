#!/usr/bin/env bash
# Installs the TypeScript MCP SDK (version pinned by tests/node/package-lock.json) into
# tests/node/node_modules, used as a scripted real MCP client by tests/tests/node_client.rs.
# Idempotent and quick when already installed. Without node/npm, or when the registry cannot
# be reached (after one retry), it says so and exits 0: that test then reports itself as
# SKIPPED with the reason instead of failing the suite.
set -euo pipefail
cd "$(dirname "$0")/../tests/node"
want="$(sed -n 's/.*"@modelcontextprotocol\/sdk": "\([^"]*\)".*/\1/p' package.json | head -n 1)"
have="$(node -p "require('./node_modules/@modelcontextprotocol/sdk/package.json').version" 2>/dev/null || true)"
if [ -n "$want" ] && [ "$have" = "$want" ]; then
  echo "TypeScript MCP SDK $have already installed"
  exit 0
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node/npm not found: the TypeScript client test will be SKIPPED" >&2
  exit 0
fi
for attempt in 1 2; do
  if timeout 180 npm ci --no-audit --no-fund --loglevel=error; then
    node -p "'TypeScript MCP SDK ' + require('./node_modules/@modelcontextprotocol/sdk/package.json').version"
    exit 0
  fi
  echo "npm ci failed (attempt $attempt of 2)" >&2
  sleep 2
done
echo "could not install @modelcontextprotocol/sdk from the npm registry: the TypeScript client test will be SKIPPED" >&2
exit 0
