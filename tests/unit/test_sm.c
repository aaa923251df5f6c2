/* Unit tests for the state machine over a real SQLite file: the rules that
 * decide whether a checkpoint commits. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "record/cmd.h"
#include "replication/placement.h"
#include "state/sm.h"
#include "base/err.h"
#include "runtime/ipc.h"
#include "state/store.h"
#include "tests/support/sample.h"

static char dir[64], dbpath[128];
static struct ol__store st;
static struct ol__sm *sm;
static struct ol__key k1, k2;
static const uint8_t cfg[] = {0x80};

static void setup(void)
{
    struct ol__sm_config c = {.retain = 0};
    struct ol__sm_node n;
    char err[OL_ERRMSG_SIZE];

    snprintf(dir, sizeof dir, "/tmp/ol-sm-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(dbpath, sizeof dbpath, "%s/outlast.db", dir);
    cr_assert_eq(ol__store_open(&st, dbpath, OL_STORE_WRITE_NORMAL), 0);
    cr_assert_eq(ol__sm_open(&st, &c, &sm, err), 0, "%s", err);
    cr_assert_eq(ol__key_generate(&k1), 0);
    cr_assert_eq(ol__key_generate(&k2), 0);
    memset(&n, 0, sizeof n);
    n.id = 1;
    memcpy(n.pk, k1.pk, OL_PK_SIZE);
    cr_assert_eq(ol__sm_put_node(sm, &n), 0);
    n.id = 2;
    memcpy(n.pk, k2.pk, OL_PK_SIZE);
    cr_assert_eq(ol__sm_put_node(sm, &n), 0);
}

static void teardown(void)
{
    char cmd[128];

    ol__sm_close(sm);
    ol__store_close(&st);
    ol__key_close(&k1);
    ol__key_close(&k2);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(sm, .init = setup, .fini = teardown);

/* Apply one finished entry in a transaction; return the effects. */
static void apply(struct ol__entry_w *w, int trusted, struct ol__effects *fx)
{
    struct ol__buf e;

    ol__buf_init(&e);
    cr_assert_eq(ol__entry_w_finish(w, &e), 0);
    ol__effects_init(fx);
    cr_assert_eq(ol__store_begin(&st), 0);
    cr_assert_eq(ol__sm_apply(sm, e.base, e.len, trusted, fx), 0);
    cr_assert_eq(ol__store_commit(&st), 0);
    ol__buf_close(&e);
    ol__entry_w_reset(w);
}

static int cmd_status(struct ol__effects *fx)
{
    for (struct ol__effect *e = fx->head; e; e = e->next)
        if (e->type == OL_FX_CMD)
            return e->status;
    return 999;
}

/* Applies the entry w holds, closes w, and returns the command's status. */
static int apply_closing(struct ol__entry_w *w)
{
    struct ol__effects fx;
    int status;

    apply(w, 0, &fx);
    status = cmd_status(&fx);
    ol__effects_free(&fx);
    ol__entry_w_close(w);
    return status;
}

static int ckpt_status(struct ol__effects *fx, uint64_t seq)
{
    for (struct ol__effect *e = fx->head; e; e = e->next)
        if (e->type == OL_FX_CKPT && e->u.ckpt.seq == seq)
            return e->status;
    return 999;
}

/* The statement `sql` on db, stepped to its first row (there must be one). */
static sqlite3_stmt *first_row(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *q;

    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK, "%s",
                 sql);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    return q;
}

/* Applies one SPAWN of a counter `name` owned by node `owner` with
 * request id `req`; returns the command's status. */
static int spawn_req(uint64_t req, const char *name, uint64_t owner)
{
    struct ol__entry_w w;

    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_spawn(&w, req, name, "counter", cfg,
                                     sizeof cfg, owner, 0), 0);
    return apply_closing(&w);
}

/* Each spawn has a request id of its own (42 for a test's first): the
 * state machine applies a repeated id once. */
static void spawn(const char *name, uint64_t owner)
{
    static uint64_t req = 42;

    cr_assert_eq(spawn_req(req++, name, owner), 0);
}

/* Flags of the bodies body_for() builds (0 unless a test sets them). */
static uint32_t body_flags;
/* Called on each body before it is encoded, when a test sets it. */
static void (*body_edit)(struct ol__ckpt *c);

/* Build a checkpoint body chained onto prev (NULL for seq 1). */
static void body_for(const struct ol__key *k, const char *agent,
                     uint64_t epoch, uint64_t seq, const uint8_t *prev,
                     struct ol__buf *body, uint8_t hash[OL_HASH_SIZE],
                     int variant)
{
    struct ol__ckpt c;

    sample_ckpt_fill(&c, k, agent, seq);
    c.flags = body_flags;
    c.epoch = epoch;
    c.time_ms += variant;
    free(c.acks[0].from);
    c.n_acks = 0;
    free(c.outbox[0].to);
    c.outbox[0].to = strdup("sink");
    if (prev)
        memcpy(c.prev_hash, prev, OL_HASH_SIZE);
    else
        memset(c.prev_hash, 0, OL_HASH_SIZE);
    if (body_edit)
        body_edit(&c);
    ol__buf_init(body);
    cr_assert_eq(ol__ckpt_encode(&c, body), 0);
    ol__ckpt_hash(body->base, body->len, hash);
    ol__ckpt_free(&c);
}

static int propose(const struct ol__key *k, const char *agent,
                   uint64_t epoch, uint64_t seq, const uint8_t *prev,
                   uint8_t hash[OL_HASH_SIZE], int variant)
{
    struct ol__entry_w w;
    struct ol__effects fx;
    struct ol__buf body;
    struct ol__blob b;
    int status;

    body_for(k, agent, epoch, seq, prev, &body, hash, variant);
    b.p = body.base;
    b.len = (uint32_t)body.len;
    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_ckpts(&w, k, 1, &b, hash, 1), 0);
    apply(&w, 0, &fx);
    status = ckpt_status(&fx, seq);
    ol__effects_free(&fx);
    ol__entry_w_close(&w);
    ol__buf_close(&body);
    return status;
}

Test(sm, chain_commits_in_order)
{
    uint8_t h1[32], h2[32], h3[32];

    spawn("sink", 1);
    spawn("ticker", 1);
    cr_assert_eq(propose(&k1, "ticker", 1, 1, NULL, h1, 0), 0);
    cr_assert_eq(propose(&k1, "ticker", 1, 2, h1, h2, 0), 0);
    cr_assert_eq(propose(&k1, "ticker", 1, 3, h2, h3, 0), 0);
    cr_assert_eq(ol__sm_agent(sm, "ticker")->head_seq, 3);
    cr_assert_eq(memcmp(ol__sm_agent(sm, "ticker")->head_hash, h3, 32), 0);
}

