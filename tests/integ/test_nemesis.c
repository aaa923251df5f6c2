/*
 * The process nemesis (tests/support/nemesis.h): real outlastd clusters of
 * 3 and 5 nodes in network namespaces, under seeded faults (kill -9,
 * SIGSTOP/SIGCONT of the leader, an owner or a follower for 0.5-3 x
 * failover_ms, simulated suspend, splits, a slow disk on the leader),
 * checked after every round for lost checkpoints, an agent running in two
 * places, sends delivered other than once and placements from old terms.
 * The wan_* scenarios run the same over the WAN test bed (scripts/wan.sh:
 * links with 20-90 ms round trips), where they skip without root or
 * /dev/net/tun.
 *
 * Each scenario is one test with a fixed seed; OL_NEMESIS_SEED and
 * OL_NEMESIS_ROUNDS change them.  Scenarios that this build is known to
 * fail are listed in KNOWN_FAILING and run only with OL_NEMESIS_ALL=1
 * (tests/RESULTS.md records what they find): they are skipped with that
 * reason, never passed.  scripts/soak-nemesis.sh runs many more rounds.
 *
 * The `shims` suite checks the fault tooling itself: that the suspend
 * shim stops libuv's clocks (uv_hrtime, uv_now) across a stop while
 * CLOCK_BOOTTIME runs on, and that the slow-disk shim delays fdatasync.
 * The `plan` suite checks that a round's plan is a pure function of the
 * seed.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/daemon.h"
#include "tests/support/faults.h"
#include "tests/support/nemesis.h"

/* Scenarios that fail on this build; run them with OL_NEMESIS_ALL=1. */
static const char *const KNOWN_FAILING[] = {
    /* None: every scenario passes at its default seed.  The last ones
     * listed failed (c), a send retried on another node delivered twice
     * (fixed by the state machine's table of applied request ids), and
     * (b), a step under the old epoch after a suspend (fixed by the lease
     * check before every step). */
    NULL,
};

static struct nem_opts opts(const char *name, int n, unsigned kinds,
                            unsigned roles, int rounds, uint64_t seed,
                            int max_faults, int client)
{
    struct nem_opts o = {
        .name = name,
        .n = n,
        .kinds = kinds,
        .roles = roles,
        .rounds = rounds,
        .seed = seed,
        .max_faults = max_faults,
        .agents = n == 5 ? 8 : 5,
        .no_client = !client,
    };

    return o;
}

static void run(const struct nem_opts *o)
{
    const char *all = getenv("OL_NEMESIS_ALL");

    for (size_t i = 0; KNOWN_FAILING[i]; i++)
        if (strcmp(KNOWN_FAILING[i], o->name) == 0 &&
            !(all && all[0] == '1'))
            cr_skip_test("nemesis %s finds violations on this build (see "
                         "tests/RESULTS.md); run it with OL_NEMESIS_ALL=1",
                         o->name);
    nem_run(o, NULL);
}

static void scenario(const char *name, int n, unsigned kinds, unsigned roles,
                     int rounds, uint64_t seed, int max_faults, int client)
{
    struct nem_opts o = opts(name, n, kinds, roles, rounds, seed, max_faults,
                             client);

    run(&o);
}

TestSuite(nemesis, .fini = nem_teardown, .timeout = 900);

#define ROLES_ALL NEM_ALL_ROLES
#define ROLE(r) (1u << (r))
#define CLIENT 1
#define NO_CLIENT 0

/* Without the client: (a), (b), (d) and recovery only. */

Test(nemesis, kill_3_no_client)
{
    scenario("kill_3_no_client", 3, NEM_K(NEM_KILL), ROLES_ALL, 3, 12, 1,
             NO_CLIENT);
}

Test(nemesis, pause_follower_3_no_client)
{
    scenario("pause_follower_3_no_client", 3, NEM_K(NEM_PAUSE),
             ROLE(NEM_FOLLOWER), 3, 22, 1, NO_CLIENT);
}

Test(nemesis, slow_disk_leader_3_no_client)
{
    scenario("slow_disk_leader_3_no_client", 3, NEM_K(NEM_SLOW_DISK),
             ROLE(NEM_LEADER), 3, 82, 1, NO_CLIENT);
}

