/*
 * Verification of stored checkpoints.  Nothing in a row is trusted until
 * the seal it points at verifies: the seal's signature is checked first,
 * then the row's body is hashed and compared with the hash the seal lists,
 * and only then is the body decoded and compared with the columns that
 * repeat it.  Seals are shared by many rows, so each is verified once per
 * walk.
 */
#include "verify.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/err.h"
#include "seal.h"

/* A verified (or refused) seal, by row id. */
struct seal_entry {
    int64_t id;
    uint8_t sig[OL_SIG_SIZE]; /* as stored when it was checked */
    int ok;             /* 1 verified, 0 refused */
    char why[96];
    uint8_t signer[OL_PK_SIZE];
    uint8_t *hashes;    /* copy, n * 32 */
    uint32_t n;
};

struct seal_cache {
    struct seal_entry *v;
    size_t cap; /* power of two; open addressing on id */
    size_t n;
};

static void cache_free(struct seal_cache *c)
{
    for (size_t i = 0; i < c->cap; i++)
        if (c->v[i].id)
            free(c->v[i].hashes);
    free(c->v);
    memset(c, 0, sizeof *c);
}

static struct seal_entry *cache_slot(struct seal_cache *c, int64_t id)
{
    size_t mask = c->cap - 1;
    size_t i = (size_t)((uint64_t)id * 11400714819323198485ull) & mask;

    while (c->v[i].id && c->v[i].id != id)
        i = (i + 1) & mask;
    return &c->v[i];
}

static int cache_grow(struct seal_cache *c)
{
    struct seal_cache bigger;

    bigger.cap = c->cap ? c->cap * 2 : 64;
    bigger.n = 0;
    bigger.v = calloc(bigger.cap, sizeof *bigger.v);
    if (bigger.v == NULL)
        return OL_ENOMEM;
    for (size_t i = 0; i < c->cap; i++)
        if (c->v[i].id) {
            *cache_slot(&bigger, c->v[i].id) = c->v[i];
            bigger.n++;
        }
    free(c->v);
    *c = bigger;
    return 0;
}

/* Keys accepted as signers: the nodes table plus any trusted extras. */
struct keyring {
    uint8_t (*pk)[OL_PK_SIZE];
    size_t n;
};

static int keyring_load(sqlite3 *db, const uint8_t (*extra)[OL_PK_SIZE],
                        size_t n_extra, struct keyring *kr)
{
    sqlite3_stmt *st;
    size_t cap = n_extra + 16;

    kr->n = 0;
    kr->pk = malloc(cap * OL_PK_SIZE);
    if (kr->pk == NULL)
        return OL_ENOMEM;
    for (size_t i = 0; i < n_extra; i++)
        memcpy(kr->pk[kr->n++], extra[i], OL_PK_SIZE);
    if (sqlite3_prepare_v2(db, "SELECT pk FROM nodes", -1, &st, NULL) !=
        SQLITE_OK)
        return OL_EIO;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (sqlite3_column_bytes(st, 0) != OL_PK_SIZE)
            continue;
        if (kr->n == cap) {
            void *p = realloc(kr->pk, cap * 2 * OL_PK_SIZE);

            if (p == NULL) {
                sqlite3_finalize(st);
                return OL_ENOMEM;
            }
            kr->pk = p;
            cap *= 2;
        }
        memcpy(kr->pk[kr->n++], sqlite3_column_blob(st, 0), OL_PK_SIZE);
    }
    sqlite3_finalize(st);
    return 0;
}

static int keyring_has(const struct keyring *kr, const uint8_t *pk)
{
    for (size_t i = 0; i < kr->n; i++)
        if (sodium_memcmp(kr->pk[i], pk, OL_PK_SIZE) == 0)
            return 1;
    return 0;
}