Test(sm, stale_epoch_never_commits)
{
    uint8_t h1[32], h[32];
    struct ol__entry_w w;
    struct ol__effects fx;

    spawn("sink", 1);
    spawn("ticker", 1);
    cr_assert_eq(propose(&k1, "ticker", 1, 1, NULL, h1, 0), 0);
    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_place(&w, 1, "ticker", 2, 2, 0), 0);
    apply(&w, 0, &fx);
    cr_assert_eq(cmd_status(&fx), 0);
    ol__effects_free(&fx);
    /* The old owner (node 1, epoch 1) is now a zombie. */
    cr_assert_eq(propose(&k1, "ticker", 1, 2, h1, h, 0), OL_ESTALE);
    /* Even signing with the right epoch does not help the wrong node. */
    cr_assert_eq(propose(&k1, "ticker", 2, 2, h1, h, 0), OL_ESTALE);
    /* The new owner continues the chain. */
    cr_assert_eq(propose(&k2, "ticker", 2, 2, h1, h, 0), 0);
    /* A placement for a stale epoch is refused. */
    cr_assert_eq(ol__entry_add_place(&w, 2, "ticker", 1, 2, 0), 0);
    apply(&w, 0, &fx);
    cr_assert_eq(cmd_status(&fx), OL_ESTALE);
    ol__effects_free(&fx);
    ol__entry_w_close(&w);
}

Test(sm, gaps_and_broken_links_are_refused)
{
    uint8_t h1[32], h[32], bogus[32];

    spawn("sink", 1);
    spawn("ticker", 1);
    cr_assert_eq(propose(&k1, "ticker", 1, 1, NULL, h1, 0), 0);
    cr_assert_eq(propose(&k1, "ticker", 1, 3, h1, h, 0), OL_ESEQ);
    memset(bogus, 7, 32);
    cr_assert_eq(propose(&k1, "ticker", 1, 2, bogus, h, 0), OL_EBADCHAIN);
    cr_assert_eq(ol__sm_agent(sm, "ticker")->head_seq, 1);
}

Test(sm, retries_are_idempotent)
{
    uint8_t h1[32], again[32];
    struct ol__sm_stats s;

    spawn("sink", 1);
    spawn("ticker", 1);
    cr_assert_eq(propose(&k1, "ticker", 1, 1, NULL, h1, 0), 0);
    cr_assert_eq(propose(&k1, "ticker", 1, 1, NULL, again, 0), 0);
    cr_assert_eq(memcmp(h1, again, 32), 0);
    ol__sm_stats(sm, &s);
    cr_assert_eq(s.ckpts_applied, 1);
}

Test(sm, divergence_quarantines_and_keeps_evidence)
{
    uint8_t h1[32], h2[32], other[32];
    sqlite3_stmt *q;

    spawn("sink", 1);
    spawn("ticker", 1);
    cr_assert_eq(propose(&k1, "ticker", 1, 1, NULL, h1, 0), 0);
    cr_assert_eq(propose(&k1, "ticker", 1, 2, h1, h2, 0), 0);
    cr_assert_eq(propose(&k1, "ticker", 1, 2, h1, other, 1), OL_EDIVERGED);
    cr_assert_eq(ol__sm_agent(sm, "ticker")->status, OL_AGENT_QUARANTINED);
    cr_assert_eq(memcmp(ol__sm_agent(sm, "ticker")->head_hash, h2, 32), 0);
    q = first_row(st.db, "SELECT count(*) FROM evidence WHERE "
                         "agent='ticker' AND seq=2");
    cr_assert_eq(sqlite3_column_int(q, 0), 1);
    sqlite3_finalize(q);
}

Test(sm, forged_seal_is_refused_unless_trusted_path)
{
    struct ol__entry_w w;
    struct ol__effects fx;
    struct ol__buf body, e;
    struct ol__blob b;
    uint8_t h[32];
    struct ol__entry dec;
    char err[OL_ERRMSG_SIZE];

    spawn("sink", 1);
    spawn("ticker", 1);
    body_for(&k1, "ticker", 1, 1, NULL, &body, h, 0);
    b.p = body.base;
    b.len = (uint32_t)body.len;
    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_ckpts(&w, &k1, 1, &b, h, 1), 0);
    ol__buf_init(&e);
    cr_assert_eq(ol__entry_w_finish(&w, &e), 0);
    cr_assert_eq(ol__entry_decode(e.base, e.len, &dec, err), 0);
    ((uint8_t *)dec.cmds[0].sig)[3] ^= 1; /* points into e */
    ol__entry_free(&dec);
    ol__effects_init(&fx);
    cr_assert_eq(ol__store_begin(&st), 0);
    cr_assert_eq(ol__sm_apply(sm, e.base, e.len, 0, &fx), 0);
    cr_assert_eq(ol__store_commit(&st), 0);
    cr_assert_eq(ckpt_status(&fx, 1), 999, "a forged seal produced effects");
    cr_assert_eq(ol__sm_agent(sm, "ticker")->head_seq, 0);
    ol__effects_free(&fx);
    ol__entry_w_close(&w);
    ol__buf_close(&e);
    ol__buf_close(&body);
}

Test(sm, unknown_signer_is_refused)
{
    struct ol__key stranger;
    uint8_t h[32];

    spawn("sink", 1);
    spawn("ticker", 1);
    cr_assert_eq(ol__key_generate(&stranger), 0);
    cr_assert_eq(propose(&stranger, "ticker", 1, 1, NULL, h, 0), 999);
    cr_assert_eq(ol__sm_agent(sm, "ticker")->head_seq, 0);
    ol__key_close(&stranger);
}

Test(sm, outbox_lands_in_the_mailbox_and_acks_remove_it)
{
    uint8_t h1[32];
    sqlite3_stmt *q;

    spawn("sink", 1);
    spawn("ticker", 1);
    cr_assert_eq(propose(&k1, "ticker", 1, 1, NULL, h1, 0), 0);
    /* outbox[0] goes to "sink"; outbox[1] to an unknown agent: dropped */
    q = first_row(st.db, "SELECT to_agent, from_agent, from_seq, "
                         "idx FROM mailbox");
    cr_assert_str_eq((const char *)sqlite3_column_text(q, 0), "sink");
    cr_assert_str_eq((const char *)sqlite3_column_text(q, 1), "ticker");
    cr_assert_eq(sqlite3_column_int(q, 2), 1);
    cr_assert_eq(sqlite3_step(q), SQLITE_DONE);
    sqlite3_finalize(q);
}

Test(sm, retention_prunes_rows_and_seals)
{
    struct ol__sm_config c = {.retain = 2};
    char err[OL_ERRMSG_SIZE];
    uint8_t h[67][32];
    sqlite3_stmt *q;

    ol__sm_close(sm);
    cr_assert_eq(ol__sm_open(&st, &c, &sm, err), 0);
    spawn("sink", 1);
    spawn("ticker", 1);
    cr_assert_eq(propose(&k1, "ticker", 1, 1, NULL, h[1], 0), 0);
    /* Pruning runs every 64 seqs: at seq 64 it keeps the newest 2 (63,
     * 64); seqs 65 and 66 are added after. */
    for (int s = 2; s <= 66; s++)
        cr_assert_eq(propose(&k1, "ticker", 1, (uint64_t)s, h[s - 1], h[s], 0),
                     0);
    q = first_row(st.db, "SELECT min(seq), count(*), "
                         "(SELECT count(*) FROM seals) "
                         "FROM checkpoints");
    cr_assert_eq(sqlite3_column_int(q, 0), 63);
    cr_assert_eq(sqlite3_column_int(q, 1), 4);
    cr_assert_eq(sqlite3_column_int(q, 2), 4, "seals of pruned rows remain");
    sqlite3_finalize(q);
}

