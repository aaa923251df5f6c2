#!/bin/sh
# What `meson install` gives an operator, checked on a staged install:
#   files    the unit, the sysusers entry, three man pages and the bash
#            completion are installed where they belong; the unit is
#            Type=notify with its hardening; every command, daemon option
#            and config key the programs know is in the man pages; the
#            completion completes commands, options and (from a real node)
#            agent names.
#   systemd  systemd-analyze accepts the unit and rates its exposure low.
#   sandbox  a node and its agent hosts, traced with strace through starts,
#            crashes, a step past its deadline, HTTP scrapes and a drain,
#            make no system call the unit's SystemCallFilter refuses, map
#            nothing writable and executable (MemoryDenyWriteExecute),
#            make no namespace (RestrictNamespaces) and open no socket of a
#            family RestrictAddressFamilies refuses.
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
    # The daemon (under strace, its child) first: its hosts die with it.
    [ -n "$pid" ] && pkill -KILL -P "$pid" 2>/dev/null || true
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
        "$root/bin/outlastd" "$root/bin/outlast" \
        "$root/$(meson introspect "$build" --buildoptions |
            python3 -c 'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"] == "libexecdir"][0])')/outlast/outlast-agent-host"; do
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
sandbox)
    command -v strace >/dev/null || skip "strace is not installed (Debian package strace)"
    command -v systemd-analyze >/dev/null ||
        skip "systemd-analyze is not installed (Debian package systemd)"
    san=$(meson introspect "$build" --buildoptions |
        python3 -c 'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"] == "b_sanitize"][0])')
    [ "$san" = none ] || skip "a sanitizer's runtime makes system calls of its own ($san)"
    mkdir -p "$work/sdata"
    echo secret >"$work/outside.txt"
    cat >"$work/sandbox.ini" <<INI
[node]
data_dir = $work/sdata
plugin_dir = $build/agents:$build/tests/plugins
log_level = info
[http]
listen = 127.0.0.1:0
[agents]
step_deadline_ms = 300
crash_limit = 2
; as under the unit: the hosts run as the daemon's own user
host_user = $(id -un)
[agent.ticker]
kind = counter
config = {"interval_ms": 20}
[agent.crasher]
kind = misbehave
config = {"mode": "segv", "after": 2}
[agent.spinner]
kind = misbehave
config = {"mode": "loop", "after": 2}
[agent.peeker]
kind = misbehave
config = {"mode": "peek", "after": 0, "interval_ms": 100, "path": "$work/outside.txt"}
INI
    strace -f -qq -o "$work/trace" "$build/runtime/bin/outlastd" \
        --config "$work/sandbox.ini" >"$work/log" 2>&1 &
    pid=$!
    cli() { "$build/runtime/bin/outlast" --data-dir "$work/sdata" "$@"; }
    i=0
    while [ $i -lt 600 ] &&
        [ "$(cli agents 2>/dev/null | grep -c quarantined)" -lt 2 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    [ "$(cli agents 2>/dev/null | grep -c quarantined)" -ge 2 ] ||
        fail "the bad agents were not quarantined under strace; log: $(tail -5 "$work/log")"
    http=$(cli --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["node"]["http"])')
    curl -sf "http://$http/metrics" | grep -q '^outlast_agent_crashes_total{reason="deadline"} 2$' ||
        fail "/metrics does not count the two deadline crashes"
    curl -sf "http://$http/api/status" >/dev/null || fail "/api/status"
    # The peeker shares its host with the bad agents, so it may only get
    # to its first peek once they are quarantined.
    i=0
    while [ $i -lt 100 ] && ! cli logs peeker 2>/dev/null | grep -q 'peek: ok'; do
        sleep 0.1
        i=$((i + 1))
    done
    cli logs peeker | grep -q 'peek: ok' ||
        fail "the peeker could not read a file outside the data directory: $(cli logs peeker 2>&1 | tail -3)"
    node=$(pgrep -P "$pid" -x outlastd) || fail "no outlastd under strace"
    kill -TERM "$node"
    i=0
    while [ $i -lt 300 ] && kill -0 "$pid" 2>/dev/null; do
        sleep 0.1
        i=$((i + 1))
    done
    kill -0 "$pid" 2>/dev/null && fail "outlastd did not stop within 30 s"
    pid=
    systemd-analyze syscall-filter >"$work/groups" 2>/dev/null
    python3 - "$unit" "$work/groups" "$work/trace" <<'PY' || exit 1
import re, sys
unit, groups_file, trace = sys.argv[1:]
groups, cur = {}, None
for line in open(groups_file):
    t = line.strip()
    if line.startswith("@"):
        cur = t
        groups[cur] = []
    elif cur and t and not t.startswith("#"):
        groups[cur].append(t)
def expand(name, seen=()):
    if not name.startswith("@"):
        return {name}
    out = set()
    for x in groups.get(name, []):
        if x not in seen:
            out |= expand(x, seen + (x,))
    return out
allowed, families = set(), None
for line in open(unit):
    if line.startswith("SystemCallFilter="):
        for tok in line.split("=", 1)[1].split():
            allowed |= expand(tok)
    if line.startswith("RestrictAddressFamilies="):
        families = set(line.split("=", 1)[1].split())
used, bad = {}, []
call = re.compile(r"^(\d+)\s+(?:<\.\.\. )?([a-z_0-9]+)(?:\(| resumed>)")
hosts = set()
for line in open(trace):
    m = call.match(line)
    if not m:
        continue
    pid, name = m.groups()
    used.setdefault(name, pid)
    if name == "execve" and "outlast-agent-host" in line:
        hosts.add(pid)
    if name in ("mmap", "mprotect", "pkey_mprotect") and "PROT_EXEC" in line and (
            name != "mmap" or "PROT_WRITE" in line):
        bad.append("MemoryDenyWriteExecute would refuse: " + line.strip())
    if name in ("unshare", "setns") or (name.startswith("clone") and "CLONE_NEW" in line):
        bad.append("RestrictNamespaces would refuse: " + line.strip())
    if name == "socket" and families is not None:
        fam = re.search(r"socket\((AF_[A-Z0-9]+)", line)
        if fam and fam.group(1) not in families:
            bad.append("RestrictAddressFamilies would refuse: " + line.strip())
if not hosts:
    bad.append("no outlast-agent-host was traced")
for name in sorted(set(used) - allowed):
    bad.append("SystemCallFilter would refuse %s (first by pid %s)" % (name, used[name]))
if bad:
    print("FAIL: the unit's sandbox would break the node or its agent hosts:")
    for b in bad[:40]:
        print("  " + b)
    sys.exit(1)
print("sandbox: %d system calls by the node and %d agent host(s), all within "
      "the unit's filter" % (len(used), len(hosts)))
PY
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
