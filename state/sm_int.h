/*
 * State machine internals shared by its files: sm.c (open, caches, rows,
 * effects), sm_apply.c (entries and the apply table), sm_ckpts.c,
 * sm_mail.c, sm_agents.c, sm_crash.c, sm_code.c, sm_reqs.c, sm_snap.c.
 */
#ifndef OL_SM_INT_H
#define OL_SM_INT_H

#include "base/err.h"
#include "sm.h"

enum {
    ST_INS_CKPT,
    ST_GET_HASH,
    ST_PRUNE,
    ST_SEAL_INS,
    ST_SEAL_ID,
    ST_SEAL_LIVE,
    ST_SEAL_GC,
    ST_AGENT_INS,
    ST_AGENT_UPD,
    ST_MAIL_INS,
    ST_MAIL_DEL,
    ST_NODE_PUT,
    ST_EVIDENCE,
    ST_APPLIED,
    ST_CRASH_PUT,
    ST_CODE_PUT,
    ST_REQ_INS,
    ST_REQ_EVICT,
    ST_REQ_WHY,
    ST_AGENT_CFG,
    ST_MAIL_CLEAR,
    SM_N_STMTS
};

/* Applied request ids in memory (sm_reqs.c). */
struct ol__sm_req;
struct ol__sm_reqs {
    struct ol__sm_req *ring; /* cap rows, oldest at head */
    uint32_t *index;         /* ring position + 1; 0: empty */
    size_t cap, mask, head, count;
    int64_t next_n;          /* the apply counter of the next row */
};

struct ol__sm {
    struct ol__store *st;
    struct ol__sm_config cfg;
    sqlite3_stmt *stmt[SM_N_STMTS];
    struct ol__map agents; /* name -> struct ol__sm_agent * */
    struct ol__sm_node *nodes;
    size_t n_nodes;
    struct ol__sm_code *code;
    size_t n_code;
    uint64_t applied;
    int64_t now_ms; /* the time of the entry being applied */
    uint64_t entry_term; /* its proposing leader's term; 0: not carried */
    struct ol__sm_reqs reqs;
    struct ol__sm_stats stats;
    char errmsg[OL_ERRMSG_SIZE]; /* why an apply failed */
};

int ol__sm_done(struct ol__sm *sm, sqlite3_stmt *st);
void ol__sm_agent_free(struct ol__sm_agent *a);

/* Effects (sm.c). */
struct ol__effect *ol__fx_add(struct ol__effects *fx, int type);
void ol__fx_ckpt(struct ol__effects *fx, const char *agent, uint64_t epoch,
                 uint64_t seq, const uint8_t *hash, int status, int dup,
                 const char *why);
void ol__fx_agent(struct ol__effects *fx, const struct ol__sm_agent *a);
void ol__fx_cmd(struct ol__effects *fx, const struct ol__cmd *c, int status,
                const char *why);
void ol__fx_mail(struct ol__effects *fx, const char *to, const char *from,
                 uint64_t seq, uint32_t idx, const void *p, uint32_t len,
                 int64_t rowid);
int ol__sm_cache_node(struct ol__sm *sm, const struct ol__sm_node *n);
int ol__sm_write_agent(struct ol__sm *sm, const struct ol__sm_agent *a);
int ol__sm_write_node(struct ol__sm *sm, const struct ol__sm_node *n);
int ol__sm_seal_live(struct ol__sm *sm, int64_t id, int64_t delta);
int ol__sm_sweep_seals(struct ol__sm *sm);
/* The stored hash of (agent, seq): 1 found, 0 not, OL_EIO. */
int ol__sm_stored_hash(struct ol__sm *sm, const char *agent, uint64_t seq,
                       uint8_t out[OL_HASH_SIZE]);
int ol__sm_apply_cmd(struct ol__sm *sm, const struct ol__cmd *c,
                     struct ol__effects *fx);

/* Checkpoints (sm_ckpts.c): a CKPTS command; `trusted` when this process
 * sealed it (the hashes it lists are not computed again). */
int ol__sm_apply_ckpts(struct ol__sm *sm, const struct ol__cmd *cmd,
                       int trusted, struct ol__effects *fx);

/* Messages (sm_mail.c).  Store a message for agent `to`: 1 stored, 0 it
 * was stored before (a replay), OL_EIO. */
