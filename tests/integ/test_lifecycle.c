/*
 * The agent lifecycle through the CLI, against real nodes: spawn that
 * fails with the plugin's own reason, config as a committed event seen
 * once, restart, rm (final stop, then a tombstone that keeps the history
 * verifiable), configured agents that were removed staying removed, and
 * agents quarantined for a missing plugin starting again once it is
 * installed.  The `lifecycle` test plugin (tests/plugins/lifecycle.c)
 * records what it saw in its state.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/support/cluster.h"
#include "tests/support/daemon.h"
#include "tests/support/wait.h"
#include "tests/support/faults.h"

#define WAIT_MS 15000

static struct td d;
static struct tc c;

static void teardown(void)
{
    td_cleanup(&d);
    tc_cleanup(&c);
}

TestSuite(lifecycle, .fini = teardown, .timeout = 240);

/* Run the CLI against node `s`; returns its exit code, output in *out. */
static int cli(char **out, const char *sock, const char *args)
{
    return td_sh(out, "%s --socket %s %s 2>&1", td_bin("outlast"), sock,
                 args);
}

static int cli_ok(const char *sock, const char *args)
{
    char *out = NULL;
    int rv = cli(&out, sock, args);

    cr_assert_eq(rv, 0, "outlast %s: exit %d: %s", args, rv,
                 out ? out : "");
    free(out);
    return rv;
}

/* The string under `key` in the head state of `agent` ("" if none). */
static void state_str(struct td *n, const char *agent, const char *key,
                      char *out, size_t cap)
{
    void *p;
    size_t len, off = 0;
    msgpack_unpacked u;

    out[0] = '\0';
    if (td_head_state(n, agent, &p, &len) != 0)
        return;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, p, len, &off) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < u.data.via.map.size; i++) {
            const msgpack_object *k = &u.data.via.map.ptr[i].key;
            const msgpack_object *v = &u.data.via.map.ptr[i].val;

            if (k->type == MSGPACK_OBJECT_STR &&
                k->via.str.size == strlen(key) &&
                memcmp(k->via.str.ptr, key, k->via.str.size) == 0 &&
                v->type == MSGPACK_OBJECT_STR)
                snprintf(out, cap, "%.*s", (int)v->via.str.size,
                         v->via.str.ptr);
        }
    }
    msgpack_unpacked_destroy(&u);
    free(p);
}

/* Does `status --json` show the database and WAL sizes on disk? */
struct sizes_arg {
    struct td *d;
    char want_db[64], want_wal[64];
    char *out;
};

static int sizes_shown(void *arg)
{
    struct sizes_arg *a = arg;
    struct stat m, w;
    char path[300];
    int64_t wal;

    snprintf(path, sizeof path, "%s/outlast.db", a->d->data);
    cr_assert_eq(stat(path, &m), 0);
    snprintf(path, sizeof path, "%s/outlast.db-wal", a->d->data);
    wal = stat(path, &w) == 0 ? (int64_t)w.st_size : 0;
    free(a->out);
    a->out = NULL;
    cr_assert_eq(cli(&a->out, a->d->sock, "status --json"), 0, "%s",
                 a->out);
    snprintf(a->want_db, sizeof a->want_db, "\"bytes_db\": %" PRId64,
             (int64_t)m.st_size + wal);
    snprintf(a->want_wal, sizeof a->want_wal, "\"bytes_wal\": %" PRId64,
             wal);
    return strstr(a->out, a->want_db) != NULL &&
           strstr(a->out, a->want_wal) != NULL;
}

struct want_int {
    const char *agent, *key;
    int64_t at_least;
};

static int int_reached(struct td *n, void *arg)
{
    const struct want_int *w = arg;

    return td_state_int(n, w->agent, w->key, -1) >= w->at_least;
}

static void wait_int(struct td *n, const char *agent, const char *key,
                     int64_t v)
{
    struct want_int w = {agent, key, v};

    cr_assert(td_until(int_reached, n, &w, WAIT_MS),
              "agent '%s' never reached %s >= %" PRId64 " (it has %" PRId64
              "); see %s",
              agent, key, v, td_state_int(n, agent, key, -1), n->log);
}

