/*
 * Tests for the in-tree agent plugins (counter, pricewatch, ledger), driven
 * the way outlastd drives them but without a daemon: each test dlopen()s the
 * built shared object from $OL_BUILD_ROOT/agents/<kind>.so into the SDK's
 * fake host (outlast/agent_test.h) and delivers events by hand.  The fake
 * host records timers and sends so the tests can read them, and checks
 * after every step that save() wrote exactly one msgpack object within
 * OL_AGENT_STATE_MAX, as the real host does.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <inttypes.h>
#include <math.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <outlast/agent.h>
#include <outlast/agent_test.h>
#include <outlast/agent_util.h>

#include "ol_config.h"
#include "runtime/node.h"
#include "runtime/host.h"

/* A byte-string test vector: its bytes and its length. */
#define B(lit) {lit, sizeof(lit) - 1}

/* A msgpack builder: mb_begin(), then pack with mb.pk, then use mb.sb. */
struct mb {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

static void mb_begin(struct mb *m)
{
    msgpack_sbuffer_init(&m->sb);
    msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

static void mb_str(struct mb *m, const char *s)
{
    msgpack_pack_str_with_body(&m->pk, s, strlen(s));
}

static void mb_end(struct mb *m)
{
    msgpack_sbuffer_destroy(&m->sb);
}

/* Unpacks bytes that must be exactly one object. */
static void unpack(msgpack_unpacked *u, const void *p, size_t len)
{
    size_t off = 0;

    msgpack_unpacked_init(u);
    cr_assert_eq(msgpack_unpack_next(u, p, len, &off),
                 MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq(off, len, "trailing bytes after the object");
}

static int64_t get_i64(const msgpack_object *m, const char *key)
{
    const msgpack_object *v = ol_mp_get(m, key);

    cr_assert_not_null(v, "no key '%s'", key);
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return (int64_t)v->via.u64;
    cr_assert_eq(v->type, MSGPACK_OBJECT_NEGATIVE_INTEGER,
                 "'%s' is not an integer", key);
    return v->via.i64;
}

static uint64_t get_u64(const msgpack_object *m, const char *key)
{
    const msgpack_object *v = ol_mp_get(m, key);

    cr_assert_not_null(v, "no key '%s'", key);
    cr_assert_eq(v->type, MSGPACK_OBJECT_POSITIVE_INTEGER,
                 "'%s' is not a uint", key);
    return v->via.u64;
}

static double get_f64(const msgpack_object *m, const char *key)
{
    const msgpack_object *v = ol_mp_get(m, key);

    cr_assert_not_null(v, "no key '%s'", key);
    cr_assert_eq(v->type, MSGPACK_OBJECT_FLOAT64, "'%s' is not a float64",
                 key);
    return v->via.f64;
}

static bool str_is(const msgpack_object *o, const char *s)
{
    return o != NULL && o->type == MSGPACK_OBJECT_STR &&
           o->via.str.size == strlen(s) &&
           memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

/* ---- plugin instances ------------------------------------------------- */

static void plugin_path(char *path, size_t cap, const char *kind)
{
    const char *root = getenv("OL_BUILD_ROOT");

    cr_assert_not_null(root, "OL_BUILD_ROOT is not set");
    snprintf(path, cap, "%s/agents/%s.so", root, kind);
}

static const struct ol_agent_vtable *load(const char *kind, void **dl)
{
    int (*entry)(const struct ol_host *, const struct ol_agent_vtable **);
    const struct ol_agent_vtable *vt = NULL;
    char path[4096];
    void *sym;

    plugin_path(path, sizeof(path), kind);
    *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    cr_assert_not_null(*dl, "dlopen %s: %s", path, dlerror());
    sym = dlsym(*dl, OL_AGENT_ENTRY_SYMBOL);
    cr_assert_not_null(sym, "%s: no %s", path, OL_AGENT_ENTRY_SYMBOL);
    memcpy(&entry, &sym, sizeof(entry));
    cr_assert_eq(entry(ol_test_host(), &vt), 0);
    cr_assert_not_null(vt);
    return vt;
}

struct inst {
    struct ol_test t;
};

/* Opens an instance with config bytes (NULL: an empty map). */
static int inst_open(struct inst *in, const char *kind, const char *name,
                     const void *cfg, size_t cfg_len)
{
    char path[4096];

    plugin_path(path, sizeof(path), kind);
    cr_assert_eq(ol_test_load(&in->t, path), 0, "%s", in->t.errmsg);
    in->t.now_ms = 1700000000000;
    return ol_test_open(&in->t, name, cfg, cfg_len);
}

static void inst_close(struct inst *in)
{
    ol_test_close(&in->t);
}

/* Saves into in->t.state; the fake host checks it. */
static void inst_save(struct inst *in)
{
    cr_assert_eq(ol_test_save(&in->t), 0, "%s", in->t.errmsg);
}

/* 1 when p..p+len is exactly one msgpack object. */
static int one_object(const void *p, size_t len)
{
    msgpack_unpacked u;

    if (ol_mp_unpack(&u, p, len) != 0)
        return 0;
    msgpack_unpacked_destroy(&u);
    return 1;
}

/* One step: handle the event, then save, as the host does. */
static int inst_step(struct inst *in, struct ol_event *ev)
{
    int rv = ol_test_event(&in->t, ev);

    cr_assert(rv == 0 || strcmp(in->t.errmsg, "handle() failed") == 0,
              "%s", in->t.errmsg);
    return rv;
}

static void start(struct inst *in)
{
    cr_assert_eq(ol_test_start(&in->t), 0, "%s", in->t.errmsg);
}

static void resume(struct inst *in)
{
    struct ol_event ev = {.type = OL_EVENT_RESUME, .node = "n2",
                          .prev_node = "n1", .downtime_ms = 1500, .seq = 7,
                          .epoch = 2};

    cr_assert_eq(inst_step(in, &ev), 0);
}

static const struct ol_test_timer *timer_find(struct inst *in, uint64_t id)
{
    return ol_test_timer_find(&in->t, id);
}

/* Advances the clock to timer `id` and fires it. */
static void fire(struct inst *in, uint64_t id)
{
    const struct ol_test_timer *t = timer_find(in, id);

    cr_assert_not_null(t, "timer %" PRIu64 " is not armed", id);
    if (t->due_ms > in->t.now_ms)
        in->t.now_ms = t->due_ms;
    cr_assert_eq(ol_test_timer(&in->t, id), 0, "%s", in->t.errmsg);
}

static int deliver(struct inst *in, const char *from, const void *msg,
                   size_t len)
{
    return ol_test_message(&in->t, from, msg, len);
}

/* Restores `state` into a fresh instance. */
static int inst_reopen(struct inst *in, const char *kind, const char *name,
                       const void *cfg, size_t cfg_len, const void *state,
                       size_t state_len)
{
    int rv = inst_open(in, kind, name, cfg, cfg_len);

    cr_assert_eq(rv, 0);
    return ol_test_restore(&in->t, state, state_len);
}

static void state_of(struct inst *in, msgpack_unpacked *u)
{
    unpack(u, in->t.state, in->t.state_len);
    cr_assert_eq(u->data.type, MSGPACK_OBJECT_MAP, "state is not a map");
}

/* Every strict prefix of a good state must be refused, not crash. */
static void expect_prefixes_refused(const char *kind, const void *cfg,
                                    size_t cfg_len, const struct inst *good)
{
    for (size_t n = 0; n < good->t.state_len; n++) {
        struct inst in;
        int rv = inst_reopen(&in, kind, "t", cfg, cfg_len, good->t.state,
                             n);
        cr_expect_eq(rv, OL_AGENT_EMALFORMED,
                     "%s accepted a %zu-byte prefix of its state", kind, n);
        inst_close(&in);
    }
}

/* ---- every plugin ----------------------------------------------------- */

static const char *const kinds[] = {"counter", "pricewatch", "ledger"};

Test(plugins, entry_hands_back_a_complete_vtable)
{
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        void *dl;
        const struct ol_agent_vtable *vt = load(kinds[i], &dl);

        cr_expect_eq(vt->abi, OL_AGENT_ABI);
        cr_expect_geq(vt->size, sizeof(struct ol_agent_vtable));
        cr_expect_str_eq(vt->kind, kinds[i]);
        cr_expect_not_null(vt->version);
        cr_expect(vt->open && vt->restore && vt->handle && vt->save,
                  "%s: a required function is NULL", kinds[i]);
        dlclose(dl);
    }
}

Test(plugins, entry_refuses_another_abi)
{
    struct ol_host other = *ol_test_host();

    other.abi = OL_AGENT_ABI + 1;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        char path[4096];
        const struct ol_agent_vtable *vt = NULL;
        int (*entry)(const struct ol_host *, const struct ol_agent_vtable **);
        void *dl, *sym;

        snprintf(path, sizeof(path), "%s/agents/%s.so",
                 getenv("OL_BUILD_ROOT"), kinds[i]);
        dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        cr_assert_not_null(dl, "%s", dlerror());
        sym = dlsym(dl, OL_AGENT_ENTRY_SYMBOL);
        memcpy(&entry, &sym, sizeof(entry));
        cr_expect_lt(entry(&other, &vt), 0, "%s took abi %u", kinds[i],
                     other.abi);
        dlclose(dl);
    }
}

Test(plugins, only_the_entry_symbol_is_exported)
{
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        void *dl;
        const char *hidden[] = {"host", "vtable", "ol_mp_unpack",
                                "ol_mp_get"};

        load(kinds[i], &dl);
        for (size_t j = 0; j < sizeof(hidden) / sizeof(hidden[0]); j++)
            cr_expect_null(dlsym(dl, hidden[j]), "%s exports '%s'",
                           kinds[i], hidden[j]);
        dlclose(dl);
    }
}

Test(plugins, the_in_process_host_says_its_version)
{
    cr_assert(OL_HOST_HAS(&ol__host_table, version));
    cr_expect_str_eq(ol__host_table.version(), OL_VERSION_STRING);
    cr_expect_str_eq(OL_VERSION_STRING, OL_VERSION, "version.h and "
                     "ol_config.h disagree");
}

/* ---- counter ---------------------------------------------------------- */

static void counter_cfg(struct mb *m, uint64_t interval)
{
    mb_begin(m);
    msgpack_pack_map(&m->pk, 1);
    mb_str(m, "interval_ms");
    msgpack_pack_uint64(&m->pk, interval);
}

Test(counter, counts_ticks_at_the_configured_interval)
{
    struct inst in;
    struct mb cfg;
    msgpack_unpacked u;
    int64_t t0;

    counter_cfg(&cfg, 250);
    cr_assert_eq(inst_open(&in, "counter", "c1", cfg.sb.data, cfg.sb.size),
                 0);
    t0 = in.t.now_ms;
    start(&in);
    cr_assert_not_null(timer_find(&in, 1));
    cr_expect_eq(timer_find(&in, 1)->due_ms, t0 + 250);
    for (int i = 0; i < 5; i++)
        fire(&in, 1);
    cr_expect_eq(timer_find(&in, 1)->due_ms, t0 + 6 * 250, "not re-armed");

    state_of(&in, &u);
    cr_expect_eq(get_i64(&u.data, "count"), 5);
    cr_expect_eq(get_u64(&u.data, "ticks"), 5);
    cr_expect_eq(get_i64(&u.data, "started_ms"), t0);
    cr_expect_eq(get_i64(&u.data, "last_tick_ms"), t0 + 5 * 250);
    cr_expect_eq(u.data.via.map.size, 4);
    msgpack_unpacked_destroy(&u);
    cr_expect_eq(in.t.nsends, 0);
    cr_expect_geq(in.t.nlogs, 1, "START is not logged");
    mb_end(&cfg);
    inst_close(&in);
}

Test(counter, default_interval_is_one_second)
{
    struct inst in;

    cr_assert_eq(inst_open(&in, "counter", "c1", NULL, 0), 0);
    start(&in);
    cr_expect_eq(timer_find(&in, 1)->due_ms, in.t.now_ms + 1000);
    inst_close(&in);
}

static void send_add(struct inst *in, int64_t n)
{
    struct mb m;

    mb_begin(&m);
    msgpack_pack_map(&m.pk, 1);
    mb_str(&m, "add");
    msgpack_pack_int64(&m.pk, n);
    cr_assert_eq(deliver(in, "@cli", m.sb.data, m.sb.size), 0);
    mb_end(&m);
}

static int64_t counter_count(struct inst *in)
{
    msgpack_unpacked u;
    int64_t c;

    state_of(in, &u);
    c = get_i64(&u.data, "count");
    msgpack_unpacked_destroy(&u);
    return c;
}

Test(counter, add_and_reset)
{
    struct inst in;

    cr_assert_eq(inst_open(&in, "counter", "c1", NULL, 0), 0);
    start(&in);
    fire(&in, 1);
    fire(&in, 1);
    send_add(&in, 10);
    cr_expect_eq(counter_count(&in), 12);
    send_add(&in, -15);
    cr_expect_eq(counter_count(&in), -3);
    cr_assert_eq(deliver(&in, "@cli", "\x81\xa5reset\xc3", 8), 0);
    cr_expect_eq(counter_count(&in), 0);
    /* reset then add, in one message */
    cr_assert_eq(deliver(&in, "@cli", "\x82\xa5reset\xc3\xa3" "add\x07", 13),
                 0);
    cr_expect_eq(counter_count(&in), 7);
    /* reset: false changes nothing */
    cr_assert_eq(deliver(&in, "@cli", "\x81\xa5reset\xc2", 8), 0);
    cr_expect_eq(counter_count(&in), 7);
    fire(&in, 1);
    cr_expect_eq(counter_count(&in), 8);
    inst_close(&in);
}

Test(counter, mistyped_messages_are_ignored_not_fatal)
{
    static const struct {
        const char *bytes;
        size_t len;
    } bad[] = {
        B("\x81\xa3" "add\xa1x"),           /* {"add": "x"} */
        B("\x81\xa3" "add\xcb\x3f\xf8\0\0\0\0\0\0"), /* {"add": 1.5} */
        B("\x81\xa5reset\x01"),             /* {"reset": 1} */
        B("\x92\x01\x02"),                  /* [1, 2] */
        B("\xa3" "add"),                    /* "add" */
        B("\x80"),                          /* {} */
        B("\xc0"),                          /* nil */
        B("\x81\x01\x02"),                  /* {1: 2} */
        B("\x81\xa3" "add\xcf\x7f\xff\xff\xff\xff\xff\xff\xff"), /* max */
    };
    struct inst in;

    cr_assert_eq(inst_open(&in, "counter", "c1", NULL, 0), 0);
    start(&in);
    send_add(&in, 5);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(one_object(bad[i].bytes, bad[i].len), 1,
                     "test vector %zu is not msgpack", i);
        cr_expect_eq(deliver(&in, "agent-x", bad[i].bytes, bad[i].len), 0,
                     "message %zu quarantined the counter", i);
    }
    /* The INT64_MAX add overflows 5 and is refused; the rest are junk. */
    cr_expect_eq(counter_count(&in), 5);
    inst_close(&in);
}

