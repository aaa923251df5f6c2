/* Unit tests for the table of applied request ids (state/sm_reqs.c)
 * over real SQLite files: a command is applied once however often its
 * request id comes back, the first outcome is reported again, the table
 * stays bounded with the same ids on every replica, and snapshots carry
 * it. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "record/cmd.h"
#include "state/sm.h"
#include "base/err.h"
#include "tests/support/sample.h"

static char dir[64];
static struct ol__key k1;
static const uint8_t payload[] = {0x80};

/* One replica: a store and its state machine, with node 1 (key k1). */
struct rep {
    struct ol__store st;
    struct ol__sm *sm;
};

static void rep_open(struct rep *r, const char *name, uint32_t reqs_max)
{
    struct ol__sm_config c = {.reqs_max = reqs_max};
    struct ol__sm_node n;
    char path[160], err[OL_ERRMSG_SIZE];

    snprintf(path, sizeof path, "%s/%s.db", dir, name);
    cr_assert_eq(ol__store_open(&r->st, path, OL_STORE_WRITE_NORMAL), 0);
    cr_assert_eq(ol__sm_open(&r->st, &c, &r->sm, err), 0, "%s", err);
    memset(&n, 0, sizeof n);
    n.id = 1;
    memcpy(n.pk, k1.pk, OL_PK_SIZE);
    cr_assert_eq(ol__sm_put_node(r->sm, &n), 0);
}

static void rep_close(struct rep *r)
{
    ol__sm_close(r->sm);
    ol__store_close(&r->st);
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/ol-reqs-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(ol__key_generate(&k1), 0);
}

