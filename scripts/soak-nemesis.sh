#!/bin/sh
# Run the process nemesis (tests/integ/test_nemesis.c) for many rounds and
# record the result in tests/RESULTS.md.
#
#   scripts/soak-nemesis.sh N [SCENARIOS] [START] [BUILD_DIR]
#
# N rounds in all, in runs of up to 10 rounds, each run a fresh cluster
# with its own seed (START, START+1, ...; default 1).  SCENARIOS is a
# comma-separated list of the nemesis tests to take turns (default
# "mixed_3,mixed_5": every kind of fault on 3 and 5 nodes).  BUILD_DIR
# defaults to build-test.  Scenarios listed as known failing run too
# (OL_NEMESIS_ALL=1).  Needs root for the network namespaces.  A run with
# violations is printed with the command that reruns it exactly.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/results-lib.sh"
n=${1:?usage: scripts/soak-nemesis.sh N [SCENARIOS] [START] [BUILD_DIR]}
scenarios=${2:-mixed_3,mixed_5}
start=${3:-1}
build=${4:-$top/build-test}
"$top/scripts/deps.sh"
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$top" --buildtype=debugoptimized >/dev/null
fi
ninja -C "$build" >/dev/null
exe="$build/tests/integ_nemesis"
sum=$(mktemp)
log=$(mktemp)
t0=$(date +%s)
done_=0 seed=$start runs=0 bad_runs=""
set -- $(echo "$scenarios" | tr ',' ' ')
nscen=$#
while [ "$done_" -lt "$n" ]; do
    k=10
    [ $((done_ + k)) -gt "$n" ] && k=$((n - done_))
    i=$(( runs % nscen + 1 ))
    eval "scen=\${$i}"
    before=$(wc -l <"$sum")
    rc=0
    OL_BUILD_ROOT="$build" OL_SOURCE_ROOT="$top" OL_NEMESIS_ALL=1 \
        OL_NEMESIS_SEED=$seed OL_NEMESIS_ROUNDS=$k OL_NEMESIS_SUMMARY="$sum" \
        "$exe" --jobs=1 --filter "nemesis/$scen" >"$log" 2>&1 || rc=$?
    if [ "$(wc -l <"$sum")" -le "$before" ]; then
        echo "soak-nemesis: $scen seed $seed stopped before its summary" \
             "(rc $rc):" >&2
        tail -n 30 "$log" >&2
        bad_runs="$bad_runs $scen:$seed(aborted)"
        r=0
    else
        line=$(tail -n 1 "$sum")
        r=$(echo "$line" | sed -n 's/.* rounds \([0-9]*\) .*/\1/p')
        v=$(echo "$line" | sed -n 's/.* violations \([0-9]*\) .*/\1/p')
        if [ "$v" -ne 0 ]; then
            bad_runs="$bad_runs $scen:$seed"
            grep -E '^\[ERR \] VIOLATION' "$log" | cut -c1-300 >&2 || true
            echo "soak-nemesis: rerun with OL_NEMESIS_SEED=$seed" \
                 "OL_NEMESIS_ROUNDS=$k OL_NEMESIS_ALL=1 $exe" \
                 "--filter 'nemesis/$scen'" >&2
        fi
    fi
    # A run that stopped early still counts the rounds it played; one that
    # played none is not retried forever.
    [ "$r" -gt 0 ] || r=$k
    done_=$((done_ + r))
    runs=$((runs + 1))
    seed=$((seed + 1))
    echo "soak-nemesis: $done_ of $n rounds;$bad_runs" >&2
done
secs=$(( $(date +%s) - t0 ))
rounds=$(awk '{for (i = 1; i < NF; i++) if ($i == "rounds") s += $(i + 1)} END {print s + 0}' "$sum")
viol=$(awk '{for (i = 1; i < NF; i++) if ($i == "violations") s += $(i + 1)} END {print s + 0}' "$sum")
byinv=$(awk '{for (i = 1; i <= NF; i++) if ($i ~ /^[abcdr]=/) {split($i, kv, "="); s[kv[1]] += kv[2]}}
             END {printf "a=%d b=%d c=%d d=%d r=%d", s["a"], s["b"], s["c"], s["d"], s["r"]}' "$sum")
acked=$(awk '{for (i = 1; i < NF; i++) if ($i == "acked") s += $(i + 1)} END {print s + 0}' "$sum")
commit=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown)
entry=$(mktemp)
{
    echo "- $(date -u +%Y-%m-%dT%H:%MZ), commit $commit: \`scripts/soak-nemesis.sh $n $scenarios $start\`:"
    echo "  $rounds rounds in $runs runs (seeds $start..$((seed - 1))), $viol violations ($byinv),"
    echo "  $acked sends acknowledged, ${secs} s.${bad_runs:+ Runs with violations:$bad_runs.}"
} >"$entry"
# The entry goes at the end of the nemesis section, before the next one.
record_result "$entry" "Process nemesis"
rm -f "$sum" "$log"
echo "soak-nemesis: $rounds rounds, $viol violations; recorded in tests/RESULTS.md" >&2
[ -z "$bad_runs" ]
