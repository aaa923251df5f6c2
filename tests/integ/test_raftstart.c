/*
 * A cluster node never silently starts a new history: real outlastd
 * processes whose raft directory was wiped or replaced by an older copy
 * are refused at start with a message that says how to recover, and nodes
 * bootstrapped from different rosters never form one cluster.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "record/cmd.h"
#include "tests/support/wait.h"
#include "tests/support/cluster.h"

#define LEADER_MS 15000

static struct tc c;

static void teardown(void)
{
    tc_cleanup(&c);
}

TestSuite(raftstart, .fini = teardown, .timeout = 240);

/* Wait until node i's database has applied past `index`. */
static int wait_applied(int i, int64_t index, int timeout_ms)
{
    uint64_t end = td_ms() + (uint64_t)timeout_ms;

    while (td_ms() < end) {
        if (tc_db_applied(&c, i) > index)
            return 1;
        td_sleep_ms(50);
    }
    return 0;
}

static int wait_log(int i, const char *needle, int timeout_ms)
{
    uint64_t end = td_ms() + (uint64_t)timeout_ms;

    while (td_ms() < end) {
        if (tc_log_count(&c, i, needle) > 0)
            return 1;
        td_sleep_ms(50);
    }
    return 0;
}

static int sh(const char *fmt, const char *a, const char *b)
{
    char cmd[1024];

    snprintf(cmd, sizeof cmd, fmt, a, b);
    return system(cmd);
}

static int follower(void)
{
    int leader = tc_wait_leader(&c, 0, LEADER_MS);

    cr_assert_geq(leader, 0, "no leader");
    return (leader + 1) % c.n;
}

Test(raftstart, a_wiped_raft_directory_is_refused)
{
    struct tc_opts o = {.n = 3, .tag = "rs-wipe"};
    char raft[256], meta[300];
    struct stat sb;
    int f;

    tc_init(&c, &o);
    tc_start(&c);
    f = follower();
    cr_assert(wait_applied(f, 0, 10000), "node %d applied nothing", f + 1);
    tc_kill(&c, f);
    snprintf(raft, sizeof raft, "%s/raft", c.nodes[f].d.data);
    cr_assert_eq(sh("rm -rf %s/*", raft, NULL), 0);

    cr_assert_eq(tc_start_node(&c, f, 10000), -1,
                 "node %d started with its raft state gone", f + 1);
    cr_assert(WIFEXITED(c.nodes[f].d.status) &&
                  WEXITSTATUS(c.nodes[f].d.status) != 0,
              "status %d", c.nodes[f].d.status);
    cr_assert_gt(tc_log_count(&c, f, "is empty, but this node's database "
                                     "has applied"),
                 0, "no reason given; see %s", c.nodes[f].d.log);
    cr_assert_gt(tc_log_count(&c, f, "--rejoin"), 0,
                 "no way to recover named");
    /* Refused before anything was written: it did not bootstrap again. */
    snprintf(meta, sizeof meta, "%s/metadata1", raft);
    cr_assert_neq(stat(meta, &sb), 0, "the raft directory was bootstrapped "
                                      "again");
}

Test(raftstart, an_older_raft_directory_is_refused)
{
    struct tc_opts o = {.n = 3, .tag = "rs-old"};
    char raft[256], old[270], err[256];
    int64_t applied;
    int f;

    tc_init(&c, &o);
    tc_start(&c);
    f = follower();
    cr_assert(wait_applied(f, 0, 10000));
    tc_kill(&c, f);
    snprintf(raft, sizeof raft, "%s/raft", c.nodes[f].d.data);
    snprintf(old, sizeof old, "%s.old", raft);
    cr_assert_eq(sh("cp -a %s %s", raft, old), 0);
    applied = tc_db_applied(&c, f);
    cr_assert_eq(tc_start_node(&c, f, 15000), 0);
    /* Entries the old copy does not have: an agent that checkpoints. */
    cr_assert_eq(td_spawn_agent(&c.nodes[(f + 1) % c.n].d, "counter", "tick",
                                "{\"interval_ms\": 10}", err, sizeof err),
                 0, "%s", err);
    cr_assert(wait_applied(f, applied + 100, 20000),
              "node %d did not get far enough", f + 1);
    tc_kill(&c, f);
    {
        char cmd[700];

        snprintf(cmd, sizeof cmd, "rm -rf %s && mv %s %s", raft, old, raft);
        cr_assert_eq(system(cmd), 0);
    }
    cr_assert_eq(tc_start_node(&c, f, 10000), -1,
                 "node %d started over an older raft log", f + 1);
    cr_assert(WIFEXITED(c.nodes[f].d.status) &&
                  WEXITSTATUS(c.nodes[f].d.status) != 0,
              "status %d", c.nodes[f].d.status);
    cr_assert_gt(tc_log_count(&c, f, "older than the database"), 0,
                 "no reason given; see %s", c.nodes[f].d.log);
}

