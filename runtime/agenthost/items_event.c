/*
 * The event a STEP item from the node delivers to a plugin's handle():
 * its fields from the item, a message's sender read for config and
 * bounce messages, and a WORK event's finished item taken from the table
 * of done work.
 */
#include <string.h>

#include "base/err.h"
#include "runtime/ipc.h"
#include "host_int.h"

static struct done *done_get(int64_t token, const struct ol_agent *a)
{
    if (token < 0 || (uint64_t)token >= ah.n_done)
        return NULL;
    if (!ah.done[token].used || ah.done[token].slot != a->slot ||
        ah.done[token].gen != a->gen)
        return NULL;
    return &ah.done[token];
}

static void message_event(const struct ol__ipc_step *s, struct ol_event *e,
                          struct ahost_step_text *t)
{
    ol__mail_event(e, s->s ? t->from : "", s->b, s->b_len, &t->mail);
}

/* EFFECT: s is the key, then the reason of a failure the node decided. */
static int effect_event(const struct ol__ipc_step *s, struct ol_event *e,
                        struct ahost_step_text *t)
{
    if (s->s == NULL || s->s_len < OL_AGENT_KEY_LEN ||
        s->s_len >= OL_AGENT_KEY_LEN + sizeof t->fx_why)
        return OL_EMALFORMED;
    memcpy(t->fx_key, s->s, OL_AGENT_KEY_LEN);
    t->fx_key[OL_AGENT_KEY_LEN] = '\0';
    memcpy(t->fx_why, s->s + OL_AGENT_KEY_LEN, s->s_len - OL_AGENT_KEY_LEN);
    t->fx_why[s->s_len - OL_AGENT_KEY_LEN] = '\0';
    e->effect_id = s->a1;
    e->effect_key = t->fx_key;
    e->effect_status = (int)(s->a2 & 0xff);
    e->effect_attempts = (uint32_t)((uint64_t)s->a2 >> 8);
    e->reason = t->fx_why[0] ? t->fx_why : NULL;
    e->data = s->b;
    e->len = s->b_len;
    return 0;
}

int ahost_step_event(struct ol_agent *a, const struct ol__ipc_step *s,
                     struct ol_event *e, struct ahost_step_text *t)
{
    memset(e, 0, sizeof *e);
    e->type = s->type;
    e->size = sizeof *e;
    e->now_ms = s->now_ms;
    e->node = ah.o->node;
    e->epoch = s->epoch;
    if (s->type == OL_EVENT_EFFECT)
        return effect_event(s, e, t);
    if (s->s) {
        char *dst = s->type == OL_EVENT_MESSAGE ? t->from : t->prev;

        if (s->s_len > OL_NAME_MAX + 1)
            return OL_EMALFORMED;
        memcpy(dst, s->s, s->s_len);
        dst[s->s_len] = '\0';
    }
    switch (s->type) {
    case OL_EVENT_RESUME:
        e->seq = s->a1;
        e->downtime_ms = s->a2;
        e->prev_node = s->s ? t->prev : "unknown";
        break;
    case OL_EVENT_TIMER: {
        int i = ahost_timer_find(a, s->a1);

        e->timer_id = s->a1;
        e->due_ms = s->a2;
        if ((s->flags & OL_IPC_DISARMED) && i >= 0)
            a->timers[i] = a->timers[--a->n_timers];
        break;
    }
    case OL_EVENT_MESSAGE:
        message_event(s, e, t);
        break;
    case OL_EVENT_WORK: {
        struct done *d = done_get(s->a2, a);

        if (d == NULL)
            return OL_EMALFORMED;
        e->work_id = d->id;
        e->work_arg = d->arg;
        e->work_epoch = d->epoch;
        e->fenced = d->epoch != s->epoch;
        d->used = 0;
        break;
    }
    case OL_EVENT_STOP:
        e->final = (int)s->a1;
        break;
    }
    return 0;
}
