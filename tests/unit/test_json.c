/* Unit tests for JSON <-> msgpack: every msgpack type, the odd cases
 * (uint64 above INT64_MAX, non-string keys, bin, ext, bad UTF-8, NaN), and
 * parse errors that name the line and column. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/json.h"

/* Convert packed bytes to compact JSON text (malloc'd). */
static char *to_json(const struct ol__buf *b)
{
    char err[OL_ERRMSG_SIZE];
    json_t *j;
    char *s;

    cr_assert_eq(ol__json_from_msgpack(b->base, b->len, &j, err), 0, "%s",
                 err);
    s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    return s;
}

#define PACKED(b, pk)                                                      \
    struct ol__buf b;                                                      \
    msgpack_packer pk;                                                     \
    ol__buf_init(&b);                                                      \
    msgpack_packer_init(&pk, &b, ol__buf_write)

static void expect_json(struct ol__buf *b, const char *want)
{
    char *s = to_json(b);

    cr_assert_str_eq(s, want);
    free(s);
    ol__buf_close(b);
}

Test(json, scalars)
{
    PACKED(b, pk);
    msgpack_pack_array(&pk, 7);
    msgpack_pack_nil(&pk);
    msgpack_pack_true(&pk);
    msgpack_pack_false(&pk);
    msgpack_pack_int(&pk, -5);
    msgpack_pack_uint64(&pk, 42);
    msgpack_pack_double(&pk, 1.5);
    msgpack_pack_str_with_body(&pk, "hi", 2);
    expect_json(&b, "[null,true,false,-5,42,1.5,\"hi\"]");
}

Test(json, integers_at_the_edges)
{
    PACKED(b, pk);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint64(&pk, (uint64_t)INT64_MAX);
    msgpack_pack_uint64(&pk, (uint64_t)INT64_MAX + 1);
    msgpack_pack_uint64(&pk, UINT64_MAX);
    msgpack_pack_int64(&pk, INT64_MIN);
    expect_json(&b, "[9223372036854775807,\"9223372036854775808\","
                    "\"18446744073709551615\",-9223372036854775808]");
}

Test(json, floats_including_nan_and_infinity)
{
    PACKED(b, pk);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_float(&pk, 0.25f);
    msgpack_pack_double(&pk, NAN);
    msgpack_pack_double(&pk, INFINITY);
    msgpack_pack_double(&pk, -INFINITY);
    expect_json(&b, "[0.25,\"nan\",\"inf\",\"-inf\"]");
}

Test(json, bin_ext_and_bad_utf8)
{
    PACKED(b, pk);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_bin_with_body(&pk, "\x00\xff", 2);
    msgpack_pack_ext_with_body(&pk, "\x01\x02", 2, 7);
    msgpack_pack_str_with_body(&pk, "\xc3\x28", 2);
    expect_json(&b, "[{\"$bin\":\"00ff\"},{\"$ext\":7,\"hex\":\"0102\"},"
                    "{\"$str\":\"c328\"}]");
}

Test(json, map_keys_that_are_not_strings_are_stringified)
{
    PACKED(b, pk);
    msgpack_pack_map(&pk, 6);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_str_with_body(&pk, "one", 3);
    msgpack_pack_int(&pk, -2);
    msgpack_pack_nil(&pk);
    msgpack_pack_true(&pk);
    msgpack_pack_int(&pk, 3);
    msgpack_pack_nil(&pk);
    msgpack_pack_int(&pk, 4);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_int(&pk, 9);
    msgpack_pack_int(&pk, 5);
    msgpack_pack_bin_with_body(&pk, "\xab", 1);
    msgpack_pack_int(&pk, 6);
    expect_json(&b, "{\"1\":\"one\",\"-2\":null,\"true\":3,\"null\":4,"
                    "\"[9]\":5,\"ab\":6}");
}

Test(json, nested_maps_and_arrays)
{
    PACKED(b, pk);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "a", 1);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_map(&pk, 0);
    msgpack_pack_array(&pk, 0);
    msgpack_pack_str_with_body(&pk, "b", 1);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "c", 1);
    msgpack_pack_str_with_body(&pk, "", 0);
    expect_json(&b, "{\"a\":[{},[]],\"b\":{\"c\":\"\"}}");
}

Test(json, malformed_msgpack_is_refused_at_every_truncation)
{
    char err[OL_ERRMSG_SIZE];
    json_t *j;

    PACKED(b, pk);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "key", 3);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint64(&pk, 1u << 20);
    msgpack_pack_bin_with_body(&pk, "xyz", 3);
    for (size_t n = 0; n < b.len; n++)
        cr_assert_eq(ol__json_from_msgpack(b.base, n, &j, err),
                     OL_EMALFORMED, "accepted a %zu-byte prefix", n);
    cr_assert_eq(ol__json_from_msgpack("\xc1", 1, &j, err), OL_EMALFORMED);
    cr_assert(strstr(err, "offset") != NULL, "%s", err);
    /* A str claiming 4 GiB in a 5-byte buffer. */
    cr_assert_eq(ol__json_from_msgpack("\xdb\xff\xff\xff\xff", 5, &j, err),
                 OL_EMALFORMED);
    ol__buf_close(&b);
}

Test(json, nesting_beyond_the_unpacker_is_an_error_not_a_crash)
{
    char err[OL_ERRMSG_SIZE];
    uint8_t deep[60];
    json_t *j;

    memset(deep, 0x91, sizeof deep); /* [[[[...]]]] */
    deep[sizeof deep - 1] = 0xc0;
    cr_assert_eq(ol__json_from_msgpack(deep, sizeof deep, &j, err),
                 OL_EMALFORMED);
}

