/*
 * What the transport tests share: one uv loop with a 10 ms tick, nodes
 * (a key and a transport each) that record the messages they receive, and
 * a fixture that closes everything, checks that no handle is left and,
 * under AddressSanitizer, that nothing leaked.  Included by
 * test_transport.c, test_transport_hostile.c and test_transport_wire.c,
 * each its own binary; the
 * includer defines close_extras() for handles of its own.
 */
#ifndef OL_TEST_TRANSPORT_HARNESS_H
#define OL_TEST_TRANSPORT_HARNESS_H

#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replication/handshake.h"
#include "replication/transport.h"
#include "replication/transport_int.h"
#include "base/err.h"
#include "base/keys.h"
#include "base/log.h"
#include "tests/support/leak.h"
#include "uv_loop_fx.h"


/* Closes the includer's own handles at the end of a test. */
static void close_extras(void);

#define RUN_FOR(ms) RUN_UNTIL(0, ms)

struct node {
    uint64_t id;
    struct ol__key key;
    struct ol__transport *t;
    char addr[OL_ADDR_MAX];
    bool closed;
    unsigned n_msgs, bad;
    size_t bytes;
    uint64_t from;
    uint32_t next_seq[8];
};

static struct node nodes[5];

static void on_recv(void *data, uint64_t from, const void *msg, size_t len)
{
    struct node *n = data;
    const uint8_t *p = msg;
    uint32_t seq;

    n->n_msgs++;
    n->bytes += len;
    n->from = from;
    if (len < 4 || from >= 8) {
        n->bad++;
        return;
    }
    memcpy(&seq, p, 4);
    if (seq != n->next_seq[from])
        n->bad++;
    n->next_seq[from] = seq + 1;
    for (size_t i = 4; i < len; i++)
        if (p[i] != (uint8_t)(seq + i)) {
            n->bad++;
            break;
        }
}

static int send_seq(struct node *n, uint64_t to, uint32_t seq, size_t len)
{
    uint8_t *m = malloc(len);
    int rv;

    cr_assert_not_null(m);
    memcpy(m, &seq, 4);
    for (size_t i = 4; i < len; i++)
        m[i] = (uint8_t)(seq + i);
    rv = ol__transport_send(n->t, to, m, len);
    free(m);
    return rv;
}

struct opts {
    const char *listen;
    unsigned hs_timeout_ms;
    unsigned queue_max;
    size_t pump_high;
    bool no_listen;
    bool compress_off;
    bool legacy;            /* act as a node from before features */
    bool dial_only;         /* cannot be dialled (reverse connections) */
};

static struct node *node_new(int i, uint64_t id, struct opts o)
{
    struct node *n = &nodes[i];
    struct ol__transport_config cfg;
    char err[OL_ERRMSG_SIZE];

    memset(n, 0, sizeof *n);
    n->id = id;
    cr_assert_eq(ol__key_generate(&n->key), 0);
    memset(&cfg, 0, sizeof cfg);
    cfg.self_id = id;
    cfg.listen = o.listen ? o.listen : "127.0.0.1:0";
    cfg.key = &n->key;
    cfg.cluster = "test";
    cfg.handshake_timeout_ms = o.hs_timeout_ms;
    cfg.recv_cb = on_recv;
    cfg.recv_data = n;
    cfg.msg_queue_max = o.queue_max;
    cfg.pump_high_water = o.pump_high;
    cfg.compress_off = o.compress_off;
    cfg.legacy_handshake = o.legacy;
    cfg.dial_only = o.dial_only;
    cr_assert_eq(ol__transport_create(&loop, &cfg, &n->t, err), 0, "%s", err);
    if (!o.no_listen) {
        int port;

        cr_assert_eq(ol__transport_listen(n->t, err), 0, "%s", err);
        cr_assert_eq(ol__transport_listen(n->t, err), 0, "not idempotent");
        port = ol__transport_port(n->t);
        cr_assert_gt(port, 0);
        if (o.listen != NULL && o.listen[0] == '[')
            snprintf(n->addr, sizeof n->addr, "[::1]:%d", port);
        else
            snprintf(n->addr, sizeof n->addr, "127.0.0.1:%d", port);
    }
    return n;
}

static struct ol__peer peer_of(const struct node *n)
{
    struct ol__peer p;

    memset(&p, 0, sizeof p);
    p.id = n->id;
    snprintf(p.address, sizeof p.address, "%s", n->addr);
    memcpy(p.pk, n->key.pk, OL_PK_SIZE);
    return p;
}

static void set_roster2(struct node *n, struct ol__peer a, struct ol__peer b)
{
    struct ol__peer r[2] = {a, b};

    cr_assert_eq(ol__transport_set_roster(n->t, r, 2), 0);
}

static struct ol__transport_stats stats(const struct node *n)
{
    struct ol__transport_stats s;

    ol__transport_stats(n->t, &s);
    return s;
}

static void node_closed(struct ol__transport *t, void *data)
{
    struct node *n = data;

    (void)t;
    n->closed = true;
}

/* --- fixture */

static void tick_cb(uv_timer_t *h)
{
    (void)h;
}

static void setup(void)
{
    memset(nodes, 0, sizeof nodes);
    loop_fx_start(tick_cb);
}

static bool finished;

/* Close everything and check that nothing is left open.  Each test ends
 * with END_TEST(); the fixture calls this too, for a test that failed
 * half-way. */
static void finish(void)
{
    if (finished)
        return;
    finished = true;
    for (int i = 0; i < 5; i++)
        if (nodes[i].t != NULL && !nodes[i].closed)
            ol__transport_close(nodes[i].t, node_closed, &nodes[i]);
    close_extras();
    RUN_UNTIL(open_handles() == 0, 5000);
    for (int i = 0; i < 5; i++) {
        if (nodes[i].t != NULL)
            cr_expect(nodes[i].closed, "node %d never finished closing", i);
        ol__key_close(&nodes[i].key);
    }
    cr_expect_eq(open_handles(), 0, "handles left open after close");
    loop_fx_close();
}

static void teardown(void)
{
    finish();
}

/* Two nodes that know each other, B listening, A listening too. */
static void pair(struct node **a, struct node **b, struct opts oa,
                 struct opts ob)
{
    *a = node_new(0, 1, oa);
    *b = node_new(1, 2, ob);
    set_roster2(*a, peer_of(*a), peer_of(*b));
    set_roster2(*b, peer_of(*a), peer_of(*b));
}

#endif
