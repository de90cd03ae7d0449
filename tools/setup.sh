#!/usr/bin/env bash
# Installs what building and testing Tally needs on Debian 12, and nothing more. Idempotent: it
# only acts on what is missing. As root it runs apt-get; otherwise it prints the exact command to
# run and fails, so a non-root user is never left guessing.
set -euo pipefail

packages=(
  g++ cmake make pkg-config git
  liburing-dev libhwy-dev libmimalloc-dev libbenchmark-dev doctest-dev
)

missing=()
for package in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

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
