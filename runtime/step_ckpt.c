/*
 * Taking an agent's checkpoint: its state saved (in the node, or by its
 * host process) and checked to be one msgpack object, encoded with its
 * outbox, timers and acknowledged messages, hashed onto the agent's chain
 * and proposed; and what follows when that checkpoint commits or is
 * refused.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostproc.h"
#include "base/log.h"
#include "node.h"
#include "agent.h"
#include "host.h"
#include "step.h"

#include "base/err.h"
#include "base/mpr.h"
#include "restart.h"
#include "step_int.h"
#include "fx.h"

/* Why save() output was refused, or NULL. */
static const char *check_state(const uint8_t *p, size_t len, int rv,
                               char *why, size_t cap)
{
    size_t off = 0;

    if (rv == OL_ETOOBIG || len > OL_AGENT_STATE_MAX) {
        snprintf(why, cap, "save() wrote more than %u bytes of state",
                 OL_AGENT_STATE_MAX);
        return why;
    }
    if (rv == OL_EINVAL) {
        snprintf(why, cap, "save() returned %d (an invalid argument, such as "
                           "a write from a NULL pointer)", rv);
        return why;
    }
    if (rv != 0) {
        snprintf(why, cap, "save() returned %d", rv);
        return why;
    }
    if (len == 0) {
        snprintf(why, cap, "save() wrote no state");
        return why;
    }
    if (ol__mp_check(p, len, &off) != 0) {
        snprintf(why, cap,
                 "save() wrote %zu bytes that are not one msgpack object "
                 "(bad at byte %zu)",
                 len, off);
        return why;
    }
    return NULL;
}

/* The sink handed to save(): remembers an overflow even if the plugin
 * ignores the error write() returned, and refuses a NULL source. */
struct state_sink {
    struct ol__buf *buf;
    int err;
};

static int sink_write(void *data, const char *p, size_t n)
{
    struct state_sink *s = data;
    int rv = p == NULL && n ? OL_EINVAL : ol__buf_append(s->buf, p, n);

    if (rv != 0 && s->err == 0)
        s->err = rv;
    return rv;
}

int ol__step_checkpoint(struct ol_agent *a)
{
    struct ol__node *n = a->node;
    struct state_sink ss = {&n->scratch, 0};
    struct ol_sink sink = {&ss, sink_write};
    int rv;

    uv_timer_stop(&a->flush);
    if (a->rehost)
        return 0; /* it starts again from its committed head */
    if (a->hp) {
        if (a->busy) {
            a->save_due = 1;
            return 0;
        }
        ol__hp_save(a->hp, a);
        a->busy = 1;
        a->busy_type = 0;
        return 0;
    }
    if (a->self == NULL)
        return OL_ESTATE;
    ol__buf_reset(&n->scratch);
    n->scratch.max = OL_AGENT_STATE_MAX;
    ol__inproc_enter(a, OL_MARK_SAVE, 0);
    rv = a->code->plugin.vt->save(a->self, a, &sink);
    ol__inproc_leave(a);
    return ol__step_propose(a, n->scratch.base, n->scratch.len, ss.err ? ss.err : rv);
}

/* The agent's next checkpoint record, over `state` and the timers
 * copied into `timers` (room for a->n_timers); it borrows from both and
 * from the agent. */
static void ckpt_of(struct ol_agent *a, const uint8_t *state, size_t len,
                    struct ol__timer *timers, struct ol__ckpt *c)
{
    struct ol__node *n = a->node;

    for (uint32_t i = 0; i < a->n_timers; i++) {
        timers[i].id = a->timers[i].id;
        timers[i].due_ms = a->timers[i].due_ms;
    }
    memset(c, 0, sizeof *c);
    c->agent = a->name;
    c->epoch = a->epoch;
    c->seq = a->seq + 1;
    memcpy(c->prev_hash, a->head_hash, OL_HASH_SIZE);
    c->time_ms = ol__wall_ms();
    c->plugin.kind = a->code->kind;
    c->plugin.version = a->code->version;
    memcpy(c->plugin.so_hash, a->code->hash, OL_HASH_SIZE);
    memcpy(c->signer, n->key.pk, OL_PK_SIZE);
    c->flags = a->final_pending ? OL_CKPT_FINAL : 0;
    /* Undeliverable messages come back once every voter can apply it. */
    if (n->replica->vt->level(n->replica) >= 3)
        c->flags |= OL_CKPT_BOUNCE;
    /* The first checkpoint under a recovered database's epoch floor says
     * so in the chain. */
    if (n->store.history > 0 && a->epoch == n->store.epoch_floor &&
        a->head_epoch != a->epoch)
        c->flags |= a->seq == 0 ? OL_CKPT_NEW_HISTORY : OL_CKPT_RECOVERED;
    c->state = (uint8_t *)state;
    c->state_len = (uint32_t)len;
    c->outbox = a->outbox;
    c->n_outbox = a->n_outbox;
    c->timers = timers;
    c->n_timers = a->n_timers;
    c->acks = a->acks;
    c->n_acks = a->n_acks;
}

