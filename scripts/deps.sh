#!/bin/sh
# Install the Debian packages outlast needs to build, test and benchmark.
# Safe to run repeatedly: it only calls apt-get when something is missing.
set -eu

pkgs="build-essential pkg-config meson ninja-build
libuv1-dev libsqlite3-dev libsodium-dev libmsgpack-dev libcriterion-dev
libinih-dev libjansson-dev libraft-dev sqlite3 iproute2"

if [ "${1:-}" = "--bench" ]; then
    pkgs="$pkgs etcd-server etcd-client"
fi

missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
        missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
echo "outlast: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