Test(sm, reload_rebuilds_the_same_cache)
{
    uint8_t h1[32], h2[32];

    spawn("sink", 1);
    spawn("ticker", 2);
    cr_assert_eq(propose(&k2, "ticker", 1, 1, NULL, h1, 0), 0);
    cr_assert_eq(propose(&k2, "ticker", 1, 2, h1, h2, 0), 0);
    cr_assert_eq(ol__sm_reload(sm), 0);
    const struct ol__sm_agent *a = ol__sm_agent(sm, "ticker");
    cr_assert_not_null(a);
    cr_assert_eq(a->head_seq, 2);
    cr_assert_eq(a->owner, 2);
    cr_assert_eq(memcmp(a->head_hash, h2, 32), 0);
    cr_assert_str_eq(a->kind, "counter");
}

Test(sm, spawn_conflicts_and_retries)
{
    spawn("ticker", 1);
    cr_assert_eq(spawn_req(42, "ticker", 1), 0,
                 "a retried spawn is not a conflict");
    cr_assert_eq(spawn_req(43, "ticker", 1), OL_EEXISTS);
    cr_assert_eq(spawn_req(44, "x", 9), OL_EINVAL, "unknown owner accepted");
}

Test(sm, stop_then_final_checkpoint_stops)
{
    struct ol__entry_w w;
    struct ol__effects fx;
    uint8_t h1[32];

    spawn("sink", 1);
    spawn("ticker", 1);
    cr_assert_eq(propose(&k1, "ticker", 1, 1, NULL, h1, 0), 0);
    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_stop(&w, 5, "ticker"), 0);
    apply(&w, 0, &fx);
    cr_assert_eq(ol__sm_agent(sm, "ticker")->status, OL_AGENT_STOPPING);
    ol__effects_free(&fx);
    cr_assert_eq(ol__entry_add_start(&w, 6, "ticker"), 0);
    apply(&w, 0, &fx);
    cr_assert_eq(cmd_status(&fx), OL_ESTATE);
    ol__effects_free(&fx);
    ol__entry_w_close(&w);
}

/* Marks the store applied up to `applied` and takes a snapshot of it. */
static void snapshot_at(uint64_t applied, struct ol__buf *snap)
{
    cr_assert_eq(ol__store_begin(&st), 0);
    cr_assert_eq(ol__sm_set_applied(sm, applied), 0);
    cr_assert_eq(ol__store_commit(&st), 0);
    ol__buf_init(snap);
    cr_assert_eq(ol__sm_snapshot(sm, snap), 0);
}

/* Opens a second, empty store `name` in the test folder. */
static void open_other(const char *name, struct ol__store *st2,
                       struct ol__sm **sm2)
{
    struct ol__sm_config c = {.retain = 0};
    char path2[160], err[OL_ERRMSG_SIZE];

    snprintf(path2, sizeof path2, "%s/%s", dir, name);
    cr_assert_eq(ol__store_open(st2, path2, OL_STORE_WRITE_NORMAL), 0);
    cr_assert_eq(ol__sm_open(st2, &c, sm2, err), 0, "%s", err);
}

/* The store and state machine the helpers above work on, while a test
 * points them at its second store for a while. */
struct kept {
    struct ol__sm *sm;
    struct ol__store st;
};

static void use_other(struct kept *k, struct ol__sm *sm2,
                      const struct ol__store *st2)
{
    k->sm = sm;
    k->st = st;
    sm = sm2;
    st = *st2;
}

static void use_own(const struct kept *k)
{
    sm = k->sm;
    st = k->st;
}

/* A snapshot carries every row; a fresh store installs it, and a store
 * that has applied past it ignores it.  Random 64-bit ids (incarnations,
 * request ids, CLI message ids) above 2^63 survive the trip. */
Test(sm, snapshot_round_trips_big_ids_and_never_rolls_back)
{
    struct ol__entry_w w;
    struct ol__effects fx;
    struct ol__buf snap;
    struct ol__store st2;
    struct ol__sm *sm2;
    struct ol__sm_config c = {.retain = 0};
    char err[OL_ERRMSG_SIZE];
    uint8_t h1[32], h2[32];
    const uint64_t big = 0xf1dffd5b5eefd7e5ull;
    const struct ol__sm_agent *a;

    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_spawn(&w, big, "sink", "counter", cfg,
                                     sizeof cfg, 1, big), 0);
    cr_assert_eq(ol__entry_add_spawn(&w, big - 1, "ticker", "counter", cfg,
                                     sizeof cfg, 1, big), 0);
    apply(&w, 0, &fx);
    ol__effects_free(&fx);
    cr_assert_eq(propose(&k1, "ticker", 1, 1, NULL, h1, 0), 0);
    cr_assert_eq(propose(&k1, "ticker", 1, 2, h1, h2, 0), 0);
    cr_assert_eq(ol__entry_add_send(&w, 7, "sink", big, cfg, sizeof cfg), 0);
    apply(&w, 0, &fx);
    ol__effects_free(&fx);
    ol__entry_w_close(&w);
    snapshot_at(40, &snap);

    open_other("other.db", &st2, &sm2);
    cr_assert_eq(ol__sm_restore(sm2, snap.base, snap.len, 0, NULL, err), 0, "%s",
                 err);
    cr_expect_eq(ol__sm_applied(sm2), 40);
    a = ol__sm_agent(sm2, "ticker");
    cr_assert_not_null(a);
    cr_expect_eq(a->inc, big);
    cr_expect_eq(a->req, big - 1);
    cr_expect_eq(a->head_seq, 2);
    cr_expect_eq(memcmp(a->head_hash, h2, 32), 0);
    {
        sqlite3_stmt *q;

        q = first_row(st2.db, "SELECT from_seq, (SELECT flags FROM "
                              "checkpoints WHERE seq = 2) FROM "
                              "mailbox WHERE from_agent = '@cli'");
        cr_expect_eq((uint64_t)sqlite3_column_int64(q, 0), big);
        cr_expect_eq(sqlite3_column_int(q, 1), 1, "not marked as from a "
                                                  "snapshot");
        sqlite3_finalize(q);
    }
    /* The new store continues the chain the snapshot ended with. */
    {
        uint8_t h3[32];
        struct kept keep;

        use_other(&keep, sm2, &st2);
        cr_expect_eq(propose(&k1, "ticker", 1, 3, h2, h3, 0), 0);
        use_own(&keep);
    }
    /* An older snapshot changes nothing. */
    cr_assert_eq(ol__store_begin(&st2), 0);
    cr_assert_eq(ol__sm_set_applied(sm2, 99), 0);
    cr_assert_eq(ol__store_commit(&st2), 0);
    cr_assert_eq(ol__sm_restore(sm2, snap.base, snap.len, 0, NULL, err), 0);
    cr_expect_eq(ol__sm_applied(sm2), 99);
    cr_expect_eq(ol__sm_agent(sm2, "ticker")->head_seq, 3);
    /* Every truncation of a snapshot is refused, and nothing changes. */
    for (size_t n = 0; n + 1 < snap.len; n += 7) {
        struct ol__sm *fresh;
        struct ol__store fst;
        char p3[160];

        snprintf(p3, sizeof p3, "%s/t%zu.db", dir, n);
        cr_assert_eq(ol__store_open(&fst, p3, OL_STORE_WRITE_NORMAL), 0);
        cr_assert_eq(ol__sm_open(&fst, &c, &fresh, err), 0);
        cr_expect_neq(ol__sm_restore(fresh, snap.base, n, 0, NULL, err), 0,
                      "accepted a %zu-byte prefix", n);
        cr_expect_eq(ol__sm_applied(fresh), 0);
        cr_expect_null(ol__sm_agent(fresh, "ticker"));
        ol__sm_close(fresh);
        ol__store_close(&fst);
    }
    ol__sm_close(sm2);
    ol__store_close(&st2);
    ol__buf_close(&snap);
}

