/*
 * sender - a well-behaved test agent that sends numbered messages on
 * command, and echoes.
 *
 * The exactly-once tests drive it with the CLI:
 *   {"to": NAME, "n": K}  queue K messages {n: i} to NAME.  Numbers run on
 *                         per destination across commands (the first
 *                         command sends 1..K, the next K+1..), so a ledger
 *                         at NAME can count dups and gaps over a whole test.
 *   {"echo": X}           reply {"echoed": X} to the sender (not to "@..."
 *                         senders such as the CLI, which have no inbox).
 * Anything else is counted in `ignored`.
 *
 * Queued messages go out at most `batch` per step; the rest wait for timer
 * 1, which fires after 1 ms.  Queue, numbers and counters are state, so a
 * sender killed half way through a batch carries on after a resume from its
 * last committed checkpoint without skipping or repeating a number.
 *
 * Config:  {batch: uint, 1..OL_AGENT_OUTBOX_MAX (100)}.
 * State:   {next: {NAME: uint}, jobs: [{to: str, left: uint}],
 *           echoed: uint, ignored: uint}.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <outlast/agent.h>
#include <outlast/agent_util.h>

#include "entry.h"

#define PUMP_TIMER 1
#define DESTS_MAX 64
#define JOBS_MAX 64

static const struct ol_host *host;

struct dest {
    char name[OL_AGENT_NAME_MAX + 1];
    uint64_t next; /* the number the next message to it carries */
};

struct job {
    char to[OL_AGENT_NAME_MAX + 1];
    uint64_t left;
};

struct sender {
    uint64_t batch;
    struct dest dests[DESTS_MAX];
    size_t ndests;
    struct job jobs[JOBS_MAX]; /* in order; jobs[0] goes first */
    size_t njobs;
    uint64_t echoed, ignored;
};

static bool as_name(const msgpack_object *o, char *out)
{
    if (o == NULL || o->type != MSGPACK_OBJECT_STR || o->via.str.size == 0 ||
        o->via.str.size > OL_AGENT_NAME_MAX ||
        memchr(o->via.str.ptr, '\0', o->via.str.size) != NULL)
        return false;
    memcpy(out, o->via.str.ptr, o->via.str.size);
    out[o->via.str.size] = '\0';
    return true;
}

static struct dest *dest_get(struct sender *s, const char *name)
{
    for (size_t i = 0; i < s->ndests; i++)
        if (strcmp(s->dests[i].name, name) == 0)
            return &s->dests[i];
    if (s->ndests == DESTS_MAX)
        return NULL;
    strcpy(s->dests[s->ndests].name, name);
    s->dests[s->ndests].next = 1;
    return &s->dests[s->ndests++];
}

static int sender_open(struct ol_agent *a, const void *config, size_t len,
                       void **self)
{
    struct sender *s;
    const msgpack_object *v;
    msgpack_unpacked u;
    bool ok;
    int rv;

    if ((s = tp_open_begin(config, len, sizeof(*s), &u, &rv)) == NULL)
        return rv;
    s->batch = 100;
    v = ol_mp_get(&u.data, "batch");
    ok = (u.data.type == MSGPACK_OBJECT_MAP ||
          u.data.type == MSGPACK_OBJECT_NIL) &&
         (v == NULL || (ol_mp_uint(v, &s->batch) && s->batch >= 1 &&
                        s->batch <= OL_AGENT_OUTBOX_MAX));
    return tp_open_end(host, a, &u, ok, s, self,
                       "'batch' must be an integer in 1..%d",
                       OL_AGENT_OUTBOX_MAX);
}

static void sender_close(void *self)
{
    free(self);
}

/* Sends up to `batch` queued messages, then arms the timer if any are
 * left.  A destination the host refuses (a bad name) drops its job. */
static int pump(struct sender *s, struct ol_agent *a)
{
    uint64_t budget = s->batch;

    while (s->njobs > 0 && budget > 0) {
        struct job *j = &s->jobs[0];
        struct dest *d = dest_get(s, j->to);
        unsigned char buf[16];
        size_t len = 0;
        int rv;

        if (d == NULL || j->left == 0) {
            if (d == NULL)
                host->log(a, OL_AGENT_LOG_WARN,
                          "to '%s': too many destinations; job dropped",
                          j->to);
            memmove(&s->jobs[0], &s->jobs[1],
                    (s->njobs - 1) * sizeof(s->jobs[0]));
            s->njobs--;
            continue;
        }
        buf[len++] = 0x81; /* {"n": uint64} */
        buf[len++] = 0xa1;
        buf[len++] = 'n';
        buf[len++] = 0xcf;
        for (int i = 7; i >= 0; i--)
            buf[len++] = (unsigned char)(d->next >> (8 * i));
        rv = host->send(a, j->to, buf, len);
        if (rv == OL_AGENT_ETOOBIG)
            break; /* the outbox is full; go on next step */
        if (rv != 0) {
            host->log(a, OL_AGENT_LOG_WARN, "to '%s': send: error %d; "
                      "job dropped", j->to, rv);
            j->left = 0;
            continue;
        }
        d->next++;
        j->left--;
        budget--;
    }
    if (s->njobs > 0)
        return host->timer_after(a, PUMP_TIMER, 1);
    return 0;
}

