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
 * the chain verifies.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/daemon.h"
#include "tests/support/exchange.h"
#include "tests/support/wait.h"

#define WAIT_MS 60000
#define ORDERS 6

static struct td d;
static struct xch x;

static void setup(void)
{
    cr_assert_eq(xch_init(&x), 0, "mkdtemp");
}

static void teardown(void)
{
    td_cleanup(&d);
    xch_cleanup(&x);
}

TestSuite(keeper, .init = setup, .fini = teardown, .timeout = 300);

/* A node with agent k1 of kind keeper, found in examples/keeper beside
 * the usual plugin dirs, allowed to open sockets. */
static void start_node(void)
{
    char extra[512], *out = NULL;

    snprintf(extra, sizeof extra,
             "[plugin.keeper]\nallow_network = true\n"
             "[agent.k1]\nkind = keeper\n"
             "config = {\"exchange\": \"http://127.0.0.1:%d\", "
             "\"interval_ms\": 20, \"max_orders\": %d}\n", x.port, ORDERS);
    td_init(&d, "keeper", extra);
    cr_assert_eq(td_sh(&out, "sed -i 's|^plugin_dir = .*|&:%s/examples/"
                       "keeper|' %s", getenv("OL_BUILD_ROOT"), d.conf), 0,
                 "sed: %s", out);
    free(out);
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

/* Every ledger line's key, each seen once; returns how many lines. */
static int distinct_keys(void)
{
    char keys[64][33], line[512];
    FILE *f = fopen(x.ledger, "r");
    int n = 0;

    cr_assert_not_null(f, "no ledger");
    while (n < 64 && fgets(line, sizeof line, f) != NULL) {
        const char *k = strstr(line, "\"key\":\"");
        cr_assert_not_null(k, "a ledger line without a key: %s", line);
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
