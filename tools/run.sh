#!/usr/bin/env bash
# The main job: set up, build, and run Tally. Until the server exists (a later issue) this prints
# `tally version` and runs the checksum benchmark.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/tools/setup.sh"
"$root/tools/build.sh" release
"$root/build/release/src/cli/tally" version
"$root/build/release/bench/checksum_benchmark" --benchmark_min_time=0.2
