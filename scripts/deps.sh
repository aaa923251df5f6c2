#!/bin/sh
# Install the Debian packages outlast needs to build, test and benchmark.
# Safe to run repeatedly: it only calls apt-get when something is missing.
#
# libmicrohttpd serves /metrics and the status page (and the example
# exchange, examples/exchange), libcurl is how the example keeper agent
# places its orders (examples/keeper), libsystemd gives
# sd_notify, scdoc builds the man pages, python3-jsonschema checks the
# CLI's --json output against docs/schema/ in the tests.  The optional
# packages are for tests that skip, saying why, when one cannot be
# installed: prometheus
# (promtool and a real scraping server), chromium (the status page in a
# real browser), groff-base and man-db (the man pages render),
# bash-completion, systemd (systemd-analyze checks the unit file), strace
# (the node and its agent hosts stay inside the unit's sandbox).
set -eu

pkgs="build-essential pkg-config meson ninja-build
libuv1-dev libsqlite3-dev libsodium-dev libmsgpack-dev libcriterion-dev
libinih-dev libjansson-dev libraft-dev libmicrohttpd-dev libsystemd-dev
libcurl4-openssl-dev libzstd-dev
scdoc sqlite3 iproute2 curl python3-jsonschema"
optional="prometheus chromium groff-base man-db bash-completion systemd
strace"

if [ "${1:-}" = "--bench" ]; then
    pkgs="$pkgs etcd-server etcd-client"
fi

missing() {
    out=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
            out="$out $p"
    done
    echo "$out"
}

# shellcheck disable=SC2086
need=$(missing $pkgs)
# shellcheck disable=SC2086
want=$(missing $optional)
[ -z "$need$want" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
if [ -n "$need" ]; then
    echo "outlast: installing:$need" >&2
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
for p in $want; do
    echo "outlast: installing (optional, for tests): $p" >&2
    $SUDO apt-get install -y -qq --no-install-recommends "$p" >/dev/null ||
        echo "outlast: could not install $p; the tests that need it will skip" >&2
done
exit 0
