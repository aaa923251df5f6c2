/*
 * Verification of stored checkpoints: each row's hash, its seal's signature
 * and signer, the fields the row repeats from its body, and the chain of
 * prev_hash links.  Used offline by `outlast verify` over a whole database,
 * and by the daemon on every agent's head before it resumes the agent.
 */
#ifndef OL_VERIFY_H
#define OL_VERIFY_H

#include <sqlite3.h>
#include <stdint.h>

#include "record/ckpt.h"

#define WUR __attribute__((warn_unused_result))

/* Called for each problem found: agent and seq name the record. */
typedef void (*ol__verify_cb)(void *data, const char *agent, uint64_t seq,
                              const char *problem);

struct ol__verify_report {
    uint64_t agents;
    uint64_t checkpoints;
    uint64_t seals;
    uint64_t bad;        /* records with a problem */
    uint64_t gaps;       /* missing seqs explained by a snapshot install */
};

/*
 * Check every checkpoint (or only `agent`'s, if not NULL).  Problems go to
 * cb; the return value is 0 when the walk completed (look at report->bad),
 * or OL_EIO / OL_EMALFORMED if the database could not be read.
 * `trusted` (may be NULL, n_trusted 0) lists extra public keys accepted as
 * signers besides the database's own nodes table.
 */
int ol__verify_store(sqlite3 *db, const char *agent,
                     const uint8_t (*trusted)[OL_PK_SIZE], size_t n_trusted,
                     ol__verify_cb cb, void *data,
                     struct ol__verify_report *report) WUR;

/*
 * Load and verify the newest checkpoint of `agent` for a resume: the seal
 * signature and signer, the hash, the body, the link to the previous
 * stored checkpoint, and that it is the agent's recorded head (a chain
 * whose newest records were deleted ends below its head).  On success
 * *out holds the decoded checkpoint (free with ol__ckpt_free) and hash its
 * hash.  Returns 0, OL_ENOTFOUND (no checkpoint yet, and no head), or
 * OL_EBADSIG / OL_EBADHASH / OL_EBADCHAIN / OL_EMALFORMED with errmsg
 * naming the seq, or OL_EIO when the database could not be read (a
 * damaged page, an I/O error).
 */
int ol__verify_load_head(sqlite3 *db, const char *agent, struct ol__ckpt *out,
                         uint8_t hash[OL_HASH_SIZE], char *errmsg) WUR;

/* The agent's head record: 1 found (seq and hash set), 0 none (or a
 * schema 1 database), or an OL_E* code with errmsg. */
int ol__verify_head(sqlite3 *db, const char *agent, uint64_t *seq,
                    uint8_t hash[OL_HASH_SIZE], char *errmsg) WUR;

/*
 * The same, remembering verified seals in `vc` across calls: a node that
 * resumes many agents sealed together verifies each seal once.  A cached
 * seal is used only while its stored signature is unchanged and its signer
 * is still one of the nodes, and a body is still hashed and checked
 * against the cached (verified) hash list, so a rewritten row is caught
 * either way.  `vc` may be NULL.
 */
struct ol__verify_cache;
struct ol__verify_cache *ol__verify_cache_create(void);
void ol__verify_cache_destroy(struct ol__verify_cache *vc);
/* Let go of the statements the cache keeps on its database: before that
 * database is closed. */
void ol__verify_cache_detach(struct ol__verify_cache *vc);
/* Say that the caller holds one read transaction on the cache's database
 * from now (on = 1) until it calls this again with 0: in one snapshot the
 * signers' keys and the stored signatures cannot change, so while pinned
 * the keys are read once and a seal checked in it is not looked at again
 * (a seal checked before the pin is looked at once in the snapshot: its
 * stored signature and its signer, not the signature's math again). */
void ol__verify_cache_pin(struct ol__verify_cache *vc, int on);
/* The mailbox query (reads.h, ol__read_mail_sql) kept prepared on `db`
 * with the cache's other statements; NULL if it cannot be (or vc is
 * NULL). */
sqlite3_stmt *ol__verify_cache_mail(struct ol__verify_cache *vc,
                                    sqlite3 *db);
int ol__verify_load_head_cached(sqlite3 *db, const char *agent,
                                struct ol__verify_cache *vc,
                                struct ol__ckpt *out,
                                uint8_t hash[OL_HASH_SIZE],
                                char *errmsg) WUR;

/*
 * Compare the stores of several nodes of one cluster (verify.c checks each
 * on its own first).  Reports, through cb with the agent and seq:
 *   - two different checkpoints for the same (agent, seq) on two nodes;
 *   - one (agent, epoch) whose checkpoints were signed by two nodes;
 *   - divergence evidence any node recorded.
 * `names` label the stores in messages.  Returns 0 when the comparison
 * completed (look at report->bad) or OL_EIO.
 */
int ol__verify_cluster(sqlite3 *const *dbs, const char *const *names,
                       size_t n, ol__verify_cb cb, void *data,
                       struct ol__verify_report *report) WUR;

#endif