static int64_t count_rows(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *q = first_row(db, sql);
    int64_t n;

    n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return n;
}

/* Applying reads no clock: the times written come from the entry, so two
 * nodes applying the same entry at different moments write the same rows. */
Test(sm, apply_writes_the_entry_time_not_the_clock)
{
    struct ol__entry_w w;
    struct ol__effects fx;

    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_spawn(&w, 5, "ticker", "counter", cfg,
                                     sizeof cfg, 1, 0), 0);
    w.time_ms = 1234567;
    apply(&w, 0, &fx);
    ol__effects_free(&fx);
    cr_assert_eq(ol__entry_add_stop(&w, 6, "ticker"), 0);
    w.time_ms = 2345678;
    apply(&w, 0, &fx);
    ol__effects_free(&fx);
    ol__entry_w_close(&w);
    cr_expect_eq(count_rows(st.db, "SELECT created_ms FROM agents WHERE "
                                   "name = 'ticker'"),
                 1234567);
    cr_expect_eq(count_rows(st.db, "SELECT updated_ms FROM agents WHERE "
                                   "name = 'ticker'"),
                 2345678);
}

/* An entry from a newer version is refused whole, with a reason, and
 * nothing of it is applied (the FSM then stops the node). */
Test(sm, unknown_command_applies_nothing)
{
    /* [2, 1, 0, [[2, 9, "x", "counter", <80>, 1, 0], [99]]] */
    uint8_t e[] = {0x94, 0x02, 0x01, 0x00, 0x92,
                   0x97, 0x02, 0x09, 0xa1, 'x', 0xa7, 'c', 'o', 'u', 'n', 't',
                   'e', 'r', 0xc4, 0x01, 0x80, 0x01, 0x00,
                   0x91, 0x63};
    struct ol__effects fx;

    ol__effects_init(&fx);
    cr_assert_eq(ol__store_begin(&st), 0);
    cr_assert_eq(ol__sm_apply(sm, e, sizeof e, 0, &fx), OL_ENOTSUP);
    ol__store_rollback(&st);
    cr_assert(strstr(ol__sm_errmsg(sm), "type 99") != NULL, "%s",
              ol__sm_errmsg(sm));
    cr_assert_null(fx.head);
    cr_assert_null(ol__sm_agent(sm, "x"));
}

/* The codec's table and the state machine's agree on the command types. */
Test(sm, every_decodable_command_has_an_apply)
{
    const struct ol__cmd_info *ci;

    for (size_t i = 0; (ci = ol__cmd_info_at(i)) != NULL; i++)
        cr_expect(ol__sm_knows(ci->type), "no apply for %s", ci->name);
}

/* A snapshot whose head checkpoint differs from the one stored here: the
 * cluster's row wins, this node's is kept as evidence, and the agent is
 * reported for quarantine. */
Test(sm, snapshot_over_a_divergent_row_keeps_evidence)
{
    struct ol__effects fx;
    struct ol__buf snap;
    struct ol__store st2;
    struct ol__sm *sm2;
    char err[OL_ERRMSG_SIZE];
    uint8_t h1[32], h2[32], mine[32];
    const struct ol__effect *d = NULL;

    spawn("sink", 1);
    spawn("ticker", 1);
    cr_assert_eq(propose(&k1, "ticker", 1, 1, NULL, h1, 0), 0);
    cr_assert_eq(propose(&k1, "ticker", 1, 2, h1, h2, 0), 0);
    snapshot_at(50, &snap);

    /* Another store applied a different seq 2 (variant 1). */
    open_other("other.db", &st2, &sm2);
    {
        struct kept keep;
        struct ol__sm_node n;

        use_other(&keep, sm2, &st2);
        memset(&n, 0, sizeof n);
        n.id = 1;
        memcpy(n.pk, k1.pk, OL_PK_SIZE);
        cr_assert_eq(ol__sm_put_node(sm, &n), 0);
        spawn("sink", 1);
        spawn("ticker", 1);
        cr_assert_eq(propose(&k1, "ticker", 1, 1, NULL, h1, 0), 0);
        cr_assert_eq(propose(&k1, "ticker", 1, 2, h1, mine, 1), 0);
        use_own(&keep);
    }
    cr_assert_neq(memcmp(mine, h2, 32), 0);
    ol__effects_init(&fx);
    cr_assert_eq(ol__sm_restore(sm2, snap.base, snap.len, 0, &fx, err), 0,
                 "%s", err);
    for (const struct ol__effect *e = fx.head; e; e = e->next)
        if (e->type == OL_FX_DIVERGED)
            d = e;
    cr_assert_not_null(d, "no divergence reported");
    cr_expect_str_eq(d->u.ckpt.agent, "ticker");
    cr_expect_eq(d->u.ckpt.seq, 2);
    cr_expect_eq(memcmp(ol__sm_agent(sm2, "ticker")->head_hash, h2, 32), 0,
                 "the cluster's row did not replace this node's");
    cr_expect_eq(count_rows(st2.db, "SELECT count(*) FROM evidence WHERE "
                                    "agent = 'ticker' AND seq = 2"),
                 1);
    {
        sqlite3_stmt *q;

        q = first_row(st2.db, "SELECT other_hash FROM evidence");
        cr_expect_eq(memcmp(sqlite3_column_blob(q, 0), mine, 32), 0,
                     "the evidence does not hold this node's own row");
        sqlite3_finalize(q);
    }
    /* Seal references stay exact after the replacement. */
    cr_expect_eq(count_rows(st2.db, "SELECT count(*) FROM seals s WHERE "
                                    "live != (SELECT count(*) FROM "
                                    "checkpoints WHERE seal = s.id)"),
                 0);
    ol__effects_free(&fx);
    ol__sm_close(sm2);
    ol__store_close(&st2);
    ol__buf_close(&snap);
}

/* Two agents diverged in one install: the statements the install keeps
 * for its divergence path are used again for the second row. */
