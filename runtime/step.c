/*
 * Steps and checkpoints.  The loop runs agents from a run queue, a bounded
 * number of steps per turn so I/O keeps flowing.  One step delivers one
 * event; when the checkpoint policy says so, the agent's state is saved,
 * checked to be one msgpack object, encoded with its outbox, timers and
 * acknowledged messages, hashed onto the agent's chain and proposed.  While
 * a checkpoint is in flight the agent takes no further step, so its
 * messages are released (by the state machine) only once that checkpoint
 * has committed, and a refused checkpoint releases nothing.
 *
 * For an agent in a host process a step is a STEP item in the host's next
 * batch: the node asks for the state in the same round trip whenever its
 * policy will want a checkpoint, and the host's result (the handler's
 * return, the timers, messages, checkpoint request and work it recorded,
 * and the state) is checked here as strictly as a plugin's own return
 * values, because it comes from code the node does not trust.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mpr.h"
#include "agent.h"
#include "host.h"
#include "hostproc.h"
#include "node.h"
#include "step.h"
#include "step_int.h"
#include "hostapi.h"
#include "fx.h"

#define STEPS_PER_TURN 512
#define TURN_BUDGET_MS 4
/* Acknowledged messages force a checkpoint before the record gets big. */
#define ACKS_PER_CKPT 1024

static int runnable(const struct ol_agent *a)
{
    /* Without a lease (cut off from the majority) nothing steps; draining
     * agents still get their STOP, whose checkpoint cannot commit anyway. */
    return (a->phase == OL_PHASE_ACTIVE || a->phase == OL_PHASE_DRAINING) &&
           !a->inflight && !a->busy && a->q_len > 0 && a->ready &&
           !a->rehost && !a->handoff_until &&
           (!a->node->paused || a->phase == OL_PHASE_DRAINING);
}

/* For how many more ms may this node start steps (INT64_MAX: no limit)? */
static int64_t lease_left(struct ol__node *n)
{
    return n->replica ? n->replica->vt->lease_left(n->replica) : 0;
}

void ol__runq_add(struct ol_agent *a)
{
    struct ol__node *n = a->node;

    /* A closed runner would count as active for ever once started. */
    if (a->in_runq || !runnable(a) ||
        uv_is_closing((uv_handle_t *)&n->runner))
        return;
    a->in_runq = 1;
    a->runq_next = NULL;
    if (n->runq_tail)
        n->runq_tail->runq_next = a;
    else
        n->runq_head = a;
    n->runq_tail = a;
    if (!uv_is_active((uv_handle_t *)&n->runner))
        uv_idle_start(&n->runner, ol__runner_cb);
}

void ol__runq_remove(struct ol_agent *a)
{
    struct ol__node *n = a->node;
    struct ol_agent **pp = &n->runq_head, *prev = NULL;

    if (!a->in_runq)
        return;
    while (*pp && *pp != a) {
        prev = *pp;
        pp = &(*pp)->runq_next;
    }
    if (*pp == a) {
        *pp = a->runq_next;
        if (n->runq_tail == a)
            n->runq_tail = prev;
    }
    a->in_runq = 0;
    a->runq_next = NULL;
}

static struct ol_agent *runq_pop(struct ol__node *n)
{
    struct ol_agent *a = n->runq_head;

    if (a == NULL)
        return NULL;
    n->runq_head = a->runq_next;
    if (n->runq_head == NULL)
        n->runq_tail = NULL;
    a->in_runq = 0;
    a->runq_next = NULL;
    return a;
}

/* Take a fired timer off the armed list; 1 if it was there. */
static int disarm(struct ol_agent *a, uint64_t id)
{
    for (uint32_t i = 0; i < a->n_timers; i++) {
        if (a->timers[i].id == id && a->timers[i].fired) {
            a->timers[i] = a->timers[--a->n_timers];
            return 1;
        }
    }
    return 0;
}

