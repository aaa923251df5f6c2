/*
 * pricewatch - a trading-signal agent over a synthetic feed, kind
 * "pricewatch".
 *
 * Every `interval_ms` it reads the next price of a deterministic random
 * walk and runs a moving-average crossover over it: when the short average
 * crosses above the long one it decides BUY, when it crosses below, SELL.
 * Each decision goes to the ledger agent as a numbered message.
 *
 * Everything is a function of the state and the event, so the agent can be
 * killed and resumed anywhere without changing what it decides:
 *   - The step at tick k is the k-th output of a SplitMix64 generator seeded
 *     with `seed`, a pure function of (seed, k); the price at tick k is the
 *     price at k-1 plus that step.  The state keeps tick and price, so the
 *     series continues exactly after a resume.
 *   - Prices are whole cents and the averages are compared as integer sums
 *     (short_sum * long vs long_sum * short), so no rounding can flip a
 *     decision from one run to the next.
 *   - Decision n is sent with n = decisions_sent + 1.  A step replayed after
 *     a resume sends the same n again, which is how the ledger tells a
 *     duplicate from a new decision.
 *
 * Config: {interval_ms: uint (200), seed: uint (42), short: uint (5),
 *          long: uint (20), ledger: str ("ledger"), symbol: str ("OUTL")}.
 * State:  {tick: uint, price_cents: int, window_cents: [int] (oldest
 *          first, at most `long`), rel: int (-1/0/1), position: int,
 *          decisions_sent: uint, last_action: str ("", "BUY", "SELL")}.
 * Sends:  {n: uint, tick: uint, symbol: str, price: float64,
 *          action: "BUY"|"SELL", short_ma: float64, long_ma: float64}.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <outlast/agent.h>
#include <outlast/agent_util.h>

#define TICK_TIMER 1
#define INTERVAL_MAX (24u * 3600u * 1000u)
#define WINDOW_MAX 1000
#define SYMBOL_MAX 15
#define START_CENTS 10000          /* 100.00 */
#define STEP_CENTS 100             /* a step moves at most 1.00 */
#define PRICE_MAX_CENTS 1000000000000 /* keeps sums far from overflow */

static const struct ol_host *host;

struct pricewatch {
    /* Config. */
    uint64_t interval_ms;
    uint64_t seed;
    uint32_t nshort;
    uint32_t nlong;
    char ledger[OL_AGENT_NAME_MAX + 1];
    char symbol[SYMBOL_MAX + 1];
    /* State. */
    uint64_t tick;
    int64_t price;     /* cents, at `tick` */
    int64_t *win;      /* ring of the last nlong prices */
    uint32_t win_len;  /* prices in the ring */
    uint32_t win_pos;  /* where the next one goes */
    int rel;           /* last non-zero sign of short MA - long MA */
    int64_t position;
    uint64_t decisions_sent;
    char last_action[8];
};

