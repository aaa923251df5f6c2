/*
 * What the agent host and the node's in-process host share behind struct
 * ol_host (hostapi.h).
 */
#include "hostapi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipc.h"

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
