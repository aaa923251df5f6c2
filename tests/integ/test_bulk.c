/*
 * Bulk operations against real nodes: `outlast spawn KIND NAME...` and
 * `--prefix P --count N`, `stop`/`start` with a list, a prefix or --all,
 * on one node and on a 3-node cluster; each bulk request committed in few
 * log entries (group commits on one node, raft entries in a cluster);
 * bad names refused one by one while the good ones are created; a retried
 * bulk request with the same request id applied once; and a config that
 * declares 20,000 agents, which the node starts.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/cluster.h"
#include "tests/support/daemon.h"

#define WAIT_MS 60000
#define SLOW_WAIT_MS 180000 /* a thousand agents on a loaded machine */

static struct td d;
static struct tc c;

static void teardown(void)
{
    td_cleanup(&d);
    tc_cleanup(&c);
}

TestSuite(bulk, .fini = teardown, .timeout = 600);

/* Run the CLI against socket `sock`; its exit code, output in *out. */
static int cli(char **out, const char *sock, const char *args)
{
    return td_sh(out, "%s --socket %s %s 2>&1", td_bin("outlast"), sock,
                 args);
}

/* `outlast ARGS --json` that must exit with `want`: its JSON. */
static json_t *cli_json(const char *sock, const char *args, int want)
{
    char *out = NULL;
    int rv = td_sh(&out, "%s --socket %s --json %s 2>/dev/null",
                   td_bin("outlast"), sock, args);
    json_t *j;

    cr_assert_eq(rv, want, "outlast %s: exit %d, not %d: %s", args, rv, want,
                 out ? out : "");
    j = json_loads(out ? out : "", 0, NULL);
    cr_assert_not_null(j, "outlast %s: not JSON: %s", args, out);
    free(out);
    return j;
}

static int64_t jint(json_t *j, const char *a, const char *b)
{
    json_t *v = json_object_get(j, a);

    if (b)
        v = json_object_get(v, b);
    cr_assert(json_is_integer(v), "no %s.%s", a, b ? b : "");
    return json_integer_value(v);
}

/* A field of node `sock`'s `status --json`. */
static int64_t status_int(const char *sock, const char *a, const char *b)
{
    json_t *j = cli_json(sock, "status", 0);
    int64_t v = jint(j, a, b);

    json_decref(j);
    return v;
}

struct want_status {
    const char *sock, *status;
    int64_t n;
};

static int status_is(struct td *unused, void *arg)
{
    struct want_status *w = arg;

    (void)unused;
    return status_int(w->sock, "agents", w->status) == w->n;
}

/* Wait until `sock`'s status counts `n` agents with `status`. */
static void wait_count(const char *sock, const char *status, int64_t n)
{
    struct want_status w = {sock, status, n};

    cr_assert(td_until(status_is, NULL, &w, SLOW_WAIT_MS),
              "never %" PRId64 " agents %s (now %" PRId64 ")", n, status,
              status_int(sock, "agents", status));
}

/* The result for agent `name` in a bulk answer. */
static json_t *result_of(json_t *j, const char *name)
{
    json_t *res = json_object_get(j, "results"), *r;
    size_t i;

    json_array_foreach(res, i, r)
    {
        if (strcmp(json_string_value(json_object_get(r, "name")), name) == 0)
            return r;
    }
    cr_assert_fail("no result for '%s'", name);
    return NULL;
}

static void start_single(const char *tag)
{
    td_init(&d, tag, NULL);
    cr_assert_eq(td_start(&d, WAIT_MS), 0, "see %s", d.log);
}

