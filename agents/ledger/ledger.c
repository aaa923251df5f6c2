/*
 * ledger - a book of numbered decisions, kind "ledger".
 *
 * Senders such as pricewatch number their messages 1, 2, 3, ... per
 * sender.  The ledger keeps, for each sender, the number it expects next
 * and sorts every message that carries a number into one of three bins:
 *   - n == expected: a new entry; it is recorded and expected moves on.
 *   - n <  expected: a duplicate; it is counted in `dups` and dropped.
 *   - n >  expected: a gap (some message never came); it is counted in
 *     `gaps`, recorded anyway, and expected jumps to n + 1.
 * The runtime promises exactly-once delivery, so on a healthy cluster both
 * dups and gaps stay zero; the tests read them to prove it.  They must
 * therefore count what really arrived, nothing more and nothing less.
 *
 * A recorded entry with action "BUY" or "SELL" and a price moves the book:
 * BUY adds one unit to `position` and pays `price` from `cash`; SELL does
 * the opposite.  The last 16 entries are kept for display.
 *
 * Messages without `n` (or that are not maps) are counted in `other`.  A
 * message whose `n` is not a positive integer, or whose sender cannot be
 * tracked, is counted in `bad`.  Neither stops the ledger.
 *
 * Config: none (any map is accepted).
 * Message: {n: uint >= 1, tick?: uint, symbol?: str, action?: str,
 *           price?: float|int}.  Mistyped optional fields are ignored.
 * State: {entries: uint, expect: {sender: uint}, dups: uint, gaps: uint,
 *         other: uint, bad: uint, position: int, cash: float64,
 *         recent: [{from: str, n: uint, tick: uint|nil, symbol: str|nil,
 *                   action: str|nil, price: float64|nil}] (oldest first)}.
 */
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <outlast/agent.h>
#include <outlast/agent_util.h>

#define RECENT_MAX 16
#define SENDERS_MAX 4096
#define FIELD_MAX 16 /* bytes kept of symbol and action, with the NUL */

static const struct ol_host *host;

struct sender {
    char name[OL_AGENT_NAME_MAX + 1];
    uint64_t next; /* the n expected next */
};

struct entry {
    char from[OL_AGENT_NAME_MAX + 1];
    uint64_t n;
    bool has_tick, has_price;
    uint64_t tick;
    double price;
    char symbol[FIELD_MAX]; /* "" when absent */
    char action[FIELD_MAX]; /* "" when absent */
};

struct ledger {
    uint64_t entries, dups, gaps, other, bad;
    int64_t position;
    double cash;
    struct sender *senders;
    size_t nsenders, cap;
    struct entry recent[RECENT_MAX]; /* ring, oldest at recent_pos when full */
    unsigned recent_len, recent_pos;
};

static int ledger_open(struct ol_agent *a, const void *config,
                       size_t config_len, void **self)
{
    struct ledger *l;
    msgpack_unpacked u;
    bool is_map;

    if (ol_mp_unpack(&u, config, config_len) != 0) {
        host->log(a, OL_AGENT_LOG_ERROR, "config: not one msgpack object");
        return OL_AGENT_EINVAL;
    }
    is_map = u.data.type == MSGPACK_OBJECT_MAP ||
             u.data.type == MSGPACK_OBJECT_NIL;
    msgpack_unpacked_destroy(&u);
    if (!is_map) {
        host->log(a, OL_AGENT_LOG_ERROR, "config: not a map");
        return OL_AGENT_EINVAL;
    }
    l = calloc(1, sizeof(*l));
    if (l == NULL)
        return OL_AGENT_ENOMEM;
    *self = l;
    return 0;
}

static void ledger_close(void *self)
{
    struct ledger *l = self;

    if (l == NULL)
        return;
    free(l->senders);
    free(l);
}

/* The sender named `name`, added with next = 1 if new; NULL when the table
 * is full or out of memory. */
static struct sender *sender_get(struct ledger *l, const char *name)
{
    struct sender *s;

    for (size_t i = 0; i < l->nsenders; i++)
        if (strcmp(l->senders[i].name, name) == 0)
            return &l->senders[i];
    if (l->nsenders == SENDERS_MAX)
        return NULL;
    if (l->nsenders == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        s = realloc(l->senders, cap * sizeof(*s));
        if (s == NULL)
            return NULL;
        l->senders = s;
        l->cap = cap;
    }
    s = &l->senders[l->nsenders++];
    strcpy(s->name, name);
    s->next = 1;
    return s;
}

