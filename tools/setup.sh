#!/usr/bin/env bash
# Installs what building and testing Tally needs on Debian 12, and nothing more: the toolchain and
# libraries, and Node.js (>= 18) with npm for the compatibility tests, which run the official
# TigerBeetle Node client. Idempotent: it only acts on what is missing, and a node already on PATH
# that is new enough is used as it is. As root it runs apt-get; otherwise it prints the exact
# command to run and fails, so a non-root user is never left guessing.
set -euo pipefail

node_major_min=18  # tigerbeetle-node 0.17 declares "engines": {"node": ">=18.0.0"}.

packages=(
  g++ cmake make pkg-config git
  liburing-dev libhwy-dev libmimalloc-dev libbenchmark-dev doctest-dev
)

package_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

node_new_enough() {
  command -v node >/dev/null &&
    node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= Number(process.argv[1])
      ? 0 : 1)' "$node_major_min" 2>/dev/null
}

missing=()
for package in "${packages[@]}"; do
  if ! package_installed "$package"; then
    missing+=("$package")
  fi
done

# A node that is new enough may come from elsewhere (NodeSource, nvm) with its own npm; Debian's
# npm package would pull Debian's nodejs in beside it, so it is only added when Debian's nodejs is
# the node in use.
if ! node_new_enough; then
  for package in nodejs npm; do
    package_installed "$package" || missing+=("$package")
  done
elif ! command -v npm >/dev/null; then
  if package_installed nodejs; then
    missing+=(npm)
  else
    echo "tools/setup.sh: node $(node --version) is on PATH without npm; install the npm that" \
      "belongs to it" >&2
    exit 1
  fi
fi

if ((${#missing[@]} > 0)); then
  command="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "tools/setup.sh: missing Debian packages: ${missing[*]}" >&2
    echo "Run as root:" >&2
    echo "  $command" >&2
    exit 1
  fi

  echo "tools/setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# An older node earlier on PATH would still shadow Debian's after the install.
if ! node_new_enough; then
  echo "tools/setup.sh: node on PATH is $(node --version 2>/dev/null || echo absent)," \
    "need >= $node_major_min (found at $(command -v node || echo nowhere))" >&2
  exit 1
fi
