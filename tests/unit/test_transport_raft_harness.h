/*
 * What the raft-over-transport tests share: N raft instances (the
 * includer defines TR_NODES) in one process and one uv loop, each on raft_uv with
 * its own data directory and an outlast transport; an fsm that checks
 * every entry, a tick that keeps a few applies in flight on the leader up
 * to `target` entries while `submitting`, the daemon's close order
 * (raft_close, raft_uv_close, ol__transport_close), and a fixture that
 * checks that nothing is left open or leaked.  Included by
 * test_transport_raft.c and test_transport_natraft.c.
 */
#ifndef OL_TEST_TRANSPORT_RAFT_HARNESS_H
#define OL_TEST_TRANSPORT_RAFT_HARNESS_H

#include <criterion/criterion.h>
#include <raft.h>
#include <raft/uv.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replication/transport.h"
#include "base/err.h"
#include "base/keys.h"
#include "base/log.h"
#include "tests/support/leak.h"
#include "uv_loop_fx.h"

#define N TR_NODES
#define ENTRY_SIZE (32u << 10)
#define PER_APPLY 8
#define WINDOW 4

struct rnode {
    uint64_t id;
    char dir[512];
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
static uint64_t next_seq = 1, committed, failed;
static uint64_t target; /* entries to keep committing up to */
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


/* Make node i with a transport bound to a free port (a dial-only node
 * binds nothing and gets an address that reaches nothing), and fill its
 * roster entry. */
static void node_make(int i, bool dial_only, struct ol__peer *roster)
{
    struct rnode *n = &nodes[i];
    struct ol__transport_config cfg;
    char err[OL_ERRMSG_SIZE];

    n->id = (uint64_t)i + 1;
    snprintf(n->dir, sizeof n->dir, "%s/ol-raft-XXXXXX",
             getenv("TMPDIR") != NULL && getenv("TMPDIR")[0] != '\0'
                 ? getenv("TMPDIR")
                 : "/tmp");
    cr_assert_not_null(mkdtemp(n->dir));
    cr_assert_eq(ol__key_generate(&n->key), 0);
    memset(&cfg, 0, sizeof cfg);
    cfg.self_id = n->id;
    cfg.listen = "127.0.0.1:0";
    cfg.key = &n->key;
    cfg.cluster = "raft-test";
    cfg.dial_only = dial_only;
    cr_assert_eq(ol__transport_create(&loop, &cfg, &n->t, err), 0, "%s", err);
    /* Bind first so that the configuration can name the real port. */
    cr_assert_eq(ol__transport_listen(n->t, err), 0, "%s", err);
    if (dial_only)
        loop_fx_dead_addr(n->addr, sizeof n->addr);
    else
        snprintf(n->addr, sizeof n->addr, "127.0.0.1:%d",
                 ol__transport_port(n->t));
    memset(roster, 0, sizeof *roster);
    roster->id = n->id;
    snprintf(roster->address, sizeof roster->address, "%s", n->addr);
    memcpy(roster->pk, n->key.pk, OL_PK_SIZE);
}

/* Give every node the roster and start raft on all of them, bootstrapped
 * with all as voters. */
static void start_all(const struct ol__peer *roster)
{
    struct raft_configuration conf;

    raft_configuration_init(&conf);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(ol__transport_set_roster(nodes[i].t, roster, N), 0);
        cr_assert_eq(raft_configuration_add(&conf, nodes[i].id,
                                            nodes[i].addr, RAFT_VOTER), 0);
    }
    for (int i = 0; i < N; i++)
        node_start(&nodes[i], &conf);
    raft_configuration_close(&conf);
}

#endif