/* The k-th output of SplitMix64 seeded with `seed` (Steele, Lea, Flood). */
static uint64_t splitmix64_at(uint64_t seed, uint64_t k)
{
    uint64_t z = seed + (k + 1) * 0x9e3779b97f4a7c15u;

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* The price at tick k given the price at tick k-1. */
static int64_t next_price(uint64_t seed, uint64_t k, int64_t prev)
{
    int64_t step = (int64_t)(splitmix64_at(seed, k) % (2 * STEP_CENTS + 1)) -
                   STEP_CENTS;
    int64_t p = prev + step;

    if (p < 1)
        p = 1;
    if (p > PRICE_MAX_CENTS)
        p = PRICE_MAX_CENTS;
    return p;
}

/* Copies a str of 1..cap-1 bytes without NULs into out. */
static bool as_name(const msgpack_object *o, char *out, size_t cap)
{
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size > 0 &&
           ol_mp_str(o, out, cap);
}

static int parse_config(struct pricewatch *pw, struct ol_agent *a,
                        const msgpack_object *cfg)
{
    const msgpack_object *v;
    uint64_t nshort = 5, nlong = 20;

    if (cfg->type != MSGPACK_OBJECT_MAP && cfg->type != MSGPACK_OBJECT_NIL) {
        host->log(a, OL_AGENT_LOG_ERROR, "config: not a map");
        return OL_AGENT_EINVAL;
    }
    if ((v = ol_mp_get(cfg, "interval_ms")) != NULL &&
        (!ol_mp_uint(v, &pw->interval_ms) || pw->interval_ms == 0 ||
         pw->interval_ms > INTERVAL_MAX)) {
        host->log(a, OL_AGENT_LOG_ERROR,
                  "config: 'interval_ms' must be an integer in 1..%u",
                  INTERVAL_MAX);
        return OL_AGENT_EINVAL;
    }
    if ((v = ol_mp_get(cfg, "seed")) != NULL && !ol_mp_uint(v, &pw->seed)) {
        host->log(a, OL_AGENT_LOG_ERROR,
                  "config: 'seed' must be a non-negative integer");
        return OL_AGENT_EINVAL;
    }
    if (((v = ol_mp_get(cfg, "short")) != NULL && !ol_mp_uint(v, &nshort)) ||
        ((v = ol_mp_get(cfg, "long")) != NULL && !ol_mp_uint(v, &nlong)) ||
        nshort < 1 || nlong <= nshort || nlong > WINDOW_MAX) {
        host->log(a, OL_AGENT_LOG_ERROR,
                  "config: 'short' and 'long' must be integers with "
                  "1 <= short < long <= %d", WINDOW_MAX);
        return OL_AGENT_EINVAL;
    }
    pw->nshort = (uint32_t)nshort;
    pw->nlong = (uint32_t)nlong;
    if ((v = ol_mp_get(cfg, "ledger")) != NULL &&
        !as_name(v, pw->ledger, sizeof(pw->ledger))) {
        host->log(a, OL_AGENT_LOG_ERROR,
                  "config: 'ledger' must be an agent name of 1..%d bytes",
                  OL_AGENT_NAME_MAX);
        return OL_AGENT_EINVAL;
    }
    if ((v = ol_mp_get(cfg, "symbol")) != NULL &&
        !as_name(v, pw->symbol, sizeof(pw->symbol))) {
        host->log(a, OL_AGENT_LOG_ERROR,
                  "config: 'symbol' must be a string of 1..%d bytes",
                  SYMBOL_MAX);
        return OL_AGENT_EINVAL;
    }
    return 0;
}

static void pw_close(void *self)
{
    struct pricewatch *pw = self;

    if (pw == NULL)
        return;
    free(pw->win);
    free(pw);
}

static int pw_open(struct ol_agent *a, const void *config, size_t config_len,
                   void **self)
{
    struct pricewatch *pw;
    msgpack_unpacked u;
    int rv;

    if (ol_mp_unpack(&u, config, config_len) != 0) {
        host->log(a, OL_AGENT_LOG_ERROR, "config: not one msgpack object");
        return OL_AGENT_EINVAL;
    }
    pw = calloc(1, sizeof(*pw));
    if (pw == NULL) {
        msgpack_unpacked_destroy(&u);
        return OL_AGENT_ENOMEM;
    }
    pw->interval_ms = 200;
    pw->seed = 42;
    strcpy(pw->ledger, "ledger");
    strcpy(pw->symbol, "OUTL");
    pw->price = START_CENTS;
    rv = parse_config(pw, a, &u.data);
    msgpack_unpacked_destroy(&u);
    if (rv == 0) {
        pw->win = calloc(pw->nlong, sizeof(*pw->win));
        if (pw->win == NULL)
            rv = OL_AGENT_ENOMEM;
    }
    if (rv != 0) {
        pw_close(pw);
        return rv;
    }
    *self = pw;
    return 0;
}

static void push_price(struct pricewatch *pw, int64_t p)
{
    pw->win[pw->win_pos] = p;
    pw->win_pos = (pw->win_pos + 1) % pw->nlong;
    if (pw->win_len < pw->nlong)
        pw->win_len++;
}

/* The i-th oldest price in the ring, 0 <= i < win_len. */
static int64_t window_at(const struct pricewatch *pw, uint32_t i)
{
    return pw->win[(pw->win_pos + pw->nlong - pw->win_len + i) % pw->nlong];
}

/* Sum of the newest k prices; k <= win_len. */
static int64_t window_sum(const struct pricewatch *pw, uint32_t k)
{
    int64_t s = 0;

    for (uint32_t i = pw->win_len - k; i < pw->win_len; i++)
        s += window_at(pw, i);
    return s;
}

static int pw_restore(void *self, struct ol_agent *a, const void *state,
                      size_t len)
{
    struct pricewatch *pw = self;
    const msgpack_object *tick, *price, *win, *rel, *pos, *sent, *last;
    msgpack_unpacked u;
    uint32_t n, first;
    int64_t r = 0;
    int rv = OL_AGENT_EMALFORMED;

    if (ol_mp_unpack(&u, state, len) != 0) {
        host->log(a, OL_AGENT_LOG_ERROR, "restore: state is not msgpack");
        return OL_AGENT_EMALFORMED;
    }
    tick = ol_mp_get(&u.data, "tick");
    price = ol_mp_get(&u.data, "price_cents");
    win = ol_mp_get(&u.data, "window_cents");
    rel = ol_mp_get(&u.data, "rel");
    pos = ol_mp_get(&u.data, "position");
    sent = ol_mp_get(&u.data, "decisions_sent");
    last = ol_mp_get(&u.data, "last_action");
    if (tick == NULL || price == NULL || win == NULL || rel == NULL ||
        pos == NULL || sent == NULL || last == NULL ||
        !ol_mp_uint(tick, &pw->tick) || !ol_mp_int(price, &pw->price) ||
        pw->price < 1 || pw->price > PRICE_MAX_CENTS ||
        win->type != MSGPACK_OBJECT_ARRAY || !ol_mp_int(rel, &r) || r < -1 ||
        r > 1 || !ol_mp_int(pos, &pw->position) ||
        !ol_mp_uint(sent, &pw->decisions_sent) ||
        last->type != MSGPACK_OBJECT_STR ||
        last->via.str.size >= sizeof(pw->last_action)) {
        host->log(a, OL_AGENT_LOG_ERROR,
                  "restore: state fields are missing or mistyped");
        goto out;
    }
    pw->rel = (int)r;
    memcpy(pw->last_action, last->via.str.ptr, last->via.str.size);
    pw->last_action[last->via.str.size] = '\0';

    /* Keep the newest nlong prices; older ones no longer matter. */
    pw->win_len = 0;
    pw->win_pos = 0;
    n = win->via.array.size;
    first = n > pw->nlong ? n - pw->nlong : 0;
    for (uint32_t i = first; i < n; i++) {
        int64_t p;
        if (!ol_mp_int(&win->via.array.ptr[i], &p) || p < 1 ||
            p > PRICE_MAX_CENTS) {
            host->log(a, OL_AGENT_LOG_ERROR,
                      "restore: window_cents[%" PRIu32 "] is not a price", i);
            goto out;
        }
        push_price(pw, p);
    }
    rv = 0;
out:
    msgpack_unpacked_destroy(&u);
    return rv;
}

/* Sends decision n = decisions_sent + 1 to the ledger.  A send the host
 * refuses is logged and the decision keeps its number, so the ledger never
 * sees a gap it did not really have. */
static void send_decision(struct pricewatch *pw, struct ol_agent *a,
                          const char *action, int64_t short_sum,
                          int64_t long_sum)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint64_t n = pw->decisions_sent + 1;
    int rv;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (msgpack_pack_map(&pk, 7) != 0 || ol_mp_pack_str(&pk, "n") != 0 ||
        msgpack_pack_uint64(&pk, n) != 0 || ol_mp_pack_str(&pk, "tick") != 0 ||
        msgpack_pack_uint64(&pk, pw->tick) != 0 ||
        ol_mp_pack_str(&pk, "symbol") != 0 ||
        ol_mp_pack_str(&pk, pw->symbol) != 0 ||
        ol_mp_pack_str(&pk, "price") != 0 ||
        msgpack_pack_double(&pk, (double)pw->price / 100.0) != 0 ||
        ol_mp_pack_str(&pk, "action") != 0 || ol_mp_pack_str(&pk, action) != 0 ||
        ol_mp_pack_str(&pk, "short_ma") != 0 ||
        msgpack_pack_double(&pk,
                            (double)short_sum / pw->nshort / 100.0) != 0 ||
        ol_mp_pack_str(&pk, "long_ma") != 0 ||
        msgpack_pack_double(&pk, (double)long_sum / pw->nlong / 100.0) != 0) {
        host->log(a, OL_AGENT_LOG_ERROR, "decision %" PRIu64 ": out of memory",
                  n);
        goto out;
    }
    rv = host->send(a, pw->ledger, sb.data, sb.size);
    if (rv != 0) {
        host->log(a, OL_AGENT_LOG_ERROR,
                  "decision %" PRIu64 ": send to '%s': error %d", n,
                  pw->ledger, rv);
        goto out;
    }
    pw->decisions_sent = n;
out:
    msgpack_sbuffer_destroy(&sb);
}