/* Node 3 was bootstrapped with a roster that lists a fourth node: the
 * others' cluster id differs from its own, so it is refused at every
 * handshake and never follows their leader. */
Test(raftstart, different_bootstrap_rosters_never_form_one_cluster)
{
    struct tc_opts o = {.n = 3, .tag = "rs-roster"};
    struct tc_status st;
    FILE *f;
    int leader;

    tc_init(&c, &o);
    for (int i = 0; i < 3; i++)
        tc_write_config(&c, i);
    f = fopen(c.nodes[2].d.conf, "a");
    cr_assert_not_null(f);
    fprintf(f, "[peer.4]\naddress = 127.0.0.1:1\npubkey = %064d\n", 7);
    fclose(f);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(tc_start_node(&c, i, 15000), 0, "node %d: see %s",
                     i + 1, c.nodes[i].d.log);
    leader = tc_wait_leader(&c, 0x3, LEADER_MS);
    cr_assert(leader == 0 || leader == 1, "leader %d", leader);
    cr_assert(wait_log(2, "another cluster", 10000),
              "node 3 never saw the other cluster refused; see %s",
              c.nodes[2].d.log);
    /* Observation window: give it every chance to join, then check it
     * did not. */
    tw_window_ms(1500);
    cr_assert_eq(tc_status(&c, 2, &st), 0);
    cr_assert_neq(st.leader, c.nodes[leader].id,
                  "node 3 follows the other cluster's leader");
    cr_assert_eq(tc_status(&c, leader, &st), 0);
    for (int k = 0; k < st.n_nodes; k++)
        if (st.nodes[k].id == 3)
            cr_assert_str_neq(st.nodes[k].health, "alive",
                              "the leader hears node 3");
}

static int cli(int via, const char *fmt, const char *a, const char *b)
{
    char args[512];
    char *out = NULL;
    int rv;

    snprintf(args, sizeof args, fmt, a, b);
    rv = td_sh(&out, "%s --socket %s %s", td_bin("outlast"),
               c.nodes[via].d.sock, args);
    if (rv != 0)
        cr_log_error("outlast %s: %s", args, out ? out : "");
    free(out);
    return rv;
}

/* The recovery the refusal names: remove the node on the leader, start it
 * with --rejoin (its old files are kept aside), add it again.  It catches
 * up from the cluster and holds what every other node holds. */
