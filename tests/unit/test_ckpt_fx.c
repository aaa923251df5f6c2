/* Unit tests for a checkpoint's effects (record/ckpt_fx.c): the round
 * trip, the 13-field bodies that must keep their bytes, hostile effect
 * records refused with the field named, the feature level, and the
 * effect key. */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "record/ckpt.h"
#include "record/cmd.h"
#include "tests/support/sample.h"

static struct ol__key key;
static struct ol__ckpt ck;

static uint8_t *dup_bytes(const void *p, uint32_t n)
{
    uint8_t *q = malloc(n ? n : 1);

    cr_assert_not_null(q);
    memcpy(q, p, n);
    return q;
}

/* ck (seq 5) with open effects (3,0) and (5,0), and the outcome of
 * (4,1). */
static void setup(void)
{
    static const uint8_t payload[] = {0x81, 0xa2, 'q', 't', 0x07};

    ol__cmd_set_level(OL_FEATURE_LEVEL);
    cr_assert_eq(ol__key_generate(&key), 0);
    sample_ckpt_fill(&ck, &key, "ticker", 5);
    ck.n_effects = 2;
    ck.effects = calloc(2, sizeof *ck.effects);
    for (uint32_t i = 0; i < 2; i++) {
        struct ol__intent *e = &ck.effects[i];

        e->id = 100 + i;
        e->kind = strdup(i ? "order" : "note");
        e->payload = dup_bytes(payload, sizeof payload);
        e->len = sizeof payload;
        e->seq = i ? 5 : 3;
        e->idx = 0;
        ol__effect_key("ticker", e->seq, 0, ck.prev_hash, e->key);
    }
    ck.n_outcomes = 1;
    ck.outcomes = calloc(1, sizeof *ck.outcomes);
    ck.outcomes[0].seq = 4;
    ck.outcomes[0].idx = 1;
    ck.outcomes[0].status = OL_EFFECT_FAILED;
    ck.outcomes[0].attempts = 3;
    ck.outcomes[0].result = dup_bytes("refused", 7);
    ck.outcomes[0].len = 7;
}

static void teardown(void)
{
    ol__cmd_set_level(OL_FEATURE_LEVEL);
    ol__ckpt_free(&ck);
    ol__key_close(&key);
}

TestSuite(ckpt_fx, .init = setup, .fini = teardown);

static void encode(const struct ol__ckpt *c, struct ol__buf *b)
{
    ol__buf_init(b);
    cr_assert_eq(ol__ckpt_encode(c, b), 0);
}

/* Encode ck and expect its decode to fail naming `field`. */
static void refused(const char *field)
{
    struct ol__ckpt out;
    struct ol__buf b;
    char err[OL_ERRMSG_SIZE] = "", want[64];
    int rv;

    encode(&ck, &b);
    rv = ol__ckpt_decode(b.base, b.len, &out, err);
    cr_assert_eq(rv, OL_EMALFORMED, "decoded (rv %d); wanted '%s' refused",
                 rv, field);
    snprintf(want, sizeof want, "'%s'", field);
    cr_expect_not_null(strstr(err, want), "'%s' does not name %s", err, want);
    rv = ol__ckpt_decode_meta(b.base, b.len, &out, err);
    cr_expect_eq(rv, OL_EMALFORMED, "the meta decode took it");
    ol__buf_close(&b);
}

Test(ckpt_fx, round_trips_effects_and_outcomes)
{
    struct ol__ckpt out;
    struct ol__buf a, again;
    char err[OL_ERRMSG_SIZE];

    encode(&ck, &a);
    cr_assert_eq(a.base[0], 0x90 | OL_CKPT_FIELDS_FX, "not 15 fields");
    cr_assert_eq(ol__ckpt_decode(a.base, a.len, &out, err), 0, "%s", err);
    cr_assert_eq(out.n_effects, 2);
    for (uint32_t i = 0; i < 2; i++) {
        cr_expect_eq(out.effects[i].id, ck.effects[i].id);
        cr_expect_str_eq(out.effects[i].kind, ck.effects[i].kind);
        cr_expect_eq(out.effects[i].len, ck.effects[i].len);
        cr_expect_eq(memcmp(out.effects[i].payload, ck.effects[i].payload,
                            ck.effects[i].len),
                     0);
        cr_expect_eq(out.effects[i].seq, ck.effects[i].seq);
        cr_expect_eq(out.effects[i].idx, ck.effects[i].idx);
        cr_expect_eq(memcmp(out.effects[i].key, ck.effects[i].key,
                            OL_EFFECT_KEY_SIZE),
                     0);
    }
    cr_assert_eq(out.n_outcomes, 1);
    cr_expect_eq(out.outcomes[0].seq, 4);
    cr_expect_eq(out.outcomes[0].idx, 1);
    cr_expect_eq(out.outcomes[0].status, OL_EFFECT_FAILED);
    cr_expect_eq(out.outcomes[0].attempts, 3);
    cr_expect_eq(out.outcomes[0].len, 7);
    cr_expect_eq(memcmp(out.outcomes[0].result, "refused", 7), 0);
    encode(&out, &again);
    cr_assert_eq(again.len, a.len);
    cr_assert_eq(memcmp(again.base, a.base, a.len), 0,
                 "a decoded checkpoint encodes to other bytes");
    ol__ckpt_free(&out);
    /* The meta decode reads the effects too. */
    cr_assert_eq(ol__ckpt_decode_meta(a.base, a.len, &out, err), 0, "%s",
                 err);
    cr_expect_eq(out.n_effects, 2);
    cr_expect_eq(out.n_outcomes, 1);
    cr_expect_null(out.state);
    ol__ckpt_free(&out);
    ol__buf_close(&a);
    ol__buf_close(&again);
}

