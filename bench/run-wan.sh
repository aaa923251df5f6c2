#!/bin/sh
# The cluster benchmarks over the WAN test bed (scripts/wan.sh): three
# sites, each node of the outlast cluster and each etcd member in a site
# of its own, every packet between sites delayed by half the link's round
# trip.  Needs root.  Figures and their analysis are in bench/RESULTS.md.
#
#   bench/run-wan.sh                            # the issue's figures
#   TRIALS=5 REPS=1 bench/run-wan.sh
#   SITES=aws,gcp,home RTT=aws-gcp=30,aws-home=60,gcp-home=80 \
#       JITTER=0 LOSS=0 AGENTS=1,3,300 TIMING=1000/100/3000 bench/run-wan.sh
#
# It prints the round trips it measured between the sites first, then
# bench_cluster (commit p50/p99 per node with AGENTS agents, beside etcd)
# with the raft timing TIMING (election/heartbeat/failover ms; the
# product's defaults), and bench_failover (TRIALS follower and leader
# kills, beside etcd's leader kills) with outlast at FAILOVER_TIMING
# (`timing = wan`: 400/100/750) and etcd at ETCD_TIMING (its defaults,
# 1000/100).  The bed (namespaces olwan-*,
# 10.77.0.0/24) is torn down on exit, on failure and on SIGINT too.
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$src/build-bench}
reps=${REPS:-1}
trials=${TRIALS:-20}
jobs=${JOBS:-2}
sites=${SITES:-aws,gcp,home}
rtt=${RTT:-aws-gcp=30,aws-home=60,gcp-home=80}
jitter=${JITTER:-0}
loss=${LOSS:-0}
agents=${AGENTS:-1,3,300}
timing=${TIMING:-1000/100/3000}
# Failover runs outlast with `timing = wan` and etcd with its defaults.
fo_timing=${FAILOVER_TIMING:-400/100/750}
etcd_timing=${ETCD_TIMING:-1000/100}
. "$src/bench/lib.sh"

if [ "$(id -u)" != 0 ]; then
    echo "run-wan.sh: needs root (network namespaces)" >&2
    exit 1
fi
if [ ! -x /usr/bin/etcd ]; then
    "$src/scripts/deps.sh" --bench
fi
NODE=${NODE:-$(command -v node || true)}
if [ -z "$NODE" ]; then
    echo "run-wan.sh: Node.js (node) is needed for the etcd client" >&2
    exit 1
fi
export NODE

bench_build runtime/bin/outlastd runtime/bin/outlast-agent-host \
    bench/benchload.so bench/olwan \
    bench/bench_cluster bench/bench_failover

bench_workdir wan
# The bed's state (forwarder pid, log, links file) lives in the work
# directory; it comes down before the directory goes.
export OL_WAN_STATE="$work/bed" OLWAN_BIN="$build/bench/olwan"
unset OL_WAN_PREFIX OL_WAN_NET OL_WAN_DEV
trap '"$src/scripts/wan.sh" down; rm -rf "$work"' EXIT
trap '"$src/scripts/wan.sh" down; rm -rf "$work"; exit 130' INT TERM
"$src/scripts/wan.sh" up --sites "$sites" --rtt "$rtt" --jitter "$jitter" \
    --loss "$loss"
export OL_WAN_SITES="$sites"

bench_header
echo "# disk:    $base is on $(df -T "$base" | awk 'NR == 2 {print $1 " (" $2 ")"}')"
echo "# etcd:    $(/usr/bin/etcd --version 2>/dev/null | head -1), node $("$NODE" --version)," \
     "libraft $(pkg-config --modversion raft 2>/dev/null || echo '?')"
echo "# wan bed: sites $sites, configured rtt $rtt ms, jitter $jitter ms," \
     "loss $loss %"
echo "# measured round trips (TCP SYN to a closed port -> RST, 5 each):"
for a in $(echo "$sites" | tr ',' ' '); do
    for b in $(echo "$sites" | tr ',' ' '); do
        if [ "$a" \< "$b" ]; then
            printf '#   %s-%s: ' "$a" "$b"
            "$src/scripts/wan.sh" rtt "$a" "$b" 5 || true
        fi
    done
done
echo

status=0
echo "## bench_cluster: replicated checkpoints vs etcd puts (1 KiB)" \
     "over the WAN bed, timing $timing"
"$build/bench/bench_cluster" --reps "$reps" --timing "$timing" \
    --agents "$agents" ||
    { status=$?; echo "# bench_cluster exited with status $status"; }
echo
echo "## bench_failover over the WAN bed: kill -9 to the agent's first" \
     "checkpoint on its new node vs etcd leader kill; outlast timing" \
     "$fo_timing, etcd $etcd_timing"
"$build/bench/bench_failover" --trials "$trials" --timing "$fo_timing" \
    --etcd-timing "$etcd_timing" ||
    { status=$?; echo "# bench_failover exited with status $status"; }
echo
echo "## the forwarder's counters"
"$src/scripts/wan.sh" status | grep '^olwan:' || true
exit "$status"
