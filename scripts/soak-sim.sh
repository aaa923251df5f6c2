#!/bin/sh
# Run the deterministic cluster simulation over many seeds and record the
# result in tests/RESULTS.md.
#
#   scripts/soak-sim.sh N [START] [BUILD_DIR]
#
# N schedules from seed START (default 1), in chunks of 1,000, with the
# simulator built in BUILD_DIR (default build-sim, release).  A failing seed
# is printed with the command that reruns it exactly.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/results-lib.sh"
n=${1:?usage: scripts/soak-sim.sh N [START] [BUILD_DIR]}
start=${2:-1}
build=${3:-$top/build-sim}
"$top/scripts/deps.sh"
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$top" --buildtype=release -Dbench=false >/dev/null
fi
ninja -C "$build" tests/outlast-sim >/dev/null
sim="$build/tests/outlast-sim"
tmp=${TMPDIR:-/tmp}
[ -d /dev/shm ] && [ -w /dev/shm ] && tmp=/dev/shm
log=$(mktemp)
t0=$(date +%s)
done_=0 bad=0 abandoned=0 acked=0
seed=$start
end=$((start + n))
while [ "$seed" -lt "$end" ]; do
    k=1000
    [ $((seed + k)) -gt "$end" ] && k=$((end - seed))
    rc=0
    "$sim" --start "$seed" --count "$k" --tmpdir "$tmp" >"$log" 2>&1 || rc=$?
    grep '^seed ' "$log" || true
    line=$(tail -n 1 "$log")
    case "$line" in
    outlast-sim:*) ;;
    *) echo "soak-sim: the simulator stopped (rc $rc) at seeds $seed+$k:" >&2
       tail -n 20 "$log" >&2
       exit 1 ;;
    esac
    b=$(echo "$line" | sed -n 's/.*: \([0-9]*\) with violations.*/\1/p')
    a=$(echo "$line" | sed -n 's/.*, \([0-9]*\) abandoned.*/\1/p')
    c=$(echo "$line" | sed -n 's/.*; \([0-9]*\) checkpoints acknowledged.*/\1/p')
    bad=$((bad + b)); abandoned=$((abandoned + a)); acked=$((acked + c))
    done_=$((done_ + k))
    seed=$((seed + k))
    echo "soak-sim: $done_ of $n schedules, $bad with violations" >&2
done
rm -f "$log"
secs=$(( $(date +%s) - t0 ))
commit=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown)
entry=$(mktemp)
{
    echo "- $(date -u +%Y-%m-%dT%H:%MZ), commit $commit: \`scripts/soak-sim.sh $n $start\`:"
    echo "  $done_ schedules (seeds $start..$((end - 1))), $bad with violations,"
    echo "  $abandoned abandoned (past the fixture's model), $acked checkpoints"
    echo "  acknowledged, ${secs} s."
} >"$entry"
# The entry goes at the end of the simulation section, before the next one.
record_result "$entry" "Deterministic cluster simulation"
echo "soak-sim: $done_ schedules, $bad with violations, $abandoned abandoned; recorded in tests/RESULTS.md" >&2
[ "$bad" -eq 0 ]