/* With the client: every invariant. */

Test(nemesis, kill_3)
{
    scenario("kill_3", 3, NEM_K(NEM_KILL), ROLES_ALL, 3, 11, 1, CLIENT);
}

Test(nemesis, pause_follower_3)
{
    scenario("pause_follower_3", 3, NEM_K(NEM_PAUSE), ROLE(NEM_FOLLOWER), 3,
             21, 1, CLIENT);
}

Test(nemesis, pause_owner_3)
{
    scenario("pause_owner_3", 3, NEM_K(NEM_PAUSE), ROLE(NEM_OWNER), 3, 31,
             1, CLIENT);
}

Test(nemesis, pause_leader_3)
{
    scenario("pause_leader_3", 3, NEM_K(NEM_PAUSE), ROLE(NEM_LEADER), 3, 41,
             1, CLIENT);
}

Test(nemesis, suspend_owner_3)
{
    scenario("suspend_owner_3", 3, NEM_K(NEM_SUSPEND), ROLE(NEM_OWNER), 3,
             51, 1, CLIENT);
}

Test(nemesis, suspend_leader_3)
{
    scenario("suspend_leader_3", 3, NEM_K(NEM_SUSPEND), ROLE(NEM_LEADER), 3,
             52, 1, CLIENT);
}

Test(nemesis, split_minority_3)
{
    scenario("split_minority_3", 3, NEM_K(NEM_SPLIT), ROLES_ALL, 3, 61, 1,
             CLIENT);
}

Test(nemesis, split_minority_5)
{
    scenario("split_minority_5", 5, NEM_K(NEM_SPLIT), ROLES_ALL, 3, 62, 1,
             CLIENT);
}

Test(nemesis, split_leader_pair_5)
{
    scenario("split_leader_pair_5", 5, NEM_K(NEM_SPLIT_PAIR), ROLES_ALL, 3,
             71, 1, CLIENT);
}

Test(nemesis, slow_disk_leader_3)
{
    scenario("slow_disk_leader_3", 3, NEM_K(NEM_SLOW_DISK), ROLE(NEM_LEADER),
             3, 81, 1, CLIENT);
}

Test(nemesis, mixed_3)
{
    scenario("mixed_3", 3, NEM_ALL_KINDS, ROLES_ALL, 4, 91, 2, CLIENT);
}

Test(nemesis, mixed_5)
{
    scenario("mixed_5", 5, NEM_ALL_KINDS, ROLES_ALL, 4, 92, 2, CLIENT);
}

/* Every kind of fault while snapshots come often and the log keeps little
 * behind them: by entries (every 128, 32 kept) and by bytes (1 MiB, half
 * of it kept), so a node that was away catches up from a snapshot. */
Test(nemesis, mixed_3_short_log)
{
    struct nem_opts o = opts("mixed_3_short_log", 3, NEM_ALL_KINDS,
                             ROLES_ALL, 4, 95, 2, CLIENT);

    o.snapshot_threshold = 128;
    o.snapshot_trailing = 32;
    o.snapshot_mb = 1;
    run(&o);
}

/* Over the WAN test bed (scripts/wan.sh), every kind of fault: three
 * sites whose links have round trips of 20, 40 and 60 ms, and five with
 * 20-90 ms. */
static void wan_scenario(const char *name, int n, int rounds, uint64_t seed,
                         const char *rtt)
{
    struct nem_opts o = opts(name, n, NEM_ALL_KINDS, ROLES_ALL, rounds, seed,
                             2, CLIENT);

    o.wan_rtt = rtt;
    run(&o);
}

Test(nemesis, wan_mixed_3)
{
    wan_scenario("wan_mixed_3", 3, 4, 93, "s1-s2=20,s1-s3=40,s2-s3=60");
}

Test(nemesis, wan_mixed_5)
{
    wan_scenario("wan_mixed_5", 5, 3, 94,
                 "s1-s2=20,s1-s3=40,s1-s4=30,s1-s5=80,s2-s3=60,s2-s4=30,"
                 "s2-s5=80,s3-s4=50,s3-s5=90,s4-s5=70");
}

/* ---- the plan ---- */

