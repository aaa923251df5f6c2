/*
 * State machine internals shared by sm.c and sm_snap.c.
 */
#ifndef OL_SM_INT_H
#define OL_SM_INT_H

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
    SM_N_STMTS
};

struct ol__sm {
    struct ol__store *st;
    struct ol__sm_config cfg;
    sqlite3_stmt *stmt[SM_N_STMTS];
    struct ol__map agents; /* name -> struct ol__sm_agent * */
    struct ol__sm_node *nodes;
    size_t n_nodes;
    uint64_t applied;
    struct ol__sm_stats stats;
};

int ol__sm_done(struct ol__sm *sm, sqlite3_stmt *st);
int ol__sm_cache_node(struct ol__sm *sm, const struct ol__sm_node *n);
int ol__sm_write_agent(struct ol__sm *sm, const struct ol__sm_agent *a);
int ol__sm_write_node(struct ol__sm *sm, const struct ol__sm_node *n);
int ol__sm_seal_live(struct ol__sm *sm, int64_t id, int64_t delta);
int ol__sm_sweep_seals(struct ol__sm *sm);
int ol__sm_apply_cmd(struct ol__sm *sm, const struct ol__cmd *c,
                     struct ol__effects *fx);

#endif