static struct entry *recent_push(struct ledger *l)
{
    struct entry *e;

    if (l->recent_len < RECENT_MAX) {
        e = &l->recent[(l->recent_pos + l->recent_len) % RECENT_MAX];
        l->recent_len++;
    } else {
        e = &l->recent[l->recent_pos];
        l->recent_pos = (l->recent_pos + 1) % RECENT_MAX;
    }
    memset(e, 0, sizeof(*e));
    return e;
}

static const struct entry *recent_at(const struct ledger *l, unsigned i)
{
    return &l->recent[(l->recent_pos + i) % RECENT_MAX];
}

/* Records one entry and moves the book by it. */
static void record(struct ledger *l, const struct entry *e)
{
    l->entries++;
    if (strcmp(e->action, "BUY") == 0) {
        l->position++;
        if (e->has_price)
            l->cash -= e->price;
    } else if (strcmp(e->action, "SELL") == 0) {
        l->position--;
        if (e->has_price)
            l->cash += e->price;
    }
    *recent_push(l) = *e;
}

/* Fills the optional fields of e from message m.  A mistyped field is
 * dropped (logged at debug only: a sender can repeat it forever), since the
 * number alone decides dups and gaps. */
static void read_fields(struct ol_agent *a, const char *from,
                        const msgpack_object *m, struct entry *e)
{
    const msgpack_object *v;

    if ((v = ol_mp_get(m, "tick")) != NULL &&
        !(e->has_tick = ol_mp_uint(v, &e->tick)))
        host->log(a, OL_AGENT_LOG_DEBUG,
                  "message %" PRIu64 " from '%s': 'tick' is not a uint",
                  e->n, from);
    if ((v = ol_mp_get(m, "price")) != NULL &&
        !(e->has_price = ol_mp_double(v, &e->price)))
        host->log(a, OL_AGENT_LOG_DEBUG,
                  "message %" PRIu64 " from '%s': 'price' is not a number",
                  e->n, from);
    if ((v = ol_mp_get(m, "symbol")) != NULL &&
        !ol_mp_str(v, e->symbol, sizeof(e->symbol))) {
        e->symbol[0] = '\0';
        host->log(a, OL_AGENT_LOG_DEBUG,
                  "message %" PRIu64 " from '%s': 'symbol' is not a short str",
                  e->n, from);
    }
    if ((v = ol_mp_get(m, "action")) != NULL &&
        !ol_mp_str(v, e->action, sizeof(e->action))) {
        e->action[0] = '\0';
        host->log(a, OL_AGENT_LOG_DEBUG,
                  "message %" PRIu64 " from '%s': 'action' is not a short str",
                  e->n, from);
    }
}

/* Repeated warnings are logged at counts 1, 2, 4, 8, ... only. */
static bool power_of_two(uint64_t x)
{
    return x != 0 && (x & (x - 1)) == 0;
}

static void on_message(struct ledger *l, struct ol_agent *a,
                       const struct ol_event *ev)
{
    const char *from = ev->from ? ev->from : "";
    const msgpack_object *nv;
    struct sender *s;
    struct entry e;
    msgpack_unpacked u;

    if (ol_mp_unpack(&u, ev->data, ev->len) != 0) {
        host->log(a, OL_AGENT_LOG_WARN, "message from '%s': not msgpack",
                  from);
        l->bad++;
        return;
    }
    memset(&e, 0, sizeof(e));
    nv = ol_mp_get(&u.data, "n");
    if (nv == NULL) {
        l->other++;
        goto out;
    }
    if (!ol_mp_uint(nv, &e.n) || e.n == 0) {
        l->bad++;
        if (power_of_two(l->bad))
            host->log(a, OL_AGENT_LOG_WARN,
                      "message from '%s': 'n' is not a positive integer "
                      "(bad #%" PRIu64 ")", from, l->bad);
        goto out;
    }
    if (strlen(from) > OL_AGENT_NAME_MAX ||
        (s = sender_get(l, from)) == NULL) {
        host->log(a, OL_AGENT_LOG_WARN,
                  "message %" PRIu64 " from '%.*s': cannot track this sender",
                  e.n, OL_AGENT_NAME_MAX, from);
        l->bad++;
        goto out;
    }
    if (e.n < s->next) {
        l->dups++;
        if (power_of_two(l->dups))
            host->log(a, OL_AGENT_LOG_WARN,
                      "message %" PRIu64 " from '%s': duplicate #%" PRIu64
                      " (expected %" PRIu64 ")", e.n, from, l->dups, s->next);
        goto out;
    }
    if (e.n > s->next) {
        l->gaps++;
        if (power_of_two(l->gaps))
            host->log(a, OL_AGENT_LOG_WARN,
                      "message %" PRIu64 " from '%s': gap #%" PRIu64
                      " (expected %" PRIu64 ")", e.n, from, l->gaps, s->next);
    }
    s->next = e.n + 1;
    strcpy(e.from, from);
    read_fields(a, from, &u.data, &e);
    record(l, &e);
out:
    msgpack_unpacked_destroy(&u);
}