Test(plan, is_a_pure_function_of_the_seed)
{
    struct nem_opts o = {.name = "p", .n = 5, .kinds = NEM_ALL_KINDS,
                         .roles = NEM_ALL_ROLES, .max_faults = 2};
    int kinds_seen = 0, differs = 0;

    for (uint64_t seed = 1; seed <= 200; seed++)
        for (int r = 1; r <= 5; r++) {
            struct nem_plan a, b, c;

            nem_plan(seed, r, &o, 1000, &a);
            nem_plan(seed, r, &o, 1000, &b);
            cr_assert_eq(memcmp(&a, &b, sizeof a), 0,
                         "seed %" PRIu64 " round %d planned twice differs",
                         seed, r);
            nem_plan(seed + 1000, r, &o, 1000, &c);
            differs += memcmp(&a, &c, sizeof a) != 0;
            cr_assert(a.n_faults >= 1 && a.n_faults <= 2);
            for (int i = 0; i < a.n_faults; i++) {
                const struct nem_fault *f = &a.f[i];

                kinds_seen |= 1 << f->kind;
                if (f->kind == NEM_PAUSE || f->kind == NEM_SUSPEND ||
                    f->kind == NEM_KILL)
                    cr_assert(f->hold_ms >= 500 && f->hold_ms <= 3000,
                              "%s held %d ms", nem_kind_name(f->kind),
                              f->hold_ms);
                if (f->kind == NEM_SLOW_DISK)
                    cr_assert(f->delay_us >= 20000 && f->delay_us <= 250000);
                if (f->kind == NEM_SPLIT_PAIR)
                    cr_assert_eq(f->role, NEM_LEADER);
            }
        }
    cr_expect_eq(kinds_seen, (int)NEM_ALL_KINDS, "kinds drawn: %#x",
                 kinds_seen);
    cr_expect_gt(differs, 900, "other seeds gave the same plan too often");
}

Test(plan, draws_only_the_kinds_and_roles_asked_for)
{
    struct nem_opts o = {.name = "p", .n = 3, .kinds = NEM_K(NEM_PAUSE),
                         .roles = 1u << NEM_OWNER, .max_faults = 1};

    for (uint64_t seed = 1; seed <= 100; seed++) {
        struct nem_plan p;

        nem_plan(seed, 1, &o, 1000, &p);
        cr_assert_eq(p.n_faults, 1);
        cr_assert_eq(p.f[0].kind, NEM_PAUSE);
        cr_assert_eq(p.f[0].role, NEM_OWNER);
    }
}

/* ---- the shims ---- */

struct probe {
    pid_t pid;
    FILE *in, *out;
};

static struct nf_ctl ctl;
static char tmpdir[64];

static void shims_fini(void)
{
    nf_ctl_close(&ctl);
    if (tmpdir[0]) {
        char cmd[128];

        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "cleanup of %s failed\n", tmpdir);
    }
}

TestSuite(shims, .fini = shims_fini, .timeout = 60);

