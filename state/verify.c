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

int ol__vs_keyring_load(sqlite3 *db, const uint8_t (*extra)[OL_PK_SIZE],
                        size_t n_extra, struct keyring *kr, char *errmsg)
{
    sqlite3_stmt *st;
    size_t cap = n_extra + 16;
    int rc;

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
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
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
    if (rc != SQLITE_DONE) {
        ol__errf(errmsg, "the nodes table cannot be read to the end: %s",
                 sqlite3_errstr(rc));
        return OL_EIO;
    }
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

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
    return sqlite3_prepare_v2(db, sql, -1, st, NULL) == SQLITE_OK ? 0
                                                                  : OL_EIO;
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
    ol__vs_cache_free(&vc->sc);
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
    e = ol__vs_cache_slot(c, id);
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

int ol__verify_head(sqlite3 *db, const char *agent, uint64_t *seq,
                    uint8_t hash[OL_HASH_SIZE], char *errmsg)
{
    sqlite3_stmt *st;
    int rc, found = 0;

    if (sqlite3_prepare_v2(db, "SELECT seq, hash FROM heads WHERE agent = ?",
                           -1, &st, NULL) != SQLITE_OK) {
        /* A schema 1 database (read as it is) has no heads. */
        if (strstr(sqlite3_errmsg(db), "no such table") != NULL)
            return 0;
        ol__errf(errmsg, "agent '%s': its head record cannot be read: %s",
                 agent, sqlite3_errmsg(db));
        return OL_EIO;
    }
    sqlite3_bind_text(st, 1, agent, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 1) == OL_HASH_SIZE) {
        *seq = (uint64_t)sqlite3_column_int64(st, 0);
        memcpy(hash, sqlite3_column_blob(st, 1), OL_HASH_SIZE);
        found = 1;
    } else if (rc == SQLITE_ROW) {
        ol__errf(errmsg, "agent '%s': its head record is malformed", agent);
        found = OL_EMALFORMED;
    } else if (rc != SQLITE_DONE) {
        ol__errf(errmsg, "agent '%s': its head record cannot be read: %s",
                 agent, sqlite3_errmsg(db));
        found = OL_EIO;
    }
    sqlite3_finalize(st);
    return found;
}

int ol__verify_load_head(sqlite3 *db, const char *agent, struct ol__ckpt *out,
                         uint8_t hash[OL_HASH_SIZE], char *errmsg)
{
    return ol__verify_load_head_cached(db, agent, NULL, out, hash, errmsg);
}

/* What loading one agent's head works with. */
struct head_load {
    sqlite3 *db;
    const char *agent;
    struct keyring kr;
    sqlite3_stmt *rows, *seal_st;
    int found;          /* the agent has a head record */
    uint64_t head_seq;  /* and these are its seq and hash */
    uint8_t head_hash[OL_HASH_SIZE];
};

/* Load the signers and prepare the statements: the agent's newest two
 * rows, and seals by id. */
static int head_load_open(struct head_load *hl, char *errmsg)
{
    char sql[256];
    int rv;

    snprintf(sql, sizeof sql, "%s WHERE agent = ? ORDER BY seq DESC LIMIT 2",
             OL_VERIFY_ROWS_SQL);
    rv = ol__vs_keyring_load(hl->db, NULL, 0, &hl->kr, errmsg);
    if (rv == 0 && (prepare(hl->db, OL_VERIFY_SEAL_SQL, &hl->seal_st) != 0 ||
                    prepare(hl->db, sql, &hl->rows) != 0)) {
        ol__errf(errmsg, "%s", sqlite3_errmsg(hl->db));
        rv = OL_EIO;
    }
    if (rv == OL_ENOMEM)
        ol__errf(errmsg, "load '%s': out of memory", hl->agent);
    else if (rv != 0)
        ol__errwrap(errmsg, "load '%s'", hl->agent);
    if (rv == 0)
        sqlite3_bind_text(hl->rows, 1, hl->agent, -1, SQLITE_STATIC);
    return rv;
}

/* Step to the newest row and read the head record.  Returns 0 with the
 * row in `r`, OL_ENOTFOUND when the agent has neither, or an error. */
