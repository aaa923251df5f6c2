/*
 * Plugin code that changes: installing a new build over a loaded plugin's
 * file, `outlast start` on a quarantined agent, `outlast upgrade` on one
 * node, and a rolling upgrade of a 3-node cluster under load.
 *
 * The builds are tests/plugins/misbehave.c: misbehave.so (1.0.0, whose
 * "segv" mode crashes), misbehave_v2.so (2.0.0, where every mode behaves)
 * and misbehave_abi7.so (built for another ABI).  Each agent's state says
 * which build saved it ("v") and counts its ticks, so a chain read back
 * shows both builds in order and a count that never goes back.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/wait.h"
#include "tests/support/chain.h"
#include "tests/support/cluster.h"

static struct td d;
static struct tc c;

static void teardown_node(void)
{
    td_cleanup(&d);
}

static void teardown_cluster(void)
{
    tc_cleanup(&c);
}

static const char *build_path(const char *name)
{
    static char path[2][600];
    static int k;
    const char *root = getenv("OL_BUILD_ROOT");

    k ^= 1;
    snprintf(path[k], sizeof path[k], "%s/tests/plugins/%s.so",
             root ? root : "build", name);
    return path[k];
}

static int status_is(struct td *t, const char *name, const char *want)
{
    char status[32];

    td_agent_status(t, name, status, sizeof status, NULL, NULL, 0);
    return strcmp(status, want) == 0;
}

static int quarantined(struct td *t, void *name)
{
    return status_is(t, name, "quarantined");
}

struct v_arg {
    const char *name;
    int64_t v;
};

static int head_is(struct td *t, void *arg)
{
    struct v_arg *va = arg;

    return td_state_int(t, va->name, "v", 0) == va->v;
}

static void spawn_on(struct td *t, const char *name, const char *cfg)
{
    char err[512];

    cr_assert_eq(td_spawn_agent(t, "misbehave", name, cfg, err, sizeof err),
                 0, "spawn %s: %s", name, err);
}

/* Both builds, old then new, and nothing lost between them. */
static void expect_rolled(sqlite3 *db, const char *name)
{
    struct td_chain ch;

    cr_assert_eq(td_chain_read(db, name, "ticks", &ch), 0, "'%s' has no "
                                                          "chain",
                 name);
    cr_expect_eq(ch.n_builds, 2, "'%s' was written by %d builds", name,
                 ch.n_builds);
    cr_expect_str_eq(ch.versions[0], "1.0.0", "'%s'", name);
    cr_expect_str_eq(ch.versions[1], "2.0.0", "'%s'", name);
    cr_expect_eq(ch.build_went_back, 0, "'%s' went back to the old build",
                 name);
    cr_expect_eq(ch.gaps, 0, "'%s': seq gaps", name);
    cr_expect_eq(ch.broken, 0, "'%s': broken links", name);
    cr_expect_eq(ch.went_back, 0, "'%s': its ticks went back", name);
}

/* ---- one node ---- */

Test(upgrade, replacing_the_file_does_not_touch_running_code,
     .fini = teardown_node, .timeout = 120)
{
    char extra[1200], *out = NULL;
    struct v_arg va = {"bad", 2};
    sqlite3 *db;
    int rc;

    td_init(&d, "cp", "");
    /* A plugin directory of its own, installed into with cp, searched
     * first (the config is written again: a key may not be given twice). */
    snprintf(extra, sizeof extra,
             "[node]\n"
             "data_dir = %s\n"
             "plugin_dir = %s/pd:%s\n"
             "log_level = debug\n"
             "[agents]\n"
             "step_deadline_ms = 1000\n"
             "[checkpoint]\n"
             "retain = 0\n",
             d.data, d.root, td_plugin_dirs());
    {
        FILE *f = fopen(d.conf, "w");

        cr_assert_not_null(f);
        fputs(extra, f);
        fclose(f);
    }
    rc = td_sh(&out, "mkdir -p %s/pd && cp %s %s/pd/misbehave.so", d.root,
               build_path("misbehave"), d.root);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    cr_assert_eq(td_start(&d, 10000), 0, "see %s", d.log);
    spawn_on(&d, "good", "{\"mode\": \"none\"}");
    spawn_on(&d, "bad", "{\"mode\": \"segv\"}");
    cr_assert(td_until(quarantined, &d, "bad", 30000));

    /* The install step the README shows, over the file in use. */
    rc = td_sh(&out, "cp %s %s/pd/misbehave.so", build_path("misbehave_v2"),
               d.root);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    /* It goes on stepping (a timer every 20 ms) over the new file. */
    td_wait_reached(&d, "good", "ticks",
                    td_state_int(&d, "good", "ticks", 0) + 5, 10000);
    cr_expect(status_is(&d, "good", "running"),
              "overwriting the plugin file hurt a running agent");
    cr_expect_eq(td_state_int(&d, "good", "v", 0), 1,
                 "the running agent changed code without a restart");

    /* start loads the build that is there now. */
    rc = td_sh(&out, "%s --data-dir %s start bad", td_bin("outlast"),
               d.data);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    cr_assert(td_until(head_is, &d, &va, 10000),
              "the restarted agent does not run the new build");
    /* The old build crashed at its fourth tick; the new one steps past
     * it. */
    td_wait_reached(&d, "bad", "ticks", 6, 10000);
    cr_expect(status_is(&d, "bad", "running"), "quarantined again");
    db = td_db(&d);
    expect_rolled(db, "bad");
    cr_expect_eq(td_q1(db, "SELECT n FROM crashes WHERE name = 'bad'"), 0,
                 "start did not wipe the crash count");
    sqlite3_close(db);
}

