#!/usr/bin/env bash
# The engine's own cost per call on the embedded SQLite journal, measured on
# the release binary alone: `runbook run` of a fan-out (stop, wait until
# paused, terminate over NODES DI nodes, concurrency 64, no client-side rate
# limit) against `runbook sim` in its own process, so none of the
# simulator's CPU is counted.
#
#   CPU per call    user + system time of the `runbook run` process (wait4's
#                   rusage, from GNU time) / calls journaled
#   peak RSS        of that process (GNU time's maximum resident set size)
#   syscalls        strace -c -f of a second run: all threads, every syscall,
#                   and `pwrite64` (SQLite's writes to its WAL), per call
#
# The journal is on the real disk (under target/), not a tmpfs, so its
# fsyncs are real. strace slows the process down, so it is a run of its own.
#
# Usage: cargo build --release && bash scripts/engine_cost.sh
#   NODES=2000 (3 calls each: 6,000 calls), ROUNDS=3 (the median is shown),
#   RUNBOOK_BIN=target/release/runbook, STRACE=0 to skip the strace run,
#   PERF=1 to also write a `perf record -g` profile (perf.data in the work dir).
set -euo pipefail
cd "$(dirname "$0")/.."
NODES=${NODES:-2000}
ROUNDS=${ROUNDS:-3}
BIN=$(realpath "${RUNBOOK_BIN:-target/release/runbook}")
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release first" >&2; exit 2; }
work=$(mktemp -d -p target engine-cost.XXXXXX)
sim_pid=
cleanup() {
    [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
    [ "${KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

export ALIBABA_CLOUD_ACCESS_KEY_ID=bench ALIBABA_CLOUD_ACCESS_KEY_SECRET=bench-secret
printf 'delays:\n  all: 0s\n' >"$work/fixtures.yaml"
ids=$(seq -s, 100001 $((100000 + NODES)))
cat >"$work/fanout.yaml" <<EOF
name: engine-cost
params:
  file_ids: { type: array, items: integer, default: [$ids] }
defaults:
  region: cn-shanghai
  retry: { attempts: 5, backoff: exponential, delay: 10ms, max_delay: 100ms, jitter: true }
  for_each_concurrency: 64
concurrency: 64
steps:
  - id: stop
    for_each: "{{params.file_ids}}"
    call: dataworks.StopDISyncInstance
    with: { ProjectId: 10000, FileId: "{{item}}", TaskType: DI_REALTIME }
  - id: paused
    needs: [stop]
    for_each: "{{params.file_ids}}"
    wait:
      call: dataworks.GetDISyncInstanceInfo
      with: { ProjectId: 10000, FileId: "{{item}}", TaskType: DI_REALTIME }
      until: { select: Data.Status, in: [PAUSE] }
      every: 10ms
      timeout: 1m
  - id: terminate
    needs: [paused]
    for_each: "{{params.file_ids}}"
    call: dataworks.TerminateDISyncInstance
    with: { ProjectId: 10000, FileId: "{{item}}", TaskType: DI_REALTIME }
EOF

# A fresh simulator (a run leaves its nodes terminated); sets `url`.
start_sim() {
    rm -f "$work/sim.out"
    "$BIN" sim --listen 127.0.0.1:0 --auto-create --fixtures "$work/fixtures.yaml" \
        >"$work/sim.out" 2>"$work/sim.err" &
    sim_pid=$!
    url=
    for _ in $(seq 100); do
        url=$(head -n1 "$work/sim.out" 2>/dev/null || true)
        [ -n "$url" ] && return
        sleep 0.1
    done
    echo "the simulator did not start:" >&2
    cat "$work/sim.err" >&2
    exit 1
}

stop_sim() {
    kill "$sim_pid"
    wait "$sim_pid" 2>/dev/null || true
    sim_pid=
}

# One run in a fresh state dir against a fresh simulator; prints the calls
# it journaled.
run() {
    local state=$1
    shift
    start_sim
    "$@" "$BIN" run "$work/fanout.yaml" --endpoint "dataworks=$url" --qps dataworks=0 --yes \
        --state-dir "$state" --jitter-seed 1 >"$state.out" 2>"$state.err" || {
        echo "the run failed:" >&2
        tail -n 20 "$state.err" >&2
        stop_sim
        exit 1
    }
    stop_sim
    sqlite3 "$state/journal.db" "SELECT count(*) FROM attempts"
}

median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

rates=() cpus=() rsss=()
for r in $(seq "$ROUNDS"); do
    calls=$(run "$work/r$r" /usr/bin/time -f '%e %U %S %M' -o "$work/r$r.time")
    read -r wall user sys rss <"$work/r$r.time"
    rates+=("$(echo "$calls / $wall" | bc -l)")
    cpus+=("$(echo "($user + $sys) * 1000000 / $calls" | bc -l)")
    rsss+=("$(echo "$rss / 1024" | bc -l)")
    printf 'round %d: %d calls in %.2f s wall, %.2f s user + %.2f s system, peak RSS %.1f MB\n' \
        "$r" "$calls" "$wall" "$user" "$sys" "$(echo "$rss / 1024" | bc -l)"
done
printf '[release binary, simulator in its own process] fan-out %d nodes x 3 calls, concurrency 64: median %.0f calls/s, median %.1f us CPU per call (runbook process only), median peak RSS %.1f MB\n' \
    "$NODES" "$(printf '%s\n' "${rates[@]}" | median)" \
    "$(printf '%s\n' "${cpus[@]}" | median)" "$(printf '%s\n' "${rsss[@]}" | median)"

if [ "${STRACE:-1}" = 1 ]; then
    calls=$(run "$work/strace" strace -f -c -o "$work/strace.txt")
    total=$(awk '$NF == "total" {print $4}' "$work/strace.txt")
    pwrite=$(awk '$NF == "pwrite64" {print $4}' "$work/strace.txt")
    fsync=$(awk '$NF == "fsync" || $NF == "fdatasync" {n += $4} END {print n + 0}' "$work/strace.txt")
    printf '[strace -f -c] %d calls: %d syscalls (%.1f per call), %d pwrite64 (%.2f per call), %d fsync/fdatasync (%.3f per call)\n' \
        "$calls" "$total" "$(echo "$total / $calls" | bc -l)" "${pwrite:-0}" \
        "$(echo "${pwrite:-0} / $calls" | bc -l)" "$fsync" "$(echo "$fsync / $calls" | bc -l)"
    echo "top syscalls:"
    awk 'NR > 2 && $1 !~ /^-/ && $NF != "total" {print $4, $NF}' "$work/strace.txt" \
        | sort -rn | head -n 8 | sed 's/^/  /'
fi

if [ "${PERF:-0}" = 1 ]; then
    run "$work/perf" perf record ${PERF_ARGS:--g} -o "$work/perf.data" >/dev/null
    echo "perf profile: $work/perf.data (KEEP=1 keeps it)"
fi
