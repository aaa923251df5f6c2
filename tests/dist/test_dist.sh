#!/bin/sh
# What `meson install` gives an operator, checked on a staged install:
#   files    the unit, the sysusers entry, three man pages and the bash
#            completion are installed where they belong; the unit is
#            Type=notify with its hardening; every command, daemon option
#            and config key the programs know is in the man pages; the
#            completion completes commands, options and (from a real node)
#            agent names.
#   systemd  systemd-analyze accepts the unit and rates its exposure low.
#   man      man renders each page without a warning.
# Usage: test_dist.sh MODE BUILD_DIR SOURCE_DIR.  Exit 77 means skipped
# (a tool is missing; the message says which).
set -eu
mode=$1
build=$2
src=$3
work=$(mktemp -d /tmp/ol-dist-XXXXXX)
pid=
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*"
    exit 1
}
skip() {
    echo "SKIP: $*"
    exit 77
}

meson install -C "$build" --destdir "$work/stage" --no-rebuild >/dev/null
prefix=$(meson introspect "$build" --buildoptions |
    python3 -c 'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"][0])')
root="$work/stage$prefix"
unit="$root/lib/systemd/system/outlastd.service"
man1="$root/share/man/man1/outlast.1"
man8="$root/share/man/man8/outlastd.8"
man5="$root/share/man/man5/outlast.ini.5"
compl="$root/share/bash-completion/completions/outlast"
sysusers="$root/lib/sysusers.d/outlast.conf"

case $mode in
files)
    for f in "$unit" "$man1" "$man8" "$man5" "$compl" "$sysusers" \
        "$root/bin/outlastd" "$root/bin/outlast"; do
        [ -f "$f" ] || fail "not installed: ${f#"$work"/stage}"
    done
    for line in Type=notify NotifyAccess=main User=outlast \
        StateDirectory=outlast NoNewPrivileges=yes ProtectSystem=strict \
        ProtectHome=yes PrivateTmp=yes CapabilityBoundingSet= WatchdogSec=; do
        grep -q "^$line" "$unit" || fail "the unit has no '$line'"
    done
    grep -q "^ExecStart=$prefix/bin/outlastd " "$unit" ||
        fail "ExecStart does not name the installed outlastd: $(grep ExecStart "$unit")"
    grep -q '^u outlast ' "$sysusers" || fail "sysusers.d does not create 'outlast'"

    # The man pages know every command, option and key the programs do.
    text() { sed -e 's/\\f[BIRP]//g' -e 's/\\-/-/g' -e 's/\\&//g' "$1"; }
    text "$man1" >"$work/man1.txt"
    text "$man8" >"$work/man8.txt"
    text "$man5" >"$work/man5.txt"
    "$build/runtime/bin/outlast" --help |
        awk '/^Commands:/ {on = 1; next} on && /^  [a-z]/ {print $1} /^$/ && on {on = 0}' \
            >"$work/cmds"
    [ -s "$work/cmds" ] || fail "outlast --help lists no commands"
    while read -r cmd; do
        grep -q "^$cmd" "$work/man1.txt" ||
            fail "outlast(1) does not describe the command '$cmd'"
    done <"$work/cmds"
    "$build/runtime/bin/outlast" --help | grep -o -- '--[a-z-]*' | sort -u |
        while read -r opt; do
            grep -q -- "$opt" "$work/man1.txt" ||
                fail "outlast(1) does not describe the option '$opt'"
        done
    "$build/runtime/bin/outlastd" --help | grep -o -- '--[a-z-]*' | sort -u |
        while read -r opt; do
            grep -q -- "$opt" "$work/man8.txt" ||
                fail "outlastd(8) does not describe the option '$opt'"
        done
    for ini in "$src/examples/single-node.ini" "$src/examples/cluster/multi-host.ini"; do
        sed -n 's/^;*\([a-z_]*\) *=.*/\1/p' "$ini" | sort -u | while read -r key; do
            grep -q "^$key = " "$work/man5.txt" ||
                fail "outlast.ini(5) does not describe the key '$key' ($(basename "$ini"))"
        done
        sed -n 's/^\[\([a-z]*\).*\]/\1/p' "$ini" | sort -u | while read -r sec; do
            grep -q "^.SH \\[$sec" "$work/man5.txt" ||
                fail "outlast.ini(5) has no section [$sec]"
        done
    done

    # Completion: commands, subcommands, options, and agent names from a
    # real node.
    complete_words() {
        bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _outlast; printf "%s\n" "${COMPREPLY[@]}"' \
            sh "$compl" "$@"
    }
    complete_words outlast lo | grep -qx logs || fail "completion: 'lo' does not give 'logs'"
    complete_words outlast cluster "" | grep -qx remove ||
        fail "completion: 'cluster' does not offer 'remove'"
    complete_words outlast top --c | grep -qx -- --count ||
        fail "completion: 'top --c' does not give '--count'"
    mkdir -p "$work/data"
    cat >"$work/node.ini" <<INI
[node]
data_dir = $work/data
plugin_dir = $build/agents
[agent.completion-target]
kind = counter
INI
    "$build/runtime/bin/outlastd" --config "$work/node.ini" >"$work/log" 2>&1 &
    pid=$!
    i=0
    while [ $i -lt 150 ] && ! "$build/runtime/bin/outlast" --data-dir "$work/data" \
        agents 2>/dev/null | grep -q completion-target; do
        sleep 0.1
        i=$((i + 1))
    done
    got=$(complete_words "$build/runtime/bin/outlast" --data-dir "$work/data" logs comp)
    [ "$got" = completion-target ] ||
        fail "completion: 'logs comp' gave '$got', not the running agent's name"
    echo "files, unit, man page coverage and completion: ok"
    ;;
systemd)
    command -v systemd-analyze >/dev/null ||
        skip "systemd-analyze is not installed (Debian package systemd)"
    # Verify against the staged binary (the installed path does not exist
    # on this machine); no man lookups, which need the pages installed.
    sed "s#^ExecStart=$prefix/bin/outlastd#ExecStart=$root/bin/outlastd#" "$unit" \
        >"$work/outlastd.service"
    systemd-analyze verify --man=no "$work/outlastd.service" ||
        fail "systemd-analyze verify rejects the unit"
    systemd-analyze security --offline=yes --threshold=20 "$work/outlastd.service" \
        >"$work/security" 2>&1 ||
        fail "the unit's exposure is above 2.0: $(tail -1 "$work/security")"
    echo "systemd: $(tail -1 "$work/security")"
    ;;
man)
    command -v man >/dev/null || skip "man is not installed (Debian package man-db)"
    command -v groff >/dev/null || skip "groff is not installed (Debian package groff-base)"
    for page in "$man1" "$man8" "$man5"; do
        out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings=w -l "$page" 2>&1 >"$work/page.txt") ||
            fail "man cannot render $(basename "$page"): $out"
        [ -z "$out" ] || fail "man warns on $(basename "$page"): $out"
        grep -q "NAME" "$work/page.txt" || fail "$(basename "$page") renders without a NAME section"
    done
    echo "man: three pages render without warnings"
    ;;
*)
    fail "unknown mode $mode"
    ;;
esac