Test(sm, snapshot_over_two_divergent_rows)
{
    static const char *const names[] = {"ticker", "tocker"};
    struct ol__sm_config c = {.retain = 0};
    struct ol__effects fx;
    struct ol__buf snap;
    struct ol__store keep, two;
    struct ol__sm *sm_one = sm, *sm_two;
    struct ol__sm_node n = {.id = 1};
    char path[160], err[OL_ERRMSG_SIZE];
    uint8_t h1[32], want[2][32], mine[32];
    int diverged = 0;

    snprintf(path, sizeof path, "%s/two.db", dir);
    cr_assert_eq(ol__store_open(&two, path, OL_STORE_WRITE_NORMAL), 0);
    cr_assert_eq(ol__sm_open(&two, &c, &sm_two, err), 0, "%s", err);
    memcpy(n.pk, k1.pk, OL_PK_SIZE);
    cr_assert_eq(ol__sm_put_node(sm_two, &n), 0);
    /* Each store applies seq 1 alike and its own seq 2 (variants 0, 1). */
    for (int v = 0; v < 2; v++) {
        if (v) {
            keep = st;
            sm = sm_two;
            st = two;
        }
        spawn("sink", 1);
        for (int i = 0; i < 2; i++) {
            spawn(names[i], 1);
            cr_assert_eq(propose(&k1, names[i], 1, 1, NULL, h1, 0), 0);
            cr_assert_eq(propose(&k1, names[i], 1, 2, h1,
                                 v ? mine : want[i], v), 0);
        }
    }
    sm = sm_one;
    st = keep;
    snapshot_at(50, &snap);
    ol__effects_init(&fx);
    cr_assert_eq(ol__sm_restore(sm_two, snap.base, snap.len, 0, &fx, err), 0,
                 "%s", err);
    for (const struct ol__effect *e = fx.head; e; e = e->next)
        diverged += e->type == OL_FX_DIVERGED;
    cr_expect_eq(diverged, 2);
    for (int i = 0; i < 2; i++)
        cr_expect_eq(memcmp(ol__sm_agent(sm_two, names[i])->head_hash,
                            want[i], 32), 0, "%s kept its own row", names[i]);
    cr_expect_eq(count_rows(two.db, "SELECT count(*) FROM evidence WHERE "
                                    "seq = 2 AND kind = 'divergence'"),
                 2);
    ol__effects_free(&fx);
    ol__sm_close(sm_two);
    ol__store_close(&two);
    ol__buf_close(&snap);
}

/* Mailbox ids continue from the cluster's sequence after an install, and
 * every waiting message is reported so that a hosted agent gets the ones
 * it missed. */
Test(sm, snapshot_keeps_mailbox_ids_and_reports_mail)
{
    struct ol__entry_w w;
    struct ol__effects fx;
    struct ol__buf snap;
    struct ol__store st2;
    struct ol__sm *sm2;
    char err[OL_ERRMSG_SIZE];
    int mails = 0;

    spawn("sink", 1);
    ol__entry_w_init(&w);
    for (uint64_t i = 1; i <= 5; i++)
        cr_assert_eq(ol__entry_add_send(&w, 100 + i, "sink", i, cfg,
                                        sizeof cfg), 0);
    apply(&w, 0, &fx);
    ol__effects_free(&fx);
    /* Drop the newest rows so that the sequence is ahead of max(id). */
    cr_assert_eq(sqlite3_exec(st.db, "DELETE FROM mailbox WHERE id > 3",
                              NULL, NULL, NULL), SQLITE_OK);
    snapshot_at(9, &snap);
    open_other("other.db", &st2, &sm2);
    cr_assert_eq(ol__sm_restore(sm2, snap.base, snap.len, 0, NULL, err), 0,
                 "%s", err);
    ol__effects_init(&fx);
    ol__sm_effects_mail(sm2, &fx);
    for (const struct ol__effect *e = fx.head; e; e = e->next) {
        cr_expect_eq(e->type, OL_FX_MAIL);
        cr_expect_eq(e->u.mail.rowid, ++mails);
    }
    cr_expect_eq(mails, 3);
    ol__effects_free(&fx);
    /* Both stores give the next message the same id. */
    cr_assert_eq(ol__entry_add_send(&w, 200, "sink", 9, cfg, sizeof cfg), 0);
    apply(&w, 0, &fx);
    ol__effects_free(&fx);
    {
        struct kept keep;

        use_other(&keep, sm2, &st2);
        cr_assert_eq(ol__entry_add_send(&w, 200, "sink", 9, cfg, sizeof cfg),
                     0);
        apply(&w, 0, &fx);
        ol__effects_free(&fx);
        use_own(&keep);
    }
    cr_expect_eq(count_rows(st.db, "SELECT max(id) FROM mailbox"), 6);
    cr_expect_eq(count_rows(st2.db, "SELECT max(id) FROM mailbox"), 6);
    ol__entry_w_close(&w);
    ol__sm_close(sm2);
    ol__store_close(&st2);
    ol__buf_close(&snap);
}

/* ---- crashes ---- */

static int crash(const char *name, uint64_t req, uint64_t epoch,
                 int64_t time_ms, uint32_t limit, uint32_t window)
{
    struct ol__entry_w w;

    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_crash(&w, req, name, epoch, time_ms, limit,
                                     window, "killed by SIGSEGV"),
                 0);
    return apply_closing(&w);
}

static const struct ol__sm_agent *row(const char *name)
{
    const struct ol__sm_agent *a = ol__sm_agent(sm, name);

    cr_assert_not_null(a, "no agent '%s'", name);
    return a;
}

Test(sm, crashes_are_counted_once_each_and_quarantine_at_the_limit)
{
    spawn("bad", 1);
    cr_assert_eq(crash("bad", 1, 1, 1000, 3, 60000), 0);
    cr_expect_eq(row("bad")->crashes, 1);
    /* A retried report counts once. */
    cr_assert_eq(crash("bad", 1, 1, 1000, 3, 60000), 0);
    cr_expect_eq(row("bad")->crashes, 1);
    cr_assert_eq(crash("bad", 2, 1, 2000, 3, 60000), 0);
    cr_expect_eq(row("bad")->crashes, 2);
    cr_expect_eq(row("bad")->status, OL_AGENT_RUNNING);
    cr_assert_eq(crash("bad", 3, 1, 3000, 3, 60000), 0);
    cr_expect_eq(row("bad")->status, OL_AGENT_QUARANTINED);
    cr_expect(strstr(row("bad")->reason, "crashed 3 times") != NULL, "%s",
              row("bad")->reason);
    cr_expect(strstr(row("bad")->reason, "SIGSEGV") != NULL);
    /* Not running any more: further reports are not counted. */
    cr_expect_eq(crash("bad", 4, 1, 4000, 3, 60000), OL_ESTATE);
    cr_expect_eq(row("bad")->crashes, 3);
    /* The count is in the store, not only in the cache. */
    cr_assert_eq(ol__sm_reload(sm), 0);
    cr_expect_eq(row("bad")->crashes, 3);
    cr_expect_eq(row("bad")->status, OL_AGENT_QUARANTINED);
}

Test(sm, crashes_outside_the_window_start_a_new_count)
{
    spawn("bad", 1);
    cr_assert_eq(crash("bad", 1, 1, 10000, 3, 1000), 0);
    cr_assert_eq(crash("bad", 2, 1, 10500, 3, 1000), 0);
    cr_expect_eq(row("bad")->crashes, 2);
    cr_assert_eq(crash("bad", 3, 1, 20000, 3, 1000), 0);
    cr_expect_eq(row("bad")->crashes, 1);
    cr_expect_eq(row("bad")->status, OL_AGENT_RUNNING);
}

Test(sm, start_wipes_the_count_and_older_reports_do_not_count)
{
    struct ol__entry_w w;
    struct ol__effects fx;

    spawn("bad", 1);
    for (uint64_t r = 1; r <= 3; r++)
        cr_assert_eq(crash("bad", r, 1, (int64_t)r * 100, 3, 60000), 0);
    cr_assert_eq(row("bad")->status, OL_AGENT_QUARANTINED);
    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_start(&w, 9, "bad"), 0);
    apply(&w, 0, &fx);
    ol__effects_free(&fx);
    ol__entry_w_close(&w);
    cr_expect_eq(row("bad")->status, OL_AGENT_RUNNING);
    cr_expect_eq(row("bad")->crashes, 0);
    /* A node that was down reports a crash from before the restart. */
    cr_expect_eq(crash("bad", 10, 1, 500, 3, 60000), OL_ESTALE);
    cr_expect_eq(row("bad")->crashes, 0);
    cr_expect_eq(crash("bad", 11, row("bad")->epoch, 600, 3, 60000), 0);
    cr_expect_eq(row("bad")->crashes, 1);
    cr_expect_eq(crash("nobody", 12, 1, 600, 3, 60000), OL_ENOTFOUND);
}

