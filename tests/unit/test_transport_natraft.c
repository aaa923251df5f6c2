/* Raft over reverse connections: two voters on raft_uv and outlast
 * transports, where node 2 is dial-only and its address reaches nothing.
 * Every commit needs both, so raft's streams must flow both ways over
 * connections node 2 dialled; a reverse raft connection that is cut is
 * dialled again and commits resume. */
#define TR_NODES 2
#define ENTRIES 64

#include "replication/transport_int.h"
#include "test_transport_raft_harness.h"

TestSuite(transport_natraft, .init = setup, .fini = finish, .timeout = 110);

static bool all_applied(uint64_t n)
{
    return committed >= n && nodes[0].applied >= n &&
           nodes[0].applied == nodes[1].applied;
}

/* Node 2's open reverse raft connection to node 1. */
static struct ol__conn *reverse_raft(void)
{
    struct ol__tpeer *tp = ol__tpeer_get(nodes[1].t, 1);

    return tp && tp->rev[0] && tp->rev[0]->state == OL_CONN_OPEN ? tp->rev[0]
                                                                 : NULL;
}

Test(transport_natraft, raft_runs_with_a_dial_only_voter)
{
    struct ol__peer roster[N];
    struct raft_configuration conf;
    char err[OL_ERRMSG_SIZE];
    struct ol__conn *rc;

    for (int i = 0; i < N; i++) {
        struct rnode *n = &nodes[i];
        struct ol__transport_config cfg;

        n->id = (uint64_t)i + 1;
        snprintf(n->dir, sizeof n->dir, "/tmp/ol-raft-XXXXXX");
        cr_assert_not_null(mkdtemp(n->dir));
        cr_assert_eq(ol__key_generate(&n->key), 0);
        memset(&cfg, 0, sizeof cfg);
        cfg.self_id = n->id;
        cfg.listen = "127.0.0.1:0";
        cfg.key = &n->key;
        cfg.cluster = "raft-test";
        cfg.dial_only = i == 1;
        cr_assert_eq(ol__transport_create(&loop, &cfg, &n->t, err), 0, "%s",
                     err);
        cr_assert_eq(ol__transport_listen(n->t, err), 0, "%s", err);
        if (i == 1)
            loop_fx_dead_addr(n->addr, sizeof n->addr);
        else
            snprintf(n->addr, sizeof n->addr, "127.0.0.1:%d",
                     ol__transport_port(n->t));
        memset(&roster[i], 0, sizeof roster[i]);
        roster[i].id = n->id;
        snprintf(roster[i].address, sizeof roster[i].address, "%s", n->addr);
        memcpy(roster[i].pk, n->key.pk, OL_PK_SIZE);
    }
    cr_assert_lt(ol__transport_port(nodes[1].t), 0, "dial-only listens");
    raft_configuration_init(&conf);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(ol__transport_set_roster(nodes[i].t, roster, N), 0);
        cr_assert_eq(raft_configuration_add(&conf, nodes[i].id,
                                            nodes[i].addr, RAFT_VOTER), 0);
    }
    for (int i = 0; i < N; i++)
        node_start(&nodes[i], &conf);
    raft_configuration_close(&conf);

    /* Two voters: an election and every commit need both directions. */
    RUN_UNTIL(leader() != NULL, 20000);
    cr_assert_not_null(leader(), "no leader elected");
    target = ENTRIES;
    submitting = true;
    RUN_UNTIL(all_applied(ENTRIES), 60000);
    cr_assert(all_applied(ENTRIES), "committed %llu, applied %llu/%llu",
              (unsigned long long)committed,
              (unsigned long long)nodes[0].applied,
              (unsigned long long)nodes[1].applied);

    /* Cut the reverse raft connection: node 2 dials it again. */
    rc = reverse_raft();
    cr_assert_not_null(rc, "no reverse raft connection");
    ol__conn_fail(rc);
    target = 2 * ENTRIES;
    RUN_UNTIL(all_applied(target) && reverse_raft() != NULL, 60000);
    cr_assert(all_applied(target), "commits did not resume: %llu",
              (unsigned long long)committed);
    cr_assert_not_null(reverse_raft(), "not dialled again");
    for (int i = 0; i < N; i++) {
        cr_assert_eq(nodes[i].bad, 0, "node %d applied a corrupt entry", i);
    }
    submitting = false;
    RUN_UNTIL(outstanding == 0, 10000);
    for (int i = 0; i < N; i++)
        raft_close(&nodes[i].raft, raft_closed);
    RUN_UNTIL(nodes[0].t_closed && nodes[1].t_closed, 10000);
    cr_assert(nodes[0].t_closed && nodes[1].t_closed);
    RUN_UNTIL(open_handles() == 0, 5000);
    cr_assert_eq(open_handles(), 0, "handles left open after close");
    END_TEST();
}