int ol__sm_mail_put(struct ol__sm *sm, struct ol__sm_agent *to,
                    const char *from, uint64_t seq, uint32_t idx,
                    const void *p, uint32_t len, struct ol__effects *fx);
/* The recipient of a SEND or CONFIG carrying `len` bytes, or NULL with
 * the refusal reported (no such agent, removed, mailbox full). */
struct ol__sm_agent *ol__sm_mail_target(struct ol__sm *sm,
                                        const struct ol__cmd *c,
                                        uint32_t len, struct ol__effects *fx);
/* Deliver checkpoint `c`'s outbox (bouncing what cannot be delivered) and
 * remove the messages it acknowledges.  0 or OL_EIO. */
int ol__sm_deliver(struct ol__sm *sm, const struct ol__ckpt *c,
                   struct ol__effects *fx);

/* The agent lifecycle (sm_agents.c).  A command that changes one agent's
 * row is an ol__sm_agent_fn run by ol__sm_apply_agent(), which finds the
 * agent, writes the row and reports the outcome: the function returns 0
 * with the row changed in place, 1 for success with nothing to write, or
 * an outcome code with `why` set (nothing changed). */
typedef int (*ol__sm_agent_fn)(struct ol__sm *sm, const struct ol__cmd *c,
                               struct ol__sm_agent *a, char *why,
                               size_t cap);
int ol__sm_apply_agent(struct ol__sm *sm, const struct ol__cmd *c,
                       struct ol__effects *fx, ol__sm_agent_fn fn);
int ol__sm_apply_spawn(struct ol__sm *sm, const struct ol__cmd *c,
                       struct ol__effects *fx);
int ol__sm_apply_start(struct ol__sm *sm, const struct ol__cmd *c,
                       struct ol__effects *fx);
int ol__sm_apply_move(struct ol__sm *sm, const struct ol__cmd *c,
                      struct ol__effects *fx);
int ol__sm_apply_config(struct ol__sm *sm, const struct ol__cmd *c,
                        struct ol__effects *fx);
int ol__sm_row_stop(struct ol__sm *sm, const struct ol__cmd *c,
                    struct ol__sm_agent *a, char *why, size_t cap);
int ol__sm_row_rm(struct ol__sm *sm, const struct ol__cmd *c,
                  struct ol__sm_agent *a, char *why, size_t cap);
int ol__sm_row_place(struct ol__sm *sm, const struct ol__cmd *c,
                     struct ol__sm_agent *a, char *why, size_t cap);
int ol__sm_row_quarantine(struct ol__sm *sm, const struct ol__cmd *c,
                          struct ol__sm_agent *a, char *why, size_t cap);

/* Applied request ids (sm_reqs.c).  ol__sm_apply_once() applies a
 * command of a format 2 entry unless its request id was applied before, in
 * which case it reports the first outcome again. */
int ol__sm_apply_once(struct ol__sm *sm, const struct ol__cmd *c,
                      struct ol__effects *fx);
int ol__sm_reqs_load(struct ol__sm *sm);
void ol__sm_reqs_clear(struct ol__sm_reqs *t);

/* Plugin builds (sm_code.c). */
int ol__sm_apply_code(struct ol__sm *sm, const struct ol__cmd *c,
                      struct ol__effects *fx);
int ol__sm_load_code(struct ol__sm *sm);

/* Crashes and mailbox counts (sm_crash.c). */
int ol__sm_apply_crash(struct ol__sm *sm, const struct ol__cmd *c,
                       struct ol__effects *fx);
/* Write an agent's crash count as it is in the cache. */
int ol__sm_crash_write(struct ol__sm *sm, const struct ol__sm_agent *a);
int ol__sm_load_crashes(struct ol__sm *sm);
/* A message for `a` was stored (+1) or removed (-1): keep the counts and
 * report when the mailbox crosses its soft limit either way. */
void ol__sm_mail_count(struct ol__sm *sm, struct ol__sm_agent *a, int delta,
                       uint64_t bytes, struct ol__effects *fx);
/* Would one more message of `len` bytes go past the hard cap? */
int ol__sm_mail_full(const struct ol__sm_agent *a, uint32_t len);

#endif
