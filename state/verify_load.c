/*
 * Loading one agent's head checkpoint, verified, for a resume (verify.h):
 * its newest row, checked against its seal and its head record and linked
 * to the row before it.  A cache kept by the caller remembers the seals
 * already verified and the prepared statements, so a node resuming
 * thousands of agents neither verifies a seal twice nor parses the same
 * SQL per agent.
 */
#include "verify.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "reads.h"
#include "verify_int.h"

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
    return sqlite3_prepare_v2(db, sql, -1, st, NULL) == SQLITE_OK ? 0
                                                                  : OL_EIO;
}

/* The statements loading a head prepares, kept between loads: a node
 * resuming thousands of agents would otherwise parse five of them per
 * agent. */
enum { VC_PK, VC_SEAL, VC_ROWS, VC_HEAD, VC_SIG, VC_MAIL, VC_N };

static const char *const vc_sql[VC_N] = {
    "SELECT pk FROM nodes",
    OL_VERIFY_SEAL_SQL,
    OL_VERIFY_ROWS_SQL " WHERE agent = ? ORDER BY seq DESC LIMIT 2",
    "SELECT seq, hash FROM heads WHERE agent = ?",
    "SELECT sig FROM seals WHERE id = ?",
    ol__read_mail_sql,
};

struct ol__verify_cache {
    struct seal_cache sc;
    sqlite3 *db; /* st[] are prepared on it */
    sqlite3_stmt *st[VC_N];
    int pinned;         /* in one read transaction (ol__verify_cache_pin) */
    struct keyring kr;  /* the signers, read once in it */
};

#define VERIFY_CACHE_MAX 65536

struct ol__verify_cache *ol__verify_cache_create(void)
{
    return calloc(1, sizeof(struct ol__verify_cache));
}

void ol__verify_cache_detach(struct ol__verify_cache *vc)
{
    if (vc == NULL)
        return;
    for (int i = 0; i < VC_N; i++) {
        sqlite3_finalize(vc->st[i]);
        vc->st[i] = NULL;
    }
    vc->db = NULL;
}

void ol__verify_cache_pin(struct ol__verify_cache *vc, int on)
{
    free(vc->kr.pk);
    vc->kr.pk = NULL;
    vc->kr.n = 0;
    /* Seals checked before are looked at again in this snapshot, each the
     * first time it is used (cache_still_valid). */
    if (on)
        vc->sc.gen++;
    vc->pinned = on;
}

void ol__verify_cache_destroy(struct ol__verify_cache *vc)
{
    if (vc == NULL)
        return;
    free(vc->kr.pk);
    ol__verify_cache_detach(vc);
    ol__vs_cache_free(&vc->sc);
    free(vc);
}

/* Statement `which` on `db`, reset and unbound, prepared on first use;
 * NULL if it cannot be prepared. */
static sqlite3_stmt *vc_stmt(struct ol__verify_cache *vc, sqlite3 *db,
                             int which)
{
    if (vc->db != db) {
        ol__verify_cache_detach(vc);
        vc->db = db;
    }
    if (vc->st[which] == NULL &&
        sqlite3_prepare_v3(db, vc_sql[which], -1, SQLITE_PREPARE_PERSISTENT,
                           &vc->st[which], NULL) != SQLITE_OK)
        return NULL;
    sqlite3_reset(vc->st[which]);
    sqlite3_clear_bindings(vc->st[which]);
    return vc->st[which];
}

sqlite3_stmt *ol__verify_cache_mail(struct ol__verify_cache *vc,
                                    sqlite3 *db)
{
    return vc ? vc_stmt(vc, db, VC_MAIL) : NULL;
}

/* Drop a cached seal whose stored signature changed since it was checked,
 * whose signer is no longer a node's, or that was refused: the next use
 * checks the row afresh.  Pinned, a seal found unchanged once in the
 * snapshot is not looked at again in it; a seal is verified once, not
 * once per snapshot (a node resuming 10,000 agents pins a snapshot per
 * batch, and their heads share a few hundred seals). */
static int cache_still_valid(sqlite3 *db, struct ol__verify_cache *vc,
                             const struct keyring *kr, int64_t id)
{
    struct seal_cache *c = &vc->sc;
    struct seal_entry *e;
    sqlite3_stmt *st;
    int same = 0;

    if (c->cap == 0)
        return 1;
    e = ol__vs_cache_slot(c, id);
    if (e->id == 0 || (vc->pinned && e->gen == c->gen))
        return 1;
    if (e->ok && ol__vs_keyring_has(kr, e->signer) &&
        (st = vc_stmt(vc, db, VC_SIG)) != NULL) {
        sqlite3_bind_int64(st, 1, id);
        same = sqlite3_step(st) == SQLITE_ROW &&
               sqlite3_column_bytes(st, 0) == OL_SIG_SIZE &&
               memcmp(sqlite3_column_blob(st, 0), e->sig, OL_SIG_SIZE) == 0;
        sqlite3_reset(st);
    }
    if (same)
        e->gen = c->gen;
    return same;
}

/* The head record `st` (bound to the agent) yields: 1 found, 0 none, or
 * an error. */
static int head_read(sqlite3 *db, sqlite3_stmt *st, const char *agent,
                     uint64_t *seq, uint8_t hash[OL_HASH_SIZE], char *errmsg)
{
    int rc = sqlite3_step(st), found = 0;

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
    return found;
}