/* Advances the feed one tick and decides on a crossover. */
static void tick(struct pricewatch *pw, struct ol_agent *a)
{
    int64_t short_sum, long_sum, lhs, rhs;
    const char *action = NULL;
    int rel;

    pw->tick++;
    pw->price = next_price(pw->seed, pw->tick, pw->price);
    push_price(pw, pw->price);
    if (pw->win_len < pw->nlong)
        return;

    short_sum = window_sum(pw, pw->nshort);
    long_sum = window_sum(pw, pw->nlong);
    lhs = short_sum * (int64_t)pw->nlong;
    rhs = long_sum * (int64_t)pw->nshort;
    rel = lhs > rhs ? 1 : lhs < rhs ? -1 : 0;
    if (rel == 0)
        return; /* touching is not crossing; wait for a side */
    if (pw->rel == -1 && rel == 1)
        action = "BUY";
    else if (pw->rel == 1 && rel == -1)
        action = "SELL";
    pw->rel = rel;
    if (action == NULL)
        return;

    pw->position += rel;
    strcpy(pw->last_action, action);
    send_decision(pw, a, action, short_sum, long_sum);
}

static int arm(struct ol_agent *a, const struct pricewatch *pw)
{
    int rv = host->timer_after(a, TICK_TIMER, pw->interval_ms);

    if (rv != 0)
        host->log(a, OL_AGENT_LOG_ERROR, "arm timer %d: error %d",
                  TICK_TIMER, rv);
    return rv;
}

