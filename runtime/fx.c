/*
 * Effects on the outside world, on the node that hosts the agent (see
 * fx.h for the life of one).  Each open effect is a struct ol__fx in the
 * agent's array, in the order declared; the array is what every
 * checkpoint records as open.  An attempt is named by a token, unique in
 * the node, so an answer for an attempt the node gave up on (the
 * instance went, or the agent moved) finds nothing and is dropped.
 */
#include "fx.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "base/log.h"
#include "host.h"
#include "hostapi.h"
#include "hostproc.h"
#include "logs.h"
#include "node.h"

/* How soon to look again when the agent may not act now. */
#define FX_WAIT_MS 100
/* An attempt without an answer this long past its deadline counts as a
 * retryable failure; its answer, if it ever comes, is dropped. */
#define FX_GRACE_MS 1000

static uint64_t last_token;

const char *ol__fx_state_name(int state)
{
    switch (state) {
    case OL_FX_DECLARED:
        return "declared";
    case OL_FX_READY:
        return "pending";
    case OL_FX_RUNNING:
        return "in flight";
    case OL_FX_BACKOFF:
        return "retrying";
    case OL_FX_ANSWERED:
        return "answered";
    }
    return "?";
}

static void fx_rec_free(struct ol__fx *f)
{
    free(f->rec.kind);
    free(f->rec.payload);
}

void ol__fx_free(struct ol_agent *a)
{
    for (uint32_t i = 0; i < a->n_fx; i++)
        fx_rec_free(&a->fx[i]);
    free(a->fx);
    a->fx = NULL;
    a->n_fx = 0;
    for (uint32_t i = 0; i < a->n_outcomes; i++)
        free(a->outcomes[i].result);
    free(a->outcomes);
    a->outcomes = NULL;
    a->n_outcomes = 0;
}

/* A new open effect at the end of the array; NULL when out of memory. */
static struct ol__fx *fx_append(struct ol_agent *a, const char *kind,
                                const void *payload, uint32_t len)
{
    struct ol__fx *fx = realloc(a->fx, (a->n_fx + 1) * sizeof *fx), *f;

    if (fx == NULL)
        return NULL;
    a->fx = fx;
    f = &fx[a->n_fx];
    memset(f, 0, sizeof *f);
    f->rec.kind = strdup(kind);
    f->rec.payload = malloc(len ? len : 1);
    if (f->rec.kind == NULL || f->rec.payload == NULL) {
        fx_rec_free(f);
        return NULL;
    }
    memcpy(f->rec.payload, payload, len);
    f->rec.len = len;
    a->n_fx++;
    return f;
}

int ol__fx_declare(struct ol_agent *a, uint64_t id, const char *kind,
                   const void *payload, size_t len, int has_perform)
{
    struct ol__fx *f;
    int rv;

    if (a->node->replica->vt->level(a->node->replica) < OL_CKPT_FX_LEVEL)
        return OL_AGENT_ENOTSUP;
    rv = ol__effect_check(kind, payload, len, a->n_fx, has_perform);
    if (rv != 0)
        return rv;
    f = fx_append(a, kind, payload, (uint32_t)len);
    if (f == NULL)
        return OL_AGENT_ENOMEM;
    f->rec.id = id;
    f->state = OL_FX_DECLARED;
    /* The step's checkpoint records the intent. */
    a->ckpt_requested = 1;
    return 0;
}

int ol__fx_fill(struct ol_agent *a, struct ol__ckpt *c,
                struct ol__intent **buf)
{
    uint32_t idx = 0;

    *buf = NULL;
    if (a->n_fx == 0 && a->n_outcomes == 0)
        return 0;
    *buf = calloc(a->n_fx ? a->n_fx : 1, sizeof **buf);
    if (*buf == NULL)
        return OL_ENOMEM;
    for (uint32_t i = 0; i < a->n_fx; i++) {
        struct ol__intent *r = &a->fx[i].rec;

        if (r->seq == 0) {
            r->seq = c->seq;
            r->idx = idx++;
            ol__effect_key(a->name, r->seq, r->idx, c->prev_hash, r->key);
        }
        (*buf)[i] = *r;
    }
    c->effects = *buf;
    c->n_effects = a->n_fx;
    c->outcomes = a->outcomes;
    c->n_outcomes = a->n_outcomes;
    return 0;
}