int ol__verify_head(sqlite3 *db, const char *agent, uint64_t *seq,
                    uint8_t hash[OL_HASH_SIZE], char *errmsg)
{
    sqlite3_stmt *st;
    int found;

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
    found = head_read(db, st, agent, seq, hash, errmsg);
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
    struct ol__verify_cache *vc; /* its statements, or NULL: our own */
    const char *agent;
    struct keyring kr;
    int kr_cached;      /* kr is the pinned cache's: not ours to free */
    sqlite3_stmt *rows, *seal_st;
    int found;          /* the agent has a head record */
    uint64_t head_seq;  /* and these are its seq and hash */
    uint8_t head_hash[OL_HASH_SIZE];
};

/* Load the signers and prepare the statements: the agent's newest two
 * rows, and seals by id. */
/* head_load_open() with the cache's statements. */
static int head_load_cached(struct head_load *hl, char *errmsg)
{
    struct ol__verify_cache *vc = hl->vc;
    sqlite3_stmt *pk;
    int rv = 0;

    if (vc->pinned && vc->kr.pk) {
        hl->kr = vc->kr;
        hl->kr_cached = 1;
    } else if ((hl->kr.pk = malloc(16 * OL_PK_SIZE)) == NULL) {
        return OL_ENOMEM;
    } else if ((pk = vc_stmt(vc, hl->db, VC_PK)) == NULL) {
        ol__errf(errmsg, "the nodes table cannot be read: %s",
                 sqlite3_errmsg(hl->db));
        return OL_EIO;
    } else {
        hl->kr.n = 0;
        rv = ol__vs_keyring_read(pk, &hl->kr, 16, errmsg);
        sqlite3_reset(pk);
        if (rv == 0 && vc->pinned) {
            vc->kr = hl->kr;
            hl->kr_cached = 1;
        }
    }
    if (rv == 0 &&
        ((hl->seal_st = vc_stmt(hl->vc, hl->db, VC_SEAL)) == NULL ||
         (hl->rows = vc_stmt(hl->vc, hl->db, VC_ROWS)) == NULL)) {
        ol__errf(errmsg, "%s", sqlite3_errmsg(hl->db));
        rv = OL_EIO;
    }
    return rv;
}

static int head_load_open(struct head_load *hl, char *errmsg)
{
    char sql[256];
    int rv;

    snprintf(sql, sizeof sql, "%s WHERE agent = ? ORDER BY seq DESC LIMIT 2",
             OL_VERIFY_ROWS_SQL);
    if (hl->vc) {
        rv = head_load_cached(hl, errmsg);
    } else {
        rv = ol__vs_keyring_load(hl->db, NULL, 0, &hl->kr, errmsg);
        if (rv == 0 &&
            (prepare(hl->db, OL_VERIFY_SEAL_SQL, &hl->seal_st) != 0 ||
             prepare(hl->db, sql, &hl->rows) != 0)) {
            ol__errf(errmsg, "%s", sqlite3_errmsg(hl->db));
            rv = OL_EIO;
        }
    }
    if (rv == OL_ENOMEM)
        ol__errf(errmsg, "load '%s': out of memory", hl->agent);
    else if (rv != 0)
        ol__errwrap(errmsg, "load '%s'", hl->agent);
    if (rv == 0)
        sqlite3_bind_text(hl->rows, 1, hl->agent, -1, SQLITE_STATIC);
    return rv;
}

/* The agent's head record: 1 found, 0 none, or an error. */
static int head_record(struct head_load *hl, char *errmsg)
{
    sqlite3_stmt *st = hl->vc ? vc_stmt(hl->vc, hl->db, VC_HEAD) : NULL;
    int found;

    if (st == NULL)
        return ol__verify_head(hl->db, hl->agent, &hl->head_seq,
                               hl->head_hash, errmsg);
    sqlite3_bind_text(st, 1, hl->agent, -1, SQLITE_STATIC);
    found = head_read(hl->db, st, hl->agent, &hl->head_seq, hl->head_hash,
                      errmsg);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return found;
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
    hl->found = head_record(hl, errmsg);
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
    struct head_load hl = {.db = db, .vc = vc, .agent = agent};
    uint64_t n_seals = 0;
    char why[256];
    struct row r;
    int rv, own_txn = 0;

    memset(out, 0, sizeof *out);
    /* A transaction SQLite rolled back after an error ends the snapshot
     * a pin stood for. */
    if (vc && vc->pinned && sqlite3_get_autocommit(db))
        ol__verify_cache_pin(vc, 0);
    /* The rows and the head record as of one moment. */
    if (sqlite3_get_autocommit(db) &&
        sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK)
        own_txn = 1;
    rv = head_load_open(&hl, errmsg);
    if (rv == 0)
        rv = head_load_newest(&hl, &r, errmsg);
    if (rv == 0 && vc && (vc->sc.n > VERIFY_CACHE_MAX ||
                          !cache_still_valid(db, vc, &hl.kr, r.seal))) {
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
    if (vc) {
        sqlite3_reset(hl.rows);
        sqlite3_clear_bindings(hl.rows);
        sqlite3_reset(hl.seal_st);
    } else {
        sqlite3_finalize(hl.rows);
        sqlite3_finalize(hl.seal_st);
    }
    ol__vs_cache_free(&local);
    if (!hl.kr_cached)
        free(hl.kr.pk);
    if (own_txn)
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    return rv;
}
