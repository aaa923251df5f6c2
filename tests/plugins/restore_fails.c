/*
 * restore_fails - a test plugin that cannot load its own state.
 *
 * It runs normally (ticking on timer 1 every `interval_ms`, counting events
 * and saving {events: N}), but restore() always returns
 * OL_AGENT_EMALFORMED.  After a restart the host must quarantine the agent
 * with an error naming restore, keep its committed checkpoints, and resume
 * every other agent.
 *
 * Config: {interval_ms: uint (100)}.
 * State:  {events: uint}.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <outlast/agent.h>
#include <outlast/agent_util.h>

static const struct ol_host *host;

struct self {
    uint64_t interval_ms;
    uint64_t events;
};

/* Reads the uint under `key` of map m into *v if present; false if it is
 * there with another type or m is not a map. */
static bool get_uint(const msgpack_object *m, const char *key, uint64_t *v)
{
    size_t klen = strlen(key);

    if (m->type != MSGPACK_OBJECT_MAP)
        return m->type == MSGPACK_OBJECT_NIL;
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        const msgpack_object *o = &m->via.map.ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR || k->via.str.size != klen ||
            memcmp(k->via.str.ptr, key, klen) != 0)
            continue;
        if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return false;
        *v = o->via.u64;
    }
    return true;
}

static int rf_open(struct ol_agent *a, const void *config, size_t len,
                   void **self)
{
    struct self *s;
    msgpack_unpacked u;
    bool ok;

    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return OL_AGENT_ENOMEM;
    s->interval_ms = 100;
    if (ol_mp_unpack(&u, config, len) != 0) {
        free(s);
        return OL_AGENT_EINVAL;
    }
    ok = get_uint(&u.data, "interval_ms", &s->interval_ms);
    msgpack_unpacked_destroy(&u);
    if (!ok) {
        host->log(a, OL_AGENT_LOG_ERROR, "config: 'interval_ms' must be uints");
        free(s);
        return OL_AGENT_EINVAL;
    }
    *self = s;
    return 0;
}

static int rf_restore(void *self, struct ol_agent *a, const void *state,
                      size_t len)
{
    host->log(a, OL_AGENT_LOG_ERROR, "restore: refusing on purpose");
    return OL_AGENT_EMALFORMED;
}

static int rf_handle(void *self, struct ol_agent *a,
                     const struct ol_event *ev)
{
    struct self *s = self;

    s->events++;
    if (ev->type == OL_EVENT_START || ev->type == OL_EVENT_RESUME ||
        (ev->type == OL_EVENT_TIMER && ev->timer_id == 1))
        return host->timer_after(a, 1, s->interval_ms);
    return 0;
}

static int save_events(const struct self *s, const struct ol_sink *out)
{
    msgpack_packer pk;

    msgpack_packer_init(&pk, out->data, out->write);
    if (msgpack_pack_map(&pk, 1) != 0 ||
        msgpack_pack_str_with_body(&pk, "events", 6) != 0 ||
        msgpack_pack_uint64(&pk, s->events) != 0)
        return OL_AGENT_ETOOBIG;
    return 0;
}

static int rf_save(void *self, struct ol_agent *a, const struct ol_sink *out)
{
    return save_events(self, out);
}

static void rf_close(void *self)
{
    free(self);
}

static const struct ol_agent_vtable vtable = {
    .abi = OL_AGENT_ABI,
    .size = sizeof(struct ol_agent_vtable),
    .kind = "restore_fails",
    .version = "0",
    .open = rf_open,
    .restore = rf_restore,
    .handle = rf_handle,
    .save = rf_save,
    .close = rf_close,
};

OL_AGENT_EXPORT int ol_agent_entry(const struct ol_host *h,
                                   const struct ol_agent_vtable **out)
{
    if (h->abi != OL_AGENT_ABI)
        return OL_AGENT_EINVAL;
    host = h;
    *out = &vtable;
    return 0;
}
