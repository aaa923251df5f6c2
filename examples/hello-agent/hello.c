/*
 * hello - an outlast agent built out of tree, as a tutorial.
 *
 * It greets on a timer and answers messages.  Every `interval_ms` it counts
 * a beat; every message it receives is counted, and a message from another
 * agent is answered with {"greeting": <greeting>, "n": <messages so far>}.
 * Its counters live in its state, so when the node running it dies and the
 * agent resumes elsewhere, it carries on counting from its last checkpoint.
 *
 * Config: {greeting: str (default "hello"), interval_ms: uint (5000)}.
 * State:  {beats: uint, messages: uint, last_from: str, started_ms: int}.
 *
 * README.md walks through this file from top to bottom.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <outlast/agent.h>
#include <outlast/agent_util.h> /* ol_mp_unpack, ol_mp_get, ol_mp_str... */

#define BEAT_TIMER 1
#define GREETING_MAX 63

/* The host's services.  The table outlives the plugin, so keeping the
 * pointer is safe; it and the vtable below are the only globals. */
static const struct ol_host *host;

/* One running instance.  Config first, then state. */
struct hello {
    char greeting[GREETING_MAX + 1];
    uint64_t interval_ms;

    uint64_t beats;
    uint64_t messages;
    char last_from[OL_AGENT_NAME_MAX + 1];
    int64_t started_ms;
};

/* ---- the vtable functions ------------------------------------------- */

static int hello_open(struct ol_agent *a, const void *config, size_t len,
                      void **self)
{
    const msgpack_object *g, *iv;
    struct hello *h;
    msgpack_unpacked u;
    bool ok;

    if (ol_mp_unpack(&u, config, len) != 0)
        return OL_AGENT_EINVAL;
    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        msgpack_unpacked_destroy(&u);
        return OL_AGENT_ENOMEM;
    }
    strcpy(h->greeting, "hello");
    h->interval_ms = 5000;

    g = ol_mp_get(&u.data, "greeting");
    iv = ol_mp_get(&u.data, "interval_ms");
    ok = u.data.type == MSGPACK_OBJECT_MAP &&
         (g == NULL || ol_mp_str(g, h->greeting, sizeof(h->greeting))) &&
         (iv == NULL || (iv->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
                         iv->via.u64 > 0));
    if (ok && iv != NULL)
        h->interval_ms = iv->via.u64;
    msgpack_unpacked_destroy(&u);
    if (!ok) {
        host->log(a, OL_AGENT_LOG_ERROR,
                  "config: want {greeting: str of at most %d bytes, "
                  "interval_ms: positive int}", GREETING_MAX);
        free(h);
        return OL_AGENT_EINVAL;
    }
    *self = h;
    return 0;
}

static int hello_restore(void *self, struct ol_agent *a, const void *state,
                         size_t len)
{
    struct hello *h = self;
    const msgpack_object *beats, *msgs, *from, *started;
    msgpack_unpacked u;
    bool ok;

    if (ol_mp_unpack(&u, state, len) != 0)
        return OL_AGENT_EMALFORMED;
    beats = ol_mp_get(&u.data, "beats");
    msgs = ol_mp_get(&u.data, "messages");
    from = ol_mp_get(&u.data, "last_from");
    started = ol_mp_get(&u.data, "started_ms");
    /* started_ms is written with msgpack_pack_int64, which picks the
     * smallest encoding: a time after 1970 comes back as a positive int. */
    ok = beats != NULL && beats->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
         msgs != NULL && msgs->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
         ol_mp_str(from, h->last_from, sizeof(h->last_from)) &&
         started != NULL &&
         started->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
         started->via.u64 <= INT64_MAX;
    if (ok) {
        h->beats = beats->via.u64;
        h->messages = msgs->via.u64;
        h->started_ms = (int64_t)started->via.u64;
    }
    msgpack_unpacked_destroy(&u);
    if (!ok)
        host->log(a, OL_AGENT_LOG_ERROR, "restore: unexpected state");
    return ok ? 0 : OL_AGENT_EMALFORMED;
}

