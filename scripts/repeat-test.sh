#!/bin/sh
# Run one test binary (or some of its tests) many times, several at once,
# to tell a rare failure from none.
#
#   scripts/repeat-test.sh RUNS PARALLEL BUILD_DIR TEST [FILTER]
#
# TEST is a test binary under BUILD_DIR/tests (integ_statuspage, ...);
# FILTER a Criterion filter ('statuspage/logs*').  RUNS runs in all,
# PARALLEL at a time (their starts a few seconds apart, so that clusters
# pick different ports), each with the environment meson gives the tests.
# A failing run keeps its nodes' directories (OL_KEEP_TMP) and its output
# under $TMPDIR/ol-repeat-*/; a passing run leaves nothing.  Prints the
# failures and a tally; exits 1 if any run failed.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:?usage: scripts/repeat-test.sh RUNS PARALLEL BUILD_DIR TEST [FILTER]}
par=${2:?usage: scripts/repeat-test.sh RUNS PARALLEL BUILD_DIR TEST [FILTER]}
build=$(cd "${3:?usage: scripts/repeat-test.sh RUNS PARALLEL BUILD_DIR TEST [FILTER]}" && pwd)
test=${4:?usage: scripts/repeat-test.sh RUNS PARALLEL BUILD_DIR TEST [FILTER]}
filter=${5:-}
exe="$build/tests/$test"
[ -x "$exe" ] || { echo "no test binary $exe" >&2; exit 2; }
out=$(mktemp -d "${TMPDIR:-/tmp}/ol-repeat-XXXXXX")

one() { # worker index
    i=$1
    while :; do
        k=$(mkdir "$out/lock" 2>/dev/null && {
            n=$(cat "$out/next" 2>/dev/null || echo 0)
            echo $((n + 1)) > "$out/next"
            rmdir "$out/lock"
            echo $((n + 1))
        }) || { sleep 0.1; continue; }
        [ "$k" -le "$runs" ] || return 0
        log="$out/run$k.log"
        if env OL_KEEP_TMP=1 OL_BUILD_ROOT="$build" OL_SOURCE_ROOT="$top" \
            ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            "$exe" --jobs=1 ${filter:+--filter="$filter"} > "$log" 2>&1; then
            echo "run $k ok" >> "$out/tally"
            for d in $(grep -o "/tmp/ol-[A-Za-z0-9-]*" "$log" | sort -u); do
                rm -rf "$d"
            done
            rm -f "$log"
        else
            echo "run $k FAILED: $log" >> "$out/tally"
        fi
    done
}

echo "$test${filter:+ ($filter)}: $runs runs, $par at a time; output in $out"
p=0
while [ $p -lt "$par" ]; do
    one $p &
    p=$((p + 1))
    sleep 3
done
wait
grep FAILED "$out/tally" || true
ok=$(grep -c " ok$" "$out/tally" || true)
echo "$ok of $runs passed"
[ "$ok" -eq "$runs" ] && rm -rf "$out"
[ "$ok" -eq "$runs" ]
