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
