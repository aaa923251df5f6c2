/*
 * The common body of the small misbehaving test plugins (bad_state,
 * handle_fails, huge_state, restore_fails): an agent that ticks on timer 1
 * every `interval_ms` (100), counts the events it handles, sends {n: k} to
 * the `notify` agent (if set) at its k-th event so tests can see which
 * steps released their messages, and saves {events: N}.
 *
 * A plugin includes this once, starts its `struct self` with `struct sk
 * sk;`, keeps only what it does differently, and ends with SK_PLUGIN().
 * Everything here is static: each plugin is its own shared object.
 */
#ifndef OL_TEST_PLUGIN_SKELETON_H
#define OL_TEST_PLUGIN_SKELETON_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <outlast/agent.h>
#include <outlast/agent_util.h>

#include "entry.h"

static const struct ol_host *host;

struct sk {
    char notify[OL_AGENT_NAME_MAX + 1]; /* "": none */
    uint64_t interval_ms;
    uint64_t events;
};

/* The value under `key` in map m (the last one if repeated), or NULL. */
static inline const msgpack_object *sk_find(const msgpack_object *m,
                                            const char *key)
{
    size_t klen = strlen(key);
    const msgpack_object *found = NULL;

    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;

        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen &&
            memcmp(k->via.str.ptr, key, klen) == 0)
            found = &m->via.map.ptr[i].val;
    }
    return found;
}

/* The value under `key` of map m in *o: 1 if there, 0 if not (or m is
 * nil), -1 if m is neither a map nor nil. */
static inline int sk_field(const msgpack_object *m, const char *key,
                           const msgpack_object **o)
{
    if (m->type != MSGPACK_OBJECT_MAP)
        return m->type == MSGPACK_OBJECT_NIL ? 0 : -1;
    *o = sk_find(m, key);
    return *o != NULL;
}

/* Reads the uint under `key` of map m into *v if present; false if it is
 * there with another type or m is neither a map nor nil. */
static inline bool sk_get_uint(const msgpack_object *m, const char *key,
                               uint64_t *v)
{
    const msgpack_object *o;
    int r = sk_field(m, key, &o);

    if (r <= 0)
        return r == 0;
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    *v = o->via.u64;
    return true;
}

/* Copies the str under `key` of map m into out (cap bytes) if present;
 * false if it is there with another type or does not fit. */
static inline bool sk_get_name(const msgpack_object *m, const char *key,
                               char *out, size_t cap)
{
    const msgpack_object *o;
    int r = sk_field(m, key, &o);

    if (r <= 0)
        return r == 0;
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= cap ||
        memchr(o->via.str.ptr, '\0', o->via.str.size) != NULL)
        return false;
    memcpy(out, o->via.str.ptr, o->via.str.size);
    out[o->via.str.size] = '\0';
    return true;
}

/* Sends {n: n} to the `notify` agent, if one is configured. */
static inline int sk_notify(struct ol_agent *a, const struct sk *s,
                            uint64_t n)
{
    unsigned char buf[16];
    size_t len = 0;

    if (s->notify[0] == '\0')
        return 0;
    buf[len++] = 0x81;             /* map of 1 */
    buf[len++] = 0xa1;             /* str of 1 */
    buf[len++] = 'n';
    buf[len++] = 0xcf;             /* uint64, big-endian */
    for (int i = 7; i >= 0; i--)
        buf[len++] = (unsigned char)(n >> (8 * i));
    return host->send(a, s->notify, buf, len);
}

/* The plugin's own config keys: sets their defaults in `self`, then reads
 * them from `cfg`; false if one has the wrong type. */
typedef bool (*sk_config_fn)(const msgpack_object *cfg, void *self);

/* open(): a zeroed `size`-byte self with the common keys (interval_ms,
 * notify) and then the plugin's own read; `usage` is logged when the
 * config is wrong. */
static inline int sk_open(struct ol_agent *a, const void *config, size_t len,
                          size_t size, sk_config_fn own, const char *usage,
                          void **self)
{
    struct sk *s = calloc(1, size);
    msgpack_unpacked u;
    bool ok;

    if (s == NULL)
        return OL_AGENT_ENOMEM;
    s->interval_ms = 100;
    if (ol_mp_unpack(&u, config, len) != 0) {
        free(s);
        return OL_AGENT_EINVAL;
    }
    ok = sk_get_uint(&u.data, "interval_ms", &s->interval_ms) &&
         sk_get_name(&u.data, "notify", s->notify, sizeof(s->notify)) &&
         (own == NULL || own(&u.data, s));
    return tp_open_end(host, a, &u, ok, s, self, "%s", usage);
}

/* restore(): {events: N}. */
static inline int sk_restore(void *self, struct ol_agent *a,
                             const void *state, size_t len)
{
    struct sk *s = self;
    msgpack_unpacked u;
    bool ok;

    (void)a;
    if (ol_mp_unpack(&u, state, len) != 0)
        return OL_AGENT_EMALFORMED;
    ok = u.data.type == MSGPACK_OBJECT_MAP &&
         sk_get_uint(&u.data, "events", &s->events);
    msgpack_unpacked_destroy(&u);
    return ok ? 0 : OL_AGENT_EMALFORMED;
}

/* handle(): count the event, notify, and keep timer 1 going. */
static inline int sk_handle(void *self, struct ol_agent *a,
                            const struct ol_event *ev)
{
    struct sk *s = self;
    int rv;

    s->events++;
    rv = sk_notify(a, s, s->events);
    if (rv != 0)
        return rv;
    if (ev->type == OL_EVENT_START || ev->type == OL_EVENT_RESUME ||
        (ev->type == OL_EVENT_TIMER && ev->timer_id == 1))
        return host->timer_after(a, 1, s->interval_ms);
    return 0;
}

/* save(): {events: N}. */
static inline int sk_save(void *self, struct ol_agent *a,
                          const struct ol_sink *out)
{
    const struct sk *s = self;
    msgpack_packer pk;

    (void)a;
    msgpack_packer_init(&pk, out->data, out->write);
    if (msgpack_pack_map(&pk, 1) != 0 ||
        msgpack_pack_str_with_body(&pk, "events", 6) != 0 ||
        msgpack_pack_uint64(&pk, s->events) != 0)
        return OL_AGENT_ETOOBIG;
    return 0;
}

static inline void sk_close(void *self)
{
    free(self);
}

/* The vtable of kind `kind_` and the entry point. */
#define SK_PLUGIN(kind_, open_, restore_, handle_, save_)                   \
    TP_VTABLE(kind_, "0", open_, restore_, handle_, save_, sk_close)

#endif
