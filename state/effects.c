/*
 * An agent's effects from its stored checkpoints (effects.h): the rows
 * are read in seq order through the verifier's row check (verify_int.h),
 * so a body is decoded only after its seal and hash verify, and each
 * effect is followed from the first checkpoint that names it to the one
 * that records its outcome.
 */
#include "effects.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/mpr.h"
#include "base/pack.h"
#include "verify_int.h"

static const char *const state_names[] = {
    NULL, "pending", "in flight", "retrying", "done", "failed", "in doubt",
};

const char *ol__fxrow_state_name(int state)
{
    if (state < OL_FXROW_PENDING || state > OL_FXROW_IN_DOUBT)
        return "unknown";
    return state_names[state];
}

int ol__fxrow_state_parse(const char *s)
{
    char buf[16];
    size_t n = strlen(s);

    if (strcmp(s, "open") == 0)
        return OL_FXROW_OPEN;
    if (n >= sizeof buf)
        return 0;
    for (size_t i = 0; i <= n; i++)
        buf[i] = s[i] == '-' || s[i] == '_' ? ' ' : s[i];
    for (int i = OL_FXROW_PENDING; i <= OL_FXROW_IN_DOUBT; i++)
        if (strcmp(buf, state_names[i]) == 0)
            return i;
    return 0;
}

static void row_free(struct ol__fxrow *r)
{
    if (r == NULL)
        return;
    free(r->kind);
    free(r->payload);
    free(r->result);
    free(r);
}

void ol__fxlist_free(struct ol__fxlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        row_free(l->v[i]);
    free(l->v);
    ol__map_close(&l->by_at);
    memset(l, 0, sizeof *l);
}

static struct ol__fxrow *row_find(const struct ol__fxlist *l, uint64_t seq,
                                  uint32_t idx)
{
    char at[48];

    snprintf(at, sizeof at, "%" PRIu64 ".%" PRIu32, seq, idx);
    return ol__map_get(&l->by_at, at);
}

static uint8_t *copy(const void *p, uint32_t n)
{
    uint8_t *q = malloc(n ? n : 1);

    if (q && n)
        memcpy(q, p, n);
    return q;
}

/* A row for the intent `e`, first named by checkpoint `c`. */
static int row_add(struct ol__fxlist *l, const struct ol__intent *e,
                   const struct ol__ckpt *c)
{
    struct ol__fxrow *r = calloc(1, sizeof *r);

    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct ol__fxrow **v = realloc(l->v, cap * sizeof *v);

        if (v == NULL) {
            free(r);
            return OL_ENOMEM;
        }
        l->v = v;
        l->cap = cap;
    }
    if (r == NULL)
        return OL_ENOMEM;
    snprintf(r->at, sizeof r->at, "%" PRIu64 ".%" PRIu32, e->seq, e->idx);
    r->seq = e->seq;
    r->idx = e->idx;
    r->id = e->id;
    memcpy(r->key, e->key, OL_EFFECT_KEY_SIZE);
    r->len = e->len;
    r->epoch = e->seq == c->seq ? c->epoch : 0;
    r->seen_epoch = c->epoch;
    r->kind = strdup(e->kind);
    r->payload = copy(e->payload, e->len);
    if (r->kind == NULL || r->payload == NULL ||
        ol__map_put(&l->by_at, r->at, r) != 0) {
        row_free(r);
        return OL_ENOMEM;
    }
    l->v[l->n++] = r;
    return 0;
}

/* What the verified checkpoint `c` says of the agent's effects. */
static int take(struct ol__fxlist *l, const struct ol__ckpt *c)
{
    if (l->first_seq == 0)
        l->first_seq = c->seq;
    l->head_seq = c->seq;
    for (uint32_t i = 0; i < c->n_effects; i++) {
        const struct ol__intent *e = &c->effects[i];

        if (row_find(l, e->seq, e->idx) == NULL && row_add(l, e, c) != 0)
            return OL_ENOMEM;
    }
    for (uint32_t i = 0; i < c->n_outcomes; i++) {
        const struct ol__outcome *o = &c->outcomes[i];
        struct ol__fxrow *r = row_find(l, o->seq, o->idx);

        /* Declared and carried only in rows no longer stored: nothing to
         * name it by (its key) is left. */
        if (r == NULL || r->closed_seq)
            continue;
        r->state = o->status == OL_EFFECT_DONE ? OL_FXROW_DONE
                                               : OL_FXROW_FAILED;
        r->attempts = o->attempts;
        r->closed_seq = c->seq;
        r->result = copy(o->result, o->len);
        r->result_len = o->len;
        if (r->result == NULL)
            return OL_ENOMEM;
    }
    return 0;
}