Test(ckpt_fx, only_outcomes_or_only_effects_round_trip)
{
    struct ol__ckpt out;
    struct ol__buf a;
    char err[OL_ERRMSG_SIZE];

    ck.n_effects = 0; /* free() by count: keep the array for teardown */
    encode(&ck, &a);
    ck.n_effects = 2;
    cr_assert_eq(a.base[0], 0x90 | OL_CKPT_FIELDS_FX);
    cr_assert_eq(ol__ckpt_decode(a.base, a.len, &out, err), 0, "%s", err);
    cr_expect_eq(out.n_effects, 0);
    cr_expect_eq(out.n_outcomes, 1);
    ol__ckpt_free(&out);
    ol__buf_close(&a);
}

/* The body of a fixed checkpoint without effects, hashed.  The value was
 * computed once with the codec as it was before effects existed (13
 * fields): a body without effects must keep those exact bytes. */
Test(ckpt_fx, a_body_without_effects_keeps_its_old_bytes)
{
    static const char golden[] =
        "bbdd50f7f6458b6ffbd1658ed4060e875fda9db861237f829f83236284a357be";
    struct ol__ckpt plain, out;
    struct ol__buf b;
    uint8_t h[OL_HASH_SIZE];
    char hex[2 * OL_HASH_SIZE + 1], err[OL_ERRMSG_SIZE];

    sample_ckpt_fill(&plain, &key, "ticker", 5);
    memset(plain.signer, 0x11, OL_PK_SIZE);
    encode(&plain, &b);
    cr_assert_eq(b.base[0], 0x90 | OL_CKPT_FIELDS, "not 13 fields");
    ol__ckpt_hash(b.base, b.len, h);
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    cr_assert_str_eq(hex, golden, "the bytes of a body without effects "
                                  "changed");
    /* Decoded at a level without effects too. */
    ol__cmd_set_level(3);
    cr_assert_eq(ol__ckpt_decode(b.base, b.len, &out, err), 0, "%s", err);
    cr_expect_eq(out.n_effects, 0);
    cr_expect_eq(out.n_outcomes, 0);
    ol__ckpt_free(&out);
    ol__ckpt_free(&plain);
    ol__buf_close(&b);
}

Test(ckpt_fx, fifteen_fields_with_both_lists_empty_are_refused)
{
    struct ol__ckpt plain, out;
    struct ol__buf b;
    char err[OL_ERRMSG_SIZE] = "";

    sample_ckpt_fill(&plain, &key, "ticker", 5);
    encode(&plain, &b);
    cr_assert_eq(b.base[0], 0x90 | OL_CKPT_FIELDS);
    b.base[0] = 0x90 | OL_CKPT_FIELDS_FX;
    cr_assert_eq(ol__buf_append(&b, "\x90\x90", 2), 0);
    cr_assert_eq(ol__ckpt_decode(b.base, b.len, &out, err), OL_EMALFORMED,
                 "a second encoding of a body without effects was taken");
    cr_expect_not_null(strstr(err, "'effects'"), "%s", err);
    ol__ckpt_free(&plain);
    ol__buf_close(&b);
}

Test(ckpt_fx, fifteen_fields_are_refused_below_level_4)
{
    struct ol__ckpt out;
    struct ol__buf b;
    char err[OL_ERRMSG_SIZE] = "";

    encode(&ck, &b);
    ol__cmd_set_level(3);
    cr_assert_eq(ol__ckpt_decode(b.base, b.len, &out, err), OL_EMALFORMED,
                 "a node held at level 3 read effects");
    cr_expect_not_null(strstr(err, "'record'"), "%s", err);
    ol__cmd_set_level(OL_CKPT_FX_LEVEL);
    cr_assert_eq(ol__ckpt_decode(b.base, b.len, &out, err), 0, "%s", err);
    ol__ckpt_free(&out);
    ol__buf_close(&b);
}

Test(ckpt_fx, an_intent_after_its_checkpoint_is_refused)
{
    ck.effects[0].seq = 6;
    refused("effect seq");
}

Test(ckpt_fx, an_intent_of_seq_0_is_refused)
{
    ck.effects[0].seq = 0;
    refused("effect seq");
}

Test(ckpt_fx, a_duplicate_intent_is_refused)
{
    ck.effects[0].seq = 5;
    refused("effect index");
}

