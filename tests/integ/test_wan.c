/*
 * The WAN test bed (scripts/wan.sh and its forwarder, bench/wan/olwan.c):
 * three sites whose links have round trips of 20, 40 and 60 ms.
 *
 *  - Each link's measured round trip (wan.sh rtt: TCP connects to a
 *    closed port, answered by a RST) is at least the configured one and
 *    below it plus a generous margin: a check that the forwarder delays,
 *    not a performance figure.
 *  - `cut A B` makes the link drop everything, while the other links
 *    still answer; `heal A B` brings it back.
 *  - A 3-node outlast cluster with one node per site elects a leader and
 *    an agent commits checkpoints across the bed.
 *
 * It skips unless it runs as root with network namespaces and
 * /dev/net/tun, and takes the bed down (`wan.sh down`) even when it fails.
 * Namespaces are olwt<pid>-<site>, so they never meet a bed made by hand
 * or by bench/run-wan.sh; a leftover from a killed run is removed first.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/support/cluster.h"
#include "tests/support/faults.h"

#define PREFIX "olwt"
#define MARGIN_MS 40.0 /* generous: the forwarder shares the CPUs */
#define LEADER_MS 20000
#define COMMIT_MS 20000

static const char *const site[3] = {"aws", "gcp", "home"};
static const double rtt_ms[3][3] = {{0, 20, 40}, {20, 0, 60}, {40, 60, 0}};

static struct tc c;
static char env[1024]; /* the wan.sh command line with its environment */
static char state[128];
static int bed_up;

/* Run `wan.sh ARGS`; its exit code, its whole output in *out (malloc'd,
 * NULL-safe). */
static int wan(char **out, const char *args)
{
    return td_sh(out, "%s %s", env, args);
}

static void teardown(void)
{
    tc_cleanup(&c);
    if (bed_up) {
        char *out = NULL;

        if (wan(&out, "down") != 0)
            cr_log_error("wan.sh down: %s", out ? out : "");
        free(out);
        bed_up = 0;
    }
    if (state[0])
        (void)td_sh(NULL, "rm -rf '%s'", state);
}

TestSuite(wan, .fini = teardown, .timeout = 120);

/* Skip unless this process may make namespaces and TUN devices. */
static void need_privileges(void)
{
    char out[768];
    int fd;

    if (geteuid() != 0)
        cr_skip_test("the WAN bed needs root (network namespaces, TUN)");
    if ((fd = open("/dev/net/tun", O_RDWR)) < 0)
        cr_skip_test("no usable /dev/net/tun");
    close(fd);
    nf_remove_leftovers(PREFIX);
    if (nf_sh(out, sizeof out, "ip netns add %s%d-probe", PREFIX,
              (int)getpid()) != 0)
        cr_skip_test("cannot create a network namespace: %s", out);
    (void)nf_sh(NULL, 0, "ip netns del %s%d-probe", PREFIX, (int)getpid());
}

static void bed_start(void)
{
    const char *src = getenv("OL_SOURCE_ROOT"),
               *build = getenv("OL_BUILD_ROOT");
    char *out = NULL;
    int rv;

    cr_assert(src && build, "run under meson test (OL_SOURCE_ROOT)");
    snprintf(state, sizeof state, "%s/%s%d-bed",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", PREFIX,
             (int)getpid());
    snprintf(env, sizeof env,
             "OL_WAN_PREFIX=%s%d- OL_WAN_DEV=%s%d OL_WAN_STATE='%s' "
             "OLWAN_BIN='%s/tests/olwan' sh '%s/scripts/wan.sh'",
             PREFIX, (int)getpid(), PREFIX, (int)getpid(), state, build,
             src);
    bed_up = 1;
    rv = wan(&out, "up --sites aws,gcp,home "
                   "--rtt aws-gcp=20,aws-home=40,gcp-home=60");
    cr_assert_eq(rv, 0, "wan.sh up: %s", out ? out : "");
    free(out);
}

/* wan.sh rtt from site a to b: 0 and min/max when every probe was
 * answered, else the exit code. */
static int measure(int a, int b, int count, double *min, double *max)
{
    char args[96], *out = NULL, *p;
    double avg;
    int rv;

    snprintf(args, sizeof args, "rtt %s %s %d", site[a], site[b], count);
    rv = wan(&out, args);
    *min = *max = -1;
    if (rv == 0) {
        p = out ? strstr(out, "min/avg/max ") : NULL;
        cr_assert(p && sscanf(p, "min/avg/max %lf/%lf/%lf", min, &avg,
                              max) == 3,
                  "wan.sh %s: %s", args, out ? out : "");
    }
    cr_log_info("wan.sh %s: %s", args, out ? out : "");
    free(out);
    return rv;
}