static int head_load_newest(struct head_load *hl, struct row *r,
                            char *errmsg)
{
    int rc = sqlite3_step(hl->rows);

    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        /* Storage, not verification: OL_EIO, whatever SQLite said. */
        ol__errf(errmsg, "agent '%s': its checkpoints cannot be read: %s",
                 hl->agent, sqlite3_errmsg(hl->db));
        return OL_EIO;
    }
    hl->found = ol__verify_head(hl->db, hl->agent, &hl->head_seq,
                                hl->head_hash, errmsg);
    if (hl->found < 0)
        return hl->found;
    if (rc == SQLITE_DONE && hl->found) {
        ol__errf(errmsg,
                 "agent '%s': all its checkpoints are missing (its head is "
                 "seq %" PRIu64 ")",
                 hl->agent, hl->head_seq);
        return OL_EBADCHAIN;
    }
    if (rc == SQLITE_DONE)
        return OL_ENOTFOUND;
    ol__vs_read_row(hl->rows, r);
    return 0;
}

/* The newest row must be the one the head record names. */
static int head_load_matches(const struct head_load *hl, const struct row *r,
                             const uint8_t hash[OL_HASH_SIZE], char *errmsg)
{
    if (!hl->found)
        return 0;
    if (r->seq < hl->head_seq) {
        ol__errf(errmsg,
                 "agent '%s': checkpoints seq %" PRIu64 "..%" PRIu64
                 " are missing: its chain ends at seq %" PRIu64
                 ", below its head (seq %" PRIu64 ")",
                 hl->agent, r->seq + 1, hl->head_seq, r->seq, hl->head_seq);
        return OL_EBADCHAIN;
    }
    if (r->seq > hl->head_seq) {
        ol__errf(errmsg,
                 "agent '%s': checkpoint seq %" PRIu64 " is above its "
                 "recorded head (seq %" PRIu64 ")",
                 hl->agent, r->seq, hl->head_seq);
        return OL_EBADCHAIN;
    }
    if (memcmp(hash, hl->head_hash, OL_HASH_SIZE) != 0) {
        ol__errf(errmsg,
                 "agent '%s' checkpoint seq %" PRIu64 " is not the one its "
                 "head record names",
                 hl->agent, r->seq);
        return OL_EBADHASH;
    }
    return 0;
}

/* The row before the newest, when it is the one just before, must be the
 * one the newest's prev_hash names. */
static int head_load_linked(struct head_load *hl, const struct row *r,
                            const struct ol__ckpt *out, char *errmsg)
{
    struct row p;
    uint8_t ph[OL_HASH_SIZE];

    if (sqlite3_step(hl->rows) != SQLITE_ROW)
        return 0;
    ol__vs_read_row(hl->rows, &p);
    ol__ckpt_hash(p.body, (size_t)p.body_len, ph);
    if (p.seq + 1 == r->seq &&
        memcmp(ph, out->prev_hash, OL_HASH_SIZE) != 0) {
        ol__errf(errmsg,
                 "agent '%s' checkpoint seq %" PRIu64
                 ": prev_hash does not link to seq %" PRIu64,
                 hl->agent, r->seq, p.seq);
        return OL_EBADCHAIN;
    }
    return 0;
}

int ol__verify_load_head_cached(sqlite3 *db, const char *agent,
                                struct ol__verify_cache *vc,
                                struct ol__ckpt *out,
                                uint8_t hash[OL_HASH_SIZE], char *errmsg)
{
    struct seal_cache local = {0};
    struct seal_cache *cache = vc ? &vc->sc : &local;
    struct head_load hl = {.db = db, .agent = agent};
    uint64_t n_seals = 0;
    char why[256];
    struct row r;
    int rv, own_txn = 0;

    memset(out, 0, sizeof *out);
    /* The rows and the head record as of one moment. */
    if (sqlite3_get_autocommit(db) &&
        sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK)
        own_txn = 1;
    rv = head_load_open(&hl, errmsg);
    if (rv == 0)
        rv = head_load_newest(&hl, &r, errmsg);
    if (rv == 0 && vc && (vc->sc.n > VERIFY_CACHE_MAX ||
                          !cache_still_valid(db, &vc->sc, r.seal))) {
        ol__vs_cache_free(&vc->sc);
        memset(&vc->sc, 0, sizeof vc->sc);
    }
    if (rv == 0) {
        rv = ol__vs_check_row(db, cache, &hl.kr, hl.seal_st, &r, out, hash,
                              &n_seals, why, sizeof why);
        if (rv != 0)
            ol__errf(errmsg, "agent '%s' checkpoint seq %" PRIu64 ": %s",
                     agent, r.seq, why);
        else if ((rv = head_load_matches(&hl, &r, hash, errmsg)) != 0 ||
                 (rv = head_load_linked(&hl, &r, out, errmsg)) != 0)
            ol__ckpt_free(out);
    }
    sqlite3_finalize(hl.rows);
    sqlite3_finalize(hl.seal_st);
    ol__vs_cache_free(&local);
    free(hl.kr.pk);
    if (own_txn)
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    return rv;
}
