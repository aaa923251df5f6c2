/* The deterministic simulation as part of the suite: the Figure-8 schedule
 * and a bounded number of random schedules (scripts/soak-sim.sh runs
 * more). */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/log.h"
#include "sim.h"

static void quiet(void)
{
    ol_log_set_level(-1);
}

TestSuite(sim, .init = quiet);

/* The schedule still makes libraft 0.15 commit an entry of an earlier
 * term early: an FSM that applies what libraft commits reports entry A
 * committed, and A is gone once S5 leads.  (This proves the test below
 * exercises the hazard, not a schedule that never reaches it.) */
Test(sim, figure8_loses_an_acknowledged_checkpoint_without_the_hold)
{
    struct sim_result r;

    cr_assert_eq(sim_figure8(1, 0, &r), 0, "%s", r.first);
    cr_assert_geq(r.acked, 1);
    cr_assert_gt(r.violations, 0, "the naive FSM lost nothing: the "
                                  "schedule no longer reaches Figure 8");
    cr_log_info("naive apply: %s", r.first);
}

Test(sim, figure8_outlast_fsm_loses_nothing)
{
    struct sim_result r;

    cr_assert_eq(sim_figure8(0, 0, &r), 0, "%s", r.first);
    cr_assert_geq(r.held_max, 1, "S1 never held entry A back");
    cr_assert_geq(r.acked, 1, "the survivors' entry was never reported");
    cr_assert_eq(r.violations, 0, "%s", r.first);
}

/* OL_SIM_SEEDS sets how many random schedules run (default 300). */
Test(sim, random_schedules_keep_every_invariant, .timeout = 900)
{
    const char *env = getenv("OL_SIM_SEEDS");
    uint64_t n = env ? strtoull(env, NULL, 10) : 300, bad = 0, paced = 0;
    struct sim_opts o = {0};
    struct sim_result r;

    for (uint64_t seed = 1; seed <= n; seed++) {
        o.seed = seed;
        cr_assert_eq(sim_run(&o, &r), 0, "seed %" PRIu64 ": %s", seed,
                     r.first);
        paced += r.paced;
        if (r.violations) {
            bad++;
            cr_log_error("seed %" PRIu64 ": %s (rerun: outlast-sim --seed "
                         "%" PRIu64 " --verbose; databases in %s)",
                         seed, r.first, seed, r.dir);
        }
    }
    /* The leaders' appends went through the pacer, as in the daemon. */
    cr_assert_gt(paced, 0, "no leader append was held for an answer");
    cr_assert_eq(bad, 0, "%" PRIu64 " of %" PRIu64 " schedules broke an "
                         "invariant",
                 bad, n);
}
