/* Unit tests for seals: batch signatures over checkpoint hashes. */
#include <criterion/criterion.h>
#include <string.h>

#include "record/seal.h"
#include "base/err.h"

static struct ol__key key;
static uint8_t hashes[3 * OL_HASH_SIZE];
static struct ol__buf body;
static uint8_t sig[OL_SIG_SIZE];

static void setup(void)
{
    cr_assert_eq(ol__key_generate(&key), 0);
    for (size_t i = 0; i < sizeof hashes; i++)
        hashes[i] = (uint8_t)i;
    ol__buf_init(&body);
    cr_assert_eq(ol__seal_make(&key, 1234, hashes, 3, &body, sig), 0);
}

static void teardown(void)
{
    ol__buf_close(&body);
    ol__key_close(&key);
}

TestSuite(seal, .init = setup, .fini = teardown);

Test(seal, verifies_and_lists_hashes)
{
    struct ol__seal s;

    cr_assert_eq(ol__seal_verify(body.base, body.len, sig, &s), 0);
    cr_assert_eq(s.n, 3);
    cr_assert_eq(s.time_ms, 1234);
    cr_assert_eq(memcmp(s.signer, key.pk, OL_PK_SIZE), 0);
    cr_assert_eq(memcmp(s.hashes, hashes, sizeof hashes), 0);
}

Test(seal, every_bit_flip_fails)
{
    struct ol__seal s;

    for (size_t i = 0; i < body.len; i++)
        for (int b = 0; b < 8; b++) {
            body.base[i] ^= (uint8_t)(1 << b);
            cr_expect_neq(ol__seal_verify(body.base, body.len, sig, &s), 0,
                          "byte %zu bit %d", i, b);
            body.base[i] ^= (uint8_t)(1 << b);
        }
    for (size_t i = 0; i < OL_SIG_SIZE; i++) {
        sig[i] ^= 1;
        cr_expect_eq(ol__seal_verify(body.base, body.len, sig, &s),
                     OL_EBADSIG);
        sig[i] ^= 1;
    }
}

Test(seal, every_truncation_fails)
{
    struct ol__seal s;

    for (size_t n = 0; n < body.len; n++)
        cr_expect_eq(ol__seal_parse(body.base, n, &s), OL_EMALFORMED,
                     "prefix %zu", n);
}

Test(seal, empty_and_oversized_batches_are_refused)
{
    struct ol__buf b;
    uint8_t s[OL_SIG_SIZE];

    ol__buf_init(&b);
    cr_assert_eq(ol__seal_make(&key, 1, hashes, 0, &b, s), OL_EINVAL);
    cr_assert_eq(ol__seal_make(&key, 1, hashes, OL_SEAL_MAX_HASHES + 1, &b,
                               s),
                 OL_EINVAL);
    ol__buf_close(&b);
}