static int add_ack(struct ol_agent *a, const struct ol__ev *ev)
{
    struct ol__msgid *acks;

    acks = realloc(a->acks, (a->n_acks + 1) * sizeof *acks);
    if (acks == NULL)
        return OL_ENOMEM;
    a->acks = acks;
    acks[a->n_acks].from = strdup(ev->from);
    if (acks[a->n_acks].from == NULL)
        return OL_ENOMEM;
    acks[a->n_acks].seq = ev->from_seq;
    acks[a->n_acks].idx = ev->idx;
    a->n_acks++;
    return 0;
}

/* How long uncheckpointed steps may wait: every_ms, or a second when
 * checkpoints are batched by step count alone, so an idle agent's last
 * steps (and the messages they sent) are not held indefinitely. */
static void flush_cb(uv_timer_t *t);

static uint32_t flush_ms(const struct ol__config *cfg)
{
    if (cfg->every_ms)
        return cfg->every_ms;
    return cfg->every_steps > 1 ? 1000 : 0;
}

/* `extra_steps` and `extra_acks` count a step that has not been taken
 * yet, so the node can ask a host for the state in the step's own round
 * trip. */
static int policy(const struct ol_agent *a, int type, uint32_t extra_steps,
                  uint32_t extra_acks)
{
    const struct ol__config *cfg = &a->node->cfg;

    if (a->ckpt_requested || a->final_pending || type == OL_EVENT_STOP ||
        type == OL_EVENT_START || type == OL_EVENT_EFFECT ||
        a->phase == OL_PHASE_DRAINING || a->upgrade || a->save_due ||
        ol__fx_pending_ckpt(a))
        return 1;
    if (a->n_acks + extra_acks >= ACKS_PER_CKPT ||
        a->n_outbox >= OL_AGENT_OUTBOX_MAX / 2)
        return 1;
    if (cfg->every_steps &&
        a->steps_since_ckpt + extra_steps >= cfg->every_steps)
        return 1;
    if (flush_ms(cfg) &&
        ol__mono_ms() - a->last_ckpt_mono >= flush_ms(cfg))
        return 1;
    return 0;
}

int ol__step_policy_due(const struct ol_agent *a, int type)
{
    return policy(a, type, 0, 0);
}

/* Arm the flush timer for the rest of the interval since the last
 * checkpoint. */
void ol__step_arm_flush(struct ol_agent *a)
{
    uint32_t ms = flush_ms(&a->node->cfg);
    int64_t left;

    if (ms == 0 || uv_is_active((uv_handle_t *)&a->flush))
        return;
    left = (int64_t)ms - (int64_t)(ol__mono_ms() - a->last_ckpt_mono);
    uv_timer_start(&a->flush, flush_cb, left > 0 ? (uint64_t)left : 0, 0);
}

static void flush_cb(uv_timer_t *t)
{
    struct ol_agent *a = t->data;

    if (a->phase == OL_PHASE_ACTIVE && !a->inflight &&
        a->steps_since_ckpt > 0)
        ol__step_checkpoint(a);
}

/* What every step does once its handler has returned `rv`. */
static void after_step(struct ol_agent *a, int type, struct ol__ev *ev,
                       int rv, const uint8_t *state, size_t state_len,
                       int save_rv, int saved)
{
    a->node->n.steps++;
    a->steps++;
    if (type == OL_EVENT_MESSAGE) {
        if (a->q_mail)
            a->q_mail--;
        if (rv == 0 && add_ack(a, ev) != 0)
            rv = OL_ENOMEM;
    }
    if (type == OL_EVENT_EFFECT && rv == 0 && ol__fx_consumed(a, ev) != 0)
        rv = OL_ENOMEM;
    ol__agent_free_ev(ev);
    if (rv != 0) {
        ol__agent_fail(a, "handle() returned %d for a %s event", rv,
                       ol__event_name(type));
        return;
    }
    a->steps_since_ckpt++;
    if (type == OL_EVENT_MESSAGE)
        ol__agent_mail_more(a);
    if (ol__step_policy_due(a, type)) {
        if (saved)
            ol__step_propose(a, state, state_len, save_rv);
        else
            ol__step_checkpoint(a);
    } else {
        ol__step_arm_flush(a);
    }
}

