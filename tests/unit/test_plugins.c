/*
 * Tests for the in-tree agent plugins, driven the way outlastd drives them
 * but without a daemon: each test dlopen()s the built shared object from
 * $OL_BUILD_ROOT/agents/<kind>.so into the SDK's fake host
 * (outlast/agent_test.h) and delivers events by hand.  The fake host
 * records timers and sends so the tests can read them, and checks after
 * every step that save() wrote exactly one msgpack object within
 * OL_AGENT_STATE_MAX, as the real host does.  This file holds what every
 * plugin must do and the counter; test_plugins_pricewatch.c and
 * test_plugins_ledger.c hold the other two (the fixture: plugin_fx.h).
 */
#include "plugin_fx.h"

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

