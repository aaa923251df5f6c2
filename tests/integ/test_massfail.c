/*
 * A node hosting hundreds of agents dies at once: every one of them must
 * resume on the survivors under a new epoch, spread over both (not all
 * onto one), with the invariant checker passing afterwards.  Enough agents
 * move that the new owners start them in several slices of loop time
 * (runtime/resume.h).  The leader may have only MOVES_IN_FLIGHT moves
 * proposed and not yet applied (replication/cluster_place.c): the failed
 * node's agents must move in several passes, none larger.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/cluster.h"

#define AGENTS 600
#define LEADER_MS 15000
#define MOVE_MS 60000
#define MOVES_IN_FLIGHT 64

static struct tc c;
static struct tc_agent rows[AGENTS + 16];

static void teardown(void)
{
    tc_cleanup(&c);
}

TestSuite(massfail, .fini = teardown, .timeout = 300);

/* Agents placed and running with a first checkpoint, as node `via` has
 * them. */
static int started(int via)
{
    int n = tc_agents(&c, via, rows, AGENTS + 16), ok = 0;

    for (int i = 0; i < n; i++)
        ok += rows[i].owner != 0 && rows[i].seq > 0 &&
              strcmp(rows[i].status, "running") == 0;
    return ok;
}

/* The running agents node `owner` hosts, as node `via` has them (tests'
 * tc_agents_on() sees only 64 rows). */
static int on(int via, int owner, struct tc_agent *out)
{
    int n = tc_agents(&c, via, rows, AGENTS + 16), k = 0;

    for (int i = 0; i < n && k < AGENTS; i++)
        if (rows[i].owner == c.nodes[owner].id &&
            strcmp(rows[i].status, "running") == 0)
            out[k++] = rows[i];
    return k;
}

/* The leader's failover passes, from its log.  A pass logs its moves one
 * line each, "placement: 'NAME' -> node N epoch E (failover)", at info
 * for up to 16 moves and at debug for more, which it then sums up at info
 * in consecutive lines "placement: K agent(s) -> node N (failover)", one
 * per target.  Passes run on ticks tens of ms apart, so lines more than
 * 10 ms apart, or with another line between, are of different passes.
 * Returns how many passes; the largest goes to *largest, the moves in all
 * to *total. */
static int failover_passes(int leader, int *largest, int *total)
{
    FILE *f = fopen(c.nodes[leader].d.log, "r");
    char line[2048];
    int passes = 0, run = 0, in_run = 0;
    long run_ms = 0;

    *largest = *total = 0;
    cr_assert_not_null(f, "open %s", c.nodes[leader].d.log);
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "placement: ");
        int k, hh, mm, ss, ms;
        long at;

        if (p == NULL || strstr(p, "(failover)") == NULL) {
            in_run = 0;
            run = 0;
            continue;
        }
        if (strstr(line, " debug "))
            continue; /* one of a pass summed up after it */
        if (sscanf(p, "placement: %d agent(s)", &k) != 1)
            k = 1; /* one move's own line */
        /* "2026-11-27T21:44:14.943Z info  placement: ..." */
        cr_assert_eq(sscanf(line, "%*10sT%d:%d:%d.%dZ", &hh, &mm, &ss, &ms),
                     4, "a log line without its time: %s", line);
        at = ((hh * 60L + mm) * 60 + ss) * 1000 + ms;
        if (in_run && labs(at - run_ms) > 10)
            in_run = 0;
        if (!in_run) {
            passes++;
            run = 0;
            run_ms = at;
        }
        in_run = 1;
        run += k;
        *total += k;
        if (run > *largest)
            *largest = run;
    }
    fclose(f);
    return passes;
}

static void spawn_all(int via)
{
    char name[32], err[512];

    for (int i = 0; i < AGENTS; i++) {
        snprintf(name, sizeof name, "m%04d", i);
        cr_assert_eq(td_spawn_agent(&c.nodes[via].d, "counter", name,
                                    "{\"interval_ms\": 500}", err,
                                    sizeof err),
                     0, "spawn '%s': %s", name, err);
    }
}

Test(massfail, a_dead_nodes_agents_all_resume_spread_over_the_survivors)
{
    struct tc_opts o = {.n = 3, .tag = "mf-",
                        .cluster_extra = "moves_in_flight = 64"};
    static struct tc_agent moved[AGENTS];
    int leader, victim, n_moved, per[3] = {0}, n, passes, largest, total;
    uint64_t end;
    char why[512];

    tc_init(&c, &o);
    tc_start(&c);
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0, "no leader elected");
    spawn_all(leader);
    end = td_ms() + 60000;
    while (started(leader) < AGENTS && td_ms() < end)
        td_sleep_ms(200);
    cr_assert_eq(started(leader), AGENTS, "not all %d agents started",
                 AGENTS);
    /* The follower hosting more of them. */
    victim = on(leader, (leader + 1) % 3, moved) >=
                     on(leader, (leader + 2) % 3, moved)
                 ? (leader + 1) % 3
                 : (leader + 2) % 3;
    n_moved = on(leader, victim, moved);
    cr_assert_gt(n_moved, AGENTS / 6, "node %d hosts only %d agents",
                 victim + 1, n_moved);
    tc_kill(&c, victim);
    cr_assert(tc_wait_moved(&c, leader, moved, n_moved, victim, MOVE_MS, why,
                            sizeof why),
              "node %d's %d agents did not all resume elsewhere: %s",
              victim + 1, n_moved, why);
    n = tc_agents(&c, leader, rows, AGENTS + 16);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n_moved; k++)
            if (strcmp(rows[i].name, moved[k].name) == 0) {
                int to = tc_index(&c, rows[i].owner);

                cr_assert(to >= 0 && to != victim, "'%s' is on node %d",
                          rows[i].name, to + 1);
                per[to]++;
            }
    for (int i = 0; i < 3; i++)
        if (i != victim)
            cr_expect_gt(per[i], n_moved / 4,
                         "node %d took only %d of the %d agents", i + 1,
                         per[i], n_moved);
    cr_log_info("%d agents moved off node %d: %d and %d to the survivors",
                n_moved, victim + 1, per[(victim + 1) % 3],
                per[(victim + 2) % 3]);
    /* Paced: each pass at most MOVES_IN_FLIGHT, so at least this many. */
    passes = failover_passes(leader, &largest, &total);
    cr_expect_leq(largest, MOVES_IN_FLIGHT, "one pass moved %d agents, "
                                            "past moves_in_flight",
                  largest);
    cr_expect_geq(passes, (n_moved + MOVES_IN_FLIGHT - 1) / MOVES_IN_FLIGHT,
                  "%d agents moved in %d pass(es) of up to %d", n_moved,
                  passes, MOVES_IN_FLIGHT);
    cr_expect_geq(total, n_moved, "the leader's log sums up %d moves of "
                                  "%d agents",
                  total, n_moved);
    cr_log_info("%d moves in %d passes, the largest %d", total, passes,
                largest);
    cr_assert_eq(tc_start_node(&c, victim, 15000), 0,
                 "node %d did not restart", victim + 1);
    cr_expect_eq(tc_check(&c, 30000), 0, "the invariant checker failed");
}
