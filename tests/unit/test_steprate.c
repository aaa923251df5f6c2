/* Unit tests for the leader's per-agent step rates (replication/steprate.h):
 * a steady stream is learned whatever its spacing, an agent that stops
 * goes idle, agents are kept apart, and the table is bounded. */
#include <criterion/criterion.h>
#include <stdio.h>

#include "replication/placement.h"
#include "replication/steprate.h"

/* `n` checkpoints of `agent`, one every `every_ms` from `*t`. */
static void feed(struct ol__steprate *r, const char *agent, int n,
                 uint64_t every_ms, uint64_t *t)
{
    for (int i = 0; i < n; i++) {
        *t += every_ms;
        ol__steprate_note(r, agent, *t);
    }
}

Test(steprate, learns_a_steady_rate)
{
    struct ol__steprate *r = ol__steprate_create();
    uint64_t t = 1000, u;
    double v;

    cr_assert_not_null(r);
    cr_expect_eq(ol__steprate_get(r, "a", t), 0.0, "never seen: 0");
    feed(r, "a", 30 * 30, 33, &t); /* ~30/s for 30 s: six time constants */
    v = ol__steprate_get(r, "a", t);
    cr_expect(v > 29.0 && v < 31.5, "30/s learned: %f", v);
    u = t;
    feed(r, "b", 60, 1000, &u); /* 1/s for a minute */
    v = ol__steprate_get(r, "b", u);
    cr_expect(v > 0.9 && v < 1.1, "1/s learned: %f", v);
    cr_expect(v < OL_PL_BUSY_CPS, "1/s is not busy");
    cr_expect(ol__steprate_get(r, "a", t) >= OL_PL_BUSY_CPS,
              "30/s is busy");
    /* A burst applied at once counts too: 10 in one entry every 500 ms. */
    for (int i = 0; i < 60; i++) {
        u += 500;
        for (int k = 0; k < 10; k++)
            ol__steprate_note(r, "c", u);
    }
    v = ol__steprate_get(r, "c", u);
    cr_expect(v > 18.0 && v < 24.0, "20/s in batches: %f", v);
    cr_expect_eq(ol__steprate_count(r), 3);
    ol__steprate_destroy(r);
    ol__steprate_destroy(NULL);
}

Test(steprate, an_agent_that_stops_goes_idle)
{
    struct ol__steprate *r = ol__steprate_create();
    uint64_t t = 0;

    cr_assert_not_null(r);
    feed(r, "a", 600, 50, &t); /* 20/s */
    cr_expect(ol__steprate_get(r, "a", t) >= OL_PL_BUSY_CPS);
    cr_expect(ol__steprate_get(r, "a", t + 60000) < OL_PL_BUSY_CPS,
              "a minute silent: idle (%f)",
              ol__steprate_get(r, "a", t + 60000));
    cr_expect(ol__steprate_get(r, "a", t + 1000) >
                  ol__steprate_get(r, "a", t + 5000),
              "decays monotonically");
    ol__steprate_destroy(r);
}

Test(steprate, bounded)
{
    struct ol__steprate *r = ol__steprate_create();
    char name[32];

    cr_assert_not_null(r);
    for (unsigned i = 0; i < OL_STEPRATE_MAX + 10; i++) {
        snprintf(name, sizeof name, "agent-%u", i);
        ol__steprate_note(r, name, 1000 + i);
    }
    cr_expect_eq(ol__steprate_count(r), OL_STEPRATE_MAX,
                 "no more than the cap is tracked");
    snprintf(name, sizeof name, "agent-%u", OL_STEPRATE_MAX + 5);
    cr_expect_eq(ol__steprate_get(r, name, 2000), 0.0,
                 "past the cap: not tracked (idle)");
    ol__steprate_destroy(r);
}

/* ol__steprate_busy() gives get()'s answer, whatever the agent's history:
 * agents that speed up, slow down, burst, stop, or never stepped. */
Test(steprate, busy_agrees_with_the_rate)
{
    struct ol__steprate *r = ol__steprate_create();
    static const uint64_t every[] = {10, 100, 400, 600, 1000, 5000};
    char name[32];
    uint64_t t = 0;
    unsigned wrong = 0, busy = 0, checked = 0;

    cr_assert_not_null(r);
    cr_expect_eq(ol__steprate_hot(r), 0);
    for (int round = 0; round < 40; round++) {
        t += 250;
        for (unsigned i = 0; i < 60; i++) {
            /* agent i steps at every[(i + round / 10) % 6]: each changes
             * pace every 10 rounds; agents 50.. stop after round 20 */
            uint64_t e = every[(i + (unsigned)round / 10) % 6];

            snprintf(name, sizeof name, "a%u", i);
            if (i >= 50 && round > 20)
                continue;
            for (uint64_t s = t - 250 + e; s <= t; s += e)
                ol__steprate_note(r, name, s);
        }
        for (unsigned i = 0; i < 62; i++) { /* 60 and 61: never seen */
            int want, got;

            snprintf(name, sizeof name, "a%u", i);
            want = ol__steprate_get(r, name, t) >= OL_PL_BUSY_CPS;
            got = ol__steprate_busy(r, name, t, OL_PL_BUSY_CPS);
            wrong += (unsigned)(want != got);
            busy += (unsigned)got;
            checked++;
        }
    }
    cr_expect_eq(wrong, 0, "%u of %u answers differ", wrong, checked);
    cr_expect(busy > 100 && busy < checked - 100,
              "both answers were given: %u busy of %u", busy, checked);
    cr_expect(ol__steprate_hot(r) < 60, "slow agents are not hot: %zu",
              ol__steprate_hot(r));
    cr_expect_eq(ol__steprate_busy(NULL, "a0", t, OL_PL_BUSY_CPS), 0);
    ol__steprate_destroy(r);
}

/* Only agents that ever reached OL_STEPRATE_HOT_CPS are hot, and one
 * leaves the set when a slower checkpoint brings its rate below. */
Test(steprate, the_hot_set_follows_the_rates)
{
    struct ol__steprate *r = ol__steprate_create();
    uint64_t t = 0, u = 0;

    cr_assert_not_null(r);
    feed(r, "slow", 60, 2000, &t); /* 0.5/s */
    cr_expect_eq(ol__steprate_hot(r), 0, "0.5/s is not hot");
    feed(r, "fast", 200, 50, &u); /* 20/s */
    cr_expect_eq(ol__steprate_hot(r), 1);
    cr_expect(ol__steprate_busy(r, "fast", u, OL_PL_BUSY_CPS));
    cr_expect(!ol__steprate_busy(r, "fast", u + 60000, OL_PL_BUSY_CPS),
              "decayed while silent, though still in the set");
    feed(r, "fast", 10, 5000, &u); /* slows to 0.2/s */
    cr_expect_eq(ol__steprate_hot(r), 0, "left the set");
    ol__steprate_destroy(r);
}
