#!/bin/sh
# Quick start, part 1: install what is missing, build, and run a single
# outlast node with the example agents (counter, pricewatch, ledger).
# Data goes to ./outlast-data in the directory you run this from; the live
# log goes to the terminal.  Ctrl-C drains and stops it; run it again and
# every agent resumes from its last committed checkpoint.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/deps.sh"
if [ ! -f "$top/build/build.ninja" ]; then
    meson setup "$top/build" "$top" --buildtype=release >/dev/null
fi
ninja -C "$top/build" >/dev/null
echo "outlast: node starting; inspect it from this directory with:" >&2
echo "  $top/build/runtime/bin/outlast status | agents | show pricewatch" >&2
exec "$top/build/runtime/bin/outlastd" "$@"
