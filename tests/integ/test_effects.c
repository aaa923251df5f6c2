/*
 * Effects on the outside world against real nodes (the `effector` test
 * plugin, tests/plugins/effector.c, whose world is a journal file: one
 * line per time it was asked to act, with the key, the epoch and whether
 * the effect was in doubt).
 *
 * What is shown: nothing is performed before the checkpoint that declared
 * it commits, each effect is performed once with its own key and its
 * outcome comes back to the agent once, in an agent host and inside the
 * node; a retryable failure is tried again and the kind's policy gives up
 * with a failure event; a node killed while an effect is in flight finds
 * it in doubt on restart and, with reconcile(), asks before acting again,
 * so the world acted once.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/support/cluster.h"
#include "tests/support/daemon.h"
#include "tests/support/faults.h"
#include "tests/support/wait.h"

#define WAIT_MS 15000

static struct td d;
static struct tc c;
static char world[64], journal[96];

static void setup(void)
{
    snprintf(world, sizeof world, "/tmp/ol-fxw-XXXXXX");
    cr_assert_not_null(mkdtemp(world));
    /* An agent host started by root runs as nobody. */
    chmod(world, 0777);
    snprintf(journal, sizeof journal, "%s/journal", world);
}

static void teardown(void)
{
    char *out = NULL;

    td_cleanup(&d);
    tc_cleanup(&c);
    td_sh(&out, "rm -rf %s", world);
    free(out);
}

TestSuite(effects, .init = setup, .fini = teardown, .timeout = 240);

/* Start a node with agent e1 of kind effector, `cfg` its extra JSON keys
 * and `extra` more config sections. */
static void start(const char *tag, const char *cfg, const char *extra)
{
    char conf[1024];

    snprintf(conf, sizeof conf,
             "[agent.e1]\nkind = effector\n"
             "config = {\"journal\": \"%s\"%s%s}\n%s",
             journal, cfg[0] ? ", " : "", cfg, extra);
    td_init(&d, tag, conf);
    cr_assert_eq(td_start(&d, WAIT_MS), 0, "the node did not start");
}

static void send_do(int n)
{
    char json[32], err[256];

    snprintf(json, sizeof json, "{\"do\": %d}", n);
    cr_assert_eq(td_send_json(&d, "e1", json, err, sizeof err), 0,
                 "send: %s", err);
}

/* Lines of the journal, and how many times each key appears. */
struct lines {
    int n;
    char key[256][33];
    int times[256];
    int doubt[256];
    int distinct;
};

static void read_journal(struct lines *l)
{
    FILE *f = fopen(journal, "r");
    char line[512], key[33];
    int doubt;

    memset(l, 0, sizeof *l);
    if (f == NULL)
        return;
    while (fgets(line, sizeof line, f) && l->n < 1000) {
        int i;

        if (sscanf(line, "key=%32s", key) != 1)
            continue;
        doubt = strstr(line, " doubt=1") != NULL;
        l->n++;
        for (i = 0; i < l->distinct; i++)
            if (strcmp(l->key[i], key) == 0)
                break;
        if (i == l->distinct && l->distinct < 256)
            snprintf(l->key[l->distinct++], 33, "%s", key);
        if (i < 256) {
            l->times[i]++;
            l->doubt[i] |= doubt;
        }
    }
    fclose(f);
}

static int done_at_least(struct td *n, void *arg)
{
    return td_state_int(n, "e1", "done", 0) >= *(int64_t *)arg;
}

static void wait_done(int64_t want)
{
    cr_assert(td_until(done_at_least, &d, &want, WAIT_MS),
              "e1 has %" PRId64 " effects done, want %" PRId64,
              td_state_int(&d, "e1", "done", 0), want);
}

static void expect_each_once(int want)
{
    struct lines l;

    read_journal(&l);
    cr_expect_eq(l.distinct, want, "%d distinct keys in the journal, "
                 "want %d", l.distinct, want);
    for (int i = 0; i < l.distinct; i++)
        cr_expect_eq(l.times[i], 1, "key %s was acted on %d times",
                     l.key[i], l.times[i]);
}

static void run_five(const char *tag, const char *extra)
{
    start(tag, "", extra);
    td_wait_reached(&d, "e1", NULL, 1, WAIT_MS);
    send_do(5);
    wait_done(5);
    expect_each_once(5);
    cr_expect_eq(td_state_int(&d, "e1", "failed", -1), 0);
    cr_expect_eq(td_state_int(&d, "e1", "next", 0), 6);
}

Test(effects, each_effect_is_performed_once_in_an_agent_host)
{
    run_five("fxhost", "");
}

Test(effects, each_effect_is_performed_once_inside_the_node)
{
    run_five("fxnode", "[plugin.effector]\nisolation = none\n");
}

