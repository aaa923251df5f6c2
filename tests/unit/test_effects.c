/* Unit tests for an agent's effects read from a real node database
 * (state/effects.c) and for their chain in `outlast verify`
 * (state/verify_fx.c through ol__verify_store).  The database is the
 * query fixture (db_fixture.h: "ticker" seqs 1..3 under epoch 1) with
 * seqs 4..6 added, sealed by the node as the state machine stores them:
 *   4: declares (4,0) note {"n": 1} and (4,1) order "x"
 *   5: outcome of (4,0): done, 1 attempt, result {"ok": true};
 *      carries (4,1), declares (5,0) note 5
 *   6: outcome of (4,1): failed, 3 attempts, result the bytes "nope!";
 *      carries (5,0) */
#include <criterion/criterion.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/mpr.h"
#include "state/effects.h"
#include "state/verify.h"
#include "db_fixture.h"

static char dir[64], dbpath[128];
static uint8_t head_hash[OL_HASH_SIZE];

static void add_intent(struct ol__ckpt *c, uint64_t seq, uint32_t idx,
                       const char *kind, const void *payload, uint32_t len,
                       const uint8_t declared_prev[OL_HASH_SIZE])
{
    struct ol__intent *e;

    c->effects = realloc(c->effects, (c->n_effects + 1) * sizeof *e);
    e = &c->effects[c->n_effects++];
    memset(e, 0, sizeof *e);
    e->id = seq * 100 + idx;
    e->kind = strdup(kind);
    e->payload = malloc(len);
    memcpy(e->payload, payload, len);
    e->len = len;
    e->seq = seq;
    e->idx = idx;
    ol__effect_key("ticker", seq, idx, declared_prev, e->key);
}

static void add_outcome(struct ol__ckpt *c, uint64_t seq, uint32_t idx,
                        uint32_t status, uint32_t attempts, const void *res,
                        uint32_t len)
{
    struct ol__outcome *o;

    c->outcomes = realloc(c->outcomes, (c->n_outcomes + 1) * sizeof *o);
    o = &c->outcomes[c->n_outcomes++];
    memset(o, 0, sizeof *o);
    o->seq = seq;
    o->idx = idx;
    o->status = status;
    o->attempts = attempts;
    o->result = malloc(len ? len : 1);
    memcpy(o->result, res, len);
    o->len = len;
}

/* Store checkpoint `seq` of ticker, its effects set by `fill`. */
static void store_ckpt(uint64_t seq, void (*fill)(struct ol__ckpt *c))
{
    struct ol__sm_config smc = {.retain = 0};
    char err[OL_ERRMSG_SIZE];
    struct ol__entry_w w;
    struct ol__store st;
    struct ol__sm *sm;
    struct ol__ckpt c;
    struct ol__buf body;
    struct ol__blob b;
    uint8_t h[OL_HASH_SIZE];

    cr_assert_eq(ol__store_open(&st, dbpath, OL_STORE_WRITE_FULL), 0, "%s",
                 st.errmsg);
    cr_assert_eq(ol__sm_open(&st, &smc, &sm, err), 0, "%s", err);
    sample_ckpt_fill(&c, &fx_key, "ticker", seq);
    c.epoch = 1;
    for (uint32_t i = 0; i < c.n_acks; i++)
        free(c.acks[i].from);
    c.n_acks = 0;
    free(c.outbox[0].to);
    c.outbox[0].to = strdup("sink");
    memcpy(c.prev_hash, head_hash, OL_HASH_SIZE);
    fill(&c);
    ol__buf_init(&body);
    cr_assert_eq(ol__ckpt_encode(&c, &body), 0);
    ol__ckpt_hash(body.base, body.len, h);
    ol__ckpt_free(&c);
    b.p = body.base;
    b.len = (uint32_t)body.len;
    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_ckpts(&w, &fx_key,
                                     1700000000000 + (int64_t)seq, &b, h, 1),
                 0);
    fx_apply(&st, sm, &w);
    ol__entry_w_close(&w);
    ol__buf_close(&body);
    ol__sm_close(sm);
    ol__store_close(&st);
    memcpy(head_hash, h, OL_HASH_SIZE);
}

