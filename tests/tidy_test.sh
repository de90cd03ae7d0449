#!/usr/bin/env bash
# Proves tools/tidy fails on each kind of violation it claims to catch, and passes a clean tree.
# Each case builds a small tree in a temporary folder with exactly one planted violation.
set -euo pipefail
root=$(cd "${1:-$(dirname "$0")/..}" && pwd)
tidy="$root/tools/tidy"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failures=0

# A minimal clean tree: one logic header, one io header, one public header.
make_tree() {
  local tree=$1
  mkdir -p "$tree/include/tally" "$tree/src/vsr" "$tree/src/state_machine" "$tree/journal" \
    "$tree/io"
  printf '#pragma once\nnamespace tally { inline int answer() { return 42; } }\n' \
    > "$tree/include/tally/answer.hpp"
  printf '#pragma once\n#include "tally/answer.hpp"\n' > "$tree/src/vsr/replica.hpp"
  printf '#pragma once\n#include <sys/types.h>\n' > "$tree/io/loop.hpp"
}

# expect NAME pass|fail TREE [PATTERN]: a failure must also name the planted problem.
expect() {
  local name=$1 want=$2 tree=$3 pattern=${4:-}
  if "$tidy" "$tree" >"$scratch/$name.log" 2>&1; then got=pass; else got=fail; fi
  if [[ "$got" != "$want" ]]; then
    echo "FAILED: $name: tidy should $want, it did $got" >&2
    cat "$scratch/$name.log" >&2
    failures=$((failures + 1))
  elif [[ -n "$pattern" ]] && ! grep -qE "$pattern" "$scratch/$name.log"; then
    echo "FAILED: $name: tidy failed without reporting /$pattern/" >&2
    cat "$scratch/$name.log" >&2
    failures=$((failures + 1))
  else
    echo "ok: $name ($want)"
  fi
}

case_tree() {
  local tree="$scratch/$1"
  make_tree "$tree"
  echo "$tree"
}

expect clean pass "$(case_tree clean)"

tree=$(case_tree vsr_includes_io)
printf '#pragma once\n#include "io/loop.hpp"\n' > "$tree/src/vsr/bad.hpp"
expect vsr_includes_io fail "$tree" 'src/vsr/bad.hpp:2: logic'

tree=$(case_tree state_machine_includes_unistd)
printf '#include <unistd.h>\nint f();\n' > "$tree/src/state_machine/bad.cpp"
expect state_machine_includes_unistd fail "$tree" 'bad.cpp:1: logic'

tree=$(case_tree journal_includes_liburing)
printf '#include <liburing.h>\n' > "$tree/journal/bad.cpp"
expect journal_includes_liburing fail "$tree" 'journal/bad.cpp:1: logic'

tree=$(case_tree journal_includes_sys)
printf '#include <sys/stat.h>\n' > "$tree/journal/bad.cpp"
expect journal_includes_sys fail "$tree" 'journal/bad.cpp:1: logic'

tree=$(case_tree vsr_uses_real_clock)
printf '#include <chrono>\n' > "$tree/src/vsr/clock.cpp"
expect vsr_uses_real_clock fail "$tree" 'clock.cpp:1: logic'

tree=$(case_tree state_machine_uses_rand)
printf 'int f() { return rand(); }\n' > "$tree/src/state_machine/bad.cpp"
expect state_machine_uses_rand fail "$tree" 'bad.cpp:1: banned'

tree=$(case_tree vsr_uses_unordered_map)
printf 'std::unordered_map<int, int> table;\n' > "$tree/src/vsr/bad.cpp"
expect vsr_uses_unordered_map fail "$tree" 'bad.cpp:1: banned'

tree=$(case_tree io_includes_vsr)
printf '#pragma once\n#include "src/vsr/replica.hpp"\n' > "$tree/io/bad.hpp"
expect io_includes_vsr fail "$tree" 'io/bad.hpp:2: io/ must not'

tree=$(case_tree header_not_self_contained)
printf '#pragma once\ninline std::size_t f() { return sizeof(int); }\n' \
  > "$tree/include/tally/bad.hpp"
expect header_not_self_contained fail "$tree" 'bad.hpp: does not compile'

tree=$(case_tree long_line)
printf '// %0105d\n' 0 > "$tree/src/vsr/long.cpp"
expect long_line fail "$tree" 'long.cpp:1: line longer'

tree=$(case_tree test_file_may_use_io)
printf '#include "io/loop.hpp"\n' > "$tree/journal/journal_test.cpp"
expect test_file_may_use_io pass "$tree"

tree=$(case_tree utf8_line_of_100_columns)
printf '// %s\n' "$(printf '→%.0s' $(seq 1 97))" > "$tree/src/vsr/utf8.cpp"
expect utf8_line_of_100_columns pass "$tree"

if ((failures > 0)); then
  echo "$failures tidy case(s) failed" >&2
  exit 1
fi
