/*
 * Tests for the pricewatch plugin in the SDK's fake host (see
 * test_plugins.c): its decisions against an independent model, seeds,
 * resume, and what it refuses.
 */
#include "plugin_fx.h"

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