/* One integer from the node's database, opened and closed for it. */
static int64_t q1(struct td *n, const char *sql)
{
    sqlite3 *db = td_db(n);
    int64_t v = td_q1(db, sql);

    sqlite3_close(db);
    return v;
}

/* From `history NAME --json` (newest first): how many checkpoints are
 * final, and whether the newest is. */
static int finals(struct td *n, const char *agent, int *newest_final)
{
    char *out = NULL, args[128];
    const char *p;
    int count = 0;

    snprintf(args, sizeof args, "history %s --json", agent);
    cr_assert_eq(cli(&out, n->sock, args), 0, "%s", out);
    p = strstr(out, "\"final\": ");
    *newest_final = p && strncmp(p + 9, "true", 4) == 0;
    for (; p; p = strstr(p + 1, "\"final\": "))
        count += strncmp(p + 9, "true", 4) == 0;
    free(out);
    return count;
}

static const char *status_of(struct td *n, const char *name, char *buf,
                             size_t cap, char *reason, size_t rcap)
{
    int degraded;

    td_agent_status(n, name, buf, cap, &degraded, reason, rcap);
    return buf;
}

static int log_has(const struct td *n, const char *needle)
{
    char *out = NULL;
    int rv = td_sh(&out, "grep -c -F -- '%s' %s", needle, n->log);

    free(out);
    return rv == 0;
}

Test(lifecycle, spawn_fails_with_the_plugins_reason_and_keeps_the_agent)
{
    char *out = NULL, st[32], reason[256];
    int rv;

    td_init(&d, "lc-spawn", NULL);
    cr_assert_eq(td_start(&d, WAIT_MS), 0, "see %s", d.log);
    rv = cli(&out, d.sock,
             "spawn lifecycle bad --config "
             "'{\"fail\": \"tag must name a market\"}'");
    cr_expect_neq(rv, 0, "spawn of a refused config succeeded: %s", out);
    cr_expect(out && strstr(out, "tag must name a market"),
              "spawn does not give the plugin's reason: %s", out);
    free(out);
    status_of(&d, "bad", st, sizeof st, reason, sizeof reason);
    cr_expect_str_eq(st, "quarantined");
    cr_expect(strstr(reason, "tag must name a market"),
              "the quarantine reason lacks the plugin's: %s", reason);

    /* A good config: spawn answers once the first step committed. */
    cli_ok(d.sock, "spawn lifecycle good --config '{\"tag\": \"a\"}'");
    cr_expect_geq(td_state_int(&d, "good", "starts", 0), 1,
                  "spawn answered before the agent's first checkpoint");
}

Test(lifecycle, config_is_one_committed_event_and_reaches_open)
{
    char tag[80], *out = NULL;
    int64_t epoch0;
    int rv;

    td_init(&d, "lc-config", NULL);
    cr_assert_eq(td_start(&d, WAIT_MS), 0, "see %s", d.log);
    cli_ok(d.sock, "spawn lifecycle lc --config '{\"tag\": \"one\"}'");
    cli_ok(d.sock, "config lc '{\"tag\": \"two\"}' --request-id cfg-1");
    wait_int(&d, "lc", "configs", 1);
    state_str(&d, "lc", "last", tag, sizeof tag);
    cr_expect_str_eq(tag, "two", "the CONFIG event carried '%s'", tag);
    /* The same request again is the same command: no second event. */
    cli_ok(d.sock, "config lc '{\"tag\": \"two\"}' --request-id cfg-1");

    /* Bad input is refused by name. */
    rv = cli(&out, d.sock, "config lc '[1, 2]'");
    cr_expect_eq(rv, 2, "a non-object config: exit %d: %s", rv, out);
    free(out);
    rv = cli(&out, d.sock, "config nosuch '{}'");
    cr_expect_eq(rv, 1, "config of an unknown agent: exit %d", rv);
    cr_expect(out && strstr(out, "no such agent"), "%s", out);
    free(out);

    /* After kill -9 the agent resumes and open() sees the new config; the
     * event is not delivered again. */
    td_kill9(&d);
    cr_assert_eq(td_start(&d, WAIT_MS), 0, "see %s", d.log);
    wait_int(&d, "lc", "resumes", 1);
    state_str(&d, "lc", "tag", tag, sizeof tag);
    cr_expect_str_eq(tag, "two", "open() after the restart saw tag '%s'",
                     tag);
    cr_expect_eq(td_state_int(&d, "lc", "configs", -1), 1,
                 "the CONFIG event was delivered more than once");

    /* restart: a final checkpoint, then a new epoch from it. */
    epoch0 = q1(&d, "SELECT epoch FROM agents WHERE name = 'lc'");
    cli_ok(d.sock, "restart lc");
    cr_expect_eq(q1(&d, "SELECT epoch FROM agents WHERE "
                                  "name = 'lc'"),
                 epoch0 + 1, "restart did not start a new epoch");
    {
        int newest;

        cr_expect_eq(finals(&d, "lc", &newest), 1,
                     "restart did not end the old epoch with one final "
                     "checkpoint");
    }
    wait_int(&d, "lc", "resumes", 2);
}

