#!/usr/bin/env bash
# Installs the npm packages of the scripted real-client tests, each pinned by its
# package-lock.json:
#   tests/node         the TypeScript MCP SDK   (tests/tests/node_client.rs)
#   tests/claude-code  the Claude Code CLI      (tests/tests/claude_cli.rs)
# Idempotent and quick when already installed. Without node/npm, or when the registry cannot
# be reached (after one retry), it says so and exits 0: those tests then report themselves as
# SKIPPED with the reason instead of failing the suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# install DIR PACKAGE: `npm ci` in DIR unless PACKAGE is already there at the pinned version.
install() {
  local dir="$1" package="$2" want have
  want="$(node -p "require('./$dir/package.json').dependencies['$package']")"
  have="$(node -p "require('./$dir/node_modules/$package/package.json').version" 2>/dev/null || true)"
  if [ "$have" = "$want" ]; then
    echo "$package $have already installed in $dir"
    return 0
  fi
  for attempt in 1 2; do
    if (cd "$dir" && timeout 300 npm ci --no-audit --no-fund --loglevel=error); then
      echo "$package $want installed in $dir"
      return 0
    fi
    echo "npm ci in $dir failed (attempt $attempt of 2)" >&2
    sleep 2
  done
  echo "could not install $package from the npm registry: its test will be SKIPPED" >&2
}

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node/npm not found: the TypeScript SDK and Claude Code CLI tests will be SKIPPED" >&2
  exit 0
fi
install tests/node @modelcontextprotocol/sdk
install tests/claude-code @anthropic-ai/claude-code