Test(counter, bad_config_is_refused_with_its_reason)
{
    static const struct {
        const char *bytes;
        size_t len;
    } bad[] = {
        B("\x81\xab" "interval_ms\xa4" "fast"), /* "fast" */
        B("\x81\xab" "interval_ms\x00"),        /* 0 */
        B("\x81\xab" "interval_ms\xfb"),        /* -5 */
        B("\x81\xab" "interval_ms\xce\xff\xff\xff\xff"), /* too long */
        B("\x91\x01"),                           /* [1] */
        B("\xa3" "abc"),                         /* "abc" */
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct inst in;
        cr_assert_eq(one_object(bad[i].bytes, bad[i].len), 1,
                     "test vector %zu is not msgpack", i);
        cr_expect_eq(inst_open(&in, "counter", "c1", bad[i].bytes,
                               bad[i].len),
                     OL_AGENT_EINVAL, "config %zu accepted", i);
        cr_expect(in.t.error[0] != '\0', "config %zu refused silently", i);
        inst_close(&in);
    }
}

Test(counter, save_restore_round_trips_and_resume_rearms)
{
    struct inst a, b;
    struct mb cfg;

    counter_cfg(&cfg, 100);
    cr_assert_eq(inst_open(&a, "counter", "c1", cfg.sb.data, cfg.sb.size), 0);
    start(&a);
    for (int i = 0; i < 3; i++)
        fire(&a, 1);
    send_add(&a, -40);

    cr_assert_eq(inst_reopen(&b, "counter", "c1", cfg.sb.data, cfg.sb.size,
                             a.t.state, a.t.state_len),
                 0);
    inst_save(&b);
    cr_assert_eq(b.t.state_len, a.t.state_len);
    cr_expect_eq(memcmp(b.t.state, a.t.state, a.t.state_len), 0,
                 "restore + save changed the state");
    resume(&b);
    cr_expect_not_null(timer_find(&b, 1), "RESUME did not arm timer 1");
    fire(&b, 1);
    cr_expect_eq(counter_count(&b), -36);
    expect_prefixes_refused("counter", cfg.sb.data, cfg.sb.size, &a);
    mb_end(&cfg);
    inst_close(&a);
    inst_close(&b);
}