void ol__fx_proposed(struct ol_agent *a)
{
    for (uint32_t i = 0; i < a->n_outcomes; i++)
        free(a->outcomes[i].result);
    free(a->outcomes);
    a->outcomes = NULL;
    a->n_outcomes = 0;
}

int ol__fx_pending_ckpt(const struct ol_agent *a)
{
    if (a->n_outcomes > 0)
        return 1;
    for (uint32_t i = 0; i < a->n_fx; i++)
        if (a->fx[i].rec.seq == 0)
            return 1;
    return 0;
}

void ol__fx_committed(struct ol_agent *a, uint64_t seq)
{
    int any = 0;

    for (uint32_t i = 0; i < a->n_fx; i++) {
        struct ol__fx *f = &a->fx[i];

        if (f->state == OL_FX_DECLARED && f->rec.seq && f->rec.seq <= seq) {
            f->state = OL_FX_READY;
            any = 1;
        }
    }
    if (any)
        ol__fx_kick(a);
}

int ol__fx_restore(struct ol_agent *a, const struct ol__ckpt *c)
{
    for (uint32_t i = 0; i < c->n_effects; i++) {
        const struct ol__intent *r = &c->effects[i];
        struct ol__fx *f = fx_append(a, r->kind, r->payload, r->len);

        if (f == NULL)
            return OL_ENOMEM;
        f->rec.id = r->id;
        f->rec.seq = r->seq;
        f->rec.idx = r->idx;
        memcpy(f->rec.key, r->key, OL_EFFECT_KEY_SIZE);
        /* The owner before may have performed it: ask first. */
        f->state = OL_FX_READY;
        f->in_doubt = 1;
    }
    return 0;
}

const struct ol__fx *ol__fx_find(const struct ol_agent *a, uint64_t seq,
                                 uint32_t idx)
{
    for (uint32_t i = 0; i < a->n_fx; i++)
        if (a->fx[i].rec.seq == seq && a->fx[i].rec.idx == idx)
            return &a->fx[i];
    return NULL;
}

/* ---- attempts ---- */

static struct ol__fx *by_token(struct ol_agent *a, uint64_t token)
{
    for (uint32_t i = 0; i < a->n_fx; i++)
        if (a->fx[i].state == OL_FX_RUNNING && a->fx[i].token == token)
            return &a->fx[i];
    return NULL;
}

static void arm(struct ol_agent *a, uint64_t ms)
{
    if (uv_is_closing((uv_handle_t *)&a->fxt))
        return;
    if (uv_is_active((uv_handle_t *)&a->fxt) &&
        uv_timer_get_due_in(&a->fxt) <= ms)
        return;
    uv_timer_start(&a->fxt, ol__fx_timer_cb, ms, 0);
}

/* May the agent act on the world now?  `left`: the lease's ms. */
static int may_act(struct ol_agent *a, int64_t *left)
{
    struct ol__node *n = a->node;

    if (a->phase != OL_PHASE_ACTIVE || !a->ready || a->rehost ||
        a->handoff_until || n->paused)
        return 0;
    *left = n->replica->vt->lease_left(n->replica);
    return *left > 0;
}

/* Start one attempt at `f`: at the agent's host process, or on the
 * node's pool.  0, or the attempt did not start. */