Test(effects, a_retryable_failure_is_tried_again_with_the_same_key)
{
    struct lines l;

    start("fxretry", "\"retry\": 2",
          "[effects.note]\nbackoff_ms = 20\nattempts = 5\n");
    td_wait_reached(&d, "e1", NULL, 1, WAIT_MS);
    send_do(2);
    wait_done(2);
    read_journal(&l);
    cr_expect_eq(l.distinct, 2);
    cr_expect_eq(l.n, 2, "only the third attempt acts: %d lines", l.n);
}

static int failed_at_least(struct td *n, void *arg)
{
    return td_state_int(n, "e1", "failed", 0) >= *(int64_t *)arg;
}

/* Send e1 one order that fails in the end (`why`: after what), check
 * that nothing was recorded done and that e1's log says `logged`. */
static void expect_failure(const char *why, const char *logged)
{
    int64_t want = 1;
    char *out = NULL;

    td_wait_reached(&d, "e1", NULL, 1, WAIT_MS);
    send_do(1);
    cr_assert(td_until(failed_at_least, &d, &want, WAIT_MS),
              "no failure event after %s", why);
    cr_expect_eq(td_state_int(&d, "e1", "done", -1), 0,
                 "an effect was recorded done");
    td_sh(&out, "%s --socket %s logs e1 2>&1", td_bin("outlast"), d.sock);
    cr_expect(out && strstr(out, logged), "the agent's log says why: %s",
              out ? out : "");
    free(out);
}

Test(effects, the_policy_gives_up_with_a_failure_event)
{
    start("fxgiveup", "\"retry\": 1000",
          "[effects.note]\nbackoff_ms = 10\nbackoff_max_ms = 20\n"
          "attempts = 4\n");
    expect_failure("the policy's 4 attempts", "gave up after 4 attempts");
}

Test(effects, a_failure_perform_reports_reaches_the_agent)
{
    int64_t want = 2;

    start("fxfail", "\"fail\": true", "");
    td_wait_reached(&d, "e1", NULL, 1, WAIT_MS);
    send_do(2);
    cr_assert(td_until(failed_at_least, &d, &want, WAIT_MS));
    cr_expect_eq(td_state_int(&d, "e1", "done", -1), 0);
}

static int journal_lines(struct td *n, void *arg)
{
    struct lines l;

    (void)n;
    read_journal(&l);
    return l.n >= *(int *)arg;
}

/* Kill the node once the world has acted but before perform() returns
 * (it sleeps `after` ms), restart it, and let the effect finish. */
static void kill_after_acting(const char *cfg, struct lines *l)
{
    int one = 1;

    start("fxdoubt", cfg, "");
    td_wait_reached(&d, "e1", NULL, 1, WAIT_MS);
    send_do(1);
    cr_assert(td_until(journal_lines, &d, &one, WAIT_MS),
              "perform() never acted");
    td_kill9(&d);
    cr_assert_eq(td_start(&d, WAIT_MS), 0, "the node did not restart");
    wait_done(1);
    read_journal(l);
    cr_assert_eq(l->distinct, 1);
}

Test(effects, after_a_crash_reconcile_finds_the_effect_done)
{
    struct lines l;

    kill_after_acting("\"after\": 3000, \"reconcile\": true", &l);
    cr_expect_eq(l.n, 1, "reconcile() found the key: the world acted once, "
                 "not %d times", l.n);
}

Test(effects, after_a_crash_without_reconcile_it_is_performed_again)
{
    struct lines l;

    kill_after_acting("\"after\": 3000", &l);
    cr_expect_eq(l.n, 2, "in doubt and no reconcile(): performed again "
                 "with the same key (%d lines)", l.n);
    cr_expect(l.doubt[0], "the second attempt was told it is in doubt");
}

/* ---- a cluster ---- */

/* Node index owning agent `name` in node `via`'s view (-1: none yet). */
static int owner_of(int via, const char *name, struct tc_agent *row)
{
    struct tc_agent ag[8];

    for (int i = 0, n = tc_agents(&c, via, ag, 8); i < n; i++)
        if (strcmp(ag[i].name, name) == 0 && ag[i].owner) {
            *row = ag[i];
            return tc_index(&c, ag[i].owner);
        }
    return -1;
}

struct done_on {
    int node;
    int64_t want;
};

static int cluster_done(struct td *n, void *arg)
{
    struct done_on *w = arg;

    (void)n;
    return tc_state_int(&c, w->node, "e1", "done", 0) >= w->want;
}

/* The owner is frozen (SIGSTOP of it and its agent host, as a paused VM)
 * after the world acted on an effect and before the answer came back.
 * The agent fails over; the new owner finds the effect in doubt, asks
 * (reconcile) and records it done.  When the frozen node wakes, its late
 * answer is not recorded: the world acted once, the agent saw the outcome
 * once, and every node's chains agree. */