Test(counter, restore_refuses_other_shapes)
{
    static const struct {
        const char *bytes;
        size_t len;
    } bad[] = {
        B("\x80"),
        B("\x90"),
        B("\x84\xa5" "count\x01\xa5ticks\x01\xaa" "started_ms\x01"
         "\xac" "last_tick_ms\xa1x"),                 /* a str */
        B("\x84\xa5" "count\x01\xa5ticks\xff\xaa" "started_ms\x01"
         "\xac" "last_tick_ms\x01"),                  /* ticks < 0 */
        B("\x84\xa5" "count\x01\xa5ticks\x01\xaa" "started_ms\x01"
         "\xac" "last_tick_ms\x01\x01"),              /* trailing */
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct inst in;
        cr_expect_eq(inst_reopen(&in, "counter", "c1", NULL, 0, bad[i].bytes,
                                 bad[i].len),
                     OL_AGENT_EMALFORMED, "state %zu accepted", i);
        inst_close(&in);
    }
}

/* ---- pricewatch ------------------------------------------------------- */

/* An independent model of the feed and the crossover, written from the
 * plugin's documentation: the k-th SplitMix64 output drives step k. */
static uint64_t model_splitmix(uint64_t seed, uint64_t k)
{
    uint64_t z = seed + (k + 1) * 0x9e3779b97f4a7c15u;

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

struct decision {
    uint64_t tick;
    int64_t price;
    int action; /* +1 BUY, -1 SELL */
};

static size_t model_decisions(uint64_t seed, unsigned s, unsigned l,
                              uint64_t ticks, struct decision *out,
                              size_t max)
{
    int64_t *p = calloc(ticks + 1, sizeof(*p));
    size_t n = 0;
    int rel = 0;

    cr_assert_not_null(p);
    p[0] = 10000;
    for (uint64_t k = 1; k <= ticks; k++) {
        int64_t step = (int64_t)(model_splitmix(seed, k) % 201) - 100;
        int64_t ss = 0, ls = 0, lhs, rhs;
        int r;

        p[k] = p[k - 1] + step < 1 ? 1 : p[k - 1] + step;
        if (k < l)
            continue;
        for (unsigned i = 0; i < l; i++) {
            ls += p[k - i];
            if (i < s)
                ss += p[k - i];
        }
        lhs = ss * l;
        rhs = ls * s;
        r = lhs > rhs ? 1 : lhs < rhs ? -1 : 0;
        if (r == 0)
            continue;
        if (rel != 0 && r != rel && n < max) {
            out[n].tick = k;
            out[n].price = p[k];
            out[n].action = r;
            n++;
        }
        rel = r;
    }
    free(p);
    return n;
}

static void pw_cfg(struct mb *m, uint64_t seed, const char *ledger)
{
    mb_begin(m);
    msgpack_pack_map(&m->pk, 3);
    mb_str(m, "seed");
    msgpack_pack_uint64(&m->pk, seed);
    mb_str(m, "ledger");
    mb_str(m, ledger);
    mb_str(m, "interval_ms");
    msgpack_pack_uint64(&m->pk, 200);
}

static void run_ticks(struct inst *in, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        fire(in, 1);
}

Test(pricewatch, decisions_match_an_independent_model)
{
    struct decision want[512];
    size_t nwant;
    struct inst in;
    struct mb cfg;
    msgpack_unpacked u;
    int64_t pos = 0;

    pw_cfg(&cfg, 42, "book");
    cr_assert_eq(inst_open(&in, "pricewatch", "pw", cfg.sb.data,
                           cfg.sb.size),
                 0);
    start(&in);
    cr_expect_eq(timer_find(&in, 1)->due_ms, in.t.now_ms + 200);
    run_ticks(&in, 2000);
    nwant = model_decisions(42, 5, 20, 2000, want, 512);
    cr_assert_gt(nwant, 10, "the feed barely crosses; test is weak");
    cr_assert_eq(in.t.nsends, nwant);

    for (size_t i = 0; i < nwant; i++) {
        const struct ol_test_send *s = &in.t.sends[i];
        const msgpack_object *act;
        double sma, lma;

        cr_expect_str_eq(s->to, "book");
        unpack(&u, s->data, s->len);
        cr_expect_eq(u.data.via.map.size, 7);
        cr_expect_eq(get_u64(&u.data, "n"), i + 1);
        cr_expect_eq(get_u64(&u.data, "tick"), want[i].tick);
        cr_expect(fabs(get_f64(&u.data, "price") - want[i].price / 100.0) <
                      1e-9,
                  "decision %zu price", i);
        act = ol_mp_get(&u.data, "action");
        cr_expect(str_is(act, want[i].action > 0 ? "BUY" : "SELL"),
                  "decision %zu action", i);
        cr_expect(str_is(ol_mp_get(&u.data, "symbol"), "OUTL"));
        sma = get_f64(&u.data, "short_ma");
        lma = get_f64(&u.data, "long_ma");
        cr_expect(want[i].action > 0 ? sma > lma : sma < lma,
                  "decision %zu: %s with short %f long %f", i,
                  want[i].action > 0 ? "BUY" : "SELL", sma, lma);
        pos += want[i].action;
        msgpack_unpacked_destroy(&u);
    }

    state_of(&in, &u);
    cr_expect_eq(get_u64(&u.data, "tick"), 2000);
    cr_expect_eq(get_u64(&u.data, "decisions_sent"), nwant);
    cr_expect_eq(get_i64(&u.data, "position"), pos);
    cr_expect(str_is(ol_mp_get(&u.data, "last_action"),
                     want[nwant - 1].action > 0 ? "BUY" : "SELL"));
    cr_expect_eq(ol_mp_get(&u.data, "window_cents")->via.array.size, 20);
    msgpack_unpacked_destroy(&u);
    mb_end(&cfg);
    inst_close(&in);
}

static bool same_sends(const struct inst *a, size_t a_from,
                       const struct inst *b, size_t b_from, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct ol_test_send *x = &a->t.sends[a_from + i];
        const struct ol_test_send *y = &b->t.sends[b_from + i];
        if (strcmp(x->to, y->to) != 0 || x->len != y->len ||
            memcmp(x->data, y->data, x->len) != 0)
            return false;
    }
    return true;
}

