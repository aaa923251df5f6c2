/* Tests for what the transport puts on the wire between two nodes over
 * real loopback sockets: compression when both offer it, plain frames
 * when one does not, the old handshake with a node from before features,
 * and the per-peer round trips and byte counters for status. */
#include <inttypes.h>

#include "test_transport_harness.h"

static void close_extras(void)
{
}

TestSuite(transport_wire, .init = setup, .fini = teardown, .timeout = 60);

static struct ol__transport_peer_stats peer(const struct node *n,
                                            uint64_t id)
{
    struct ol__transport_stats s = stats(n);

    for (size_t i = 0; i < s.n_peers; i++)
        if (s.peers[i].id == id)
            return s.peers[i];
    cr_assert_fail("node %" PRIu64 " has no figures for peer %" PRIu64,
                   n->id, id);
    return s.peers[0];
}

#define N_MSGS 50u
#define MSG_LEN 8192u

static void send_many(struct node *from, uint64_t to)
{
    for (uint32_t i = 0; i < N_MSGS; i++)
        cr_assert_eq(send_seq(from, to, i, MSG_LEN), 0);
}

Test(transport_wire, compressible_messages_go_compressed_and_are_counted)
{
    struct ol__transport_peer_stats pa, pb;
    struct node *a, *b;

    pair(&a, &b, (struct opts){0}, (struct opts){0});
    send_many(a, 2);
    RUN_UNTIL(b->n_msgs == N_MSGS, 10000);
    cr_assert_eq(b->n_msgs, N_MSGS);
    cr_assert_eq(b->bad, 0, "a message changed on the way");
    pa = peer(a, 2);
    pb = peer(b, 1);
    cr_assert_eq(pa.features, OL_HS_FEAT_FRAMES | OL_HS_FEAT_ZSTD);
    cr_assert_eq(pa.data_out, (uint64_t)N_MSGS * MSG_LEN);
    cr_assert_eq(pa.zipped_out, N_MSGS);
    cr_assert_lt(pa.wire_out, pa.data_out / 4,
                 "compressed %" PRIu64 " bytes into %" PRIu64, pa.data_out,
                 pa.wire_out);
    cr_assert_eq(pb.data_in, pa.data_out);
    cr_assert_eq(pb.zipped_in, N_MSGS);
    cr_assert_eq(pb.wire_in, pa.wire_out, "b read what a wrote");
    cr_assert_eq(stats(a).data_out, pa.data_out);
    cr_assert_eq(stats(b).wire_in, pb.wire_in);
    END_TEST();
}

Test(transport_wire, round_trips_are_measured_per_peer)
{
    struct ol__transport_peer_stats pa, pb;
    struct node *a, *b;

    pair(&a, &b, (struct opts){0}, (struct opts){0});
    cr_assert_eq(send_seq(a, 2, 0, 16), 0);
    cr_assert_eq(send_seq(b, 1, 0, 16), 0);
    RUN_UNTIL(peer(a, 2).rtt_samples >= 2 && peer(b, 1).rtt_samples >= 2,
              10000);
    pa = peer(a, 2);
    pb = peer(b, 1);
    cr_assert_geq(pa.rtt_samples, 2);
    cr_assert_geq(pb.rtt_samples, 2);
    cr_assert_gt(pa.rtt_last_us, 0);
    cr_assert_gt(pa.rtt_min_us, 0);
    cr_assert_leq(pa.rtt_min_us, pa.rtt_last_us);
    cr_assert_gt(pa.rtt_avg_us, 0);
    cr_assert_gt(pb.rtt_min_us, 0);
    /* Pings are the transport's own: the recv callback never sees one. */
    cr_assert_eq(a->n_msgs, 1);
    cr_assert_eq(b->n_msgs, 1);
    cr_assert_eq(a->bad + b->bad, 0);
    END_TEST();
}

Test(transport_wire, a_peer_with_compression_off_gets_plain_frames)
{
    struct ol__transport_peer_stats pa, pb;
    struct node *a, *b;

    pair(&a, &b, (struct opts){0}, (struct opts){.compress_off = true});
    send_many(a, 2);
    send_many(b, 1);
    RUN_UNTIL(a->n_msgs == N_MSGS && b->n_msgs == N_MSGS, 10000);
    cr_assert_eq(b->n_msgs, N_MSGS);
    cr_assert_eq(a->n_msgs, N_MSGS);
    cr_assert_eq(a->bad + b->bad, 0);
    pa = peer(a, 2);
    pb = peer(b, 1);
    cr_assert_eq(pa.features, OL_HS_FEAT_FRAMES);
    cr_assert_eq(pb.features, OL_HS_FEAT_FRAMES);
    cr_assert_eq(pa.zipped_out + pb.zipped_out, 0);
    cr_assert_gt(pa.wire_out, pa.data_out, "frames carry headers and tags");
    END_TEST();
}

Test(transport_wire, a_node_from_before_features_is_dialled_the_old_way)
{
    struct ol__transport_peer_stats pa;
    struct node *a, *b;

    pair(&a, &b, (struct opts){0}, (struct opts){.legacy = true});
    send_many(a, 2);
    send_many(b, 1);
    RUN_UNTIL(a->n_msgs == N_MSGS && b->n_msgs == N_MSGS, 15000);
    cr_assert_eq(b->n_msgs, N_MSGS, "the old node got %u", b->n_msgs);
    cr_assert_eq(a->n_msgs, N_MSGS);
    cr_assert_eq(a->bad + b->bad, 0);
    pa = peer(a, 2);
    cr_assert_eq(pa.legacy, 1);
    cr_assert_eq(pa.features, 0);
    cr_assert_eq(pa.zipped_out, 0);
    /* The old node refused the one "OLT3" hello, and no more. */
    cr_assert_eq(stats(b).handshakes_failed, 1);
    /* No pings go to it either: it would take them for messages. */
    RUN_FOR(1500);
    cr_assert_eq(peer(a, 2).rtt_samples, 0);
    cr_assert_eq(b->n_msgs, N_MSGS);
    cr_assert_eq(b->bad, 0);
    END_TEST();
}
