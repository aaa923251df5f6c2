#!/bin/sh
# A local three-node outlast cluster, each node labelled as a different
# cloud.  It kills the node hosting the price-watcher with SIGKILL and shows
# the agent resuming on another node, its state intact.
#
#   examples/cluster/demo.sh [WORKDIR]       (default: ./cluster-demo)
#
# Everything runs on 127.0.0.1:7101-7103 with short (loopback) timeouts.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-./cluster-demo}
bin=$top/build/runtime/bin
outlast=$bin/outlast

if [ ! -x "$bin/outlastd" ]; then
    "$top/scripts/deps.sh"
    [ -f "$top/build/build.ninja" ] || meson setup "$top/build" "$top" >/dev/null
    ninja -C "$top/build" >/dev/null
fi

rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
clouds="aws gcp home"

# 1. A key per node.  Only the public halves go into the roster.
i=1
for cloud in $clouds; do
    mkdir -p "$work/n$i"
    "$outlast" keygen --out "$work/n$i/node.key" >"$work/n$i.pub" 2>/dev/null
    i=$((i + 1))
done

# 2. One config per node: its own [node] and [cluster], the others as peers.
for i in 1 2 3; do
    cloud=$(echo $clouds | cut -d' ' -f$i)
    {
        echo "[node]"
        echo "id = $i"
        echo "data_dir = $work/n$i"
        echo "labels = cloud=$cloud"
        echo "[cluster]"
        echo "name = demo"
        echo "listen = 127.0.0.1:$((7100 + i))"
        echo "election_timeout_ms = 300"
        echo "heartbeat_timeout_ms = 50"
        echo "failover_ms = 1000"
        for j in 1 2 3; do
            [ "$j" = "$i" ] && continue
            echo "[peer.$j]"
            echo "address = 127.0.0.1:$((7100 + j))"
            echo "pubkey = $(cat "$work/n$j.pub")"
            echo "labels = cloud=$(echo $clouds | cut -d' ' -f$j)"
        done
        echo "[agent.pricewatch]"
        echo "kind = pricewatch"
        echo "[agent.ledger]"
        echo "kind = ledger"
        echo "[agent.counter]"
        echo "kind = counter"
    } >"$work/n$i.ini"
done

# 3. Bootstrap once, on node 1; it adds the others when it leads.
"$outlast" cluster init --config "$work/n1.ini"

cleanup() {
    for i in 1 2 3; do
        [ -f "$work/n$i.pid" ] && kill "$(cat "$work/n$i.pid")" 2>/dev/null || true
    done
}
trap cleanup EXIT INT TERM

for i in 1 2 3; do
    "$bin/outlastd" --config "$work/n$i.ini" >"$work/n$i.log" 2>&1 &
    echo $! >"$work/n$i.pid"
done

owner() {
    "$outlast" --data-dir "$work/n$1" --json agents 2>/dev/null |
        sed -n '/"name": "pricewatch"/,/}/p' | sed -n 's/.*"owner": \([0-9]*\).*/\1/p'
}

wait_owner() { # wait_owner FROM_NODE NOT_THIS_OWNER
    n=0
    while [ $n -lt 100 ]; do
        o=$(owner "$1")
        if [ -n "$o" ] && [ "$o" != 0 ] && [ "$o" != "$2" ]; then
            echo "$o"
            return 0
        fi
        sleep 0.1
        n=$((n + 1))
    done
    return 1
}

echo "== starting three nodes (clouds: $clouds)"
first=$(wait_owner 1 0) || { echo "pricewatch was never placed; see $work/n*.log"; exit 1; }
sleep 2
"$outlast" --data-dir "$work/n1" cluster status
echo
"$outlast" --data-dir "$work/n1" agents
echo
echo "== pricewatch runs on node $first; its state:"
"$outlast" --data-dir "$work/n$first" show pricewatch | sed -n '/^state/,$p' | head -8

survivor=1
[ "$first" = 1 ] && survivor=2
echo
echo "== kill -9 node $first ($(echo $clouds | cut -d' ' -f$first))"
kill -9 "$(cat "$work/n$first.pid")"
rm -f "$work/n$first.pid"
start=$(date +%s%N)
next=$(wait_owner $survivor "$first") || { echo "no failover; see $work/n*.log"; exit 1; }
took=$((($(date +%s%N) - start) / 1000000))
echo "== pricewatch moved to node $next in ${took} ms; it resumed from its last"
echo "   committed checkpoint under a new epoch:"
sleep 1
"$outlast" --data-dir "$work/n$survivor" agents
echo
"$outlast" --data-dir "$work/n$next" show pricewatch | sed -n '/^state/,$p' | head -8
echo
echo "== every node's chains verify and agree:"
cleanup
trap - EXIT INT TERM
sleep 1
"$outlast" verify --cluster "$work"/n1/outlast.db "$work"/n2/outlast.db "$work"/n3/outlast.db | tail -1
echo "logs and data are in $work"
