/* Raft over reverse connections: two voters on raft_uv and outlast
 * transports, where node 2 is dial-only and its address reaches nothing.
 * Every commit needs both, so raft's streams must flow both ways over
 * connections node 2 dialled; a reverse raft connection that is cut is
 * dialled again and commits resume.  (After test_transport_raft.c.) */
#include <criterion/criterion.h>
#include <raft.h>
#include <raft/uv.h>
#include <signal.h>
#include <stdio.h>
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "replication/transport.h"
#include "replication/transport_int.h"
#include "base/err.h"
#include "base/keys.h"
#include "base/log.h"
#include "tests/support/leak.h"
#include "uv_loop_fx.h"


#define N 2
#define ENTRIES 64
#define ENTRY_SIZE (32u << 10)
#define PER_APPLY 8
#define WINDOW 4

struct rnode {
    uint64_t id;
    char dir[64];
    char addr[OL_ADDR_MAX];
    struct ol__key key;
    struct ol__transport *t;
    struct raft_io io;
    struct raft_fsm fsm;
    struct raft raft;
    bool started, raft_closed, t_closed;
    uint64_t applied, bad;
};

static struct rnode nodes[N];
static uint64_t next_seq = 1, committed, failed, target = ENTRIES;
static unsigned outstanding;

struct req {
    struct raft_apply a;
    unsigned n;
};

static int fsm_apply(struct raft_fsm *f, const struct raft_buffer *buf,
                     void **result)
{
    struct rnode *n = f->data;
    const uint8_t *p = buf->base;
    uint64_t seq;

    *result = NULL;
    n->applied++;
    if (buf->len != ENTRY_SIZE) {
        n->bad++;
        return 0;
    }
    memcpy(&seq, p, 8);
    for (size_t i = 8; i < buf->len; i += 61)
        if (p[i] != (uint8_t)(seq * 7 + i)) {
            n->bad++;
            break;
        }
    return 0;
}

static int fsm_snapshot(struct raft_fsm *f, struct raft_buffer *bufs[],
                        unsigned *n_bufs)
{
    struct rnode *n = f->data;

    *bufs = raft_malloc(sizeof **bufs);
    (*bufs)[0].len = 8;
    (*bufs)[0].base = raft_malloc(8);
    memcpy((*bufs)[0].base, &n->applied, 8);
    *n_bufs = 1;
    return 0;
}

static int fsm_restore(struct raft_fsm *f, struct raft_buffer *buf)
{
    struct rnode *n = f->data;

    if (buf->len != 8)
        return RAFT_MALFORMED;
    memcpy(&n->applied, buf->base, 8);
    raft_free(buf->base);
    return 0;
}

static void apply_cb(struct raft_apply *a, int status, void *result)
{
    struct req *r = a->data;

    (void)result;
    outstanding--;
    if (status == 0)
        committed += r->n;
    else
        failed += r->n;
    free(r);
}

static void submit(struct raft *raft)
{
    struct raft_buffer bufs[PER_APPLY];
    struct req *r = malloc(sizeof *r);

    cr_assert_not_null(r);
    for (unsigned i = 0; i < PER_APPLY; i++) {
        uint64_t seq = next_seq++;
        uint8_t *p = raft_malloc(ENTRY_SIZE);

        cr_assert_not_null(p);
        memcpy(p, &seq, 8);
        for (size_t j = 8; j < ENTRY_SIZE; j++)
            p[j] = (uint8_t)(seq * 7 + j);
        bufs[i].base = p;
        bufs[i].len = ENTRY_SIZE;
    }
    r->a.data = r;
    r->n = PER_APPLY;
    if (raft_apply(raft, &r->a, bufs, PER_APPLY, apply_cb) != 0) {
        for (unsigned i = 0; i < PER_APPLY; i++)
            raft_free(bufs[i].base);
        free(r);
        return;
    }
    outstanding++;
}

static struct rnode *leader(void)
{
    for (int i = 0; i < N; i++)
        if (nodes[i].started && raft_state(&nodes[i].raft) == RAFT_LEADER)
            return &nodes[i];
    return NULL;
}