/* ---- plugin builds and placement ---- */

static int code(uint64_t node, const char *kind, uint8_t fill, int wanted)
{
    static uint64_t req = 5;
    struct ol__entry_w w;
    uint8_t hash[OL_HASH_SIZE];

    memset(hash, fill, sizeof hash);
    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_code(&w, req++, node, kind, hash, "1.0",
                                    wanted),
                 0);
    return apply_closing(&w);
}

Test(sm, an_upgraded_kind_is_placed_only_with_its_build)
{
    struct ol__sm_node n3;
    struct ol__pl_node nodes[3];
    struct ol__pl_move moves[4];
    size_t n;

    memset(&n3, 0, sizeof n3);
    n3.id = 3;
    memcpy(n3.pk, k2.pk, OL_PK_SIZE);
    n3.pk[0] ^= 1;
    cr_assert_eq(ol__sm_put_node(sm, &n3), 0);
    spawn("a", 1);
    memset(nodes, 0, sizeof nodes);
    for (int i = 0; i < 3; i++) {
        nodes[i].id = (uint64_t)i + 1;
        nodes[i].health = OL_PL_LIVE;
    }
    nodes[0].health = OL_PL_DEAD;

    /* No build asked for: the least loaded live node, lowest id. */
    n = ol__placement(sm, nodes, 3, 0, NULL, NULL, moves, 4);
    cr_assert_eq(n, 1);
    cr_expect_eq(moves[0].owner, 2);

    cr_expect_eq(code(2, "counter", 0x11, 0), 0);
    cr_expect_eq(code(3, "counter", 0x22, 1), 0);
    cr_expect(!ol__sm_code_ok(sm, "counter", 2));
    cr_expect(ol__sm_code_ok(sm, "counter", 3));
    cr_expect(ol__sm_code_ok(sm, "ledger", 2), "another kind is free");
    n = ol__placement(sm, nodes, 3, 0, NULL, NULL, moves, 4);
    cr_assert_eq(n, 1);
    cr_expect_eq(moves[0].owner, 3, "placed on node %" PRIu64
                 ", which runs the old build",
                 moves[0].owner);
    /* With no live node running the build, the agent waits. */
    nodes[2].health = OL_PL_DEAD;
    n = ol__placement(sm, nodes, 3, 0, NULL, NULL, moves, 4);
    cr_expect_eq(n, 0);
    cr_expect_eq(code(9, "counter", 0x22, 0), OL_EINVAL,
                 "a build for a node that is not in the roster");
    cr_assert_eq(ol__sm_reload(sm), 0);
    cr_expect(ol__sm_code_ok(sm, "counter", 3));
    cr_expect(!ol__sm_code_ok(sm, "counter", 2));
}

Test(sm, snapshot_carries_crashes_and_builds)
{
    struct ol__buf snap;
    struct ol__store st2;
    struct ol__sm *sm2;
    char err[OL_ERRMSG_SIZE];

    spawn("bad", 1);
    cr_assert_eq(crash("bad", 1, 1, 1000, 3, 60000), 0);
    cr_assert_eq(crash("bad", 2, 1, 1100, 3, 60000), 0);
    cr_assert_eq(code(2, "counter", 0x22, 1), 0);
    snapshot_at(10, &snap);
    open_other("snap2.db", &st2, &sm2);
    /* Every truncation of it is refused, and leaves nothing behind. */
    for (size_t len = 0; len < snap.len; len += 7)
        cr_expect_neq(ol__sm_restore(sm2, snap.base, len, 0, NULL, err), 0,
                      "a %zu-byte prefix was accepted", len);
    cr_expect_eq(ol__sm_applied(sm2), 0);
    cr_assert_eq(ol__sm_restore(sm2, snap.base, snap.len, 0, NULL, err), 0, "%s",
                 err);
    cr_expect_eq(ol__sm_agent(sm2, "bad")->crashes, 2);
    cr_expect(ol__sm_code_ok(sm2, "counter", 2));
    cr_expect(!ol__sm_code_ok(sm2, "counter", 1));
    ol__sm_close(sm2);
    ol__store_close(&st2);
    ol__buf_close(&snap);
}

Test(sm, a_mailbox_over_its_soft_limit_is_reported)
{
    struct ol__sm_config c = {.retain = 0, .mail_soft_n = 3};
    struct ol__entry_w w;
    struct ol__effects fx;
    char err[OL_ERRMSG_SIZE];
    int full = -1;

    ol__sm_close(sm);
    cr_assert_eq(ol__sm_open(&st, &c, &sm, err), 0, "%s", err);
    spawn("box", 1);
    ol__entry_w_init(&w);
    for (uint64_t i = 1; i <= 3; i++)
        cr_assert_eq(ol__entry_add_send(&w, 20 + i, "box", i, cfg,
                                        sizeof cfg),
                     0);
    apply(&w, 0, &fx);
    for (struct ol__effect *e = fx.head; e; e = e->next)
        if (e->type == OL_FX_MAILBOX && strcmp(e->u.box.name, "box") == 0)
            full = e->u.box.full;
    ol__effects_free(&fx);
    ol__entry_w_close(&w);
    cr_expect_eq(full, 1, "no report when the mailbox filled up");
    cr_expect_eq(row("box")->mail_n, 3);
    cr_assert_eq(ol__sm_reload(sm), 0);
    cr_expect_eq(row("box")->mail_n, 3, "counts are rebuilt on reload");
    cr_expect(row("box")->mail_full);
}

/* A placement decided by a leader of an older term than the entry it
 * lands in (a deposed leader's, forwarded late) is refused; the current
 * leader's is applied. */
Test(sm, a_deposed_leaders_move_is_refused)
{
    struct ol__entry_w w;
    struct ol__effects fx;

    spawn("ticker", 1);
    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_move(&w, 7, "ticker", 2, 2, 0, 4, 0), 0);
    w.term = 5;
    apply(&w, 0, &fx);
    cr_assert_eq(cmd_status(&fx), OL_ESTALE);
    ol__effects_free(&fx);
    cr_assert_eq(ol__sm_agent(sm, "ticker")->owner, 1);
    cr_assert_eq(ol__sm_agent(sm, "ticker")->epoch, 1);
    cr_assert_eq(ol__entry_add_move(&w, 8, "ticker", 2, 2, 0, 5, 0), 0);
    w.term = 5;
    apply(&w, 0, &fx);
    cr_assert_eq(cmd_status(&fx), 0);
    ol__effects_free(&fx);
    cr_assert_eq(ol__sm_agent(sm, "ticker")->owner, 2);
    cr_assert_eq(ol__sm_agent(sm, "ticker")->epoch, 2);
    ol__entry_w_close(&w);
}

static const struct ol__sm_agent *agent_effect(struct ol__effects *fx)
{
    for (struct ol__effect *e = fx->head; e; e = e->next)
        if (e->type == OL_FX_AGENT)
            return &e->u.agent;
    return NULL;
}

