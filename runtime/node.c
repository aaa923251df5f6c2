/*
 * The node: owns the loop's handles, the data directory, the store, the
 * commit path and the agents hosted here, and turns the state machine's
 * effects into actions (host an agent, release one, deliver mail, answer a
 * waiting CLI request).  Opening it is in node_init.c, starting it in
 * node_start.c, and the draining shutdown in node_stop.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libgen.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "base/pack.h"
#include "agent.h"
#include "handlers.h"
#include "hostproc.h"
#include "node.h"
#include "restart.h"
#include "resume.h"
#include "step.h"
#include "node_int.h"



int ol__node_propose(struct ol__node *n, const struct ol__entry_w *w)
{
    int rv = n->replica->vt->propose_cmds(n->replica, w);

    if (rv != 0)
        ol_log(OL_LOG_ERROR, "propose %u command(s): %s", w->n,
               ol_strerror(rv));
    return rv;
}

int ol__node_owns(const struct ol__node *n, const struct ol__sm_agent *row)
{
    return row->owner == n->self_id && row->inc == n->inc &&
           (row->status == OL_AGENT_RUNNING ||
            row->status == OL_AGENT_STOPPING);
}

int ol__node_sm_busy(const struct ol__node *n)
{
    return n->replica && n->replica->vt->sm_busy &&
           n->replica->vt->sm_busy(n->replica);
}

void ol__node_mail_full(struct ol__node *n, const char *name, int full)
{
    char *key = ol__map_get(&n->full, name);

    if (full && key == NULL) {
        key = strdup(name);
        if (key == NULL || ol__map_put(&n->full, key, key) != 0) {
            free(key);
            return;
        }
        ol_log_rl(OL_LOG_WARN, "agent '%s': mailbox full; senders get "
                               "OL_AGENT_EFULL until it drains",
                  name);
    } else if (!full && key) {
        ol__map_del(&n->full, name);
        free(key);
    } else {
        return;
    }
    for (struct ol__hostproc *hp = n->hps; hp; hp = hp->next)
        ol__hp_full(hp, name, full);
}

void ol__node_code_current(struct ol__node *n, struct ol__code *c)
{
    const struct ol__sm_code *have, *want;
    struct ol__entry_w w;

    if (!n->cluster || n->sm == NULL || c->state != OL_CODE_READY)
        return;
    have = ol__sm_code(n->sm, c->kind, n->self_id);
    want = ol__sm_code(n->sm, c->kind, 0);
    if (have && memcmp(have->hash, c->hash, OL_HASH_SIZE) == 0 &&
        (!c->wanted ||
         (want && memcmp(want->hash, c->hash, OL_HASH_SIZE) == 0)))
        return;
    ol__entry_w_init(&w);
    if (ol__entry_add_code(&w, ol__random_id(), n->self_id, c->kind,
                           c->hash, c->version, c->wanted) == 0) {
        /* Right after a start this node does not know the cluster's
         * feature level yet; it learns it with its first lease, and
         * announces its plugins again then (ol__node_code_later). */
        int rv = n->replica->vt->propose_cmds(n->replica, &w);

        if (rv == OL_ENOTSUP) {
            n->code_later = 1;
            ol_log(OL_LOG_DEBUG,
                   "plugin '%s': announced once this node holds a lease",
                   c->kind);
        } else if (rv != 0) {
            ol_log(OL_LOG_ERROR, "plugin '%s': announce it: %s", c->kind,
                   ol_strerror(rv));
        }
    }
    ol__entry_w_close(&w);
}

void ol__node_code_later(struct ol__node *n)
{
    if (!n->code_later)
        return;
    n->code_later = 0;
    for (struct ol__code *c = ol__codes_first(&n->codes); c; c = c->next)
        if (ol__map_get(&n->codes.current, c->kind) == c)
            ol__node_code_current(n, c);
}

/* Another node asked for a build of `kind`: say which one runs here, so
 * placement knows whether this node can take the kind's agents. */
static void code_wanted(struct ol__node *n, const char *kind)
{
    struct ol__code *c;
    char err[OL_ERRMSG_SIZE];

    if (ol__code_current(&n->codes, kind, 1, &c, err) == 0)
        ol__node_code_current(n, c);
}