/* Bulk spawn, stop and start by prefix on one node. */
static void spawn_stop_start(const char *sock, int64_t before,
                             int64_t (*entries)(void))
{
    json_t *j = cli_json(sock, "spawn counter --prefix b- --count 1000", 0);
    int64_t used = entries() - before;

    cr_assert_eq(jint(j, "requested", NULL), 1000);
    cr_assert_eq(jint(j, "succeeded", NULL), 1000);
    cr_assert_eq(jint(j, "failed", NULL), 0);
    cr_assert_eq(json_array_size(json_object_get(j, "results")), 1000);
    json_decref(j);
    cr_log_info("bulk spawn of 1000 agents: %" PRId64 " log entries",
                used);
    cr_assert_lt(used, 100, "1000 spawns took %" PRId64 " entries", used);
    wait_count(sock, "running", 1000);

    /* b-1, b-10..b-19 and b-100..b-199: 111 agents. */
    j = cli_json(sock, "stop --prefix b-1", 0);
    cr_assert_eq(jint(j, "succeeded", NULL), 111);
    json_decref(j);
    wait_count(sock, "stopped", 111);
    cr_assert_eq(status_int(sock, "agents", "running"), 889);
    j = cli_json(sock, "start --prefix b-1", 0);
    cr_assert_eq(jint(j, "succeeded", NULL), 111);
    json_decref(j);
    wait_count(sock, "running", 1000);
}

static int64_t single_batches(void)
{
    return status_int(d.sock, "commits", "batches");
}

Test(bulk, one_node_spawns_stops_and_starts_a_thousand_in_few_commits)
{
    char *out = NULL;
    json_t *j;

    start_single("bulk1");
    spawn_stop_start(d.sock, single_batches(), single_batches);

    /* An empty prefix means every agent only with --all. */
    cr_assert_eq(cli(&out, d.sock, "stop --prefix ''"), 2, "%s", out);
    cr_assert(strstr(out, "--all"), "%s", out);
    free(out);
    out = NULL;
    cr_assert_eq(cli(&out, d.sock, "stop --prefix nosuch-"), 1, "%s", out);
    cr_assert(strstr(out, "no agent's name starts with 'nosuch-'"), "%s",
              out);
    free(out);
    j = cli_json(d.sock, "stop --all", 0);
    cr_assert_eq(jint(j, "succeeded", NULL), 1000);
    json_decref(j);
    wait_count(d.sock, "stopped", 1000);
}

Test(bulk, bad_names_fail_one_by_one_and_the_good_ones_are_created)
{
    json_t *j, *r;
    char *out = NULL;

    start_single("bulk2");
    j = cli_json(d.sock, "spawn counter good-1 .bad good-2 good-1 'bad/x'",
                 1);
    cr_assert_eq(jint(j, "requested", NULL), 5);
    cr_assert_eq(jint(j, "succeeded", NULL), 2);
    cr_assert_eq(jint(j, "failed", NULL), 3);
    cr_assert(json_is_true(json_object_get(result_of(j, "good-2"), "ok")));
    r = result_of(j, ".bad");
    cr_assert(json_is_false(json_object_get(r, "ok")));
    cr_assert_str_eq(json_string_value(json_object_get(r, "code")),
                     "OL_EINVAL");
    cr_assert(strstr(json_string_value(json_object_get(r, "error")),
                     "agent name must be"));
    cr_assert(json_is_false(json_object_get(result_of(j, "bad/x"), "ok")));
    /* good-1 twice: the first is created, the second refused. */
    r = json_array_get(json_object_get(j, "results"), 3);
    cr_assert(strstr(json_string_value(json_object_get(r, "error")),
                     "named twice"));
    json_decref(j);

    /* One that exists fails as a single spawn would; the new one works. */
    j = cli_json(d.sock, "spawn counter good-2 good-3", 1);
    r = result_of(j, "good-2");
    cr_assert(json_is_false(json_object_get(r, "ok")));
    cr_log_info("existing: %s",
                json_string_value(json_object_get(r, "error")));
    cr_assert(json_is_true(json_object_get(result_of(j, "good-3"), "ok")));
    json_decref(j);
    wait_count(d.sock, "running", 3);

    /* The human form: a line per agent and a summary. */
    cr_assert_eq(cli(&out, d.sock, "stop good-1 good-3 nosuch"), 1, "%s",
                 out);
    cr_assert(strstr(out, "ok     good-1"), "%s", out);
    cr_assert(strstr(out, "error  nosuch"), "%s", out);
    cr_assert(strstr(out, "stop: 2 of 3 agent(s) ok, 1 failed"), "%s", out);
    free(out);
    out = NULL;
    /* An unknown kind fails the whole request: it is every agent's. */
    cr_assert_eq(cli(&out, d.sock, "spawn nosuchkind x1 x2"), 1, "%s", out);
    free(out);
}

