/* Unit tests for the bounded msgpack reader. */
#include <criterion/criterion.h>
#include <msgpack.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/mpr.h"

static struct ol__buf sample(void)
{
    struct ol__buf b;
    msgpack_packer pk;

    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "n", 1);
    msgpack_pack_int64(&pk, -123456789012LL);
    msgpack_pack_str_with_body(&pk, "list", 4);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint64(&pk, UINT64_MAX);
    msgpack_pack_double(&pk, 1.5);
    msgpack_pack_bin_with_body(&pk, "abc", 3);
    msgpack_pack_str_with_body(&pk, "ok", 2);
    msgpack_pack_true(&pk);
    return b;
}

Test(mpr, reads_what_msgpack_c_packs)
{
    struct ol__buf b = sample();
    struct ol__mpr r;
    uint32_t n;
    int64_t i;
    uint64_t u;
    const char *s;
    uint32_t len;
    bool t;

    ol__mpr_init(&r, b.base, b.len);
    cr_assert_eq(ol__mpr_map(&r, &n), 0);
    cr_assert_eq(n, 3);
    cr_assert_eq(ol__mpr_str(&r, &s, &len), 0);
    cr_assert_eq(len, 1);
    cr_assert_eq(ol__mpr_int(&r, &i), 0);
    cr_assert_eq(i, -123456789012LL);
    cr_assert_eq(ol__mpr_str(&r, &s, &len), 0);
    cr_assert_eq(ol__mpr_array(&r, &n), 0);
    cr_assert_eq(n, 3);
    cr_assert_eq(ol__mpr_uint(&r, &u), 0);
    cr_assert_eq(u, UINT64_MAX);
    cr_assert_eq(ol__mpr_skip(&r), 0);
    cr_assert_eq(ol__mpr_skip(&r), 0);
    cr_assert_eq(ol__mpr_str(&r, &s, &len), 0);
    cr_assert_eq(ol__mpr_bool(&r, &t), 0);
    cr_assert(t);
    cr_assert(ol__mpr_done(&r));
    ol__buf_close(&b);
}

Test(mpr, check_accepts_one_object_and_rejects_prefixes)
{
    struct ol__buf b = sample();

    cr_assert_eq(ol__mp_check(b.base, b.len, NULL), 0);
    for (size_t n = 0; n < b.len; n++)
        cr_expect_eq(ol__mp_check(b.base, n, NULL), OL_EMALFORMED,
                     "accepted a %zu-byte prefix", n);
    ol__buf_close(&b);
}

Test(mpr, check_rejects_trailing_bytes)
{
    uint8_t two[] = {0x01, 0x02};

    cr_assert_eq(ol__mp_check(two, 2, NULL), OL_EMALFORMED);
}

Test(mpr, huge_counts_are_refused_before_anything_is_read)
{
    /* array32 claiming 4 billion elements, then nothing */
    uint8_t arr[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
    uint8_t map[] = {0xdf, 0x7f, 0xff, 0xff, 0xff};
    uint8_t str[] = {0xdb, 0xff, 0xff, 0xff, 0xff, 'a'};
    struct ol__mpr r;
    uint32_t n;

    ol__mpr_init(&r, arr, sizeof arr);
    cr_assert_eq(ol__mpr_array(&r, &n), OL_EMALFORMED);
    ol__mpr_init(&r, map, sizeof map);
    cr_assert_eq(ol__mpr_map(&r, &n), OL_EMALFORMED);
    cr_assert_eq(ol__mp_check(str, sizeof str, NULL), OL_EMALFORMED);
}

Test(mpr, deep_nesting_is_refused)
{
    uint8_t deep[200];

    memset(deep, 0x91, sizeof deep); /* [[[[...]]]] */
    deep[sizeof deep - 1] = 0x01;
    cr_assert_eq(ol__mp_check(deep, sizeof deep, NULL), OL_EMALFORMED);
}

Test(mpr, reserved_byte_is_refused)
{
    uint8_t b = 0xc1;

    cr_assert_eq(ol__mp_check(&b, 1, NULL), OL_EMALFORMED);
}

Test(mpr, errors_are_sticky)
{
    uint8_t b[] = {0xc1, 0x01};
    struct ol__mpr r;
    uint64_t u;

    ol__mpr_init(&r, b, sizeof b);
    cr_assert_eq(ol__mpr_uint(&r, &u), OL_EMALFORMED);
    r.off = 1;
    cr_assert_eq(ol__mpr_uint(&r, &u), OL_EMALFORMED);
}

Test(mpr, signed_ints_sign_extend)
{
    uint8_t b[] = {0xd0, 0x80, 0xd1, 0xff, 0xfe, 0xe0};
    struct ol__mpr r;
    int64_t v;

    ol__mpr_init(&r, b, sizeof b);
    cr_assert_eq(ol__mpr_int(&r, &v), 0);
    cr_assert_eq(v, -128);
    cr_assert_eq(ol__mpr_int(&r, &v), 0);
    cr_assert_eq(v, -2);
    cr_assert_eq(ol__mpr_int(&r, &v), 0);
    cr_assert_eq(v, -32);
}

Test(mpr, strdup_refuses_embedded_nul_and_long_strings)
{
    uint8_t nul[] = {0xa3, 'a', 0, 'b'};
    uint8_t lng[] = {0xa5, 'a', 'b', 'c', 'd', 'e'};
    struct ol__mpr r;
    char *s = NULL;

    ol__mpr_init(&r, nul, sizeof nul);
    cr_assert_eq(ol__mpr_strdup(&r, 10, &s), OL_EMALFORMED);
    ol__mpr_init(&r, lng, sizeof lng);
    cr_assert_eq(ol__mpr_strdup(&r, 4, &s), OL_EMALFORMED);
    cr_assert_null(s);
}