/* A MOVE with a hand-off wait tells the new owner, in that one effect,
 * which node the agent leaves and how long to wait; the stored row never
 * keeps it, so no later change of the agent waits again.  A move to the
 * node that owns it already (a re-grant) hands nothing over. */
Test(sm, a_hand_off_rides_on_its_moves_effect_only)
{
    struct ol__entry_w w;
    struct ol__effects fx;
    const struct ol__sm_agent *row;

    spawn("ticker", 1);
    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_move(&w, 7, "ticker", 2, 2, 0, 1, 550), 0);
    apply(&w, 0, &fx);
    cr_assert_eq(cmd_status(&fx), 0);
    row = agent_effect(&fx);
    cr_assert_not_null(row);
    cr_expect_eq(row->owner, 2);
    cr_expect_eq(row->handoff_from, 1);
    cr_expect_eq(row->handoff_ms, 550);
    ol__effects_free(&fx);
    cr_expect_eq(ol__sm_agent(sm, "ticker")->handoff_ms, 0);
    cr_expect_eq(ol__sm_agent(sm, "ticker")->handoff_from, 0);

    /* The next change of the agent carries no wait. */
    cr_assert_eq(ol__entry_add_stop(&w, 8, "ticker"), 0);
    apply(&w, 0, &fx);
    row = agent_effect(&fx);
    cr_assert_not_null(row);
    cr_expect_eq(row->handoff_ms, 0);
    ol__effects_free(&fx);

    /* A re-grant to the same node, even with a wait asked for. */
    spawn("other", 1);
    cr_assert_eq(ol__entry_add_move(&w, 9, "other", 1, 2, 5, 1, 550), 0);
    apply(&w, 0, &fx);
    row = agent_effect(&fx);
    cr_assert_not_null(row);
    cr_expect_eq(row->handoff_ms, 0);
    ol__effects_free(&fx);

    /* A refused move hands nothing over either. */
    cr_assert_eq(ol__entry_add_move(&w, 10, "other", 2, 9, 0, 1, 550), 0);
    apply(&w, 0, &fx);
    cr_expect_eq(cmd_status(&fx), OL_ESTALE);
    cr_expect_null(agent_effect(&fx));
    ol__effects_free(&fx);
    cr_expect_eq(ol__sm_agent(sm, "other")->handoff_ms, 0);
    ol__entry_w_close(&w);
}

/* The hand-off wait the leader puts in a move: none when nothing may
 * still run the agent, else the old owner's longest lease with room for
 * clock rates 10% apart and the tick that notices the lease ran out. */
Test(sm, hand_off_wait_only_off_a_node_that_may_still_run_it)
{
    cr_expect_eq(ol__pl_handoff_ms(0, 2, OL_PL_LIVE, 400, 10, 50), 0,
                 "a first placement");
    cr_expect_eq(ol__pl_handoff_ms(2, 2, OL_PL_LIVE, 400, 10, 50), 0,
                 "a re-grant to the same node");
    cr_expect_eq(ol__pl_handoff_ms(1, 2, OL_PL_DEAD, 400, 10, 50), 0,
                 "a failover: the owner was silent for the failover time");
    /* ceil(400 * 110 / 90) + 50 */
    cr_expect_eq(ol__pl_handoff_ms(1, 2, OL_PL_LIVE, 400, 10, 50), 539);
    cr_expect_eq(ol__pl_handoff_ms(1, 2, OL_PL_UNKNOWN, 400, 10, 50), 539,
                 "not known to be dead is live");
    cr_expect_geq(ol__pl_handoff_ms(1, 2, OL_PL_LIVE, 400, 10, 0) * 9,
                  400u * 11, "shorter than a lease on a clock 10%% slow");
    cr_expect_eq(ol__pl_handoff_ms(1, 2, OL_PL_LIVE, 4000000, 10, 50),
                 OL_MOVE_HOLD_MAX_MS);
}

/* Two nodes may not share a key: the roster refuses the second. */
Test(sm, a_key_already_in_the_roster_is_refused)
{
    struct ol__entry_w w;
    struct ol__effects fx;

    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_node(&w, 3, 3, "127.0.0.1:9", k1.pk, ""), 0);
    apply(&w, 0, &fx);
    cr_assert_eq(cmd_status(&fx), OL_EEXISTS);
    ol__effects_free(&fx);
    cr_assert_null(ol__sm_node(sm, 3));
    /* A node may re-register its own key. */
    cr_assert_eq(ol__entry_add_node(&w, 4, 1, "127.0.0.1:8", k1.pk, ""), 0);
    apply(&w, 0, &fx);
    cr_assert_eq(cmd_status(&fx), 0);
    ol__effects_free(&fx);
    ol__entry_w_close(&w);
}

/* One command with request id `req`; returns its outcome. */
static int one(int (*add)(struct ol__entry_w *, uint64_t, const char *),
               uint64_t req, const char *name)
{
    struct ol__entry_w w;

    ol__entry_w_init(&w);
    cr_assert_eq(add(&w, req, name), 0);
    return apply_closing(&w);
}

static int add_quarantine(struct ol__entry_w *w, uint64_t req,
                          const char *name)
{
    return ol__entry_add_quarantine(w, req, name, 1, "test");
}

static int add_config(struct ol__entry_w *w, uint64_t req, const char *name)
{
    static const uint8_t c2[] = {0x81, 0xa1, 'x', 0x02}; /* {"x": 2} */

    return ol__entry_add_config(w, req, name, req, c2, sizeof c2);
}

