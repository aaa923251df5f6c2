#!/bin/sh
# The SDK as an agent author uses it, both ways:
#   1. against the build tree (PKG_CONFIG_PATH=<build>/meson-uninstalled);
#   2. against a staged install (meson install --destdir).
# Each time the out-of-tree example is built with `pkg-config
# outlast-agent`, its unit tests (test_hello.c, on the SDK's fake host) are
# built and run with `make check`, and hello.so must export only its entry
# symbol.  Then the staged install's own outlastd, with no plugin_dir set,
# must find its installed plugins (counter, and hello installed into the
# SDK's plugindir) and its agent host, and commit checkpoints for both.
set -eu
build=$(cd "$1" && pwd)
src=$2
work=$(mktemp -d /tmp/ol-sdk-XXXXXX)
pid=
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "$*"
    exit 1
}

# make in a fresh copy of the example; $1 names the copy, the rest is env.
build_hello() {
    dir=$work/$1
    shift
    cp -r "$src/examples/hello-agent" "$dir"
    env "$@" make -C "$dir" hello.so >"$dir.log" 2>&1 ||
        { cat "$dir.log"; fail "$dir: make failed"; }
    env "$@" make -C "$dir" check >>"$dir.log" 2>&1 ||
        { cat "$dir.log"; fail "$dir: make check failed"; }
    grep -q "test_hello: all passed" "$dir.log" ||
        { cat "$dir.log"; fail "$dir: test_hello did not pass"; }
    exported=$(nm -D --defined-only "$dir/hello.so" |
               awk '$2 == "T" {print $3}')
    [ "$exported" = "ol_agent_entry" ] ||
        fail "$dir/hello.so exports: $exported"
}

# Wait until agent $2 has at least 3 checkpoints in data dir $1.
wait_ckpts() {
    i=0
    n=0
    while [ $i -lt 150 ]; do
        # Read-only, and only once the node made the file: a probe that
        # got there first would create an empty outlast.db.
        n=0
        [ -s "$1/outlast.db" ] &&
            n=$(sqlite3 -readonly "$1/outlast.db" \
                "SELECT count(*) FROM checkpoints WHERE agent = '$2'" \
                2>/dev/null || echo 0)
        [ "${n:-0}" -ge 3 ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    cat "$work/log"
    fail "agent '$2' did not checkpoint"
}

# 1. The build tree.
upc=$build/meson-uninstalled
[ -f "$upc/outlast-agent-uninstalled.pc" ] || fail "no uninstalled .pc"
pdir=$(PKG_CONFIG_PATH=$upc pkg-config --variable=plugindir outlast-agent)
[ -f "$pdir/counter.so" ] ||
    fail "build tree plugindir '$pdir' has no counter.so"
build_hello hello-build PKG_CONFIG_PATH="$upc"

# 2. A staged install.
stage=$work/stage
meson install -C "$build" --destdir "$stage" --no-rebuild >/dev/null
pc=$(find "$stage" -name outlast-agent.pc | head -1)
[ -n "$pc" ] || fail "outlast-agent.pc was not installed"
for h in agent.h agent_util.h agent_test.h version.h; do
    [ -n "$(find "$stage" -path "*/include/outlast/$h")" ] ||
        fail "outlast/$h was not installed"
done
build_hello hello-inst PKG_CONFIG_PATH="$(dirname "$pc")" \
    PKG_CONFIG_SYSROOT_DIR="$stage"

pdir=$stage$(PKG_CONFIG_PATH=$(dirname "$pc") \
             pkg-config --variable=plugindir outlast-agent)
[ -f "$pdir/counter.so" ] || fail "no counter.so in the staged '$pdir'"
cp "$work/hello-inst/hello.so" "$pdir/"
outlastd=$(find "$stage" -path "*/bin/outlastd" | head -1)
[ -n "$outlastd" ] || fail "outlastd was not installed"

cat >"$work/node.ini" <<INI
[node]
data_dir = $work/data
[agent.greeter]
kind = hello
config = {"greeting": "hi", "interval_ms": 20}
[agent.c1]
kind = counter
config = {"interval_ms": 20}
INI
env -u OUTLAST_PLUGIN_DIR -u OUTLAST_AGENT_HOST \
    "$outlastd" --config "$work/node.ini" >"$work/log" 2>&1 &
pid=$!
wait_ckpts "$work/data" greeter
wait_ckpts "$work/data" c1
# hello logs ol_host.version() at START: the agent host filled it in.
ver=$(PKG_CONFIG_PATH=$upc pkg-config --modversion outlast-agent)
grep -q "running in $ver)" "$work/log" ||
    { cat "$work/log"; fail "no 'running in $ver' from the agent host"; }
"$build/runtime/bin/outlast" --data-dir "$work/data" verify >/dev/null
kill "$pid"
wait "$pid" || { cat "$work/log"; fail "outlastd did not exit 0"; }
pid=
echo "hello built and unit-tested against the build tree and a staged" \
     "install; the staged outlastd ran it and counter from its plugindir"
