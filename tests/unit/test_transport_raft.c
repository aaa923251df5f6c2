/* Three raft instances in one process and one uv loop, each on raft_uv
 * with its own data directory and an outlast transport: they elect a
 * leader, commit entries through the encrypted pump, and shut down in the
 * order the daemon uses (raft_close, raft_uv_close, ol__transport_close)
 * with nothing left open or leaked. */
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


#define N 3
#define ENTRIES 200
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
static uint64_t next_seq = 1, committed, failed;
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
                                       ENTRIES)
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

TestSuite(transport_raft, .init = setup, .fini = finish, .timeout = 110);

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

Test(transport_raft, three_nodes_elect_and_commit_then_close_cleanly)
{
    struct ol__peer roster[N];
    struct raft_configuration conf;
    char err[OL_ERRMSG_SIZE];
    struct rnode *l;

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
        cr_assert_eq(ol__transport_create(&loop, &cfg, &n->t, err), 0, "%s",
                     err);
        /* Bind first so that the configuration can name the real port. */
        cr_assert_eq(ol__transport_listen(n->t, err), 0, "%s", err);
        snprintf(n->addr, sizeof n->addr, "127.0.0.1:%d",
                 ol__transport_port(n->t));
        memset(&roster[i], 0, sizeof roster[i]);
        roster[i].id = n->id;
        snprintf(roster[i].address, sizeof roster[i].address, "%s", n->addr);
        memcpy(roster[i].pk, n->key.pk, OL_PK_SIZE);
    }
    raft_configuration_init(&conf);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(ol__transport_set_roster(nodes[i].t, roster, N), 0);
        cr_assert_eq(raft_configuration_add(&conf, nodes[i].id,
                                            nodes[i].addr, RAFT_VOTER), 0);
    }
    for (int i = 0; i < N; i++)
        node_start(&nodes[i], &conf);
    raft_configuration_close(&conf);

    RUN_UNTIL(leader() != NULL, 20000);
    l = leader();
    cr_assert_not_null(l, "no leader elected");

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
