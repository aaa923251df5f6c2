/* Unit tests for the string-keyed open-addressing map (base/map.h):
 * insert, find, replace, delete with tombstones, growth, iteration. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/map.h"

/* A value that owns its key, as the map's users do. */
struct item {
    char key[40];
    int n;
};

static struct ol__map m;

static void setup(void)
{
    ol__map_init(&m);
}

static void teardown(void)
{
    ol__map_close(&m);
}

TestSuite(map, .init = setup, .fini = teardown);

static struct item *items(int n, const char *fmt)
{
    struct item *it = calloc((size_t)n, sizeof *it);

    cr_assert_not_null(it);
    for (int i = 0; i < n; i++) {
        snprintf(it[i].key, sizeof it[i].key, fmt, i);
        it[i].n = i;
    }
    return it;
}

/* How many live values iteration yields, each checked to be one of
 * `it` (n of them) and seen once. */
static size_t iterate_count(struct item *it, int n)
{
    char *seen = calloc((size_t)n, 1);
    size_t count = 0, iter = 0;
    void *v;

    cr_assert_not_null(seen);
    while (ol__map_next(&m, &iter, &v)) {
        struct item *x = v;

        cr_assert(x >= it && x < it + n, "iteration gave a foreign value");
        cr_assert_eq(seen[x - it], 0, "'%s' seen twice", x->key);
        seen[x - it] = 1;
        count++;
        cr_assert_leq(count, (size_t)n, "iteration does not end");
    }
    free(seen);
    return count;
}

Test(map, empty_map_finds_nothing)
{
    size_t iter = 0;
    void *v = NULL;

    cr_expect_null(ol__map_get(&m, "a"));
    cr_expect_null(ol__map_get(&m, ""));
    cr_expect_null(ol__map_del(&m, "a"));
    cr_expect_eq(ol__map_next(&m, &iter, &v), 0);
    cr_expect_eq(m.count, 0);
}

Test(map, put_then_get)
{
    struct item a = {"alpha", 1}, b = {"beta", 2};

    cr_assert_eq(ol__map_put(&m, a.key, &a), 0);
    cr_assert_eq(ol__map_put(&m, b.key, &b), 0);
    cr_expect_eq(ol__map_get(&m, "alpha"), &a);
    cr_expect_eq(ol__map_get(&m, "beta"), &b);
    cr_expect_null(ol__map_get(&m, "gamma"));
    cr_expect_null(ol__map_get(&m, "alph"), "a prefix matched");
    cr_expect_null(ol__map_get(&m, "alphaa"), "a longer key matched");
    cr_expect_eq(m.count, 2);
}

Test(map, lookup_compares_contents_not_pointers)
{
    struct item a = {"agent-7", 7};
    char probe[16];

    cr_assert_eq(ol__map_put(&m, a.key, &a), 0);
    snprintf(probe, sizeof probe, "agent-%d", 7);
    cr_expect_eq(ol__map_get(&m, probe), &a);
}

Test(map, put_replaces_and_keeps_count)
{
    struct item a = {"same", 1}, b = {"same", 2};

    cr_assert_eq(ol__map_put(&m, a.key, &a), 0);
    cr_assert_eq(ol__map_put(&m, b.key, &b), 0);
    cr_expect_eq(ol__map_get(&m, "same"), &b);
    cr_expect_eq(m.count, 1);
    /* The map borrows the new value's key: freeing the old one must not
     * matter. */
    memset(a.key, 'x', sizeof a.key - 1);
    cr_expect_eq(ol__map_get(&m, "same"), &b);
}

Test(map, delete_returns_value_once)
{
    struct item a = {"gone", 1}, b = {"kept", 2};

    cr_assert_eq(ol__map_put(&m, a.key, &a), 0);
    cr_assert_eq(ol__map_put(&m, b.key, &b), 0);
    cr_expect_eq(ol__map_del(&m, "gone"), &a);
    cr_expect_null(ol__map_del(&m, "gone"), "deleted twice");
    cr_expect_null(ol__map_get(&m, "gone"));
    cr_expect_eq(ol__map_get(&m, "kept"), &b);
    cr_expect_eq(m.count, 1);
}

/* Keys that collide on one probe chain: deleting one in the middle leaves a
 * tombstone, and the keys behind it must still be found. */
Test(map, tombstone_keeps_probe_chain)
{
    enum { N = 12 };
    struct item *it = items(N, "k%d");

    for (int i = 0; i < N; i++)
        cr_assert_eq(ol__map_put(&m, it[i].key, &it[i]), 0);
    for (int i = 0; i < N; i += 2)
        cr_assert_eq(ol__map_del(&m, it[i].key), &it[i]);
    for (int i = 1; i < N; i += 2)
        cr_expect_eq(ol__map_get(&m, it[i].key), &it[i], "lost %s",
                     it[i].key);
    for (int i = 0; i < N; i += 2)
        cr_expect_null(ol__map_get(&m, it[i].key), "%s came back",
                       it[i].key);
    /* Re-inserting a deleted key works and does not duplicate it. */
    cr_assert_eq(ol__map_put(&m, it[0].key, &it[0]), 0);
    cr_assert_eq(ol__map_put(&m, it[0].key, &it[0]), 0);
    cr_expect_eq(ol__map_get(&m, it[0].key), &it[0]);
    cr_expect_eq(m.count, N / 2 + 1);
    cr_expect_eq(iterate_count(it, N), N / 2 + 1);
    free(it);
}

