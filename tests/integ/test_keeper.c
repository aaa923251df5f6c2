/*
 * The effects example end to end: the keeper agent (examples/keeper) in
 * an agent host of a real node, placing orders with a real
 * outlast-exchange (examples/exchange) that takes its time over each new
 * one.  The node is killed with SIGKILL twice while an order is in
 * flight: restarted at once the first time (reconcile() asks before the
 * exchange is done, so the order is POSTed again and deduplicated), and
 * once the exchange has caught up the second time (reconcile() finds the
 * order).  At the end the exchange's ledger holds every order the keeper
 * declared exactly once by key, the keeper counted each outcome once, and
 * the chain verifies.  Then a 3-node cluster whose keeper owner is frozen
 * (SIGSTOP) with an order in flight: the same, across a failover, and the
 * exchange never executes an order under an epoch below one it already
 * executed.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/cluster.h"
#include "tests/support/daemon.h"
#include "tests/support/exchange.h"
#include "tests/support/faults.h"
#include "tests/support/wait.h"

#define WAIT_MS 60000
#define ORDERS 6

static struct td d;
static struct tc c;
static struct xch x;

static void setup(void)
{
    cr_assert_eq(xch_init(&x), 0, "mkdtemp");
}

static void teardown(void)
{
    td_cleanup(&d);
    tc_cleanup(&c);
    xch_cleanup(&x);
}

TestSuite(keeper, .init = setup, .fini = teardown, .timeout = 300);

/* Adds examples/keeper to the plugin dirs of the config at `conf`. */
static void find_keeper(const char *conf)
{
    char *out = NULL;

    cr_assert_eq(td_sh(&out, "sed -i 's|^plugin_dir = .*|&:%s/examples/"
                       "keeper|' %s", getenv("OL_BUILD_ROOT"), conf), 0,
                 "sed: %s", out);
    free(out);
}

/* The config of agent k1: ORDERS orders to the exchange. */
static void keeper_config(char *buf, size_t cap)
{
    snprintf(buf, cap, "{\"exchange\": \"http://127.0.0.1:%d\", "
             "\"interval_ms\": 20, \"max_orders\": %d}", x.port, ORDERS);
}

/* A node with agent k1 of kind keeper, allowed to open sockets. */
static void start_node(void)
{
    char extra[512], cfg[256];

    keeper_config(cfg, sizeof cfg);
    snprintf(extra, sizeof extra, "[plugin.keeper]\nallow_network = true\n"
             "[agent.k1]\nkind = keeper\nconfig = %s\n", cfg);
    td_init(&d, "keeper", extra);
    find_keeper(d.conf);
    cr_assert_eq(td_start(&d, 15000), 0, "the node did not start; see %s",
                 d.log);
}

static int64_t st(const char *key)
{
    return td_state_int(&d, "k1", key, -1);
}

/* At least *arg orders declared in the committed state, and one of them
 * still without an outcome: it is being performed. */
static int in_flight(struct td *n, void *arg)
{
    int64_t decl = td_state_int(n, "k1", "declared", 0);

    return decl >= *(int64_t *)arg &&
           decl > td_state_int(n, "k1", "done", 0) +
                      td_state_int(n, "k1", "failed", 0);
}

static int settled(struct td *n, void *arg)
{
    return td_state_int(n, "k1", "done", 0) +
               td_state_int(n, "k1", "failed", 0) >= ORDERS;
}

static int ledger_has(void *arg)
{
    return xch_lines(x.ledger) >= *(int64_t *)arg;
}

/* Kills the node while an order is in flight and starts it again, at once
 * (the exchange may still be executing the order when reconcile() asks)
 * or, with `settle`, once the exchange has executed every order declared
 * (reconcile() then finds it; if the POST never left, 3 s go by). */
static void kill_in_flight(int64_t order, int settle)
{
    int64_t declared;

    cr_assert(td_until(in_flight, &d, &order, WAIT_MS),
              "no order %" PRId64 " in flight; see %s", order, d.log);
    td_kill9(&d);
    declared = st("declared");
    if (settle)
        cr_log_info("the exchange has all %" PRId64 " orders before the "
                    "restart: %s", declared,
                    tw_until(ledger_has, &declared, 3000) ? "yes" : "no");
    cr_assert_eq(td_start(&d, 15000), 0, "the node did not restart");
}

/* Every ledger line's key, each seen once, and epochs that never go
 * down (an order under an epoch below one the exchange has executed would
 * be a zombie's); returns how many lines. */
static int distinct_keys(void)
{
    char keys[64][33], line[512];
    FILE *f = fopen(x.ledger, "r");
    long long epoch, top = 0;
    int n = 0;

    cr_assert_not_null(f, "no ledger");
    while (n < 64 && fgets(line, sizeof line, f) != NULL) {
        const char *k = strstr(line, "\"key\":\"");
        const char *e = strstr(line, "\"epoch\":");
        cr_assert(k != NULL && e != NULL && sscanf(e + 8, "%lld", &epoch) == 1,
                  "a ledger line without a key or epoch: %s", line);
        cr_assert_geq(epoch, top, "epoch %lld executed after %lld: %s", epoch,
                      top, line);
        top = epoch;
        snprintf(keys[n], sizeof keys[n], "%.32s", k + 7);
        for (int i = 0; i < n; i++)
            cr_assert_str_neq(keys[i], keys[n], "key %s executed twice",
                              keys[n]);
        n++;
    }
    fclose(f);
    return n;
}