Test(ckpt_fx, a_bad_kind_is_refused)
{
    free(ck.effects[1].kind);
    ck.effects[1].kind = strdup("Order!");
    refused("effect kind");
    free(ck.effects[1].kind);
    ck.effects[1].kind = strdup("");
    refused("effect kind");
    free(ck.effects[1].kind);
    ck.effects[1].kind = malloc(OL_AGENT_KIND_MAX + 2);
    memset(ck.effects[1].kind, 'k', OL_AGENT_KIND_MAX + 1);
    ck.effects[1].kind[OL_AGENT_KIND_MAX + 1] = '\0';
    refused("effect kind");
}

Test(ckpt_fx, a_payload_that_is_not_msgpack_is_refused)
{
    ck.effects[0].payload[0] = 0xc1; /* never used */
    refused("effect payload");
    ck.effects[0].len = 0;
    refused("effect payload");
}

Test(ckpt_fx, an_oversized_payload_is_refused)
{
    uint32_t n = OL_AGENT_EFFECT_MAX + 1;
    uint8_t *p = malloc(n);

    /* One msgpack bin object of n bytes in all. */
    p[0] = 0xc6;
    p[1] = (uint8_t)((n - 5) >> 24);
    p[2] = (uint8_t)((n - 5) >> 16);
    p[3] = (uint8_t)((n - 5) >> 8);
    p[4] = (uint8_t)(n - 5);
    memset(p + 5, 0, n - 5);
    free(ck.effects[0].payload);
    ck.effects[0].payload = p;
    ck.effects[0].len = n;
    refused("effect payload");
}

Test(ckpt_fx, an_outcome_of_an_effect_still_open_is_refused)
{
    ck.outcomes[0].seq = 3;
    ck.outcomes[0].idx = 0;
    refused("outcome index");
}

Test(ckpt_fx, an_outcome_of_a_later_effect_is_refused)
{
    ck.outcomes[0].seq = 5; /* effects of seq 5 have no outcome yet */
    ck.outcomes[0].idx = 3;
    refused("outcome seq");
    ck.outcomes[0].seq = 0;
    refused("outcome seq");
}

Test(ckpt_fx, a_bad_status_is_refused)
{
    ck.outcomes[0].status = OL_EFFECT_RETRY;
    refused("outcome status");
    ck.outcomes[0].status = 9;
    refused("outcome status");
}

Test(ckpt_fx, a_duplicate_outcome_is_refused)
{
    ck.outcomes = realloc(ck.outcomes, 2 * sizeof *ck.outcomes);
    ck.outcomes[1] = ck.outcomes[0];
    ck.outcomes[1].result = dup_bytes("ok", 2);
    ck.outcomes[1].len = 2;
    ck.n_outcomes = 2;
    refused("outcome");
}

Test(ckpt_fx, every_truncation_of_an_effect_body_is_refused)
{
    struct ol__ckpt out;
    struct ol__buf b;
    char err[OL_ERRMSG_SIZE];

    encode(&ck, &b);
    for (size_t n = 0; n < b.len; n++)
        cr_expect_eq(ol__ckpt_decode(b.base, n, &out, err), OL_EMALFORMED,
                     "accepted a %zu-byte prefix", n);
    ol__buf_close(&b);
}

/* ---- the key ---- */

static void key_hex(const char *agent, uint64_t seq, uint32_t idx,
                    uint8_t ph_byte, char hex[2 * OL_EFFECT_KEY_SIZE + 1])
{
    uint8_t ph[OL_HASH_SIZE], k[OL_EFFECT_KEY_SIZE];

    memset(ph, ph_byte, sizeof ph);
    ol__effect_key(agent, seq, idx, ph, k);
    sodium_bin2hex(hex, 2 * OL_EFFECT_KEY_SIZE + 1, k, sizeof k);
}

Test(ckpt_fx, the_key_is_stable_and_pinned)
{
    char a[33], b[33];

    key_hex("keeper", 7, 2, 0x33, a);
    key_hex("keeper", 7, 2, 0x33, b);
    cr_assert_str_eq(a, b);
    cr_assert_eq(strlen(a), OL_AGENT_KEY_LEN);
    /* Computed once, outside the C code (Python's hashlib.blake2b with
     * digest_size 16 over "outlast effect key 1\0", "keeper\0", seq and
     * index big-endian (8 + 4 bytes) and the prev_hash): every node and
     * every build must derive the same. */
    cr_assert_str_eq(a, "20b2b39e3055633e56eb2997912c85fd",
                     "the effect key derivation changed");
}

Test(ckpt_fx, the_key_changes_with_each_input)
{
    char base[33], k[33];

    key_hex("keeper", 7, 2, 0x33, base);
    key_hex("keeper2", 7, 2, 0x33, k);
    cr_expect_str_neq(k, base, "agent");
    key_hex("keeper", 8, 2, 0x33, k);
    cr_expect_str_neq(k, base, "seq");
    key_hex("keeper", 7, 3, 0x33, k);
    cr_expect_str_neq(k, base, "index");
    key_hex("keeper", 7, 2, 0x34, k);
    cr_expect_str_neq(k, base, "prev_hash");
    /* Names are length-delimited: ("a", seq) and ("", ...) differ too. */
    key_hex("keepe", 7, 2, 0x33, k);
    cr_expect_str_neq(k, base, "agent prefix");
}
