/*
 * Tests for the ledger plugin in the SDK's fake host (see test_plugins.c):
 * per-sender counting of duplicates and gaps, positions, its bounded
 * journal, save/restore, and booking every pricewatch decision once.
 */
#include "plugin_fx.h"

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
