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

/* Reads the config into h.  Config is input: every type is checked, and a
 * key that is missing keeps its default. */
static bool read_config(struct hello *h, const msgpack_object *cfg)
{
    const msgpack_object *g = ol_mp_get(cfg, "greeting");
    const msgpack_object *iv = ol_mp_get(cfg, "interval_ms");

    return cfg->type == MSGPACK_OBJECT_MAP &&
           (g == NULL || ol_mp_str(g, h->greeting, sizeof(h->greeting))) &&
           (iv == NULL ||
            (ol_mp_uint(iv, &h->interval_ms) && h->interval_ms > 0));
}

static int hello_open(struct ol_agent *a, const void *config, size_t len,
                      void **self)
{
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
    ok = read_config(h, &u.data);
    msgpack_unpacked_destroy(&u);
    if (!ok) {
        /* open() failed, so close() will not be called: free h here. */
        free(h);
        host->log(a, OL_AGENT_LOG_ERROR,
                  "config: want {greeting: str of at most %d bytes, "
                  "interval_ms: positive int}", GREETING_MAX);
        if (OL_HOST_HAS(host, error))
            host->error(a, "want {greeting: str of at most %d bytes, "
                           "interval_ms: positive int}", GREETING_MAX);
        return OL_AGENT_EINVAL;
    }
    *self = h;
    return 0;
}

static int hello_restore(void *self, struct ol_agent *a, const void *state,
                         size_t len)
{
    struct hello *h = self;
    msgpack_unpacked u;
    bool ok;

    if (ol_mp_unpack(&u, state, len) != 0)
        return OL_AGENT_EMALFORMED;
    ok = ol_mp_uint(ol_mp_get(&u.data, "beats"), &h->beats) &&
         ol_mp_uint(ol_mp_get(&u.data, "messages"), &h->messages) &&
         ol_mp_str(ol_mp_get(&u.data, "last_from"), h->last_from,
                   sizeof(h->last_from)) &&
         ol_mp_int(ol_mp_get(&u.data, "started_ms"), &h->started_ms);
    msgpack_unpacked_destroy(&u);
    if (!ok)
        host->log(a, OL_AGENT_LOG_ERROR, "restore: unexpected state");
    /* On failure close() still follows: h stays valid to free. */
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
    ol_mp_pack_str(&pk, "greeting");
    ol_mp_pack_str(&pk, h->greeting);
    ol_mp_pack_str(&pk, "n");
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
        host->log(a, OL_AGENT_LOG_INFO,
                  "%s! beating every %" PRIu64 " ms (built with outlast %s, "
                  "running in %s)",
                  h->greeting, h->interval_ms, OL_VERSION_STRING,
                  OL_HOST_HAS(host, version) ? host->version() : "older");
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
    ol_mp_packer_init(&pk, out);
    if (msgpack_pack_map(&pk, 4) != 0 ||
        ol_mp_pack_str(&pk, "beats") != 0 ||
        msgpack_pack_uint64(&pk, h->beats) != 0 ||
        ol_mp_pack_str(&pk, "messages") != 0 ||
        msgpack_pack_uint64(&pk, h->messages) != 0 ||
        ol_mp_pack_str(&pk, "last_from") != 0 ||
        ol_mp_pack_str(&pk, h->last_from) != 0 ||
        ol_mp_pack_str(&pk, "started_ms") != 0 ||
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