Test(lifecycle, rm_leaves_a_tombstone_that_verifies)
{
    char *out = NULL, st[32], reason[256], db[256], cmd[512];
    int rv;

    td_init(&d, "lc-rm", NULL);
    cr_assert_eq(td_start(&d, WAIT_MS), 0, "see %s", d.log);
    cli_ok(d.sock, "spawn lifecycle gone --config '{\"tag\": \"x\"}'");
    cli_ok(d.sock, "send gone '{\"n\": 1}'");
    cli_ok(d.sock, "rm gone --request-id rm-1");
    /* The same rm again answers as the first time. */
    cli_ok(d.sock, "rm gone --request-id rm-1");

    status_of(&d, "gone", st, sizeof st, reason, sizeof reason);
    cr_expect_str_eq(st, "", "a removed agent is listed by default");
    rv = cli(&out, d.sock, "agents --all");
    cr_expect(rv == 0 && out && strstr(out, "removed"),
              "agents --all does not list the tombstone: %s", out);
    free(out);

    cr_expect_eq(q1(&d, "SELECT status FROM agents WHERE name = 'gone'"),
                 5, "the row is not a tombstone");
    cr_expect_gt(q1(&d, "SELECT count(*) FROM checkpoints WHERE "
                            "agent = 'gone'"),
                 0, "the history was deleted");
    {
        int newest;

        finals(&d, "gone", &newest);
        cr_expect(newest, "the last record is not the final stop's");
    }
    cr_expect_eq(q1(&d, "SELECT count(*) FROM mailbox WHERE "
                            "to_agent = 'gone'"),
                 0, "the mailbox was kept");

    rv = cli(&out, d.sock, "spawn lifecycle gone");
    cr_expect_eq(rv, 1, "spawn over a tombstone: exit %d", rv);
    cr_expect(out && strstr(out, "removed"), "%s", out);
    free(out);
    rv = cli(&out, d.sock, "send gone '{}'");
    cr_expect_eq(rv, 1, "send to a removed agent: exit %d", rv);
    free(out);
    rv = cli(&out, d.sock, "start gone");
    cr_expect_eq(rv, 1, "start of a removed agent: exit %d", rv);
    free(out);

    /* The history still verifies, offline, on a copy. */
    td_term(&d, WAIT_MS);
    snprintf(db, sizeof db, "%s/outlast.db", d.data);
    snprintf(cmd, sizeof cmd, "verify --db %s", db);
    rv = cli(&out, d.sock, cmd);
    cr_expect_eq(rv, 0, "verify after rm: %s", out);
    free(out);
}