Test(pricewatch, same_seed_same_decisions_other_seed_others)
{
    struct inst a, b, c;
    struct mb cfg, cfg7;

    pw_cfg(&cfg, 42, "ledger");
    pw_cfg(&cfg7, 7, "ledger");
    cr_assert_eq(inst_open(&a, "pricewatch", "a", cfg.sb.data, cfg.sb.size),
                 0);
    cr_assert_eq(inst_open(&b, "pricewatch", "b", cfg.sb.data, cfg.sb.size),
                 0);
    cr_assert_eq(inst_open(&c, "pricewatch", "c", cfg7.sb.data,
                           cfg7.sb.size),
                 0);
    start(&a);
    start(&b);
    start(&c);
    b.t.now_ms += 123456; /* wall clock must not matter */
    run_ticks(&a, 1000);
    run_ticks(&b, 1000);
    run_ticks(&c, 1000);
    cr_assert_gt(a.t.nsends, 0);
    cr_assert_eq(a.t.nsends, b.t.nsends);
    cr_expect(same_sends(&a, 0, &b, 0, a.t.nsends));
    cr_expect(a.t.state_len == b.t.state_len &&
              memcmp(a.t.state, b.t.state, a.t.state_len) == 0);
    cr_expect(a.t.nsends != c.t.nsends ||
                  !same_sends(&a, 0, &c, 0, a.t.nsends),
              "seed 7 gave the same decisions as seed 42");
    mb_end(&cfg);
    mb_end(&cfg7);
    inst_close(&a);
    inst_close(&b);
    inst_close(&c);
}

