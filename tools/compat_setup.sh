#!/usr/bin/env bash
# Installs the official TigerBeetle Node client, tigerbeetle-node at exactly the version the
# protocol notes were written against, into tests/compat/node_modules (git-ignored), for the
# compatibility tests. Idempotent and offline-friendly: when that version is already there it
# does nothing and never touches the network. Needs node and npm (tools/setup.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
compat="$root/tests/compat"
package=tigerbeetle-node
version=0.17.9

# Prints the installed version, or nothing when the package is absent or unreadable.
installed_version() {
  node -e 'try { console.log(require(process.argv[1]).version) } catch (error) {}' \
    "$compat/node_modules/$package/package.json" 2>/dev/null || true
}

if [[ "$(installed_version)" == "$version" ]]; then
  exit 0
fi
for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "tools/compat_setup.sh: $tool is missing; run tools/setup.sh first" >&2
    exit 1
  fi
done

# Two builds' ctest runs may reach this at the same moment; npm writing one node_modules from two
# processes could leave it half-installed, so installs take turns on a lock held on the folder.
exec 9<"$compat"
flock 9
if [[ "$(installed_version)" == "$version" ]]; then
  exit 0
fi

echo "tools/compat_setup.sh: installing $package@$version into tests/compat/node_modules"
# --prefix with --no-save and --no-package-lock: the folder gets node_modules and nothing else,
# so there is no package.json or lock file to keep in git; the version is pinned here instead.
npm install --prefix "$compat" --no-save --no-package-lock --no-audit --no-fund \
  --loglevel=error "$package@$version"

got=$(installed_version)
if [[ "$got" != "$version" ]]; then
  echo "tools/compat_setup.sh: npm finished, but $package is at '${got:-absent}'," \
    "expected $version" >&2
  exit 1
fi
# The package carries a prebuilt native binding per platform; loading it here turns a platform
# without one into a clear setup failure instead of a confusing test failure later.
if ! (cd "$compat" && node -e "require('$package')"); then
  echo "tools/compat_setup.sh: $package@$version is installed but does not load here" >&2
  exit 1
fi