static uint8_t prev4[OL_HASH_SIZE], prev5[OL_HASH_SIZE];
static const uint8_t note1[] = {0x81, 0xa1, 'n', 0x01};
static const uint8_t order_x[] = {0xa1, 'x'};
static const uint8_t note5[] = {0x05};
static const uint8_t ok_true[] = {0x81, 0xa2, 'o', 'k', 0xc3};
static int drop_open_in_6; /* seq 6 forgets (5,0) */

static void fill4(struct ol__ckpt *c)
{
    add_intent(c, 4, 0, "note", note1, sizeof note1, prev4);
    add_intent(c, 4, 1, "order", order_x, sizeof order_x, prev4);
}

static void fill5(struct ol__ckpt *c)
{
    add_outcome(c, 4, 0, OL_EFFECT_DONE, 1, ok_true, sizeof ok_true);
    add_intent(c, 4, 1, "order", order_x, sizeof order_x, prev4);
    add_intent(c, 5, 0, "note", note5, sizeof note5, prev5);
}

static void fill6(struct ol__ckpt *c)
{
    add_outcome(c, 4, 1, OL_EFFECT_FAILED, 3, "nope!", 5);
    if (!drop_open_in_6)
        add_intent(c, 5, 0, "note", note5, sizeof note5, prev5);
}

static void build(void)
{
    fx_build_db(dbpath);
    memcpy(head_hash, fx_hash[3], OL_HASH_SIZE);
    memcpy(prev4, head_hash, OL_HASH_SIZE);
    store_ckpt(4, fill4);
    memcpy(prev5, head_hash, OL_HASH_SIZE);
    store_ckpt(5, fill5);
    store_ckpt(6, fill6);
}

static void setup(void)
{
    ol__cmd_set_level(OL_FEATURE_LEVEL);
    snprintf(dir, sizeof dir, "/tmp/ol-effects-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(dbpath, sizeof dbpath, "%s/node.db", dir);
    drop_open_in_6 = 0;
}

static void teardown(void)
{
    char cmd[128];

    ol__key_close(&fx_key);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(effects, .init = setup, .fini = teardown);

static sqlite3 *open_db(void)
{
    sqlite3 *db;

    cr_assert_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE, NULL),
                 SQLITE_OK);
    return db;
}

static void load(struct ol__fxlist *l)
{
    char err[OL_ERRMSG_SIZE] = "";
    sqlite3 *db = open_db();

    cr_assert_eq(ol__fxlist_load(db, "ticker", l, err), 0, "%s", err);
    sqlite3_close(db);
}

Test(effects, lists_every_effect_with_its_state_and_outcome)
{
    struct ol__fxlist l;
    const struct ol__fxrow *r;
    uint8_t key[OL_EFFECT_KEY_SIZE];

    build();
    load(&l);
    cr_assert_eq(l.n, 3);
    cr_expect_eq(l.first_seq, 1);
    cr_expect_eq(l.head_seq, 6);
    cr_expect_eq(l.epoch, 1);
    r = l.v[0]; /* (4,0) */
    cr_expect(r->seq == 4 && r->idx == 0);
    cr_expect_str_eq(r->kind, "note");
    cr_expect_eq(r->id, 400);
    cr_expect_eq(r->state, OL_FXROW_DONE);
    cr_expect_eq(r->attempts, 1);
    cr_expect_eq(r->closed_seq, 5);
    cr_expect_eq(r->epoch, 1);
    cr_expect_eq(r->result_len, sizeof ok_true);
    ol__effect_key("ticker", 4, 0, prev4, key);
    cr_expect_eq(memcmp(r->key, key, sizeof key), 0);
    r = l.v[1]; /* (4,1) */
    cr_expect_eq(r->state, OL_FXROW_FAILED);
    cr_expect_eq(r->attempts, 3);
    cr_expect_eq(r->closed_seq, 6);
    r = l.v[2]; /* (5,0) */
    cr_expect(r->seq == 5 && r->idx == 0);
    cr_expect_eq(r->state, OL_FXROW_PENDING);
    cr_expect_eq(r->closed_seq, 0);
    cr_expect_eq(r->in_doubt, 0);
    ol__fxlist_free(&l);
}