Test(pricewatch, resume_continues_the_uninterrupted_run)
{
    static const uint64_t cuts[] = {0, 1, 19, 20, 21, 137, 599, 1200};
    const uint64_t total = 1500;
    struct inst whole;
    struct mb cfg;

    pw_cfg(&cfg, 42, "ledger");
    cr_assert_eq(inst_open(&whole, "pricewatch", "pw", cfg.sb.data,
                           cfg.sb.size),
                 0);
    start(&whole);
    run_ticks(&whole, total);
    cr_assert_gt(whole.t.nsends, 0);

    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        struct inst first, second;
        size_t before;

        cr_assert_eq(inst_open(&first, "pricewatch", "pw", cfg.sb.data,
                               cfg.sb.size),
                     0);
        start(&first);
        run_ticks(&first, cuts[i]);
        before = first.t.nsends;
        cr_assert_eq(inst_reopen(&second, "pricewatch", "pw", cfg.sb.data,
                                 cfg.sb.size, first.t.state,
                                 first.t.state_len),
                     0, "restore at tick %" PRIu64, cuts[i]);
        resume(&second);
        cr_assert_not_null(timer_find(&second, 1));
        run_ticks(&second, total - cuts[i]);

        cr_expect(same_sends(&first, 0, &whole, 0, before),
                  "cut %" PRIu64 ": sends before the cut differ", cuts[i]);
        cr_expect_eq(before + second.t.nsends, whole.t.nsends,
                     "cut %" PRIu64 ": %zu + %zu decisions, want %zu",
                     cuts[i], before, second.t.nsends, whole.t.nsends);
        if (before + second.t.nsends == whole.t.nsends)
            cr_expect(same_sends(&second, 0, &whole, before,
                                 second.t.nsends),
                      "cut %" PRIu64 ": decisions after resume differ",
                      cuts[i]);
        cr_expect(second.t.state_len == whole.t.state_len &&
                      memcmp(second.t.state, whole.t.state,
                             whole.t.state_len) == 0,
                  "cut %" PRIu64 ": final state differs", cuts[i]);
        inst_close(&first);
        inst_close(&second);
    }
    mb_end(&cfg);
    inst_close(&whole);
}

