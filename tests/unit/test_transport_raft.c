/* Three raft instances in one process and one uv loop, each on raft_uv
 * with its own data directory and an outlast transport: they elect a
 * leader, commit entries through the encrypted pump, and shut down in the
 * order the daemon uses (raft_close, raft_uv_close, ol__transport_close)
 * with nothing left open or leaked. */
#define TR_NODES 3
#define ENTRIES 200

#include "test_transport_raft_harness.h"

TestSuite(transport_raft, .init = setup, .fini = finish, .timeout = 110);

Test(transport_raft, three_nodes_elect_and_commit_then_close_cleanly)
{
    struct ol__peer roster[N];
    struct rnode *l;

    for (int i = 0; i < N; i++)
        node_make(i, false, &roster[i]);
    start_all(roster);

    RUN_UNTIL(leader() != NULL, 20000);
    l = leader();
    cr_assert_not_null(l, "no leader elected");

    target = ENTRIES;
    submitting = true;
    RUN_UNTIL(committed >= ENTRIES && nodes[0].applied >= ENTRIES &&
                  nodes[0].applied == nodes[1].applied &&
                  nodes[1].applied == nodes[2].applied,
              90000);
    submitting = false;
    cr_log_info("committed %llu, failed %llu, applied %llu/%llu/%llu",
                (unsigned long long)committed, (unsigned long long)failed,
                (unsigned long long)nodes[0].applied,
                (unsigned long long)nodes[1].applied,
                (unsigned long long)nodes[2].applied);
    cr_assert_geq(committed, ENTRIES);
    for (int i = 0; i < N; i++) {
        struct ol__transport_stats s;

        cr_assert_geq(nodes[i].applied, ENTRIES, "node %d applied %llu", i,
                      (unsigned long long)nodes[i].applied);
        cr_assert_eq(nodes[i].applied, nodes[0].applied);
        cr_assert_eq(nodes[i].bad, 0, "node %d applied a corrupt entry", i);
        ol__transport_stats(nodes[i].t, &s);
        cr_assert_geq(s.handshakes_ok, 1);
        cr_assert_eq(s.handshakes_failed + s.frames_rejected, 0);
    }

    /* Let the last applies finish, then shut everything down. */
    RUN_UNTIL(outstanding == 0, 10000);
    cr_assert_eq(outstanding, 0);
    for (int i = 0; i < N; i++)
        raft_close(&nodes[i].raft, raft_closed);
    RUN_UNTIL(nodes[0].t_closed && nodes[1].t_closed && nodes[2].t_closed,
              10000);
    for (int i = 0; i < N; i++) {
        cr_assert(nodes[i].raft_closed, "raft %d did not close", i);
        cr_assert(nodes[i].t_closed, "transport %d did not close", i);
    }
    RUN_UNTIL(open_handles() == 0, 5000);
    cr_assert_eq(open_handles(), 0, "handles left open after close");
    END_TEST();
}