/* Fetch and verify seal `id`, once. */
static const struct seal_entry *seal_get(sqlite3 *db, struct seal_cache *c,
                                         const struct keyring *kr,
                                         sqlite3_stmt *st, int64_t id,
                                         uint64_t *n_seals)
{
    struct seal_entry *e;
    struct ol__seal s;
    int rv;

    if ((c->n + 1) * 2 > c->cap && cache_grow(c) != 0)
        return NULL;
    e = cache_slot(c, id);
    if (e->id)
        return e;
    memset(e, 0, sizeof *e);
    e->id = id;
    c->n++;
    (*n_seals)++;
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        snprintf(e->why, sizeof e->why, "seal %" PRId64 " is missing", id);
        goto out;
    }
    if (sqlite3_column_bytes(st, 1) != OL_SIG_SIZE) {
        snprintf(e->why, sizeof e->why, "seal %" PRId64 " has no signature",
                 id);
        goto out;
    }
    memcpy(e->sig, sqlite3_column_blob(st, 1), OL_SIG_SIZE);
    rv = ol__seal_verify(sqlite3_column_blob(st, 0),
                         (size_t)sqlite3_column_bytes(st, 0),
                         sqlite3_column_blob(st, 1), &s);
    if (rv != 0) {
        snprintf(e->why, sizeof e->why, "seal %" PRId64 " %s", id,
                 rv == OL_EBADSIG ? "signature does not verify"
                                  : "is malformed");
        goto out;
    }
    if (!keyring_has(kr, s.signer)) {
        snprintf(e->why, sizeof e->why,
                 "seal %" PRId64 " is signed by a key that is not a node's",
                 id);
        goto out;
    }
    e->hashes = malloc((size_t)s.n * OL_HASH_SIZE);
    if (e->hashes == NULL) {
        snprintf(e->why, sizeof e->why, "out of memory");
        goto out;
    }
    memcpy(e->hashes, s.hashes, (size_t)s.n * OL_HASH_SIZE);
    memcpy(e->signer, s.signer, OL_PK_SIZE);
    e->n = s.n;
    e->ok = 1;
out:
    sqlite3_reset(st);
    return e;
}

/* One stored row, as read. */
struct row {
    const char *agent;
    uint64_t seq, epoch;
    int64_t time_ms;
    const void *hash;
    int hash_len;
    int64_t seal;
    int64_t idx;
    const void *body;
    int body_len;
    int flags;
};

static void read_row(sqlite3_stmt *st, struct row *r)
{
    r->agent = (const char *)sqlite3_column_text(st, 0);
    r->seq = (uint64_t)sqlite3_column_int64(st, 1);
    r->epoch = (uint64_t)sqlite3_column_int64(st, 2);
    r->time_ms = sqlite3_column_int64(st, 3);
    r->hash = sqlite3_column_blob(st, 4);
    r->hash_len = sqlite3_column_bytes(st, 4);
    r->seal = sqlite3_column_int64(st, 5);
    r->idx = sqlite3_column_int64(st, 6);
    r->body = sqlite3_column_blob(st, 7);
    r->body_len = sqlite3_column_bytes(st, 7);
    r->flags = sqlite3_column_int(st, 8);
}

/*
 * Check one row against its seal and itself.  On success *c is decoded and
 * hash holds the recomputed hash.  Returns 0 or an OL_E* code with why set.
 */
static int check_row(sqlite3 *db, struct seal_cache *cache,
                     const struct keyring *kr, sqlite3_stmt *seal_st,
                     const struct row *r, struct ol__ckpt *c,
                     uint8_t hash[OL_HASH_SIZE], uint64_t *n_seals,
                     char *why, size_t whylen)
{
    const struct seal_entry *s;
    char err[OL_ERRMSG_SIZE];

    memset(c, 0, sizeof *c);
    s = seal_get(db, cache, kr, seal_st, r->seal, n_seals);
    if (s == NULL) {
        snprintf(why, whylen, "out of memory");
        return OL_ENOMEM;
    }
    if (!s->ok) {
        snprintf(why, whylen, "%s", s->why);
        return OL_EBADSIG;
    }
    if (r->idx < 0 || (uint64_t)r->idx >= s->n) {
        snprintf(why, whylen, "seal position %" PRId64 " is out of range",
                 r->idx);
        return OL_EBADSIG;
    }
    ol__ckpt_hash(r->body, (size_t)r->body_len, hash);
    if (memcmp(hash, s->hashes + (size_t)r->idx * OL_HASH_SIZE,
               OL_HASH_SIZE) != 0) {
        snprintf(why, whylen,
                 "body hash is not the one its seal signed (tampered)");
        return OL_EBADHASH;
    }
    if (r->hash_len != OL_HASH_SIZE ||
        memcmp(hash, r->hash, OL_HASH_SIZE) != 0) {
        snprintf(why, whylen, "hash column does not match the body");
        return OL_EBADHASH;
    }
    if (ol__ckpt_decode(r->body, (size_t)r->body_len, c, err) != 0) {
        snprintf(why, whylen, "%s", err);
        return OL_EMALFORMED;
    }
    if (strcmp(c->agent, r->agent) != 0 || c->seq != r->seq ||
        c->epoch != r->epoch || c->time_ms != r->time_ms) {
        snprintf(why, whylen,
                 "row columns differ from the signed body (agent/seq/epoch/"
                 "time)");
        ol__ckpt_free(c);
        return OL_EBADHASH;
    }
    if (memcmp(c->signer, s->signer, OL_PK_SIZE) != 0) {
        snprintf(why, whylen, "body names another signer than its seal");
        ol__ckpt_free(c);
        return OL_EBADSIG;
    }
    return 0;
}