static int ledger_handle(void *self, struct ol_agent *a,
                         const struct ol_event *ev)
{
    struct ledger *l = self;

    switch (ev->type) {
    case OL_EVENT_START:
        host->log(a, OL_AGENT_LOG_INFO, "start: empty book");
        return 0;
    case OL_EVENT_RESUME:
        host->log(a, OL_AGENT_LOG_INFO,
                  "resume on '%s' from '%s' at seq %" PRIu64 ": %" PRIu64
                  " entries, %" PRIu64 " dups, %" PRIu64 " gaps",
                  ev->node ? ev->node : "?",
                  ev->prev_node ? ev->prev_node : "?", ev->seq, l->entries,
                  l->dups, l->gaps);
        return 0;
    case OL_EVENT_MESSAGE:
        on_message(l, a, ev);
        return 0;
    default:
        return 0;
    }
}

static int pack_entry(msgpack_packer *pk, const struct entry *e)
{
    return msgpack_pack_map(pk, 6) || ol_mp_pack_str(pk, "from") ||
           ol_mp_pack_str(pk, e->from) || ol_mp_pack_str(pk, "n") ||
           msgpack_pack_uint64(pk, e->n) || ol_mp_pack_str(pk, "tick") ||
           (e->has_tick ? msgpack_pack_uint64(pk, e->tick)
                        : msgpack_pack_nil(pk)) ||
           ol_mp_pack_str(pk, "symbol") ||
           (e->symbol[0] ? ol_mp_pack_str(pk, e->symbol)
                         : msgpack_pack_nil(pk)) ||
           ol_mp_pack_str(pk, "action") ||
           (e->action[0] ? ol_mp_pack_str(pk, e->action)
                         : msgpack_pack_nil(pk)) ||
           ol_mp_pack_str(pk, "price") ||
           (e->has_price ? msgpack_pack_double(pk, e->price)
                         : msgpack_pack_nil(pk));
}

static int ledger_save(void *self, struct ol_agent *a,
                       const struct ol_sink *out)
{
    const struct ledger *l = self;
    msgpack_packer pk;

    msgpack_packer_init(&pk, out->data, out->write);
    if (msgpack_pack_map(&pk, 9) || ol_mp_pack_str(&pk, "entries") ||
        msgpack_pack_uint64(&pk, l->entries) || ol_mp_pack_str(&pk, "expect") ||
        msgpack_pack_map(&pk, (uint32_t)l->nsenders))
        return OL_AGENT_ETOOBIG;
    for (size_t i = 0; i < l->nsenders; i++)
        if (ol_mp_pack_str(&pk, l->senders[i].name) ||
            msgpack_pack_uint64(&pk, l->senders[i].next))
            return OL_AGENT_ETOOBIG;
    if (ol_mp_pack_str(&pk, "dups") || msgpack_pack_uint64(&pk, l->dups) ||
        ol_mp_pack_str(&pk, "gaps") || msgpack_pack_uint64(&pk, l->gaps) ||
        ol_mp_pack_str(&pk, "other") || msgpack_pack_uint64(&pk, l->other) ||
        ol_mp_pack_str(&pk, "bad") || msgpack_pack_uint64(&pk, l->bad) ||
        ol_mp_pack_str(&pk, "position") ||
        msgpack_pack_int64(&pk, l->position) ||
        ol_mp_pack_str(&pk, "cash") || msgpack_pack_double(&pk, l->cash) ||
        ol_mp_pack_str(&pk, "recent") || msgpack_pack_array(&pk, l->recent_len))
        return OL_AGENT_ETOOBIG;
    for (unsigned i = 0; i < l->recent_len; i++)
        if (pack_entry(&pk, recent_at(l, i)))
            return OL_AGENT_ETOOBIG;
    return 0;
}

