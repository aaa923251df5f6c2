/*
 * The agent lifecycle commands: SPAWN makes an agent's row; STOP, START,
 * RM, PLACE, MOVE and QUARANTINE change it in place (ol__sm_apply_agent()
 * runs their ol__sm_row_* functions); CONFIG replaces its config and
 * queues it to the agent as a message.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "sm_int.h"

int ol__sm_apply_spawn(struct ol__sm *sm, const struct ol__cmd *c,
                       struct ol__effects *fx)
{
    struct ol__sm_agent *a = ol__map_get(&sm->agents, c->name);
    sqlite3_stmt *st = sm->stmt[ST_AGENT_INS];
    int64_t now = sm->now_ms;

    if (a) {
        /* A retried spawn is not a conflict. */
        if (a->req == c->req && c->req != 0)
            ol__fx_cmd(fx, c, 0, NULL);
        else if (a->status == OL_AGENT_REMOVED)
            ol__fx_cmd(fx, c, OL_EEXISTS,
                       "an agent of that name was removed; its history is "
                       "kept under the name, so choose another");
        else
            ol__fx_cmd(fx, c, OL_EEXISTS, "an agent with that name exists");
        return 0;
    }
    if (c->owner != 0 && ol__sm_node(sm, c->owner) == NULL) {
        ol__fx_cmd(fx, c, OL_EINVAL, "owner is not a node of this cluster");
        return 0;
    }
    a = calloc(1, sizeof *a);
    if (a == NULL || (a->config = malloc(c->config.len ? c->config.len
                                                       : 1)) == NULL) {
        free(a);
        return OL_EIO;
    }
    snprintf(a->name, sizeof a->name, "%s", c->name);
    snprintf(a->kind, sizeof a->kind, "%s", c->kind);
    memcpy(a->config, c->config.p, c->config.len);
    a->config_len = c->config.len;
    /* An unplaced agent waits at epoch 0 for the leader's first PLACE.  A
     * database made by `outlast recover` starts agents at its epoch floor,
     * above every epoch the node used before. */
    a->owner = c->owner;
    a->inc = c->inc;
    a->epoch = c->owner ? (sm->st->epoch_floor ? sm->st->epoch_floor : 1)
                        : 0;
    a->status = OL_AGENT_RUNNING;
    a->req = c->req;
    sqlite3_bind_text(st, 1, a->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, a->kind, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, a->config, (int)a->config_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)a->owner);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)a->epoch);
    sqlite3_bind_int(st, 6, a->status);
    sqlite3_bind_text(st, 7, "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)a->req);
    sqlite3_bind_int64(st, 9, now);
    sqlite3_bind_int64(st, 10, now);
    sqlite3_bind_int64(st, 11, (sqlite3_int64)a->inc);
    if (ol__sm_done(sm, st) != 0 || ol__map_put(&sm->agents, a->name, a)) {
        ol__sm_agent_free(a);
        return OL_EIO;
    }
    ol__fx_agent(fx, a);
    ol__fx_cmd(fx, c, 0, NULL);
    return 0;
}

int ol__sm_row_stop(struct ol__sm *sm, const struct ol__cmd *c,
                    struct ol__sm_agent *a, char *why, size_t cap)
{
    (void)sm;
    (void)c;
    (void)why;
    (void)cap;
    if (a->status == OL_AGENT_RUNNING)
        a->status = OL_AGENT_STOPPING;
    else if (a->status == OL_AGENT_QUARANTINED)
        a->status = OL_AGENT_STOPPED;
    return 0;
}

static int agent_start(struct ol__sm *sm, const struct ol__cmd *c,
                       struct ol__sm_agent *a, char *why, size_t cap)
{
    (void)sm;
    (void)c;
    if (a->status == OL_AGENT_RUNNING)
        return 1; /* already running: success, nothing to write */
    if (a->status != OL_AGENT_STOPPED && a->status != OL_AGENT_QUARANTINED) {
        snprintf(why, cap, "agent is stopping");
        return OL_ESTATE;
    }
    a->status = OL_AGENT_RUNNING;
    a->epoch++;
    a->reason[0] = '\0';
    /* A fresh start: crashes before it do not count (ol__sm_apply_start()
     * writes the crashes row). */
    a->crashes = 0;
    a->crash_since_ms = 0;
    a->crash_floor = a->epoch;
    return 0;
}

/* Only a stopped (or quarantined) agent is removed: its final checkpoint
 * is its last record.  The row stays as the tombstone. */
int ol__sm_row_rm(struct ol__sm *sm, const struct ol__cmd *c,
                  struct ol__sm_agent *a, char *why, size_t cap)
{
    (void)c;
    if (a->status != OL_AGENT_STOPPED && a->status != OL_AGENT_QUARANTINED) {
        snprintf(why, cap, "the agent is %s: stop it first (`outlast rm` "
                           "does)", ol__status_name(a->status));
        return OL_ESTATE;
    }
    /* Its undelivered messages go with it. */
    sqlite3_bind_text(sm->stmt[ST_MAIL_CLEAR], 1, a->name, -1,
                      SQLITE_STATIC);
    if (ol__sm_done(sm, sm->stmt[ST_MAIL_CLEAR]) != 0)
        return OL_EIO;
    a->mail_n = 0;
    a->mail_bytes = 0;
    a->status = OL_AGENT_REMOVED;
    snprintf(a->reason, sizeof a->reason, "removed");
    return 0;
}

