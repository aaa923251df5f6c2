/*
 * keeper - a liquidation keeper over a synthetic market, kind "keeper":
 * the example of effects on the outside world (ol_host.effect).
 *
 * Every `interval_ms` the market moves one step of a seeded random walk.
 * When the price falls through `low` the keeper sells `qty` (it
 * liquidates); when it rises through `high` it buys `qty` back.  Each
 * order is declared as an effect of kind "order": the runtime journals it
 * in the step's checkpoint and, once that commits, calls perform() on a
 * worker thread, which POSTs it to the exchange (examples/exchange) with
 * the effect's idempotency key and the epoch as a fencing token.  The
 * answer comes back as an OL_EVENT_EFFECT and is counted in the state.
 * After a failover the runtime asks reconcile() what became of an order
 * in doubt (GET /orders/KEY), so each order is executed exactly once.
 *
 * Everything handle() decides is a function of the state and the event:
 * the random walk's generator state is part of the state, and order n is
 * declared with effect_id n = orders declared so far + 1.
 *
 * Config:  {exchange: str ("http://127.0.0.1:8080"), interval_ms: uint
 *           (200), seed: uint (42), max_orders: uint (0: no limit), qty:
 *           uint (1), low: uint (9900), high: uint (10100)}; prices are
 *           in cents and start at 10000.
 * State:   {tick, price, rng, zone (-1 below low, 0 between, 1 above
 *           high), declared, done, failed, last_id, position}.
 * Effect:  kind "order", payload {url, side: "buy"|"sell", qty, price}.
 * Result:  done: {id, duplicate, side, qty, price} as the exchange
 *          answered; failed: {status, error}.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <msgpack.h>
#include <outlast/agent.h>
#include <outlast/agent_util.h>

#include "keeper_http.h"

#define TICK_TIMER 1
#define INTERVAL_MAX (24u * 3600u * 1000u)
#define START_CENTS 10000
#define STEP_CENTS 50
#define PRICE_MAX_CENTS 1000000000000

static const struct ol_host *host;

struct keeper {
    /* Config. */
    char url[KEEPER_URL_MAX + 1];
    uint64_t interval_ms, seed, max_orders, qty, low, high;
    /* State. */
    uint64_t tick;
    int64_t price; /* cents */
    uint64_t rng;  /* SplitMix64 state */
    int64_t zone;
    uint64_t declared, done, failed, last_id;
    int64_t position;
};

/* The next output of SplitMix64 (Steele, Lea, Flood). */
static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static int bad_config(struct ol_agent *a, const char *fmt, ...)
    OL_AGENT_PRINTF(2, 3);

static int bad_config(struct ol_agent *a, const char *fmt, ...)
{
    char msg[OL_AGENT_ERROR_MAX + 1];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    host->log(a, OL_AGENT_LOG_ERROR, "config: %s", msg);
    host->error(a, "config: %s", msg);
    return OL_AGENT_EINVAL;
}

/* Reads the uint `name` of cfg into *v if present; false if mistyped. */
static bool opt_uint(const msgpack_object *cfg, const char *name, uint64_t *v)
{
    const msgpack_object *o = ol_mp_get(cfg, name);

    return o == NULL || ol_mp_uint(o, v);
}

static int parse_config(struct keeper *k, struct ol_agent *a,
                        const msgpack_object *cfg)
{
    const msgpack_object *v;

    if (cfg->type != MSGPACK_OBJECT_MAP && cfg->type != MSGPACK_OBJECT_NIL)
        return bad_config(a, "not a map");
    if ((v = ol_mp_get(cfg, "exchange")) != NULL &&
        (!ol_mp_str(v, k->url, sizeof(k->url)) ||
         keeper_url_check(k->url) != 0))
        return bad_config(a, "'exchange' must be an http:// or https:// URL "
                          "of at most %d bytes", KEEPER_URL_MAX);
    if (!opt_uint(cfg, "interval_ms", &k->interval_ms) ||
        k->interval_ms == 0 || k->interval_ms > INTERVAL_MAX)
        return bad_config(a, "'interval_ms' must be an integer in 1..%u",
                          INTERVAL_MAX);
    if (!opt_uint(cfg, "seed", &k->seed))
        return bad_config(a, "'seed' must be a non-negative integer");
    if (!opt_uint(cfg, "max_orders", &k->max_orders))
        return bad_config(a, "'max_orders' must be a non-negative integer");
    if (!opt_uint(cfg, "qty", &k->qty) || k->qty == 0 ||
        k->qty > KEEPER_NUM_MAX)
        return bad_config(a, "'qty' must be an integer in 1..2^53");
    if (!opt_uint(cfg, "low", &k->low) || !opt_uint(cfg, "high", &k->high) ||
        k->low == 0 || k->high <= k->low || k->high > PRICE_MAX_CENTS)
        return bad_config(a, "'low' and 'high' must be prices in cents with "
                          "0 < low < high");
    return 0;
}

static void kp_close(void *self)
{
    free(self);
}