Test(pricewatch, state_prefixes_and_junk_are_refused)
{
    struct inst in, other;
    struct mb cfg;

    pw_cfg(&cfg, 42, "ledger");
    cr_assert_eq(inst_open(&in, "pricewatch", "pw", cfg.sb.data,
                           cfg.sb.size),
                 0);
    start(&in);
    run_ticks(&in, 50);
    expect_prefixes_refused("pricewatch", cfg.sb.data, cfg.sb.size,
                            &in);
    cr_expect_eq(inst_reopen(&other, "pricewatch", "pw", cfg.sb.data,
                             cfg.sb.size, "\x81\xa4tick\x01", 7),
                 OL_AGENT_EMALFORMED);
    inst_close(&other);
    mb_end(&cfg);
    inst_close(&in);
}

Test(pricewatch, messages_are_ignored)
{
    struct inst in;

    cr_assert_eq(inst_open(&in, "pricewatch", "pw", NULL, 0), 0);
    start(&in);
    cr_expect_eq(deliver(&in, "@cli", "\x93\x01\x02\x03", 4), 0);
    cr_expect_eq(in.t.nsends, 0);
    inst_close(&in);
}

Test(pricewatch, bad_config_is_refused)
{
    struct {
        const char *key;
        int kind; /* 0: uint, 1: str, 2: negative int */
        uint64_t u;
        const char *s;
    } bad[] = {
        {"short", 0, 20, NULL},     /* short == long */
        {"short", 0, 0, NULL},
        {"long", 0, 1001, NULL},
        {"long", 0, 3, NULL},       /* long < short */
        {"short", 1, 0, "5"},
        {"seed", 2, 0, NULL},
        {"seed", 1, 0, "42"},
        {"interval_ms", 0, 0, NULL},
        {"ledger", 1, 0, ""},
        {"ledger", 0, 1, NULL},
        {"ledger", 1, 0,
         "a-name-that-is-far-too-long-to-be-an-agent-name-because-it-has-"
         "more-than-sixty-four-bytes"},
        {"symbol", 1, 0, "A-SYMBOL-OF-16-B"},
        {"symbol", 0, 5, NULL},
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct inst in;
        struct mb m;
        mb_begin(&m);
        msgpack_pack_map(&m.pk, 1);
        mb_str(&m, bad[i].key);
        if (bad[i].kind == 0)
            msgpack_pack_uint64(&m.pk, bad[i].u);
        else if (bad[i].kind == 1)
            mb_str(&m, bad[i].s);
        else
            msgpack_pack_int64(&m.pk, -1);
        cr_expect_eq(inst_open(&in, "pricewatch", "pw", m.sb.data,
                               m.sb.size),
                     OL_AGENT_EINVAL, "config %zu ('%s') accepted", i,
                     bad[i].key);
        cr_expect_geq(in.t.nlogs, 1);
        inst_close(&in);
        mb_end(&m);
    }
}

/* ---- ledger ----------------------------------------------------------- */

/* Delivers {n: n} (and a BUY/SELL at price when action is set). */
static void ledger_msg(struct inst *in, const char *from, uint64_t n,
                       const char *action, double price)
{
    struct mb m;

    mb_begin(&m);
    msgpack_pack_map(&m.pk, action ? 4 : 1);
    mb_str(&m, "n");
    msgpack_pack_uint64(&m.pk, n);
    if (action) {
        mb_str(&m, "action");
        mb_str(&m, action);
        mb_str(&m, "price");
        msgpack_pack_double(&m.pk, price);
        mb_str(&m, "tick");
        msgpack_pack_uint64(&m.pk, n * 10);
    }
    cr_assert_eq(deliver(in, from, m.sb.data, m.sb.size), 0);
    mb_end(&m);
}

struct book {
    uint64_t entries, dups, gaps, other, bad;
    int64_t position;
    double cash;
};

static struct book ledger_book(struct inst *in)
{
    msgpack_unpacked u;
    struct book b;

    state_of(in, &u);
    b.entries = get_u64(&u.data, "entries");
    b.dups = get_u64(&u.data, "dups");
    b.gaps = get_u64(&u.data, "gaps");
    b.other = get_u64(&u.data, "other");
    b.bad = get_u64(&u.data, "bad");
    b.position = get_i64(&u.data, "position");
    b.cash = get_f64(&u.data, "cash");
    msgpack_unpacked_destroy(&u);
    return b;
}