static int start(struct ol_agent *a, struct ol__fx *f, int64_t left)
{
    struct ol__node *n = a->node;
    struct ol__fx_policy pol;
    struct ol__ipc_perform p;

    ol__config_fx(&n->cfg, f->rec.kind, &pol);
    memset(&p, 0, sizeof p);
    p.e.size = sizeof p.e;
    p.e.agent = a->name;
    p.e.node = n->cfg.node_name;
    p.e.effect_id = f->rec.id;
    ol__hex(f->rec.key, OL_EFFECT_KEY_SIZE, p.key);
    p.e.key = p.key;
    p.e.kind = f->rec.kind;
    p.e.payload = f->rec.payload;
    p.e.len = f->rec.len;
    p.e.epoch = a->epoch;
    p.e.deadline_ms = ol__wall_ms() + pol.timeout_ms;
    p.e.attempt = f->attempts + 1;
    p.e.in_doubt = f->in_doubt;
    p.token = ++last_token;
    p.run_by = left == INT64_MAX ? 0 : ol__boot_ms() + (uint64_t)left;
    p.slot = a->slot;
    p.gen = a->gen;
    if (a->hp) {
        ol__hp_perform(a->hp, &p);
    } else if (ol__inproc_perform(a, &p) != 0) {
        return OL_ENOMEM;
    }
    if (f->attempts++ == 0)
        f->first_mono = ol__mono_ms();
    f->token = p.token;
    f->state = OL_FX_RUNNING;
    f->due_mono = ol__mono_ms() + pol.timeout_ms + FX_GRACE_MS;
    arm(a, pol.timeout_ms + FX_GRACE_MS);
    return 0;
}

static void retry(struct ol_agent *a, struct ol__fx *f, const char *detail);

void ol__fx_kick(struct ol_agent *a)
{
    uint64_t now = ol__mono_ms(), wake = UINT64_MAX;
    int64_t left;
    int waiting = 0;

    for (uint32_t i = 0; i < a->n_fx; i++) {
        struct ol__fx *f = &a->fx[i];

        if (f->state == OL_FX_RUNNING && f->due_mono <= now &&
            a->phase == OL_PHASE_ACTIVE) {
            /* A perform() that ignores its deadline, or a host that
             * stopped answering: try again under the same key. */
            f->token = 0;
            retry(a, f, "no answer by the attempt's deadline");
        }
        if ((f->state == OL_FX_BACKOFF || f->state == OL_FX_RUNNING) &&
            f->due_mono > now) {
            if (f->due_mono - now < wake)
                wake = f->due_mono - now;
            continue;
        }
        if (f->state != OL_FX_READY && f->state != OL_FX_BACKOFF)
            continue;
        if (!may_act(a, &left) || start(a, f, left) != 0)
            waiting = 1;
    }
    if (waiting && a->phase == OL_PHASE_ACTIVE)
        wake = wake < FX_WAIT_MS ? wake : FX_WAIT_MS;
    if (wake != UINT64_MAX)
        arm(a, wake);
}

void ol__fx_timer_cb(uv_timer_t *t)
{
    ol__fx_kick(t->data);
}

/* Queue the EFFECT event that gives `f`'s outcome to the agent. */
static void answer(struct ol_agent *a, struct ol__fx *f, int status,
                   const void *result, uint32_t len, const char *why)
{
    struct ol__ev *ev = calloc(1, sizeof *ev);

    if (ev == NULL || (len && (ev->data = malloc(len)) == NULL)) {
        free(ev);
        ol__agent_fail(a, "out of memory for an effect's outcome");
        return;
    }
    ev->type = OL_EVENT_EFFECT;
    ev->work_id = f->rec.id;
    ev->fx_seq = f->rec.seq;
    ev->fx_idx = f->rec.idx;
    ev->fx_status = status;
    ev->fx_attempts = f->attempts;
    ol__hex(f->rec.key, OL_EFFECT_KEY_SIZE, ev->fx_key);
    snprintf(ev->fx_why, sizeof ev->fx_why, "%s", why ? why : "");
    if (len)
        memcpy(ev->data, result, len);
    ev->len = len;
    f->state = OL_FX_ANSWERED;
    ol__agent_push(a, ev);
}

