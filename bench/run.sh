#!/bin/sh
# Build a release tree and run every benchmark, printing each beside its
# anchor.  The figures and their analysis are in bench/RESULTS.md.
#
#   bench/run.sh                 # everything, 3 repetitions
#   REPS=5 bench/run.sh          # more repetitions of bench_ckpt
#   BUILD_DIR=/tmp/b bench/run.sh
#   CLUSTER=0 bench/run.sh       # skip the cluster benchmarks (run-cluster.sh)
#   EFFECTS=0 bench/run.sh       # skip the effects benchmark (run-effects.sh)
#
# The benchmarks write their databases under $TMPDIR (default /tmp), so
# that is the filesystem being measured.
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$src/build-bench}
reps=${REPS:-3}
jobs=${JOBS:-2}
. "$src/bench/lib.sh"

bench_build bench/benchload.so bench/bench_ckpt \
    bench/bench_parts bench/bench_idle bench/bench_isolation \
    runtime/bin/outlast-agent-host

tmp=${TMPDIR:-/tmp}
bench_header
echo "# disk:    $tmp is on $(df -T "$tmp" | awk 'NR == 2 {print $1 " (" $2 ")"}')"
echo "# sqlite:  $(pkg-config --modversion sqlite3), libuv $(pkg-config --modversion libuv)," \
     "libsodium $(pkg-config --modversion libsodium)"
echo

echo "## bench_ckpt: commit throughput and latency vs raw SQLite"
"$build/bench/bench_ckpt" --reps "$reps"
echo
echo "## bench_parts: the commit path part by part vs raw SQLite"
"$build/bench/bench_parts"
echo
echo "## bench_idle: 100,000 idle agents"
"$build/bench/bench_idle"
echo
echo "## bench_isolation: agents in an agent-host process vs in the node"
"$build/bench/bench_isolation" --reps "$reps"

# The effects benchmark (outlastd processes; its cluster cell follows
# CLUSTER).
if [ "${EFFECTS:-1}" != 0 ]; then
    echo
    BUILD_DIR=$build JOBS=$jobs REPS=$reps CLUSTER=${CLUSTER:-1} \
        "$src/bench/run-effects.sh"
fi

# The cluster benchmarks (3 outlastd processes beside 3 etcd members).
if [ "${CLUSTER:-1}" != 0 ]; then
    echo
    BUILD_DIR=$build JOBS=$jobs REPS=$reps "$src/bench/run-cluster.sh"
fi