Test(json, json_to_msgpack_packs_the_plain_mapping)
{
    char err[OL_ERRMSG_SIZE];
    struct ol__buf out;
    char *back;

    ol__buf_init(&out);
    const char *text = "{\"a\": [1, -2, 2.5, \"x\", null, true, false], "
                       "\"b\": {}}";

    cr_assert_eq(ol__json_to_msgpack(text, strlen(text), &out, err), 0, "%s",
                 err);
    /* Exact bytes for the first elements: fixmap 2, "a", fixarray 7, 1. */
    cr_assert_eq(out.base[0], 0x82);
    cr_assert_eq(out.base[1], 0xa1);
    cr_assert_eq(out.base[2], 'a');
    cr_assert_eq(out.base[3], 0x97);
    cr_assert_eq(out.base[4], 0x01);
    cr_assert_eq(out.base[5], 0xfe); /* -2 as a negative fixint */
    back = to_json(&out);
    cr_assert_str_eq(back,
                     "{\"a\":[1,-2,2.5,\"x\",null,true,false],\"b\":{}}");
    free(back);
    ol__buf_close(&out);
}

Test(json, scalars_at_the_top_level_and_nul_in_strings)
{
    char err[OL_ERRMSG_SIZE];
    struct ol__buf out;

    ol__buf_init(&out);
    cr_assert_eq(ol__json_to_msgpack("42", 2, &out, err), 0, "%s", err);
    cr_assert_eq(out.len, 1);
    cr_assert_eq(out.base[0], 42);
    ol__buf_reset(&out);
    cr_assert_eq(ol__json_to_msgpack("\"a\\u0000b\"", 10, &out, err), 0,
                 "%s", err);
    cr_assert_eq(out.len, 4);
    cr_assert_eq(memcmp(out.base, "\xa3" "a\0b", 4), 0);
    ol__buf_close(&out);
}

Test(json, parse_errors_name_line_and_column)
{
    char err[OL_ERRMSG_SIZE];
    struct ol__buf out;

    ol__buf_init(&out);
    cr_assert_eq(ol__json_to_msgpack("{\"a\":", 5, &out, err),
                 OL_EMALFORMED);
    cr_assert(strstr(err, "line 1 column") != NULL, "%s", err);
    const char *text = "{\n  \"a\": 1,\n  oops\n}";

    cr_assert_eq(ol__json_to_msgpack(text, strlen(text), &out, err),
                 OL_EMALFORMED);
    cr_assert(strstr(err, "line 3 column ") != NULL, "%s", err);
    cr_assert_eq(ol__json_to_msgpack("", 0, &out, err), OL_EMALFORMED);
    cr_assert_eq(ol__json_to_msgpack("[1] [2]", 7, &out, err),
                 OL_EMALFORMED, "trailing data accepted");
    cr_assert_eq(out.len, 0, "a failed parse packed something");
    ol__buf_close(&out);
}

Test(json, duplicate_keys_and_huge_integers_are_refused)
{
    char err[OL_ERRMSG_SIZE];
    struct ol__buf out;

    ol__buf_init(&out);
    cr_assert_eq(ol__json_to_msgpack("{\"a\":1,\"a\":2}", 13, &out, err),
                 OL_EMALFORMED);
    cr_assert(strstr(err, "duplicate") != NULL, "%s", err);
    cr_assert_eq(ol__json_to_msgpack("18446744073709551616", 20, &out, err),
                 OL_EMALFORMED);
    cr_assert(strstr(err, "line 1") != NULL, "%s", err);
    ol__buf_close(&out);
}

Test(json, object_conversion_round_trips_through_jansson)
{
    msgpack_unpacked u;
    struct ol__buf out;
    char err[OL_ERRMSG_SIZE];
    size_t off = 0;
    json_t *j;
    char *s;

    ol__buf_init(&out);
    cr_assert_eq(ol__json_to_msgpack("{\"k\":[1,{\"z\":\"w\"}]}", 19, &out,
                                     err),
                 0);
    msgpack_unpacked_init(&u);
    cr_assert_eq(msgpack_unpack_next(&u, (const char *)out.base, out.len,
                                     &off),
                 MSGPACK_UNPACK_SUCCESS);
    j = ol__json_from_object(&u.data);
    s = json_dumps(j, JSON_COMPACT);
    cr_assert_str_eq(s, "{\"k\":[1,{\"z\":\"w\"}]}");
    free(s);
    json_decref(j);
    msgpack_unpacked_destroy(&u);
    ol__buf_close(&out);
}

Test(json, depth_is_limited)
{
    char text[128], err[OL_ERRMSG_SIZE];
    struct ol__buf b;
    json_t *j;

    /* 16 nested arrays are accepted, 17 are not. */
    for (int d = 16; d <= 17; d++) {
        int n = 0;

        for (int i = 0; i < d; i++)
            text[n++] = '[';
        text[n++] = '1';
        for (int i = 0; i < d; i++)
            text[n++] = ']';
        text[n] = '\0';
        ol__buf_init(&b);
        cr_expect_eq(ol__json_to_msgpack(text, (size_t)n, &b, err),
                     d <= OL_JSON_MAX_DEPTH ? 0 : OL_ETOOBIG, "depth %d", d);
        if (d > OL_JSON_MAX_DEPTH)
            cr_expect(strstr(err, "nests deeper than 16") != NULL, "%s", err);
        ol__buf_close(&b);
    }
    cr_assert_eq(ol__json_parse("{\"a\": {\"b\": [1, [2]]}}", 22, &j, err), 0,
                 "%s", err);
    cr_expect_eq(ol__json_depth(j), 4);
    json_decref(j);
}