Test(map, grows_over_many_keys)
{
    enum { N = 20000 };
    struct item *it = items(N, "agent-%06d");

    for (int i = 0; i < N; i++)
        cr_assert_eq(ol__map_put(&m, it[i].key, &it[i]), 0);
    cr_expect_eq(m.count, N);
    cr_expect_geq(m.cap, (size_t)N * 4 / 3, "load factor above 3/4");
    cr_expect_eq(m.cap & (m.cap - 1), 0, "capacity %zu not a power of two",
                 m.cap);
    for (int i = 0; i < N; i++)
        cr_assert_eq(ol__map_get(&m, it[i].key), &it[i], "lost %s",
                     it[i].key);
    cr_expect_null(ol__map_get(&m, "agent-020000"));
    cr_expect_eq(iterate_count(it, N), N);
    free(it);
}

/* Insert and delete over and over with few live keys: tombstones must not
 * fill the table (a full table would make lookups of absent keys spin or
 * inserts fail). */
Test(map, churn_does_not_fill_with_tombstones)
{
    enum { N = 50000, LIVE = 8 };
    struct item *it = items(N, "churn-%d");

    for (int i = 0; i < N; i++) {
        cr_assert_eq(ol__map_put(&m, it[i].key, &it[i]), 0);
        if (i >= LIVE)
            cr_assert_eq(ol__map_del(&m, it[i - LIVE].key), &it[i - LIVE]);
    }
    cr_expect_eq(m.count, LIVE);
    cr_expect_lt(m.used, m.cap, "no empty slot left");
    cr_expect_leq(m.cap, 1024, "capacity %zu grew with churn", m.cap);
    for (int i = N - LIVE; i < N; i++)
        cr_expect_eq(ol__map_get(&m, it[i].key), &it[i]);
    cr_expect_null(ol__map_get(&m, "absent"));
    free(it);
}

Test(map, iteration_skips_deleted)
{
    enum { N = 100 };
    struct item *it = items(N, "it%d");
    size_t iter = 0;
    void *v;
    int sum = 0;

    for (int i = 0; i < N; i++)
        cr_assert_eq(ol__map_put(&m, it[i].key, &it[i]), 0);
    for (int i = 0; i < N; i += 3)
        ol__map_del(&m, it[i].key);
    while (ol__map_next(&m, &iter, &v)) {
        cr_expect_neq(((struct item *)v)->n % 3, 0, "a deleted value");
        sum += ((struct item *)v)->n;
    }
    /* 0..99 minus the multiples of 3 (0+3+...+99 = 1683). */
    cr_expect_eq(sum, 4950 - 1683);
    free(it);
}

Test(map, hostile_keys)
{
    size_t len = 1 << 20;
    char *big = malloc(len + 1), *big2 = malloc(len + 1);
    struct item empty = {"", 0}, spaced = {" ", 1};

    cr_assert(big && big2);
    memset(big, 'a', len);
    big[len] = '\0';
    memcpy(big2, big, len + 1);
    big2[len - 1] = 'b'; /* differs only in its last byte */
    cr_assert_eq(ol__map_put(&m, big, big), 0);
    cr_assert_eq(ol__map_put(&m, big2, big2), 0);
    cr_assert_eq(ol__map_put(&m, empty.key, &empty), 0);
    cr_assert_eq(ol__map_put(&m, spaced.key, &spaced), 0);
    cr_expect_eq(ol__map_get(&m, big), big);
    cr_expect_eq(ol__map_get(&m, big2), big2);
    cr_expect_eq(ol__map_get(&m, ""), &empty, "the empty key");
    cr_expect_eq(ol__map_get(&m, " "), &spaced);
    cr_expect_eq(m.count, 4);
    cr_expect_eq(ol__map_del(&m, ""), &empty);
    cr_expect_null(ol__map_get(&m, ""));
    cr_expect_eq(ol__map_get(&m, big2), big2);
    /* Bytes above 0x7f hash as unsigned. */
    {
        struct item hi = {"\xff\xfe\x80", 9};

        cr_assert_eq(ol__map_put(&m, hi.key, &hi), 0);
        cr_expect_eq(ol__map_get(&m, "\xff\xfe\x80"), &hi);
        ol__map_del(&m, hi.key);
    }
    ol__map_close(&m);
    free(big);
    free(big2);
}

Test(map, close_resets_for_reuse)
{
    struct item a = {"a", 1};

    cr_assert_eq(ol__map_put(&m, a.key, &a), 0);
    ol__map_close(&m);
    cr_expect_eq(m.count, 0);
    cr_expect_eq(m.cap, 0);
    cr_expect_null(ol__map_get(&m, "a"));
    cr_assert_eq(ol__map_put(&m, a.key, &a), 0);
    cr_expect_eq(ol__map_get(&m, "a"), &a);
}
