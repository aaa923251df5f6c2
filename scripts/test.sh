#!/bin/sh
# Quick start, part 2: install what is missing, build, and pass the whole
# test suite twice: once in a normal build and once under AddressSanitizer
# and UndefinedBehaviorSanitizer.  CI runs exactly this (.ci/run).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/deps.sh"

run_suite() {
    dir=$1
    shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$top" "$@"
    fi
    ninja -C "$dir"
    meson test -C "$dir" --print-errorlogs --num-processes 2
}

echo "== build and test ==" >&2
run_suite "$top/build-test" --buildtype=debugoptimized
echo "== build and test under ASan/UBSan ==" >&2
run_suite "$top/build-asan" --buildtype=debug \
    -Db_sanitize=address,undefined -Db_lundef=false -Dbench=false
echo "outlast: all tests passed" >&2