static const char rows_sql[] =
    "SELECT agent, seq, epoch, time_ms, hash, seal, idx, body, flags "
    "FROM checkpoints";

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
    return sqlite3_prepare_v2(db, sql, -1, st, NULL) == SQLITE_OK ? 0
                                                                  : OL_EIO;
}

int ol__verify_store(sqlite3 *db, const char *agent,
                     const uint8_t (*trusted)[OL_PK_SIZE], size_t n_trusted,
                     ol__verify_cb cb, void *data,
                     struct ol__verify_report *rep)
{
    struct seal_cache cache = {0};
    struct keyring kr = {0};
    sqlite3_stmt *rows = NULL, *seal_st = NULL, *ag = NULL;
    char sql[256], why[256], prev_agent[OL_NAME_MAX + 1] = "";
    uint8_t prev_hash[OL_HASH_SIZE];
    uint64_t prev_seq = 0;
    int prev_ok = 0, rv;

    memset(rep, 0, sizeof *rep);
    rv = keyring_load(db, trusted, n_trusted, &kr);
    if (rv == 0)
        rv = prepare(db, "SELECT body, sig FROM seals WHERE id = ?",
                     &seal_st);
    snprintf(sql, sizeof sql, "%s%s ORDER BY agent, seq", rows_sql,
             agent ? " WHERE agent = ?" : "");
    if (rv == 0)
        rv = prepare(db, sql, &rows);
    if (rv == 0)
        rv = prepare(db, "SELECT 1 FROM agents WHERE name = ?", &ag);
    if (rv != 0) {
        if (cb)
            cb(data, agent ? agent : "", 0, sqlite3_errmsg(db));
        goto out;
    }
    if (agent)
        sqlite3_bind_text(rows, 1, agent, -1, SQLITE_STATIC);

    while ((rv = sqlite3_step(rows)) == SQLITE_ROW) {
        struct row r;
        struct ol__ckpt c;
        uint8_t hash[OL_HASH_SIZE];
        int bad;

        read_row(rows, &r);
        memset(hash, 0, sizeof hash);
        rep->checkpoints++;
        if (strcmp(r.agent, prev_agent) != 0) {
            rep->agents++;
            snprintf(prev_agent, sizeof prev_agent, "%s", r.agent);
            prev_ok = 0;
            prev_seq = 0;
            sqlite3_bind_text(ag, 1, r.agent, -1, SQLITE_TRANSIENT);
            if (sqlite3_step(ag) != SQLITE_ROW && cb)
                cb(data, r.agent, r.seq, "no agents row for this agent");
            sqlite3_reset(ag);
        }
        bad = check_row(db, &cache, &kr, seal_st, &r, &c, hash,
                        &rep->seals, why, sizeof why) != 0;
        if (!bad) {
            if (prev_seq && r.seq == prev_seq + 1 && prev_ok &&
                memcmp(c.prev_hash, prev_hash, OL_HASH_SIZE) != 0) {
                snprintf(why, sizeof why,
                         "prev_hash does not link to seq %" PRIu64,
                         prev_seq);
                bad = 1;
            } else if (prev_seq && r.seq != prev_seq + 1) {
                if (r.flags & 1) {
                    rep->gaps++;
                } else {
                    snprintf(why, sizeof why,
                             "seqs %" PRIu64 "..%" PRIu64 " are missing",
                             prev_seq + 1, r.seq - 1);
                    bad = 1;
                }
            } else if (r.seq == 1) {
                static const uint8_t zero[OL_HASH_SIZE];

                if (memcmp(c.prev_hash, zero, OL_HASH_SIZE) != 0) {
                    snprintf(why, sizeof why,
                             "first checkpoint has a prev_hash");
                    bad = 1;
                }
            }
            ol__ckpt_free(&c);
        }
        if (bad) {
            rep->bad++;
            if (cb)
                cb(data, r.agent, r.seq, why);
        }
        prev_ok = !bad;
        prev_seq = r.seq;
        memcpy(prev_hash, hash, OL_HASH_SIZE);
    }
    rv = rv == SQLITE_DONE ? 0 : OL_EIO;
    if (rv != 0 && cb)
        cb(data, prev_agent, prev_seq, sqlite3_errmsg(db));
out:
    sqlite3_finalize(rows);
    sqlite3_finalize(seal_st);
    sqlite3_finalize(ag);
    cache_free(&cache);
    free(kr.pk);
    return rv;
}