Test(upgrade, upgrade_rolls_every_agent_and_survives_a_restart,
     .fini = teardown_node, .timeout = 120)
{
    static const char cfg[] = "[checkpoint]\nretain = 0\n";
    char *out = NULL, name[16];
    int rc;

    td_init(&d, "upg", cfg);
    cr_assert_eq(td_start(&d, 10000), 0, "see %s", d.log);
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "a%d", i);
        spawn_on(&d, name, "{\"mode\": \"none\", \"interval_ms\": 10}");
    }
    td_wait_reached(&d, "a4", "ticks", 1, 10000);

    /* Another ABI is refused and changes nothing. */
    rc = td_sh(&out, "%s --data-dir %s upgrade misbehave %s",
               td_bin("outlast"), d.data, build_path("misbehave_abi7"));
    cr_expect_eq(rc, 1, "upgrade to ABI 7 exited %d: %s", rc, out);
    cr_expect(out && strstr(out, "ABI 7") != NULL, "%s", out);
    free(out);
    /* a0 steps on (every 10 ms), on the build it had. */
    td_wait_reached(&d, "a0", "ticks",
                    td_state_int(&d, "a0", "ticks", 0) + 5, 10000);
    cr_expect_eq(td_state_int(&d, "a0", "v", 0), 1);

    rc = td_sh(&out, "%s --data-dir %s upgrade misbehave %s",
               td_bin("outlast"), d.data, build_path("misbehave_v2"));
    cr_assert_eq(rc, 0, "upgrade: %s", out);
    free(out);
    for (int i = 0; i < 5; i++) {
        struct v_arg va = {name, 2};

        snprintf(name, sizeof name, "a%d", i);
        cr_expect(td_until(head_is, &d, &va, 10000), "'%s' did not move",
                  name);
    }
    /* A restart keeps the new build (it was installed in the data dir). */
    cr_assert_eq(td_term(&d, 20000), 0);
    {
        int64_t head[5];

        for (int i = 0; i < 5; i++) {
            snprintf(name, sizeof name, "a%d", i);
            head[i] = td_head_seq(&d, name);
        }
        cr_assert_eq(td_start(&d, 10000), 0);
        /* Each commits steps taken after the restart. */
        for (int i = 0; i < 5; i++) {
            snprintf(name, sizeof name, "a%d", i);
            td_wait_reached(&d, name, NULL, head[i] + 3, 10000);
        }
    }
    {
        sqlite3 *db = td_db(&d);

        for (int i = 0; i < 5; i++) {
            snprintf(name, sizeof name, "a%d", i);
            cr_expect_eq(td_state_int(&d, name, "v", 0), 2,
                         "'%s' went back to the old build", name);
            expect_rolled(db, name);
        }
        sqlite3_close(db);
    }
    rc = td_sh(&out, "%s --db %s/outlast.db verify", td_bin("outlast"),
               d.data);
    cr_expect_eq(rc, 0, "%s", out);
    free(out);
}

/* ---- a cluster ---- */

#define AGENTS 9

static int upgrade_node(int i, char **out)
{
    return td_sh(out, "%s --data-dir %s upgrade misbehave %s",
                 td_bin("outlast"), c.nodes[i].d.data,
                 build_path("misbehave_v2"));
}

static int all_placed(int via)
{
    struct tc_agent a[32];
    int n = tc_agents(&c, via, a, 32), ok = 0;

    for (int i = 0; i < n; i++)
        ok += a[i].owner != 0 && a[i].seq > 0 &&
              strcmp(a[i].status, "running") == 0;
    return ok >= AGENTS + 1;
}

/* Every agent owned by node `owner` (in `via`'s view) runs build `v`. */
static int owned_run(int via, int owner, int v)
{
    struct tc_agent a[32];
    int n = tc_agents_on(&c, via, owner, a, 32);

    for (int i = 0; i < n; i++)
        if (strncmp(a[i].name, "m", 1) == 0 &&
            tc_state_int(&c, via, a[i].name, "v", 0) != v)
            return 0;
    return 1;
}

