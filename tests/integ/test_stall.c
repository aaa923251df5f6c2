/*
 * A leader whose loop was away for longer than a quarter of failover_ms
 * (replication/cluster_stall.c):
 *  - busy with its own work (the `suspend` shim spins its loop thread on
 *    the CPU, as applying a large entry does): it does not relearn every
 *    node's liveness, and moves no agent off a live node;
 *  - stopped (SIGSTOP of the node and its agent hosts, as a paused VM):
 *    it relearns, as before ("the loop stalled").
 * Both gaps are kept under the election timeout so that the node most
 * likely still leads when its loop comes back; an attempt in which it did
 * not is not counted, and a few are made.
 *
 * And a follower whose loop was busy for longer than the longest election
 * timeout stands for no election when it comes back: the leader's
 * heartbeats wait unread, and libraft's clock leaves out the loop's own
 * busy time (cluster_stall.c).  Paused as long, it does stand: a stopped
 * process used no CPU, and that time counts.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "tests/support/cluster.h"
#include "tests/support/faults.h"

#define AGENTS 6
#define ATTEMPTS 5
#define GAP_MS 200 /* over failover_ms / 4 = 150, under election 300 */
#define LEADER_MS 20000
#define RUN_MS 30000
#define STALLED "the loop stalled"
#define LONG_GAP_MS 1000 /* past the longest election timeout, 600 */
#define STANDS "follower -> candidate"
#define BUSY "the loop was busy"

static struct tc c;
static struct nf_ctl ctl[3];
static struct tc_agent before[AGENTS + 4];

static void teardown(void)
{
    tc_cleanup(&c);
    for (int i = 0; i < 3; i++)
        nf_ctl_close(&ctl[i]);
}

TestSuite(stall, .fini = teardown, .timeout = 300);

static int running(int via, struct tc_agent *rows)
{
    int n = tc_agents(&c, via, rows, AGENTS + 4), ok = 0;

    for (int i = 0; i < n; i++)
        ok += rows[i].owner != 0 && rows[i].seq > 0 &&
              strcmp(rows[i].status, "running") == 0;
    return ok;
}

/* Three nodes under the shims, AGENTS agents running; returns the
 * leader. */
static int start(void)
{
    struct tc_opts o = {.n = 3, .tag = "stall", .failover_ms = 600};
    char name[16], err[512], path[300];
    int leader;

    tc_init(&c, &o);
    for (int i = 0; i < c.n; i++) {
        snprintf(path, sizeof path, "%s/shim.ctl", c.nodes[i].d.root);
        nf_ctl_create(&ctl[i], path);
        snprintf(c.nodes[i].env[0], sizeof c.nodes[i].env[0], "%s",
                 nf_preload_env());
        snprintf(c.nodes[i].env[1], sizeof c.nodes[i].env[1], "%s=%s",
                 OL_SHIM_CTL_ENV, path);
    }
    tc_start(&c);
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0, "no leader elected");
    for (int k = 0; k < AGENTS; k++) {
        snprintf(name, sizeof name, "s%d", k);
        cr_assert_eq(td_spawn_agent(&c.nodes[leader].d, "counter", name,
                                    "{\"interval_ms\": 100}", err,
                                    sizeof err),
                     0, "spawn %s: %s", name, err);
    }
    for (int t = 0; t < RUN_MS / 100 && running(leader, before) < AGENTS;
         t++)
        td_sleep_ms(100);
    cr_assert_eq(running(leader, before), AGENTS, "the agents do not run");
    return leader;
}

/* Whether node i leads in `term` (0: any term; the term is returned). */
static int leads(int i, uint64_t *term)
{
    struct tc_status st;

    if (tc_status(&c, i, &st) != 0 || strcmp(st.role, "leader") != 0 ||
        (*term && st.term != *term))
        return 0;
    *term = st.term;
    return 1;
}

/* Wait (bounded) until node i's shim has done a spin beyond `spins`. */
static int spun(int i, uint64_t spins)
{
    for (int t = 0; t < 100; t++) {
        if (__atomic_load_n(&ctl[i].page->busy_spins, __ATOMIC_ACQUIRE) >
            spins)
            return 1;
        td_sleep_ms(20);
    }
    return 0;
}