static uint64_t ledger_expect(struct inst *in, const char *sender)
{
    msgpack_unpacked u;
    const msgpack_object *e;
    uint64_t n;

    state_of(in, &u);
    e = ol_mp_get(&u.data, "expect");
    cr_assert_not_null(e);
    n = get_u64(e, sender);
    msgpack_unpacked_destroy(&u);
    return n;
}

Test(ledger, counts_dups_and_gaps_per_sender)
{
    struct inst in;
    struct book b;

    cr_assert_eq(inst_open(&in, "ledger", "ledger", NULL, 0), 0);
    start(&in);
    ledger_msg(&in, "a", 1, NULL, 0);
    ledger_msg(&in, "a", 2, NULL, 0);
    ledger_msg(&in, "a", 3, NULL, 0);
    b = ledger_book(&in);
    cr_expect_eq(b.entries, 3);
    cr_expect_eq(b.dups + b.gaps, 0);

    ledger_msg(&in, "a", 2, NULL, 0); /* redelivered */
    ledger_msg(&in, "a", 3, NULL, 0);
    b = ledger_book(&in);
    cr_expect_eq(b.entries, 3);
    cr_expect_eq(b.dups, 2);
    cr_expect_eq(ledger_expect(&in, "a"), 4);

    ledger_msg(&in, "a", 6, NULL, 0); /* 4 and 5 lost */
    b = ledger_book(&in);
    cr_expect_eq(b.entries, 4);
    cr_expect_eq(b.gaps, 1);
    cr_expect_eq(ledger_expect(&in, "a"), 7);
    ledger_msg(&in, "a", 4, NULL, 0); /* late: counted as a dup */
    ledger_msg(&in, "a", 7, NULL, 0);

    ledger_msg(&in, "b", 1, NULL, 0); /* senders are independent */
    ledger_msg(&in, "b", 2, NULL, 0);
    b = ledger_book(&in);
    cr_expect_eq(b.entries, 7);
    cr_expect_eq(b.dups, 3);
    cr_expect_eq(b.gaps, 1);
    cr_expect_eq(ledger_expect(&in, "a"), 8);
    cr_expect_eq(ledger_expect(&in, "b"), 3);
    cr_expect_eq(in.t.nsends, 0);
    inst_close(&in);
}

Test(ledger, messages_without_n_are_other_and_bad_n_is_bad)
{
    static const struct {
        const char *bytes;
        size_t len;
    } msgs[] = { /* four without n, then four with a bad n */
        B("\x80"),                     /* {} */
        B("\x81\xa4" "echo\x01"),      /* {"echo": 1} */
        B("\x93\x01\x02\x03"),         /* [1,2,3] */
        B("\xc0"),                     /* nil */
        B("\x81\xa1n\xa1" "1"),        /* {"n": "1"} */
        B("\x81\xa1n\x00"),            /* {"n": 0} */
        B("\x81\xa1n\xff"),            /* {"n": -1} */
        B("\x81\xa1n\xcb\x3f\xf0\0\0\0\0\0\0"), /* {"n": 1.0} */
    };
    struct inst in;
    struct book b;

    cr_assert_eq(inst_open(&in, "ledger", "ledger", NULL, 0), 0);
    start(&in);
    for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++)
        cr_expect_eq(deliver(&in, "x", msgs[i].bytes, msgs[i].len), 0,
                     "message %zu quarantined the ledger", i);
    b = ledger_book(&in);
    cr_expect_eq(b.other, 4);
    cr_expect_eq(b.bad, 4);
    cr_expect_eq(b.entries + b.dups + b.gaps, 0);
    /* Mistyped optional fields do not cost the entry. */
    cr_expect_eq(deliver(&in, "x", "\x83\xa1n\x01\xa6" "action\x07\xa5price"
                                   "\xa2hi", 21),
                 0);
    b = ledger_book(&in);
    cr_expect_eq(b.entries, 1);
    cr_expect_eq(b.position, 0);
    inst_close(&in);
}

Test(ledger, buys_and_sells_move_position_and_cash)
{
    struct inst in;
    struct book b;

    cr_assert_eq(inst_open(&in, "ledger", "ledger", NULL, 0), 0);
    start(&in);
    ledger_msg(&in, "pw", 1, "BUY", 100.25);
    ledger_msg(&in, "pw", 2, "SELL", 101.75);
    ledger_msg(&in, "pw", 3, "BUY", 99.5);
    ledger_msg(&in, "pw", 3, "BUY", 99.5); /* a dup must not trade */
    b = ledger_book(&in);
    cr_expect_eq(b.entries, 3);
    cr_expect_eq(b.dups, 1);
    cr_expect_eq(b.position, 1);
    cr_expect(fabs(b.cash - (-100.25 + 101.75 - 99.5)) < 1e-9, "cash %f",
              b.cash);
    inst_close(&in);
}

