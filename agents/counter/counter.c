/*
 * counter - the smallest useful agent, kind "counter".
 *
 * It counts timer ticks.  Timer 1 fires every `interval_ms`; each firing
 * adds one to `count` and re-arms the timer.  Other agents (or the CLI) can
 * move the count with a message: {"add": N} adds the signed integer N and
 * {"reset": true} sets it back to zero (a message holding both resets first,
 * then adds).  Because the count lives in the checkpointed state, a counter
 * that is killed and resumed elsewhere carries on from its last committed
 * value, which makes it the agent the continuity tests lean on first.
 *
 * Config: {interval_ms: uint, 1..86400000, default 1000}.  A new config
 * (`outlast config`) takes effect at the next tick; a bad one is refused
 * with a log line and the old interval kept.
 * State:  {count: int, ticks: uint, started_ms: int, last_tick_ms: int}.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <outlast/agent.h>
#include <outlast/agent_util.h>

#define TICK_TIMER 1
#define INTERVAL_DEFAULT 1000
#define INTERVAL_MAX (24u * 3600u * 1000u)

static const struct ol_host *host;

struct counter {
    uint64_t interval_ms;
    int64_t count;
    uint64_t ticks;
    int64_t started_ms;
    int64_t last_tick_ms;
};

/* Why a config is refused: the spawn (or the quarantine reason) shows it
 * when open() fails; a host older than ol_host.error gets a log line. */
#define refuse(a, ...)                                                       \
    (OL_HOST_HAS(host, error) ? (void)host->error(a, __VA_ARGS__)           \
                              : host->log(a, OL_AGENT_LOG_ERROR, __VA_ARGS__))

