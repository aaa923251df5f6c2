# Shared by the bench/run*.sh scripts (sourced, not run).  They set $src,
# $build and $jobs before calling these.

# Configure $build as a release tree with the benchmarks, then build the
# named targets.
bench_build() {
    if [ -f "$build/build.ninja" ]; then
        meson configure "$build" -Dbuildtype=release -Dbench=true >/dev/null
    else
        meson setup "$build" "$src" -Dbuildtype=release -Dbench=true >/dev/null
    fi
    ninja -C "$build" -j"$jobs" "$@" >/dev/null
}

# The header every run prints: when, what, and on which machine.
bench_header() {
    echo "# date:    $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
    echo "# commit:  $(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo '?')" \
         "(plus uncommitted changes: $(git -C "$src" status --porcelain 2>/dev/null | wc -l) files)"
    echo "# machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)," \
         "$(uname -sr), load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# cpu:     $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
}

# A private directory under $TMPDIR for everything a run writes, removed
# on exit; TMPDIR then points into it.
bench_workdir() {
    base=${TMPDIR:-/tmp}
    work=$(mktemp -d "$base/olbench-$1.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    trap 'rm -rf "$work"; exit 130' INT TERM
    export TMPDIR="$work"
}
