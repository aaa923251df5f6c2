#!/bin/sh
# Restart at scale: one node with N idle agents (counter, ticking every
# 10 minutes) is killed with SIGKILL and started again; the figure is the
# time from the new outlastd's exec until every agent has resumed (its
# RESUME step's checkpoint committed: the node's checkpoint counter since
# start reaches N).  Beside it, in the same run, the anchors: the same
# node restarted with no agents (what starting costs at all), and raw
# SQLite reading every head checkpoint body of the same database with the
# sqlite3 shell.
#
#   bench/run-restart.sh [N...]        (default: 10000 100000)
#   REPS=3 BUILD=build-bench bench/run-restart.sh 100000
#   OL_KEEP_TMP=1 ...                  (keep the work dir afterwards)
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$src/build-bench}
jobs=${JOBS:-2}
reps=${REPS:-3}
. "$src/bench/lib.sh"
[ "${SKIP_BUILD:-0}" = 1 ] || bench_build runtime/bin/outlastd runtime/bin/outlast \
    runtime/bin/outlast-agent-host agents/counter.so
bench_workdir restart
# OL_KEEP_TMP=1 keeps the work dir (its databases, logs) for a look or a
# profile afterwards.
if [ "${OL_KEEP_TMP:-0}" = 1 ]; then
    trap - EXIT INT TERM
    echo "# work dir kept: $work"
fi
bench_header
d="$build/runtime/bin/outlastd"
o="$build/runtime/bin/outlast"
[ $# -gt 0 ] || set -- 10000 100000

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# Checkpoints the running node committed since it started.
ckpts() {
    "$o" --data-dir "$1" --timeout 2000 --json status 2>/dev/null |
        sed -n 's/.*"checkpoints": *\([0-9]*\).*/\1/p' | head -1
}

# Start the node of $1 and wait until it has committed $2 checkpoints
# (at most 300 s); prints the ms it took.
start_until() {
    t0=$(now_ms)
    "$d" --config "$1/node.ini" >>"$1/log" 2>&1 &
    echo $! >"$1/pid"
    i=0
    while [ $i -lt 6000 ]; do
        got=$(ckpts "$1/data")
        [ -n "$got" ] && [ "$got" -ge "$2" ] && break
        sleep 0.05
        i=$((i + 1))
    done
    echo $(( $(now_ms) - t0 ))
}

kill9() { kill -9 "$(cat "$1/pid")" 2>/dev/null || true; sleep 0.3; }

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }

printf '%-8s %12s %12s %12s %8s\n' agents resume_ms empty_ms sqlite_ms ratio
for n in "$@"; do
    w="$work/n$n"
    mkdir -p "$w"
    cat >"$w/node.ini" <<INI
[node]
id = 1
data_dir = $w/data
plugin_dir = $build/agents
log_level = warn
INI
    start_until "$w" 0 >/dev/null
    "$o" --data-dir "$w/data" --timeout 900000 spawn counter --prefix c \
        --count "$n" --config '{"interval_ms": 600000}' >/dev/null
    e="$work/e$n"
    mkdir -p "$e"
    sed "s|$w|$e|" "$w/node.ini" >"$e/node.ini"
    start_until "$e" 0 >/dev/null
    r=""; z=""; q=""
    for _ in $(seq "$reps"); do
        kill9 "$w"
        r="$r $(start_until "$w" "$n")"
        kill9 "$e"
        z="$z $(start_until "$e" 0)"
        t0=$(now_ms)
        sqlite3 "$w/data/outlast.db" "SELECT count(*), sum(length(c.body)) FROM checkpoints c JOIN heads h ON h.agent = c.agent AND h.seq = c.seq" >/dev/null
        q="$q $(( $(now_ms) - t0 ))"
    done
    kill9 "$w"; kill9 "$e"
    rm=$(echo $r | tr ' ' '\n' | median)
    zm=$(echo $z | tr ' ' '\n' | median)
    qm=$(echo $q | tr ' ' '\n' | median)
    printf '%-8s %12s %12s %12s %8s\n' "$n" "$rm" "$zm" "$qm" \
        "$(awk -v a="$rm" -v b="$qm" 'BEGIN {printf "%.1f", (b > 0 ? a / b : 0)}')"
    echo "# $n: resume runs (ms):$r; empty:$z; sqlite:$q"
done
