/*
 * Verification internals shared by verify.c (one checkpoint, resumes),
 * verify_store.c and verify_heads.c (a whole database): verified seals
 * cached by row id, the keys accepted as signers, the check of one stored
 * row, and the state of a whole-database walk.
 */
#ifndef OL_VERIFY_INT_H
#define OL_VERIFY_INT_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "base/map.h"
#include "verify.h"
#include "verify_fx.h"

/* A verified (or refused) seal, by row id. */
struct seal_entry {
    int64_t id;
    uint8_t sig[OL_SIG_SIZE]; /* as stored when it was checked */
    int ok;             /* 1 verified, 0 refused */
    char why[96];
    uint8_t signer[OL_PK_SIZE];
    uint8_t *hashes;    /* copy, n * 32 */
    uint32_t n;
    uint32_t rows;      /* stored rows seen that point at it (walks) */
    uint8_t *seen;      /* which positions those rows hold, n bits */
    int reported;       /* its refusal was reported with a row */
    uint64_t gen;       /* the cache's gen when last found unchanged */
};

struct seal_cache {
    struct seal_entry *v;
    size_t cap; /* power of two; open addressing on id */
    size_t n;
    uint64_t gen; /* read transactions pinned so far (verify_load.c) */
};

/* Keys accepted as signers: the nodes table plus any trusted extras. */
struct keyring {
    uint8_t (*pk)[OL_PK_SIZE];
    size_t n;
};

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

#define OL_VERIFY_ROWS_SQL                                                 \
    "SELECT agent, seq, epoch, time_ms, hash, seal, idx, body, flags "     \
    "FROM checkpoints"
#define OL_VERIFY_SEAL_SQL "SELECT body, sig FROM seals WHERE id = ?"

/* ---- a whole database (verify_store.c, verify_heads.c) ---- */

#define RESUMES_MAX 1000

/* What the walks found of one agent's rows, for its head check. */
struct agent_info {
    char name[OL_NAME_MAX + 1];
    uint64_t max_seq; /* the newest row found */
    uint8_t hash[OL_HASH_SIZE];
    int ok; /* that row was read and its hash is known */
};

struct walk {
    sqlite3 *db;
    const char *only; /* one agent, or NULL */
    ol__verify_cb cb;
    void *data;
    struct ol__verify_report *rep;
    struct seal_cache cache;
    struct keyring kr;
    sqlite3_stmt *fetch, *seal_st, *agent_st, *head_st;
    /* The agent being walked in chain order. */
    char agent[OL_NAME_MAX + 1];
    int in_agent;
    uint64_t prev_seq;
    uint8_t prev_hash[OL_HASH_SIZE];
    int prev_ok;
    struct ol__vfx_chain fx; /* its effects, checked in chain order */
    struct ol__map seen; /* name -> struct agent_info, agents with rows */
    uint64_t unreadable; /* rows found but not readable */
    /* Rowids checked, for the fallback scan. */
    uint8_t *done;
    size_t done_bytes;
};

/* Report one problem and count it in rep->bad. */
void ol__vw_problem(struct walk *w, const char *agent, uint64_t seq,
                    const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* An agent's newest row must be its head record. */
void ol__vw_check_head(struct walk *w, const struct agent_info *ai);
/* Head records of agents that have no rows at all. */
void ol__vw_walk_heads(struct walk *w);
/* Every seal against the rows that point at it. */
void ol__vw_walk_seals(struct walk *w);

void ol__vs_cache_free(struct seal_cache *c);
struct seal_entry *ol__vs_cache_slot(struct seal_cache *c, int64_t id);
/* Load the signer keys.  Returns 0, OL_ENOMEM, or OL_EIO when the nodes
 * table could not be read to the end (kr holds what was read, and
 * errmsg says why). */
int ol__vs_keyring_load(sqlite3 *db, const uint8_t (*extra)[OL_PK_SIZE],
                        size_t n_extra, struct keyring *kr, char *errmsg);
/* Read the signers' keys `st` yields into `kr` (which has room for `cap`
 * and holds kr->n already).  0, OL_ENOMEM or OL_EIO. */
int ol__vs_keyring_read(sqlite3_stmt *st, struct keyring *kr, size_t cap,
                        char *errmsg);
/* Fetch and verify seal `id`, once (NULL: out of memory). */
struct seal_entry *ol__vs_seal_get(sqlite3 *db, struct seal_cache *c,
                                   const struct keyring *kr,
                                   sqlite3_stmt *st, int64_t id,
                                   uint64_t *n_seals);
void ol__vs_read_row(sqlite3_stmt *st, struct row *r);
/* Whether `pk` is one of the keys in `kr`. */
int ol__vs_keyring_has(const struct keyring *kr, const uint8_t *pk);
/* Check one row against its seal and itself; on success *c is decoded and
 * hash holds the recomputed hash.  Returns 0 or an OL_E* code with why. */
int ol__vs_check_row(sqlite3 *db, struct seal_cache *cache,
                     const struct keyring *kr, sqlite3_stmt *seal_st,
                     const struct row *r, struct ol__ckpt *c,
                     uint8_t hash[OL_HASH_SIZE], uint64_t *n_seals,
                     char *why, size_t whylen);

#endif