Test(raftstart, a_node_rebuilt_with_rejoin_catches_up, .timeout = 300)
{
    struct tc_opts o = {.n = 3, .tag = "rs-rejoin", .snapshot_threshold = 64,
                        .snapshot_trailing = 16};
    char raft[256], err[256], id[24];
    int f, leader;
    uint64_t end;

    tc_init(&c, &o);
    tc_start(&c);
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0);
    f = (leader + 1) % c.n;
    cr_assert_eq(td_spawn_agent(&c.nodes[leader].d, "counter", "tick",
                                "{\"interval_ms\": 20}", err, sizeof err),
                 0, "%s", err);
    cr_assert(wait_applied(f, 50, 20000));
    tc_kill(&c, f);
    snprintf(raft, sizeof raft, "%s/raft", c.nodes[f].d.data);
    cr_assert_eq(sh("rm -rf %s/*", raft, NULL), 0);
    cr_assert_eq(tc_start_node(&c, f, 10000), -1, "started without its "
                                                 "raft state");

    snprintf(id, sizeof id, "%" PRIu64, c.nodes[f].id);
    cr_assert_eq(cli(leader, "cluster remove %s%s", id, ""), 0);
    /* Start it with --rejoin: the test's spawner passes extra arguments
     * through OL_OUTLASTD_ARGS. */
    setenv("OL_OUTLASTD_ARGS", "--rejoin", 1);
    cr_assert_eq(tc_start_node(&c, f, 15000), 0, "see %s",
                 c.nodes[f].d.log);
    unsetenv("OL_OUTLASTD_ARGS");
    cr_assert_gt(tc_log_count(&c, f, "before-rejoin"), 0,
                 "old files not kept aside");
    {
        char args[400];

        int rv;

        snprintf(args, sizeof args, "cluster add %s %s %s", id,
                 c.nodes[f].addr, c.nodes[f].pk);
        char *out = NULL;

        /* One membership change at a time: the removal may still be
         * finishing (the refusal says so), so an operator tries again. */
        end = td_ms() + 10000;
        for (;;) {
            free(out);
            rv = td_sh(&out, "%s --socket %s %s", td_bin("outlast"),
                       c.nodes[leader].d.sock, args);
            if (rv == 0 || td_ms() >= end ||
                strstr(out ? out : "", "change is in progress") == NULL)
                break;
            td_sleep_ms(200);
        }
        cr_assert_eq(rv, 0, "outlast %s: %s", args, out ? out : "");
        free(out);
    }
    /* It catches up: its database holds the agent's head. */
    end = td_ms() + 30000;
    while (td_ms() < end && tc_db_applied(&c, f) < tc_db_applied(&c, leader))
        td_sleep_ms(100);
    cr_assert_geq(tc_db_applied(&c, f), 50, "node %d never caught up",
                  f + 1);
    cr_assert_eq(tc_check(&c, 30000), 0);
}

/* The cluster's feature level as node i's `cluster status --json` shows
 * it; -1 if it cannot be read. */
static int cluster_level(int i)
{
    char *out = NULL;
    const char *p;
    int level = -1;

    if (td_sh(&out, "%s --socket %s --json cluster status", td_bin("outlast"),
              c.nodes[i].d.sock) == 0 &&
        (p = strstr(out, "\"cluster_feature_level\"")) != NULL) {
        p += strlen("\"cluster_feature_level\"");
        while (*p == ' ' || *p == ':')
            p++;
        level = atoi(p);
    }
    free(out);
    return level;
}

static int wait_level(int i, int want, int timeout_ms)
{
    uint64_t end = td_ms() + (uint64_t)timeout_ms;

    while (td_ms() < end) {
        if (cluster_level(i) == want)
            return 1;
        td_sleep_ms(100);
    }
    return 0;
}

/* Node 3 stays at feature level 1 (an older release, or an operator
 * holding back an upgrade): the cluster keeps working at level 1 (a
 * failover is placed with the level-1 PLACE command), a level-2 command
 * (`outlast upgrade`, which proposes CODE) is refused with an error that
 * names the level, and once node 3 runs level 2 the cluster does too. */
