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
 *
 * The `faults` tests do the same under a seeded schedule of kill -9 and
 * SIGSTOP of the keeper's owner at random moments, while the exchange
 * waits before executing each order and again before answering: faults
 * land between the commit of an intent and its perform(), during it, and
 * after the world acted but before the outcome is checkpointed.  At the
 * end every effect the committed chain declared is done, in the ledger
 * exactly once by key, and nothing else is in the ledger.  The seed is
 * logged; OL_FX_SEED=S reruns a schedule.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
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
/* Orders k1 places (more under the fault schedules, so faults land
 * throughout). */
static int n_orders = ORDERS;

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
             "\"interval_ms\": 20, \"max_orders\": %d%s}", x.port, n_orders,
             n_orders > ORDERS ? ", \"low\": 9995, \"high\": 10005" : "");
}

/* A node with agent k1 of kind keeper, allowed to open sockets. */
static void start_node(void)
{
    char extra[512], cfg[256];

    keeper_config(cfg, sizeof cfg);
    /* Every checkpoint kept, so the chain lists every effect. */
    snprintf(extra, sizeof extra, "[plugin.keeper]\nallow_network = true\n"
             "[checkpoint]\nretain = 0\n"
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
               td_state_int(n, "k1", "failed", 0) >= n_orders;
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
    char keys[128][33], line[512];
    FILE *f = fopen(x.ledger, "r");
    long long epoch, top = 0;
    int n = 0;

    cr_assert_not_null(f, "no ledger");
    while (n < 128 && fgets(line, sizeof line, f) != NULL) {
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
               tc_state_int(&c, w->node, "k1", "failed", 0) >= n_orders;
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

/* ---- seeded faults ---- */

static uint64_t rng;

static void seed_from_env(uint64_t dflt)
{
    const char *s = getenv("OL_FX_SEED");

    rng = s ? strtoull(s, NULL, 10) : dflt;
    cr_log_info("seed %" PRIu64 " (rerun with OL_FX_SEED=%" PRIu64 ")", rng,
                rng);
    rng = rng * 2654435761u + 1;
}

/* xorshift64*: the same schedule for the same seed. */
static uint64_t rnd(uint64_t below)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (rng * 2685821657736338717ull) % below;
}

/* The agent's effects as `outlast effects k1 --json` on `sock` lists
 * them, checked against the ledger: every effect done, each key in the
 * ledger once, and no key in the ledger that the chain did not declare.
 * Returns how many effects. */
static int check_world(const char *sock)
{
    char *out = NULL;
    json_error_t je;
    json_t *root, *list, *e;
    size_t i;
    int lines, found;

    cr_assert_eq(td_sh(&out, "%s --socket %s --json effects k1 --limit 1000 "
                       "2>&1", td_bin("outlast"), sock), 0, "effects: %s",
                 out);
    root = json_loads(out, 0, &je);
    cr_assert_not_null(root, "effects --json: %s: %s", je.text, out);
    list = json_object_get(json_object_get(root, "effects"), "effects");
    cr_assert(json_is_array(list), "no effects list: %s", out);
    json_array_foreach(list, i, e) {
        const char *key = json_string_value(json_object_get(e, "key"));
        const char *st = json_string_value(json_object_get(e, "state"));
        char needle[64];

        cr_assert(key && st, "an effect without key or state");
        cr_expect_str_eq(st, "done", "effect %s ended %s", key, st);
        snprintf(needle, sizeof needle, "\"key\":\"%s\"", key);
        found = xch_file_has(x.ledger, needle);
        cr_expect(found, "effect %s is done but not in the ledger", key);
    }
    lines = distinct_keys();
    cr_expect_eq((size_t)lines, json_array_size(list),
                 "the ledger has %d orders, the chain declared %zu", lines,
                 json_array_size(list));
    found = (int)json_array_size(list);
    json_decref(root);
    free(out);
    return found;
}

static void freeze_for(pid_t pid, int ms)
{
    cr_assert_gt(nf_freeze(pid), 0);
    td_sleep_ms(ms);
    nf_thaw(pid);
}

static int settled_or_flight(struct td *n, void *arg)
{
    int64_t one = 1;

    return settled(n, arg) || in_flight(n, &one);
}

Test(keeper, faults_on_one_node)
{
    char err[PATH_MAX + 128], *out = NULL;

    seed_from_env(11);
    n_orders = 16;
    cr_assert_eq(xch_start4(&x, "--delay-ms", "250", "--reply-delay-ms",
                            "250", err, sizeof err), 0, "%s", err);
    start_node();
    for (int round = 0; round < 8 && !settled(&d, NULL); round++) {
        int wait = (int)rnd(600), what = (int)rnd(2);

        td_until(settled_or_flight, &d, NULL, WAIT_MS);
        td_sleep_ms(wait);
        cr_log_info("round %d: after %d ms, %s", round, wait,
                    what ? "SIGSTOP" : "kill -9");
        if (what) {
            freeze_for(d.pid, 100 + (int)rnd(700));
        } else {
            td_kill9(&d);
            td_sleep_ms((int)rnd(300));
            cr_assert_eq(td_start(&d, 15000), 0, "no restart; see %s",
                         d.log);
        }
    }
    cr_assert(td_until(settled, &d, NULL, WAIT_MS),
              "%" PRId64 " done and %" PRId64 " failed of %d orders; see %s",
              st("done"), st("failed"), n_orders, d.log);
    cr_expect_eq(st("done"), n_orders);
    cr_expect_eq(check_world(d.sock), n_orders);
    cr_assert_eq(td_term(&d, 20000), 0);
    cr_expect_eq(td_sh(&out, "%s --data-dir %s verify", td_bin("outlast"),
                       d.data), 0, "verify: %s", out);
    free(out);
}

/* A fault on k1's current owner: kill -9 (started again after a while) or
 * a freeze of 0.5-2.5 failover times; returns the node it hit. */
static int fault_owner(int leader)
{
    struct tc_agent row;
    int owner = owner_of(leader, &row), what = (int)rnd(2);

    if (owner < 0)
        return -1;
    cr_log_info("%s node %d (owns k1, epoch %" PRIu64 ")",
                what ? "freeze" : "kill -9", owner + 1, row.epoch);
    if (what) {
        freeze_for(c.nodes[owner].d.pid, 500 + (int)rnd(2000));
    } else {
        tc_kill(&c, owner);
        td_sleep_ms(1500 + (int)rnd(1500));
        cr_assert_eq(tc_start_node(&c, owner, 15000), 0,
                     "node %d did not restart", owner + 1);
    }
    return owner;
}

Test(keeper, faults_on_the_owner_in_a_cluster)
{
    struct on_node w;
    char err[PATH_MAX + 128];
    int leader;

    seed_from_env(23);
    n_orders = 30;
    cr_assert_eq(xch_start4(&x, "--delay-ms", "250", "--reply-delay-ms",
                            "250", err, sizeof err), 0, "%s", err);
    leader = start_cluster();
    for (int round = 0; round < 6; round++) {
        int wait = (int)rnd(800);

        td_sleep_ms(wait);
        leader = tc_wait_leader(&c, 0, 20000);
        cr_assert_geq(leader, 0, "no leader after round %d", round);
        w.node = leader;
        if (cluster_settled(NULL, &w))
            break;
        cr_log_info("round %d: after %d ms", round, wait);
        fault_owner(leader);
    }
    leader = tc_wait_leader(&c, 0, 20000);
    cr_assert_geq(leader, 0, "no leader at the end");
    w.node = leader;
    cr_assert(td_until(cluster_settled, &c.nodes[leader].d, &w, WAIT_MS),
              "%" PRId64 " orders done",
              tc_state_int(&c, leader, "k1", "done", 0));
    tw_window_ms(1500);
    cr_expect_eq(tc_state_int(&c, leader, "k1", "done", 0), n_orders);
    cr_expect_eq(check_world(c.nodes[leader].d.sock), n_orders);
    cr_log_info("stale-epoch requests the exchange refused: %d",
                xch_lines(x.rejects));
    cr_expect_eq(tc_check(&c, WAIT_MS), 0);
}
