#!/usr/bin/env bash
# Compatibility: runs the official TigerBeetle Node client's own test suite (tigerbeetle-node
# 0.17.9, dist/test.js) against a fresh, real Tally cluster of REPLICA_COUNT replicas on
# 127.0.0.1. Passes when the suite passes and every replica was still running at its end and then
# stopped cleanly (exit 0 on SIGTERM): a backup that crashes while the primary answers is a
# failure too.
#
# Ports are asked of the kernel, so that runs in parallel (two builds, CI) do not collide. The
# data files (about 7 GiB each, preallocated) are made in WORK_DIR, which must be on a real
# filesystem (O_DIRECT: not tmpfs), and are deleted however the run ends; the replicas' logs stay
# there, and are printed when the run fails.
#
# Usage: tests/compat/node_suite.sh TALLY_BINARY WORK_DIR REPLICA_COUNT
set -euo pipefail

if (($# != 3)); then
  echo "usage: $0 TALLY_BINARY WORK_DIR REPLICA_COUNT" >&2
  exit 2
fi
tally=$1
work=$2
replica_count=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
package="$root/tests/compat/node_modules/tigerbeetle-node"

if [[ ! "$replica_count" =~ ^[1-6]$ ]]; then
  echo "node_suite: REPLICA_COUNT must be 1..6, got '$replica_count'" >&2
  exit 2
fi
if [[ ! -x "$tally" ]]; then
  echo "node_suite: $tally is not an executable" >&2
  exit 2
fi
tally=$(realpath "$tally")

# Limits, in seconds. Together they stay under the ctest TIMEOUT (tests/CMakeLists.txt), so that
# this script, not ctest's SIGKILL, ends a stuck run, and the trap below still deletes the files.
startup_timeout=120  # Every replica prefaults about 3.8 GiB before it listens.
suite_timeout=300    # The suite takes about 8 s against a healthy single replica.
stop_timeout=20      # SIGTERM ends a replica at its next tick.
attempt_count=3      # A kernel-given port can be taken by someone else before tally binds it.

# Once per fresh clone: the client package (a no-op, without network, when it is there).
"$root/tools/compat_setup.sh"

mkdir -p "$work"
work=$(cd "$work" && pwd)
pids=()
suite_pid=
data_files=()
for ((replica = 0; replica < replica_count; replica++)); do
  data_files+=("$work/0_$replica.tally")
done

log_file() { echo "$work/replica_$1.log"; }

print_logs() {
  for ((replica = 0; replica < replica_count; replica++)); do
    local log
    log=$(log_file "$replica")
    echo "---- replica $replica log ($log), last 200 lines:" >&2
    if [[ -f "$log" ]]; then tail -n 200 "$log" >&2; else echo "(none)" >&2; fi
  done
  echo "---- end of logs" >&2
}

# stop_servers: SIGTERM to each replica still running, SIGKILL to any that outlives
# stop_timeout. Returns 1 if any replica did not exit 0 (a crash earlier, or a dirty stop).
stop_servers() {
  local clean=0 pid replica status deadline
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  deadline=$((SECONDS + stop_timeout))
  for replica in "${!pids[@]}"; do
    pid=${pids[$replica]}
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "node_suite: replica $replica did not stop within ${stop_timeout}s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    status=0
    wait "$pid" 2>/dev/null || status=$?
    if ((status != 0)); then
      echo "node_suite: replica $replica exited with status $status" >&2
      clean=1
    fi
  done
  pids=()
  return "$clean"
}

cleanup() {
  local status=$?
  trap - EXIT
  if [[ -n "$suite_pid" ]]; then
    kill -TERM "$suite_pid" 2>/dev/null || true
  fi
  if ((${#pids[@]} > 0)); then
    stop_servers || true
  fi
  rm -f "${data_files[@]}"
  exit "$status"
}
trap cleanup EXIT
# An interrupt or ctest's polite stop goes through the EXIT trap, which deletes the data files.
trap 'exit 130' INT
trap 'exit 143' TERM

# free_ports COUNT: COUNT distinct ports on 127.0.0.1 that were free a moment ago, comma
# separated. All are held open until the last is chosen, so the kernel gives distinct ones.
free_ports() {
  node -e '
    const net = require("net");
    const count = Number(process.argv[1]);
    const servers = [];
    const next = () => {
      if (servers.length === count) {
        console.log(servers.map((server) => server.address().port).join(","));
        servers.forEach((server) => server.close());
        return;
      }
      const server = net.createServer();
      server.on("error", (error) => { console.error(error.message); process.exit(1); });
      server.listen(0, "127.0.0.1", () => { servers.push(server); next(); });
    };
    next();' "$1"
}

# start_cluster: formats fresh data files, starts every replica, and waits for each one's
# "listening on" line. Returns 0 when all listen, 2 when a replica found its port taken (worth
# another attempt with other ports), 1 on any other failure.
start_cluster() {
  local replica log deadline
  rm -f "${data_files[@]}"
  for ((replica = 0; replica < replica_count; replica++)); do
    # Checked by hand: set -e does not apply inside a function called from `||`.
    if ! "$tally" format --cluster=0 --replica="$replica" --replica-count="$replica_count" \
        "${data_files[$replica]}" >/dev/null; then
      echo "node_suite: cannot format ${data_files[$replica]} (tally says why above)" >&2
      return 1
    fi
  done
  for ((replica = 0; replica < replica_count; replica++)); do
    log=$(log_file "$replica")
    # Made here, not by the child's redirection, so that the wait below never greps a file
    # that does not exist yet.
    : >"$log"
    "$tally" start --addresses="$addresses" "${data_files[$replica]}" >"$log" 2>&1 &
    pids+=($!)
  done

  deadline=$((SECONDS + startup_timeout))
  for ((replica = 0; replica < replica_count; replica++)); do
    log=$(log_file "$replica")
    until grep -q "listening on" "$log"; do
      if ! kill -0 "${pids[$replica]}" 2>/dev/null; then
        if grep -q "address is in use" "$log"; then
          echo "node_suite: replica $replica found its port taken" >&2
          return 2
        fi
        echo "node_suite: replica $replica exited before listening" >&2
        return 1
      fi
      if ((SECONDS >= deadline)); then
        echo "node_suite: replica $replica not listening after ${startup_timeout}s" >&2
        return 1
      fi
      sleep 0.2
    done
  done
}

for ((attempt = 1; ; attempt++)); do
  addresses=$(free_ports "$replica_count")
  echo "node_suite: $replica_count replica(s) on 127.0.0.1 ports $addresses"
  started=0
  start_cluster || started=$?
  if ((started == 0)); then
    break
  fi
  if ((started == 2 && attempt < attempt_count)); then
    stop_servers || true
    continue
  fi
  print_logs
  exit 1
done

echo "node_suite: cluster up; running the tigerbeetle-node suite (TB_ADDRESS=$addresses)"
# The suite runs in the background while this watches the replicas: a client whose cluster has
# died retries forever, so a replica's death ends the suite at once rather than at the timeout.
# A replica that dies fails the run even if the suite could have passed without it.
(cd "$package" &&
  TB_ADDRESS="$addresses" exec timeout --kill-after=10 "$suite_timeout" node dist/test.js) &
suite_pid=$!
servers_status=0
while kill -0 "$suite_pid" 2>/dev/null && ((servers_status == 0)); do
  for replica in "${!pids[@]}"; do
    if ! kill -0 "${pids[$replica]}" 2>/dev/null; then
      echo "node_suite: replica $replica exited during the suite; stopping the suite" >&2
      servers_status=1
      kill -TERM "$suite_pid" 2>/dev/null || true
    fi
  done
  sleep 0.5
done
suite_status=0
wait "$suite_pid" || suite_status=$?
suite_pid=
if ((suite_status == 124)); then
  echo "node_suite: the suite did not finish within ${suite_timeout}s" >&2
fi
stop_servers || servers_status=1

if ((suite_status != 0 || servers_status != 0)); then
  echo "node_suite: FAILED: suite exit status $suite_status;" \
    "replicas $( ((servers_status == 0)) && echo "stopped cleanly" || echo "did not")" >&2
  print_logs
  # The suite's own status when it failed on its own (a timeout stays visible as 124); 1 when a
  # replica failed, since the suite's status then only says that it was stopped.
  exit $((servers_status == 0 ? suite_status : 1))
fi
echo "node_suite: passed with $replica_count replica(s)"