Test(effects, a_frozen_owner_loses_its_effect_to_the_new_owner)
{
    struct tc_opts o = {.n = 3, .tag = "fx-frozen"};
    struct tc_agent row;
    struct done_on w = {0, 1};
    struct lines l;
    char cfg[256], err[256];
    int leader, owner = -1, via, one = 1;

    tc_init(&c, &o);
    tc_start(&c);
    leader = tc_wait_leader(&c, 0, WAIT_MS);
    cr_assert_geq(leader, 0, "no leader");
    snprintf(cfg, sizeof cfg, "{\"journal\": \"%s\", \"after\": 4000, "
             "\"reconcile\": true}", journal);
    cr_assert_eq(td_spawn_agent(&c.nodes[leader].d, "effector", "e1", cfg,
                                err, sizeof err), 0, "spawn: %s", err);
    for (uint64_t end = td_ms() + WAIT_MS; owner < 0 && td_ms() < end;)
        if ((owner = owner_of(leader, "e1", &row)) < 0)
            td_sleep_ms(50);
    cr_assert_geq(owner, 0, "e1 was never placed");
    td_wait_reached(&c.nodes[owner].d, "e1", NULL, 1, WAIT_MS);
    cr_assert_eq(td_send_json(&c.nodes[owner].d, "e1", "{\"do\": 1}", err,
                              sizeof err), 0, "send: %s", err);
    cr_assert(td_until(journal_lines, &d, &one, WAIT_MS),
              "perform() never acted");
    cr_assert_gt(nf_freeze(c.nodes[owner].d.pid), 0);
    via = (owner + 1) % c.n;
    w.node = via;
    cr_assert(tc_wait_moved(&c, via, &row, 1, owner, 20000, err, sizeof err),
              "e1 did not fail over: %s", err);
    cr_assert(td_until(cluster_done, &c.nodes[via].d, &w, WAIT_MS),
              "the new owner never recorded the effect done");
    nf_thaw(c.nodes[owner].d.pid);
    /* Observation window: the woken node's perform() returns and its
     * answer arrives; nothing of it may be recorded. */
    tw_window_ms(5000);
    read_journal(&l);
    cr_expect_eq(l.n, 1, "the world acted %d times", l.n);
    cr_expect_eq(tc_state_int(&c, via, "e1", "done", 0), 1,
                 "the outcome was recorded more than once");
    cr_expect_eq(tc_check(&c, WAIT_MS), 0);
}

static int quarantined(struct td *n, void *arg)
{
    char st[32], reason[256];
    int degraded;

    (void)arg;
    td_agent_status(n, "e1", st, sizeof st, &degraded, reason,
                    sizeof reason);
    return strcmp(st, "quarantined") == 0;
}

/* A cluster held at feature level 3 (a rolling upgrade not finished)
 * cannot carry effects in its checkpoints: host->effect() says
 * OL_AGENT_ENOTSUP, and the effector, which returns that error from
 * handle(), is quarantined; nothing reached the world. */
Test(effects, below_feature_level_4_an_effect_is_refused)
{
    struct tc_opts o = {.n = 1, .tag = "fx-level",
                        .extra = "feature_level = 3\n"};
    struct lines l;
    char cfg[128], err[256];

    tc_init(&c, &o);
    tc_start(&c);
    cr_assert_eq(tc_wait_leader(&c, 0, WAIT_MS), 0, "no leader");
    snprintf(cfg, sizeof cfg, "{\"journal\": \"%s\"}", journal);
    cr_assert_eq(td_spawn_agent(&c.nodes[0].d, "effector", "e1", cfg, err,
                                sizeof err), 0, "spawn: %s", err);
    td_wait_reached(&c.nodes[0].d, "e1", NULL, 1, WAIT_MS);
    cr_assert_eq(td_send_json(&c.nodes[0].d, "e1", "{\"do\": 1}", err,
                              sizeof err), 0, "send: %s", err);
    cr_assert(td_until(quarantined, &c.nodes[0].d, NULL, WAIT_MS),
              "e1 was not quarantined");
    cr_expect_geq(tc_log_count(&c, 0, "effect 1: -26"), 1,
                  "effect() did not return OL_AGENT_ENOTSUP");
    read_journal(&l);
    cr_expect_eq(l.n, 0);
}

/* A perform() that runs past its deadline (it sleeps 3 s; the kind's
 * timeout is 100 ms) counts as a retryable failure 1 s after the
 * deadline: the node tries again and, when the policy runs out, the
 * agent gets the failure.  The late answers are dropped. */
Test(effects, an_attempt_past_its_deadline_is_given_up_on)
{
    start("fxslow", "\"before\": 3000",
          "[effects.note]\ntimeout_ms = 100\nbackoff_ms = 10\n"
          "attempts = 2\n");
    expect_failure("two attempts that never answered",
                   "no answer by the attempt's deadline");
}
