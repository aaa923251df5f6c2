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

#include "base/err.h"
#include "store.h"
#include "record/seal.h"
#include "verify_int.h"

void ol__vs_cache_free(struct seal_cache *c)
{
    for (size_t i = 0; i < c->cap; i++)
        if (c->v[i].id) {
            free(c->v[i].hashes);
            free(c->v[i].seen);
        }
    free(c->v);
    memset(c, 0, sizeof *c);
}

struct seal_entry *ol__vs_cache_slot(struct seal_cache *c, int64_t id)
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
    bigger.gen = c->gen;
    bigger.v = calloc(bigger.cap, sizeof *bigger.v);
    if (bigger.v == NULL)
        return OL_ENOMEM;
    for (size_t i = 0; i < c->cap; i++)
        if (c->v[i].id) {
            *ol__vs_cache_slot(&bigger, c->v[i].id) = c->v[i];
            bigger.n++;
        }
    free(c->v);
    *c = bigger;
    return 0;
}

int ol__vs_keyring_read(sqlite3_stmt *st, struct keyring *kr, size_t cap,
                        char *errmsg)
{
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(st, 0) != OL_PK_SIZE)
            continue;
        if (kr->n == cap) {
            void *p = realloc(kr->pk, cap * 2 * OL_PK_SIZE);

            if (p == NULL)
                return OL_ENOMEM;
            kr->pk = p;
            cap *= 2;
        }
        memcpy(kr->pk[kr->n++], sqlite3_column_blob(st, 0), OL_PK_SIZE);
    }
    if (rc != SQLITE_DONE) {
        ol__errf(errmsg, "the nodes table cannot be read to the end: %s",
                 sqlite3_errstr(rc));
        return OL_EIO;
    }
    return 0;
}

int ol__vs_keyring_load(sqlite3 *db, const uint8_t (*extra)[OL_PK_SIZE],
                        size_t n_extra, struct keyring *kr, char *errmsg)
{
    sqlite3_stmt *st;
    size_t cap = n_extra + 16;
    int rv;

    kr->n = 0;
    kr->pk = malloc(cap * OL_PK_SIZE);
    if (kr->pk == NULL)
        return OL_ENOMEM;
    for (size_t i = 0; i < n_extra; i++)
        memcpy(kr->pk[kr->n++], extra[i], OL_PK_SIZE);
    if (sqlite3_prepare_v2(db, "SELECT pk FROM nodes", -1, &st, NULL) !=
        SQLITE_OK) {
        ol__errf(errmsg, "the nodes table cannot be read: %s",
                 sqlite3_errmsg(db));
        return OL_EIO;
    }
    rv = ol__vs_keyring_read(st, kr, cap, errmsg);
    sqlite3_finalize(st);
    return rv;
}

int ol__vs_keyring_has(const struct keyring *kr, const uint8_t *pk)
{
    for (size_t i = 0; i < kr->n; i++)
        if (sodium_memcmp(kr->pk[i], pk, OL_PK_SIZE) == 0)
            return 1;
    return 0;
}

/* Fetch and verify seal `id`, once. */
struct seal_entry *ol__vs_seal_get(sqlite3 *db, struct seal_cache *c,
                                   const struct keyring *kr,
                                   sqlite3_stmt *st, int64_t id,
                                   uint64_t *n_seals)
{
    struct seal_entry *e;
    struct ol__seal s;
    int rv;

    if ((c->n + 1) * 2 > c->cap && cache_grow(c) != 0)
        return NULL;
    e = ol__vs_cache_slot(c, id);
    if (e->id)
        return e;
    memset(e, 0, sizeof *e);
    e->id = id;
    e->gen = c->gen;
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
    if (!ol__vs_keyring_has(kr, s.signer)) {
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


void ol__vs_read_row(sqlite3_stmt *st, struct row *r)
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
int ol__vs_check_row(sqlite3 *db, struct seal_cache *cache,
                     const struct keyring *kr, sqlite3_stmt *seal_st,
                     const struct row *r, struct ol__ckpt *c,
                     uint8_t hash[OL_HASH_SIZE], uint64_t *n_seals,
                     char *why, size_t whylen)
{
    struct seal_entry *s;
    char err[OL_ERRMSG_SIZE];

    memset(c, 0, sizeof *c);
    s = ol__vs_seal_get(db, cache, kr, seal_st, r->seal, n_seals);
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

