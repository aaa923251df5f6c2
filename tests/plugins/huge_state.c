/*
 * huge_state - a test plugin whose saved state outgrows the limit.
 *
 * It ticks on timer 1 every `interval_ms` and counts events.  While it has
 * handled at most `after` events it saves {events: N}; after that save()
 * writes one bin object of OL_AGENT_STATE_MAX + 1 bytes.  Unless `honest`
 * is set it ignores the sink's refusal and returns 0, so the host must
 * notice the overflow itself.  Either way the host must reject the
 * checkpoint, quarantine the agent and keep the last good checkpoint.
 *
 * With `notify` set, every event k sends {n: k} to that agent; the send
 * from the step with huge state must never be released.
 *
 * Config: {interval_ms: uint (100), after: uint (0), honest: uint (0),
 *          notify: str (none)}.
 * State:  {events: uint}, then a bin of OL_AGENT_STATE_MAX + 1 bytes.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <outlast/agent.h>
#include <outlast/agent_util.h>

static const struct ol_host *host;

struct self {
    char notify[OL_AGENT_NAME_MAX + 1]; /* "": none */
    uint64_t interval_ms;
    uint64_t after;
    uint64_t honest;
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

/* Copies the str under `key` of map m into out (cap bytes) if present;
 * false if it is there with another type or does not fit. */
static bool get_name(const msgpack_object *m, const char *key, char *out,
                     size_t cap)
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
        if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= cap ||
            memchr(o->via.str.ptr, '\0', o->via.str.size) != NULL)
            return false;
        memcpy(out, o->via.str.ptr, o->via.str.size);
        out[o->via.str.size] = '\0';
    }
    return true;
}

/* Sends {n: n} to the `notify` agent, if one is configured.  Tests use it
 * to see which steps released their messages. */
static int notify(struct ol_agent *a, const char *to, uint64_t n)
{
    unsigned char buf[16];
    size_t len = 0;

    if (to[0] == '\0')
        return 0;
    buf[len++] = 0x81;             /* map of 1 */
    buf[len++] = 0xa1;             /* str of 1 */
    buf[len++] = 'n';
    buf[len++] = 0xcf;             /* uint64, big-endian */
    for (int i = 7; i >= 0; i--)
        buf[len++] = (unsigned char)(n >> (8 * i));
    return host->send(a, to, buf, len);
}

static int hs_open(struct ol_agent *a, const void *config, size_t len,
                   void **self)
{
    struct self *s;
    msgpack_unpacked u;
    bool ok;

    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return OL_AGENT_ENOMEM;
    s->interval_ms = 100;
    s->after = 0;
    s->honest = 0;
    if (ol_mp_unpack(&u, config, len) != 0) {
        free(s);
        return OL_AGENT_EINVAL;
    }
    ok = get_uint(&u.data, "interval_ms", &s->interval_ms) &&
         get_name(&u.data, "notify", s->notify, sizeof(s->notify)) &&
         get_uint(&u.data, "after", &s->after) &&
         get_uint(&u.data, "honest", &s->honest);
    msgpack_unpacked_destroy(&u);
    if (!ok) {
        host->log(a, OL_AGENT_LOG_ERROR,
                  "config: 'interval_ms', 'after' and 'honest' must be "
                  "uints, 'notify' an agent name");
        free(s);
        return OL_AGENT_EINVAL;
    }
    *self = s;
    return 0;
}

static int hs_restore(void *self, struct ol_agent *a, const void *state,
                      size_t len)
{
    struct self *s = self;
    msgpack_unpacked u;
    bool ok;

    if (ol_mp_unpack(&u, state, len) != 0)
        return OL_AGENT_EMALFORMED;
    ok = u.data.type == MSGPACK_OBJECT_MAP &&
         get_uint(&u.data, "events", &s->events);
    msgpack_unpacked_destroy(&u);
    return ok ? 0 : OL_AGENT_EMALFORMED;
}

static int hs_handle(void *self, struct ol_agent *a,
                     const struct ol_event *ev)
{
    struct self *s = self;
    int rv;

    s->events++;
    rv = notify(a, s->notify, s->events);
    if (rv != 0)
        return rv;
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

/* Writes a bin of OL_AGENT_STATE_MAX + 1 zero bytes; returns the first
 * error the sink gave, or 0. */
static int save_huge(const struct ol_sink *out)
{
    static const char chunk[64 * 1024];
    msgpack_packer pk;
    size_t left = (size_t)OL_AGENT_STATE_MAX + 1;
    int rv;

    msgpack_packer_init(&pk, out->data, out->write);
    rv = msgpack_pack_bin(&pk, (uint32_t)left);
    while (rv == 0 && left > 0) {
        size_t n = left < sizeof(chunk) ? left : sizeof(chunk);
        rv = msgpack_pack_bin_body(&pk, chunk, n);
        left -= n;
    }
    return rv;
}

static int hs_save(void *self, struct ol_agent *a, const struct ol_sink *out)
{
    const struct self *s = self;
    int rv;

    if (s->events <= s->after)
        return save_events(s, out);
    rv = save_huge(out);
    return s->honest && rv != 0 ? OL_AGENT_ETOOBIG : 0;
}

static void hs_close(void *self)
{
    free(self);
}

static const struct ol_agent_vtable vtable = {
    .abi = OL_AGENT_ABI,
    .size = sizeof(struct ol_agent_vtable),
    .kind = "huge_state",
    .version = "0",
    .open = hs_open,
    .restore = hs_restore,
    .handle = hs_handle,
    .save = hs_save,
    .close = hs_close,
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
