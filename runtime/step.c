/*
 * Steps and checkpoints.  The loop runs agents from a run queue, a bounded
 * number of steps per turn so I/O keeps flowing.  One step delivers one
 * event; when the checkpoint policy says so, the agent's state is saved,
 * checked to be one msgpack object, encoded with its outbox, timers and
 * acknowledged messages, hashed onto the agent's chain and proposed.  While
 * a checkpoint is in flight the agent takes no further step, so its
 * messages are released (by the state machine) only once that checkpoint
 * has committed, and a refused checkpoint releases nothing.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "mpr.h"
#include "node.h"

#define STEPS_PER_TURN 512
#define TURN_BUDGET_MS 4
/* Acknowledged messages force a checkpoint before the record gets big. */
#define ACKS_PER_CKPT 1024

void ol__agent_settle(struct ol_agent *a);

static int runnable(const struct ol_agent *a)
{
    /* Without a lease (cut off from the majority) nothing steps; draining
     * agents still get their STOP, whose checkpoint cannot commit anyway. */
    return (a->phase == OL_PHASE_ACTIVE || a->phase == OL_PHASE_DRAINING) &&
           !a->inflight && a->q_len > 0 && a->self != NULL &&
           (!a->node->paused || a->phase == OL_PHASE_DRAINING);
}