/* Send a step to the agent's host process; the result comes back in
 * ol__step_result(). */
static void host_step(struct ol_agent *a, struct ol__ev *ev, int type,
                      int disarmed, int64_t left)
{
    struct ol__ipc_step s;
    char kw[OL_AGENT_KEY_LEN + sizeof ev->fx_why];

    memset(&s, 0, sizeof s);
    s.slot = a->slot;
    s.gen = a->gen;
    s.type = (uint32_t)type;
    s.now_ms = ol__wall_ms();
    s.epoch = a->epoch;
    s.n_outbox = a->n_outbox;
    s.run_by = left == INT64_MAX ? 0 : ol__boot_ms() + (uint64_t)left;
    if (policy(a, type, 1, type == OL_EVENT_MESSAGE))
        s.flags |= OL_IPC_SAVE_AFTER;
    if (a->final_pending)
        s.flags |= OL_IPC_FINAL;
    if (a->node->replica->vt->level(a->node->replica) >= OL_CKPT_FX_LEVEL)
        s.flags |= OL_IPC_FX_OK;
    s.flags |= a->n_fx << OL_IPC_FX_OPEN_SHIFT;
    switch (type) {
    case OL_EVENT_RESUME:
        s.a1 = ev->seq;
        s.a2 = s.now_ms - ev->ckpt_time_ms;
        s.s = ev->prev_node;
        break;
    case OL_EVENT_TIMER:
        s.a1 = ev->timer_id;
        s.a2 = ev->due_ms;
        if (disarmed)
            s.flags |= OL_IPC_DISARMED;
        break;
    case OL_EVENT_MESSAGE:
        s.s = ev->from;
        s.b = ev->data ? ev->data : (const void *)"";
        s.b_len = ev->len;
        break;
    case OL_EVENT_WORK:
        s.a1 = ev->work_id;
        s.a2 = (int64_t)ev->work_token;
        break;
    case OL_EVENT_STOP:
        s.a1 = (uint64_t)ev->final;
        break;
    case OL_EVENT_EFFECT:
        s.a1 = ev->work_id;
        s.a2 = ev->fx_status | (int64_t)ev->fx_attempts << 8;
        snprintf(kw, sizeof kw, "%s%s", ev->fx_key, ev->fx_why);
        s.s = kw;
        s.b = ev->data ? ev->data : (const void *)"";
        s.b_len = ev->len;
        break;
    }
    ol__hp_step(a->hp, &s);
    a->busy = 1;
    a->busy_type = type;
    a->busy_ev = ev;
}

/* The event as a plugin in the node sees it; `t` holds the strings of a
 * mail event. */
static void event_of(const struct ol_agent *a, const struct ol__ev *ev,
                     int type, struct ol_event *e, struct ol__mail_text *t)
{
    memset(e, 0, sizeof *e);
    e->type = (uint32_t)type;
    e->size = sizeof *e;
    e->now_ms = ol__wall_ms();
    e->node = a->node->cfg.node_name;
    e->epoch = a->epoch;
    switch (type) {
    case OL_EVENT_RESUME:
        e->prev_node = ev->prev_node;
        e->seq = ev->seq;
        e->downtime_ms = e->now_ms - ev->ckpt_time_ms;
        break;
    case OL_EVENT_TIMER:
        e->timer_id = ev->timer_id;
        e->due_ms = ev->due_ms;
        break;
    case OL_EVENT_MESSAGE:
        ol__mail_event(e, ev->from, ev->data, ev->len, t);
        break;
    case OL_EVENT_WORK:
        e->work_id = ev->work_id;
        e->work_arg = ev->work_arg;
        e->work_epoch = ev->work_epoch;
        e->fenced = ev->work_epoch != a->epoch;
        break;
    case OL_EVENT_STOP:
        e->final = ev->final;
        break;
    case OL_EVENT_EFFECT:
        e->effect_id = ev->work_id;
        e->effect_key = ev->fx_key;
        e->effect_status = ev->fx_status;
        e->effect_attempts = ev->fx_attempts;
        e->reason = ev->fx_why[0] ? ev->fx_why : NULL;
        e->data = ev->len ? ev->data : NULL;
        e->len = ev->len;
        break;
    }
}

