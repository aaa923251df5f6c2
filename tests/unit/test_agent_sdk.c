/*
 * Tests for the plugin SDK's helpers, as a plugin author uses them: the
 * msgpack readers of outlast/agent_util.h, and the fake host of
 * outlast/agent_test.h driving a plugin linked into this file (echo, below)
 * and the in-tree agents dlopen()ed from $OL_BUILD_ROOT/agents.  Built with
 * the SDK headers and msgpack only, like an out-of-tree test.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <outlast/agent.h>
#include <outlast/agent_test.h>
#include <outlast/agent_util.h>

/* ---- msgpack builders --------------------------------------------------- */

struct mb {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

static void mb_begin(struct mb *m)
{
    msgpack_sbuffer_init(&m->sb);
    msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

static void mb_end(struct mb *m)
{
    msgpack_sbuffer_destroy(&m->sb);
}

/* {key: u} */
static void mb_kv_uint(struct mb *m, const char *key, uint64_t u)
{
    mb_begin(m);
    msgpack_pack_map(&m->pk, 1);
    ol_mp_pack_str(&m->pk, key);
    msgpack_pack_uint64(&m->pk, u);
}

/* The unsigned field `key` of the last saved state. */
static uint64_t state_uint(const struct ol_test *t, const char *key)
{
    msgpack_unpacked u;
    uint64_t v = 0;

    cr_assert_eq(ol_test_state(t, &u), 0, "state is not msgpack");
    cr_assert(ol_mp_uint(ol_mp_get(&u.data, key), &v),
              "state has no uint '%s'", key);
    msgpack_unpacked_destroy(&u);
    return v;
}

static int64_t state_int(const struct ol_test *t, const char *key)
{
    msgpack_unpacked u;
    int64_t v = 0;

    cr_assert_eq(ol_test_state(t, &u), 0, "state is not msgpack");
    cr_assert(ol_mp_int(ol_mp_get(&u.data, key), &v),
              "state has no int '%s'", key);
    msgpack_unpacked_destroy(&u);
    return v;
}

/* ---- agent_util.h -------------------------------------------------------- */

Test(agent_util, unpack_takes_exactly_one_object)
{
    msgpack_unpacked u;

    cr_expect_eq(ol_mp_unpack(&u, "\x81\xa1" "a\x01", 4), 0);
    msgpack_unpacked_destroy(&u);
    cr_expect_eq(ol_mp_unpack(&u, "", 0), OL_AGENT_EMALFORMED, "empty");
    cr_expect_eq(ol_mp_unpack(&u, "\x81\xa1" "a", 3), OL_AGENT_EMALFORMED,
                 "truncated");
    cr_expect_eq(ol_mp_unpack(&u, "\x01\x02", 2), OL_AGENT_EMALFORMED,
                 "trailing bytes");
    cr_expect_eq(ol_mp_unpack(&u, "\xc1", 1), OL_AGENT_EMALFORMED,
                 "never-used byte");
    cr_expect_eq(ol_mp_unpack(&u, NULL, 0), OL_AGENT_EMALFORMED, "NULL");
}

Test(agent_util, get_finds_str_keys_only)
{
    /* {"a": 1, 2: 3, "b": -4} */
    msgpack_unpacked u;
    uint64_t a = 0;
    int64_t b = 0;

    cr_assert_eq(ol_mp_unpack(&u, "\x83\xa1" "a\x01\x02\x03\xa1" "b\xfc",
                              9), 0);
    cr_expect(ol_mp_uint(ol_mp_get(&u.data, "a"), &a) && a == 1);
    cr_expect(ol_mp_int(ol_mp_get(&u.data, "b"), &b) && b == -4);
    cr_expect_null(ol_mp_get(&u.data, "c"));
    cr_expect_null(ol_mp_get(&u.data.via.map.ptr[0].val, "a"), "not a map");
    cr_expect_null(ol_mp_get(NULL, "a"));
    msgpack_unpacked_destroy(&u);
}

Test(agent_util, readers_check_types_and_range)
{
    /* [-1, 2^64-1, true, 1.5, "x", nil] */
    static const char bytes[] = "\x96\xff\xcf\xff\xff\xff\xff\xff\xff\xff"
                                "\xff\xc3\xcb\x3f\xf8\0\0\0\0\0\0\xa1x\xc0";
    const msgpack_object *o;
    msgpack_unpacked u;
    uint64_t uv = 7;
    int64_t iv = 7;
    double d = 0;
    bool b = false;

    cr_assert_eq(ol_mp_unpack(&u, bytes, sizeof(bytes) - 1), 0);
    o = u.data.via.array.ptr;
    cr_expect(!ol_mp_uint(&o[0], &uv) && uv == 7, "-1 read as uint");
    cr_expect(ol_mp_int(&o[0], &iv) && iv == -1);
    cr_expect(ol_mp_uint(&o[1], &uv) && uv == UINT64_MAX);
    iv = 7;
    cr_expect(!ol_mp_int(&o[1], &iv) && iv == 7, "2^64-1 read as int64");
    cr_expect(ol_mp_bool(&o[2], &b) && b);
    cr_expect(!ol_mp_bool(&o[0], &b), "an int read as bool");
    cr_expect(ol_mp_double(&o[3], &d) && d == 1.5);
    cr_expect(ol_mp_double(&o[0], &d) && d == -1.0);
    cr_expect(!ol_mp_double(&o[4], &d), "a str read as a number");
    cr_expect(!ol_mp_uint(&o[5], &uv) && !ol_mp_int(NULL, &iv));
    cr_expect(ol_mp_str_eq(&o[4], "x") && !ol_mp_str_eq(&o[4], "xy"));
    msgpack_unpacked_destroy(&u);
}

Test(agent_util, str_never_truncates)
{
    /* ["abc", "a\0b", 5] */
    msgpack_unpacked u;
    const msgpack_object *o;
    char out[4];

    cr_assert_eq(ol_mp_unpack(&u, "\x93\xa3" "abc\xa3" "a\0b\x05", 10), 0);
    o = u.data.via.array.ptr;
    cr_expect(ol_mp_str(&o[0], out, sizeof(out)));
    cr_expect_str_eq(out, "abc");
    strcpy(out, "zz");
    cr_expect(!ol_mp_str(&o[0], out, 3), "3 bytes fit in 3 with the NUL");
    cr_expect_str_eq(out, "zz", "a refused read wrote to out");
    cr_expect(!ol_mp_str(&o[1], out, sizeof(out)), "NUL inside accepted");
    cr_expect(!ol_mp_str(&o[2], out, sizeof(out)), "an int read as str");
    msgpack_unpacked_destroy(&u);
}

/* ---- echo: a plugin linked into this test ------------------------------ */

/* Config {fail: str} makes open() fail with that text.  A MESSAGE is sent
 * back to its sender; START arms timer 1 at 100 ms and starts work 9 that
 * doubles `n`; TIMER re-arms itself.  State: {n: uint, timers: uint}. */

static const struct ol_host *echo_host;
static int echo_closes;

struct echo {
    uint64_t n, timers;
};

static int echo_open(struct ol_agent *a, const void *cfg, size_t len,
                     void **self)
{
    msgpack_unpacked u;
    char why[32];

    if (ol_mp_unpack(&u, cfg, len) != 0)
        return OL_AGENT_EINVAL;
    if (ol_mp_str(ol_mp_get(&u.data, "fail"), why, sizeof(why))) {
        msgpack_unpacked_destroy(&u);
        echo_host->error(a, "told to fail: %s", why);
        return OL_AGENT_EINVAL;
    }
    msgpack_unpacked_destroy(&u);
    *self = calloc(1, sizeof(struct echo));
    return *self ? 0 : OL_AGENT_ENOMEM;
}

static int echo_restore(void *self, struct ol_agent *a, const void *st,
                        size_t len)
{
    struct echo *e = self;
    msgpack_unpacked u;
    bool ok;

    if (ol_mp_unpack(&u, st, len) != 0)
        return OL_AGENT_EMALFORMED;
    ok = ol_mp_uint(ol_mp_get(&u.data, "n"), &e->n) &&
         ol_mp_uint(ol_mp_get(&u.data, "timers"), &e->timers);
    msgpack_unpacked_destroy(&u);
    return ok ? 0 : OL_AGENT_EMALFORMED;
}

static void echo_double(void *arg)
{
    *(uint64_t *)arg *= 2;
}

static int echo_handle(void *self, struct ol_agent *a,
                       const struct ol_event *ev)
{
    struct echo *e = self;

    switch (ev->type) {
    case OL_EVENT_START:
        e->n = 21;
        if (echo_host->timer_after(a, 1, 100) != 0)
            return OL_AGENT_EINVAL;
        return echo_host->work(a, 9, echo_double, &e->n);
    case OL_EVENT_TIMER:
        e->timers++;
        return echo_host->timer_after(a, 1, 100);
    case OL_EVENT_MESSAGE:
        return echo_host->send(a, ev->from, ev->data, ev->len);
    default:
        return 0;
    }
}

static int echo_save(void *self, struct ol_agent *a, const struct ol_sink *out)
{
    struct echo *e = self;
    msgpack_packer pk;

    ol_mp_packer_init(&pk, out);
    return msgpack_pack_map(&pk, 2) || ol_mp_pack_str(&pk, "n") ||
           msgpack_pack_uint64(&pk, e->n) || ol_mp_pack_str(&pk, "timers") ||
           msgpack_pack_uint64(&pk, e->timers);
}

static void echo_close(void *self)
{
    echo_closes++;
    free(self);
}

static const struct ol_agent_vtable echo_vt = {
    .abi = OL_AGENT_ABI,
    .size = sizeof(struct ol_agent_vtable),
    .kind = "echo",
    .version = "1",
    .open = echo_open,
    .restore = echo_restore,
    .handle = echo_handle,
    .save = echo_save,
    .close = echo_close,
};

static int echo_entry(const struct ol_host *host,
                      const struct ol_agent_vtable **out)
{
    if (host->abi != OL_AGENT_ABI)
        return OL_AGENT_EINVAL;
    echo_host = host;
    *out = &echo_vt;
    return 0;
}

/* ---- agent_test.h with echo --------------------------------------------- */

Test(agent_test, failed_open_is_not_closed_and_says_why)
{
    struct ol_test t;

    echo_closes = 0;
    cr_assert_eq(ol_test_init(&t, echo_entry), 0);
    cr_expect_eq(ol_test_open(&t, "e", "\x81\xa4" "fail\xa3" "cfg", 10),
                 OL_AGENT_EINVAL);
    cr_expect_str_eq(t.error, "told to fail: cfg");
    cr_expect_eq(ol_test_start(&t), OL_AGENT_ESTATE, "event to no agent");
    ol_test_close(&t);
    cr_expect_eq(echo_closes, 0, "close() after a failed open()");
}

Test(agent_test, messages_timers_and_work)
{
    struct ol_test t;
    unsigned fired = 0;

    cr_assert_eq(ol_test_init(&t, echo_entry), 0);
    cr_assert_eq(ol_test_open(&t, "e", NULL, 0), 0);
    cr_assert_eq(ol_test_start(&t), 0, "%s", t.errmsg);
    cr_expect_eq(t.nwork, 1);
    cr_expect_eq(state_uint(&t, "n"), 21, "work ran before its event");
    cr_assert_eq(ol_test_work(&t, 0), 0);
    cr_expect_eq(state_uint(&t, "n"), 42);
    cr_expect_eq(ol_test_work(&t, 0), OL_AGENT_ENOTFOUND);

    cr_expect_eq(ol_test_advance_n(&t, 1050, 1000, &fired), 0);
    cr_expect_eq(fired, 10);
    cr_expect_eq(state_uint(&t, "timers"), 10);
    cr_expect_eq(ol_test_timer_find(&t, 1)->due_ms, t.now_ms + 50);

    cr_assert_eq(ol_test_message(&t, "peer", "\xa2hi", 3), 0);
    cr_assert_eq(t.nsends, 1);
    cr_expect_str_eq(ol_test_last_send(&t, "peer")->to, "peer");
    cr_expect_eq(memcmp(t.sends[0].data, "\xa2hi", 3), 0);
    cr_expect_eq(ol_test_message(&t, "peer", "\xa2h", 2),
                 OL_AGENT_EMALFORMED, "a bad send passed the fake host");
    ol_test_close(&t);
}

Test(agent_test, reopen_round_trips_the_state_and_keeps_timers)
{
    struct ol_test t;

    echo_closes = 0;
    cr_assert_eq(ol_test_init(&t, echo_entry), 0);
    cr_assert_eq(ol_test_open(&t, "e", NULL, 0), 0);
    cr_assert_eq(ol_test_start(&t), 0);
    cr_assert_eq(ol_test_work(&t, 0), 0);
    cr_assert_eq(ol_test_timer(&t, 1), 0);
    cr_assert_eq(ol_test_reopen(&t), 0, "%s", t.errmsg);
    cr_expect_eq(echo_closes, 1);
    cr_expect_eq(t.epoch, 2);
    cr_expect_eq(state_uint(&t, "n"), 42);
    cr_expect_eq(state_uint(&t, "timers"), 1);
    cr_expect_not_null(ol_test_timer_find(&t, 1), "timer lost on reopen");
    cr_expect_eq(ol_test_restore(&t, "\x80", 1), OL_AGENT_EMALFORMED);
    ol_test_close(&t);
    cr_expect_eq(echo_closes, 2);
}

Test(agent_test, fenced_work_does_not_run)
{
    struct ol_test t;

    cr_assert_eq(ol_test_init(&t, echo_entry), 0);
    cr_assert_eq(ol_test_open(&t, "e", NULL, 0), 0);
    cr_assert_eq(ol_test_start(&t), 0);
    cr_assert_eq(ol_test_work(&t, 1), 0);
    cr_expect_eq(state_uint(&t, "n"), 21);
    ol_test_close(&t);
}

Test(agent_test, version_macros_and_host_version_agree)
{
    char v[32];

    snprintf(v, sizeof(v), "%d.%d.%d", OL_VERSION_MAJOR, OL_VERSION_MINOR,
             OL_VERSION_PATCH);
    cr_expect_str_eq(v, OL_VERSION_STRING);
    cr_expect_eq(OL_VERSION_NUMBER, OL_VERSION_MAJOR * 10000 +
                                        OL_VERSION_MINOR * 100 +
                                        OL_VERSION_PATCH);
    cr_assert(OL_HOST_HAS(ol_test_host(), version));
    cr_expect_str_eq(ol_test_host()->version(), OL_VERSION_STRING);
}

/* ---- the in-tree agents ------------------------------------------------- */

static void load(struct ol_test *t, const char *kind, const void *cfg,
                 size_t len)
{
    const char *root = getenv("OL_BUILD_ROOT");
    char path[4096];

    cr_assert_not_null(root, "OL_BUILD_ROOT is not set");
    snprintf(path, sizeof(path), "%s/agents/%s.so", root, kind);
    cr_assert_eq(ol_test_load(t, path), 0, "%s", t->errmsg);
    cr_assert_eq(ol_test_open(t, kind, cfg, len), 0, "%s", t->errmsg);
    cr_assert_eq(ol_test_start(t), 0, "%s", t->errmsg);
}

Test(counter, ticks_survive_a_reopen)
{
    struct ol_test t;
    struct mb cfg;

    mb_kv_uint(&cfg, "interval_ms", 100);
    load(&t, "counter", cfg.sb.data, cfg.sb.size);
    cr_assert_eq(ol_test_advance(&t, 1000), 0, "%s", t.errmsg);
    cr_expect_eq(state_int(&t, "count"), 10);
    cr_assert_eq(ol_test_message(&t, "@cli", "\x81\xa3" "add\x05", 6), 0);
    cr_expect_eq(state_int(&t, "count"), 15);
    cr_assert_eq(ol_test_reopen(&t), 0, "%s", t.errmsg);
    cr_expect_eq(state_int(&t, "count"), 15);
    cr_assert_eq(ol_test_advance(&t, 100), 0);
    cr_expect_eq(state_int(&t, "count"), 16, "resumed counter stopped");
    ol_test_close(&t);
    mb_end(&cfg);
}

Test(counter, bad_config_is_refused_with_its_reason)
{
    const char *root = getenv("OL_BUILD_ROOT");
    struct ol_test t;
    struct mb cfg;
    char path[4096];

    cr_assert_not_null(root);
    snprintf(path, sizeof(path), "%s/agents/counter.so", root);
    cr_assert_eq(ol_test_load(&t, path), 0, "%s", t.errmsg);
    mb_kv_uint(&cfg, "interval_ms", 0);
    cr_expect_eq(ol_test_open(&t, "c", cfg.sb.data, cfg.sb.size),
                 OL_AGENT_EINVAL);
    cr_expect(strstr(t.error, "interval_ms") != NULL,
              "refused without saying why: '%s'", t.error);
    ol_test_close(&t);
    mb_end(&cfg);
}

/* A new config changes the interval from the next tick; one it cannot use
 * is logged and the old interval kept. */
Test(counter, a_config_event_changes_the_interval)
{
    struct ol_test t;
    struct mb cfg, next, bad;

    mb_kv_uint(&cfg, "interval_ms", 100);
    load(&t, "counter", cfg.sb.data, cfg.sb.size);
    cr_assert_eq(ol_test_advance(&t, 1000), 0, "%s", t.errmsg);
    cr_expect_eq(state_int(&t, "count"), 10);
    mb_kv_uint(&next, "interval_ms", 50);
    cr_assert_eq(ol_test_config(&t, next.sb.data, next.sb.size), 0, "%s",
                 t.errmsg);
    cr_assert_eq(ol_test_advance(&t, 1000), 0, "%s", t.errmsg);
    cr_expect_geq(state_int(&t, "count"), 28, "the new interval is not used");
    mb_kv_uint(&bad, "interval_ms", 0);
    cr_assert_eq(ol_test_config(&t, bad.sb.data, bad.sb.size), 0,
                 "a bad config quarantined the counter");
    cr_expect(ol_test_logged(&t, "config refused"), "no log line");
    ol_test_close(&t);
    mb_end(&cfg);
    mb_end(&next);
    mb_end(&bad);
}

Test(agent_test, load_names_what_is_missing)
{
    struct ol_test t;

    cr_expect_eq(ol_test_load(&t, "/nonexistent/x.so"), OL_AGENT_ENOTFOUND);
    cr_expect(strstr(t.errmsg, "dlopen") != NULL, "%s", t.errmsg);
    ol_test_close(&t);
}

/* Pricewatch decides from a seeded walk; every decision goes to its
 * ledger, numbered, and a reopened pricewatch goes on numbering. */
Test(pricewatch, decisions_go_to_the_ledger_numbered_across_a_reopen)
{
    struct ol_test t;
    struct mb cfg;
    uint64_t n = 0, sent;

    mb_begin(&cfg);
    msgpack_pack_map(&cfg.pk, 2);
    ol_mp_pack_str(&cfg.pk, "interval_ms");
    msgpack_pack_uint64(&cfg.pk, 10);
    ol_mp_pack_str(&cfg.pk, "ledger");
    ol_mp_pack_str(&cfg.pk, "book");
    load(&t, "pricewatch", cfg.sb.data, cfg.sb.size);
    cr_assert_eq(ol_test_advance(&t, 2000), 0, "%s", t.errmsg);
    sent = t.nsends;
    cr_assert_gt(sent, 0, "no decision in 200 ticks");
    cr_expect_eq(state_uint(&t, "decisions_sent"), sent);
    cr_assert_eq(ol_test_reopen(&t), 0, "%s", t.errmsg);
    cr_assert_eq(ol_test_advance(&t, 20000), 0);
    cr_assert_gt(t.nsends, sent, "no decision after the reopen");
    for (size_t i = 0; i < t.nsends; i++) {
        msgpack_unpacked u;

        cr_expect_str_eq(t.sends[i].to, "book");
        cr_assert_eq(ol_mp_unpack(&u, t.sends[i].data, t.sends[i].len), 0);
        cr_expect(ol_mp_uint(ol_mp_get(&u.data, "n"), &n) && n == i + 1,
                  "decision %zu numbered %" PRIu64, i, n);
        msgpack_unpacked_destroy(&u);
    }
    ol_test_close(&t);
    mb_end(&cfg);
}

Test(ledger, books_duplicates_and_gaps_across_a_reopen)
{
    struct ol_test t;
    struct mb m[4];
    const uint64_t ns[] = {1, 2, 2, 5};

    load(&t, "ledger", NULL, 0);
    for (size_t i = 0; i < 4; i++) {
        mb_kv_uint(&m[i], "n", ns[i]);
        if (i == 2)
            cr_assert_eq(ol_test_reopen(&t), 0, "%s", t.errmsg);
        cr_assert_eq(ol_test_message(&t, "pw", m[i].sb.data, m[i].sb.size),
                     0);
        mb_end(&m[i]);
    }
    cr_expect_eq(state_uint(&t, "entries"), 3);
    cr_expect_eq(state_uint(&t, "dups"), 1);
    cr_expect_eq(state_uint(&t, "gaps"), 1);
    cr_expect_eq(t.nsends, 0, "the ledger sent something");
    ol_test_close(&t);
}
