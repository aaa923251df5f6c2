/*
 * An agent's queue of events: pushing them, the mailbox loaded a page at
 * a time, the armed timers (part of every checkpoint) and the outbox of
 * messages its steps sent that are not yet checkpointed.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "node.h"
#include "agent.h"
#include "step.h"

#include "agent_int.h"
#include "state/reads.h"
#include "state/verify.h"

/* Messages loaded from the mailbox into an agent's queue at a time. */
#define MAIL_PAGE 256
#define MAIL_PAGE_BYTES (1u << 20)

void ol__agent_free_ev(struct ol__ev *ev)
{
    if (ev == NULL)
        return;
    free(ev->data);
    free(ev);
}

void ol__agent_push(struct ol_agent *a, struct ol__ev *ev)
{
    ev->next = NULL;
    if (a->q_tail)
        a->q_tail->next = ev;
    else
        a->q_head = ev;
    a->q_tail = ev;
    a->q_len++;
    if (ev->type == OL_EVENT_MESSAGE)
        a->q_mail++;
    ol__runq_add(a);
}

void ol__agent_push_new(struct ol_agent *a, int type)
{
    struct ol__ev *ev = calloc(1, sizeof *ev);

    if (ev == NULL) {
        ol_log(OL_LOG_ERROR, "agent '%s': out of memory queueing an event",
               a->name);
        return;
    }
    ev->type = type;
    ol__agent_push(a, ev);
}

/* The agent is being stopped for good: one STOP event, then its final
 * checkpoint. */
void ol__agent_push_final_stop(struct ol_agent *a)
{
    struct ol__ev *ev;

    if (a->final_pending)
        return;
    ev = calloc(1, sizeof *ev);
    if (ev == NULL)
        return;
    ev->type = OL_EVENT_STOP;
    ev->final = 1;
    a->final_pending = 1;
    ol__agent_push(a, ev);
}

void ol__agent_drop_queue(struct ol_agent *a)
{
    struct ol__ev *ev = a->q_head, *next;

    for (; ev; ev = next) {
        next = ev->next;
        ol__agent_free_ev(ev);
    }
    a->q_head = a->q_tail = NULL;
    a->q_len = 0;
    a->q_mail = 0;
}

/* ---- the mailbox, a page at a time ---- */

void ol__agent_mail(struct ol_agent *a, const char *from, uint64_t seq,
                    uint32_t idx, const void *data, uint32_t len,
                    int64_t rowid)
{
    struct ol__ev *ev;

    /* Rows already loaded from the mailbox arrive again as effects of the
     * same commit; the watermark skips them.  While rows wait in the
     * mailbox beyond what is queued, new mail waits behind them. */
    if (rowid <= a->mail_watermark || a->phase != OL_PHASE_ACTIVE)
        return;
    if (a->mail_backlog || a->q_mail >= MAIL_PAGE) {
        a->mail_backlog = 1;
        return;
    }
    ev = calloc(1, sizeof *ev);
    if (ev == NULL || (ev->data = malloc(len ? len : 1)) == NULL) {
        free(ev);
        a->mail_backlog = 1;
        return;
    }
    a->mail_watermark = rowid;
    ev->type = OL_EVENT_MESSAGE;
    snprintf(ev->from, sizeof ev->from, "%s", from);
    ev->from_seq = seq;
    ev->idx = idx;
    memcpy(ev->data, data, len);
    ev->len = len;
    ol__agent_push(a, ev);
}

static void mail_row(void *arg, const struct ol__mail_row *m)
{
    ol__agent_mail(arg, m->from, m->from_seq, m->idx, m->payload, m->len,
                   m->id);
}

int ol__agent_load_mail(struct ol_agent *a)
{
    struct ol__node *n = a->node;
    sqlite3_stmt *st = ol__verify_cache_mail(n->vcache, n->reader.db);
    int more;
    int rv = st ? ol__read_mail_st(st, a->name, a->mail_watermark, MAIL_PAGE,
                                   MAIL_PAGE_BYTES, mail_row, a, &more)
                : ol__read_mail(n->reader.db, a->name, a->mail_watermark,
                                MAIL_PAGE, MAIL_PAGE_BYTES, mail_row, a,
                                &more);

    a->mail_backlog = rv == 0 && more;
    return rv;
}