/* The checkpoint `c` is proposed: it holds the outbox and acks now. */
static void proposed(struct ol_agent *a, const struct ol__ckpt *c,
                     const uint8_t hash[OL_HASH_SIZE])
{
    a->seq = c->seq;
    memcpy(a->head_hash, hash, OL_HASH_SIZE);
    a->inflight = 1;
    a->inflight_seq = c->seq;
    a->inflight_us = ol__now_us();
    for (uint32_t i = 0; i < a->n_outbox; i++) {
        free(a->outbox[i].to);
        free(a->outbox[i].data);
    }
    free(a->outbox);
    a->outbox = NULL;
    a->n_outbox = 0;
    for (uint32_t i = 0; i < a->n_acks; i++)
        free(a->acks[i].from);
    free(a->acks);
    a->acks = NULL;
    a->n_acks = 0;
    ol__fx_proposed(a);
    a->steps_since_ckpt = 0;
    a->ckpt_requested = 0;
    a->last_ckpt_ms = c->time_ms;
    a->last_ckpt_mono = ol__mono_ms();
}

int ol__step_propose(struct ol_agent *a, const uint8_t *state, size_t len,
                     int save_rv)
{
    struct ol__node *n = a->node;
    struct ol__ckpt c;
    struct ol__timer *timers = NULL;
    struct ol__intent *intents = NULL;
    struct ol__buf body;
    uint8_t hash[OL_HASH_SIZE];
    char why[160];
    const char *bad;
    uint8_t *p;
    size_t blen;
    int rv;

    uv_timer_stop(&a->flush);
    a->save_due = 0;
    bad = check_state(state, len, save_rv, why, sizeof why);
    if (bad) {
        ol__agent_fail(a, "%s", bad);
        return OL_EPLUGIN;
    }

    timers = calloc(a->n_timers ? a->n_timers : 1, sizeof *timers);
    if (timers == NULL)
        return OL_ENOMEM;
    ckpt_of(a, state, len, timers, &c);
    if (ol__fx_fill(a, &c, &intents) != 0) {
        free(timers);
        return OL_ENOMEM;
    }

    ol__buf_init(&body);
    rv = ol__ckpt_encode(&c, &body);
    free(timers);
    free(intents);
    if (rv != 0) {
        ol__buf_close(&body);
        ol_log(OL_LOG_ERROR, "agent '%s': encode checkpoint: %s", a->name,
               ol_strerror(rv));
        return rv;
    }
    ol__ckpt_hash(body.base, body.len, hash);
    p = ol__buf_steal(&body, &blen);
    rv = n->replica->vt->propose_ckpt(n->replica, c.agent, c.epoch, c.seq, p,
                                      blen, hash);
    if (rv != 0) {
        free(p);
        ol_log(OL_LOG_ERROR, "agent '%s': propose seq %" PRIu64 ": %s",
               a->name, c.seq, ol_strerror(rv));
        return rv;
    }
    proposed(a, &c, hash);
    return 0;
}

void ol__step_committed(struct ol_agent *a, const struct ol__effect *e)
{
    if (!a->inflight || e->u.ckpt.seq != a->inflight_seq ||
        e->u.ckpt.epoch != a->epoch)
        return;
    a->inflight = 0;
    if (e->status == 0) {
        a->commit_us = ol__now_us() - a->inflight_us;
        ol__hist_add(&a->node->commit_lat, a->commit_us);
        ol__phist_add(&a->node->commit_hist, ol__lat_bounds_us,
                      ol__lat_nbounds, a->commit_us);
        a->committed_seq = e->u.ckpt.seq;
        a->head_epoch = e->u.ckpt.epoch;
        a->node->n.checkpoints++;
        ol__fx_committed(a, e->u.ckpt.seq);
        if (a->phase == OL_PHASE_DRAINING) {
            /* Released once the STOP event's own checkpoint is in. */
            if (a->q_len == 0)
                ol__agent_release(a, NULL);
            else
                ol__runq_add(a);
            return;
        }
        if (a->rehost) {
            ol__agent_rehost(a);
            return;
        }
        if (a->phase != OL_PHASE_ACTIVE) {
            ol__agent_settle(a);
            return;
        }
        /* A checkpoint boundary: an agent due to move to new code moves
         * now, from the state that has just committed. */
        if (a->upgrade && a->steps_since_ckpt == 0 && !a->busy) {
            ol__agent_rehost(a);
            return;
        }
        /* Steps taken since this was proposed get their checkpoint now if
         * their time is up, or a timer for when it will be. */
        if (a->steps_since_ckpt > 0 || a->save_due) {
            if (a->save_due || ol__step_policy_due(a, 0))
                ol__step_checkpoint(a);
            else
                ol__step_arm_flush(a);
        }
        ol__runq_add(a);
        return;
    }
    a->node->n.refused++;
    if (e->status == OL_EIO) {
        /* The database could not store it: not the agent's doing. */
        ol__node_storage_fault(a->node, a->name,
                               "agent '%s' checkpoint seq %" PRIu64
                               " could not be stored: %s",
                               a->name, e->u.ckpt.seq, e->errmsg);
        return;
    }
    if (e->status == OL_ESTALE || e->status == OL_ESTATE) {
        ol__agent_release(a, e->errmsg);
        return;
    }
    if (a->phase == OL_PHASE_ACTIVE || a->phase == OL_PHASE_DRAINING)
        ol__agent_fail(a, "checkpoint seq %" PRIu64 " refused: %s",
                       e->u.ckpt.seq, e->errmsg);
    else if (a->rehost)
        ol__agent_rehost(a);
    else
        ol__agent_settle(a);
}
