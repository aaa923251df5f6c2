#!/bin/sh
# The WAN test bed: one network namespace per emulated site, joined by
# olwan (bench/wan/olwan.c), a forwarder that delays each packet by half
# its link's round trip (this kernel has no netem).  Needs root (network
# namespaces, /dev/net/tun) and iproute2.
#
#   scripts/wan.sh up --sites aws,gcp,home \
#       --rtt aws-gcp=30,aws-home=60,gcp-home=80 [--jitter MS] [--loss PCT]
#       [--seed N] [--queue PACKETS]
#   scripts/wan.sh exec SITE cmd...   run a command in a site's namespace
#   scripts/wan.sh rtt A B [COUNT]    measure A-B's round trip from A (5)
#   scripts/wan.sh cut A B            partition the link A-B (both ways)
#   scripts/wan.sh heal A B           restore it
#   scripts/wan.sh status             sites, addresses, links, counters
#   scripts/wan.sh down               remove every namespace, device and
#                                     forwarder it made (idempotent)
#
# Site k (in --sites order, from 1) is namespace ${OL_WAN_PREFIX}SITE with
# address ${OL_WAN_NET}.k/24 on device wan0 and `lo` up; the /24 is routed
# through wan0 to the forwarder.  A link missing from --rtt has no delay.
# --jitter adds a uniform 0..MS to each packet's one-way delay without
# reordering; --loss drops that percentage of packets on every link (a
# seeded PRNG: --seed makes runs repeat their draws).  `rtt` needs no
# ping: it times TCP connects to a closed port (the RST comes back one
# round trip later) with `olwan --probe`; it fails if any went unanswered.
#
# Environment (defaults): OL_WAN_PREFIX (olwan-), OL_WAN_NET (10.77.0),
# OL_WAN_STATE (/run/olwan: the forwarder's pid, log and links file),
# OL_WAN_DEV (olwan: the devices' names before they move, DEV1..DEVn),
# OLWAN_BIN (the forwarder; default: built from bench/wan/*.c into
# the state directory with cc).  Two beds can run at once with different
# prefixes, networks, state directories and device names.
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
prefix=${OL_WAN_PREFIX:-olwan-}
net=${OL_WAN_NET:-10.77.0}
state=${OL_WAN_STATE:-/run/olwan}
dev=${OL_WAN_DEV:-olwan}

die() {
    echo "wan.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '2,/^set -eu/p' "$0" | sed -e '/^set -eu/d' -e 's/^# \{0,1\}//' >&2
    exit 2
}

sites() {
    [ -f "$state/sites" ] || die "no bed is up (no $state/sites)"
    cat "$state/sites"
}

# The index (from 1) of site $1, or die.
site_index() {
    sites >/dev/null
    k=1
    for s in $(sites); do
        if [ "$s" = "$1" ]; then
            echo "$k"
            return
        fi
        k=$((k + 1))
    done
    die "unknown site '$1' (sites: $(sites | tr '\n' ' '))"
}