/* Deliver the event at the head of the queue.  `left`: ms the lease has
 * left for the step to start in (a host that gets it later refuses it). */
static void step(struct ol_agent *a, int64_t left)
{
    struct ol__ev *ev = a->q_head;
    struct ol_event e;
    struct ol__mail_text mt;
    int rv, type, disarmed = 0;

    a->q_head = ev->next;
    if (a->q_head == NULL)
        a->q_tail = NULL;
    a->q_len--;
    type = ev->type;
    if (type == OL_EVENT_TIMER) {
        /* A step a host did not run comes back with its timer gone. */
        disarmed = disarm(a, ev->timer_id) || ev->disarmed;
        ev->disarmed = disarmed;
    }
    if (a->hp) {
        host_step(a, ev, type, disarmed, left);
        return;
    }
    event_of(a, ev, type, &e, &mt);
    a->in_handle = 1;
    ol__inproc_enter(a, OL_MARK_HANDLE, type);
    rv = a->code->plugin.vt->handle(a->self, a, &e);
    ol__inproc_leave(a);
    a->in_handle = 0;
    after_step(a, type, ev, rv, NULL, 0, 0, 0);
}

void ol__runner_cb(uv_idle_t *h)
{
    struct ol__node *n = h->data;
    uint64_t deadline = ol__mono_ms() + TURN_BUDGET_MS;
    struct ol_agent *a;

    for (int i = 0; i < STEPS_PER_TURN && (a = runq_pop(n)) != NULL; i++) {
        /* The lease is asked again, on a fresh clock, before every step:
         * the tick that renews it runs only every few ms, and a step that
         * starts after it ran out must not run (a lost lease pauses the
         * node, and the agents go back on the queue when it returns). */
        int64_t left = a->phase == OL_PHASE_DRAINING ? INT64_MAX
                                                     : lease_left(n);

        if (!runnable(a) || left <= 0)
            continue;
        step(a, left);
        ol__runq_add(a);
        if (ol__mono_ms() >= deadline)
            break;
    }
    if (n->runq_head == NULL)
        uv_idle_stop(h);
}

/* ---- a host's results ---- */

/* Record the effects a host's step declared; NULL, or why not. */
static const char *apply_effects(struct ol_agent *a,
                                 const struct ol__ipc_result *r, char *why,
                                 size_t cap)
{
    struct ol__mpr fx = r->effects;
    uint32_t n;

    if (ol__mpr_array(&fx, &n))
        return "malformed effect record";
    for (uint32_t i = 0; i < n; i += 3) {
        char kind[OL_AGENT_KIND_MAX + 1];
        const void *payload;
        uint64_t id;
        uint32_t len;
        int rv;

        if (ol__mpr_uint(&fx, &id) ||
            ol__mpr_strcpy(&fx, kind, sizeof kind) ||
            ol__mpr_bin(&fx, &payload, &len))
            return "malformed effect record";
        rv = ol__fx_declare(a, id, kind, payload, len, 1);
        if (rv != 0) {
            snprintf(why, cap, "an effect it declared was refused (%s)",
                     ol_strerror(rv));
            return why;
        }
    }
    return NULL;
}

