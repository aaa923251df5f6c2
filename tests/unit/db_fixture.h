/* A real node database for the query and CLI tests, built the way a node
 * builds it: log entries from cmd.h applied by the state machine.
 *
 *   node 1 (key fx_key)
 *   agents: "sink" (no checkpoints, 3 messages waiting from ticker),
 *           "ticker" (kind counter, config {"every": 5}, seqs 1..3,
 *                     state {"v": seq})
 *
 * Header-only (static functions) so that both test binaries can use it
 * without a change to the shared test support library. */
#ifndef OL_TEST_DB_FIXTURE_H
#define OL_TEST_DB_FIXTURE_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record/cmd.h"
#include "state/sm.h"
#include "base/err.h"
#include "base/log.h"
#include "tests/support/sample.h"

static struct ol__key fx_key;
static uint8_t fx_hash[4][OL_HASH_SIZE]; /* fx_hash[seq] */

static void fx_apply(struct ol__store *st, struct ol__sm *sm,
                     struct ol__entry_w *w)
{
    struct ol__effects fx;
    struct ol__buf e;

    ol__buf_init(&e);
    cr_assert_eq(ol__entry_w_finish(w, &e), 0);
    ol__effects_init(&fx);
    cr_assert_eq(ol__store_begin(st), 0);
    cr_assert_eq(ol__sm_apply(sm, e.base, e.len, 0, &fx), 0);
    cr_assert_eq(ol__store_commit(st), 0);
    for (struct ol__effect *x = fx.head; x; x = x->next)
        cr_assert_eq(x->status, 0, "fixture entry refused: %s", x->errmsg);
    ol__effects_free(&fx);
    ol__buf_close(&e);
    ol__entry_w_reset(w);
}

static void fx_ckpt(struct ol__store *st, struct ol__sm *sm, uint64_t seq)
{
    struct ol__entry_w w;
    struct ol__ckpt c;
    struct ol__buf body;
    struct ol__blob b;

    sample_ckpt_fill(&c, &fx_key, "ticker", seq);
    c.epoch = 1;
    for (uint32_t i = 0; i < c.n_acks; i++) /* nothing to acknowledge */
        free(c.acks[i].from);
    free(c.acks);
    c.acks = NULL;
    c.n_acks = 0;
    free(c.outbox[0].to);
    c.outbox[0].to = strdup("sink");
    memcpy(c.prev_hash, fx_hash[seq - 1], OL_HASH_SIZE);
    ol__buf_init(&body);
    cr_assert_eq(ol__ckpt_encode(&c, &body), 0);
    ol__ckpt_hash(body.base, body.len, fx_hash[seq]);
    ol__ckpt_free(&c);
    b.p = body.base;
    b.len = (uint32_t)body.len;
    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_ckpts(&w, &fx_key, 1700000000000 + (int64_t)seq,
                                     &b, fx_hash[seq], 1),
                 0);
    fx_apply(st, sm, &w);
    ol__entry_w_close(&w);
    ol__buf_close(&body);
}

/* Build the fixture database at `path`.  fx_key stays open. */
static void fx_build_db(const char *path)
{
    static const uint8_t cfg[] = {0x81, 0xa5, 'e', 'v', 'e', 'r', 'y', 0x05};
    struct ol__sm_config smc = {.retain = 0};
    char err[OL_ERRMSG_SIZE];
    struct ol__sm_node n;
    struct ol__entry_w w;
    struct ol__store st;
    struct ol__sm *sm;

    ol_log_set_level(OL_LOG_ERROR); /* the fixture drops a message */
    memset(fx_hash, 0, sizeof fx_hash);
    cr_assert_eq(ol__key_generate(&fx_key), 0);
    cr_assert_eq(ol__store_open(&st, path, OL_STORE_WRITE_FULL), 0, "%s",
                 st.errmsg);
    cr_assert_eq(ol__sm_open(&st, &smc, &sm, err), 0, "%s", err);
    memset(&n, 0, sizeof n);
    n.id = 1;
    memcpy(n.pk, fx_key.pk, OL_PK_SIZE);
    snprintf(n.address, sizeof n.address, "127.0.0.1:7400");
    cr_assert_eq(ol__sm_put_node(sm, &n), 0);
    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_spawn(&w, 1, "sink", "counter", cfg,
                                     sizeof cfg, 1, 0),
                 0);
    cr_assert_eq(ol__entry_add_spawn(&w, 2, "ticker", "counter", cfg,
                                     sizeof cfg, 1, 0),
                 0);
    fx_apply(&st, sm, &w);
    ol__entry_w_close(&w);
    for (uint64_t s = 1; s <= 3; s++)
        fx_ckpt(&st, sm, s);
    ol__sm_close(sm);
    ol__store_close(&st);
}

/* Flip one byte of a stored checkpoint body with the sqlite3 API. */
static void fx_flip_body_byte(const char *path, const char *agent,
                              uint64_t seq, int offset_from_end)
{
    sqlite3 *db;
    sqlite3_stmt *q;
    uint8_t *body;
    int n;

    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT body FROM checkpoints WHERE "
                                    "agent = ? AND seq = ?",
                                    -1, &q, NULL),
                 SQLITE_OK);
    sqlite3_bind_text(q, 1, agent, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)seq);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    n = sqlite3_column_bytes(q, 0);
    body = malloc((size_t)n);
    memcpy(body, sqlite3_column_blob(q, 0), (size_t)n);
    sqlite3_finalize(q);
    body[n - offset_from_end] ^= 0x01;
    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "UPDATE checkpoints SET body = ? WHERE "
                                    "agent = ? AND seq = ?",
                                    -1, &q, NULL),
                 SQLITE_OK);
    sqlite3_bind_blob(q, 1, body, n, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, agent, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, (sqlite3_int64)seq);
    cr_assert_eq(sqlite3_step(q), SQLITE_DONE);
    sqlite3_finalize(q);
    sqlite3_close(db);
    free(body);
}

#endif
