/*
 * chatty - a test agent that logs.  Every `interval_ms` (default 50) it
 * counts a tick and logs "tick N" through host->log at info level; the
 * first tick also logs a line holding an escape sequence and a newline,
 * which the host must not pass on to a terminal.  Tests use it for the
 * per-agent log ring, `outlast logs` (following it across a failover) and
 * the daemon's JSON log lines.
 *
 * Config: {interval_ms: uint, 1..60000 (50)}.
 * State:  {ticks: uint}.
 */
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <outlast/agent.h>

#include "entry.h"

static const struct ol_host *host;

struct chatty {
    uint64_t interval_ms;
    uint64_t ticks;
};

static uint64_t get_u64(const void *p, size_t len, const char *key,
                        uint64_t dflt)
{
    msgpack_unpacked u;
    size_t off = 0, klen = strlen(key);
    uint64_t v = dflt;

    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, p, len, &off) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP)
        for (uint32_t i = 0; i < u.data.via.map.size; i++) {
            const msgpack_object_kv *kv = &u.data.via.map.ptr[i];

            if (kv->key.type == MSGPACK_OBJECT_STR &&
                kv->key.via.str.size == klen &&
                memcmp(kv->key.via.str.ptr, key, klen) == 0 &&
                kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                v = kv->val.via.u64;
        }
    msgpack_unpacked_destroy(&u);
    return v;
}

static int c_open(struct ol_agent *a, const void *cfg, size_t len, void **self)
{
    struct chatty *c = calloc(1, sizeof *c);

    if (c == NULL)
        return OL_AGENT_ENOMEM;
    c->interval_ms = get_u64(cfg, len, "interval_ms", 50);
    if (c->interval_ms < 1 || c->interval_ms > 60000) {
        free(c);
        return OL_AGENT_EINVAL;
    }
    *self = c;
    return 0;
}

static int c_restore(void *self, struct ol_agent *a, const void *s,
                     size_t len)
{
    ((struct chatty *)self)->ticks = get_u64(s, len, "ticks", 0);
    return 0;
}

static int c_handle(void *self, struct ol_agent *a, const struct ol_event *ev)
{
    struct chatty *c = self;

    switch (ev->type) {
    case OL_EVENT_START:
        host->log(a, OL_AGENT_LOG_INFO, "hello \033[31mred\033[0m\nsecond");
        return host->timer_after(a, 1, c->interval_ms);
    case OL_EVENT_RESUME:
        host->log(a, OL_AGENT_LOG_INFO, "resumed at tick %llu",
                  (unsigned long long)c->ticks);
        return host->timer_after(a, 1, c->interval_ms);
    case OL_EVENT_TIMER:
        c->ticks++;
        host->log(a, OL_AGENT_LOG_INFO, "tick %llu",
                  (unsigned long long)c->ticks);
        return host->timer_after(a, 1, c->interval_ms);
    }
    return 0;
}

static int c_save(void *self, struct ol_agent *a, const struct ol_sink *out)
{
    msgpack_packer pk;

    msgpack_packer_init(&pk, out->data, out->write);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "ticks", 5);
    msgpack_pack_uint64(&pk, ((struct chatty *)self)->ticks);
    return 0;
}

static void c_close(void *self)
{
    free(self);
}

TP_PLUGIN("chatty", "1.0.0", c)