Test(lifecycle, a_removed_configured_agent_stays_removed)
{
    char st[32], reason[256], extra[256];
    struct stat sb;
    char path[320];

    snprintf(extra, sizeof extra,
             "[agent.cfgd]\nkind = lifecycle\nconfig = {\"tag\": \"file\"}\n");
    td_init(&d, "lc-cfgd", extra);
    cr_assert_eq(td_start(&d, WAIT_MS), 0, "see %s", d.log);
    wait_int(&d, "cfgd", "starts", 1);
    /* Files the node creates are its own. */
    snprintf(path, sizeof path, "%s/outlast.db", d.data);
    cr_assert_eq(stat(path, &sb), 0);
    cr_expect_eq(sb.st_mode & 0777, 0600, "outlast.db is mode %o",
                 sb.st_mode & 0777);
    snprintf(path, sizeof path, "%s/outlast.db-wal", d.data);
    if (stat(path, &sb) == 0)
        cr_expect_eq(sb.st_mode & 0777, 0600, "outlast.db-wal is mode %o",
                     sb.st_mode & 0777);

    cli_ok(d.sock, "config cfgd '{\"tag\": \"cli\"}'");
    wait_int(&d, "cfgd", "configs", 1);
    cr_assert_eq(td_term(&d, WAIT_MS), 0, "see %s", d.log);
    cr_assert_eq(td_start(&d, WAIT_MS), 0, "see %s", d.log);
    cr_expect(log_has(&d, "[agent.cfgd] config differs"),
              "a config file that differs from the committed config is "
              "not reported; see %s",
              d.log);

    cli_ok(d.sock, "rm cfgd");
    /* Nothing runs now, so the files come to stand still: status counts
     * the WAL in bytes_db (polled until the files stop moving). */
    {
        struct sizes_arg sz = {.d = &d};

        cr_expect(tw_until(sizes_shown, &sz, WAIT_MS),
                  "status does not count the WAL (want %s and %s): %s",
                  sz.want_db, sz.want_wal, sz.out);
        free(sz.out);
    }
    cr_assert_eq(td_term(&d, WAIT_MS), 0, "see %s", d.log);
    cr_assert_eq(td_start(&d, WAIT_MS), 0, "see %s", d.log);
    status_of(&d, "cfgd", st, sizeof st, reason, sizeof reason);
    cr_expect_str_eq(st, "", "the removed agent came back as '%s'", st);
    cr_expect_eq(q1(&d, "SELECT status FROM agents WHERE "
                                  "name = 'cfgd'"),
                 5, "the tombstone changed");
    cr_expect(log_has(&d, "[agent.cfgd] was removed"),
              "the node does not say it skips the removed agent; see %s",
              d.log);
}

Test(lifecycle, an_agent_whose_plugin_was_missing_starts_once_installed)
{
    char st[32], reason[256], extra[128], *out = NULL;
    int rv;

    snprintf(extra, sizeof extra, "[agent.lt]\nkind = late\n");
    td_init(&d, "lc-late", extra);
    cr_assert_eq(td_start(&d, WAIT_MS), 0, "see %s", d.log);
    status_of(&d, "lt", st, sizeof st, reason, sizeof reason);
    for (uint64_t end = td_ms() + WAIT_MS;
         strcmp(st, "quarantined") != 0 && td_ms() < end;) {
        td_sleep_ms(50);
        status_of(&d, "lt", st, sizeof st, reason, sizeof reason);
    }
    cr_assert_str_eq(st, "quarantined", "reason: %s", reason);
    cr_expect(strstr(reason, "no plugin 'late.so'"), "reason: %s", reason);

    cr_assert_eq(td_term(&d, WAIT_MS), 0, "see %s", d.log);
    rv = td_sh(&out, "mkdir -p %s/plugins && cp %s/tests/plugins/late/late.so "
                     "%s/plugins/late.so",
               d.data, getenv("OL_BUILD_ROOT"), d.data);
    cr_assert_eq(rv, 0, "install the plugin: %s", out);
    free(out);
    cr_assert_eq(td_start(&d, WAIT_MS), 0, "see %s", d.log);
    wait_int(&d, "lt", "starts", 1);
    status_of(&d, "lt", st, sizeof st, reason, sizeof reason);
    cr_expect_str_eq(st, "running", "reason: %s", reason);
}

/* In a cluster the commands go through the log: rm and config asked of a
 * follower take effect on every node. */
