#!/usr/bin/env bash
# Configures and builds one flavour of Tally into build/<flavour>:
#   release   optimized, assertions on (the default)
#   debug     -O0, slow assertions, allocation guard in abort mode
#   sanitize  ASan + UBSan, slow assertions
# Usage: tools/build.sh [flavour] [extra cmake --build arguments...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
flavour=${1:-release}
shift || true

case "$flavour" in
  release) options=(-DCMAKE_BUILD_TYPE=Release -DTALLY_SANITIZE=OFF) ;;
  debug) options=(-DCMAKE_BUILD_TYPE=Debug -DTALLY_SANITIZE=OFF) ;;
  sanitize) options=(-DCMAKE_BUILD_TYPE=Debug -DTALLY_SANITIZE=ON) ;;
  *) echo "tools/build.sh: unknown flavour '$flavour' (release, debug, sanitize)" >&2; exit 2 ;;
esac

build="$root/build/$flavour"
cmake -S "$root" -B "$build" "${options[@]}" >/dev/null
cmake --build "$build" -j "$(nproc)" "$@"