static bool submitting;

/* raft 0.15 has no state callback: poll for the leader and keep a few
 * applies in flight. */
static void tick_cb(uv_timer_t *h)
{
    struct rnode *l;

    (void)h;
    if (!submitting || (l = leader()) == NULL)
        return;
    while (outstanding < WINDOW && committed + outstanding * PER_APPLY <
                                       target)
        submit(&l->raft);
}

static void setup(void)
{
    loop_fx_start(tick_cb);
}

static bool finished;

static void raft_closed(struct raft *r);

/* Close everything and check that nothing is left open.  Each test ends
 * with END_TEST(); the fixture calls this too, for a test that failed
 * half-way. */
static void finish(void)
{
    char cmd[128];

    if (finished)
        return;
    finished = true;
    submitting = false;
    for (int i = 0; i < N; i++)
        if (nodes[i].started && !nodes[i].raft_closed)
            raft_close(&nodes[i].raft, raft_closed);
    for (int i = 0; i < N; i++)
        RUN_UNTIL(nodes[i].t == NULL || nodes[i].t_closed, 10000);
    RUN_UNTIL(open_handles() == 0, 5000);
    cr_expect_eq(open_handles(), 0, "handles left open after close");
    for (int i = 0; i < N; i++) {
        ol__key_close(&nodes[i].key);
        if (nodes[i].dir[0] != '\0') {
            snprintf(cmd, sizeof cmd, "rm -rf %s", nodes[i].dir);
            cr_expect_eq(system(cmd), 0);
        }
    }
    loop_fx_close();
}

TestSuite(transport_natraft, .init = setup, .fini = finish, .timeout = 110);

static void transport_closed(struct ol__transport *t, void *data)
{
    struct rnode *n = data;

    (void)t;
    n->t_closed = true;
}

/* The daemon's order: raft is closed, then its io, then the transport. */
static void raft_closed(struct raft *r)
{
    struct rnode *n = r->data;

    n->raft_closed = true;
    raft_uv_close(&n->io);
    ol__transport_close(n->t, transport_closed, n);
}

static void node_start(struct rnode *n, struct raft_configuration *conf)
{
    int rv;

    cr_assert_eq(raft_uv_init(&n->io, &loop, n->dir, ol__transport_raft(n->t)),
                 0);
    n->fsm.version = 1;
    n->fsm.data = n;
    n->fsm.apply = fsm_apply;
    n->fsm.snapshot = fsm_snapshot;
    n->fsm.restore = fsm_restore;
    cr_assert_eq(raft_init(&n->raft, &n->io, &n->fsm, n->id, n->addr), 0,
                 "%s", raft_errmsg(&n->raft));
    n->raft.data = n;
    raft_set_election_timeout(&n->raft, 300);
    raft_set_heartbeat_timeout(&n->raft, 50);
    raft_set_pre_vote(&n->raft, true);
    rv = raft_bootstrap(&n->raft, conf);
    cr_assert_eq(rv, 0, "bootstrap: %s", raft_errmsg(&n->raft));
    rv = raft_start(&n->raft);
    cr_assert_eq(rv, 0, "start: %s", raft_errmsg(&n->raft));
    n->started = true;
}


/* An address nothing listens on: a port bound and closed again. */
static void dead_addr(char *out, size_t size)
{
    static uv_tcp_t probe;
    struct sockaddr_in sa;
    struct sockaddr_storage ss;
    int len = sizeof ss;

    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(&loop, &probe);
    cr_assert_eq(uv_tcp_bind(&probe, (struct sockaddr *)&sa, 0), 0);
    uv_tcp_getsockname(&probe, (struct sockaddr *)&ss, &len);
    uv_close((uv_handle_t *)&probe, NULL);
    snprintf(out, size, "127.0.0.1:%d",
             ntohs(((struct sockaddr_in *)&ss)->sin_port));
}

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
            dead_addr(n->addr, sizeof n->addr);
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
