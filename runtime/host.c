/*
 * The host services a plugin calls (struct ol_host in outlast/agent.h).
 * Every argument is input: names, sizes and msgpack bytes are checked, and
 * services that change what the next checkpoint holds are refused outside
 * handle(), so nothing a plugin does escapes the record of its step.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "mpr.h"
#include "node.h"

/* The public codes are the internal ones; keep them that way. */
_Static_assert(OL_AGENT_ENOMEM == OL_ENOMEM, "abi: ENOMEM");
_Static_assert(OL_AGENT_EINVAL == OL_EINVAL, "abi: EINVAL");
_Static_assert(OL_AGENT_EMALFORMED == OL_EMALFORMED, "abi: EMALFORMED");
_Static_assert(OL_AGENT_ENOTFOUND == OL_ENOTFOUND, "abi: ENOTFOUND");
_Static_assert(OL_AGENT_ETOOBIG == OL_ETOOBIG, "abi: ETOOBIG");
_Static_assert(OL_AGENT_ESTATE == OL_ESTATE, "abi: ESTATE");
_Static_assert(OL_AGENT_LOG_DEBUG == OL_LOG_DEBUG, "abi: log levels");

static void host_log(struct ol_agent *a, int level, const char *fmt, ...)
{
    static struct ol_ratelimit rl;
    char line[512];
    unsigned suppressed;
    va_list ap;

    if (level < OL_AGENT_LOG_ERROR)
        level = OL_AGENT_LOG_ERROR;
    if (level > OL_AGENT_LOG_DEBUG)
        level = OL_AGENT_LOG_DEBUG;
    if (level > ol__log_level || fmt == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* A newline or an escape sequence from a plugin would forge log lines
     * or reach an operator's terminal. */
    for (char *p = line; *p; p++)
        if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
            *p = '?';
    /* Every line goes to the agent's own bounded ring; a chatty plugin
     * must not drown the node's log, so that copy is rate-limited. */
    ol__agent_note(a, level, 1, "%s", line);
    if (!ol__ratelimit_ok(&rl, 5, 10000, &suppressed))
        return;
    if (suppressed)
        ol__log(level, "(%u similar messages suppressed)", suppressed);
    ol__log_agent(level, a->name, "%s", line);
}

static const char *host_name(struct ol_agent *a)
{
    return a->name;
}

static int64_t host_now(struct ol_agent *a)
{
    return ol__wall_ms();
}

static int arm(struct ol_agent *a, uint64_t id, int64_t due)
{
    struct ol__armed *t;

    if (!a->in_handle)
        return OL_AGENT_ESTATE;
    for (uint32_t i = 0; i < a->n_timers; i++) {
        if (a->timers[i].id == id) {
            a->timers[i].due_ms = due;
            a->timers[i].fired = 0;
            ol__agent_timers_rearm(a);
            return 0;
        }
    }
    if (a->n_timers >= OL_AGENT_TIMERS_MAX)
        return OL_AGENT_ETOOBIG;
    t = realloc(a->timers, (a->n_timers + 1) * sizeof *t);
    if (t == NULL)
        return OL_AGENT_ENOMEM;
    a->timers = t;
    t[a->n_timers].id = id;
    t[a->n_timers].due_ms = due;
    t[a->n_timers].fired = 0;
    a->n_timers++;
    ol__agent_timers_rearm(a);
    return 0;
}

static int host_timer_after(struct ol_agent *a, uint64_t id,
                            uint64_t delay_ms)
{
    if (delay_ms > (uint64_t)INT32_MAX * 1000)
        return OL_AGENT_EINVAL;
    return arm(a, id, ol__wall_ms() + (int64_t)delay_ms);
}

static int host_timer_at(struct ol_agent *a, uint64_t id, int64_t unix_ms)
{
    return arm(a, id, unix_ms);
}

static int host_timer_cancel(struct ol_agent *a, uint64_t id)
{
    if (!a->in_handle)
        return OL_AGENT_ESTATE;
    for (uint32_t i = 0; i < a->n_timers; i++) {
        if (a->timers[i].id == id) {
            a->timers[i] = a->timers[--a->n_timers];
            ol__agent_timers_rearm(a);
            return 0;
        }
    }
    return OL_AGENT_ENOTFOUND;
}

static int host_send(struct ol_agent *a, const char *to, const void *msg,
                     size_t len)
{
    struct ol__outmsg *o;

    if (!a->in_handle || a->final_pending)
        return OL_AGENT_ESTATE;
    if (to == NULL || strnlen(to, OL_NAME_MAX + 1) > OL_NAME_MAX ||
        !ol__name_valid(to) || (msg == NULL && len))
        return OL_AGENT_EINVAL;
    if (len > OL_AGENT_MSG_MAX || a->n_outbox >= OL_AGENT_OUTBOX_MAX)
        return OL_AGENT_ETOOBIG;
    if (ol__mp_check(msg, len, NULL) != 0)
        return OL_AGENT_EMALFORMED;
    o = realloc(a->outbox, (a->n_outbox + 1) * sizeof *o);
    if (o == NULL)
        return OL_AGENT_ENOMEM;
    a->outbox = o;
    o = &a->outbox[a->n_outbox];
    o->to = strdup(to);
    o->data = malloc(len ? len : 1);
    if (o->to == NULL || o->data == NULL) {
        free(o->to);
        free(o->data);
        return OL_AGENT_ENOMEM;
    }
    memcpy(o->data, msg, len);
    o->len = (uint32_t)len;
    a->n_outbox++;
    return 0;
}

static int host_checkpoint(struct ol_agent *a)
{
    if (!a->in_handle)
        return OL_AGENT_ESTATE;
    a->ckpt_requested = 1;
    return 0;
}

struct work {
    uv_work_t req;
    struct ol_agent *a;
    uint64_t id;
    ol_work_fn fn;
    void *arg;
};

static void work_run(uv_work_t *req)
{
    struct work *w = req->data;

    w->fn(w->arg);
}

void ol__agent_settle(struct ol_agent *a);

static void work_done(uv_work_t *req, int status)
{
    struct work *w = req->data;
    struct ol_agent *a = w->a;
    struct ol__ev *ev;

    a->work_pending--;
    if (a->phase == OL_PHASE_ACTIVE || a->phase == OL_PHASE_DRAINING) {
        ev = calloc(1, sizeof *ev);
        if (ev) {
            ev->type = OL_EVENT_WORK;
            ev->work_id = w->id;
            ev->work_arg = w->arg;
            ol__agent_push(a, ev);
        }
    } else if (a->self) {
        /* The agent is going away: hand the argument back so the plugin
         * can free it; nothing it does now is recorded. */
        struct ol_event e;

        memset(&e, 0, sizeof e);
        e.type = OL_EVENT_WORK;
        e.size = sizeof e;
        e.now_ms = ol__wall_ms();
        e.work_id = w->id;
        e.work_arg = w->arg;
        a->in_handle = 0;
        (void)a->plugin->vt->handle(a->self, a, &e);
        ol__agent_settle(a);
    }
    free(w);
}

static int host_work(struct ol_agent *a, uint64_t id, ol_work_fn fn,
                     void *arg)
{
    struct work *w;
    int rv;

    if (!a->in_handle)
        return OL_AGENT_ESTATE;
    if (fn == NULL)
        return OL_AGENT_EINVAL;
    w = calloc(1, sizeof *w);
    if (w == NULL)
        return OL_AGENT_ENOMEM;
    w->req.data = w;
    w->a = a;
    w->id = id;
    w->fn = fn;
    w->arg = arg;
    rv = uv_queue_work(a->node->loop, &w->req, work_run, work_done);
    if (rv != 0) {
        free(w);
        return OL_AGENT_ENOMEM;
    }
    a->work_pending++;
    return 0;
}

const struct ol_host ol__host_table = {
    .abi = OL_AGENT_ABI,
    .size = sizeof(struct ol_host),
    .log = host_log,
    .name = host_name,
    .now_ms = host_now,
    .timer_after = host_timer_after,
    .timer_at = host_timer_at,
    .timer_cancel = host_timer_cancel,
    .send = host_send,
    .checkpoint = host_checkpoint,
    .work = host_work,
};