void ol__agent_mail_more(struct ol_agent *a)
{
    if (a->mail_backlog && a->q_mail == 0 && a->phase == OL_PHASE_ACTIVE &&
        ol__agent_load_mail(a) != 0)
        ol_log_rl(OL_LOG_ERROR, "agent '%s': cannot read its mailbox: %s",
                  a->name, sqlite3_errmsg(a->node->reader.db));
}

/* ---- timers ---- */

void ol__armed_set(struct ol__armed *t, int64_t due_ms)
{
    int64_t left = due_ms - ol__wall_ms();

    t->due_ms = due_ms;
    t->mono_due = ol__mono_ms() + (uint64_t)(left > 0 ? left : 0);
    t->fired = 0;
}

/* A timer is due when either clock says so: the wall clock (timer_at, and
 * a clock stepped forward), or the monotonic clock it was armed on. */
static int armed_due(const struct ol__armed *t, int64_t now, uint64_t mono)
{
    return t->due_ms <= now || t->mono_due <= mono;
}

static void timer_cb(uv_timer_t *t)
{
    struct ol_agent *a = t->data;
    int64_t now = ol__wall_ms();
    uint64_t mono = ol__mono_ms();

    if (a->phase != OL_PHASE_ACTIVE)
        return;
    for (uint32_t i = 0; i < a->n_timers; i++) {
        struct ol__armed *tm = &a->timers[i];
        struct ol__ev *ev;

        if (tm->fired || !armed_due(tm, now, mono))
            continue;
        ev = calloc(1, sizeof *ev);
        if (ev == NULL)
            break;
        /* The timer stays armed (and in checkpoints) until its event is
         * handled, so a crash in between fires it again on resume. */
        tm->fired = 1;
        ev->type = OL_EVENT_TIMER;
        ev->timer_id = tm->id;
        ev->due_ms = tm->due_ms;
        ol__agent_push(a, ev);
    }
    ol__agent_timers_rearm(a);
}

void ol__agent_timers_rearm(struct ol_agent *a)
{
    int64_t now = ol__wall_ms();
    uint64_t mono = ol__mono_ms(), next = UINT64_MAX;

    for (uint32_t i = 0; i < a->n_timers; i++) {
        const struct ol__armed *t = &a->timers[i];
        uint64_t w, m;

        if (t->fired)
            continue;
        w = t->due_ms > now ? (uint64_t)(t->due_ms - now) : 0;
        m = t->mono_due > mono ? t->mono_due - mono : 0;
        if (m < w)
            w = m;
        if (w < next)
            next = w;
    }
    if (next == UINT64_MAX || a->phase != OL_PHASE_ACTIVE) {
        uv_timer_stop(&a->timer);
        return;
    }
    uv_timer_start(&a->timer, timer_cb, next, 0);
}

int ol__agent_arm(struct ol_agent *a, uint64_t id, int64_t due)
{
    struct ol__armed *t;

    for (uint32_t i = 0; i < a->n_timers; i++) {
        if (a->timers[i].id == id) {
            ol__armed_set(&a->timers[i], due);
            ol__agent_timers_rearm(a);
            return 0;
        }
    }
    if (a->n_timers >= OL_AGENT_TIMERS_MAX)
        return OL_ETOOBIG;
    t = realloc(a->timers, (a->n_timers + 1) * sizeof *t);
    if (t == NULL)
        return OL_ENOMEM;
    a->timers = t;
    t[a->n_timers].id = id;
    ol__armed_set(&t[a->n_timers], due);
    a->n_timers++;
    ol__agent_timers_rearm(a);
    return 0;
}

int ol__agent_cancel(struct ol_agent *a, uint64_t id)
{
    for (uint32_t i = 0; i < a->n_timers; i++) {
        if (a->timers[i].id == id) {
            a->timers[i] = a->timers[--a->n_timers];
            ol__agent_timers_rearm(a);
            return 0;
        }
    }
    return OL_ENOTFOUND;
}

int ol__agent_outbox_add(struct ol_agent *a, const char *to,
                         const void *msg, uint32_t len)
{
    struct ol__outmsg *o = realloc(a->outbox, (a->n_outbox + 1) * sizeof *o);

    if (o == NULL)
        return OL_ENOMEM;
    a->outbox = o;
    o = &a->outbox[a->n_outbox];
    o->to = strdup(to);
    o->data = malloc(len ? len : 1);
    if (o->to == NULL || o->data == NULL) {
        free(o->to);
        free(o->data);
        return OL_ENOMEM;
    }
    memcpy(o->data, msg, len);
    o->len = len;
    a->n_outbox++;
    return 0;
}
