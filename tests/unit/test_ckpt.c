/* Unit tests for the checkpoint codec: encoding, decoding, the hash, and
 * hostile bytes.  Signatures are the seal's (test_seal.c). */
#include <criterion/criterion.h>
#include <sodium.h>
#include <string.h>

#include "record/ckpt.h"
#include "base/err.h"
#include "tests/support/sample.h"

static struct ol__key key;
static struct ol__ckpt ck;
static struct ol__buf env; /* the encoded body */
static uint8_t hash[OL_HASH_SIZE];

static void setup(void)
{
    cr_assert_eq(ol__key_generate(&key), 0);
    sample_ckpt_fill(&ck, &key, "ticker", 5);
    ol__buf_init(&env);
    cr_assert_eq(ol__ckpt_encode(&ck, &env), 0);
    ol__ckpt_hash(env.base, env.len, hash);
}

static void teardown(void)
{
    ol__ckpt_free(&ck);
    ol__buf_close(&env);
    ol__key_close(&key);
}

TestSuite(ckpt, .init = setup, .fini = teardown);

Test(ckpt, round_trips_every_field)
{
    struct ol__ckpt out;
    struct ol__buf again;
    uint8_t h[OL_HASH_SIZE];
    char err[OL_ERRMSG_SIZE];

    ol__buf_init(&again);
    cr_assert_eq(ol__ckpt_decode(env.base, env.len, &out, err), 0, "%s",
                 err);
    cr_assert_eq(ol__ckpt_encode(&out, &again), 0);
    ol__ckpt_hash(again.base, again.len, h);
    cr_assert_eq(memcmp(h, hash, OL_HASH_SIZE), 0, "a decoded checkpoint "
                 "encodes to other bytes");
    ol__buf_close(&again);
    cr_assert_str_eq(out.agent, "ticker");
    cr_assert_eq(out.epoch, 3);
    cr_assert_eq(out.seq, 5);
    cr_assert_eq(memcmp(out.prev_hash, ck.prev_hash, OL_HASH_SIZE), 0);
    cr_assert_eq(out.time_ms, ck.time_ms);
    cr_assert_str_eq(out.plugin.kind, "counter");
    cr_assert_str_eq(out.plugin.version, "1.0.0");
    cr_assert_eq(memcmp(out.plugin.so_hash, ck.plugin.so_hash, 32), 0);
    cr_assert_eq(memcmp(out.signer, key.pk, OL_PK_SIZE), 0);
    cr_assert_eq(out.state_len, ck.state_len);
    cr_assert_eq(memcmp(out.state, ck.state, ck.state_len), 0);
    cr_assert_eq(out.n_outbox, 2);
    cr_assert_str_eq(out.outbox[1].to, "other-agent");
    cr_assert_eq(out.outbox[1].len, ck.outbox[1].len);
    cr_assert_eq(out.n_timers, 1);
    cr_assert_eq(out.timers[0].id, 7);
    cr_assert_eq(out.timers[0].due_ms, 1700000001000);
    cr_assert_eq(out.n_acks, 1);
    cr_assert_str_eq(out.acks[0].from, "@cli");
    cr_assert_eq(out.acks[0].seq, 99);
    ol__ckpt_free(&out);
}

Test(ckpt, encoding_is_canonical)
{
    struct ol__buf a, b;

    ol__buf_init(&a);
    ol__buf_init(&b);
    cr_assert_eq(ol__ckpt_encode(&ck, &a), 0);
    cr_assert_eq(ol__ckpt_encode(&ck, &b), 0);
    cr_assert_eq(a.len, b.len);
    cr_assert_eq(memcmp(a.base, b.base, a.len), 0);
    ol__buf_close(&a);
    ol__buf_close(&b);
}

Test(ckpt, every_truncation_is_rejected)
{
    struct ol__ckpt out;
    char err[OL_ERRMSG_SIZE];

    for (size_t n = 0; n < env.len; n++) {
        int rv = ol__ckpt_decode(env.base, n, &out, err);

        cr_expect(rv == OL_EMALFORMED, "accepted a %zu-byte prefix (rv %d)",
                  n, rv);
    }
}

Test(ckpt, every_bit_flip_changes_the_hash)
{
    uint8_t h[OL_HASH_SIZE];

    /* A body may still decode after a flip (a flipped state byte is still
     * msgpack); what keeps it out is that its hash is in no seal. */
    for (size_t i = 0; i < env.len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            env.base[i] ^= (uint8_t)(1 << bit);
            ol__ckpt_hash(env.base, env.len, h);
            env.base[i] ^= (uint8_t)(1 << bit);
            cr_expect_neq(memcmp(h, hash, OL_HASH_SIZE), 0,
                          "a flip of bit %d of byte %zu keeps the hash", bit,
                          i);
        }
    }
}

Test(ckpt, trailing_bytes_are_rejected)
{
    struct ol__ckpt out;
    char err[OL_ERRMSG_SIZE];

    cr_assert_eq(ol__buf_append(&env, "x", 1), 0);
    cr_assert_eq(ol__ckpt_decode(env.base, env.len, &out, err),
                 OL_EMALFORMED);
}

Test(ckpt, decode_names_the_bad_field)
{
    struct ol__buf body;
    struct ol__ckpt out;
    char err[OL_ERRMSG_SIZE];

    free(ck.agent);
    ck.agent = strdup("bad name!");
    ol__buf_init(&body);
    cr_assert_eq(ol__ckpt_encode(&ck, &body), 0);
    cr_assert_eq(ol__ckpt_decode(body.base, body.len, &out, err),
                 OL_EMALFORMED);
    cr_assert(strstr(err, "'agent'") != NULL, "%s", err);
    ol__buf_close(&body);
}

Test(ckpt, state_must_be_msgpack)
{
    struct ol__buf body;
    struct ol__ckpt out;
    char err[OL_ERRMSG_SIZE];

    ck.state[0] = 0xc1;
    ol__buf_init(&body);
    cr_assert_eq(ol__ckpt_encode(&ck, &body), 0);
    cr_assert_eq(ol__ckpt_decode(body.base, body.len, &out, err),
                 OL_EMALFORMED);
    cr_assert(strstr(err, "'state'") != NULL, "%s", err);
    ol__buf_close(&body);
}

Test(ckpt, names)
{
    cr_assert(ol__name_valid("ticker"));
    cr_assert(ol__name_valid("a.b_c-1"));
    cr_assert(!ol__name_valid(""));
    cr_assert(!ol__name_valid("-x"));
    cr_assert(!ol__name_valid(".x"));
    cr_assert(!ol__name_valid("a/b"));
    cr_assert(!ol__name_valid("@cli"));
    cr_assert(!ol__name_valid(
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
}

Test(ckpt, meta_decode_skips_only_the_state)
{
    struct ol__ckpt out;
    char err[OL_ERRMSG_SIZE];

    cr_assert_eq(ol__ckpt_decode_meta(env.base, env.len, &out, err), 0, "%s",
                 err);
    cr_expect_null(out.state);
    cr_expect_eq(out.state_len, ck.state_len);
    cr_expect_eq(out.seq, 5);
    cr_expect_eq(out.n_outbox, 2);
    cr_expect_eq(out.n_acks, 1);
    ol__ckpt_free(&out);
    for (size_t n = 0; n < env.len; n++)
        cr_expect_eq(ol__ckpt_decode_meta(env.base, n, &out, err),
                     OL_EMALFORMED, "accepted a %zu-byte prefix", n);
}