/* A retryable failure: wait and try again, or give up per the policy. */
static void retry(struct ol_agent *a, struct ol__fx *f, const char *detail)
{
    struct ol__fx_policy pol;
    uint64_t now = ol__mono_ms(), wait;
    char why[160];

    ol__config_fx(&a->node->cfg, f->rec.kind, &pol);
    snprintf(f->last, sizeof f->last, "%s", detail ? detail : "retry");
    if (f->attempts >= pol.attempts ||
        (pol.deadline_ms && now - f->first_mono >= pol.deadline_ms)) {
        snprintf(why, sizeof why, "gave up after %" PRIu32 " attempts in "
                 "%" PRIu64 " ms: %s", f->attempts, now - f->first_mono,
                 f->last);
        ol__agent_note(a, OL_LOG_WARN, 0, "effect %" PRIu64 " (%s): %s",
                       f->rec.id, f->rec.kind, why);
        answer(a, f, OL_EFFECT_FAILED, NULL, 0, why);
        return;
    }
    wait = pol.backoff_ms;
    for (uint32_t i = 1; i < f->attempts && wait < pol.backoff_max_ms; i++)
        wait *= 2;
    if (wait > pol.backoff_max_ms)
        wait = pol.backoff_max_ms;
    f->due_mono = now + wait;
    f->state = OL_FX_BACKOFF;
    arm(a, wait);
}

void ol__fx_result(struct ol__node *n, struct ol_agent *a, uint64_t token,
                   int status, const void *result, uint32_t len,
                   const char *detail)
{
    struct ol__fx *f = a ? by_token(a, token) : NULL;

    if (f == NULL || a->phase != OL_PHASE_ACTIVE) {
        /* Fenced: whoever owns the agent now has the effect open. */
        n->n.fx_dropped++;
        if (a)
            ol_log(OL_LOG_INFO, "agent '%s': an effect's answer (attempt %"
                   PRIu64 ") came after the agent left or moved; dropped",
                   a->name, token);
        else
            ol_log(OL_LOG_INFO, "an effect's answer (attempt %" PRIu64
                   ") came for an agent instance that is gone; dropped",
                   token);
        return;
    }
    if (status == OL_IPC_FX_NOT_RUN) {
        f->attempts--;
        f->state = OL_FX_READY;
        arm(a, FX_WAIT_MS);
        return;
    }
    n->n.fx_attempts++;
    if (status == OL_EFFECT_DONE || status == OL_EFFECT_FAILED) {
        answer(a, f, status, result, len, detail);
        return;
    }
    retry(a, f, detail);
}

int ol__fx_consumed(struct ol_agent *a, const struct ol__ev *ev)
{
    struct ol__outcome *o;
    uint32_t i;

    for (i = 0; i < a->n_fx; i++)
        if (a->fx[i].rec.seq == ev->fx_seq && a->fx[i].rec.idx == ev->fx_idx)
            break;
    if (i == a->n_fx)
        return 0;
    o = realloc(a->outcomes, (a->n_outcomes + 1) * sizeof *o);
    if (o == NULL)
        return OL_ENOMEM;
    a->outcomes = o;
    o = &o[a->n_outcomes];
    memset(o, 0, sizeof *o);
    o->seq = ev->fx_seq;
    o->idx = ev->fx_idx;
    o->status = (uint32_t)ev->fx_status;
    o->attempts = ev->fx_attempts;
    /* The result, or the reason the node gave up. */
    o->len = ev->len ? ev->len : (uint32_t)strlen(ev->fx_why);
    o->result = malloc(o->len ? o->len : 1);
    if (o->result == NULL)
        return OL_ENOMEM;
    memcpy(o->result, ev->len ? (const void *)ev->data : ev->fx_why, o->len);
    a->n_outcomes++;
    fx_rec_free(&a->fx[i]);
    memmove(&a->fx[i], &a->fx[i + 1], (a->n_fx - i - 1) * sizeof *a->fx);
    a->n_fx--;
    a->ckpt_requested = 1;
    a->node->n.fx_done++;
    return 0;
}

void ol__fx_inproc_done(struct ol__node *n, struct ol__witem *it)
{
    struct ol__fxjob *j = it->arg;
    struct ol_agent *a = ol__agent_get(n, j->agent);

    if (a && a->epoch != j->e.epoch)
        a = NULL;
    ol__fx_result(n, a, j->token, j->status, j->result, j->result_len,
                  j->detail[0] ? j->detail : NULL);
    ol__fxjob_free(j);
    free(it);
}