Test(bulk, a_retried_bulk_request_applies_once)
{
    json_t *j;
    int64_t epoch;

    start_single("bulk3");
    j = cli_json(d.sock, "spawn counter --prefix r- --count 50 "
                         "--request-id fill-r",
                 0);
    cr_assert_eq(jint(j, "succeeded", NULL), 50);
    epoch = json_integer_value(json_object_get(result_of(j, "r-7"),
                                               "epoch"));
    json_decref(j);
    /* Sent again: the same outcomes, nothing spawned twice. */
    j = cli_json(d.sock, "spawn counter --prefix r- --count 50 "
                         "--request-id fill-r",
                 0);
    cr_assert_eq(jint(j, "succeeded", NULL), 50);
    json_decref(j);
    /* Without the id the same names exist already. */
    j = cli_json(d.sock, "spawn counter r-1 r-2", 1);
    cr_assert_eq(jint(j, "failed", NULL), 2);
    json_decref(j);
    cr_assert_eq(status_int(d.sock, "agents", "total"), 50);

    /* stop then start under request ids; each retried. */
    j = cli_json(d.sock, "stop --prefix r- --request-id stop-r", 0);
    cr_assert_eq(jint(j, "succeeded", NULL), 50);
    json_decref(j);
    wait_count(d.sock, "stopped", 50);
    j = cli_json(d.sock, "start --prefix r- --request-id start-r", 0);
    cr_assert_eq(jint(j, "succeeded", NULL), 50);
    json_decref(j);
    j = cli_json(d.sock, "start --prefix r- --request-id start-r", 0);
    cr_assert_eq(jint(j, "succeeded", NULL), 50);
    /* Started once: one epoch past the spawn's. */
    cr_assert_eq(json_integer_value(json_object_get(result_of(j, "r-7"),
                                                    "epoch")),
                 epoch + 1);
    json_decref(j);
    wait_count(d.sock, "running", 50);
}

/* As a single spawn: each answers after its first checkpoint, and one
 * whose plugin refuses the config fails with the plugin's reason (the
 * agent is kept, quarantined); with --no-wait they answer at commit. */
Test(bulk, a_bulk_spawn_waits_for_first_checkpoints_unless_no_wait)
{
    json_t *j, *r;
    size_t i;

    start_single("bulk4");
    j = cli_json(d.sock, "spawn lifecycle --prefix lf- --count 3 --config "
                         "'{\"fail\": \"no thanks\"}'",
                 1);
    cr_assert_eq(jint(j, "failed", NULL), 3);
    json_array_foreach(json_object_get(j, "results"), i, r)
    {
        cr_assert_str_eq(json_string_value(json_object_get(r, "code")),
                         "OL_EPLUGIN");
        cr_assert(strstr(json_string_value(json_object_get(r, "error")),
                         "no thanks"));
    }
    json_decref(j);
    cr_assert_eq(status_int(d.sock, "agents", "quarantined"), 3);

    /* Each answered after its first checkpoint: a head seq. */
    j = cli_json(d.sock, "spawn counter w-1 w-2", 0);
    json_decref(j);
    j = cli_json(d.sock, "show w-2", 0);
    cr_assert_geq(jint(j, "agent", "seq"), 1);
    json_decref(j);
    j = cli_json(d.sock, "spawn counter --no-wait nw-1 nw-2", 0);
    cr_assert_eq(jint(j, "succeeded", NULL), 2);
    json_decref(j);
}

static int64_t cluster_applied(void)
{
    struct tc_status st;

    cr_assert_eq(tc_status(&c, 0, &st), 0);
    return (int64_t)st.applied_index;
}

