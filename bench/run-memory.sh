#!/bin/sh
# Memory per agent: N idle agents (counter, ticking every 10 minutes) on
# one node, then the same N spread over a 3-node loopback cluster.  For
# each node: the resident set of outlastd and of its agent-host processes
# (VmRSS from /proc), before the agents (the anchor: the same process
# with no agent) and once every agent runs; per agent = the difference
# over the agents that node hosts.  outlastd_kib is the node process
# alone (without its agent hosts); every node of a cluster also keeps the
# state machine's row of every agent, hosted there or not.
#
#   bench/run-memory.sh [N]          (default: 100000)
#   BUILD=build-bench bench/run-memory.sh 30000
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$src/build-bench}
jobs=${JOBS:-2}
. "$src/bench/lib.sh"
[ "${SKIP_BUILD:-0}" = 1 ] || bench_build runtime/bin/outlastd runtime/bin/outlast \
    runtime/bin/outlast-agent-host agents/counter.so
bench_workdir memory
bench_header
d="$build/runtime/bin/outlastd"
o="$build/runtime/bin/outlast"
n=${1:-100000}
base=$((17000 + $$ % 1000 * 10))

# KiB resident of the process $1 alone.
rss_one() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# KiB resident: the process $1 and every child of it (its agent hosts).
rss_tree() {
    kids=$(pgrep -P "$1" 2>/dev/null || true)
    for p in "$1" $kids; do
        awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0
    done | awk '{s += $1} END {print s + 0}'
}

field() { sed -n "s/.*\"$2\": *\([0-9]*\).*/\1/p" "$1" | head -1; }

# Wait (at most 900 s) until node dir $1 reports $2 agents running here.
wait_local() {
    i=0
    while [ $i -lt 9000 ]; do
        "$o" --data-dir "$1" --timeout 5000 --json status >"$1.st" 2>/dev/null || true
        got=$(field "$1.st" local)
        run=$(field "$1.st" running)
        [ -n "$got" ] && [ "$run" = "$2" ] && [ "$got" -ge "${3:-0}" ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    echo "timed out waiting for $2 agents in $1" >&2
    return 1
}

printf '%-8s %-6s %8s %12s %12s %12s %10s %12s\n' setup node agents \
    anchor_kib rss_kib delta_kib b_per_agent outlastd_kib

# One node.
w="$work/one"
mkdir -p "$w"
printf '[node]\nid = 1\ndata_dir = %s/data\nplugin_dir = %s/agents\nlog_level = warn\n' \
    "$w" "$build" >"$w/node.ini"
"$d" --config "$w/node.ini" >"$w/log" 2>&1 &
pid=$!
wait_local "$w/data" 0
a=$(rss_tree $pid)
"$o" --data-dir "$w/data" --timeout 900000 spawn counter --prefix c \
    --count "$n" --config '{"interval_ms": 600000}' >/dev/null
wait_local "$w/data" "$n" "$n"
sleep 2
r=$(rss_tree $pid)
printf '%-8s %-6s %8s %12s %12s %12s %10s %12s\n' single 1 "$n" "$a" "$r" \
    $((r - a)) $(( (r - a) * 1024 / n )) "$(rss_one $pid)"
kill "$pid"; wait "$pid" 2>/dev/null || true

# Three nodes.
for i in 1 2 3; do
    mkdir -p "$work/n$i"
    "$o" keygen --out "$work/n$i/node.key" >"$work/n$i.pub" 2>/dev/null
done
for i in 1 2 3; do
    {
        printf '[node]\nid = %s\ndata_dir = %s/n%s\nplugin_dir = %s/agents\n' \
            "$i" "$work" "$i" "$build"
        printf 'log_level = warn\nlabels = cloud=c%s\n' "$i"
        printf '[cluster]\nname = mem\nlisten = 127.0.0.1:%s\n' $((base + i))
        printf 'election_timeout_ms = 300\nheartbeat_timeout_ms = 50\n'
        printf 'failover_ms = 1000\n'
        for j in 1 2 3; do
            [ "$j" = "$i" ] && continue
            printf '[peer.%s]\naddress = 127.0.0.1:%s\npubkey = %s\n' "$j" \
                $((base + j)) "$(cat "$work/n$j.pub")"
            printf 'labels = cloud=c%s\n' "$j"
        done
    } >"$work/n$i.ini"
done
"$o" cluster init --config "$work/n1.ini" >/dev/null
for i in 1 2 3; do
    "$d" --config "$work/n$i.ini" >"$work/n$i.log" 2>&1 &
    echo $! >"$work/n$i.pid"
done
for i in 1 2 3; do wait_local "$work/n$i" 0; done
for i in 1 2 3; do eval "a$i=$(rss_tree "$(cat "$work/n$i.pid")")"; done
"$o" --data-dir "$work/n1" --timeout 900000 spawn counter --prefix c \
    --count "$n" --config '{"interval_ms": 600000}' --no-wait >/dev/null
# Every agent placed and running somewhere.
i=0
while [ $i -lt 9000 ]; do
    t=0
    for j in 1 2 3; do
        "$o" --data-dir "$work/n$j" --timeout 5000 --json status >"$work/s$j" 2>/dev/null || true
        t=$((t + $(field "$work/s$j" local || echo 0)))
    done
    [ "$t" -ge "$n" ] && break
    sleep 0.2
    i=$((i + 1))
done
sleep 2
for j in 1 2 3; do
    eval "aa=\$a$j"
    r=$(rss_tree "$(cat "$work/n$j.pid")")
    h=$(field "$work/s$j" local)
    printf '%-8s %-6s %8s %12s %12s %12s %10s %12s\n' cluster "$j" "$h" \
        "$aa" "$r" $((r - aa)) $(( h > 0 ? (r - aa) * 1024 / h : 0 )) \
        "$(rss_one "$(cat "$work/n$j.pid")")"
done
for j in 1 2 3; do kill "$(cat "$work/n$j.pid")" 2>/dev/null || true; done
sleep 1