Test(keeper, every_order_once_through_two_kills)
{
    char err[PATH_MAX + 128], *out = NULL;

    cr_assert_eq(xch_start(&x, "--delay-ms", "800", err, sizeof err), 0,
                 "%s", err);
    start_node();
    kill_in_flight(2, 0);
    kill_in_flight(4, 1);
    cr_assert(td_until(settled, &d, NULL, WAIT_MS),
              "%" PRId64 " done and %" PRId64 " failed of %d orders; see %s",
              st("done"), st("failed"), ORDERS, d.log);

    cr_expect_eq(st("declared"), ORDERS);
    cr_expect_eq(st("done"), ORDERS, "every order was executed");
    cr_expect_eq(st("failed"), 0);
    cr_expect_eq(distinct_keys(), ORDERS, "the ledger holds each order once");
    cr_expect_eq(xch_lines(x.rejects), 0, "one node, one epoch: no rejects");

    /* A reconcile() that asks while the dead node's POST is still being
     * executed finds no order yet; the POST that follows is answered as a
     * duplicate.  Either way, each key once in the ledger. */
    td_sh(&out, "grep -c ' again: ' %s", x.log);
    cr_log_info("POSTs the exchange answered as duplicates: %s", out);
    free(out);

    cr_assert_eq(td_term(&d, 20000), 0);
    cr_expect_eq(td_sh(&out, "%s --data-dir %s verify", td_bin("outlast"),
                       d.data), 0, "verify: %s", out);
    free(out);
}

/* ---- a cluster ---- */

static int owner_of(int via, struct tc_agent *row)
{
    struct tc_agent ag[8];

    for (int i = 0, n = tc_agents(&c, via, ag, 8); i < n; i++)
        if (strcmp(ag[i].name, "k1") == 0 && ag[i].owner) {
            *row = ag[i];
            return tc_index(&c, ag[i].owner);
        }
    return -1;
}

struct on_node {
    int node;
    int64_t min;
};

static int cluster_in_flight(struct td *n, void *arg)
{
    const struct on_node *w = arg;
    int64_t decl = tc_state_int(&c, w->node, "k1", "declared", 0);

    return decl >= w->min &&
           decl > tc_state_int(&c, w->node, "k1", "done", 0) +
                      tc_state_int(&c, w->node, "k1", "failed", 0);
}

static int cluster_settled(struct td *n, void *arg)
{
    const struct on_node *w = arg;

    return tc_state_int(&c, w->node, "k1", "done", 0) +
               tc_state_int(&c, w->node, "k1", "failed", 0) >= ORDERS;
}

static int start_cluster(void)
{
    struct tc_opts o = {.n = 3, .tag = "keeper-c",
                        .extra = "[plugin.keeper]\nallow_network = true\n"};
    char cfg[256], err[256];
    int leader;

    tc_init(&c, &o);
    for (int i = 0; i < c.n; i++) {
        tc_write_config(&c, i);
        find_keeper(c.nodes[i].d.conf);
    }
    for (int i = 0; i < c.n; i++)
        cr_assert_eq(tc_start_node(&c, i, 15000), 0, "node %d did not start",
                     i + 1);
    leader = tc_wait_leader(&c, 0, 15000);
    cr_assert_geq(leader, 0, "no leader");
    keeper_config(cfg, sizeof cfg);
    cr_assert_eq(td_spawn_agent(&c.nodes[leader].d, "keeper", "k1", cfg, err,
                                sizeof err), 0, "spawn: %s", err);
    return leader;
}

/* The keeper's owner is frozen (SIGSTOP of the node and its agent host,
 * as a paused VM) with an order in flight.  The agent fails over under a
 * higher epoch and the new owner finishes the orders; the frozen node
 * wakes up late.  The ledger holds each order once and never executes an
 * order under an epoch lower than one it has executed, and every node's
 * chains agree. */
Test(keeper, a_frozen_owner_is_fenced_off)
{
    struct tc_agent row;
    struct on_node w;
    char err[PATH_MAX + 128];
    int leader, owner = -1, via;

    cr_assert_eq(xch_start(&x, "--delay-ms", "300", err, sizeof err), 0,
                 "%s", err);
    leader = start_cluster();
    for (uint64_t end = td_ms() + WAIT_MS; owner < 0 && td_ms() < end;)
        if ((owner = owner_of(leader, &row)) < 0)
            td_sleep_ms(50);
    cr_assert_geq(owner, 0, "k1 was never placed");
    w.node = owner;
    w.min = 2;
    cr_assert(td_until(cluster_in_flight, &c.nodes[owner].d, &w, WAIT_MS),
              "no order in flight on the owner");
    cr_assert_gt(nf_freeze(c.nodes[owner].d.pid), 0);
    via = (owner + 1) % c.n;
    cr_assert(tc_wait_moved(&c, via, &row, 1, owner, 20000, err, sizeof err),
              "k1 did not fail over: %s", err);
    w.node = via;
    cr_assert(td_until(cluster_settled, &c.nodes[via].d, &w, WAIT_MS),
              "%" PRId64 " orders done on the new owner",
              tc_state_int(&c, via, "k1", "done", 0));
    nf_thaw(c.nodes[owner].d.pid);
    /* Observation window: whatever the woken node still sends arrives. */
    tw_window_ms(3000);

    cr_expect_eq(tc_state_int(&c, via, "k1", "done", 0), ORDERS);
    cr_expect_eq(tc_state_int(&c, via, "k1", "failed", 0), 0);
    cr_expect_eq(distinct_keys(), ORDERS, "the ledger holds each order once");
    cr_log_info("stale-epoch requests the exchange refused: %d",
                xch_lines(x.rejects));
    cr_expect_eq(tc_check(&c, WAIT_MS), 0);
}