static void wait_owned_run(int via, int owner, int v)
{
    uint64_t end = td_ms() + 20000;

    while (!owned_run(via, owner, v) && td_ms() < end) {
        tc_expect_running(&c);
        td_sleep_ms(100);
    }
    cr_assert(owned_run(via, owner, v), "node %d's agents are not on "
                                        "build %d",
              owner + 1, v);
}

Test(upgrade, rolling_upgrade_of_a_cluster_under_load,
     .fini = teardown_cluster, .timeout = 300)
{
    struct tc_opts o = {.n = 3, .tag = "roll"};
    struct tc_agent moved[32], now[32];
    int leader, a_node, b_node, c_node, n_moved, n;
    char *out = NULL, name[16], why[256];
    uint64_t end;

    tc_init(&c, &o);
    tc_start(&c);
    leader = tc_wait_leader(&c, 0, 15000);
    cr_assert_geq(leader, 0, "no leader");
    {
        char err[512];

        for (int i = 0; i < AGENTS; i++) {
            snprintf(name, sizeof name, "m%d", i);
            cr_assert_eq(td_spawn_agent(&c.nodes[leader].d, "misbehave",
                                        name,
                                        "{\"mode\": \"none\", "
                                        "\"interval_ms\": 15}",
                                        err, sizeof err),
                         0, "%s", err);
        }
        cr_assert_eq(td_spawn_agent(&c.nodes[leader].d, "counter", "ticker",
                                    "{\"interval_ms\": 20}", err,
                                    sizeof err),
                     0, "%s", err);
    }
    end = td_ms() + 20000;
    while (!all_placed(leader) && td_ms() < end)
        td_sleep_ms(50);
    cr_assert(all_placed(leader), "agents not placed");

    /* Node A first: its agents move to the new build where they are. */
    a_node = tc_pick_follower(&c, leader, 0);
    if (a_node < 0)
        a_node = leader;
    cr_assert_eq(upgrade_node(a_node, &out), 0, "upgrade node %d: %s",
                 a_node + 1, out);
    free(out);
    wait_owned_run(leader, a_node, 2);
    tc_observe(&c);

    /* A dies.  Its agents have run the new build: the old build's nodes
     * must not get them. */
    n_moved = tc_agents_on(&c, leader == a_node ? (a_node + 1) % 3 : leader,
                           a_node, moved, 32);
    b_node = (a_node + 1) % 3;
    c_node = (a_node + 2) % 3;
    tc_kill(&c, a_node);
    leader = tc_wait_leader(&c, (1u << b_node) | (1u << c_node), 15000);
    cr_assert_geq(leader, 0, "no leader after the kill");
    /* Observation window: three failover periods, in which no agent of
     * A's may move to a node that runs the old build. */
    tw_window_ms(3000);
    n = tc_agents(&c, leader, now, 32);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n_moved; k++)
            if (strcmp(now[i].name, moved[k].name) == 0 &&
                strncmp(now[i].name, "m", 1) == 0)
                cr_expect(now[i].owner == (uint64_t)(a_node + 1),
                          "'%s' moved to node %" PRIu64 ", which runs the "
                          "old build",
                          now[i].name, now[i].owner);

    /* B gets the new build and takes them. */
    cr_assert_eq(upgrade_node(b_node, &out), 0, "upgrade node %d: %s",
                 b_node + 1, out);
    free(out);
    cr_assert(tc_wait_moved(&c, leader, moved, n_moved, a_node, 20000, why,
                            sizeof why),
              "after B's upgrade: %s", why);
    n = tc_agents(&c, leader, now, 32);
    for (int i = 0; i < n; i++)
        if (strncmp(now[i].name, "m", 1) == 0)
            cr_expect(now[i].owner != (uint64_t)(c_node + 1) ||
                          tc_state_int(&c, leader, now[i].name, "v", 0) == 1,
                      "'%s' runs on the old build's node after the new "
                      "build",
                      now[i].name);

    /* C, then A comes back (it kept the build it installed). */
    cr_assert_eq(upgrade_node(c_node, &out), 0, "upgrade node %d: %s",
                 c_node + 1, out);
    free(out);
    cr_assert_eq(tc_start_node(&c, a_node, 15000), 0, "restart node %d",
                 a_node + 1);
    for (int k = 0; k < 3; k++)
        wait_owned_run(leader, k, 2);

    cr_expect_eq(tc_check(&c, 30000), 0, "invariants");
    for (int k = 0; k < 3; k++) {
        sqlite3 *db = td_db(&c.nodes[k].d);

        for (int i = 0; i < AGENTS; i++) {
            snprintf(name, sizeof name, "m%d", i);
            expect_rolled(db, name);
        }
        sqlite3_close(db);
    }
}