/* Reads one saved entry; false if it is not what save() writes. */
static bool restore_entry(const msgpack_object *m, struct entry *e)
{
    const msgpack_object *v;

    memset(e, 0, sizeof(*e));
    if (!ol_mp_str(ol_mp_get(m, "from"), e->from, sizeof(e->from)) ||
        !ol_mp_uint(ol_mp_get(m, "n"), &e->n))
        return false;
    v = ol_mp_get(m, "tick");
    if (v != NULL && v->type != MSGPACK_OBJECT_NIL &&
        !(e->has_tick = ol_mp_uint(v, &e->tick)))
        return false;
    v = ol_mp_get(m, "price");
    if (v != NULL && v->type != MSGPACK_OBJECT_NIL &&
        !(e->has_price = ol_mp_double(v, &e->price)))
        return false;
    v = ol_mp_get(m, "symbol");
    if (v != NULL && v->type != MSGPACK_OBJECT_NIL &&
        !ol_mp_str(v, e->symbol, sizeof(e->symbol)))
        return false;
    v = ol_mp_get(m, "action");
    if (v != NULL && v->type != MSGPACK_OBJECT_NIL &&
        !ol_mp_str(v, e->action, sizeof(e->action)))
        return false;
    return true;
}

static int restore_from(struct ledger *l, const msgpack_object *st)
{
    const msgpack_object *expect, *recent;
    uint32_t first;

    expect = ol_mp_get(st, "expect");
    recent = ol_mp_get(st, "recent");
    if (!ol_mp_uint(ol_mp_get(st, "entries"), &l->entries) ||
        !ol_mp_uint(ol_mp_get(st, "dups"), &l->dups) ||
        !ol_mp_uint(ol_mp_get(st, "gaps"), &l->gaps) ||
        !ol_mp_uint(ol_mp_get(st, "other"), &l->other) ||
        !ol_mp_uint(ol_mp_get(st, "bad"), &l->bad) ||
        !ol_mp_int(ol_mp_get(st, "position"), &l->position) ||
        !ol_mp_double(ol_mp_get(st, "cash"), &l->cash) || expect == NULL ||
        expect->type != MSGPACK_OBJECT_MAP || recent == NULL ||
        recent->type != MSGPACK_OBJECT_ARRAY)
        return OL_AGENT_EMALFORMED;

    l->nsenders = 0;
    for (uint32_t i = 0; i < expect->via.map.size; i++) {
        char name[OL_AGENT_NAME_MAX + 1];
        uint64_t next;
        struct sender *s;
        if (!ol_mp_str(&expect->via.map.ptr[i].key, name, sizeof(name)) ||
            !ol_mp_uint(&expect->via.map.ptr[i].val, &next) || next == 0)
            return OL_AGENT_EMALFORMED;
        s = sender_get(l, name);
        if (s == NULL)
            return OL_AGENT_ENOMEM;
        s->next = next;
    }

    l->recent_len = 0;
    l->recent_pos = 0;
    first = recent->via.array.size > RECENT_MAX
                ? recent->via.array.size - RECENT_MAX
                : 0;
    for (uint32_t i = first; i < recent->via.array.size; i++) {
        struct entry e;
        if (!restore_entry(&recent->via.array.ptr[i], &e))
            return OL_AGENT_EMALFORMED;
        *recent_push(l) = e;
    }
    return 0;
}

static int ledger_restore(void *self, struct ol_agent *a, const void *state,
                          size_t len)
{
    struct ledger *l = self;
    msgpack_unpacked u;
    int rv;

    if (ol_mp_unpack(&u, state, len) != 0) {
        host->log(a, OL_AGENT_LOG_ERROR, "restore: state is not msgpack");
        return OL_AGENT_EMALFORMED;
    }
    rv = restore_from(l, &u.data);
    msgpack_unpacked_destroy(&u);
    if (rv == OL_AGENT_EMALFORMED)
        host->log(a, OL_AGENT_LOG_ERROR,
                  "restore: state fields are missing or mistyped");
    return rv;
}

static const struct ol_agent_vtable vtable = {
    .abi = OL_AGENT_ABI,
    .size = sizeof(struct ol_agent_vtable),
    .kind = "ledger",
    .version = "1.0.0",
    .open = ledger_open,
    .restore = ledger_restore,
    .handle = ledger_handle,
    .save = ledger_save,
    .close = ledger_close,
};

OL_AGENT_EXPORT int ol_agent_entry(const struct ol_host *h,
                                   const struct ol_agent_vtable **out)
{
    if (h == NULL || h->abi != OL_AGENT_ABI || !OL_HOST_HAS(h, log))
        return OL_AGENT_EINVAL;
    host = h;
    *out = &vtable;
    return 0;
}