/* An agent's row changed: host it, hand it over or let it go. */
static void fx_agent(struct ol__node *n, const struct ol__sm_agent *row)
{
    int mine = ol__node_owns(n, row);
    struct ol_agent *a;

    ol__events_agent(&n->events, row, 0);
    ol__waiters_agent(n, row);
    a = ol__agent_get(n, row->name);
    if (mine && !n->stopping && a == NULL)
        ol__resume_host(n, row);
    else if (mine && !n->stopping)
        ol__agent_host(n, row);
    else if (row->handoff_ms && row->handoff_from == n->self_id)
        ol__agent_hand_over(n, row);
    else if (a && a->phase != OL_PHASE_CLOSING)
        ol__agent_release(a, ol__status_name(row->status));
}

/* A command's outcome; `prev` is the effect before it. */
static void fx_cmd(struct ol__node *n, const struct ol__effect *e,
                   const struct ol__effect *prev)
{
    /* The state machine reports the agent row a command changed right
     * before the command's outcome. */
    const struct ol__sm_agent *row = NULL;

    if (prev && prev->type == OL_FX_AGENT &&
        strcmp(prev->u.agent.name, e->u.cmd.name) == 0)
        row = &prev->u.agent;
    if (e->u.cmd.cmd_type == OL_CMD_CRASH)
        ol__agent_crash_recorded(n, e->u.cmd.name, e->u.cmd.req, e->status,
                                 row);
    if (e->u.cmd.cmd_type == OL_CMD_CODE && e->status == 0 &&
        e->u.cmd.name[0] && !n->stopping)
        code_wanted(n, e->u.cmd.name);
    if (n->waiters == NULL)
        return;
    if (row == NULL && e->status == 0 && n->sm &&
        (e->u.cmd.cmd_type == OL_CMD_STOP ||
         e->u.cmd.cmd_type == OL_CMD_START) && n->cluster)
        row = ol__sm_agent(n->sm, e->u.cmd.name);
    ol__waiters_effect(n, e, row);
}

void ol__node_effects(void *data, struct ol__effects *fx)
{
    struct ol__node *n = data;
    struct ol__effect *prev = NULL;

    for (struct ol__effect *e = fx->head; e; e = e->next) {
        if (e->type == OL_FX_AGENT && e->u.agent.epoch > n->max_epoch)
            n->max_epoch = e->u.agent.epoch;
        else if (e->type == OL_FX_CKPT && e->status == 0 &&
                 e->u.ckpt.epoch > n->max_epoch)
            n->max_epoch = e->u.ckpt.epoch;
    }
    /* What was just committed is durable: the record may say so. */
    if (n->sm)
        ol__nstate_note(&n->nst, n->store.commits, ol__sm_applied(n->sm),
                        n->max_epoch);
    for (struct ol__effect *e = fx->head; e; prev = e, e = e->next) {
        struct ol_agent *a;

        switch (e->type) {
        case OL_FX_CKPT:
            a = ol__agent_get(n, e->u.ckpt.agent);
            if (a)
                ol__step_committed(a, e);
            if (n->waiters && e->status == 0)
                ol__waiters_ckpt(n, e->u.ckpt.agent);
            break;
        case OL_FX_AGENT:
            fx_agent(n, &e->u.agent);
            break;
        case OL_FX_MAIL:
            a = ol__agent_get(n, e->u.mail.to);
            if (a)
                ol__agent_mail(a, e->u.mail.from, e->u.mail.seq,
                               e->u.mail.idx, e->u.mail.payload,
                               e->u.mail.len, e->u.mail.rowid);
            break;
        case OL_FX_CMD:
            fx_cmd(n, e, prev);
            break;
        case OL_FX_MAILBOX:
            ol__node_mail_full(n, e->u.box.name, e->u.box.full);
            break;
        case OL_FX_NODE:
            break;
        case OL_FX_STORAGE:
            ol__node_storage_fault(n, NULL, "commit: %s", e->errmsg);
            break;
        }
    }
    /* Agents waiting to be hosted read the state machine, which on one
     * node is still only between batches (resume.c). */
    ol__resume_kick(n);
}

