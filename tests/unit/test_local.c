/* Unit tests for the single-node replica (replication/local.c): proposals
 * on a real SQLite file commit in order and are applied by the state
 * machine, proposals made together share one transaction and one seal, a
 * proposal the state machine refuses comes back as a refused effect
 * without holding back the rest, and what committed is there after the
 * replica, state machine and store are closed and opened again. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "base/err.h"
#include "base/log.h"
#include "replication/replica.h"
#include "state/sm.h"
#include "state/store.h"
#include "tests/support/sample.h"

/* What the effects callback saw, in the order it saw it. */
struct seen {
    int type;
    int status;
    char name[OL_NAME_MAX + 1]; /* agent of a checkpoint or command */
    uint64_t seq;               /* checkpoint seq, or command req */
    int dup;
    char why[160];
};

#define SEEN_MAX 256

static char dir[64], path[128];
static uv_loop_t loop;
static struct ol__store st;
static struct ol__sm *sm;
static struct ol__key key;
static struct ol__replica *rep;
static struct seen seen[SEEN_MAX];
static int n_seen, n_calls;

static void on_effects(void *data, struct ol__effects *fx)
{
    (void)data;
    n_calls++;
    for (struct ol__effect *e = fx->head; e; e = e->next) {
        struct seen *s;

        if (e->type != OL_FX_CKPT && e->type != OL_FX_CMD)
            continue;
        cr_assert_lt(n_seen, SEEN_MAX);
        s = &seen[n_seen++];
        s->type = e->type;
        s->status = e->status;
        snprintf(s->why, sizeof s->why, "%s", e->errmsg);
        if (e->type == OL_FX_CKPT) {
            snprintf(s->name, sizeof s->name, "%s", e->u.ckpt.agent);
            s->seq = e->u.ckpt.seq;
            s->dup = e->u.ckpt.dup;
        } else {
            snprintf(s->name, sizeof s->name, "%s", e->u.cmd.name);
            s->seq = e->u.cmd.req;
        }
    }
}

static void open_all(void)
{
    struct ol__sm_config smc = {.retain = 0};
    char err[OL_ERRMSG_SIZE];

    cr_assert_eq(ol__store_open(&st, path, OL_STORE_WRITE_FULL), 0, "%s",
                 st.errmsg);
    cr_assert_eq(ol__sm_open(&st, &smc, &sm, err), 0, "%s", err);
    cr_assert_eq(ol__local_create(&loop, &st, sm, &key, on_effects, NULL,
                                  &rep),
                 0);
}

static void on_closed(void *data)
{
    *(int *)data = 1;
}

/* Run the loop until nothing is queued or in flight (bounded). */
static void run_idle(void)
{
    time_t end = time(NULL) + 20;

    for (int i = 0; i < 100000 && !rep->vt->idle(rep); i++) {
        cr_assert_lt(time(NULL), end, "the replica never went idle");
        uv_run(&loop, UV_RUN_ONCE);
    }
    cr_assert(rep->vt->idle(rep), "the replica never went idle");
}

static void close_all(void)
{
    int done = 0;

    if (rep == NULL)
        return;
    rep->vt->close(rep, on_closed, &done);
    for (int i = 0; i < 1000 && !done; i++)
        uv_run(&loop, UV_RUN_ONCE);
    cr_assert(done, "close never finished");
    rep->vt->destroy(rep);
    rep = NULL;
    ol__sm_close(sm);
    ol__store_close(&st);
}

static void setup(void)
{
    struct ol__sm_node n;

    ol_log_set_level(OL_LOG_ERROR);
    snprintf(dir, sizeof dir, "/tmp/ol-local-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/outlast.db", dir);
    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_eq(ol__key_generate(&key), 0);
    n_seen = n_calls = 0;
    open_all();
    memset(&n, 0, sizeof n);
    n.id = 1;
    memcpy(n.pk, key.pk, OL_PK_SIZE);
    snprintf(n.address, sizeof n.address, "127.0.0.1:7400");
    cr_assert_eq(ol__sm_put_node(sm, &n), 0);
}

