#!/bin/sh
# What serving /metrics and the status page costs the commit path: the
# single-node and 3-node commit benchmarks, each repetition run twice in
# alternating order, alone (the anchor) and with the node's HTTP endpoint
# scraped every second (/metrics and /api/status on every node, as a
# Prometheus server and an open status page would).  The figures are in
# bench/RESULTS.md.
#
#   bench/run-scrape.sh                 # 7 single-node and 5 cluster reps
#   REPS=9 CLUSTER_REPS=3 bench/run-scrape.sh
#   AGENTS=1,100 CLUSTER_AGENTS=1,100 bench/run-scrape.sh
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$src/build-bench}
reps=${REPS:-7}
creps=${CLUSTER_REPS:-5}
agents=${AGENTS:-1,100,10000}
cagents=${CLUSTER_AGENTS:-1,100,10000}
jobs=${JOBS:-2}

if [ -f "$build/build.ninja" ]; then
    meson configure "$build" -Dbuildtype=release -Dbench=true >/dev/null
else
    meson setup "$build" "$src" -Dbuildtype=release -Dbench=true >/dev/null
fi
ninja -C "$build" -j"$jobs" runtime/bin/outlastd bench/benchload.so \
    bench/bench_ckpt bench/bench_cluster >/dev/null

base=${TMPDIR:-/tmp}
work=$(mktemp -d "$base/olbench-scrape.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'rm -rf "$work"; exit 130' INT TERM
export TMPDIR="$work"

echo "# date:    $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
echo "# commit:  $(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo '?')" \
     "(plus uncommitted changes: $(git -C "$src" status --porcelain 2>/dev/null | wc -l) files)"
echo "# machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)," \
     "$(uname -sr), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# cpu:     $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
echo
echo "## bench_ckpt --scrape-compare: one node, 1 KiB states"
"$build/bench/bench_ckpt" --scrape-compare --agents "$agents" --sizes 1024 \
    --reps "$reps" --window-ms 3000
echo
echo "## bench_cluster --scrape-compare: 3 nodes, 1 KiB states, timing 1000/100/3000"
"$build/bench/bench_cluster" --scrape-compare 1000 --agents "$cagents" \
    --reps "$creps" --timing 1000/100/3000
