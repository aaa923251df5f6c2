/*
 * What the agent host and the node's in-process host share behind struct
 * ol_host (hostapi.h).
 */
#include "hostapi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/mpr.h"
#include "ipc.h"
#include "record/ckpt.h"

const char *ol__host_version(void)
{
    return OL_VERSION_STRING;
}

struct ol__witem *ol__witem_new(ol_work_fn fn, void *arg, uint64_t id,
                                uint64_t epoch, const char *name)
{
    struct ol__witem *it = calloc(1, sizeof *it);

    if (it == NULL)
        return NULL;
    it->fn = fn;
    it->arg = arg;
    it->id = id;
    it->epoch = epoch;
    snprintf(it->name, sizeof it->name, "%s", name);
    return it;
}

/* A bounce's payload is [to, reason, message]: the plugin sees the
 * message, and to whom and why it did not go. */
static int read_bounce(struct ol_event *e, struct ol__mail_text *t)
{
    const void *msg;
    size_t len;

    if (ol__bounce_parse(e->data, e->len, t->to, t->why, &msg, &len) != 0)
        return 0;
    e->data = msg;
    e->len = len;
    e->to = t->to;
    e->reason = t->why;
    return 1;
}

static const struct {
    int type;
    const char *name;
    const char *sender; /* delivered through the mailbox from this sender */
    int (*read)(struct ol_event *e, struct ol__mail_text *t);
} events[] = {
    {OL_EVENT_START, "start", NULL, NULL},
    {OL_EVENT_RESUME, "resume", NULL, NULL},
    {OL_EVENT_TIMER, "timer", NULL, NULL},
    {OL_EVENT_MESSAGE, "message", NULL, NULL},
    {OL_EVENT_STOP, "stop", NULL, NULL},
    {OL_EVENT_WORK, "work", NULL, NULL},
    /* A new config waits in the mailbox like a message and is acked like
     * one. */
    {OL_EVENT_CONFIG, "config", OL_AGENT_CONFIG_SENDER, NULL},
    {OL_EVENT_BOUNCE, "bounce", OL_AGENT_BOUNCE_SENDER, read_bounce},
};

void ol__mail_event(struct ol_event *e, const char *from, const void *data,
                    size_t len, struct ol__mail_text *t)
{
    e->from = from;
    e->data = data;
    e->len = len;
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++) {
        if (events[i].sender == NULL || strcmp(from, events[i].sender) != 0)
            continue;
        if (events[i].read == NULL || events[i].read(e, t))
            e->type = events[i].type;
        return;
    }
}

const char *ol__event_name(int type)
{
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
        if (events[i].type == type)
            return events[i].name;
    return "?";
}

/* ---- effects ---- */

int ol__effect_check(const char *kind, const void *payload, size_t len,
                     uint32_t n_open, int has_perform)
{
    if (!has_perform)
        return OL_AGENT_ENOTSUP;
    if (kind == NULL || !ol__kind_valid(kind))
        return OL_AGENT_EINVAL;
    if (payload == NULL)
        return OL_AGENT_EMALFORMED;
    if (len > OL_AGENT_EFFECT_MAX || n_open >= OL_AGENT_EFFECTS_MAX)
        return OL_AGENT_ETOOBIG;
    if (ol__mp_check(payload, len, NULL) != 0)
        return OL_AGENT_EMALFORMED;
    return 0;
}

struct ol__fxjob *ol__fxjob_new(const struct ol_agent_vtable *vt,
                                const struct ol_effect *e)
{
    struct ol__fxjob *j = calloc(1, sizeof *j);

    if (j == NULL)
        return NULL;
    j->vt = vt;
    j->e = *e;
    j->e.size = sizeof j->e;
    j->payload = malloc(e->len ? e->len : 1);
    if (j->payload == NULL ||
        snprintf(j->agent, sizeof j->agent, "%s", e->agent) >=
            (int)sizeof j->agent ||
        snprintf(j->node, sizeof j->node, "%s", e->node) >=
            (int)sizeof j->node ||
        snprintf(j->key, sizeof j->key, "%s", e->key) >= (int)sizeof j->key ||
        snprintf(j->kind, sizeof j->kind, "%s", e->kind) >=
            (int)sizeof j->kind) {
        ol__fxjob_free(j);
        return NULL;
    }
    memcpy(j->payload, e->payload, e->len);
    j->e.agent = j->agent;
    j->e.node = j->node;
    j->e.key = j->key;
    j->e.kind = j->kind;
    j->e.payload = j->payload;
    return j;
}

void ol__fxjob_free(struct ol__fxjob *j)
{
    if (j == NULL)
        return;
    free(j->payload);
    free(j->result);
    free(j);
}

/* The sink perform() writes its result to: bounded, and an overflow is
 * remembered even if the plugin ignores write()'s error. */
struct fx_sink {
    struct ol__buf buf;
    int err;
};

static int fx_write(void *data, const char *p, size_t n)
{
    struct fx_sink *s = data;
    int rv;

    if (p == NULL && n)
        rv = OL_EINVAL;
    else if (s->buf.len + n > OL_AGENT_EFFECT_MAX)
        rv = OL_ETOOBIG;
    else
        rv = ol__buf_append(&s->buf, p, n);
    if (rv != 0 && s->err == 0)
        s->err = rv;
    return rv;
}

static int fx_call(struct ol__fxjob *j, int reconcile, struct fx_sink *s)
{
    struct ol_sink sink = {s, fx_write};
    int st;

    ol__buf_reset(&s->buf);
    s->err = 0;
    st = reconcile ? j->vt->reconcile(&j->e, &sink)
                   : j->vt->perform(&j->e, &sink);
    if (s->err) {
        snprintf(j->detail, sizeof j->detail,
                 "%s() wrote a result it could not keep (%s)",
                 reconcile ? "reconcile" : "perform", ol_strerror(s->err));
        return OL_EFFECT_FAILED;
    }
    if (st == OL_EFFECT_UNKNOWN && reconcile)
        return st;
    if (st != OL_EFFECT_DONE && st != OL_EFFECT_FAILED) {
        if (st != OL_EFFECT_RETRY)
            snprintf(j->detail, sizeof j->detail, "%s() returned %d",
                     reconcile ? "reconcile" : "perform", st);
        return OL_EFFECT_RETRY;
    }
    return st;
}

void ol__fxjob_run(void *arg)
{
    struct ol__fxjob *j = arg;
    struct fx_sink s;
    int st = OL_EFFECT_UNKNOWN;

    /* Past the node's lease when a thread got to it: it may no longer
     * own the agent. */
    if (j->run_by && ol__boot_ms() > j->run_by) {
        j->status = OL_IPC_FX_NOT_RUN;
        return;
    }
    if (!OL_VTABLE_HAS(j->vt, perform) || j->vt->perform == NULL) {
        j->status = OL_EFFECT_FAILED;
        snprintf(j->detail, sizeof j->detail, "the plugin has no perform()");
        return;
    }
    ol__buf_init(&s.buf);
    if (j->e.in_doubt && OL_VTABLE_HAS(j->vt, reconcile) &&
        j->vt->reconcile != NULL)
        st = fx_call(j, 1, &s);
    if (st == OL_EFFECT_UNKNOWN)
        st = fx_call(j, 0, &s);
    j->status = st;
    if (s.buf.len > 0) {
        size_t len;

        j->result = ol__buf_steal(&s.buf, &len);
        j->result_len = (uint32_t)len;
    }
    ol__buf_close(&s.buf);
}