static void teardown(void)
{
    char cmd[128];

    close_all();
    uv_run(&loop, UV_RUN_NOWAIT);
    cr_expect_eq(uv_loop_close(&loop), 0);
    ol__key_close(&key);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(local, .init = setup, .fini = teardown, .timeout = 60);

/* Propose SPAWN of `name` on node 1 with request id `req`. */
static void propose_spawn(const char *name, uint64_t req)
{
    static const uint8_t cfg[] = {0x80}; /* {} */
    struct ol__entry_w w;

    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_spawn(&w, req, name, "counter", cfg,
                                     sizeof cfg, 1, 0),
                 0);
    cr_assert_eq(rep->vt->propose_cmds(rep, &w), 0);
    ol__entry_w_close(&w);
}

/* Build checkpoint (agent, epoch 1, seq) chained on `prev`; its hash goes
 * to `hash`.  Returns the malloc'd body. */
static uint8_t *make_ckpt(const char *agent, uint64_t seq,
                          const uint8_t prev[OL_HASH_SIZE],
                          uint8_t hash[OL_HASH_SIZE], size_t *len)
{
    struct ol__ckpt c;
    struct ol__buf body;
    uint8_t *p;

    sample_ckpt_fill(&c, &key, agent, seq);
    c.epoch = 1;
    memcpy(c.prev_hash, prev, OL_HASH_SIZE);
    /* No acknowledgements and no messages: only the chain matters here. */
    for (uint32_t i = 0; i < c.n_acks; i++)
        free(c.acks[i].from);
    c.n_acks = 0;
    for (uint32_t i = 0; i < c.n_outbox; i++) {
        free(c.outbox[i].to);
        free((void *)c.outbox[i].data);
    }
    c.n_outbox = 0;
    ol__buf_init(&body);
    cr_assert_eq(ol__ckpt_encode(&c, &body), 0);
    ol__ckpt_free(&c);
    ol__ckpt_hash(body.base, body.len, hash);
    p = ol__buf_steal(&body, len);
    cr_assert_not_null(p);
    return p;
}

/* Propose seq of `agent` chained on prev; returns what propose said. */
static int propose(const char *agent, uint64_t seq,
                   const uint8_t prev[OL_HASH_SIZE],
                   uint8_t hash[OL_HASH_SIZE])
{
    size_t len;
    uint8_t *body = make_ckpt(agent, seq, prev, hash, &len);
    int rv = rep->vt->propose_ckpt(rep, agent, 1, seq, body, len, hash);

    if (rv != 0)
        free(body);
    return rv;
}

