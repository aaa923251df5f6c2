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
    struct ol__conn *rc;

    for (int i = 0; i < N; i++)
        node_make(i, i == 1, &roster[i]);
    cr_assert_lt(ol__transport_port(nodes[1].t), 0, "dial-only listens");
    start_all(roster);

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
