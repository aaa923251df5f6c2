/*
 * `effects NAME`: an agent's effects as its stored checkpoints tell them
 * (state/effects.h), read on the loop thread's read-only connection, with
 * what this node knows of the open ones when it hosts the agent: one
 * being performed is "in flight", one waiting to be tried again
 * "retrying", and their attempts and last failure are this node's.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "base/sizes.h"
#include "state/effects.h"
#include "agent.h"
#include "fx.h"
#include "node_view.h"
#include "handlers_int.h"

/* What the hosting node knows of effect `r`, if it hosts the agent. */
static void live_row(const struct ol_agent *a, struct ol__fxrow *r)
{
    const struct ol__fx *f;

    if (r->closed_seq)
        return;
    f = ol__fx_find(a, r->seq, r->idx);
    if (f == NULL)
        return;
    if (f->state == OL_FX_RUNNING)
        r->state = OL_FXROW_IN_FLIGHT;
    else if (f->state == OL_FX_BACKOFF)
        r->state = OL_FXROW_RETRYING;
    else if (f->in_doubt)
        r->state = OL_FXROW_IN_DOUBT;
    r->in_doubt |= f->in_doubt;
    r->attempts = f->attempts;
    snprintf(r->note, sizeof r->note, "%s", f->last);
}

/* The request's state filter and limit: 0, or -1 after replying. */
static int effects_args(struct ol__ctl_req *req, const msgpack_object *args,
                        int *state, uint32_t *limit)
{
    const msgpack_object *lim = ol__arg(args, "limit");
    char s[24];

    *state = 0;
    if (ol__arg(args, "state") &&
        (ol__arg_str(args, "state", s, sizeof s) != 0 ||
         (*state = ol__fxrow_state_parse(s)) == 0)) {
        ol__ctl_reply_error(req, OL_EINVAL,
                            "effects: state must be pending, in-flight, "
                            "retrying, done, failed, in-doubt or open");
        return -1;
    }
    if (lim && (lim->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
                lim->via.u64 > UINT32_MAX)) {
        ol__ctl_reply_error(req, OL_EINVAL, "effects: bad limit");
        return -1;
    }
    *limit = lim ? (uint32_t)lim->via.u64 : 0;
    return 0;
}

void ol__op_effects(struct ol__node *n, struct ol__ctl_req *req,
                    const msgpack_object *args)
{
    char name[OL_NAME_MAX + 2], err[OL_ERRMSG_SIZE] = "";
    struct ol__fxlist l;
    struct ol_agent *a;
    struct ol__resp r;
    uint32_t limit;
    int state, rv;

    if (ol__arg_name(req, "effects", args, name) != 0 ||
        effects_args(req, args, &state, &limit) != 0)
        return;
    rv = ol__fxlist_load(ol__node_reader(n), name, &l, err);
    if (rv != 0) {
        ol__fxlist_free(&l);
        if (ol__sqlite_damaged(ol__node_reader(n)))
            ol__node_storage_fault(n, name, "effects: %s",
                                   err[0] ? err : ol_strerror(rv));
        ol__ctl_reply_error(req, rv, "%s", err[0] ? err : ol_strerror(rv));
        return;
    }
    a = ol__agent_get(n, name);
    for (size_t i = 0; a && i < l.n; i++)
        live_row(a, l.v[i]);
    ol__resp_begin(&r);
    ol__pk_key(&r.m, "effects");
    rv = ol__fxlist_pack(&l, state, limit, &r.pk, err);
    ol__fxlist_free(&l);
    if (rv != 0) {
        ol__buf_close(&r.buf);
        ol__ctl_reply_error(req, rv, "%s", err);
        return;
    }
    ol__pk_kv_bool(&r.m, "hosted", a != NULL);
    ol__resp_send(&r, req);
}