Test(lifecycle, rm_and_config_through_a_follower_in_a_cluster)
{
    int leader, f;
    char tag[80];
    struct tc_opts o = {.n = 3, .tag = "lc-cl"};

    tc_init(&c, &o);
    tc_start(&c);
    leader = tc_wait_leader(&c, 0, WAIT_MS);
    cr_assert_geq(leader, 0, "no leader");
    f = (leader + 1) % c.n;
    cli_ok(c.nodes[f].d.sock, "spawn lifecycle w --config '{\"tag\": \"a\"}'");
    cli_ok(c.nodes[f].d.sock, "config w '{\"tag\": \"b\"}'");
    for (int i = 0; i < c.n; i++)
        wait_int(&c.nodes[i].d, "w", "configs", 1);
    state_str(&c.nodes[leader].d, "w", "last", tag, sizeof tag);
    cr_expect_str_eq(tag, "b");
    cli_ok(c.nodes[f].d.sock, "rm w");
    for (int i = 0; i < c.n; i++) {
        sqlite3 *db = td_db(&c.nodes[i].d);
        uint64_t end = td_ms() + WAIT_MS;

        while (td_q1(db, "SELECT status FROM agents WHERE name = 'w'") != 5 &&
               td_ms() < end)
            td_sleep_ms(50);
        cr_expect_eq(td_q1(db, "SELECT status FROM agents WHERE name = 'w'"),
                     5, "node %d has no tombstone", i + 1);
        sqlite3_close(db);
    }
}

/* A cluster stopped one node at a time: every node exits 0, the last one
 * too, though it has no majority left to commit its drain with (it is the
 * one that runs the agent, so it has a drain to give up on); and the
 * cluster started again carries on from what it had committed. */
Test(lifecycle, a_cluster_stops_one_node_at_a_time_cleanly)
{
    struct tc_opts o = {.n = 3, .tag = "lc-stop"};
    int leader, code, owner = -1, order[3];
    int64_t before;
    struct tc_agent ag[8];

    tc_init(&c, &o);
    tc_start(&c);
    leader = tc_wait_leader(&c, 0, WAIT_MS);
    cr_assert_geq(leader, 0, "no leader");
    cli_ok(c.nodes[leader].d.sock, "spawn lifecycle s1");
    for (int i = 0, n = tc_agents(&c, leader, ag, 8); i < n; i++)
        if (strcmp(ag[i].name, "s1") == 0)
            owner = tc_index(&c, ag[i].owner);
    cr_assert_geq(owner, 0, "s1 has no owner");
    order[0] = (owner + 1) % 3;
    order[1] = (owner + 2) % 3;
    order[2] = owner;
    for (int k = 0; k < c.n; k++) {
        int i = order[k];

        code = td_term(&c.nodes[i].d, 20000);
        c.nodes[i].up = 0;
        cr_expect_eq(code, 0, "node %d, stopped %d of %d, exited %d; see %s",
                     i + 1, k + 1, c.n, code, c.nodes[i].d.log);
    }
    cr_expect(log_has(&c.nodes[owner].d, "no majority of the cluster"),
              "the last node did not say why it did not wait; see %s",
              c.nodes[owner].d.log);
    before = q1(&c.nodes[0].d, "SELECT max(seq) FROM checkpoints WHERE "
                               "agent = 's1'");
    for (int i = 0; i < c.n; i++)
        cr_assert_eq(tc_start_node(&c, i, WAIT_MS), 0, "see %s",
                     c.nodes[i].d.log);
    cr_assert_geq(tc_wait_leader(&c, 0, WAIT_MS), 0, "no leader again");
    wait_int(&c.nodes[0].d, "s1", "resumes", 1);
    cr_expect_geq(q1(&c.nodes[0].d, "SELECT max(seq) FROM checkpoints "
                                    "WHERE agent = 's1'"),
                  before, "the restarted cluster lost checkpoints");
}

/* A message to an agent that does not exist, or was removed, comes back
 * to its sender as a BOUNCE event, once, with the recipient and reason;
 * `outlast send` to such a name fails. */