/* Apply the timers and messages a host recorded; 0, or why not. */
static const char *apply_record(struct ol_agent *a,
                                const struct ol__ipc_result *r, char *why,
                                size_t cap)
{
    struct ol__mpr ops = r->ops, sends = r->sends;
    uint32_t n;

    if (ol__mpr_array(&ops, &n))
        return "malformed timer record";
    for (uint32_t i = 0; i < n; i += 3) {
        uint64_t op, id;
        int64_t due;

        if (ol__mpr_uint(&ops, &op) || ol__mpr_uint(&ops, &id) ||
            ol__mpr_int(&ops, &due))
            return "malformed timer record";
        if (op == OL_IPC_ARM) {
            if (ol__agent_arm(a, id, due) != 0) {
                snprintf(why, cap, "more than %d timers armed",
                         OL_AGENT_TIMERS_MAX);
                return why;
            }
        } else if (op == OL_IPC_CANCEL) {
            (void)ol__agent_cancel(a, id);
        } else {
            return "malformed timer record";
        }
    }
    if (ol__mpr_array(&sends, &n))
        return "malformed message record";
    for (uint32_t i = 0; i < n; i += 2) {
        char to[OL_NAME_MAX + 1];
        const void *msg;
        uint32_t len;

        if (ol__mpr_strcpy(&sends, to, sizeof to) ||
            ol__mpr_bin(&sends, &msg, &len) || !ol__name_valid(to) ||
            len > OL_AGENT_MSG_MAX || ol__mp_check(msg, len, NULL) != 0)
            return "malformed message record";
        if (a->n_outbox >= OL_AGENT_OUTBOX_MAX) {
            snprintf(why, cap, "more than %d messages sent",
                     OL_AGENT_OUTBOX_MAX);
            return why;
        }
        if (ol__agent_outbox_add(a, to, msg, len) != 0)
            return "out of memory";
    }
    return apply_effects(a, r, why, cap);
}

void ol__step_result(struct ol_agent *a, const struct ol__ipc_result *r)
{
    struct ol__ev *ev = a->busy_ev;
    int type = a->busy_type;
    const char *bad;
    char why[120];

    if (!a->busy || type == 0)
        return;
    a->busy = 0;
    a->busy_ev = NULL;
    if (a->phase != OL_PHASE_ACTIVE && a->phase != OL_PHASE_DRAINING) {
        ol__agent_free_ev(ev);
        ol__agent_settle(a);
        return;
    }
    if (r->flags & OL_IPC_NOT_RUN) {
        /* Too late for the lease: the event waits at the head of the
         * queue for the next step, here or wherever the agent goes. */
        a->node->n.steps_refused++;
        ev->next = a->q_head;
        a->q_head = ev;
        if (a->q_tail == NULL)
            a->q_tail = ev;
        a->q_len++;
        ol__runq_add(a);
        return;
    }
    if (r->rv != 0) {
        after_step(a, type, ev, r->rv < INT32_MIN ? INT32_MIN : (int)r->rv,
                   NULL, 0, 0, 0);
        return;
    }
    bad = apply_record(a, r, why, sizeof why);
    if (bad) {
        ol__agent_free_ev(ev);
        ol__agent_fail(a, "%s in a %s step", bad, ol__event_name(type));
        return;
    }
    if (r->flags & OL_IPC_CKPT_REQ)
        a->ckpt_requested = 1;
    a->work_pending += r->works;
    after_step(a, type, ev, 0, r->state, r->state_len,
               r->save_rv < INT32_MIN ? INT32_MIN : (int)r->save_rv,
               r->state != NULL || r->save_rv != 0);
    if (a->phase == OL_PHASE_ACTIVE || a->phase == OL_PHASE_DRAINING)
        ol__runq_add(a);
}

void ol__step_saved(struct ol_agent *a, const void *state, uint32_t len,
                    int rv)
{
    if (!a->busy || a->busy_type != 0)
        return;
    a->busy = 0;
    if (a->phase != OL_PHASE_ACTIVE && a->phase != OL_PHASE_DRAINING) {
        ol__agent_settle(a);
        return;
    }
    ol__step_propose(a, state, len, rv);
    ol__runq_add(a);
}
