#!/usr/bin/env bash
# Builds and runs every test: the release build first, then the sanitizer build (ASan + UBSan,
# slow assertions on). `--release-only` skips the sanitizer build for a quick local loop. The
# compatibility tests (the official TigerBeetle Node client's suite against real replicas) run in
# the release build only; tests/CMakeLists.txt says why.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
flavours=(release sanitize)
if [[ "${1:-}" == "--release-only" ]]; then
  flavours=(release)
fi

"$root/tools/setup.sh"
# Here rather than only on first use inside ctest, so that a missing network shows up before the
# builds instead of as a failed test at the end of them.
"$root/tools/compat_setup.sh"
for flavour in "${flavours[@]}"; do
  echo "== $flavour build"
  "$root/tools/build.sh" "$flavour"
  echo "== $flavour tests"
  (cd "$root/build/$flavour" && ctest --output-on-failure -j "$(nproc)")
done
echo "== all tests passed"
