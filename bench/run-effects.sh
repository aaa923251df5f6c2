#!/bin/sh
# Build a release tree and run the effects benchmark: an effect's round
# trip (declare, commit, perform, outcome committed) beside a plain
# checkpoint's commit and a raw SQLite commit in the same run: on a single
# node with the agents in agent-host processes (the default) and inside
# the node (isolation = none, which leaves out the hops between the
# processes), and on a 3-node cluster on loopback.  bench/run.sh calls this after
# the single-node benchmarks; the figures and their analysis are in
# bench/RESULTS.md ("Effects: round trip").
#
#   bench/run-effects.sh                  # 600 effects, 3 repetitions
#   REPS=5 COUNT=1000 bench/run-effects.sh
#   CLUSTER=0 bench/run-effects.sh        # the single node only
#
# It starts real outlastd processes (and, for the cluster, ports on
# 127.0.0.1 in 20000-32699) with their data under a private directory in
# $TMPDIR (default /tmp), which is the disk being measured, and removes
# every process and file it started on exit.
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$src/build-bench}
reps=${REPS:-3}
count=${COUNT:-600}
jobs=${JOBS:-2}
. "$src/bench/lib.sh"

bench_build runtime/bin/outlastd runtime/bin/outlast-agent-host \
    bench/fxbench.so bench/bench_effects

bench_workdir effects

bench_header
echo "# disk:    $base is on $(df -T "$base" | awk 'NR == 2 {print $1 " (" $2 ")"}')"
echo

echo "## bench_effects: effect round trip vs plain checkpoint commit, single node"
"$build/bench/bench_effects" --reps "$reps" --count "$count"
echo
echo "## bench_effects: the same with the agents inside the node (isolation = none)"
"$build/bench/bench_effects" --reps "$reps" --count "$count" --isolation none
if [ "${CLUSTER:-1}" != 0 ]; then
    echo
    echo "## bench_effects: effect round trip vs plain checkpoint commit, 3 nodes on loopback"
    "$build/bench/bench_effects" --reps "$reps" --count "$count" --nodes 3
fi
