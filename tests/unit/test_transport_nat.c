/* Reachability: node B is dial-only and its address reaches nothing, so
 * every connection between A and B is one B dialled.  Messages still flow
 * both ways, a lost reverse connection is dialled again, and a reverse
 * hello from a key the roster does not hold is refused.  Raft over
 * reverse connections is in test_transport_natraft.c. */
#include "test_transport_harness.h"

static void close_extras(void)
{
    (void)pair;
}

TestSuite(transport_nat, .init = setup, .fini = teardown, .timeout = 60);

/* A listening, B dial-only at an address nobody can reach. */
static void nat_pair(struct node **a, struct node **b)
{
    *a = node_new(0, 1, (struct opts){0});
    *b = node_new(1, 2, (struct opts){.no_listen = true, .dial_only = true});
    loop_fx_dead_addr((*b)->addr, sizeof (*b)->addr);
    set_roster2(*a, peer_of(*a), peer_of(*b));
    set_roster2(*b, peer_of(*a), peer_of(*b));
}

/* B's reverse connection to A on `channel`, once open. */
static struct ol__conn *reverse_of(struct node *b, uint8_t channel)
{
    struct ol__tpeer *tp = ol__tpeer_get(b->t, 1);
    struct ol__conn *c = tp ? tp->rev[channel == OL_CHAN_RAFT ? 0 : 1]
                            : NULL;

    return c != NULL && c->state == OL_CONN_OPEN ? c : NULL;
}

Test(transport_nat, messages_flow_both_ways_to_a_dial_only_node)
{
    struct node *a, *b;
    char err[OL_ERRMSG_SIZE];

    nat_pair(&a, &b);
    /* It binds nothing: peers cannot reach it. */
    cr_assert_eq(ol__transport_listen(b->t, err), 0, "%s", err);
    cr_assert_lt(ol__transport_port(b->t), 0, "a dial-only node listens");
    for (uint32_t i = 0; i < 50; i++) {
        cr_assert_eq(send_seq(a, 2, i, 16 + i), 0);
        cr_assert_eq(send_seq(b, 1, i, 16 + i), 0);
    }
    RUN_UNTIL(a->n_msgs == 50 && b->n_msgs == 50, 20000);
    cr_assert_eq(b->n_msgs, 50, "A's messages never reached B");
    cr_assert_eq(a->n_msgs, 50, "B's messages never reached A");
    cr_assert_eq(a->bad + b->bad, 0, "out of order or corrupted");
    cr_assert_eq(b->from, 1);
    cr_assert_eq(a->from, 2);
    cr_assert_not_null(reverse_of(b, OL_CHAN_MSG));
    END_TEST();
}

Test(transport_nat, a_lost_reverse_connection_is_dialled_again)
{
    struct node *a, *b;
    struct ol__conn *rc;
    uint64_t hs;

    nat_pair(&a, &b);
    cr_assert_eq(send_seq(a, 2, 0, 32), 0);
    RUN_UNTIL(b->n_msgs == 1, 10000);
    cr_assert_eq(b->n_msgs, 1);
    rc = reverse_of(b, OL_CHAN_MSG);
    cr_assert_not_null(rc);
    hs = stats(a).handshakes_ok;
    ol__conn_fail(rc);
    RUN_UNTIL(reverse_of(b, OL_CHAN_MSG) != NULL &&
                  stats(a).handshakes_ok > hs,
              10000);
    cr_assert_not_null(reverse_of(b, OL_CHAN_MSG), "B did not dial again");
    for (uint32_t i = 1; i < 20; i++)
        cr_assert_eq(send_seq(a, 2, i, 32), 0);
    RUN_UNTIL(b->n_msgs == 20, 10000);
    cr_assert_eq(b->n_msgs, 20, "traffic did not resume");
    cr_assert_eq(b->bad, 0);
    END_TEST();
}

Test(transport_nat, a_reverse_hello_from_an_unknown_key_is_refused)
{
    struct node *a, *b, *m;
    struct ol__peer pb;

    nat_pair(&a, &b);
    /* M claims B's id with a key of its own, and dials A in reverse. */
    m = node_new(2, 2, (struct opts){.no_listen = true, .dial_only = true});
    pb = peer_of(b);
    memcpy(pb.pk, m->key.pk, OL_PK_SIZE);
    set_roster2(m, peer_of(a), pb);
    ol__transport_close(b->t, node_closed, b);
    RUN_UNTIL(b->closed && stats(a).handshakes_failed >= 2, 10000);
    cr_assert_geq(stats(a).handshakes_failed, 2, "A took M's hellos");
    cr_assert_null(reverse_of(m, OL_CHAN_MSG));
    cr_assert_null(reverse_of(m, OL_CHAN_RAFT));
    /* A's messages for node 2 never reach M. */
    cr_assert_eq(send_seq(a, 2, 0, 8), 0);
    RUN_FOR(500);
    cr_assert_eq(m->n_msgs, 0);
    END_TEST();
}
