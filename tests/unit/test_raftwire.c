/* Unit tests for the raft wire parser: what passes to libraft and what is
 * rewritten or refused (replication/raftwire.h). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "replication/raftwire.h"
#include "base/buf.h"
#include "base/err.h"

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* AppendEntries with `n` command entries of `len` bytes each. */
static size_t append_msg(uint8_t *m, uint64_t term, uint64_t prev,
                         uint64_t commit, unsigned n, uint32_t len)
{
    size_t hlen = 48 + 16 * (size_t)n, off;

    memset(m, 0, 16 + hlen);
    put64(m, 1);
    put64(m + 8, hlen);
    put64(m + 16, term);
    put64(m + 24, prev);
    put64(m + 32, term);
    put64(m + 40, commit);
    put64(m + 48, n);
    for (unsigned i = 0; i < n; i++) {
        uint8_t *e = m + 56 + 16 * i;

        put64(e, term);
        e[8] = 1;
        e[12] = (uint8_t)len;
        e[13] = (uint8_t)(len >> 8);
        e[14] = (uint8_t)(len >> 16);
        e[15] = (uint8_t)(len >> 24);
    }
    off = 16 + hlen;
    for (unsigned i = 0; i < n; i++)
        for (uint32_t k = 0; k < len; k++)
            m[off++] = (uint8_t)(i * 7 + k);
    return off;
}

static size_t result_msg(uint8_t *m, uint64_t term, uint64_t rejected,
                         uint64_t last)
{
    put64(m, 2);
    put64(m + 8, 24);
    put64(m + 16, term);
    put64(m + 24, rejected);
    put64(m + 32, last);
    return 40;
}

static int collect(void *ctx, const uint8_t *p, size_t n)
{
    return ol__buf_append(ctx, p, n);
}

/* Feed `m` in pieces of `step` bytes; return what passed. */
static int feed(struct ol__rwire *w, const uint8_t *m, size_t len,
                size_t step, struct ol__buf *out)
{
    int rv = 0;

    for (size_t off = 0; off < len && rv == 0; off += step)
        rv = ol__rwire_feed(w, m + off, len - off < step ? len - off : step,
                            collect, out);
    return rv;
}

Test(raftwire, messages_pass_unchanged_in_any_pieces)
{
    static uint8_t m[4096];
    size_t len = append_msg(m, 3, 10, 9, 3, 64);

    len += result_msg(m + len, 3, 0, 12);
    for (size_t step = 1; step <= len; step++) {
        struct ol__rwire w;
        struct ol__buf out;

        ol__rwire_init(&w, OL_RW_IN, NULL);
        ol__buf_init(&out);
        cr_assert_eq(feed(&w, m, len, step, &out), 0, "step %zu: %s", step,
                     w.errmsg);
        cr_assert_eq(out.len, len);
        cr_assert_eq(memcmp(out.base, m, len), 0, "step %zu", step);
        cr_assert_eq(w.n.messages, 2);
        ol__buf_close(&out);
        ol__rwire_close(&w);
    }
}

/* A follower may commit only what the request verified. */
Test(raftwire, incoming_commit_is_capped_at_the_request)
{
    static uint8_t m[1024];
    size_t len = append_msg(m, 4, 10, 50, 2, 8);
    struct ol__rwire w;
    struct ol__buf out;

    ol__rwire_init(&w, OL_RW_IN, NULL);
    ol__buf_init(&out);
    cr_assert_eq(feed(&w, m, len, len, &out), 0);
    cr_assert_eq(get64(out.base + 40), 12, "commit %llu",
                 (unsigned long long)get64(out.base + 40));
    cr_assert_eq(w.n.commit_capped, 1);
    cr_assert_eq(ol__rw_commit_cap(5, 10, 0), 5);
    ol__buf_close(&out);
    ol__rwire_close(&w);
}

static uint64_t cap_at_7(void *data, uint64_t term, uint64_t last)
{
    (void)data;
    cr_assert_eq(term, 5);
    return last < 7 ? last : 7;
}

Test(raftwire, outgoing_success_is_capped_rejection_is_not)
{
    uint8_t m[80];
    struct ol__rw_hooks h = {.result_cap = cap_at_7};
    struct ol__rwire w;
    struct ol__buf out;
    size_t len = result_msg(m, 5, 0, 20);

    len += result_msg(m + len, 5, 30, 20);
    ol__rwire_init(&w, OL_RW_OUT, &h);
    ol__buf_init(&out);
    cr_assert_eq(feed(&w, m, len, 3, &out), 0);
    cr_assert_eq(get64(out.base + 32), 7);
    cr_assert_eq(get64(out.base + 40 + 32), 20, "a rejection's hint moved");
    cr_assert_eq(w.n.match_capped, 1);
    ol__buf_close(&out);
    ol__rwire_close(&w);
}

static void refused_after(uint8_t *m, size_t len, size_t passed,
                          const char *what)
{
    struct ol__rwire w;
    struct ol__buf out;
    int rv;

    ol__rwire_init(&w, OL_RW_IN, NULL);
    ol__buf_init(&out);
    rv = feed(&w, m, len, len, &out);
    cr_expect_neq(rv, 0, "%s: accepted", what);
    cr_expect(rv == OL_EMALFORMED || rv == OL_ETOOBIG, "%s: %d", what, rv);
    cr_expect_leq(out.len, passed, "%s: %zu bytes passed", what, out.len);
    cr_expect_neq(w.errmsg[0], '\0', "%s: no reason", what);
    ol__buf_close(&out);
    ol__rwire_close(&w);
}