int ol__sm_row_place(struct ol__sm *sm, const struct ol__cmd *c,
                     struct ol__sm_agent *a, char *why, size_t cap)
{
    if (c->epoch != a->epoch + 1) {
        snprintf(why, cap,
                 "placement for epoch %" PRIu64 " but the agent is at %" PRIu64,
                 c->epoch, a->epoch);
        return OL_ESTALE;
    }
    if (ol__sm_node(sm, c->owner) == NULL) {
        snprintf(why, cap, "owner is not a node of this cluster");
        return OL_EINVAL;
    }
    a->owner = c->owner;
    a->inc = c->inc;
    a->epoch = c->epoch;
    return 0;
}

/* A placement decided by the leader of an older term than the entry it
 * lands in came from a deposed leader (a forward, or a leader back from a
 * pause): what it saw is stale, so it is refused. */
static int agent_move(struct ol__sm *sm, const struct ol__cmd *c,
                      struct ol__sm_agent *a, char *why, size_t cap)
{
    if (sm->entry_term && c->term < sm->entry_term) {
        snprintf(why, cap,
                 "placement decided in term %" PRIu64 ", applied in term "
                 "%" PRIu64 ": a deposed leader's",
                 c->term, sm->entry_term);
        return OL_ESTALE;
    }
    return ol__sm_row_place(sm, c, a, why, cap);
}

int ol__sm_row_quarantine(struct ol__sm *sm, const struct ol__cmd *c,
                          struct ol__sm_agent *a, char *why, size_t cap)
{
    (void)sm;
    if (c->epoch != a->epoch || (a->status != OL_AGENT_RUNNING &&
                                 a->status != OL_AGENT_STOPPING)) {
        snprintf(why, cap, "quarantine for another epoch");
        return OL_ESTALE;
    }
    a->status = OL_AGENT_QUARANTINED;
    snprintf(a->reason, sizeof a->reason, "%s", c->reason);
    return 0;
}

int ol__sm_apply_agent(struct ol__sm *sm, const struct ol__cmd *c,
                       struct ol__effects *fx, ol__sm_agent_fn fn)
{
    struct ol__sm_agent *a = ol__map_get(&sm->agents, c->name);
    char why[160];
    int old, rv;

    if (a == NULL) {
        ol__fx_cmd(fx, c, OL_ENOTFOUND, "no such agent");
        return 0;
    }
    if (a->status == OL_AGENT_REMOVED) {
        ol__fx_cmd(fx, c, OL_ENOTFOUND, "the agent was removed");
        return 0;
    }
    old = a->status;
    why[0] = '\0';
    rv = fn(sm, c, a, why, sizeof why);
    if (rv != 0) {
        ol__fx_cmd(fx, c, rv > 0 ? 0 : rv, rv > 0 ? NULL : why);
        return 0;
    }
    if (ol__sm_write_agent(sm, a) != 0)
        return OL_EIO;
    if (a->status != old || c->type == OL_CMD_PLACE ||
        c->type == OL_CMD_MOVE || c->type == OL_CMD_START)
        ol__fx_agent(fx, a);
    ol__fx_cmd(fx, c, 0, NULL);
    return 0;
}

int ol__sm_apply_start(struct ol__sm *sm, const struct ol__cmd *c,
                       struct ol__effects *fx)
{
    const struct ol__sm_agent *a = ol__sm_agent(sm, c->name);
    uint64_t epoch = a ? a->epoch : 0;
    int rv = ol__sm_apply_agent(sm, c, fx, agent_start);

    a = ol__sm_agent(sm, c->name);
    if (rv == 0 && a && a->epoch != epoch)
        rv = ol__sm_crash_write(sm, a);
    return rv;
}

/* A new config: the row (what open() sees from now on) and a message from
 * "@config" that the agent sees as OL_EVENT_CONFIG, in its checkpointed
 * mailbox like any other. */
int ol__sm_apply_config(struct ol__sm *sm, const struct ol__cmd *c,
                        struct ol__effects *fx)
{
    struct ol__sm_agent *a = ol__sm_mail_target(sm, c, c->config.len, fx);
    sqlite3_stmt *st;
    uint8_t *cfg;

    if (a == NULL)
        return 0;
    cfg = malloc(c->config.len ? c->config.len : 1);
    if (cfg == NULL)
        return OL_EIO;
    memcpy(cfg, c->config.p, c->config.len);
    st = sm->stmt[ST_AGENT_CFG];
    sqlite3_bind_blob(st, 1, cfg, (int)c->config.len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, sm->now_ms);
    sqlite3_bind_text(st, 3, a->name, -1, SQLITE_STATIC);
    if (ol__sm_done(sm, st) != 0) {
        free(cfg);
        return OL_EIO;
    }
    free(a->config);
    a->config = cfg;
    a->config_len = c->config.len;
    if (ol__sm_mail_put(sm, a, "@config", c->msg_seq, 0, c->config.p,
                        c->config.len, fx) < 0)
        return OL_EIO;
    ol__fx_agent(fx, a);
    ol__fx_cmd(fx, c, 0, NULL);
    return 0;
}

int ol__sm_apply_move(struct ol__sm *sm, const struct ol__cmd *c,
                      struct ol__effects *fx)
{
    struct ol__sm_agent *a = ol__map_get(&sm->agents, c->name);
    uint64_t from = a ? a->owner : 0;
    int rv;

    /* The hand-off rides on this one effect; the stored row never keeps
     * it, so no later change of the agent waits again. */
    if (a && c->hold_ms && from && from != c->owner) {
        a->handoff_from = from;
        a->handoff_ms = c->hold_ms;
    }
    rv = ol__sm_apply_agent(sm, c, fx, agent_move);
    if (a) {
        a->handoff_from = 0;
        a->handoff_ms = 0;
    }
    return rv;
}