static int64_t q1(const char *sql)
{
    sqlite3_stmt *q;
    int64_t v = -1;

    cr_assert_eq(sqlite3_prepare_v2(st.db, sql, -1, &q, NULL), SQLITE_OK,
                 "%s", sql);
    if (sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return v;
}

static void spawn_ok(const char *name, uint64_t req)
{
    int from = n_seen;

    propose_spawn(name, req);
    run_idle();
    cr_assert_eq(n_seen, from + 1, "one outcome for the spawn");
    cr_assert_eq(seen[from].type, OL_FX_CMD);
    cr_assert_eq(seen[from].seq, req);
    cr_assert_eq(seen[from].status, 0, "spawn refused: %s",
                 seen[from].why);
}

Test(local, commits_in_order_and_applies)
{
    uint8_t h[6][OL_HASH_SIZE] = {{0}};
    const struct ol__sm_agent *a;
    struct ol__replica_counters n;

    spawn_ok("a", 1);
    a = ol__sm_agent(sm, "a");
    cr_assert_not_null(a, "the spawn was not applied");
    cr_expect_eq(a->owner, 1);
    cr_expect_eq(a->head_seq, 0);
    for (uint64_t s = 1; s <= 5; s++) {
        cr_assert_eq(propose("a", s, h[s - 1], h[s]), 0);
        run_idle();
    }
    cr_assert_eq(n_seen, 6);
    for (int i = 1; i <= 5; i++) {
        cr_expect_eq(seen[i].type, OL_FX_CKPT);
        cr_expect_str_eq(seen[i].name, "a");
        cr_expect_eq(seen[i].seq, (uint64_t)i, "effect %d is seq %" PRIu64,
                     i, seen[i].seq);
        cr_expect_eq(seen[i].status, 0, "seq %d refused: %s", i,
                     seen[i].why);
        cr_expect_eq(seen[i].dup, 0);
    }
    a = ol__sm_agent(sm, "a");
    cr_expect_eq(a->head_seq, 5);
    cr_expect_eq(memcmp(a->head_hash, h[5], OL_HASH_SIZE), 0);
    cr_expect_eq(q1("SELECT count(*) FROM checkpoints WHERE agent = 'a'"), 5);
    cr_expect_eq(q1("SELECT max(seq) FROM checkpoints"), 5);
    rep->vt->counters(rep, &n);
    cr_expect_eq(n.ckpts, 5);
    cr_expect_eq(n.cmds, 1);
    cr_expect_eq(n.batches, 6);
    cr_expect_eq(n.failures, 0);
}

Test(local, proposals_together_share_one_commit)
{
    uint8_t h[5][OL_HASH_SIZE] = {{0}}, hb[OL_HASH_SIZE];
    uint8_t zero[OL_HASH_SIZE] = {0};
    struct ol__replica_counters before, after;

    spawn_ok("a", 1);
    spawn_ok("b", 2);
    rep->vt->counters(rep, &before);
    /* Proposed in one turn of the loop: one batch. */
    for (uint64_t s = 1; s <= 4; s++)
        cr_assert_eq(propose("a", s, h[s - 1], h[s]), 0);
    cr_assert_eq(propose("b", 1, zero, hb), 0);
    cr_expect_not(rep->vt->idle(rep), "proposals queued yet idle");
    run_idle();
    rep->vt->counters(rep, &after);
    cr_expect_eq(after.batches - before.batches, 1, "%" PRIu64 " batches",
                 after.batches - before.batches);
    cr_expect_eq(after.ckpts - before.ckpts, 5);
    cr_expect_eq(after.batch_sizes.count - before.batch_sizes.count, 1);
    cr_expect_eq(after.batch_sizes.sum - before.batch_sizes.sum, 5);
    cr_expect_eq(n_calls, 3, "the batch's effects came in %d calls",
                 n_calls - 2);
    /* One seal signs them all, each at its position in the batch. */
    cr_expect_eq(q1("SELECT count(DISTINCT seal) FROM checkpoints"), 1);
    cr_expect_eq(q1("SELECT count(*) FROM seals"), 1);
    cr_expect_eq(q1("SELECT count(DISTINCT idx) FROM checkpoints"), 5);
    cr_assert_eq(n_seen, 2 + 5);
    for (int i = 0; i < 4; i++) {
        cr_expect_str_eq(seen[2 + i].name, "a");
        cr_expect_eq(seen[2 + i].seq, (uint64_t)i + 1);
        cr_expect_eq(seen[2 + i].status, 0, "%s", seen[2 + i].why);
    }
    cr_expect_str_eq(seen[6].name, "b");
    cr_expect_eq(seen[6].status, 0, "%s", seen[6].why);
    cr_expect_eq(ol__sm_agent(sm, "a")->head_seq, 4);
    cr_expect_eq(ol__sm_agent(sm, "b")->head_seq, 1);
}

Test(local, refused_proposals_do_not_hold_back_the_rest)
{
    uint8_t h1[OL_HASH_SIZE], h2[OL_HASH_SIZE], hx[OL_HASH_SIZE],
        zero[OL_HASH_SIZE] = {0}, wrong[OL_HASH_SIZE];
    int from;

    spawn_ok("a", 1);
    cr_assert_eq(propose("a", 1, zero, h1), 0);
    run_idle();
    from = n_seen;
    memset(wrong, 0x77, sizeof wrong);
    /* Skips seq 2; chained on a hash that is not the head's; an agent
     * that does not exist; then the good seq 2, all in one batch. */
    cr_assert_eq(propose("a", 3, h1, hx), 0);
    cr_assert_eq(propose("a", 2, wrong, hx), 0);
    cr_assert_eq(propose("ghost", 1, zero, hx), 0);
    cr_assert_eq(propose("a", 2, h1, h2), 0);
    run_idle();
    cr_assert_eq(n_seen, from + 4);
    cr_expect_eq(seen[from].status, OL_ESEQ, "%s",
                 ol_err_name(seen[from].status));
    cr_expect(strstr(seen[from].why, "skips ahead"), "%s", seen[from].why);
    cr_expect_eq(seen[from + 1].status, OL_EBADCHAIN, "%s",
                 ol_err_name(seen[from + 1].status));
    cr_expect_eq(seen[from + 2].status, OL_ENOTFOUND, "%s",
                 ol_err_name(seen[from + 2].status));
    cr_expect(strstr(seen[from + 2].why, "ghost"), "%s", seen[from + 2].why);
    cr_expect_eq(seen[from + 3].status, 0, "%s", seen[from + 3].why);
    cr_expect_eq(ol__sm_agent(sm, "a")->head_seq, 2);
    cr_expect_eq(memcmp(ol__sm_agent(sm, "a")->head_hash, h2, OL_HASH_SIZE),
                 0);
    cr_expect_eq(q1("SELECT count(*) FROM checkpoints"), 2);
    cr_expect_eq(q1("SELECT count(*) FROM checkpoints WHERE agent = "
                    "'ghost'"),
                 0);

    /* A command the state machine refuses: the name is taken. */
    from = n_seen;
    propose_spawn("a", 9);
    run_idle();
    cr_assert_eq(n_seen, from + 1);
    cr_expect_eq(seen[from].type, OL_FX_CMD);
    cr_expect_eq(seen[from].seq, 9);
    cr_expect_eq(seen[from].status, OL_EEXISTS, "%s",
                 ol_err_name(seen[from].status));
    cr_expect_eq(ol__sm_agent(sm, "a")->head_seq, 2, "the refused spawn "
                                                    "reset the agent");
}

Test(local, a_retried_checkpoint_is_a_duplicate)
{
    uint8_t h1[OL_HASH_SIZE], zero[OL_HASH_SIZE] = {0};

    spawn_ok("a", 1);
    cr_assert_eq(propose("a", 1, zero, h1), 0);
    run_idle();
    cr_assert_eq(propose("a", 1, zero, h1), 0);
    run_idle();
    cr_assert_eq(n_seen, 3);
    cr_expect_eq(seen[2].status, 0, "%s", seen[2].why);
    cr_expect_eq(seen[2].dup, 1, "a retry was not reported as such");
    cr_expect_eq(q1("SELECT count(*) FROM checkpoints"), 1);
}

Test(local, reopen_keeps_what_committed)
{
    uint8_t h[5][OL_HASH_SIZE] = {{0}};
    const struct ol__sm_agent *a;

    spawn_ok("a", 1);
    for (uint64_t s = 1; s <= 3; s++)
        cr_assert_eq(propose("a", s, h[s - 1], h[s]), 0);
    run_idle();
    close_all();

    open_all();
    a = ol__sm_agent(sm, "a");
    cr_assert_not_null(a, "the agent is gone after a reopen");
    cr_expect_eq(a->head_seq, 3);
    cr_expect_eq(memcmp(a->head_hash, h[3], OL_HASH_SIZE), 0);
    cr_expect_eq(q1("SELECT count(*) FROM checkpoints"), 3);
    /* The chain goes on from the stored head. */
    n_seen = 0;
    cr_assert_eq(propose("a", 4, h[3], h[4]), 0);
    run_idle();
    cr_assert_eq(n_seen, 1);
    cr_expect_eq(seen[0].status, 0, "%s", seen[0].why);
    cr_expect_eq(ol__sm_agent(sm, "a")->head_seq, 4);
}

Test(local, closing_refuses_new_proposals)
{
    uint8_t h[OL_HASH_SIZE], zero[OL_HASH_SIZE] = {0};
    struct ol__entry_w w;
    int done = 0;

    cr_expect_eq(rep->vt->is_leader(rep), 1);
    cr_expect_eq(rep->vt->lease_left(rep), INT64_MAX);
    cr_expect(rep->vt->idle(rep));
    rep->vt->close(rep, on_closed, &done);
    cr_expect_eq(propose("a", 1, zero, h), OL_ESHUTDOWN);
    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_noop(&w), 0);
    cr_expect_eq(rep->vt->propose_cmds(rep, &w), OL_ESHUTDOWN);
    ol__entry_w_close(&w);
    for (int i = 0; i < 1000 && !done; i++)
        uv_run(&loop, UV_RUN_ONCE);
    cr_assert(done);
    rep->vt->destroy(rep);
    rep = NULL;
    ol__sm_close(sm);
    ol__store_close(&st);
    cr_expect_eq(n_seen, 0);
}