static int64_t count(const char *sql)
{
    sqlite3_stmt *q;
    int64_t v = -1;

    cr_assert_eq(sqlite3_prepare_v2(st.db, sql, -1, &q, NULL), SQLITE_OK);
    if (sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return v;
}

/* RM only takes a stopped or quarantined agent, and leaves a tombstone:
 * the row and its checkpoints stay, its mail goes, and nothing can use
 * the name again; the tombstone survives a reload and a snapshot. */
Test(sm, rm_leaves_a_tombstone_nothing_can_revive)
{
    uint8_t h1[32];
    struct ol__buf snap;

    spawn("sink", 1);
    spawn("ticker", 1);
    cr_assert_eq(propose(&k1, "ticker", 1, 1, NULL, h1, 0), 0);
    cr_assert_eq(count("SELECT count(*) FROM mailbox WHERE to_agent = "
                       "'sink'"),
                 1);
    cr_assert_eq(one(ol__entry_add_rm, 500, "sink"), OL_ESTATE,
                 "a running agent was removed");
    cr_assert_eq(one(add_quarantine, 501, "sink"), 0);
    cr_assert_eq(one(ol__entry_add_rm, 502, "sink"), 0);
    cr_assert_eq(ol__sm_agent(sm, "sink")->status, OL_AGENT_REMOVED);
    cr_assert_eq(count("SELECT count(*) FROM mailbox WHERE to_agent = "
                       "'sink'"),
                 0, "the removed agent's mail was kept");
    cr_assert_eq(one(ol__entry_add_start, 503, "sink"), OL_ENOTFOUND);
    cr_assert_eq(one(ol__entry_add_stop, 504, "sink"), OL_ENOTFOUND);
    cr_assert_eq(one(add_config, 505, "sink"), OL_ENOTFOUND);
    cr_assert_eq(one(ol__entry_add_rm, 502, "sink"), 0,
                 "a repeated rm is not answered as the first");
    cr_assert_eq(spawn_req(506, "sink", 1), OL_EEXISTS);
    /* ticker's next message to the tombstone is not delivered. */
    cr_assert_eq(propose(&k1, "ticker", 1, 2, h1, h1, 0), 0);
    cr_assert_eq(count("SELECT count(*) FROM mailbox"), 0);

    cr_assert_eq(ol__sm_reload(sm), 0);
    cr_assert_eq(ol__sm_agent(sm, "sink")->status, OL_AGENT_REMOVED);
    snapshot_at(40, &snap);
    {
        struct ol__store st2;
        struct ol__sm *sm2;
        char err[OL_ERRMSG_SIZE];

        open_other("other.db", &st2, &sm2);
        cr_assert_eq(ol__sm_restore(sm2, snap.base, snap.len, 0, NULL, err),
                     0, "%s", err);
        cr_assert_not_null(ol__sm_agent(sm2, "sink"),
                           "the snapshot lost the tombstone");
        cr_expect_eq(ol__sm_agent(sm2, "sink")->status, OL_AGENT_REMOVED,
                     "the snapshot changed the tombstone");
        ol__sm_close(sm2);
        ol__store_close(&st2);
    }
    ol__buf_close(&snap);
}

/* CONFIG replaces the row's config and queues one message from "@config";
 * the same request again queues nothing more. */
Test(sm, config_replaces_the_row_and_queues_one_event)
{
    const struct ol__sm_agent *a;

    spawn("ticker", 1);
    cr_assert_eq(one(add_config, 600, "ticker"), 0);
    a = ol__sm_agent(sm, "ticker");
    cr_assert_eq(a->config_len, 4);
    cr_assert_eq(((const uint8_t *)a->config)[3], 0x02);
    cr_assert_eq(count("SELECT count(*) FROM agents WHERE name = 'ticker' "
                       "AND hex(config) = '81A17802'"),
                 1, "the stored row was not changed");
    cr_assert_eq(one(add_config, 600, "ticker"), 0);
    cr_assert_eq(count("SELECT count(*) FROM mailbox WHERE to_agent = "
                       "'ticker' AND from_agent = '@config'"),
                 1, "a repeated config queued a second event");
    cr_assert_eq(one(add_config, 601, "nobody"), OL_ENOTFOUND);
}

/* A message to an unknown agent comes back to its sender from "@bounce"
 * as [to, reason, message] when the checkpoint asks for it, and is
 * dropped when it does not (a checkpoint from before level 3). */
Test(sm, undeliverable_messages_bounce_only_when_the_checkpoint_asks)
{
    uint8_t h1[32], h2[32];
    sqlite3_stmt *q;
    char to[OL_NAME_MAX + 1], why[160];
    const void *msg;
    size_t len;

    spawn("sink", 1);
    spawn("ticker", 1);
    cr_assert_eq(propose(&k1, "ticker", 1, 1, NULL, h1, 0), 0);
    cr_assert_eq(count("SELECT count(*) FROM mailbox WHERE "
                       "from_agent = '@bounce'"),
                 0, "a checkpoint without OL_CKPT_BOUNCE bounced");
    body_flags = OL_CKPT_BOUNCE;
    cr_assert_eq(propose(&k1, "ticker", 1, 2, h1, h2, 0), 0);
    body_flags = 0;
    cr_assert_eq(sqlite3_prepare_v2(st.db,
                                    "SELECT from_seq, idx, payload FROM "
                                    "mailbox WHERE to_agent = 'ticker' AND "
                                    "from_agent = '@bounce'",
                                    -1, &q, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW, "no bounce");
    cr_expect_eq(sqlite3_column_int(q, 0), 2);
    cr_expect_eq(sqlite3_column_int(q, 1), 1);
    cr_assert_eq(ol__bounce_parse(sqlite3_column_blob(q, 2),
                                  (size_t)sqlite3_column_bytes(q, 2), to, why,
                                  &msg, &len), 0);
    cr_expect_str_eq(to, "other-agent");
    cr_expect_str_eq(why, "no such agent");
    cr_expect_gt(len, 0);
    cr_assert_eq(sqlite3_step(q), SQLITE_DONE, "more than one bounce");
    sqlite3_finalize(q);
}

/* ---- effects in checkpoints ---- */

/* Seq 1 declares effect 7; seq 2 carries it open; seq 3 records its
 * outcome.  `bad_seq`: the intent claims a later checkpoint declared it. */
static uint64_t bad_seq;

static void with_effect(struct ol__ckpt *c)
{
    static const uint8_t payload[] = {0x81, 0xa1, 'n', 0x07};

    if (c->seq < 3) {
        c->effects = calloc(1, sizeof *c->effects);
        c->n_effects = 1;
        c->effects[0].id = 7;
        c->effects[0].kind = strdup("order");
        c->effects[0].payload = malloc(sizeof payload);
        memcpy(c->effects[0].payload, payload, sizeof payload);
        c->effects[0].len = sizeof payload;
        c->effects[0].seq = bad_seq ? bad_seq : 1;
        ol__effect_key(c->agent, 1, 0, c->prev_hash, c->effects[0].key);
        return;
    }
    c->outcomes = calloc(1, sizeof *c->outcomes);
    c->n_outcomes = 1;
    c->outcomes[0].seq = 1;
    c->outcomes[0].status = OL_EFFECT_DONE;
    c->outcomes[0].attempts = 2;
    c->outcomes[0].result = malloc(1);
    c->outcomes[0].result[0] = 0xc0;
    c->outcomes[0].len = 1;
}

Test(sm, effects_and_outcomes_ride_in_the_chain)
{
    uint8_t h1[32], h2[32], h3[32];

    spawn("sink", 1);
    spawn("keeper", 1);
    body_edit = with_effect;
    cr_assert_eq(propose(&k1, "keeper", 1, 1, NULL, h1, 0), 0);
    cr_assert_eq(propose(&k1, "keeper", 1, 2, h1, h2, 0), 0);
    cr_assert_eq(propose(&k1, "keeper", 1, 3, h2, h3, 0), 0);
    body_edit = NULL;
    cr_expect_eq(ol__sm_agent(sm, "keeper")->head_seq, 3);
}

Test(sm, a_node_held_at_level_3_refuses_checkpoints_with_effects)
{
    uint8_t h1[32];

    spawn("sink", 1);
    spawn("keeper", 1);
    body_edit = with_effect;
    ol__cmd_set_level(3);
    cr_expect_neq(propose(&k1, "keeper", 1, 1, NULL, h1, 0), 0,
                  "a level-3 node decoded a checkpoint with effects");
    ol__cmd_set_level(OL_FEATURE_LEVEL);
    body_edit = NULL;
    cr_expect_eq(ol__sm_agent(sm, "keeper")->head_seq, 0);
}

Test(sm, a_hostile_effect_record_is_refused_and_stores_nothing)
{
    uint8_t h1[32];

    spawn("sink", 1);
    spawn("keeper", 1);
    body_edit = with_effect;
    bad_seq = 5;
    cr_expect_neq(propose(&k1, "keeper", 1, 1, NULL, h1, 0), 0,
                  "an intent declared by a later checkpoint was stored");
    bad_seq = 0;
    body_edit = NULL;
    cr_expect_eq(ol__sm_agent(sm, "keeper")->head_seq, 0);
}
