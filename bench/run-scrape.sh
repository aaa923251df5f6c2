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
. "$src/bench/lib.sh"

bench_build runtime/bin/outlastd runtime/bin/outlast-agent-host bench/benchload.so \
    bench/bench_ckpt bench/bench_cluster

# Everything the benchmarks write goes under one private directory.
bench_workdir scrape

bench_header
echo
echo "## bench_ckpt --scrape-compare: one node, 1 KiB states"
"$build/bench/bench_ckpt" --scrape-compare --agents "$agents" --sizes 1024 \
    --reps "$reps" --window-ms 3000
echo
echo "## bench_cluster --scrape-compare: 3 nodes, 1 KiB states, timing 1000/100/3000"
"$build/bench/bench_cluster" --scrape-compare 1000 --agents "$cagents" \
    --reps "$creps" --timing 1000/100/3000
