#!/usr/bin/env bash
# Builds the release binary for Linux x86_64 into dist/ with its sha256 checksum.
#
# Static (musl) when the x86_64-unknown-linux-musl target is installed (`rustup target add
# x86_64-unknown-linux-musl`): it then runs on any Linux x86_64. Otherwise the glibc build,
# and the script prints the newest glibc symbol version it needs (its minimum glibc).
# Default features (the demo and its loopback stub) are kept: `molecule-mcp demo` is how a
# newcomer sees it work without a platform.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/musl-env.sh
. scripts/musl-env.sh
version=$(cargo metadata --format-version 1 --no-deps --locked --offline \
  | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "molecule-mcp-cli"))')
mkdir -p dist

if musl_installed; then
  cargo build --locked --release -p molecule-mcp-cli --bin molecule-mcp --target "$musl"
  built="${CARGO_TARGET_DIR:-target}/$musl/release/molecule-mcp"
  name="molecule-mcp-$version-$musl"
  if ! ldd "$built" 2>&1 | grep -qE 'statically linked|not a dynamic executable'; then
    echo "dist: $built is not static:" >&2
    ldd "$built" >&2 || true
    exit 1
  fi
  echo "dist: static musl binary"
else
  echo "dist: the $musl target is not installed (rustup target add $musl); building for glibc" >&2
  cargo build --locked --release -p molecule-mcp-cli --bin molecule-mcp
  built="${CARGO_TARGET_DIR:-target}/release/molecule-mcp"
  name="molecule-mcp-$version-x86_64-unknown-linux-gnu"
  min_glibc=$(objdump -T "$built" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -t. -k1,1n -k2,2n -k3,3n -u | tail -1)
  echo "dist: glibc binary; needs glibc $min_glibc or newer"
fi

cp "$built" "dist/$name"
(cd dist && sha256sum "$name" > "$name.sha256")
"dist/$name" --version
ls -l "dist/$name"
cat "dist/$name.sha256"
