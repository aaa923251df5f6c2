#!/bin/sh
# Build a release tree and run the cluster benchmarks, each beside its etcd
# anchor in the same run.  bench/run.sh calls this after the single-node
# benchmarks; the figures and their analysis are in bench/RESULTS.md.
#
#   bench/run-cluster.sh                  # 3 repetitions, 3 failover runs
#   REPS=5 FAILOVER_RUNS=1 bench/run-cluster.sh
#   BUILD_DIR=/tmp/b TRIALS=30 bench/run-cluster.sh
#
# It starts real outlastd and etcd processes on 127.0.0.1 (ports in
# 20000-32699) with their data under a private directory in $TMPDIR
# (default /tmp), and removes every process and file it started on exit.
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$src/build-bench}
reps=${REPS:-3}
runs=${FAILOVER_RUNS:-3}
trials=${TRIALS:-20}
jobs=${JOBS:-2}
. "$src/bench/lib.sh"

# etcd-server (3.4) and etcd-client come from Debian; Node.js drives etcd.
if [ ! -x /usr/bin/etcd ]; then
    "$src/scripts/deps.sh" --bench
fi
NODE=${NODE:-$(command -v node || true)}
if [ -z "$NODE" ]; then
    echo "run-cluster.sh: Node.js (node) is needed for the etcd client" >&2
    exit 1
fi
export NODE

bench_build runtime/bin/outlastd runtime/bin/outlast-agent-host bench/benchload.so \
    bench/bench_cluster bench/bench_failover

# Everything the benchmarks write goes under one private directory.
bench_workdir cluster

bench_header
echo "# disk:    $base is on $(df -T "$base" | awk 'NR == 2 {print $1 " (" $2 ")"}')"
echo "# etcd:    $(/usr/bin/etcd --version 2>/dev/null | head -1), node $("$NODE" --version)," \
     "libraft $(pkg-config --modversion raft 2>/dev/null || echo '?')"
echo

# Throughput with the product's default (WAN) raft timing for both systems:
# on two shared vCPUs the loopback timing (300/50 ms) lets the load itself
# trigger elections in both.  Failover below uses the loopback timing.
timing=${TIMING:-1000/100/3000}
echo "## bench_cluster: replicated checkpoints vs etcd puts (1 KiB), timing $timing"
"$build/bench/bench_cluster" --reps "$reps" --timing "$timing"
echo
i=1
while [ "$i" -le "$runs" ]; do
    echo "## bench_failover: kill -9 to the agent's first checkpoint on its new node vs etcd leader kill (run $i of $runs)"
    "$build/bench/bench_failover" --trials "$trials"
    echo
    i=$((i + 1))
done
