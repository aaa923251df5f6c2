/*
 * benchload - the load generator for the benchmarks, kind "benchload".
 *
 * Its state is a map holding a step counter and a bin of `size` bytes whose
 * content changes every step (the counter is written into its first bytes),
 * so every checkpoint carries a fresh state of a known size.  On START,
 * RESUME and every TIMER it re-arms timer 1 with delay 0: the agent steps
 * as fast as its checkpoints commit, one checkpoint per step under the
 * default policy.  With `idle: true` it arms nothing and only ever takes
 * the checkpoint of its START step, which is what the memory benchmark
 * wants.  With `interval_ms: T` it re-arms the timer with delay T instead,
 * a steady background load (the failover benchmark's): START and RESUME
 * still take their step, and so their checkpoint, at once.  With
 * `start_at_ms: T` (Unix ms) the START step arms the timer for T, so that
 * many agents can be spawned into a quiet cluster and all start stepping
 * together (the cluster benchmark's).
 *
 * Config: {size: uint 0..1048576 (default 1024), idle: bool (false),
 *          interval_ms: uint 0..3600000 (default 0),
 *          start_at_ms: uint (default 0: at once)}.
 * State:  {n: uint, blob: bin(size)}.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <outlast/agent.h>
#include <outlast/agent_util.h>

#define STEP_TIMER 1
#define SIZE_DEFAULT 1024
#define SIZE_MAX_BYTES (1u << 20)
#define INTERVAL_MAX_MS 3600000u

static const struct ol_host *host;

struct benchload {
    uint64_t n;
    bool idle;
    uint8_t *blob;
    uint32_t size;
    uint32_t interval_ms;
    uint64_t start_at_ms;
};

static int parse_config(struct benchload *b, struct ol_agent *a,
                        const msgpack_object *cfg)
{
    const msgpack_object *v;

    if (cfg->type != MSGPACK_OBJECT_MAP) {
        host->log(a, OL_AGENT_LOG_ERROR, "config: not a map");
        return OL_AGENT_EINVAL;
    }
    if ((v = ol_mp_get(cfg, "size")) != NULL) {
        if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
            v->via.u64 > SIZE_MAX_BYTES) {
            host->log(a, OL_AGENT_LOG_ERROR,
                      "config: 'size' must be an integer in 0..%u",
                      SIZE_MAX_BYTES);
            return OL_AGENT_EINVAL;
        }
        b->size = (uint32_t)v->via.u64;
    }
    if ((v = ol_mp_get(cfg, "idle")) != NULL) {
        if (v->type != MSGPACK_OBJECT_BOOLEAN) {
            host->log(a, OL_AGENT_LOG_ERROR, "config: 'idle' must be a bool");
            return OL_AGENT_EINVAL;
        }
        b->idle = v->via.boolean;
    }
    if ((v = ol_mp_get(cfg, "interval_ms")) != NULL) {
        if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
            v->via.u64 > INTERVAL_MAX_MS) {
            host->log(a, OL_AGENT_LOG_ERROR,
                      "config: 'interval_ms' must be an integer in 0..%u",
                      INTERVAL_MAX_MS);
            return OL_AGENT_EINVAL;
        }
        b->interval_ms = (uint32_t)v->via.u64;
    }
    if ((v = ol_mp_get(cfg, "start_at_ms")) != NULL) {
        if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
            v->via.u64 > INT64_MAX) {
            host->log(a, OL_AGENT_LOG_ERROR,
                      "config: 'start_at_ms' must be a Unix time in ms");
            return OL_AGENT_EINVAL;
        }
        b->start_at_ms = v->via.u64;
    }
    return 0;
}

/* Fill the bin with a cheap pseudo-random pattern so pages of state are
 * not all zero. */