Test(raftstart, a_node_held_at_feature_level_1_keeps_the_cluster_at_1)
{
    struct tc_opts o = {.n = 3, .tag = "rs-level"};
    struct tc_agent on[8];
    char err[256], why[256], *out = NULL, conf[8192];
    int leader, owner = -1, n = 0, rv;
    FILE *f;
    size_t len;

    tc_init(&c, &o);
    for (int i = 0; i < c.n; i++)
        tc_write_config(&c, i);
    f = fopen(c.nodes[2].d.conf, "r");
    cr_assert_not_null(f);
    len = fread(conf, 1, sizeof conf - 1, f);
    conf[len] = '\0';
    fclose(f);
    {
        char *at = strstr(conf, "bootstrap = true\n");
        char patched[8300];

        cr_assert_not_null(at);
        at += strlen("bootstrap = true\n");
        snprintf(patched, sizeof patched, "%.*sfeature_level = 1\n%s",
                 (int)(at - conf), conf, at);
        f = fopen(c.nodes[2].d.conf, "w");
        cr_assert_not_null(f);
        fputs(patched, f);
        fclose(f);
    }
    for (int i = 0; i < c.n; i++)
        cr_assert_eq(tc_start_node(&c, i, 15000), 0, "see %s",
                     c.nodes[i].d.log);
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0, "no leader");
    cr_assert(wait_level(leader, 1, 10000),
              "the leader does not report cluster feature level 1");

    for (int k = 0; k < 4; k++) {
        char name[16];

        snprintf(name, sizeof name, "lv%d", k);
        cr_assert_eq(td_spawn_agent(&c.nodes[leader].d, "counter", name,
                                    "{\"interval_ms\": 50}", err, sizeof err),
                     0, "%s", err);
    }
    /* A failover at level 1: kill a follower that owns agents. */
    for (uint64_t end = td_ms() + 20000; owner < 0 && td_ms() < end;) {
        for (int i = 0; i < c.n && owner < 0; i++) {
            if (i == leader)
                continue;
            n = tc_agents_on(&c, leader, i, on, 8);
            if (n > 0 && on[0].seq > 0)
                owner = i;
        }
        if (owner < 0)
            td_sleep_ms(100);
    }
    if (owner >= 0) {
        tc_kill(&c, owner);
        cr_assert(tc_wait_moved(&c, leader, on, n, owner, 20000, why,
                                sizeof why),
                  "agents of node %d were not failed over at level 1: %s",
                  owner + 1, why);
        cr_assert_eq(tc_start_node(&c, owner, 15000), 0);
    } else {
        cr_log_info("no follower owned an agent; failover not exercised");
    }

    rv = td_sh(&out, "%s --socket %s upgrade counter", td_bin("outlast"),
               c.nodes[leader].d.sock);
    cr_expect_neq(rv, 0, "upgrade (a level-2 command) was accepted at level 1");
    cr_expect(out && strstr(out, "feature level 1"),
              "the refusal does not name the cluster's level: %s",
              out ? out : "");
    free(out);
    /* Asked on the held node itself, which does not know CODE at all. */
    rv = td_sh(&out, "%s --socket %s upgrade counter", td_bin("outlast"),
               c.nodes[2].d.sock);
    cr_expect_neq(rv, 0, "upgrade was accepted by the node held at level 1");
    cr_expect(out && strstr(out, "feature level 1"),
              "the held node's refusal does not name its level: %s",
              out ? out : "");
    free(out);

    /* Node 3 applied everything and still runs: no command it cannot
     * apply reached it. */
    {
        struct tc_status st;
        uint64_t end = td_ms() + 10000;

        while (td_ms() < end && tc_db_applied(&c, 2) < tc_db_applied(&c, leader))
            td_sleep_ms(100);
        cr_expect_geq(tc_db_applied(&c, 2), tc_db_applied(&c, leader) - 5,
                      "the level-1 node fell behind; see %s",
                      c.nodes[2].d.log);
        cr_expect_eq(tc_status(&c, 2, &st), 0,
                     "the level-1 node stopped answering; see %s",
                     c.nodes[2].d.log);
    }
    rv = td_sh(&out, "%s --socket %s rm lv0", td_bin("outlast"),
               c.nodes[leader].d.sock);
    cr_expect_neq(rv, 0, "rm (a level-3 command) was accepted at level 1");
    cr_expect(out && strstr(out, "feature level 1"),
              "the rm refusal does not name the cluster's level: %s",
              out ? out : "");
    free(out);

    /* Node 3 moves up to this build's level, and so does the cluster. */
    tc_kill(&c, 2);
    tc_write_config(&c, 2);
    cr_assert_eq(tc_start_node(&c, 2, 15000), 0);
    leader = tc_wait_leader(&c, 0, LEADER_MS);
    cr_assert_geq(leader, 0, "no leader");
    cr_expect(wait_level(leader, OL_FEATURE_LEVEL, 15000),
              "the cluster stayed below level %d after node 3 moved up",
              OL_FEATURE_LEVEL);
    cr_assert_eq(tc_check(&c, 30000), 0);
}