static void probe_start(struct probe *p)
{
    int in[2], out[2];
    char path[300];
    const char *root = getenv("OL_BUILD_ROOT");

    snprintf(tmpdir, sizeof tmpdir, "/tmp/ol-shim-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    snprintf(path, sizeof path, "%s/ctl", tmpdir);
    nf_ctl_create(&ctl, path);
    cr_assert_eq(pipe(in), 0);
    cr_assert_eq(pipe(out), 0);
    p->pid = fork();
    cr_assert(p->pid >= 0);
    if (p->pid == 0) {
        char env[400], exe[400], asan[1024];

        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        putenv((char *)nf_preload_env());
        snprintf(env, sizeof env, "%s=%s", OL_SHIM_CTL_ENV, path);
        putenv(env);
        /* Under the sanitizers the shims load before their runtime. */
        snprintf(asan, sizeof asan,
                 "ASAN_OPTIONS=%s%sverify_asan_link_order=0",
                 getenv("ASAN_OPTIONS") ? getenv("ASAN_OPTIONS") : "",
                 getenv("ASAN_OPTIONS") ? ":" : "");
        putenv(asan);
        snprintf(exe, sizeof exe, "%s/tests/shim/shim-probe",
                 root ? root : "build");
        execl(exe, "shim-probe", tmpdir, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    p->in = fdopen(in[1], "w");
    p->out = fdopen(out[0], "r");
    cr_assert(p->in && p->out);
}

static void probe_ask(struct probe *p, const char *cmd, char *line,
                      size_t cap)
{
    fprintf(p->in, "%s\n", cmd);
    fflush(p->in);
    cr_assert_not_null(fgets(line, (int)cap, p->out),
                       "shim-probe did not answer '%s'", cmd);
}

static void probe_stop(struct probe *p)
{
    int st;

    fprintf(p->in, "q\n");
    fclose(p->in);
    fclose(p->out);
    waitpid(p->pid, &st, 0);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "shim-probe exited with status %d", st);
}

struct times {
    uint64_t hrtime, now;
    int64_t mono, boot, tmono;
};

static struct times probe_times(struct probe *p)
{
    char line[300];
    struct times t;

    probe_ask(p, "t", line, sizeof line);
    cr_assert_eq(sscanf(line,
                        "hrtime %" SCNu64 " now %" SCNu64 " mono %" SCNd64
                        " boot %" SCNd64 " tmono %" SCNd64,
                        &t.hrtime, &t.now, &t.mono, &t.boot, &t.tmono),
                 5, "shim-probe said '%s'", line);
    return t;
}

Test(shims, suspend_stops_libuv_clocks_while_boottime_runs)
{
    struct probe p;
    struct times a, b;
    int64_t stopped_ms;

    probe_start(&p);
    a = probe_times(&p);
    stopped_ms = nf_suspend(&ctl, p.pid, 1000);
    b = probe_times(&p);
    cr_log_info("suspended %" PRId64 " ms: uv_hrtime +%.1f ms, uv_now +%"
                PRIu64 " ms, CLOCK_MONOTONIC +%.1f ms, CLOCK_BOOTTIME +%.1f "
                "ms, true monotonic +%.1f ms",
                stopped_ms, (double)(b.hrtime - a.hrtime) / 1e6,
                b.now - a.now, (double)(b.mono - a.mono) / 1e6,
                (double)(b.boot - a.boot) / 1e6,
                (double)(b.tmono - a.tmono) / 1e6);
    cr_assert_geq(stopped_ms, 1000);
    /* The clocks the node runs on stood still across the stop... */
    cr_expect_lt(b.hrtime - a.hrtime, 500000000ull,
                 "uv_hrtime moved %" PRIu64 " ns across a suspend",
                 b.hrtime - a.hrtime);
    cr_expect_lt(b.now - a.now, 500u, "uv_now moved %" PRIu64 " ms",
                 b.now - a.now);
    cr_expect_lt(b.mono - a.mono, 500000000, "CLOCK_MONOTONIC moved");
    /* ...while boot time and the true clock went on. */
    cr_expect_geq(b.boot - a.boot, 1000000000, "CLOCK_BOOTTIME moved only %"
                  PRId64 " ns", b.boot - a.boot);
    cr_expect_geq(b.tmono - a.tmono, 1000000000);
    cr_expect_gt(ctl.page->clock_shifted, 0u);
    /* And the monotonic clocks never go backwards. */
    cr_expect_geq(b.hrtime, a.hrtime);
    cr_expect_geq(b.mono, a.mono);
    probe_stop(&p);
}

Test(shims, slow_disk_delays_fdatasync_until_turned_off)
{
    struct probe p;
    char line[200];
    int64_t ns;

    probe_start(&p);
    nf_ctl_slow_disk(&ctl, 80000);
    probe_ask(&p, "s", line, sizeof line);
    cr_assert_eq(sscanf(line, "sync %" SCNd64, &ns), 1, "'%s'", line);
    cr_expect_geq(ns, 80000000, "a delayed fdatasync took %" PRId64 " ns",
                  ns);
    cr_expect_geq(ctl.page->syncs_delayed, 1u);
    nf_ctl_slow_disk(&ctl, 0);
    probe_ask(&p, "s", line, sizeof line);
    cr_expect_eq(ctl.page->syncs_delayed, 1u,
                 "a sync was delayed after the delay was turned off");
    probe_stop(&p);
}