Test(lifecycle, an_undeliverable_message_bounces_once)
{
    char to[80], why[160], *out = NULL;
    int rv;

    td_init(&d, "lc-bounce", NULL);
    cr_assert_eq(td_start(&d, WAIT_MS), 0, "see %s", d.log);
    cli_ok(d.sock, "spawn lifecycle snd");
    cli_ok(d.sock, "spawn lifecycle rcv");
    cli_ok(d.sock, "send snd '{\"to\": \"nobody\"}'");
    wait_int(&d, "snd", "bounces", 1);
    state_str(&d, "snd", "bto", to, sizeof to);
    state_str(&d, "snd", "bwhy", why, sizeof why);
    cr_expect_str_eq(to, "nobody");
    cr_expect(strstr(why, "no such agent"), "reason: %s", why);

    cli_ok(d.sock, "rm rcv");
    cli_ok(d.sock, "send snd '{\"to\": \"rcv\"}'");
    wait_int(&d, "snd", "bounces", 2);
    state_str(&d, "snd", "bto", to, sizeof to);
    state_str(&d, "snd", "bwhy", why, sizeof why);
    cr_expect_str_eq(to, "rcv");
    cr_expect(strstr(why, "removed"), "reason: %s", why);

    /* Exactly once: a restart does not deliver them again. */
    td_kill9(&d);
    cr_assert_eq(td_start(&d, WAIT_MS), 0, "see %s", d.log);
    wait_int(&d, "snd", "resumes", 1);
    /* Observation window: no bounce is delivered again after the resume. */
    tw_window_ms(300);
    cr_expect_eq(td_state_int(&d, "snd", "bounces", -1), 2,
                 "a bounce was delivered twice");
    cr_expect_eq(q1(&d, "SELECT count(*) FROM mailbox"), 0,
                 "bounces are left in the mailbox");

    rv = cli(&out, d.sock, "send nobody '{}'");
    cr_expect_eq(rv, 1, "send to an unknown agent: exit %d: %s", rv, out);
    cr_expect(out && strstr(out, "no such agent"), "%s", out);
    free(out);
}

/* The embedded default (no config file) spawns the example agents; one
 * removed with rm stays removed across restarts, and the log says how. */
Test(lifecycle, an_example_agent_of_the_embedded_default_can_be_removed)
{
    char st[32], reason[256];

    td_init(&d, "lc-embedded", NULL);
    d.conf[0] = '\0';
    cr_assert_eq(td_start(&d, WAIT_MS), 0, "see %s", d.log);
    cr_expect(log_has(&d, "outlast rm NAME"),
              "the log does not say how to remove an example agent; see %s",
              d.log);
    wait_int(&d, "counter", "count", 0);
    cli_ok(d.sock, "rm counter");
    cr_assert_eq(td_term(&d, WAIT_MS), 0, "see %s", d.log);
    cr_assert_eq(td_start(&d, WAIT_MS), 0, "see %s", d.log);
    status_of(&d, "counter", st, sizeof st, reason, sizeof reason);
    cr_expect_str_eq(st, "", "the removed example came back as '%s'", st);
    status_of(&d, "ledger", st, sizeof st, reason, sizeof reason);
    cr_expect_str_eq(st, "running", "the other examples: '%s'", st);
}

/* The same paths for a plugin run inside the node (isolation = none):
 * ol_host.error reaches the spawn's refusal, and CONFIG and BOUNCE events
 * are delivered. */
Test(lifecycle, in_process_plugins_get_the_same_lifecycle)
{
    char *out = NULL, tag[80], to[80];
    int rv;

    td_init(&d, "lc-inproc", "[plugin.lifecycle]\nisolation = none\n");
    cr_assert_eq(td_start(&d, WAIT_MS), 0, "see %s", d.log);
    rv = cli(&out, d.sock,
             "spawn lifecycle bad --config '{\"fail\": \"no such market\"}'");
    cr_expect_neq(rv, 0, "spawn of a refused config succeeded: %s", out);
    cr_expect(out && strstr(out, "no such market"),
              "spawn does not give the plugin's reason: %s", out);
    free(out);
    cli_ok(d.sock, "spawn lifecycle ip");
    cli_ok(d.sock, "config ip '{\"tag\": \"new\"}'");
    wait_int(&d, "ip", "configs", 1);
    state_str(&d, "ip", "last", tag, sizeof tag);
    cr_expect_str_eq(tag, "new");
    cli_ok(d.sock, "send ip '{\"to\": \"ghost\"}'");
    wait_int(&d, "ip", "bounces", 1);
    state_str(&d, "ip", "bto", to, sizeof to);
    cr_expect_str_eq(to, "ghost");
}

