/*
 * The state machine's apply path: an entry's commands in order, each by
 * its row in the apply table below.  Checkpoints apply in sm_ckpts.c, the
 * agent lifecycle in sm_agents.c, crash reports in sm_crash.c, plugin
 * builds in sm_code.c; membership, SEND and NOOP here.  A new command
 * type is its apply function here (or in the file of its kind) and its
 * row in the table.  Refusals are effects, not errors: a refused command
 * must not stop the rest of its entry from applying.
 */
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "sm_int.h"

int ol__sm_apply(struct ol__sm *sm, const void *entry, size_t len,
                 int trusted, struct ol__effects *fx)
{
    struct ol__entry e;
    char err[OL_ERRMSG_SIZE];
    int rv = 0;

    rv = ol__entry_decode(entry, len, &e, err);
    if (rv != 0) {
        sm->stats.entries_malformed++;
        snprintf(sm->errmsg, sizeof sm->errmsg, "%s", err);
        return rv == OL_ENOMEM ? OL_EIO : rv;
    }
    /* Every clock the apply path writes comes from the entry, so that all
     * nodes write the same rows. */
    sm->now_ms = e.time_ms;
    sm->entry_term = e.term;
    for (uint32_t i = 0; i < e.n && rv == 0; i++) {
        const struct ol__cmd *c = &e.cmds[i];

        /* Format 1 entries predate the table of applied request ids:
         * they are applied as they were then. */
        if (c->type == OL_CMD_CKPTS)
            rv = ol__sm_apply_ckpts(sm, c, trusted, fx);
        else if (e.format >= 2)
            rv = ol__sm_apply_once(sm, c, fx);
        else
            rv = ol__sm_apply_cmd(sm, c, fx);
    }
    ol__entry_free(&e);
    return rv;
}

static int apply_node(struct ol__sm *sm, const struct ol__cmd *c,
                      struct ol__effects *fx)
{
    const struct ol__sm_node *cur = ol__sm_node(sm, c->node_id);
    struct ol__effect *e;
    struct ol__sm_node n;

    if (c->type == OL_CMD_NODE_DEL && cur == NULL) {
        ol__fx_cmd(fx, c, OL_ENOTFOUND, "no such node");
        return 0;
    }
    if (c->type == OL_CMD_NODE) {
        for (size_t i = 0; i < sm->n_nodes; i++)
            if (sm->nodes[i].id != c->node_id && !sm->nodes[i].removed &&
                memcmp(sm->nodes[i].pk, c->pk, OL_PK_SIZE) == 0) {
                ol__fx_cmd(fx, c, OL_EEXISTS,
                           "that key is another node's already");
                return 0;
            }
    }
    memset(&n, 0, sizeof n);
    if (c->type == OL_CMD_NODE) {
        n.id = c->node_id;
        memcpy(n.pk, c->pk, OL_PK_SIZE);
        snprintf(n.address, sizeof n.address, "%s", c->address);
        snprintf(n.labels, sizeof n.labels, "%s", c->labels);
    } else {
        n = *cur;
        n.removed = 1;
    }
    if (ol__sm_write_node(sm, &n) != 0 || ol__sm_cache_node(sm, &n))
        return OL_EIO;
    e = ol__fx_add(fx, OL_FX_NODE);
    if (e)
        e->u.node = n;
    ol__fx_cmd(fx, c, 0, NULL);
    return 0;
}

static int apply_send(struct ol__sm *sm, const struct ol__cmd *c,
                      struct ol__effects *fx)
{
    struct ol__sm_agent *a = ol__sm_mail_target(sm, c, c->payload.len, fx);

    if (a == NULL)
        return 0;
    if (ol__sm_mail_put(sm, a, "@cli", c->msg_seq, 0, c->payload.p,
                        c->payload.len, fx) < 0)
        return OL_EIO;
    ol__fx_cmd(fx, c, 0, NULL);
    return 0;
}

static int apply_noop(struct ol__sm *sm, const struct ol__cmd *c,
                      struct ol__effects *fx)
{
    (void)sm;
    (void)c;
    (void)fx;
    return 0;
}
/* How each command type applies: by its function, or, for a command that
 * changes one agent's row, by its row function under ol__sm_apply_agent().
 * The codec's table (record/cmd.c) has the same types, which a unit test
 * checks. */
static const struct {
    uint32_t type;
    int (*apply)(struct ol__sm *sm, const struct ol__cmd *c,
                 struct ol__effects *fx);
    ol__sm_agent_fn row;
} appliers[] = {
    {OL_CMD_SPAWN, ol__sm_apply_spawn, NULL},
    {OL_CMD_STOP, NULL, ol__sm_row_stop},
    {OL_CMD_PLACE, NULL, ol__sm_row_place},
    {OL_CMD_SEND, apply_send, NULL},
    {OL_CMD_QUARANTINE, NULL, ol__sm_row_quarantine},
    {OL_CMD_NODE, apply_node, NULL},
    {OL_CMD_NODE_DEL, apply_node, NULL},
    {OL_CMD_START, ol__sm_apply_start, NULL},
    {OL_CMD_NOOP, apply_noop, NULL},
    {OL_CMD_CRASH, ol__sm_apply_crash, NULL},
    {OL_CMD_CODE, ol__sm_apply_code, NULL},
    {OL_CMD_MOVE, ol__sm_apply_move, NULL},
    {OL_CMD_RM, NULL, ol__sm_row_rm},
    {OL_CMD_CONFIG, ol__sm_apply_config, NULL},
};

#define N_APPLIERS (sizeof appliers / sizeof appliers[0])

int ol__sm_knows(uint32_t type)
{
    if (type == OL_CMD_CKPTS)
        return 1;
    for (size_t i = 0; i < N_APPLIERS; i++)
        if (appliers[i].type == type)
            return 1;
    return 0;
}

int ol__sm_apply_cmd(struct ol__sm *sm, const struct ol__cmd *c,
                     struct ol__effects *fx)
{
    for (size_t i = 0; i < N_APPLIERS; i++) {
        if (appliers[i].type != c->type)
            continue;
        if (appliers[i].apply)
            return appliers[i].apply(sm, c, fx);
        return ol__sm_apply_agent(sm, c, fx, appliers[i].row);
    }
    /* The codec decoded it, so the tables disagree: a bug, and stopping is
     * safer than skipping a committed command. */
    snprintf(sm->errmsg, sizeof sm->errmsg,
             "command type %u has no apply function", c->type);
    return OL_ENOTSUP;
}