static int parse_config(struct counter *c, struct ol_agent *a,
                        const msgpack_object *cfg)
{
    const msgpack_object *v;

    if (cfg->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (cfg->type != MSGPACK_OBJECT_MAP) {
        refuse(a, "config: not a map");
        return OL_AGENT_EINVAL;
    }
    if ((v = ol_mp_get(cfg, "interval_ms")) != NULL &&
        (!ol_mp_uint(v, &c->interval_ms) || c->interval_ms == 0 ||
         c->interval_ms > INTERVAL_MAX)) {
        refuse(a, "config: 'interval_ms' must be an integer in 1..%u",
                    INTERVAL_MAX);
        return OL_AGENT_EINVAL;
    }
    return 0;
}

static int counter_open(struct ol_agent *a, const void *config,
                        size_t config_len, void **self)
{
    struct counter *c;
    msgpack_unpacked u;
    int rv;

    if (ol_mp_unpack(&u, config, config_len) != 0) {
        refuse(a, "config: not one msgpack object");
        return OL_AGENT_EINVAL;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        msgpack_unpacked_destroy(&u);
        return OL_AGENT_ENOMEM;
    }
    c->interval_ms = INTERVAL_DEFAULT;
    rv = parse_config(c, a, &u.data);
    msgpack_unpacked_destroy(&u);
    if (rv != 0) {
        free(c);
        return rv;
    }
    *self = c;
    return 0;
}

static int counter_restore(void *self, struct ol_agent *a, const void *state,
                           size_t len)
{
    struct counter *c = self;
    const msgpack_object *count, *ticks, *started, *last;
    msgpack_unpacked u;
    int rv = 0;

    if (ol_mp_unpack(&u, state, len) != 0) {
        host->log(a, OL_AGENT_LOG_ERROR, "restore: state is not msgpack");
        return OL_AGENT_EMALFORMED;
    }
    count = ol_mp_get(&u.data, "count");
    ticks = ol_mp_get(&u.data, "ticks");
    started = ol_mp_get(&u.data, "started_ms");
    last = ol_mp_get(&u.data, "last_tick_ms");
    if (count == NULL || ticks == NULL || started == NULL || last == NULL ||
        !ol_mp_int(count, &c->count) || !ol_mp_uint(ticks, &c->ticks) ||
        !ol_mp_int(started, &c->started_ms) ||
        !ol_mp_int(last, &c->last_tick_ms)) {
        host->log(a, OL_AGENT_LOG_ERROR,
                  "restore: state is not {count, ticks, started_ms, "
                  "last_tick_ms} with integer values");
        rv = OL_AGENT_EMALFORMED;
    }
    msgpack_unpacked_destroy(&u);
    return rv;
}

static int arm(struct ol_agent *a, const struct counter *c)
{
    int rv = host->timer_after(a, TICK_TIMER, c->interval_ms);

    if (rv != 0)
        host->log(a, OL_AGENT_LOG_ERROR, "arm timer %d: error %d",
                  TICK_TIMER, rv);
    return rv;
}

/* Applies {"add": N} and {"reset": true}.  A message of any other shape is
 * another agent's mistake, not ours: it is logged and ignored. */
static void on_message(struct counter *c, struct ol_agent *a,
                       const struct ol_event *ev)
{
    const msgpack_object *add, *reset;
    msgpack_unpacked u;
    int64_t n = 0;
    bool ok;

    if (ol_mp_unpack(&u, ev->data, ev->len) != 0) {
        host->log(a, OL_AGENT_LOG_WARN,
                  "message from '%s': not msgpack; ignored", ev->from);
        return;
    }
    add = ol_mp_get(&u.data, "add");
    reset = ol_mp_get(&u.data, "reset");
    ok = u.data.type == MSGPACK_OBJECT_MAP && (add != NULL || reset != NULL) &&
         (add == NULL || ol_mp_int(add, &n)) &&
         (reset == NULL || reset->type == MSGPACK_OBJECT_BOOLEAN);
    if (!ok) {
        host->log(a, OL_AGENT_LOG_WARN,
                  "message from '%s': expected {add: int} or "
                  "{reset: bool}; ignored", ev->from);
    } else {
        int64_t base = reset != NULL && reset->via.boolean ? 0 : c->count;
        int64_t sum;
        if (__builtin_add_overflow(base, n, &sum)) {
            host->log(a, OL_AGENT_LOG_WARN,
                      "message from '%s': add overflows the count; ignored",
                      ev->from);
        } else {
            c->count = sum;
        }
    }
    msgpack_unpacked_destroy(&u);
}

/* A new config: the new interval counts from the next tick.  A config it
 * cannot use is logged and ignored; the agent keeps running. */
static void on_config(struct counter *c, struct ol_agent *a,
                      const struct ol_event *ev)
{
    struct counter next = *c;
    msgpack_unpacked u;

    if (ol_mp_unpack(&u, ev->data, ev->len) != 0) {
        host->log(a, OL_AGENT_LOG_WARN, "config: not one msgpack object");
        return;
    }
    if (parse_config(&next, a, &u.data) != 0) {
        host->log(a, OL_AGENT_LOG_WARN,
                  "config refused; the interval stays %" PRIu64 " ms",
                  c->interval_ms);
    } else if (next.interval_ms != c->interval_ms) {
        host->log(a, OL_AGENT_LOG_INFO,
                  "config: interval %" PRIu64 " ms from the next tick",
                  next.interval_ms);
        c->interval_ms = next.interval_ms;
    }
    msgpack_unpacked_destroy(&u);
}

static int counter_handle(void *self, struct ol_agent *a,
                          const struct ol_event *ev)
{
    struct counter *c = self;

    switch (ev->type) {
    case OL_EVENT_START:
        c->started_ms = ev->now_ms;
        host->log(a, OL_AGENT_LOG_INFO, "start: interval %" PRIu64 " ms",
                  c->interval_ms);
        return arm(a, c);
    case OL_EVENT_RESUME:
        host->log(a, OL_AGENT_LOG_INFO,
                  "resume on '%s' from '%s' at seq %" PRIu64 " after %" PRId64
                  " ms down: count %" PRId64 ", ticks %" PRIu64,
                  ev->node ? ev->node : "?",
                  ev->prev_node ? ev->prev_node : "?", ev->seq,
                  ev->downtime_ms, c->count, c->ticks);
        return arm(a, c);
    case OL_EVENT_TIMER:
        if (ev->timer_id != TICK_TIMER)
            return 0;
        c->count++;
        c->ticks++;
        c->last_tick_ms = ev->now_ms;
        return arm(a, c);
    case OL_EVENT_MESSAGE:
        on_message(c, a, ev);
        return 0;
    case OL_EVENT_CONFIG:
        on_config(c, a, ev);
        return 0;
    default:
        return 0;
    }
}

static int counter_save(void *self, struct ol_agent *a,
                        const struct ol_sink *out)
{
    const struct counter *c = self;
    msgpack_packer pk;

    msgpack_packer_init(&pk, out->data, out->write);
    if (msgpack_pack_map(&pk, 4) != 0 ||
        msgpack_pack_str_with_body(&pk, "count", 5) != 0 ||
        msgpack_pack_int64(&pk, c->count) != 0 ||
        msgpack_pack_str_with_body(&pk, "ticks", 5) != 0 ||
        msgpack_pack_uint64(&pk, c->ticks) != 0 ||
        msgpack_pack_str_with_body(&pk, "started_ms", 10) != 0 ||
        msgpack_pack_int64(&pk, c->started_ms) != 0 ||
        msgpack_pack_str_with_body(&pk, "last_tick_ms", 12) != 0 ||
        msgpack_pack_int64(&pk, c->last_tick_ms) != 0)
        return OL_AGENT_ETOOBIG;
    return 0;
}

static void counter_close(void *self)
{
    free(self);
}

static const struct ol_agent_vtable vtable = {
    .abi = OL_AGENT_ABI,
    .size = sizeof(struct ol_agent_vtable),
    .kind = "counter",
    .version = "1.0.0",
    .open = counter_open,
    .restore = counter_restore,
    .handle = counter_handle,
    .save = counter_save,
    .close = counter_close,
};

OL_AGENT_EXPORT int ol_agent_entry(const struct ol_host *h,
                                   const struct ol_agent_vtable **out)
{
    if (h == NULL || h->abi != OL_AGENT_ABI || !OL_HOST_HAS(h, timer_after))
        return OL_AGENT_EINVAL;
    host = h;
    *out = &vtable;
    return 0;
}