static void fill(uint8_t *p, uint32_t len, uint64_t seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

    for (uint32_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

static int bl_open(struct ol_agent *a, const void *config, size_t config_len,
                   void **self)
{
    struct benchload *b;
    msgpack_unpacked u;
    int rv;

    if (ol_mp_unpack(&u, config, config_len) != 0) {
        host->log(a, OL_AGENT_LOG_ERROR, "config: not one msgpack object");
        return OL_AGENT_EINVAL;
    }
    b = calloc(1, sizeof *b);
    if (b == NULL) {
        msgpack_unpacked_destroy(&u);
        return OL_AGENT_ENOMEM;
    }
    b->size = SIZE_DEFAULT;
    rv = parse_config(b, a, &u.data);
    msgpack_unpacked_destroy(&u);
    if (rv == 0 && (b->blob = malloc(b->size ? b->size : 1)) == NULL)
        rv = OL_AGENT_ENOMEM;
    if (rv != 0) {
        free(b);
        return rv;
    }
    fill(b->blob, b->size, (uint64_t)(uintptr_t)b);
    *self = b;
    return 0;
}

static int bl_restore(void *self, struct ol_agent *a, const void *state,
                      size_t len)
{
    struct benchload *b = self;
    const msgpack_object *n, *blob;
    msgpack_unpacked u;
    uint8_t *p;
    int rv = OL_AGENT_EMALFORMED;

    if (ol_mp_unpack(&u, state, len) != 0) {
        host->log(a, OL_AGENT_LOG_ERROR, "restore: state is not msgpack");
        return OL_AGENT_EMALFORMED;
    }
    n = ol_mp_get(&u.data, "n");
    blob = ol_mp_get(&u.data, "blob");
    if (n == NULL || blob == NULL ||
        n->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        blob->type != MSGPACK_OBJECT_BIN ||
        blob->via.bin.size > SIZE_MAX_BYTES) {
        host->log(a, OL_AGENT_LOG_ERROR,
                  "restore: state is not {n: uint, blob: bin}");
        goto out;
    }
    p = realloc(b->blob, blob->via.bin.size ? blob->via.bin.size : 1);
    if (p == NULL) {
        rv = OL_AGENT_ENOMEM;
        goto out;
    }
    b->blob = p;
    b->size = blob->via.bin.size;
    memcpy(b->blob, blob->via.bin.ptr, b->size);
    b->n = n->via.u64;
    rv = 0;
out:
    msgpack_unpacked_destroy(&u);
    return rv;
}

static int bl_handle(void *self, struct ol_agent *a, const struct ol_event *ev)
{
    struct benchload *b = self;

    switch (ev->type) {
    case OL_EVENT_START:
    case OL_EVENT_RESUME:
        break;
    case OL_EVENT_TIMER:
        if (ev->timer_id != STEP_TIMER)
            return 0;
        break;
    default:
        return 0;
    }
    b->n++;
    memcpy(b->blob, &b->n, b->size < sizeof b->n ? b->size : sizeof b->n);
    if (b->idle)
        return 0;
    if (ev->type == OL_EVENT_START && b->start_at_ms)
        return host->timer_at(a, STEP_TIMER, (int64_t)b->start_at_ms);
    return host->timer_after(a, STEP_TIMER, b->interval_ms);
}

static int bl_save(void *self, struct ol_agent *a, const struct ol_sink *out)
{
    const struct benchload *b = self;
    msgpack_packer pk;

    msgpack_packer_init(&pk, out->data, out->write);
    if (msgpack_pack_map(&pk, 2) != 0 ||
        msgpack_pack_str_with_body(&pk, "n", 1) != 0 ||
        msgpack_pack_uint64(&pk, b->n) != 0 ||
        msgpack_pack_str_with_body(&pk, "blob", 4) != 0 ||
        msgpack_pack_bin_with_body(&pk, b->blob, b->size) != 0)
        return OL_AGENT_ETOOBIG;
    return 0;
}

static void bl_close(void *self)
{
    struct benchload *b = self;

    if (b == NULL)
        return;
    free(b->blob);
    free(b);
}

static const struct ol_agent_vtable vtable = {
    .abi = OL_AGENT_ABI,
    .size = sizeof(struct ol_agent_vtable),
    .kind = "benchload",
    .version = "1.0.0",
    .open = bl_open,
    .restore = bl_restore,
    .handle = bl_handle,
    .save = bl_save,
    .close = bl_close,
};

OL_AGENT_EXPORT int ol_agent_entry(const struct ol_host *h,
                                   const struct ol_agent_vtable **out)
{
    if (h == NULL || h->abi != OL_AGENT_ABI || !OL_HOST_HAS(h, timer_after) ||
        !OL_HOST_HAS(h, timer_at))
        return OL_AGENT_EINVAL;
    host = h;
    *out = &vtable;
    return 0;
}