static void teardown(void)
{
    char cmd[128];

    ol__key_close(&k1);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(reqs, .init = setup, .fini = teardown);

/* Apply what `w` holds as one entry; the effects are the caller's. */
static void apply(struct rep *r, struct ol__entry_w *w,
                  struct ol__effects *fx)
{
    struct ol__buf e;

    ol__buf_init(&e);
    cr_assert_eq(ol__entry_w_finish(w, &e), 0);
    ol__effects_init(fx);
    cr_assert_eq(ol__store_begin(&r->st), 0);
    cr_assert_eq(ol__sm_apply(r->sm, e.base, e.len, 0, fx), 0);
    cr_assert_eq(ol__store_commit(&r->st), 0);
    ol__buf_close(&e);
    ol__entry_w_reset(w);
}

static const struct ol__effect *find_fx(const struct ol__effects *fx,
                                        int type)
{
    for (const struct ol__effect *e = fx->head; e; e = e->next)
        if (e->type == type)
            return e;
    return NULL;
}

static int n_fx(const struct ol__effects *fx, int type)
{
    int n = 0;

    for (const struct ol__effect *e = fx->head; e; e = e->next)
        n += e->type == type;
    return n;
}

static int64_t q1(struct rep *r, const char *sql)
{
    sqlite3_stmt *q;
    int64_t v;

    cr_assert_eq(sqlite3_prepare_v2(r->st.db, sql, -1, &q, NULL), SQLITE_OK,
                 "%s", sql);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return v;
}

/* The ids the table holds, in eviction order, as text. */
static void table_text(struct rep *r, char *out, size_t cap)
{
    sqlite3_stmt *q;

    cr_assert_eq(sqlite3_prepare_v2(r->st.db,
                                    "SELECT coalesce(group_concat(req || ':' "
                                    "|| n || ':' || status, ','), '') FROM "
                                    "(SELECT * FROM reqs ORDER BY n)",
                                    -1, &q, NULL),
                 SQLITE_OK);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    snprintf(out, cap, "%s", (const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
}

/* Apply one command built by the caller into `w`; return its outcome. */
static int outcome(struct rep *r, struct ol__entry_w *w)
{
    struct ol__effects fx;
    const struct ol__effect *e;
    int status;

    apply(r, w, &fx);
    e = find_fx(&fx, OL_FX_CMD);
    cr_assert_not_null(e, "no outcome reported");
    status = e->status;
    ol__effects_free(&fx);
    return status;
}

static void spawn(struct rep *r, uint64_t req, const char *name)
{
    struct ol__entry_w w;

    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_spawn(&w, req, name, "counter", payload,
                                     sizeof payload, 1, 0), 0);
    cr_assert_eq(outcome(r, &w), 0);
    ol__entry_w_close(&w);
}

/* `name`'s first checkpoint, which acknowledges the message @cli sent it
 * with msg_seq 99 (the sample checkpoint's ack). */
static void ack_99(struct rep *r, const char *name)
{
    struct ol__entry_w w;
    struct ol__effects fx;
    struct ol__ckpt c;
    struct ol__buf body;
    struct ol__blob b;
    uint8_t hash[OL_HASH_SIZE];
    const struct ol__effect *e;

    sample_ckpt_fill(&c, &k1, name, 1);
    c.epoch = 1;
    ol__buf_init(&body);
    cr_assert_eq(ol__ckpt_encode(&c, &body), 0);
    ol__ckpt_free(&c);
    ol__ckpt_hash(body.base, body.len, hash);
    b.p = body.base;
    b.len = (uint32_t)body.len;
    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_ckpts(&w, &k1, 1, &b, hash, 1), 0);
    apply(r, &w, &fx);
    e = find_fx(&fx, OL_FX_CKPT);
    cr_assert(e != NULL && e->status == 0, "checkpoint refused: %s",
              e ? e->errmsg : "no effect");
    ol__effects_free(&fx);
    ol__entry_w_close(&w);
    ol__buf_close(&body);
}

/* The bug the table fixes: a SEND retried after the recipient consumed
 * and acknowledged the message (its row deleted) was stored again, so the
 * message was delivered twice. */
Test(reqs, a_send_retried_after_its_ack_is_not_delivered_again)
{
    struct rep r;
    struct ol__entry_w w;
    struct ol__effects fx;
    const struct ol__effect *e;
    int mails = 0;

    rep_open(&r, "a", 0);
    spawn(&r, 1, "sink");
    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_send(&w, 0xabcdef, "sink", 99, payload,
                                    sizeof payload), 0);
    apply(&r, &w, &fx);
    mails += n_fx(&fx, OL_FX_MAIL);
    e = find_fx(&fx, OL_FX_CMD);
    cr_assert(e != NULL && e->status == 0);
    ol__effects_free(&fx);
    cr_assert_eq(q1(&r, "SELECT count(*) FROM mailbox"), 1);

    ack_99(&r, "sink");
    cr_assert_eq(q1(&r, "SELECT count(*) FROM mailbox"), 0,
                 "the ack did not remove the row");

    /* The proposer heard nothing and sends the same command again. */
    cr_assert_eq(ol__entry_add_send(&w, 0xabcdef, "sink", 99, payload,
                                    sizeof payload), 0);
    apply(&r, &w, &fx);
    mails += n_fx(&fx, OL_FX_MAIL);
    e = find_fx(&fx, OL_FX_CMD);
    cr_assert_not_null(e);
    cr_expect_eq(e->status, 0, "the retry's outcome is not the first one");
    cr_expect_eq(e->u.cmd.req, 0xabcdef);
    ol__effects_free(&fx);
    cr_expect_eq(mails, 1, "the message was delivered %d times", mails);
    cr_expect_eq(q1(&r, "SELECT count(*) FROM mailbox"), 0,
                 "the retry stored the message again");
    cr_expect_eq(ol__sm_agent(r.sm, "sink")->mail_n, 0);
    ol__entry_w_close(&w);
    rep_close(&r);
}

/* A repeated SPAWN, STOP or START is ignored, whatever the agent's state
 * is by then, and answers with the first outcome, refusals included. */