Test(bulk, a_cluster_spawns_a_thousand_in_few_raft_entries)
{
    struct tc_opts o = {.n = 3, .tag = "bulkc"};
    int leader, via;

    tc_init(&c, &o);
    tc_start(&c);
    leader = tc_wait_leader(&c, 0, WAIT_MS);
    cr_assert_geq(leader, 0);
    /* Through a follower: its proposals are forwarded to the leader. */
    via = (leader + 1) % 3;
    spawn_stop_start(c.nodes[via].d.sock, cluster_applied(),
                     cluster_applied);
    cr_assert_eq(tc_check(&c, WAIT_MS), 0);
}

/* A config of 20,000 [agent.NAME] sections loads, and the node starts
 * them all. */
Test(bulk, a_config_may_declare_twenty_thousand_agents)
{
    enum { N = 20000 };
    size_t cap = (size_t)N * 128, len = 0;
    char *extra = malloc(cap);

    cr_assert_not_null(extra);
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(extra + len, cap - len,
                                "[agent.cfg-%05d]\nkind = counter\n"
                                "config = {\"interval_ms\": 60000}\n",
                                i);
    td_init(&d, "bulkcfg", extra);
    free(extra);
    cr_assert_eq(td_start(&d, SLOW_WAIT_MS), 0, "see %s", d.log);
    wait_count(d.sock, "running", N);
    cr_assert_eq(status_int(d.sock, "agents", "total"), N);
}

/* The names `outlast agents ARGS --json` lists, in order, into names[]
 * (at most cap); returns how many. */
static int list_names(const char *args, char names[][16], int cap)
{
    json_t *j = cli_json(d.sock, args, 0), *a;
    size_t i;
    int n = 0;

    json_array_foreach(json_object_get(j, "agents"), i, a)
    {
        cr_assert_lt(n, cap, "more than %d agents for '%s'", cap, args);
        snprintf(names[n++], 16, "%s",
                 json_string_value(json_object_get(a, "name")));
    }
    json_decref(j);
    return n;
}

/* `agents` filters by kind, name prefix, status and owner, and pages with
 * --limit/--after through every agent exactly once, in name order. */
Test(bulk, agents_filters_and_pages)
{
    char names[64][16], all[64][16], args[96];
    int n, total = 0;

    start_single("bulk-list");
    json_decref(cli_json(d.sock, "spawn counter --prefix p- --count 25", 0));
    json_decref(cli_json(d.sock, "spawn ledger --prefix q- --count 7", 0));
    json_decref(cli_json(d.sock, "stop q-3", 0));

    n = list_names("agents --kind ledger", names, 64);
    cr_expect_eq(n, 7, "%d ledger agents", n);
    for (int i = 0; i < n; i++)
        cr_expect_eq(strncmp(names[i], "q-", 2), 0, "%s is no ledger",
                     names[i]);
    n = list_names("agents --prefix p-1", names, 64);
    cr_expect_eq(n, 11, "p-1 and p-10..p-19: %d", n);
    n = list_names("agents --status stopped", names, 64);
    cr_expect(n == 1 && strcmp(names[0], "q-3") == 0, "stopped: %d", n);
    cr_expect_eq(list_names("agents --owner 1", names, 64), 32);
    cr_expect_eq(list_names("agents --owner 2", names, 64), 0);

    snprintf(args, sizeof args, "agents --limit 10");
    for (int page = 0; page < 10; page++) {
        n = list_names(args, names, 64);
        cr_assert_leq(n, 10, "a page of %d", n);
        for (int i = 0; i < n; i++, total++) {
            cr_assert_lt(total, 32, "more than 32 agents over the pages");
            snprintf(all[total], 16, "%s", names[i]);
            if (total > 0)
                cr_expect_gt(strcmp(all[total], all[total - 1]), 0,
                             "%s after %s: not in order, or twice",
                             all[total], all[total - 1]);
        }
        if (n < 10)
            break;
        snprintf(args, sizeof args, "agents --limit 10 --after %s",
                 names[n - 1]);
    }
    cr_expect_eq(total, 32, "the pages held %d agents", total);
}
