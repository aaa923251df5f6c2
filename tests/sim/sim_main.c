/*
 * outlast-sim: run the deterministic cluster simulation over many seeds.
 *
 *   outlast-sim [--start S] [--count N] [--seed S] [--nodes 3|5]
 *               [--naive | --hold-only] [--verbose] [--keep]
 *               [--tmpdir DIR]
 *
 * --naive applies entries as libraft 0.15 commits them and leaves its
 * messages as they are; --hold-only keeps the FSM's hold but leaves the
 * messages as they are.  Both exist to show what each part prevents.
 *
 * Prints one line per schedule with a violation (its seed reruns it
 * exactly with --seed) and a summary; exits 1 if any schedule broke an
 * invariant, 2 on bad arguments, 3 if the harness itself failed.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "sim.h"

static int usage(void)
{
    fprintf(stderr, "usage: outlast-sim [--start S] [--count N] [--seed S] "
                    "[--nodes 3|5] [--naive | --hold-only] [--verbose] [--keep] "
                    "[--tmpdir DIR]\n");
    return 2;
}

static int num(const char *s, uint64_t *out)
{
    char *end;

    if (s == NULL || *s == '\0' || *s == '-')
        return -1;
    *out = strtoull(s, &end, 0);
    return *end ? -1 : 0;
}

int main(int argc, char **argv)
{
    struct sim_opts o;
    struct sim_result r, tot;
    uint64_t start = 0, count = 1, v, failed = 0, broken = 0, abandoned = 0;
    struct timespec t0, t1;

    memset(&o, 0, sizeof o);
    memset(&tot, 0, sizeof tot);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *arg = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--naive") == 0) {
            o.naive = 1;
            o.as_is = 1;
        } else if (strcmp(a, "--hold-only") == 0) {
            o.as_is = 1;
        } else if (strcmp(a, "--verbose") == 0) {
            o.verbose = 1;
        } else if (strcmp(a, "--keep") == 0) {
            o.keep = 1;
        } else if (strcmp(a, "--tmpdir") == 0 && arg) {
            o.tmpdir = arg;
            i++;
        } else if (strcmp(a, "--start") == 0 && num(arg, &start) == 0) {
            i++;
        } else if (strcmp(a, "--count") == 0 && num(arg, &count) == 0) {
            i++;
        } else if (strcmp(a, "--seed") == 0 && num(arg, &start) == 0) {
            count = 1;
            i++;
        } else if (strcmp(a, "--nodes") == 0 && num(arg, &v) == 0 &&
                   (v == 3 || v == 5)) {
            o.nodes = (unsigned)v;
            i++;
        } else {
            fprintf(stderr, "outlast-sim: unknown or incomplete argument "
                            "'%s'\n",
                    a);
            return usage();
        }
    }
    ol_log_set_level(o.verbose ? OL_LOG_WARN : OL_LOG_ERROR - 1);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uint64_t seed = start; seed < start + count; seed++) {
        o.seed = seed;
        if (sim_run(&o, &r) != 0) {
            printf("seed %" PRIu64 ": harness failed: %s\n", seed, r.first);
            broken++;
            continue;
        }
        abandoned += r.abandoned != 0;
        if (r.violations) {
            failed++;
            printf("seed %" PRIu64 ": %u violation(s), first: %s "
                   "(databases in %s; rerun: outlast-sim --seed %" PRIu64
                   "%s --verbose)\n",
                   seed, r.violations, r.first, r.dir, seed,
                   o.naive ? " --naive" : "");
        }
        tot.acked += r.acked;
        tot.entries += r.entries;
        tot.leaders += r.leaders;
        tot.kills += r.kills;
        tot.partitions += r.partitions;
        tot.installs += r.installs;
        tot.refusals += r.refusals;
        tot.paced += r.paced;
        tot.sim_ms += r.sim_ms;
        if (r.held_max > tot.held_max)
            tot.held_max = r.held_max;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("outlast-sim: %" PRIu64 " schedule(s) from seed %" PRIu64
           "%s: %" PRIu64 " with violations, %" PRIu64 " harness failures, "
           "%" PRIu64 " abandoned (past the fixture's model); "
           "%" PRIu64 " checkpoints acknowledged, %" PRIu64 " entries, "
           "%" PRIu64 " leaderships, %" PRIu64 " kills, %" PRIu64
           " partitions, %" PRIu64 " snapshot installs, %" PRIu64
           " refusals, %" PRIu64 " leader appends paced by answers, most "
           "entries held at once %" PRIu64 "; %.1f s "
           "simulated in %.1f s\n",
           count, start, o.naive ? " (naive apply, libraft as is)"
                   : o.as_is ? " (hold only, libraft as is)" : "",
           failed, broken, abandoned,
           tot.acked, tot.entries, tot.leaders, tot.kills, tot.partitions,
           tot.installs, tot.refusals, tot.paced, tot.held_max,
           tot.sim_ms / 1000.0,
           (double)(t1.tv_sec - t0.tv_sec) +
               (t1.tv_nsec - t0.tv_nsec) / 1e9);
    if (broken)
        return 3;
    return failed ? 1 : 0;
}