Test(reqs, repeated_lifecycle_commands_are_ignored)
{
    struct rep r;
    struct ol__entry_w w;
    struct ol__effects fx;
    const struct ol__effect *e;
    char why[160];

    rep_open(&r, "a", 0);
    spawn(&r, 10, "ticker");
    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_stop(&w, 11, "ticker"), 0);
    cr_assert_eq(outcome(&r, &w), 0);
    cr_assert_eq(ol__sm_agent(r.sm, "ticker")->status, OL_AGENT_STOPPING);

    /* A START while it is stopping is refused; its repeat, once the
     * agent has stopped and a START would succeed, is refused again. */
    cr_assert_eq(ol__entry_add_start(&w, 12, "ticker"), 0);
    apply(&r, &w, &fx);
    e = find_fx(&fx, OL_FX_CMD);
    cr_assert(e != NULL && e->status == OL_ESTATE);
    snprintf(why, sizeof why, "%s", e->errmsg);
    ol__effects_free(&fx);
    cr_assert_eq(ol__entry_add_stop(&w, 13, "ticker"), 0);
    cr_assert_eq(outcome(&r, &w), 0);
    /* Stopped for good (as the final checkpoint would). */
    cr_assert_eq(ol__store_exec(&r.st, "UPDATE agents SET status = 3"), 0);
    cr_assert_eq(ol__sm_reload(r.sm), 0);
    cr_assert_eq(ol__sm_agent(r.sm, "ticker")->status, OL_AGENT_STOPPED);
    cr_assert_eq(ol__entry_add_start(&w, 12, "ticker"), 0);
    apply(&r, &w, &fx);
    e = find_fx(&fx, OL_FX_CMD);
    cr_assert_not_null(e);
    cr_expect_eq(e->status, OL_ESTATE);
    cr_expect_str_eq(e->errmsg, why, "the first refusal's reason is lost");
    ol__effects_free(&fx);
    cr_expect_eq(ol__sm_agent(r.sm, "ticker")->status, OL_AGENT_STOPPED,
                 "a repeated START started the agent");

    /* A real START, then the first STOP again: ignored, still running,
     * and answered with the agent's row as the first STOP was. */
    cr_assert_eq(ol__entry_add_start(&w, 14, "ticker"), 0);
    cr_assert_eq(outcome(&r, &w), 0);
    cr_assert_eq(ol__sm_agent(r.sm, "ticker")->epoch, 2);
    cr_assert_eq(ol__entry_add_stop(&w, 11, "ticker"), 0);
    apply(&r, &w, &fx);
    e = find_fx(&fx, OL_FX_CMD);
    cr_assert(e != NULL && e->status == 0);
    cr_expect_not_null(find_fx(&fx, OL_FX_AGENT));
    ol__effects_free(&fx);
    cr_expect_eq(ol__sm_agent(r.sm, "ticker")->status, OL_AGENT_RUNNING,
                 "a repeated STOP stopped the restarted agent");
    cr_expect_eq(ol__sm_agent(r.sm, "ticker")->epoch, 2);

    /* A SPAWN's id names that spawn, not the agent: reused for another
     * name it creates nothing. */
    cr_assert_eq(ol__entry_add_spawn(&w, 10, "other", "counter", payload,
                                     sizeof payload, 1, 0), 0);
    cr_expect_eq(outcome(&r, &w), 0);
    cr_expect_null(ol__sm_agent(r.sm, "other"));
    ol__entry_w_close(&w);
    rep_close(&r);
}

/* Commands with no request id (0) and format 1 entries are applied as
 * before, never recorded. */
Test(reqs, commands_without_an_id_are_not_recorded)
{
    struct rep r;
    struct ol__entry_w w;

    rep_open(&r, "a", 0);
    spawn(&r, 1, "sink");
    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_send(&w, 0, "sink", 1, payload,
                                    sizeof payload), 0);
    cr_assert_eq(outcome(&r, &w), 0);
    cr_assert_eq(ol__entry_add_send(&w, 0, "sink", 2, payload,
                                    sizeof payload), 0);
    cr_assert_eq(outcome(&r, &w), 0);
    cr_expect_eq(q1(&r, "SELECT count(*) FROM mailbox"), 2);
    cr_expect_eq(ol__sm_reqs_count(r.sm), 1, "only the spawn has an id");
    ol__entry_w_close(&w);
    rep_close(&r);
}

/* Two replicas fed the same commands hold the same bounded table (the
 * newest ids, by apply counter), in memory and in the store, before and
 * after a reload; an id evicted is applied again if it comes back. */