struct ol__verify_cache {
    struct seal_cache sc;
};

#define VERIFY_CACHE_MAX 65536

struct ol__verify_cache *ol__verify_cache_create(void)
{
    return calloc(1, sizeof(struct ol__verify_cache));
}

void ol__verify_cache_destroy(struct ol__verify_cache *vc)
{
    if (vc == NULL)
        return;
    cache_free(&vc->sc);
    free(vc);
}

/* Drop a cached seal whose stored signature changed since it was checked
 * (or that was refused): the next use checks the row afresh. */
static int cache_still_valid(sqlite3 *db, struct seal_cache *c, int64_t id)
{
    struct seal_entry *e;
    sqlite3_stmt *st;
    int same = 0;

    if (c->cap == 0)
        return 1;
    e = cache_slot(c, id);
    if (e->id == 0)
        return 1;
    if (e->ok &&
        sqlite3_prepare_v2(db, "SELECT sig FROM seals WHERE id = ?", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, id);
        same = sqlite3_step(st) == SQLITE_ROW &&
               sqlite3_column_bytes(st, 0) == OL_SIG_SIZE &&
               memcmp(sqlite3_column_blob(st, 0), e->sig, OL_SIG_SIZE) == 0;
        sqlite3_finalize(st);
    }
    return same;
}

int ol__verify_load_head(sqlite3 *db, const char *agent, struct ol__ckpt *out,
                         uint8_t hash[OL_HASH_SIZE], char *errmsg)
{
    return ol__verify_load_head_cached(db, agent, NULL, out, hash, errmsg);
}

int ol__verify_load_head_cached(sqlite3 *db, const char *agent,
                                struct ol__verify_cache *vc,
                                struct ol__ckpt *out,
                                uint8_t hash[OL_HASH_SIZE], char *errmsg)
{
    struct seal_cache local = {0};
    struct seal_cache *cache = vc ? &vc->sc : &local;
    struct keyring kr = {0};
    sqlite3_stmt *rows = NULL, *seal_st = NULL;
    char sql[256], why[256];
    uint64_t n_seals = 0;
    struct row r;
    int rv;

    memset(out, 0, sizeof *out);
    snprintf(sql, sizeof sql, "%s WHERE agent = ? ORDER BY seq DESC LIMIT 2",
             rows_sql);
    rv = keyring_load(db, NULL, 0, &kr);
    if (rv == 0)
        rv = prepare(db, "SELECT body, sig FROM seals WHERE id = ?",
                     &seal_st);
    if (rv == 0)
        rv = prepare(db, sql, &rows);
    if (rv != 0) {
        ol__errf(errmsg, "load '%s': %s", agent, sqlite3_errmsg(db));
        goto out;
    }
    sqlite3_bind_text(rows, 1, agent, -1, SQLITE_STATIC);
    if (sqlite3_step(rows) != SQLITE_ROW) {
        rv = OL_ENOTFOUND;
        goto out;
    }
    read_row(rows, &r);
    if (vc && (vc->sc.n > VERIFY_CACHE_MAX ||
               !cache_still_valid(db, &vc->sc, r.seal))) {
        cache_free(&vc->sc);
        memset(&vc->sc, 0, sizeof vc->sc);
    }
    rv = check_row(db, cache, &kr, seal_st, &r, out, hash, &n_seals, why,
                   sizeof why);
    if (rv != 0) {
        ol__errf(errmsg, "agent '%s' checkpoint seq %" PRIu64 ": %s", agent,
                 r.seq, why);
        goto out;
    }
    if (sqlite3_step(rows) == SQLITE_ROW) {
        struct row p;
        uint8_t ph[OL_HASH_SIZE];

        read_row(rows, &p);
        ol__ckpt_hash(p.body, (size_t)p.body_len, ph);
        if (p.seq + 1 == r.seq &&
            memcmp(ph, out->prev_hash, OL_HASH_SIZE) != 0) {
            ol__errf(errmsg,
                     "agent '%s' checkpoint seq %" PRIu64
                     ": prev_hash does not link to seq %" PRIu64,
                     agent, r.seq, p.seq);
            ol__ckpt_free(out);
            rv = OL_EBADCHAIN;
        }
    }
out:
    sqlite3_finalize(rows);
    sqlite3_finalize(seal_st);
    cache_free(&local);
    free(kr.pk);
    return rv;
}