static int kp_open(struct ol_agent *a, const void *config, size_t config_len,
                   void **self)
{
    struct keeper *k;
    msgpack_unpacked u;
    int rv;

    if (ol_mp_unpack(&u, config, config_len) != 0)
        return bad_config(a, "not one msgpack object");
    k = calloc(1, sizeof(*k));
    if (k == NULL) {
        msgpack_unpacked_destroy(&u);
        return OL_AGENT_ENOMEM;
    }
    strcpy(k->url, "http://127.0.0.1:8080");
    k->interval_ms = 200;
    k->seed = 42;
    k->qty = 1;
    k->low = 9900;
    k->high = 10100;
    rv = parse_config(k, a, &u.data);
    msgpack_unpacked_destroy(&u);
    if (rv != 0) {
        free(k);
        return rv;
    }
    k->price = START_CENTS;
    k->rng = k->seed;
    *self = k;
    return 0;
}

static int kp_restore(void *self, struct ol_agent *a, const void *state,
                      size_t len)
{
    struct keeper *k = self;
    msgpack_unpacked u;
    const msgpack_object *s;
    int ok;

    if (ol_mp_unpack(&u, state, len) != 0) {
        host->log(a, OL_AGENT_LOG_ERROR, "restore: state is not msgpack");
        return OL_AGENT_EMALFORMED;
    }
    s = &u.data;
    ok = ol_mp_uint(ol_mp_get(s, "tick"), &k->tick) &&
         ol_mp_int(ol_mp_get(s, "price"), &k->price) && k->price >= 1 &&
         k->price <= PRICE_MAX_CENTS &&
         ol_mp_uint(ol_mp_get(s, "rng"), &k->rng) &&
         ol_mp_int(ol_mp_get(s, "zone"), &k->zone) && k->zone >= -1 &&
         k->zone <= 1 && ol_mp_uint(ol_mp_get(s, "declared"), &k->declared) &&
         ol_mp_uint(ol_mp_get(s, "done"), &k->done) &&
         ol_mp_uint(ol_mp_get(s, "failed"), &k->failed) &&
         ol_mp_uint(ol_mp_get(s, "last_id"), &k->last_id) &&
         ol_mp_int(ol_mp_get(s, "position"), &k->position);
    msgpack_unpacked_destroy(&u);
    if (!ok) {
        host->log(a, OL_AGENT_LOG_ERROR,
                  "restore: state fields are missing or mistyped");
        return OL_AGENT_EMALFORMED;
    }
    return 0;
}

/* Declares order n = declared + 1.  A refusal is logged and the order
 * keeps its number for the next crossing. */
static void declare(struct keeper *k, struct ol_agent *a, const char *side)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint64_t n = k->declared + 1;
    int rv = OL_AGENT_ENOMEM;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (msgpack_pack_map(&pk, 4) == 0 && ol_mp_pack_str(&pk, "url") == 0 &&
        ol_mp_pack_str(&pk, k->url) == 0 && ol_mp_pack_str(&pk, "side") == 0 &&
        ol_mp_pack_str(&pk, side) == 0 && ol_mp_pack_str(&pk, "qty") == 0 &&
        msgpack_pack_uint64(&pk, k->qty) == 0 &&
        ol_mp_pack_str(&pk, "price") == 0 &&
        msgpack_pack_int64(&pk, k->price) == 0)
        rv = host->effect(a, n, "order", sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    if (rv != 0) {
        host->log(a, OL_AGENT_LOG_ERROR, "order %" PRIu64 ": effect: error %d",
                  n, rv);
        return;
    }
    k->declared = n;
    host->log(a, OL_AGENT_LOG_INFO,
              "order %" PRIu64 ": %s %" PRIu64 " at %" PRId64 " (tick %" PRIu64
              ")", n, side, k->qty, k->price, k->tick);
}

/* Moves the market one step and declares an order at a crossing. */
static void tick(struct keeper *k, struct ol_agent *a)
{
    int64_t step = (int64_t)(splitmix64(&k->rng) % (2 * STEP_CENTS + 1)) -
                   STEP_CENTS;
    int64_t zone;

    k->tick++;
    k->price += step;
    if (k->price < 1)
        k->price = 1;
    if (k->price > PRICE_MAX_CENTS)
        k->price = PRICE_MAX_CENTS;
    zone = k->price < (int64_t)k->low    ? -1
           : k->price > (int64_t)k->high ? 1
                                         : 0;
    if (zone == k->zone)
        return;
    k->zone = zone;
    if (zone == 0 || (k->max_orders != 0 && k->declared >= k->max_orders))
        return;
    declare(k, a, zone < 0 ? "sell" : "buy");
}