static int pw_handle(void *self, struct ol_agent *a, const struct ol_event *ev)
{
    struct pricewatch *pw = self;

    switch (ev->type) {
    case OL_EVENT_START:
        host->log(a, OL_AGENT_LOG_INFO,
                  "start: %s seed %" PRIu64 " ma %" PRIu32 "/%" PRIu32
                  " every %" PRIu64 " ms, decisions to '%s'",
                  pw->symbol, pw->seed, pw->nshort, pw->nlong,
                  pw->interval_ms, pw->ledger);
        return arm(a, pw);
    case OL_EVENT_RESUME:
        host->log(a, OL_AGENT_LOG_INFO,
                  "resume on '%s' from '%s' at seq %" PRIu64 ": tick %" PRIu64
                  ", %" PRIu64 " decisions sent",
                  ev->node ? ev->node : "?",
                  ev->prev_node ? ev->prev_node : "?", ev->seq, pw->tick,
                  pw->decisions_sent);
        return arm(a, pw);
    case OL_EVENT_TIMER:
        if (ev->timer_id != TICK_TIMER)
            return 0;
        tick(pw, a);
        return arm(a, pw);
    case OL_EVENT_MESSAGE:
        host->log(a, OL_AGENT_LOG_DEBUG,
                  "message from '%s' ignored: pricewatch takes none",
                  ev->from);
        return 0;
    default:
        return 0;
    }
}

static int pw_save(void *self, struct ol_agent *a, const struct ol_sink *out)
{
    const struct pricewatch *pw = self;
    msgpack_packer pk;

    msgpack_packer_init(&pk, out->data, out->write);
    if (msgpack_pack_map(&pk, 7) != 0 || ol_mp_pack_str(&pk, "tick") != 0 ||
        msgpack_pack_uint64(&pk, pw->tick) != 0 ||
        ol_mp_pack_str(&pk, "price_cents") != 0 ||
        msgpack_pack_int64(&pk, pw->price) != 0 ||
        ol_mp_pack_str(&pk, "window_cents") != 0 ||
        msgpack_pack_array(&pk, pw->win_len) != 0)
        return OL_AGENT_ETOOBIG;
    for (uint32_t i = 0; i < pw->win_len; i++)
        if (msgpack_pack_int64(&pk, window_at(pw, i)) != 0)
            return OL_AGENT_ETOOBIG;
    if (ol_mp_pack_str(&pk, "rel") != 0 || msgpack_pack_int(&pk, pw->rel) != 0 ||
        ol_mp_pack_str(&pk, "position") != 0 ||
        msgpack_pack_int64(&pk, pw->position) != 0 ||
        ol_mp_pack_str(&pk, "decisions_sent") != 0 ||
        msgpack_pack_uint64(&pk, pw->decisions_sent) != 0 ||
        ol_mp_pack_str(&pk, "last_action") != 0 ||
        ol_mp_pack_str(&pk, pw->last_action) != 0)
        return OL_AGENT_ETOOBIG;
    return 0;
}

static const struct ol_agent_vtable vtable = {
    .abi = OL_AGENT_ABI,
    .size = sizeof(struct ol_agent_vtable),
    .kind = "pricewatch",
    .version = "1.0.0",
    .open = pw_open,
    .restore = pw_restore,
    .handle = pw_handle,
    .save = pw_save,
    .close = pw_close,
};

OL_AGENT_EXPORT int ol_agent_entry(const struct ol_host *h,
                                   const struct ol_agent_vtable **out)
{
    if (h == NULL || h->abi != OL_AGENT_ABI || !OL_HOST_HAS(h, send))
        return OL_AGENT_EINVAL;
    host = h;
    *out = &vtable;
    return 0;
}
