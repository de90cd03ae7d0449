# Shared by the CLI tests (sourced, not run): expect NAME CODE PATTERN COMMAND... runs COMMAND
# and checks its exit status is CODE and its output (both streams) matches the regex PATTERN,
# counting failures in $failures.
failures=0

expect() {
  local name=$1 code=$2 pattern=$3
  shift 3
  local output status
  output=$("$@" 2>&1)
  status=$?
  if [[ $status -ne $code ]]; then
    echo "FAILED: $name: exit $status, expected $code" >&2
    echo "$output" >&2
    failures=$((failures + 1))
  elif ! grep -qE -- "$pattern" <<<"$output"; then
    echo "FAILED: $name: output does not match /$pattern/" >&2
    echo "$output" >&2
    failures=$((failures + 1))
  else
    echo "ok: $name"
  fi
}