/* rm asked while the agent's owner is frozen (SIGSTOP, as a paused VM):
 * the STOP commits, the cluster fails the agent over to a live node, which
 * takes the final step, and the tombstone follows.  When the frozen node
 * wakes it runs nothing of the agent: no checkpoint of it is signed after
 * the tombstone. */
Test(lifecycle, rm_of_an_agent_whose_owner_is_frozen)
{
    struct tc_opts o = {.n = 3, .tag = "lc-frozen"};
    struct tc_agent ag[8];
    int leader, owner = -1, via;
    int64_t after;

    tc_init(&c, &o);
    tc_start(&c);
    leader = tc_wait_leader(&c, 0, WAIT_MS);
    cr_assert_geq(leader, 0, "no leader");
    cli_ok(c.nodes[leader].d.sock, "spawn lifecycle fz");
    for (uint64_t end = td_ms() + WAIT_MS; owner < 0 && td_ms() < end;) {
        for (int i = 0, n = tc_agents(&c, leader, ag, 8); i < n; i++)
            if (strcmp(ag[i].name, "fz") == 0 && ag[i].owner)
                owner = tc_index(&c, ag[i].owner);
        if (owner < 0)
            td_sleep_ms(50);
    }
    cr_assert_geq(owner, 0, "fz was never placed");
    /* The owner may be the leader: then the rm also waits out an
     * election, and the new leader has not heard the frozen voter. */
    via = (owner + 1) % c.n;
    cr_assert_gt(nf_freeze(c.nodes[owner].d.pid), 0);
    cli_ok(c.nodes[via].d.sock, "rm fz");
    after = q1(&c.nodes[via].d, "SELECT max(seq) FROM checkpoints WHERE "
                                "agent = 'fz'");
    cr_expect_eq(q1(&c.nodes[via].d, "SELECT status FROM agents WHERE "
                                     "name = 'fz'"),
                 5, "no tombstone");
    nf_thaw(c.nodes[owner].d.pid);
    /* Observation window: give the woken node time to act on its stale
     * view, then check that nothing of fz was committed after the
     * tombstone, on any node. */
    tw_window_ms(1500);
    for (int i = 0; i < c.n; i++)
        cr_expect_eq(q1(&c.nodes[i].d, "SELECT coalesce(max(seq), 0) FROM "
                                       "checkpoints WHERE agent = 'fz'"),
                     after, "node %d holds a checkpoint of fz after its rm",
                     i + 1);
}

/* A leader elected while a voter is frozen still runs the cluster's
 * feature level: config and rm (level 3) work while one node of three is
 * down, as every command of level 1 does. */
Test(lifecycle, level_3_commands_work_while_a_voter_is_down)
{
    struct tc_opts o = {.n = 3, .tag = "lc-down"};
    int leader, next;
    unsigned others;

    tc_init(&c, &o);
    tc_start(&c);
    leader = tc_wait_leader(&c, 0, WAIT_MS);
    cr_assert_geq(leader, 0, "no leader");
    cli_ok(c.nodes[leader].d.sock, "spawn lifecycle dn");
    cr_assert_gt(nf_freeze(c.nodes[leader].d.pid), 0);
    others = 7u & ~(1u << leader);
    next = -1;
    for (uint64_t end = td_ms() + WAIT_MS; td_ms() < end;) {
        next = tc_wait_leader(&c, others, 2000);
        if (next >= 0 && next != leader)
            break;
    }
    cr_assert(next >= 0 && next != leader, "no new leader");
    cli_ok(c.nodes[next].d.sock, "config dn '{\"tag\": \"down\"}'");
    cli_ok(c.nodes[next].d.sock, "rm dn");
    nf_thaw(c.nodes[leader].d.pid);
}
