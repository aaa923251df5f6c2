/*
 * Control requests waiting for their command's outcome: the list, and
 * the answers when the state machine reports a command, an agent's new
 * status or its first checkpoint.  A stop answers after the final
 * checkpoint, a spawn after the first, an rm after its stop and then its
 * RM.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "handlers.h"
#include "handlers_int.h"
#include "node_view.h"

static void wait_for(struct ol__node *n, struct ol__ctl_req *req,
                     uint64_t id, const char *op, const char *name,
                     uint64_t msg_seq)
{
    struct ol__waiter *w = calloc(1, sizeof *w);

    if (w == NULL) {
        ol__ctl_reply_error(req, OL_ENOMEM, "out of memory");
        return;
    }
    w->req = id;
    w->ctl = req;
    w->msg_seq = msg_seq;
    snprintf(w->op, sizeof w->op, "%s", op);
    snprintf(w->name, sizeof w->name, "%s", name);
    w->next = *ol__node_waiters(n);
    *ol__node_waiters(n) = w;
}

void ol__propose_and_wait(struct ol__node *n, struct ol__ctl_req *req,
                          struct ol__entry_w *w, uint64_t id,
                          const char *op, const char *name,
                          uint64_t msg_seq)
{
    int rv = ol__node_propose(n, w);

    if (rv != 0)
        ol__ctl_reply_error(req, rv, "%s '%s': %s", op, name,
                            ol_strerror(rv));
    else
        wait_for(n, req, id, op, name, msg_seq);
}

struct ol__waiter *ol__waiter_of(struct ol__node *n,
                                 struct ol__ctl_req *req)
{
    struct ol__waiter *w = *ol__node_waiters(n);

    return w && w->ctl == req ? w : NULL;
}

/* Propose the RM a waiting `rm` was waiting to send.  Returns 0, or -1
 * after answering the waiter (which the caller then frees). */
static int rm_now(struct ol__node *n, struct ol__waiter *wt)
{
    struct ol__entry_w w;
    int rv;

    ol__entry_w_init(&w);
    rv = ol__entry_add_rm(&w, wt->rm_id, wt->name);
    if (rv == 0)
        rv = ol__node_propose(n, &w);
    ol__entry_w_close(&w);
    if (rv != 0) {
        ol__ctl_reply_error(wt->ctl, rv, "rm '%s': %s", wt->name,
                            ol_strerror(rv));
        return -1;
    }
    wt->req = wt->rm_id;
    wt->first = 0;
    return 0;
}

static void answer(struct ol__waiter *w, const struct ol__effect *e,
                   const struct ol__sm_agent *row)
{
    struct ol__resp r;

    if (e->status != 0) {
        ol__ctl_reply_error(w->ctl, e->status, "%s '%s': %s", w->op,
                            w->name, e->errmsg[0] ? e->errmsg
                                                  : ol_strerror(e->status));
        return;
    }
    ol__resp_begin(&r);
    ol__pk_kv_str(&r.m, "name", w->name);
    if (w->msg_seq)
        ol__pk_kv_uint(&r.m, "msg_seq", w->msg_seq);
    if (row)
        ol__resp_row(&r, row);
    ol__resp_send(&r, w->ctl);
}

void ol__waiters_effect(struct ol__node *n, const struct ol__effect *e,
                        const struct ol__sm_agent *row)
{
    struct ol__waiter **pp = ol__node_waiters(n), *w;

    if (e->u.cmd.req == 0)
        return;
    /* Every waiter for the command: a client that sent the same request
     * id twice to this node waits twice for one command. */
    while ((w = *pp) != NULL) {
        if (w->bulk && ol__bulk_effect(w->bulk, e, row)) {
            *pp = w->next;
            free(w);
            continue;
        }
        if (w->bulk || w->req != e->u.cmd.req) {
            pp = &w->next;
            continue;
        }
        /* `stop` answers once the final checkpoint has committed. */
        if (e->status == 0 && strcmp(w->op, "stop") == 0 && row &&
            row->status == OL_AGENT_STOPPING) {
            w->req = 0;
            pp = &w->next;
            continue;
        }
        /* An rm whose stop committed: remove once the final checkpoint
         * has (the agent is STOPPING until then), or now. */
        if (e->status == 0 && w->first == 2) {
            if (row && row->status == OL_AGENT_STOPPING) {
                w->req = 0;
                pp = &w->next;
                continue;
            }
            if (rm_now(n, w) == 0) {
                pp = &w->next;
                continue;
            }
            *pp = w->next;
            free(w);
            continue;
        }
        /* A new agent's spawn answers after its first checkpoint (or its
         * quarantine), so a plugin that refuses its config fails the
         * spawn.  A retried spawn (no row) answers now. */
        if (e->status == 0 && w->first && row) {
            w->req = 0;
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        answer(w, e, row);
        free(w);
    }
}

void ol__waiters_agent(struct ol__node *n, const struct ol__sm_agent *row)
{
    struct ol__waiter **pp = ol__node_waiters(n), *w;
    struct ol__resp r;

    if (row->status == OL_AGENT_RUNNING || row->status == OL_AGENT_STOPPING)
        return;
    while ((w = *pp) != NULL) {
        if (w->bulk && ol__bulk_agent(w->bulk, row)) {
            *pp = w->next;
            free(w);
            continue;
        }
        if (w->req != 0 || strcmp(w->name, row->name) != 0) {
            pp = &w->next;
            continue;
        }
        if (w->first == 2) {
            /* The rm's stop is done: now the tombstone. */
            if (rm_now(n, w) == 0) {
                pp = &w->next;
                continue;
            }
            *pp = w->next;
            free(w);
            continue;
        }
        *pp = w->next;
        if (w->first && row->status == OL_AGENT_QUARANTINED) {
            ol__ctl_reply_error(w->ctl, OL_EPLUGIN,
                                "spawn '%s': the agent was quarantined "
                                "before its first checkpoint: %s; it is "
                                "kept (fix it, then `outlast start`, or "
                                "`outlast rm` it)",
                                w->name, row->reason);
            free(w);
            continue;
        }
        ol__resp_begin(&r);
        ol__pk_kv_str(&r.m, "name", w->name);
        ol__resp_row(&r, row);
        ol__resp_send(&r, w->ctl);
        free(w);
    }
}

void ol__waiters_ckpt(struct ol__node *n, const char *name)
{
    struct ol__waiter **pp = ol__node_waiters(n), *w;
    const struct ol__sm_agent *row;
    struct ol__resp r;

    while ((w = *pp) != NULL) {
        if (w->bulk && ol__bulk_ckpt(w->bulk, name)) {
            *pp = w->next;
            free(w);
            continue;
        }
        if (w->req != 0 || w->first != 1 || strcmp(w->name, name) != 0) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        row = ol__node_row(n, name);
        ol__resp_begin(&r);
        ol__pk_kv_str(&r.m, "name", w->name);
        if (row)
            ol__resp_row(&r, row);
        ol__resp_send(&r, w->ctl);
        free(w);
    }
}

void ol__waiters_drop(struct ol__node *n)
{
    struct ol__waiter *w = *ol__node_waiters(n), *next;

    for (; w; w = next) {
        next = w->next;
        if (w->bulk) {
            ol__bulk_drop(w->bulk);
            free(w);
            continue;
        }
        ol__ctl_reply_error(w->ctl, OL_ESHUTDOWN,
                            "%s '%s': the node is shutting down; the outcome "
                            "is unknown",
                            w->op, w->name);
        free(w);
    }
    *ol__node_waiters(n) = NULL;
}