/* Counts the outcome of an order. */
static void outcome(struct keeper *k, struct ol_agent *a,
                    const struct ol_event *ev)
{
    msgpack_unpacked u;
    uint64_t id = 0, qty = 0;
    char why[128] = "";
    bool sell = false;

    if (ev->len > 0 && ol_mp_unpack(&u, ev->data, ev->len) == 0) {
        ol_mp_uint(ol_mp_get(&u.data, "id"), &id);
        ol_mp_uint(ol_mp_get(&u.data, "qty"), &qty);
        sell = ol_mp_str_eq(ol_mp_get(&u.data, "side"), "sell");
        ol_mp_str(ol_mp_get(&u.data, "error"), why, sizeof(why));
        msgpack_unpacked_destroy(&u);
    }
    if (ev->effect_status == OL_EFFECT_DONE) {
        k->done++;
        k->last_id = id;
        k->position += sell ? -(int64_t)qty : (int64_t)qty;
        host->log(a, OL_AGENT_LOG_INFO,
                  "order %" PRIu64 " (key %s): exchange id %" PRIu64
                  ", attempts %" PRIu32, ev->effect_id,
                  ev->effect_key ? ev->effect_key : "?", id,
                  ev->effect_attempts);
        return;
    }
    k->failed++;
    host->log(a, OL_AGENT_LOG_WARN, "order %" PRIu64 " (key %s) failed: %s",
              ev->effect_id, ev->effect_key ? ev->effect_key : "?",
              ev->reason ? ev->reason : why[0] ? why : "no reason given");
}

static int arm(struct ol_agent *a, const struct keeper *k)
{
    int rv = host->timer_after(a, TICK_TIMER, k->interval_ms);

    if (rv != 0)
        host->log(a, OL_AGENT_LOG_ERROR, "arm timer: error %d", rv);
    return rv;
}

static int kp_handle(void *self, struct ol_agent *a, const struct ol_event *ev)
{
    struct keeper *k = self;

    switch (ev->type) {
    case OL_EVENT_START:
        host->log(a, OL_AGENT_LOG_INFO,
                  "start: seed %" PRIu64 ", sell below %" PRIu64
                  ", buy above %" PRIu64 ", orders to %s", k->seed, k->low,
                  k->high, k->url);
        return arm(a, k);
    case OL_EVENT_RESUME:
        host->log(a, OL_AGENT_LOG_INFO,
                  "resume at tick %" PRIu64 ": %" PRIu64 " orders declared, %"
                  PRIu64 " done, %" PRIu64 " failed", k->tick, k->declared,
                  k->done, k->failed);
        return arm(a, k);
    case OL_EVENT_TIMER:
        if (ev->timer_id != TICK_TIMER)
            return 0;
        tick(k, a);
        return arm(a, k);
    case OL_EVENT_EFFECT:
        if (OL_EVENT_HAS(ev, effect_attempts))
            outcome(k, a, ev);
        return 0;
    default:
        return 0;
    }
}

static int kp_save(void *self, struct ol_agent *a, const struct ol_sink *out)
{
    const struct keeper *k = self;
    msgpack_packer pk;

    ol_mp_packer_init(&pk, out);
    if (msgpack_pack_map(&pk, 9) != 0 || ol_mp_pack_str(&pk, "tick") != 0 ||
        msgpack_pack_uint64(&pk, k->tick) != 0 ||
        ol_mp_pack_str(&pk, "price") != 0 ||
        msgpack_pack_int64(&pk, k->price) != 0 ||
        ol_mp_pack_str(&pk, "rng") != 0 ||
        msgpack_pack_uint64(&pk, k->rng) != 0 ||
        ol_mp_pack_str(&pk, "zone") != 0 ||
        msgpack_pack_int64(&pk, k->zone) != 0 ||
        ol_mp_pack_str(&pk, "declared") != 0 ||
        msgpack_pack_uint64(&pk, k->declared) != 0 ||
        ol_mp_pack_str(&pk, "done") != 0 ||
        msgpack_pack_uint64(&pk, k->done) != 0 ||
        ol_mp_pack_str(&pk, "failed") != 0 ||
        msgpack_pack_uint64(&pk, k->failed) != 0 ||
        ol_mp_pack_str(&pk, "last_id") != 0 ||
        msgpack_pack_uint64(&pk, k->last_id) != 0 ||
        ol_mp_pack_str(&pk, "position") != 0 ||
        msgpack_pack_int64(&pk, k->position) != 0)
        return OL_AGENT_ETOOBIG;
    return 0;
}

static const struct ol_agent_vtable vtable = {
    .abi = OL_AGENT_ABI,
    .size = sizeof(struct ol_agent_vtable),
    .kind = "keeper",
    .version = "1.0.0",
    .open = kp_open,
    .restore = kp_restore,
    .handle = kp_handle,
    .save = kp_save,
    .close = kp_close,
    .perform = keeper_perform,
    .reconcile = keeper_reconcile,
};

OL_AGENT_EXPORT int ol_agent_entry(const struct ol_host *h,
                                   const struct ol_agent_vtable **out)
{
    static int curl_ready;

    /* A host without effects cannot run a keeper at all. */
    if (h == NULL || h->abi != OL_AGENT_ABI || !OL_HOST_HAS(h, effect) ||
        h->effect == NULL)
        return OL_AGENT_EINVAL;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return OL_AGENT_ENOMEM;
        curl_ready = 1;
    }
    host = h;
    *out = &vtable;
    return 0;
}