static void echo(struct sender *s, struct ol_agent *a, const char *from,
                 const msgpack_object *x)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int rv;

    if (from[0] == '@')
        return;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    rv = msgpack_pack_map(&pk, 1) ||
         msgpack_pack_str_with_body(&pk, "echoed", 6) ||
         msgpack_pack_object(&pk, *x);
    if (rv == 0)
        rv = host->send(a, from, sb.data, sb.size);
    if (rv == 0)
        s->echoed++;
    else
        host->log(a, OL_AGENT_LOG_WARN, "echo to '%s': error %d", from, rv);
    msgpack_sbuffer_destroy(&sb);
}

static void on_message(struct sender *s, struct ol_agent *a,
                       const struct ol_event *ev)
{
    const msgpack_object *to, *n, *x;
    msgpack_unpacked u;
    struct job j;

    if (ol_mp_unpack(&u, ev->data, ev->len) != 0) {
        s->ignored++;
        return;
    }
    to = ol_mp_get(&u.data, "to");
    n = ol_mp_get(&u.data, "n");
    x = ol_mp_get(&u.data, "echo");
    if (to != NULL && as_name(to, j.to) && ol_mp_uint(n, &j.left)) {
        if (s->njobs == JOBS_MAX) {
            host->log(a, OL_AGENT_LOG_WARN, "queue full; command ignored");
            s->ignored++;
        } else {
            s->jobs[s->njobs++] = j;
        }
    } else if (x != NULL) {
        echo(s, a, ev->from, x);
    } else {
        s->ignored++;
    }
    msgpack_unpacked_destroy(&u);
}

static int sender_handle(void *self, struct ol_agent *a,
                         const struct ol_event *ev)
{
    struct sender *s = self;

    switch (ev->type) {
    case OL_EVENT_START:
    case OL_EVENT_RESUME:
        host->log(a, OL_AGENT_LOG_INFO, "%s: %zu jobs queued",
                  ev->type == OL_EVENT_START ? "start" : "resume", s->njobs);
        return pump(s, a);
    case OL_EVENT_TIMER:
        return ev->timer_id == PUMP_TIMER ? pump(s, a) : 0;
    case OL_EVENT_MESSAGE:
        on_message(s, a, ev);
        return pump(s, a);
    default:
        return 0;
    }
}

static int sender_save(void *self, struct ol_agent *a,
                       const struct ol_sink *out)
{
    const struct sender *s = self;
    msgpack_packer pk;

    msgpack_packer_init(&pk, out->data, out->write);
    if (msgpack_pack_map(&pk, 4) || ol_mp_pack_str(&pk, "next") ||
        msgpack_pack_map(&pk, (uint32_t)s->ndests))
        return OL_AGENT_ETOOBIG;
    for (size_t i = 0; i < s->ndests; i++)
        if (ol_mp_pack_str(&pk, s->dests[i].name) ||
            msgpack_pack_uint64(&pk, s->dests[i].next))
            return OL_AGENT_ETOOBIG;
    if (ol_mp_pack_str(&pk, "jobs") || msgpack_pack_array(&pk, (uint32_t)s->njobs))
        return OL_AGENT_ETOOBIG;
    for (size_t i = 0; i < s->njobs; i++)
        if (msgpack_pack_map(&pk, 2) || ol_mp_pack_str(&pk, "to") ||
            ol_mp_pack_str(&pk, s->jobs[i].to) || ol_mp_pack_str(&pk, "left") ||
            msgpack_pack_uint64(&pk, s->jobs[i].left))
            return OL_AGENT_ETOOBIG;
    if (ol_mp_pack_str(&pk, "echoed") || msgpack_pack_uint64(&pk, s->echoed) ||
        ol_mp_pack_str(&pk, "ignored") || msgpack_pack_uint64(&pk, s->ignored))
        return OL_AGENT_ETOOBIG;
    return 0;
}

static int restore_from(void *self, const msgpack_object *st)
{
    struct sender *s = self;
    const msgpack_object *next = ol_mp_get(st, "next");
    const msgpack_object *jobs = ol_mp_get(st, "jobs");

    if (next == NULL || next->type != MSGPACK_OBJECT_MAP ||
        next->via.map.size > DESTS_MAX || jobs == NULL ||
        jobs->type != MSGPACK_OBJECT_ARRAY ||
        jobs->via.array.size > JOBS_MAX ||
        !ol_mp_uint(ol_mp_get(st, "echoed"), &s->echoed) ||
        !ol_mp_uint(ol_mp_get(st, "ignored"), &s->ignored))
        return OL_AGENT_EMALFORMED;
    s->ndests = 0;
    for (uint32_t i = 0; i < next->via.map.size; i++) {
        struct dest *d = &s->dests[s->ndests++];
        if (!as_name(&next->via.map.ptr[i].key, d->name) ||
            !ol_mp_uint(&next->via.map.ptr[i].val, &d->next))
            return OL_AGENT_EMALFORMED;
    }
    s->njobs = 0;
    for (uint32_t i = 0; i < jobs->via.array.size; i++) {
        struct job *j = &s->jobs[s->njobs++];
        const msgpack_object *o = &jobs->via.array.ptr[i];
        if (!as_name(ol_mp_get(o, "to"), j->to) ||
            !ol_mp_uint(ol_mp_get(o, "left"), &j->left))
            return OL_AGENT_EMALFORMED;
    }
    return 0;
}

static int sender_restore(void *self, struct ol_agent *a, const void *state,
                          size_t len)
{
    return tp_restore(host, a, self, state, len, restore_from);
}

TP_PLUGIN("sender", "0", sender)