Test(reqs, eviction_is_bounded_and_the_same_on_every_replica)
{
    struct rep a, b;
    struct ol__entry_w w;
    char ta[4096], tb[4096];
    int st;

    rep_open(&a, "a", 8);
    rep_open(&b, "b", 8);
    ol__entry_w_init(&w);
    for (uint64_t i = 1; i <= 30; i++) {
        /* Mixed outcomes: STOP of an agent that does not exist is
         * refused, a SPAWN succeeds. */
        char name[16];

        snprintf(name, sizeof name, "a%" PRIu64, i);
        for (int k = 0; k < 2; k++) {
            struct rep *r = k ? &b : &a;

            if (i % 3 == 0)
                cr_assert_eq(ol__entry_add_spawn(&w, i * 1000003, name,
                                                 "counter", payload,
                                                 sizeof payload, 1, 0), 0);
            else
                cr_assert_eq(ol__entry_add_stop(&w, i * 1000003, name), 0);
            (void)outcome(r, &w);
        }
    }
    cr_expect_eq(ol__sm_reqs_count(a.sm), 8);
    cr_expect_eq(q1(&a, "SELECT count(*) FROM reqs"), 8);
    for (uint64_t i = 1; i <= 30; i++) {
        cr_expect_eq(ol__sm_reqs_get(a.sm, i * 1000003, &st), i > 22,
                     "request %" PRIu64, i);
        if (i > 22)
            cr_expect_eq(st, i % 3 == 0 ? 0 : OL_ENOTFOUND);
    }
    table_text(&a, ta, sizeof ta);
    table_text(&b, tb, sizeof tb);
    cr_expect_str_eq(ta, tb, "the replicas' tables differ");
    cr_assert_eq(ol__sm_reload(a.sm), 0);
    cr_expect_eq(ol__sm_reqs_count(a.sm), 8);
    cr_expect(ol__sm_reqs_get(a.sm, 30 * 1000003, NULL));
    cr_expect(!ol__sm_reqs_get(a.sm, 22 * 1000003, NULL));

    /* Request 1 (a STOP of a1, refused: no such agent) was evicted.  Once
     * a1 exists, its repeat is applied as a new command, and succeeds. */
    spawn(&a, 999, "a1");
    cr_assert_eq(ol__entry_add_stop(&w, 1 * 1000003, "a1"), 0);
    cr_expect_eq(outcome(&a, &w), 0);
    cr_expect_eq(ol__sm_agent(a.sm, "a1")->status, OL_AGENT_STOPPING);
    cr_expect_eq(ol__sm_reqs_count(a.sm), 8);
    cr_expect(!ol__sm_reqs_get(a.sm, 24 * 1000003, NULL),
              "the oldest ids were not evicted");
    ol__entry_w_close(&w);
    rep_close(&a);
    rep_close(&b);
}

/* A snapshot carries the table: the installing replica ignores a repeat
 * the other one applied.  A format 3 snapshot (from before the table)
 * installs with an empty one. */