/* Each follower's lease margin (cluster status) is its lease less two
 * heartbeats (50 ms each here) and the round trip to the leader the
 * transport measured: within the bed's band of the configured one. */
static void lease_margins_follow_the_round_trip(int li)
{
    for (int i = 0; i < 3; i++) {
        struct tc_status st;
        uint64_t end = td_ms() + 10000;
        int64_t want;

        if (i == li)
            continue;
        do {
            cr_assert_eq(tc_status(&c, i, &st), 0);
            if (st.lease_margin_ms != INT64_MIN)
                break;
            td_sleep_ms(100);
        } while (td_ms() < end);
        cr_assert_neq(st.lease_margin_ms, INT64_MIN,
                      "node %d measured no round trip to the leader", i + 1);
        want = st.lease_ms - 100 - (int64_t)rtt_ms[i][li];
        cr_log_info("node %d: lease %" PRId64 " ms, margin %" PRId64
                    " ms (configured round trip %.0f ms)",
                    i + 1, st.lease_ms, st.lease_margin_ms, rtt_ms[i][li]);
        cr_expect_leq(st.lease_margin_ms, want,
                      "node %d: margin %" PRId64 " ms, above lease - 2 "
                      "heartbeats - the configured round trip (%" PRId64
                      ")",
                      i + 1, st.lease_margin_ms, want);
        cr_expect_gt(st.lease_margin_ms, want - MARGIN_MS,
                     "node %d: margin %" PRId64 " ms, far below %" PRId64,
                     i + 1, st.lease_margin_ms, want);
    }
}

Test(wan, links_delay_cut_and_heal_and_a_cluster_commits_across_them)
{
    double min, max;
    int li;

    need_privileges();
    bed_start();

    /* Every link delays by its round trip, give or take the margin. */
    for (int a = 0; a < 3; a++)
        for (int b = a + 1; b < 3; b++) {
            cr_assert_eq(measure(a, b, 5, &min, &max), 0,
                         "%s-%s: a probe went unanswered", site[a],
                         site[b]);
            cr_expect_geq(min, rtt_ms[a][b], "%s-%s: min %.2f ms < %.0f",
                          site[a], site[b], min, rtt_ms[a][b]);
            cr_expect_lt(max, rtt_ms[a][b] + MARGIN_MS,
                         "%s-%s: max %.2f ms, configured %.0f", site[a],
                         site[b], max, rtt_ms[a][b]);
        }

    /* A cut drops everything on that link, and only there. */
    cr_assert_eq(wan(NULL, "cut aws gcp"), 0);
    cr_expect_neq(measure(0, 1, 3, &min, &max), 0,
                  "aws-gcp answered while cut");
    cr_expect_neq(measure(1, 0, 3, &min, &max), 0,
                  "gcp-aws answered while cut");
    cr_expect_eq(measure(0, 2, 2, &min, &max), 0,
                 "aws-home stopped answering when aws-gcp was cut");
    cr_assert_eq(wan(NULL, "heal aws gcp"), 0);
    cr_expect_eq(measure(0, 1, 3, &min, &max), 0,
                 "aws-gcp does not answer after heal");

    /* A cluster across the sites. */
    tc_init(&c, &(struct tc_opts){.n = 3, .tag = "wan"});
    for (int i = 0; i < 3; i++) {
        snprintf(c.nodes[i].ns, sizeof c.nodes[i].ns, "%s%d-%s", PREFIX,
                 (int)getpid(), site[i]);
        snprintf(c.nodes[i].addr, sizeof c.nodes[i].addr, "10.77.0.%d:%d",
                 i + 1, c.base_port + i + 1);
    }
    tc_start(&c);
    li = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(li, 0, "no leader across the bed within %d ms",
                  LEADER_MS);
    {
        char err[512];
        uint64_t end = td_ms() + COMMIT_MS;
        struct tc_agent a[4];
        int n = 0;

        cr_assert_eq(td_spawn_agent(&c.nodes[li].d, "counter", "w1",
                                    "{\"interval_ms\": 20}", err,
                                    sizeof err),
                     0, "spawn 'w1': %s", err);
        /* Several steps committed, each one replicated over the bed. */
        do {
            n = tc_agents(&c, li, a, 4);
            if (n == 1 && a[0].seq >= 5)
                break;
            td_sleep_ms(50);
        } while (td_ms() < end);
        cr_assert(n == 1 && a[0].seq >= 5 && a[0].owner != 0,
                  "agent 'w1' did not commit 5 checkpoints within %d ms "
                  "(%d row(s), seq %lu)",
                  COMMIT_MS, n, n > 0 ? (unsigned long)a[0].seq : 0ul);
    }
    lease_margins_follow_the_round_trip(li);
}