Test(ledger, keeps_the_last_16_entries)
{
    struct inst in;
    msgpack_unpacked u;
    const msgpack_object *r;

    cr_assert_eq(inst_open(&in, "ledger", "ledger", NULL, 0), 0);
    start(&in);
    for (uint64_t n = 1; n <= 20; n++)
        ledger_msg(&in, "pw", n, n % 2 ? "BUY" : "SELL", 50.0 + n);
    state_of(&in, &u);
    r = ol_mp_get(&u.data, "recent");
    cr_assert_not_null(r);
    cr_assert_eq(r->type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(r->via.array.size, 16);
    for (uint32_t i = 0; i < 16; i++) {
        const msgpack_object *e = &r->via.array.ptr[i];
        cr_expect_eq(get_u64(e, "n"), 5 + i);
        cr_expect(str_is(ol_mp_get(e, "from"), "pw"));
        cr_expect_eq(get_u64(e, "tick"), (5 + i) * 10);
        cr_expect(str_is(ol_mp_get(e, "action"), (5 + i) % 2 ? "BUY" : "SELL"));
        cr_expect_eq(get_f64(e, "price"), 55.0 + i);
        cr_expect_eq(ol_mp_get(e, "symbol")->type, MSGPACK_OBJECT_NIL);
    }
    msgpack_unpacked_destroy(&u);
    inst_close(&in);
}

Test(ledger, save_restore_round_trips)
{
    struct inst a, b;
    struct book bk;

    cr_assert_eq(inst_open(&a, "ledger", "ledger", NULL, 0), 0);
    start(&a);
    for (uint64_t n = 1; n <= 20; n++)
        ledger_msg(&a, "pw", n, n % 2 ? "BUY" : "SELL", 10.0 * n);
    ledger_msg(&a, "other", 1, NULL, 0);
    ledger_msg(&a, "other", 3, NULL, 0);
    ledger_msg(&a, "pw", 4, NULL, 0);
    cr_assert_eq(deliver(&a, "x", "\x80", 1), 0);

    cr_assert_eq(inst_reopen(&b, "ledger", "ledger", NULL, 0, a.t.state,
                             a.t.state_len),
                 0);
    inst_save(&b);
    cr_assert_eq(b.t.state_len, a.t.state_len);
    cr_expect_eq(memcmp(a.t.state, b.t.state, a.t.state_len), 0,
                 "restore + save changed the state");
    resume(&b);
    /* What was expected before is still expected. */
    ledger_msg(&b, "pw", 20, NULL, 0);
    ledger_msg(&b, "pw", 21, NULL, 0);
    ledger_msg(&b, "other", 4, NULL, 0);
    bk = ledger_book(&b);
    cr_expect_eq(bk.entries, 20 + 2 + 2);
    cr_expect_eq(bk.dups, 2);
    cr_expect_eq(bk.gaps, 1);
    cr_expect_eq(bk.other, 1);
    cr_expect_eq(bk.position, 0);
    expect_prefixes_refused("ledger", NULL, 0, &a);
    inst_close(&a);
    inst_close(&b);
}

/* pricewatch feeding the ledger: every decision lands once, and a resumed
 * pricewatch replaying the steps after its checkpoint only adds dups. */
Test(ledger, books_every_pricewatch_decision_exactly_once)
{
    struct inst pw, pw2, led;
    struct book bk;
    msgpack_unpacked u;
    size_t delivered = 0, replayed;
    int64_t pos;

    cr_assert_eq(inst_open(&pw, "pricewatch", "pw", NULL, 0), 0);
    cr_assert_eq(inst_open(&led, "ledger", "ledger", NULL, 0), 0);
    start(&pw);
    start(&led);
    run_ticks(&pw, 800);
    for (; delivered < pw.t.nsends; delivered++) {
        cr_assert_str_eq(pw.t.sends[delivered].to, "ledger");
        cr_assert_eq(deliver(&led, "pw", pw.t.sends[delivered].data,
                             pw.t.sends[delivered].len),
                     0);
    }
    /* The node dies after 800 ticks, having committed tick 700: pw2 resumes
     * from there and sends decisions 701..800 again. */
    {
        struct inst cp;
        cr_assert_eq(inst_open(&cp, "pricewatch", "pw", NULL, 0), 0);
        start(&cp);
        run_ticks(&cp, 700);
        cr_assert_eq(inst_reopen(&pw2, "pricewatch", "pw", NULL, 0,
                                 cp.t.state, cp.t.state_len),
                     0);
        inst_close(&cp);
    }
    resume(&pw2);
    run_ticks(&pw2, 400);
    for (size_t i = 0; i < pw2.t.nsends; i++)
        cr_assert_eq(deliver(&led, "pw", pw2.t.sends[i].data,
                             pw2.t.sends[i].len),
                     0);
    replayed = 0;
    /* Decisions of ticks 701..800 were sent twice. */
    for (size_t i = 0; i < pw.t.nsends; i++) {
        msgpack_unpacked m;
        unpack(&m, pw.t.sends[i].data, pw.t.sends[i].len);
        if (get_u64(&m.data, "tick") > 700)
            replayed++;
        msgpack_unpacked_destroy(&m);
    }

    state_of(&pw2, &u);
    pos = get_i64(&u.data, "position");
    bk = ledger_book(&led);
    cr_expect_eq(bk.entries, get_u64(&u.data, "decisions_sent"));
    cr_expect_eq(bk.gaps, 0);
    cr_expect_eq(bk.dups, replayed);
    cr_expect_eq(bk.position, pos);
    msgpack_unpacked_destroy(&u);
    inst_close(&pw);
    inst_close(&pw2);
    inst_close(&led);
}