/* Answers a message from another agent with our greeting.  The reply is
 * held by the host until this step's checkpoint commits. */
static int reply(struct hello *h, struct ol_agent *a, const char *to)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int rv;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "greeting", 8);
    msgpack_pack_str_with_body(&pk, h->greeting, strlen(h->greeting));
    msgpack_pack_str_with_body(&pk, "n", 1);
    msgpack_pack_uint64(&pk, h->messages);
    rv = host->send(a, to, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return rv;
}

static int hello_handle(void *self, struct ol_agent *a,
                        const struct ol_event *ev)
{
    struct hello *h = self;

    switch (ev->type) {
    case OL_EVENT_START:
        h->started_ms = ev->now_ms;
        host->log(a, OL_AGENT_LOG_INFO, "%s! beating every %" PRIu64 " ms",
                  h->greeting, h->interval_ms);
        return host->timer_after(a, BEAT_TIMER, h->interval_ms);

    case OL_EVENT_RESUME:
        host->log(a, OL_AGENT_LOG_INFO,
                  "%s again, now on '%s' (was on '%s', down %" PRId64
                  " ms); %" PRIu64 " beats so far",
                  h->greeting, ev->node, ev->prev_node, ev->downtime_ms,
                  h->beats);
        return 0; /* timer 1 was restored with the checkpoint */

    case OL_EVENT_TIMER:
        if (ev->timer_id != BEAT_TIMER)
            return 0;
        h->beats++;
        host->log(a, OL_AGENT_LOG_DEBUG, "beat %" PRIu64, h->beats);
        return host->timer_after(a, BEAT_TIMER, h->interval_ms);

    case OL_EVENT_MESSAGE:
        h->messages++;
        strncpy(h->last_from, ev->from, sizeof(h->last_from) - 1);
        if (ev->from[0] == '@')
            return 0; /* "@cli" has no inbox to answer */
        if (reply(h, a, ev->from) != 0)
            host->log(a, OL_AGENT_LOG_WARN, "reply to '%s' failed",
                      ev->from);
        return 0;

    default:
        return 0;
    }
}

static int hello_save(void *self, struct ol_agent *a,
                      const struct ol_sink *out)
{
    const struct hello *h = self;
    msgpack_packer pk;

    (void)a; /* save() needs no host service */
    msgpack_packer_init(&pk, out->data, out->write);
    if (msgpack_pack_map(&pk, 4) != 0 ||
        msgpack_pack_str_with_body(&pk, "beats", 5) != 0 ||
        msgpack_pack_uint64(&pk, h->beats) != 0 ||
        msgpack_pack_str_with_body(&pk, "messages", 8) != 0 ||
        msgpack_pack_uint64(&pk, h->messages) != 0 ||
        msgpack_pack_str_with_body(&pk, "last_from", 9) != 0 ||
        msgpack_pack_str_with_body(&pk, h->last_from,
                                   strlen(h->last_from)) != 0 ||
        msgpack_pack_str_with_body(&pk, "started_ms", 10) != 0 ||
        msgpack_pack_int64(&pk, h->started_ms) != 0)
        return OL_AGENT_ETOOBIG;
    return 0;
}

static void hello_close(void *self)
{
    free(self);
}

/* ---- the entry point ------------------------------------------------- */

static const struct ol_agent_vtable vtable = {
    .abi = OL_AGENT_ABI,
    .size = sizeof(struct ol_agent_vtable),
    .kind = "hello",
    .version = "1.0.0",
    .open = hello_open,
    .restore = hello_restore,
    .handle = hello_handle,
    .save = hello_save,
    .close = hello_close,
};

OL_AGENT_EXPORT int ol_agent_entry(const struct ol_host *h,
                                   const struct ol_agent_vtable **out)
{
    if (h->abi != OL_AGENT_ABI || !OL_HOST_HAS(h, send))
        return OL_AGENT_EINVAL;
    host = h;
    *out = &vtable;
    return 0;
}