void ol__runq_add(struct ol_agent *a)
{
    struct ol__node *n = a->node;

    if (a->in_runq || !runnable(a))
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

static const char *event_name(int type)
{
    switch (type) {
    case OL_EVENT_START:
        return "start";
    case OL_EVENT_RESUME:
        return "resume";
    case OL_EVENT_TIMER:
        return "timer";
    case OL_EVENT_MESSAGE:
        return "message";
    case OL_EVENT_STOP:
        return "stop";
    case OL_EVENT_WORK:
        return "work";
    }
    return "?";
}

static void disarm(struct ol_agent *a, uint64_t id)
{
    for (uint32_t i = 0; i < a->n_timers; i++) {
        if (a->timers[i].id == id && a->timers[i].fired) {
            a->timers[i] = a->timers[--a->n_timers];
            return;
        }
    }
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

static int policy_says_checkpoint(const struct ol_agent *a, int type)
{
    const struct ol__config *cfg = &a->node->cfg;

    if (a->ckpt_requested || a->final_pending || type == OL_EVENT_STOP ||
        type == OL_EVENT_START || a->phase == OL_PHASE_DRAINING)
        return 1;
    if (a->n_acks >= ACKS_PER_CKPT || a->n_outbox >= OL_AGENT_OUTBOX_MAX / 2)
        return 1;
    if (cfg->every_steps && a->steps_since_ckpt >= cfg->every_steps)
        return 1;
    if (flush_ms(cfg) &&
        ol__wall_ms() - a->last_ckpt_ms >= (int64_t)flush_ms(cfg))
        return 1;
    return 0;
}

/* Arm the flush timer for the rest of the interval since the last
 * checkpoint. */
static void arm_flush(struct ol_agent *a)
{
    uint32_t ms = flush_ms(&a->node->cfg);
    int64_t left;

    if (ms == 0 || uv_is_active((uv_handle_t *)&a->flush))
        return;
    left = (int64_t)ms - (ol__wall_ms() - a->last_ckpt_ms);
    uv_timer_start(&a->flush, flush_cb, left > 0 ? (uint64_t)left : 0, 0);
}

static void flush_cb(uv_timer_t *t)
{
    struct ol_agent *a = t->data;

    if (a->phase == OL_PHASE_ACTIVE && !a->inflight &&
        a->steps_since_ckpt > 0)
        ol__step_checkpoint(a);
}

static void step(struct ol_agent *a)
{
    struct ol__ev *ev = a->q_head;
    struct ol_event e;
    int rv, type;

    a->q_head = ev->next;
    if (a->q_head == NULL)
        a->q_tail = NULL;
    a->q_len--;

    memset(&e, 0, sizeof e);
    e.type = (uint32_t)ev->type;
    e.size = sizeof e;
    e.now_ms = ol__wall_ms();
    e.node = a->node->cfg.node_name;
    e.epoch = a->epoch;
    switch (ev->type) {
    case OL_EVENT_RESUME:
        e.prev_node = ev->prev_node;
        e.seq = ev->seq;
        e.downtime_ms = e.now_ms - ev->ckpt_time_ms;
        break;
    case OL_EVENT_TIMER:
        e.timer_id = ev->timer_id;
        e.due_ms = ev->due_ms;
        disarm(a, ev->timer_id);
        break;
    case OL_EVENT_MESSAGE:
        e.from = ev->from;
        e.data = ev->data;
        e.len = ev->len;
        break;
    case OL_EVENT_WORK:
        e.work_id = ev->work_id;
        e.work_arg = ev->work_arg;
        break;
    case OL_EVENT_STOP:
        e.final = ev->final;
        break;
    }
    type = ev->type;
    a->in_handle = 1;
    rv = a->plugin->vt->handle(a->self, a, &e);
    a->in_handle = 0;
    a->node->n.steps++;
    a->steps++;
    if (type == OL_EVENT_MESSAGE && rv == 0 && add_ack(a, ev) != 0)
        rv = OL_ENOMEM;
    ol__agent_free_ev(ev);
    if (rv != 0) {
        ol__agent_fail(a, "handle() returned %d for a %s event", rv,
                       event_name(type));
        return;
    }
    a->steps_since_ckpt++;
    if (policy_says_checkpoint(a, type))
        ol__step_checkpoint(a);
    else
        arm_flush(a);
}

void ol__runner_cb(uv_idle_t *h)
{
    struct ol__node *n = h->data;
    uint64_t deadline = ol__mono_ms() + TURN_BUDGET_MS;
    struct ol_agent *a;

    for (int i = 0; i < STEPS_PER_TURN && (a = runq_pop(n)) != NULL; i++) {
        if (!runnable(a))
            continue;
        step(a);
        ol__runq_add(a);
        if (ol__mono_ms() >= deadline)
            break;
    }
    if (n->runq_head == NULL)
        uv_idle_stop(h);
}

/* Why save() output was refused, or NULL. */
static const char *check_state(struct ol__buf *b, int rv, char *why,
                               size_t cap)
{
    size_t off = 0;

    if (rv == OL_ETOOBIG || b->len > OL_AGENT_STATE_MAX) {
        snprintf(why, cap, "save() wrote more than %u bytes of state",
                 OL_AGENT_STATE_MAX);
        return why;
    }
    if (rv != 0) {
        snprintf(why, cap, "save() returned %d", rv);
        return why;
    }
    if (b->len == 0) {
        snprintf(why, cap, "save() wrote no state");
        return why;
    }
    if (ol__mp_check(b->base, b->len, &off) != 0) {
        snprintf(why, cap,
                 "save() wrote %zu bytes that are not one msgpack object "
                 "(bad at byte %zu)",
                 b->len, off);
        return why;
    }
    return NULL;
}

/* The sink handed to save(): remembers an overflow even if the plugin
 * ignores the error write() returned. */
struct state_sink {
    struct ol__buf *buf;
    int err;
};

static int sink_write(void *data, const char *p, size_t n)
{
    struct state_sink *s = data;
    int rv = ol__buf_append(s->buf, p, n);

    if (rv != 0 && s->err == 0)
        s->err = rv;
    return rv;
}

int ol__step_checkpoint(struct ol_agent *a)
{
    struct ol__node *n = a->node;
    struct state_sink ss = {&n->scratch, 0};
    struct ol_sink sink = {&ss, sink_write};
    struct ol__ckpt c;
    struct ol__timer *timers = NULL;
    struct ol__buf body;
    uint8_t hash[OL_HASH_SIZE];
    char why[160];
    const char *bad;
    uint8_t *p;
    size_t len;
    int rv;

    uv_timer_stop(&a->flush);
    ol__buf_reset(&n->scratch);
    n->scratch.max = OL_AGENT_STATE_MAX;
    rv = a->plugin->vt->save(a->self, a, &sink);
    bad = check_state(&n->scratch, ss.err ? ss.err : rv, why, sizeof why);
    if (bad) {
        ol__agent_fail(a, "%s", bad);
        return OL_EPLUGIN;
    }

    timers = calloc(a->n_timers ? a->n_timers : 1, sizeof *timers);
    if (timers == NULL)
        return OL_ENOMEM;
    for (uint32_t i = 0; i < a->n_timers; i++) {
        timers[i].id = a->timers[i].id;
        timers[i].due_ms = a->timers[i].due_ms;
    }
    memset(&c, 0, sizeof c);
    c.agent = a->name;
    c.epoch = a->epoch;
    c.seq = a->seq + 1;
    memcpy(c.prev_hash, a->head_hash, OL_HASH_SIZE);
    c.time_ms = ol__wall_ms();
    c.plugin.kind = a->plugin->kind;
    c.plugin.version = a->plugin->version;
    memcpy(c.plugin.so_hash, a->plugin->so_hash, OL_HASH_SIZE);
    memcpy(c.signer, n->key.pk, OL_PK_SIZE);
    c.flags = a->final_pending ? OL_CKPT_FINAL : 0;
    /* The first checkpoint under a recovered database's epoch floor says
     * so in the chain. */
    if (a->node->store.history > 0 && a->epoch == a->node->store.epoch_floor &&
        a->head_epoch != a->epoch)
        c.flags |= a->seq == 0 ? OL_CKPT_NEW_HISTORY : OL_CKPT_RECOVERED;
    c.state = n->scratch.base;
    c.state_len = (uint32_t)n->scratch.len;
    c.outbox = a->outbox;
    c.n_outbox = a->n_outbox;
    c.timers = timers;
    c.n_timers = a->n_timers;
    c.acks = a->acks;
    c.n_acks = a->n_acks;

    ol__buf_init(&body);
    rv = ol__ckpt_encode(&c, &body);
    free(timers);
    if (rv != 0) {
        ol__buf_close(&body);
        ol_log(OL_LOG_ERROR, "agent '%s': encode checkpoint: %s", a->name,
               ol_strerror(rv));
        return rv;
    }
    ol__ckpt_hash(body.base, body.len, hash);
    p = ol__buf_steal(&body, &len);
    rv = n->replica->vt->propose_ckpt(n->replica, c.agent, c.epoch, c.seq, p,
                                      len, hash);
    if (rv != 0) {
        free(p);
        ol_log(OL_LOG_ERROR, "agent '%s': propose seq %" PRIu64 ": %s",
               a->name, c.seq, ol_strerror(rv));
        return rv;
    }
    a->seq = c.seq;
    memcpy(a->head_hash, hash, OL_HASH_SIZE);
    a->inflight = 1;
    a->inflight_seq = c.seq;
    a->inflight_us = ol__now_us();
    /* The outbox and acks now live in the proposed record. */
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
    a->steps_since_ckpt = 0;
    a->ckpt_requested = 0;
    a->last_ckpt_ms = c.time_ms;
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
        if (a->phase == OL_PHASE_DRAINING) {
            /* Released once the STOP event's own checkpoint is in. */
            if (a->q_len == 0)
                ol__agent_release(a, NULL);
            else
                ol__runq_add(a);
            return;
        }
        if (a->phase != OL_PHASE_ACTIVE) {
            ol__agent_settle(a);
            return;
        }
        /* Steps taken since this was proposed get their checkpoint now if
         * their time is up, or a timer for when it will be. */
        if (a->steps_since_ckpt > 0) {
            if (policy_says_checkpoint(a, 0))
                ol__step_checkpoint(a);
            else
                arm_flush(a);
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
    else
        ol__agent_settle(a);
}
