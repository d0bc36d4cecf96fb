#!/usr/bin/env bash
# Run Molecule scenarios in chains side by side: the scenarios of one chain
# run one after another, the chains at the same time. One scenario keeps
# about one core busy, most of it with Ansible's own work on the controller
# (about 40 ms of CPU a task; process accounting of a Debian 12 `default`
# run, 2026-12-06), so two chains keep this machine's two cores busy and
# halve the wall time, and a third only slows the others. Each
# run keeps Molecule's state (its inventory, SSH key and Ansible log) in a
# directory of its own, build/molecule/<scenario>-<release>, so that one
# scenario can run on two releases at once; their hosts' names differ too.
#
# Usage: run-scenarios.sh "default:bookworm releases:bookworm" "multihost:bookworm"
#
# Each scenario's whole output goes to $TEST_LOG_DIR/<scenario>-<release>.log
# (default build/test-logs) and, prefixed with its name, to stdout. A chain
# stops at its first failed scenario; the others finish. Exits non-zero if
# any scenario failed, after a summary whose last line counts the tests.
set -uo pipefail

logs="${TEST_LOG_DIR:-build/test-logs}"
rm -rf "$logs"
mkdir -p "$logs"
state="$PWD/build/molecule"
# Every run of this suite, for the tests that need to run on one release
# only (molecule/_shared/fixtures.py).
export TEST_RUNS="$*"

run_chain() {
  local run scenario release log started rc
  for run in $1; do
    scenario="${run%%:*}"
    release="${run#*:}"
    log="$logs/$scenario-$release.log"
    started=$(date +%s)
    echo "=== $scenario on $release: started ==="
    # The lock only matters for a run listed in two chains: the second waits.
    MOLECULE_DISTRO="$release" MOLECULE_EPHEMERAL_DIRECTORY="$state/$scenario-$release" \
      flock "$logs/$scenario-$release.lock" molecule test -s "$scenario" 2>&1 \
      | tee "$log" | sed -u "s/^/[$scenario $release] /"
    rc=${PIPESTATUS[0]}
    echo "$scenario $release $rc $(( $(date +%s) - started ))" >>"$logs/results"
    echo "=== $scenario on $release: $([ "$rc" -eq 0 ] && echo passed || echo FAILED) ==="
    [ "$rc" -eq 0 ] || return 1
  done
}

pids=()
for chain in "$@"; do
  run_chain "$chain" &
  pids+=("$!")
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=1
done

# The pytest summary of each scenario's verify step ("== 54 passed in ...").
passed=0
failed=0
echo
echo "scenario     release    result  seconds  tests"
while read -r scenario release rc seconds; do
  summary="$(sed 's/\x1b\[[0-9;]*m//g' "$logs/$scenario-$release.log" \
    | grep -aE '=+ [0-9]+ [a-z]+.* in [0-9.]+s' | tail -n1)"
  p="$(grep -oE '[0-9]+ passed' <<<"$summary" | awk '{n += $1} END {print n + 0}')"
  f="$(grep -oE '[0-9]+ (failed|errors?)' <<<"$summary" | awk '{n += $1} END {print n + 0}')"
  passed=$((passed + p))
  failed=$((failed + f))
  # A scenario that failed outside its tests (converge, idempotence) counts once.
  [ "$rc" -eq 0 ] || [ "$f" -gt 0 ] || failed=$((failed + 1))
  printf '%-12s %-10s %-7s %7s  %s\n' "$scenario" "$release" "$([ "$rc" -eq 0 ] && echo ok || echo FAILED)" "$seconds" "$p passed"
done <"$logs/results"
for chain in "$@"; do
  for run in $chain; do
    grep -q "^${run%%:*} ${run#*:} " "$logs/results" || { echo "${run%%:*} on ${run#*:}: not run (an earlier scenario of its chain failed)"; failed=$((failed + 1)); }
  done
done
echo "molecule: $passed passed, $failed failed"
exit "$status"