Test(reqs, snapshots_carry_the_table_and_old_ones_restore_empty)
{
    struct rep a, b, c;
    struct ol__entry_w w;
    struct ol__buf snap;
    char ta[4096], tb[4096], err[OL_ERRMSG_SIZE];
    uint8_t *old;

    rep_open(&a, "a", 0);
    spawn(&a, 0xfedcba9876543210ull, "sink"); /* above 2^63 */
    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_send(&w, 77, "sink", 5, payload,
                                    sizeof payload), 0);
    cr_assert_eq(outcome(&a, &w), 0);
    cr_assert_eq(ol__entry_add_stop(&w, 78, "nobody"), 0);
    cr_assert_eq(outcome(&a, &w), OL_ENOTFOUND);
    cr_assert_eq(ol__store_begin(&a.st), 0);
    cr_assert_eq(ol__sm_set_applied(a.sm, 10), 0);
    cr_assert_eq(ol__store_commit(&a.st), 0);
    ol__buf_init(&snap);
    cr_assert_eq(ol__sm_snapshot(a.sm, &snap), 0);

    rep_open(&b, "b", 0);
    cr_assert_eq(ol__sm_restore(b.sm, snap.base, snap.len, 0, NULL, err), 0,
                 "%s", err);
    table_text(&a, ta, sizeof ta);
    table_text(&b, tb, sizeof tb);
    cr_expect_str_eq(ta, tb);
    cr_expect_eq(ol__sm_reqs_count(b.sm), 3);
    cr_expect(ol__sm_reqs_get(b.sm, 0xfedcba9876543210ull, NULL));
    cr_assert_eq(q1(&b, "SELECT count(*) FROM mailbox"), 1);
    cr_assert_eq(ol__entry_add_send(&w, 77, "sink", 5, payload,
                                    sizeof payload), 0);
    cr_expect_eq(outcome(&b, &w), 0);
    cr_expect_eq(q1(&b, "SELECT count(*) FROM mailbox"), 1);
    cr_assert_eq(ol__entry_add_stop(&w, 78, "nobody"), 0);
    cr_expect_eq(outcome(&b, &w), OL_ENOTFOUND);

    /* The same state without the table, as format 3 wrote it: the header
     * says 10 parts, format 3, and the last part (the empty table) goes. */
    cr_assert_eq(ol__store_exec(&a.st, "DELETE FROM reqs"), 0);
    ol__buf_close(&snap);
    ol__buf_init(&snap);
    cr_assert_eq(ol__sm_snapshot(a.sm, &snap), 0);
    cr_assert(snap.len > 3 && snap.base[0] == 0x9b && snap.base[1] == 4 &&
              snap.base[snap.len - 1] == 0x90);
    old = (uint8_t *)snap.base;
    old[0] = 0x9a;
    old[1] = 3;
    rep_open(&c, "c", 0);
    spawn(&c, 5, "mine"); /* a table of its own, which the install drops */
    cr_assert_eq(ol__sm_restore(c.sm, old, snap.len - 1, 0, NULL, err), 0,
                 "%s", err);
    cr_expect_eq(ol__sm_reqs_count(c.sm), 0);
    cr_expect_eq(q1(&c, "SELECT count(*) FROM reqs"), 0);
    cr_expect_not_null(ol__sm_agent(c.sm, "sink"));
    /* The newer format read as format 3 has a part too many. */
    old[1] = 3;
    old[0] = 0x9b;
    cr_expect_neq(ol__sm_restore(c.sm, old, snap.len, 0, NULL, err), 0);

    ol__entry_w_close(&w);
    ol__buf_close(&snap);
    rep_close(&a);
    rep_close(&b);
    rep_close(&c);
}

/* Damaged snapshot rows are refused: a zero id, a positive outcome, the
 * same id twice. */
Test(reqs, a_snapshot_with_a_bad_table_row_is_refused)
{
    struct rep a, b;
    struct ol__buf snap;
    char err[OL_ERRMSG_SIZE];
    uint8_t *p;
    size_t i;

    rep_open(&a, "a", 0);
    spawn(&a, 0x1111111111111111ull, "x1");
    spawn(&a, 0x2222222222222222ull, "x2");
    cr_assert_eq(ol__store_begin(&a.st), 0);
    cr_assert_eq(ol__sm_set_applied(a.sm, 10), 0);
    cr_assert_eq(ol__store_commit(&a.st), 0);
    ol__buf_init(&snap);
    cr_assert_eq(ol__sm_snapshot(a.sm, &snap), 0);
    p = (uint8_t *)snap.base;
    /* The second id becomes the first: a repeated id.  The table is the
     * snapshot's last part (the agents rows hold the ids too). */
    for (i = snap.len - 9; i > 0; i--)
        if (p[i] == 0xcf && p[i + 1] == 0x22 && p[i + 8] == 0x22)
            break;
    cr_assert(i > 0);
    memset(p + i + 1, 0x11, 8);
    rep_open(&b, "b", 0);
    cr_expect_eq(ol__sm_restore(b.sm, snap.base, snap.len, 0, NULL, err),
                 OL_EMALFORMED);
    cr_expect(strstr(err, "request id") != NULL, "%s", err);
    cr_expect_eq(ol__sm_applied(b.sm), 0);
    ol__buf_close(&snap);
    rep_close(&a);
    rep_close(&b);
}