static int load_epoch(sqlite3 *db, struct ol__fxlist *l, char *errmsg)
{
    sqlite3_stmt *st;
    int rc;

    if (sqlite3_prepare_v2(db, "SELECT epoch FROM agents WHERE name = ?", -1,
                           &st, NULL) != SQLITE_OK) {
        ol__errf(errmsg, "effects: %s", sqlite3_errmsg(db));
        return OL_EIO;
    }
    sqlite3_bind_text(st, 1, l->agent, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        l->epoch = (uint64_t)sqlite3_column_int64(st, 0);
    else if (rc == SQLITE_DONE)
        ol__errf(errmsg, "no agent '%s'", l->agent);
    else
        ol__errf(errmsg, "effects: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? OL_ENOTFOUND : OL_EIO;
}

/* Seals and signer keys, shared by the rows of one walk. */
struct walk_ctx {
    struct seal_cache cache;
    struct keyring kr;
    sqlite3_stmt *rows, *seal;
    uint64_t n_seals;
};

/* Verify and decode each stored checkpoint in seq order into `l`. */
static int walk(sqlite3 *db, struct ol__fxlist *l, struct walk_ctx *w,
                char *errmsg)
{
    struct ol__ckpt c;
    struct row r;
    uint8_t hash[OL_HASH_SIZE];
    char why[256];
    int rc, rv;

    while ((rc = sqlite3_step(w->rows)) == SQLITE_ROW) {
        ol__vs_read_row(w->rows, &r);
        rv = ol__vs_check_row(db, &w->cache, &w->kr, w->seal, &r, &c, hash,
                              &w->n_seals, why, sizeof why);
        if (rv != 0) {
            ol__errf(errmsg,
                     "agent '%s' seq %" PRIu64 " does not verify: %s "
                     "(see 'outlast verify')",
                     l->agent, r.seq, why);
            return rv;
        }
        rv = take(l, &c);
        ol__ckpt_free(&c);
        if (rv != 0) {
            ol__errf(errmsg, "effects: out of memory");
            return rv;
        }
    }
    if (rc != SQLITE_DONE) {
        ol__errf(errmsg, "agent '%s': its checkpoints cannot be read: %s",
                 l->agent, sqlite3_errmsg(db));
        return OL_EIO;
    }
    return 0;
}

static int by_seq_idx(const void *a, const void *b)
{
    const struct ol__fxrow *x = *(struct ol__fxrow *const *)a;
    const struct ol__fxrow *y = *(struct ol__fxrow *const *)b;

    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Open effects are pending, or in doubt when declared under an epoch
 * older than the agent's: an earlier owner may have performed them.
 * Declared in a checkpoint no longer stored, the oldest stored epoch that
 * carries one stands in (no older than its own). */
static void settle(struct ol__fxlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        struct ol__fxrow *r = l->v[i];

        if (r->closed_seq)
            continue;
        r->in_doubt = (r->epoch ? r->epoch : r->seen_epoch) < l->epoch;
        r->state = r->in_doubt ? OL_FXROW_IN_DOUBT : OL_FXROW_PENDING;
    }
    if (l->n > 1) /* v is NULL when there is none */
        qsort(l->v, l->n, sizeof *l->v, by_seq_idx);
}

int ol__fxlist_load(sqlite3 *db, const char *agent, struct ol__fxlist *l,
                    char *errmsg)
{
    struct walk_ctx w;
    int rv;

    memset(l, 0, sizeof *l);
    memset(&w, 0, sizeof w);
    ol__map_init(&l->by_at);
    snprintf(l->agent, sizeof l->agent, "%s", agent);
    if ((rv = load_epoch(db, l, errmsg)) != 0)
        return rv;
    rv = ol__vs_keyring_load(db, NULL, 0, &w.kr, errmsg);
    if (rv == 0 &&
        (sqlite3_prepare_v2(db,
                            OL_VERIFY_ROWS_SQL " WHERE agent = ? ORDER BY seq",
                            -1, &w.rows, NULL) != SQLITE_OK ||
         sqlite3_prepare_v2(db, OL_VERIFY_SEAL_SQL, -1, &w.seal, NULL) !=
             SQLITE_OK)) {
        ol__errf(errmsg, "effects: %s", sqlite3_errmsg(db));
        rv = OL_EIO;
    }
    if (rv == 0) {
        sqlite3_bind_text(w.rows, 1, agent, -1, SQLITE_STATIC);
        rv = walk(db, l, &w, errmsg);
    }
    sqlite3_finalize(w.rows);
    sqlite3_finalize(w.seal);
    ol__vs_cache_free(&w.cache);
    free(w.kr.pk);
    if (rv == 0)
        settle(l);
    return rv;
}

/* ---- packing ---- */

static int keep(const struct ol__fxrow *r, int state)
{
    if (state == OL_FXROW_OPEN)
        return r->closed_seq == 0;
    return state == 0 || r->state == state;
}

static void kv_hex(struct ol__pk_map *m, const char *k, const uint8_t *p,
                   size_t n, int *bad)
{
    char *hex = malloc(2 * n + 1);

    if (hex == NULL) {
        *bad = 1;
        return;
    }
    sodium_bin2hex(hex, 2 * n + 1, p, n);
    ol__pk_kv_str(m, k, hex);
    free(hex);
}

static int pack_row(msgpack_packer *pk, struct ol__buf *b,
                    const struct ol__fxrow *r)
{
    struct ol__pk_map m;
    int bad = 0, is_mp;

    is_mp = r->result_len &&
            ol__mp_check(r->result, r->result_len, NULL) == 0;
    ol__pk_map_begin(&m, pk, b);
    kv_hex(&m, "key", r->key, OL_EFFECT_KEY_SIZE, &bad);
    ol__pk_kv_uint(&m, "id", r->id);
    ol__pk_kv_str(&m, "kind", r->kind);
    ol__pk_kv_uint(&m, "seq", r->seq);
    ol__pk_kv_uint(&m, "idx", r->idx);
    ol__pk_key(&m, "epoch");
    bad |= r->epoch ? msgpack_pack_uint64(pk, r->epoch)
                    : msgpack_pack_nil(pk);
    ol__pk_kv_str(&m, "state", ol__fxrow_state_name(r->state));
    ol__pk_kv_bool(&m, "in_doubt", r->in_doubt);
    ol__pk_kv_uint(&m, "attempts", r->attempts);
    ol__pk_key(&m, "payload");
    bad |= pk->callback(pk->data, (const char *)r->payload, r->len);
    ol__pk_kv_uint(&m, "closed_seq", r->closed_seq);
    ol__pk_key(&m, "result");
    bad |= is_mp ? pk->callback(pk->data, (const char *)r->result,
                                r->result_len)
                 : msgpack_pack_nil(pk);
    if (!is_mp && r->result_len) {
        kv_hex(&m, "result_hex", r->result, r->result_len, &bad);
    } else {
        ol__pk_key(&m, "result_hex");
        bad |= msgpack_pack_nil(pk);
    }
    ol__pk_kv_str(&m, "note", r->note);
    return bad | (ol__pk_map_end(&m) != 0);
}

int ol__fxlist_pack(const struct ol__fxlist *l, int state, uint32_t limit,
                    msgpack_packer *pk, char *errmsg)
{
    struct ol__buf b;
    msgpack_packer bp;
    struct ol__pk_map m;
    uint64_t total = 0, shown;
    int bad = 0;

    for (size_t i = 0; i < l->n; i++)
        total += keep(l->v[i], state);
    shown = limit && total > limit ? limit : total;
    ol__buf_init(&b);
    msgpack_packer_init(&bp, &b, ol__buf_write);
    ol__pk_map_begin(&m, &bp, &b);
    ol__pk_kv_str(&m, "agent", l->agent);
    ol__pk_kv_uint(&m, "epoch", l->epoch);
    ol__pk_kv_uint(&m, "first_seq", l->first_seq);
    ol__pk_kv_uint(&m, "head_seq", l->head_seq);
    ol__pk_kv_uint(&m, "total", total);
    ol__pk_key(&m, "effects");
    bad |= msgpack_pack_array(&bp, (uint32_t)shown);
    for (size_t i = l->n, done = 0; i > 0 && done < shown; i--)
        if (keep(l->v[i - 1], state)) {
            bad |= pack_row(&bp, &b, l->v[i - 1]);
            done++;
        }
    bad |= ol__pk_map_end(&m) != 0;
    if (bad || pk->callback(pk->data, (const char *)b.base, b.len) != 0) {
        ol__buf_close(&b);
        ol__errf(errmsg, "effects: out of memory packing the list");
        return OL_ENOMEM;
    }
    ol__buf_close(&b);
    return 0;
}