Test(effects, an_open_effect_of_an_older_epoch_is_in_doubt)
{
    struct ol__fxlist l;
    sqlite3 *db;

    build();
    db = open_db();
    cr_assert_eq(sqlite3_exec(db, "UPDATE agents SET epoch = 2 WHERE name "
                                  "= 'ticker'",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(db);
    load(&l);
    cr_assert_eq(l.n, 3);
    cr_expect_eq(l.v[2]->state, OL_FXROW_IN_DOUBT);
    cr_expect_eq(l.v[2]->in_doubt, 1);
    cr_expect_eq(l.v[0]->state, OL_FXROW_DONE, "a closed one is not");
    ol__fxlist_free(&l);
}

Test(effects, a_pruned_chain_still_lists_what_is_open)
{
    struct ol__fxlist l;
    sqlite3 *db;

    build();
    db = open_db();
    cr_assert_eq(sqlite3_exec(db, "DELETE FROM checkpoints WHERE agent = "
                                  "'ticker' AND seq <= 5",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(db);
    load(&l);
    /* (4,0) closed in a row no longer stored; (4,1)'s outcome is in seq
     * 6 but nothing stored names its key; (5,0) is open in the head. */
    cr_assert_eq(l.n, 1, "%zu rows", l.n);
    cr_expect(l.v[0]->seq == 5 && l.v[0]->idx == 0);
    cr_expect_eq(l.v[0]->epoch, 0, "its declaring row is not stored");
    cr_expect_eq(l.v[0]->state, OL_FXROW_PENDING);
    cr_expect_eq(l.first_seq, 6);
    ol__fxlist_free(&l);
}

/* Pack with `state` and `limit`; the number listed and total. */
static void packed(const struct ol__fxlist *l, int state, uint32_t limit,
                   uint32_t *listed, uint64_t *total, char *first_state,
                   size_t cap)
{
    char err[OL_ERRMSG_SIZE];
    struct ol__buf b;
    msgpack_packer pk;
    msgpack_unpacked u;
    const msgpack_object *fx = NULL, *tot = NULL;

    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    cr_assert_eq(ol__fxlist_pack(l, state, limit, &pk, err), 0, "%s", err);
    cr_assert_eq(ol__mp_check(b.base, b.len, NULL), 0, "not one object");
    msgpack_unpacked_init(&u);
    cr_assert_eq(msgpack_unpack_next(&u, (const char *)b.base, b.len, NULL),
                 MSGPACK_UNPACK_SUCCESS);
    for (uint32_t i = 0; i < u.data.via.map.size; i++) {
        const msgpack_object_kv *kv = &u.data.via.map.ptr[i];

        if (kv->key.via.str.size == 7 &&
            memcmp(kv->key.via.str.ptr, "effects", 7) == 0)
            fx = &kv->val;
        if (kv->key.via.str.size == 5 &&
            memcmp(kv->key.via.str.ptr, "total", 5) == 0)
            tot = &kv->val;
    }
    cr_assert(fx && tot && fx->type == MSGPACK_OBJECT_ARRAY);
    *listed = fx->via.array.size;
    *total = tot->via.u64;
    first_state[0] = '\0';
    if (*listed) {
        const msgpack_object *row = &fx->via.array.ptr[0];

        for (uint32_t i = 0; i < row->via.map.size; i++) {
            const msgpack_object_kv *kv = &row->via.map.ptr[i];

            if (kv->key.via.str.size == 5 &&
                memcmp(kv->key.via.str.ptr, "state", 5) == 0)
                snprintf(first_state, cap, "%.*s",
                         (int)kv->val.via.str.size, kv->val.via.str.ptr);
        }
    }
    msgpack_unpacked_destroy(&u);
    ol__buf_close(&b);
}

Test(effects, packs_newest_first_with_state_filter_and_limit)
{
    struct ol__fxlist l;
    uint32_t n;
    uint64_t total;
    char st[32];

    build();
    load(&l);
    packed(&l, 0, 0, &n, &total, st, sizeof st);
    cr_expect(n == 3 && total == 3);
    cr_expect_str_eq(st, "pending", "not newest first");
    packed(&l, 0, 1, &n, &total, st, sizeof st);
    cr_expect(n == 1 && total == 3);
    packed(&l, OL_FXROW_DONE, 0, &n, &total, st, sizeof st);
    cr_expect(n == 1 && total == 1);
    cr_expect_str_eq(st, "done");
    packed(&l, OL_FXROW_OPEN, 0, &n, &total, st, sizeof st);
    cr_expect(n == 1 && total == 1);
    cr_expect_str_eq(st, "pending");
    packed(&l, OL_FXROW_IN_DOUBT, 0, &n, &total, st, sizeof st);
    cr_expect(n == 0 && total == 0);
    ol__fxlist_free(&l);
    cr_expect_eq(ol__fxrow_state_parse("in-flight"), OL_FXROW_IN_FLIGHT);
    cr_expect_eq(ol__fxrow_state_parse("in_doubt"), OL_FXROW_IN_DOUBT);
    cr_expect_eq(ol__fxrow_state_parse("open"), OL_FXROW_OPEN);
    cr_expect_eq(ol__fxrow_state_parse("later"), 0);
}

Test(effects, a_tampered_row_is_refused_naming_its_seq)
{
    struct ol__fxlist l;
    char err[OL_ERRMSG_SIZE] = "";
    sqlite3 *db;

    build();
    fx_flip_body_byte(dbpath, "ticker", 5, 3);
    db = open_db();
    cr_assert_neq(ol__fxlist_load(db, "ticker", &l, err), 0);
    ol__fxlist_free(&l);
    sqlite3_close(db);
    cr_expect_not_null(strstr(err, "seq 5 does not verify"), "%s", err);
}

Test(effects, agents_without_effects_list_none)
{
    char err[OL_ERRMSG_SIZE] = "";
    struct ol__fxlist l;
    uint32_t n;
    uint64_t total;
    char st[32];
    sqlite3 *db;

    build();
    db = open_db();
    /* sink has no checkpoint; before seq 4 ticker had no effect. */
    cr_assert_eq(ol__fxlist_load(db, "sink", &l, err), 0, "%s", err);
    cr_expect_eq(l.n, 0);
    cr_expect_eq(l.first_seq, 0);
    packed(&l, 0, 0, &n, &total, st, sizeof st);
    cr_expect(n == 0 && total == 0);
    ol__fxlist_free(&l);
    cr_assert_eq(sqlite3_exec(db, "DELETE FROM checkpoints WHERE agent = "
                                  "'ticker' AND seq > 3",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    cr_assert_eq(ol__fxlist_load(db, "ticker", &l, err), 0, "%s", err);
    cr_expect_eq(l.n, 0);
    cr_expect_eq(l.head_seq, 3);
    ol__fxlist_free(&l);
    sqlite3_close(db);
}

Test(effects, an_unknown_agent_is_not_found)
{
    struct ol__fxlist l;
    char err[OL_ERRMSG_SIZE] = "";
    sqlite3 *db;

    build();
    db = open_db();
    cr_assert_eq(ol__fxlist_load(db, "nosuch", &l, err), OL_ENOTFOUND);
    ol__fxlist_free(&l);
    sqlite3_close(db);
    cr_expect_not_null(strstr(err, "no agent 'nosuch'"), "%s", err);
}

/* ---- verify ---- */

struct seen {
    int n;
    char all[2048];
};

static void collect(void *data, const char *agent, uint64_t seq,
                    const char *problem)
{
    struct seen *s = data;
    size_t len = strlen(s->all);

    s->n++;
    snprintf(s->all + len, sizeof s->all - len, "'%s' %llu: %s\n", agent,
             (unsigned long long)seq, problem);
}

static struct seen verify_db(void)
{
    struct ol__verify_report rep;
    struct seen s;
    sqlite3 *db = open_db();

    memset(&s, 0, sizeof s);
    cr_assert_eq(ol__verify_store(db, NULL, NULL, 0, collect, &s, &rep), 0);
    sqlite3_close(db);
    cr_assert_eq((uint64_t)s.n, rep.bad);
    return s;
}

Test(effects, verify_passes_a_good_effect_chain)
{
    struct seen s;

    build();
    s = verify_db();
    cr_assert_eq(s.n, 0, "%s", s.all);
}

Test(effects, verify_names_an_effect_dropped_without_outcome)
{
    struct seen s;

    drop_open_in_6 = 1;
    build();
    s = verify_db();
    cr_assert_eq(s.n, 1, "%s", s.all);
    cr_expect_not_null(strstr(s.all, "'ticker' 6: effect (seq 5, index 0): "
                                     "open in seq 5, it is gone from the "
                                     "open effects without an outcome"),
                       "%s", s.all);
}
