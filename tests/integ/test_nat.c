/*
 * A node behind NAT: three outlastd processes on loopback where node 3
 * has `dial_only = true` and its address (in every node's config, its
 * own `listen` included) reaches nothing: 192.0.2.0/24 is TEST-NET-1,
 * never assigned, so no node can bind it and no connection to it is
 * answered.  Every connection with node 3 is then one node 3 dialled.
 * The cluster elects a leader, node 3's agents commit, node 3 leads after
 * `outlast cluster transfer 3` and the cluster still commits, and when
 * node 1 is killed (SIGKILL) its agents move and commits go on; the
 * invariant checker then finds every node agreeing.
 *
 * Without reverse connections node 3 either cannot start (the address is
 * not local) or, binding elsewhere, is never reached: the cluster then has
 * no node 3 to commit on, lead or fail over to.  Waits are bounded.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/cluster.h"

#define LEADER_MS 15000
#define COMMIT_MS 20000
#define MOVE_MS 30000
#define CHECK_MS 30000
#define N_AGENTS 9

static struct tc c;

static void teardown(void)
{
    tc_cleanup(&c);
}

TestSuite(nat, .fini = teardown, .timeout = 300);

/* Wait until an agent node `owner` runs commits a newer seq than in
 * `before`, as node `via` shows. */
static int owner_commits(int via, int owner, int timeout_ms)
{
    struct tc_agent before[64], now[64];
    int nb = tc_agents_on(&c, via, owner, before, 64);
    uint64_t end = td_ms() + (uint64_t)timeout_ms;

    if (nb <= 0)
        return 0;
    do {
        int nn = tc_agents_on(&c, via, owner, now, 64);

        for (int i = 0; i < nn; i++)
            for (int j = 0; j < nb; j++)
                if (strcmp(now[i].name, before[j].name) == 0 &&
                    now[i].seq > before[j].seq)
                    return 1;
        td_sleep_ms(100);
    } while (td_ms() < end);
    return 0;
}

Test(nat, a_dial_only_node_commits_leads_and_survives_a_failover)
{
    struct tc_opts o = {.n = 3, .tag = "nat"};
    struct tc_agent moved[64];
    char *out = NULL, name[16], err[512], why[256];
    int leader, rc, n_moved;

    tc_init(&c, &o);
    snprintf(c.nodes[2].addr, sizeof c.nodes[2].addr, "192.0.2.1:%d",
             c.base_port + 2);
    for (int i = 0; i < c.n; i++)
        tc_write_config(&c, i);
    {
        /* Node 3's [cluster] section is the config's second-to-last
         * before the peers; a key after the peers would land in the last
         * [peer.N], so node 3's config is written again with it. */
        FILE *f = fopen(c.nodes[2].d.conf, "w");

        cr_assert_not_null(f);
        tc_write_head(f, &c, 3, c.nodes[2].d.data, c.nodes[2].labels,
                      c.nodes[2].addr, 1000);
        fprintf(f, "segment_mb = 8\ndial_only = true\n");
        tc_write_peers(f, &c, 3);
        fclose(f);
    }
    for (int i = 0; i < c.n; i++)
        cr_assert_eq(tc_start_node(&c, i, 15000), 0,
                     "node %d did not start; see %s", i + 1,
                     c.nodes[i].d.log);

    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0, "no leader");
    for (int k = 0; k < N_AGENTS; k++) {
        snprintf(name, sizeof name, "k%d", k);
        cr_assert_eq(td_spawn_agent(&c.nodes[leader].d, "counter", name,
                                    "{\"interval_ms\": 20}", err, sizeof err),
                     0, "spawn %s: %s", name, err);
    }
    cr_assert(tc_wait_commits(&c, 2, 30, COMMIT_MS),
              "node 3 does not apply commits");
    cr_assert(owner_commits(leader, 2, COMMIT_MS),
              "no agent on node 3 commits");

    /* Node 3 leads, and the cluster still commits. */
    if (leader != 2) {
        rc = td_sh(&out, "'%s' --data-dir '%s' cluster transfer 3 2>&1",
                   td_bin("outlast"), c.nodes[leader].d.data);
        cr_assert_eq(rc, 0, "cluster transfer 3: exit %d: %s", rc, out);
        free(out);
    }
    cr_assert(tc_wait_leads(&c, 2, 0, LEADER_MS), "node 3 does not lead");
    cr_assert(tc_wait_commits(&c, 0, 30, COMMIT_MS) &&
                  tc_wait_commits(&c, 2, 30, COMMIT_MS),
              "no commits with node 3 leading");
    cr_assert(owner_commits(2, 0, COMMIT_MS),
              "node 1's agents stopped committing under node 3");

    /* Node 1 dies: its agents move, node 3 still leads and commits. */
    n_moved = tc_agents_on(&c, 2, 0, moved, 64);
    cr_assert_gt(n_moved, 0, "node 1 hosts no agents");
    tc_kill(&c, 0);
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0, "no leader after killing node 1");
    cr_assert(tc_wait_moved(&c, leader, moved, n_moved, 0, MOVE_MS, why,
                            sizeof why),
              "node 1's agents did not resume elsewhere: %s", why);
    cr_assert(tc_wait_commits(&c, 2, 30, COMMIT_MS),
              "no commits after node 1 was killed");

    cr_assert_eq(tc_start_node(&c, 0, 15000), 0, "node 1 did not restart");
    cr_expect_eq(tc_check(&c, CHECK_MS), 0);
}