forwarder() {
    if [ -n "${OLWAN_BIN:-}" ]; then
        [ -x "$OLWAN_BIN" ] || die "OLWAN_BIN=$OLWAN_BIN is not executable"
        echo "$OLWAN_BIN"
        return
    fi
    bin=$state/olwan
    stale=
    for f in "$src"/bench/wan/*.[ch]; do
        [ "$f" -nt "$bin" ] && stale=1
    done
    if [ ! -x "$bin" ] || [ -n "$stale" ]; then
        ${CC:-cc} -O2 -std=gnu11 -Wall -o "$bin" "$src"/bench/wan/*.c ||
            die "cannot build the forwarder from bench/wan/*.c"
    fi
    echo "$bin"
}

cmd_up() {
    site_list= rtt= fwd_args=
    while [ $# -gt 0 ]; do
        [ $# -ge 2 ] || die "$1 needs a value"
        case $1 in
        --sites) site_list=$2 ;;
        --rtt) rtt=$2 ;;
        --jitter | --loss | --seed | --queue)
            fwd_args="$fwd_args $1 $2" ;;
        *) die "up: unknown option '$1'" ;;
        esac
        shift 2
    done
    [ -n "$site_list" ] || die "up: --sites is required"
    [ ! -f "$state/sites" ] || die "a bed is already up ($state/sites); run 'down' first"
    case $net in
    *[!0-9.]* | *..* | .* | *.) die "OL_WAN_NET='$net' is not a.b.c" ;;
    esac
    [ "$(id -u)" = 0 ] || die "needs root (network namespaces, /dev/net/tun)"
    [ -c /dev/net/tun ] || die "no /dev/net/tun"
    mkdir -p "$state"
    bin=$(forwarder)
    : >"$state/links"
    rm -f "$state/ready"
    # The forwarder checks the sites, the round trips and every option, and
    # names what is wrong; its devices exist once it writes the ready file.
    # shellcheck disable=SC2086
    setsid "$bin" --sites "$site_list" ${rtt:+--rtt "$rtt"} $fwd_args \
        --links "$state/links" --net "$net.0" --dev-prefix "$dev" \
        --ready "$state/ready" >"$state/olwan.log" 2>&1 </dev/null &
    echo $! >"$state/pid"
    i=0
    while [ ! -s "$state/ready" ]; do
        if ! kill -0 "$(cat "$state/pid")" 2>/dev/null; then
            cat "$state/olwan.log" >&2
            rm -f "$state/pid"
            die "the forwarder did not start"
        fi
        i=$((i + 1))
        [ $i -le 100 ] || die "the forwarder did not get ready in 10 s"
        sleep 0.1
    done
    echo "$site_list" | tr ',' '\n' >"$state/sites"
    k=1
    for s in $(sites); do
        ns=$prefix$s
        ip netns add "$ns"
        ip netns exec "$ns" ip link set lo up
        ip link set "$dev$k" netns "$ns"
        ip -n "$ns" link set "$dev$k" name wan0
        ip -n "$ns" addr add "$net.$k/24" dev wan0
        ip -n "$ns" link set wan0 up
        k=$((k + 1))
    done
    echo "wan.sh: up: $(sites | tr '\n' ' ')on $net.0/24 (namespaces $prefix*)"
}

# Is process $1 alive (not gone, not a zombie) and our forwarder?
forwarder_alive() {
    [ -r "/proc/$1/status" ] && ! grep -q '^State:.*Z' "/proc/$1/status" &&
        grep -q olwan "/proc/$1/cmdline" 2>/dev/null
}

cmd_down() {
    if [ -f "$state/pid" ]; then
        pid=$(cat "$state/pid")
        # Only our forwarder: the pid file names it, and it must still be
        # the process we started.
        if forwarder_alive "$pid"; then
            kill -TERM "$pid"
            i=0
            while forwarder_alive "$pid" && [ $i -lt 50 ]; do
                sleep 0.1
                i=$((i + 1))
            done
            if forwarder_alive "$pid"; then kill -KILL "$pid"; fi
        fi
        rm -f "$state/pid"
    fi
    if [ -f "$state/sites" ]; then
        for s in $(cat "$state/sites"); do
            if ip netns list | grep -q "^$prefix$s\( \|$\)"; then
                ip netns del "$prefix$s"
            fi
        done
    fi
    rm -f "$state/sites" "$state/links" "$state/ready"
}

# Rewrite the links file without the line for A-B, then add $3 if given,
# and have the forwarder read it.
set_link() {
    a=$1 b=$2
    site_index "$a" >/dev/null
    site_index "$b" >/dev/null
    [ "$a" != "$b" ] || die "a link joins two different sites"
    awk -v a="$a" -v b="$b" \
        '!(($1 == a && $2 == b) || ($1 == b && $2 == a))' \
        "$state/links" >"$state/links.new"
    [ -z "${3:-}" ] || echo "$a $b $3" >>"$state/links.new"
    mv "$state/links.new" "$state/links"
    kill -USR1 "$(cat "$state/pid")" || die "the forwarder is not running"
}

cmd_status() {
    sites >/dev/null
    pid=$(cat "$state/pid" 2>/dev/null || echo '')
    if [ -n "$pid" ] && forwarder_alive "$pid"; then
        echo "forwarder: pid $pid ($state/olwan.log)"
    else
        echo "forwarder: NOT RUNNING"
    fi
    k=1
    for s in $(sites); do
        echo "site $s: namespace $prefix$s, $net.$k"
        k=$((k + 1))
    done
    echo "links file (cuts and overrides):"
    sed 's/^/  /' "$state/links"
    if [ -n "$pid" ] && kill -USR2 "$pid" 2>/dev/null; then
        sleep 0.2
        # The newest counters block: the header line and the lines after.
        awk '/olwan: link /{n = 0; delete b} {b[n++] = $0}
             END {for (i = 0; i < n; i++) print b[i]}' "$state/olwan.log"
    fi
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
up) cmd_up "$@" ;;
down) cmd_down ;;
exec)
    [ $# -ge 2 ] || die "usage: exec SITE cmd..."
    site_index "$1" >/dev/null
    ns=$prefix$1
    shift
    exec ip netns exec "$ns" "$@"
    ;;
rtt)
    [ $# -eq 2 ] || [ $# -eq 3 ] || die "usage: rtt A B [COUNT]"
    site_index "$1" >/dev/null
    bin=$(forwarder)
    exec ip netns exec "$prefix$1" "$bin" --probe "$net.$(site_index "$2")" \
        --count "${3:-5}" --timeout-ms 1000
    ;;
cut)
    [ $# -eq 2 ] || die "usage: cut A B"
    set_link "$1" "$2" cut
    ;;
heal)
    [ $# -eq 2 ] || die "usage: heal A B"
    set_link "$1" "$2"
    ;;
status) cmd_status ;;
-h | --help | help) usage ;;
*) die "unknown command '$cmd' (up, down, exec, rtt, cut, heal, status)" ;;
esac