/* Refused on its header: nothing of it passes. */
static void refused(uint8_t *m, size_t len, const char *what)
{
    refused_after(m, len, 0, what);
}

Test(raftwire, hostile_headers_are_refused_before_anything_passes)
{
    static uint8_t m[1024];
    size_t len;

    len = append_msg(m, 1, 0, 0, 1, 8);
    put64(m, 9);
    refused(m, len, "unknown type");
    len = append_msg(m, 1, 0, 0, 1, 8);
    put64(m + 8, 1ull << 40);
    refused(m, len, "huge header");
    len = append_msg(m, 1, 0, 0, 1, 8);
    put64(m + 8, 40);
    refused(m, len, "short append header");
    len = append_msg(m, 1, 0, 0, 1, 8);
    put64(m + 48, 2);
    refused(m, len, "entry count past the header");
    len = append_msg(m, 1, 0, 0, 1, 12);
    refused(m, len, "entry length not a multiple of 8");
    len = append_msg(m, 1, 0, 0, 1, 8);
    m[56 + 12] = 0;
    m[56 + 15] = 0x80;
    refused(m, len, "2 GiB entry");
    len = append_msg(m, 1, 0, 0, 1, 8);
    m[56 + 8] = 7;
    refused(m, len, "entry type");
    len = result_msg(m, 1, 0, 1);
    put64(m + 8, 8);
    refused(m, len, "short result");
}

/* A configuration entry with a server count past its bytes: libraft 0.15
 * would read past the buffer. */
Test(raftwire, bad_configuration_entry_is_held_and_refused)
{
    static uint8_t m[1024];
    size_t len = append_msg(m, 1, 0, 0, 1, 16);
    uint8_t *conf = m + 16 + 64;

    m[56 + 8] = 3; /* RAFT_CHANGE */
    memset(conf, 0, 16);
    conf[0] = 1;
    put64(conf + 1, 1000);
    /* The header passes; the configuration never does. */
    refused_after(m, len, 16 + 64, "configuration server count");
    conf[0] = 1;
    put64(conf + 1, 1);
    put64(conf + 9, 5); /* id, then no NUL-terminated address fits */
    memset(conf + 9, 0x41, 7);
    refused_after(m, len, 16 + 64, "unterminated address");
}

/* Flipping any bit of a valid stream never crashes or over-reads; what
 * passes is never more than was fed. */
Test(raftwire, bit_flips_never_crash)
{
    static uint8_t m[4096], c[4096];
    size_t len = append_msg(m, 3, 10, 9, 3, 64);

    len += result_msg(m + len, 3, 0, 12);
    for (size_t i = 0; i < len * 8; i += 3) {
        struct ol__rwire w;
        struct ol__buf out;

        memcpy(c, m, len);
        c[i / 8] ^= (uint8_t)(1u << (i % 8));
        ol__rwire_init(&w, OL_RW_IN, NULL);
        ol__buf_init(&out);
        (void)feed(&w, c, len, 17, &out);
        cr_assert_leq(out.len, len);
        ol__buf_close(&out);
        ol__rwire_close(&w);
    }
}

static void snap_at_11(void *data, uint64_t *index, uint64_t *term)
{
    (void)data;
    *index = 11;
    *term = 3;
}

/* Entries at or before this node's snapshot are trimmed off the front
 * (libraft 0.15's follower crashes on entries its log no longer holds);
 * what is past the snapshot passes, and a request entirely before it
 * becomes a heartbeat at the snapshot. */
Test(raftwire, entries_before_the_snapshot_are_trimmed)
{
    static uint8_t m[4096];
    struct ol__rw_hooks h = {.snapshot_of = snap_at_11};
    struct ol__rwire w;
    struct ol__buf out;
    size_t len = append_msg(m, 3, 9, 20, 4, 16); /* entries 10..13 */

    ol__rwire_init(&w, OL_RW_IN, &h);
    ol__buf_init(&out);
    cr_assert_eq(feed(&w, m, len, 5, &out), 0, "%s", w.errmsg);
    cr_assert_eq(w.n.trimmed, 1);
    cr_assert_eq(get64(out.base + 8), 48 + 16 * 2, "header length");
    cr_assert_eq(get64(out.base + 16 + 8), 11, "prev index");
    cr_assert_eq(get64(out.base + 16 + 16), 3, "prev term");
    cr_assert_eq(get64(out.base + 16 + 32), 2, "entries left");
    cr_assert_eq(out.len, 16 + 48 + 32 + 2 * 16, "%zu bytes", out.len);
    /* The entries that passed are the 3rd and 4th of the request. */
    cr_assert_eq(memcmp(out.base + 16 + 48 + 32,
                        m + 16 + 48 + 64 + 2 * 16, 32),
                 0);
    ol__buf_close(&out);
    ol__rwire_close(&w);

    len = append_msg(m, 3, 2, 20, 3, 8); /* entries 3..5, all before */
    ol__rwire_init(&w, OL_RW_IN, &h);
    ol__buf_init(&out);
    cr_assert_eq(feed(&w, m, len, len, &out), 0, "%s", w.errmsg);
    cr_assert_eq(out.len, 16 + 48, "not turned into a heartbeat");
    cr_assert_eq(get64(out.base + 16 + 8), 11);
    cr_assert_eq(get64(out.base + 16 + 32), 0);
    ol__buf_close(&out);
    ol__rwire_close(&w);
}
