/* Unit tests for the per-agent log ring: both bounds, numbering without
 * gaps, reading after a number, and what reaches a terminal. */
#include <criterion/criterion.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>

#include "runtime/alog.h"
#include "base/buf.h"
#include "base/log.h"

/* Pack and unpack lines after `after`; returns how many, seqs into out. */
static uint32_t read_lines(const struct ol__alog *l, uint64_t after,
                           uint32_t limit, uint64_t *seqs, char texts[][600])
{
    struct ol__buf b;
    msgpack_packer pk;
    msgpack_unpacked u;
    uint32_t n;

    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    n = ol__alog_pack(l, after, limit, &pk);
    msgpack_unpacked_init(&u);
    cr_assert_eq(msgpack_unpack_next(&u, (const char *)b.base, b.len, NULL),
                 MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq(u.data.type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(u.data.via.array.size, n);
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *m = &u.data.via.array.ptr[i];

        cr_assert_eq(m->type, MSGPACK_OBJECT_MAP);
        cr_assert_eq(m->via.map.size, 4);
        seqs[i] = m->via.map.ptr[0].val.via.u64;
        if (texts)
            snprintf(texts[i], 600, "%.*s",
                     (int)m->via.map.ptr[3].val.via.str.size,
                     m->via.map.ptr[3].val.via.str.ptr);
    }
    msgpack_unpacked_destroy(&u);
    ol__buf_close(&b);
    return n;
}

Test(alog, keeps_the_last_lines_numbered_without_gaps)
{
    struct ol__alog *l = ol__alog_create(5);
    uint64_t seqs[16];
    char text[32], texts[16][600];
    uint32_t n;

    cr_assert_not_null(l);
    cr_expect_neq(ol__alog_id(l), 0);
    cr_expect_eq(ol__alog_first(l), 1);
    cr_expect_eq(ol__alog_next(l), 1);
    cr_expect_eq(read_lines(l, 0, 10, seqs, NULL), 0);
    for (int i = 1; i <= 12; i++) {
        snprintf(text, sizeof text, "line %d", i);
        ol__alog_add(l, i, OL_LOG_INFO, text);
    }
    cr_expect_eq(ol__alog_first(l), 8);
    cr_expect_eq(ol__alog_next(l), 13);
    n = read_lines(l, 0, 100, seqs, texts);
    cr_assert_eq(n, 5);
    for (uint32_t i = 0; i < n; i++)
        cr_expect_eq(seqs[i], 8 + i);
    cr_expect_str_eq(texts[4], "line 12");
    /* After a number: only what came later, at most `limit`. */
    n = read_lines(l, 10, 100, seqs, NULL);
    cr_expect_eq(n, 2);
    cr_expect_eq(seqs[0], 11);
    n = read_lines(l, 8, 1, seqs, NULL);
    cr_expect_eq(n, 1);
    cr_expect_eq(seqs[0], 9);
    cr_expect_eq(read_lines(l, 12, 100, seqs, NULL), 0);
    cr_expect_eq(read_lines(l, UINT64_MAX, 100, seqs, NULL), 0);
    ol__alog_destroy(l);
    ol__alog_destroy(NULL);
}

Test(alog, holds_at_most_its_bytes_and_cuts_long_lines)
{
    struct ol__alog *l = ol__alog_create(100000);
    char big[2000];
    uint64_t seqs[400];
    char(*texts)[600] = calloc(400, 600);
    uint32_t n;

    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (int i = 0; i < 1000; i++)
        ol__alog_add(l, i, OL_LOG_INFO, big);
    n = read_lines(l, 0, 400, seqs, texts);
    cr_expect_eq(n, OL_ALOG_MAX_BYTES / OL_ALOG_LINE_MAX);
    cr_expect_eq(strlen(texts[0]), OL_ALOG_LINE_MAX);
    cr_expect_eq(seqs[n - 1], 1000);
    free(texts);
    ol__alog_destroy(l);
}

Test(alog, control_characters_never_reach_a_terminal)
{
    struct ol__alog *l = ol__alog_create(4);
    uint64_t seqs[4];
    char texts[4][600];

    ol__alog_add(l, 1, OL_LOG_WARN, "a\033[2Jb\nc\rd\te\x7f");
    cr_assert_eq(read_lines(l, 0, 4, seqs, texts), 1);
    cr_expect_str_eq(texts[0], "a?[2Jb?c?d\te?");
    ol__alog_destroy(l);
}
