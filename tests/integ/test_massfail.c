/*
 * A node hosting hundreds of agents dies at once: every one of them must
 * resume on the survivors under a new epoch, spread over both (not all
 * onto one), with the invariant checker passing afterwards.  Enough agents
 * move that the new owners start them in several slices of loop time
 * (runtime/resume.h) and the leader decides them in one pass
 * (replication/cluster_place.c).
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/cluster.h"

#define AGENTS 600
#define LEADER_MS 15000
#define MOVE_MS 60000

static struct tc c;
static struct tc_agent rows[AGENTS + 16];

static void teardown(void)
{
    tc_cleanup(&c);
}

TestSuite(massfail, .fini = teardown, .timeout = 300);

/* Agents placed and running with a first checkpoint, as node `via` has
 * them. */
static int started(int via)
{
    int n = tc_agents(&c, via, rows, AGENTS + 16), ok = 0;

    for (int i = 0; i < n; i++)
        ok += rows[i].owner != 0 && rows[i].seq > 0 &&
              strcmp(rows[i].status, "running") == 0;
    return ok;
}

/* The running agents node `owner` hosts, as node `via` has them (tests'
 * tc_agents_on() sees only 64 rows). */
static int on(int via, int owner, struct tc_agent *out)
{
    int n = tc_agents(&c, via, rows, AGENTS + 16), k = 0;

    for (int i = 0; i < n && k < AGENTS; i++)
        if (rows[i].owner == c.nodes[owner].id &&
            strcmp(rows[i].status, "running") == 0)
            out[k++] = rows[i];
    return k;
}

static void spawn_all(int via)
{
    char name[32], err[512];

    for (int i = 0; i < AGENTS; i++) {
        snprintf(name, sizeof name, "m%04d", i);
        cr_assert_eq(td_spawn_agent(&c.nodes[via].d, "counter", name,
                                    "{\"interval_ms\": 500}", err,
                                    sizeof err),
                     0, "spawn '%s': %s", name, err);
    }
}

Test(massfail, a_dead_nodes_agents_all_resume_spread_over_the_survivors)
{
    struct tc_opts o = {.n = 3, .tag = "mf-"};
    static struct tc_agent moved[AGENTS];
    int leader, victim, n_moved, per[3] = {0}, n;
    uint64_t end;
    char why[512];

    tc_init(&c, &o);
    tc_start(&c);
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0, "no leader elected");
    spawn_all(leader);
    end = td_ms() + 60000;
    while (started(leader) < AGENTS && td_ms() < end)
        td_sleep_ms(200);
    cr_assert_eq(started(leader), AGENTS, "not all %d agents started",
                 AGENTS);
    /* The follower hosting more of them. */
    victim = on(leader, (leader + 1) % 3, moved) >=
                     on(leader, (leader + 2) % 3, moved)
                 ? (leader + 1) % 3
                 : (leader + 2) % 3;
    n_moved = on(leader, victim, moved);
    cr_assert_gt(n_moved, AGENTS / 6, "node %d hosts only %d agents",
                 victim + 1, n_moved);
    tc_kill(&c, victim);
    cr_assert(tc_wait_moved(&c, leader, moved, n_moved, victim, MOVE_MS, why,
                            sizeof why),
              "node %d's %d agents did not all resume elsewhere: %s",
              victim + 1, n_moved, why);
    n = tc_agents(&c, leader, rows, AGENTS + 16);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n_moved; k++)
            if (strcmp(rows[i].name, moved[k].name) == 0) {
                int to = tc_index(&c, rows[i].owner);

                cr_assert(to >= 0 && to != victim, "'%s' is on node %d",
                          rows[i].name, to + 1);
                per[to]++;
            }
    for (int i = 0; i < 3; i++)
        if (i != victim)
            cr_expect_gt(per[i], n_moved / 4,
                         "node %d took only %d of the %d agents", i + 1,
                         per[i], n_moved);
    cr_log_info("%d agents moved off node %d: %d and %d to the survivors",
                n_moved, victim + 1, per[(victim + 1) % 3],
                per[(victim + 2) % 3]);
    cr_assert_eq(tc_start_node(&c, victim, 15000), 0,
                 "node %d did not restart", victim + 1);
    cr_expect_eq(tc_check(&c, 30000), 0, "the invariant checker failed");
}
