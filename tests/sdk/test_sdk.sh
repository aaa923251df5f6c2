#!/bin/sh
# The SDK as an agent author uses it: stage `meson install`, build the
# out-of-tree example with `pkg-config outlast-agent`, check that it exports
# only its entry symbol, and run it in a real outlastd until it has
# committed checkpoints.
set -eu
build=$1
src=$2
work=$(mktemp -d /tmp/ol-sdk-XXXXXX)
pid=
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

meson install -C "$build" --destdir "$work/stage" --no-rebuild >/dev/null
pc=$(find "$work/stage" -name outlast-agent.pc | head -1)
[ -n "$pc" ] || { echo "outlast-agent.pc was not installed"; exit 1; }
cp -r "$src/examples/hello-agent" "$work/hello"
PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR="$work/stage" \
    make -C "$work/hello" >/dev/null

exported=$(nm -D --defined-only "$work/hello/hello.so" | awk '$2 == "T" {print $3}')
[ "$exported" = "ol_agent_entry" ] ||
    { echo "hello.so exports: $exported"; exit 1; }

mkdir -p "$work/plugins" && cp "$work/hello/hello.so" "$work/plugins/"
cat >"$work/node.ini" <<INI
[node]
data_dir = $work/data
plugin_dir = $work/plugins
[agent.greeter]
kind = hello
config = {"greeting": "hi", "interval_ms": 20}
INI
"$build/runtime/bin/outlastd" --config "$work/node.ini" >"$work/log" 2>&1 &
pid=$!
i=0
while [ $i -lt 100 ]; do
    # Read-only, and only once the node made the file: a probe that got
    # there first would create an empty outlast.db, which the node refuses.
    n=0
    [ -s "$work/data/outlast.db" ] &&
        n=$(sqlite3 -readonly "$work/data/outlast.db" \
            "SELECT count(*) FROM checkpoints WHERE agent = 'greeter'" 2>/dev/null || echo 0)
    [ "${n:-0}" -ge 3 ] && break
    sleep 0.1
    i=$((i + 1))
done
[ "${n:-0}" -ge 3 ] || { echo "greeter did not checkpoint"; cat "$work/log"; exit 1; }
"$build/runtime/bin/outlast" --data-dir "$work/data" verify >/dev/null
kill "$pid"
wait "$pid" || { echo "outlastd did not exit 0"; exit 1; }
pid=
echo "hello.so built out of tree, loaded, checkpointed and verified"