Test(stall, a_busy_leader_loop_keeps_liveness_and_a_paused_one_relearns)
{
    struct tc_agent after[AGENTS + 4];
    int leader = start(), kept = 0, relearned = 0, stalls;
    uint64_t term;

    /* Busy: the leader's loop thread spins for GAP_MS on the CPU. */
    stalls = tc_log_count(&c, leader, STALLED);
    for (int a = 0; a < ATTEMPTS && kept < 2; a++) {
        term = 0;
        if (!leads(leader, &term))
            break;
        cr_assert(spun(leader, nf_ctl_busy(&ctl[leader], c.nodes[leader].d.pid,
                                           GAP_MS * 1000)),
                  "the shim never spun node %d's loop", leader + 1);
        td_sleep_ms(300); /* ticks after the gap */
        kept += leads(leader, &term);
    }
    cr_assert_gt(kept, 0, "node %d never kept the lead across a busy gap",
                 leader + 1);
    cr_assert_eq(tc_log_count(&c, leader, STALLED), stalls,
                 "node %d relearned liveness after its loop was only busy",
                 leader + 1);
    cr_assert_gt(tc_log_count(&c, leader, BUSY), 0,
                 "node %d never told its loop was busy", leader + 1);
    /* No agent moved: each keeps its owner and its epoch. */
    cr_assert_eq(running(leader, after), AGENTS);
    for (int k = 0; k < AGENTS; k++)
        for (int j = 0; j < AGENTS; j++)
            if (strcmp(before[k].name, after[j].name) == 0)
                cr_assert(before[k].owner == after[j].owner &&
                              before[k].epoch == after[j].epoch,
                          "agent %s moved (owner %" PRIu64 " epoch %" PRIu64
                          " -> owner %" PRIu64 " epoch %" PRIu64 ")",
                          before[k].name, before[k].owner, before[k].epoch,
                          after[j].owner, after[j].epoch);

    /* Paused: as long a gap, no CPU used in it. */
    for (int a = 0; a < ATTEMPTS && relearned == 0; a++) {
        leader = tc_wait_leader(&c, 0, LEADER_MS);
        cr_assert_geq(leader, 0, "no leader");
        stalls = tc_log_count(&c, leader, STALLED);
        cr_assert_gt(nf_freeze(c.nodes[leader].d.pid), 0);
        td_sleep_ms(GAP_MS);
        nf_thaw(c.nodes[leader].d.pid);
        td_sleep_ms(300);
        relearned = tc_log_count(&c, leader, STALLED) > stalls;
    }
    cr_assert(relearned, "a paused leader never relearned liveness");
    cr_expect_eq(tc_check(&c, 30000), 0);
}

/* A follower's loop busy past the election timeout, then the same follower
 * paused as long: only the pause makes it stand for election. */
Test(stall, a_busy_follower_stands_for_no_election_and_a_paused_one_does)
{
    int leader = start(), f = (leader + 1) % 3, stood;
    uint64_t term = 0;

    cr_assert(leads(leader, &term));
    stood = tc_log_count(&c, f, STANDS);
    cr_assert(spun(f, nf_ctl_busy(&ctl[f], c.nodes[f].d.pid,
                                  LONG_GAP_MS * 1000)),
              "the shim never spun node %d's loop", f + 1);
    td_sleep_ms(500);
    cr_expect_eq(tc_log_count(&c, f, STANDS), stood,
                 "node %d stood for election after its loop was busy for "
                 "%d ms",
                 f + 1, LONG_GAP_MS);
    cr_expect(leads(leader, &term), "node %d no longer leads term %llu",
              leader + 1, (unsigned long long)term);

    /* The same gap paused: the follower's clock ran on. */
    cr_assert_gt(nf_freeze(c.nodes[f].d.pid), 0);
    td_sleep_ms(LONG_GAP_MS);
    nf_thaw(c.nodes[f].d.pid);
    for (int t = 0; t < 50 && tc_log_count(&c, f, STANDS) == stood; t++)
        td_sleep_ms(20);
    cr_expect_gt(tc_log_count(&c, f, STANDS), stood,
                 "node %d, paused for %d ms, never stood for election",
                 f + 1, LONG_GAP_MS);
    cr_expect_eq(tc_check(&c, 30000), 0);
}
