/*
 * The daemon's own inputs: its arguments, its config file, its data
 * directory and key file.  Each bad input gets a clear error naming what
 * was wrong and a non-zero exit, and nothing stored is touched.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/support/daemon.h"
#include "tests/support/wait.h"
#include "tests/support/faults.h"

static struct td d;

static void setup(void)
{
    td_init(&d, "daemon",
            "[agent.ticker]\nkind = counter\nconfig = {\"interval_ms\": 20}\n");
}

static void teardown(void)
{
    td_cleanup(&d);
}

TestSuite(daemon, .init = setup, .fini = teardown, .timeout = 60);

static int run(char **out, const char *args)
{
    return td_sh(out, "%s %s", td_bin("outlastd"), args);
}

Test(daemon, bad_arguments_exit_2_and_say_why)
{
    char *out;

    cr_expect_eq(run(&out, "--frobnicate"), 2);
    cr_expect(strstr(out, "unknown argument '--frobnicate'"), "%s", out);
    free(out);
    cr_expect_eq(run(&out, "--config"), 2);
    cr_expect(strstr(out, "--config needs a value"), "%s", out);
    free(out);
    cr_expect_eq(run(&out, "--log-level loud --data-dir /tmp/x"), 2);
    cr_expect(strstr(out, "not 'loud'"), "%s", out);
    free(out);
}

Test(daemon, bad_config_names_file_and_line)
{
    char path[256], *out;
    FILE *f;

    snprintf(path, sizeof path, "%s/bad.ini", d.root);
    f = fopen(path, "w");
    fprintf(f, "[node]\nid = 1\nbogus_key = 3\n");
    fclose(f);
    {
        char args[300];

        snprintf(args, sizeof args, "--config %s", path);
        cr_expect_eq(run(&out, args), 2);
        cr_expect(strstr(out, "bad.ini:3: unknown key 'bogus_key'"), "%s",
                  out);
        free(out);
    }
}

Test(daemon, agent_config_that_is_not_json_is_a_config_error)
{
    char path[256], args[300], *out;
    FILE *f;

    snprintf(path, sizeof path, "%s/badjson.ini", d.root);
    f = fopen(path, "w");
    fprintf(f, "[node]\ndata_dir = %s/data2\n[agent.t]\nkind = counter\n"
               "config = {\"interval_ms\": 20,}\n",
            d.root);
    fclose(f);
    snprintf(args, sizeof args, "--config %s", path);
    cr_expect_eq(run(&out, args), 2);
    cr_expect(strstr(out, "badjson.ini:5: [agent.t] config is not valid "
                          "JSON") != NULL,
              "%s", out);
    free(out);
}

Test(daemon, a_second_daemon_on_one_data_dir_is_refused)
{
    char args[300], *out;
    int64_t rows;

    cr_assert_eq(td_start(&d, 10000), 0, "see %s", d.log);
    snprintf(args, sizeof args, "--config %s", d.conf);
    cr_expect_eq(run(&out, args), 1);
    cr_expect(strstr(out, "is in use by another outlastd"), "%s", out);
    free(out);
    /* The running node is unharmed: it goes on committing. */
    rows = td_head_seq(&d, "ticker");
    cr_assert_geq(rows, 0);
    td_wait_reached(&d, "ticker", NULL, rows + 2, 5000);
    cr_expect_eq(td_term(&d, 10000), 0);
}

Test(daemon, a_key_file_others_can_read_is_refused)
{
    char key[300];

    cr_assert_eq(td_start(&d, 10000), 0);
    cr_assert_eq(td_term(&d, 10000), 0);
    snprintf(key, sizeof key, "%s/node.key", d.data);
    cr_assert_eq(chmod(key, 0644), 0);
    td_spawn(&d);
    cr_expect_eq(td_wait_exit(&d, 10000), 1);
    {
        char *out;

        td_sh(&out, "cat %s", d.log);
        cr_expect(strstr(out, "readable by others (mode 0644)"), "%s", out);
        free(out);
    }
}

Test(daemon, a_database_that_is_not_outlasts_is_refused_untouched)
{
    char path[300], *out;
    FILE *f;
    struct stat st;

    cr_assert_eq(mkdir(d.data, 0700), 0);
    snprintf(path, sizeof path, "%s/outlast.db", d.data);
    f = fopen(path, "w");
    fputs("this is not a database, and it must survive\n", f);
    fclose(f);
    td_spawn(&d);
    cr_expect_eq(td_wait_exit(&d, 10000), 1);
    td_sh(&out, "cat %s", d.log);
    cr_expect(strstr(out, "outlast.db") && strstr(out, "cannot start"),
              "%s", out);
    free(out);
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_size, 44, "the file was changed");
}

Test(daemon, sigterm_drains_and_exits_0)
{
    int64_t stops;

    cr_assert_eq(td_start(&d, 10000), 0);
    td_wait_reached(&d, "ticker", NULL, 1, 5000);
    cr_expect_eq(td_term(&d, 10000), 0);
    /* The STOP event's checkpoint committed before the exit. */
    {
        sqlite3 *db = td_db(&d);

        stops = td_q1(db, "SELECT count(*) FROM checkpoints WHERE "
                          "agent = 'ticker'");
        cr_expect_gt(stops, 1);
        sqlite3_close(db);
    }
    cr_expect_eq(td_state_int(&d, "ticker", "count", -1) >= 0, 1);
}

static int seen_count(struct td *t, void *arg)
{
    return td_state_int(t, "lazy", "count", 0) >= *(int64_t *)arg;
}

Test(daemon, batched_checkpoints_still_flush_an_idle_agent)
{
    char extra[512], err[256];
    int64_t want = 7, ckpts;
    sqlite3 *db;

    /* Checkpoints every 100 steps, and an agent that takes one step (a
     * message) and then idles: its step still reaches disk. */
    snprintf(extra, sizeof extra,
             "[checkpoint]\nevery_steps = 100\n"
             "[agent.lazy]\nkind = counter\n"
             "config = {\"interval_ms\": 3600000}\n");
    td_cleanup(&d);
    td_init(&d, "daemon", extra);
    cr_assert_eq(td_start(&d, 10000), 0);
    cr_assert_eq(td_send_json(&d, "lazy", "{\"add\": 7}", err, sizeof err),
                 0, "%s", err);
    cr_expect(td_until(seen_count, &d, &want, 5000),
              "the idle agent's step never reached a checkpoint");
    db = td_db(&d);
    ckpts = td_q1(db, "SELECT count(*) FROM checkpoints WHERE agent='lazy'");
    sqlite3_close(db);
    cr_expect_eq(ckpts, 2, "START, then one flush of the message step");
    cr_expect_eq(td_term(&d, 10000), 0);
}

Test(daemon, every_steps_batches_checkpoints)
{
    char extra[512];
    int64_t steps, ckpts;
    sqlite3 *db;

    snprintf(extra, sizeof extra,
             "[checkpoint]\nevery_steps = 10\n"
             "[agent.fast]\nkind = counter\n"
             "config = {\"interval_ms\": 5}\n");
    td_cleanup(&d);
    td_init(&d, "daemon", extra);
    cr_assert_eq(td_start(&d, 10000), 0);
    td_wait_reached(&d, "fast", "ticks", 51, 10000);
    cr_expect_eq(td_term(&d, 10000), 0);
    steps = td_state_int(&d, "fast", "ticks", 0);
    db = td_db(&d);
    ckpts = td_q1(db, "SELECT count(*) FROM checkpoints WHERE agent='fast'");
    sqlite3_close(db);
    cr_expect_gt(steps, 50, "the agent barely ran (%lld ticks)",
                 (long long)steps);
    /* START, one per 10 steps, and the STOP at shutdown. */
    cr_expect_leq(ckpts, steps / 10 + 3, "%lld checkpoints for %lld steps",
                  (long long)ckpts, (long long)steps);
}

/* ---- the wall clock stepped back ---- */

static int checkpoints_at_least(struct td *t, void *arg)
{
    sqlite3 *db = td_db(t);
    int64_t n = td_q1(db, "SELECT max(seq) FROM checkpoints "
                          "WHERE agent='ticker'");

    sqlite3_close(db);
    return n >= *(int64_t *)arg;
}

/* A wall clock stepped back an hour (a bad time server, `date -s`) holds
 * back no timer armed with timer_after() and no checkpoint flush: both run
 * on the monotonic clock they were armed on.  The node runs with the clock
 * shim (tests/shim/suspend.c), which shifts CLOCK_REALTIME on request. */
Test(daemon, a_wall_clock_stepped_back_holds_no_timer_or_flush)
{
    char extra[256], path[300], pre[1300], ctl_env[400], asan[600];
    const char *o = getenv("ASAN_OPTIONS");
    struct nf_ctl ctl;
    int64_t want;
    sqlite3 *db;

    /* A ticker every 100 ms, checkpointed by the 200 ms flush only. */
    snprintf(extra, sizeof extra,
             "[checkpoint]\nevery_steps = 1000\nevery_ms = 200\n"
             "[agent.ticker]\nkind = counter\n"
             "config = {\"interval_ms\": 100}\n");
    td_cleanup(&d);
    td_init(&d, "clock", extra);
    snprintf(path, sizeof path, "%s/clock.ctl", d.root);
    nf_ctl_create(&ctl, path);
    snprintf(pre, sizeof pre, "%s", nf_preload_env());
    snprintf(ctl_env, sizeof ctl_env, "%s=%s", OL_SHIM_CTL_ENV, path);
    snprintf(asan, sizeof asan, "ASAN_OPTIONS=%s%sverify_asan_link_order=0",
             o ? o : "", o && o[0] ? ":" : "");
    putenv(pre);
    putenv(ctl_env);
    putenv(asan);
    cr_assert_eq(td_start(&d, 10000), 0, "outlastd did not start; see %s",
                 d.log);
    unsetenv("LD_PRELOAD");
    unsetenv(OL_SHIM_CTL_ENV);
    if (o)
        setenv("ASAN_OPTIONS", o, 1);
    else
        unsetenv("ASAN_OPTIONS");
    want = 3;
    cr_assert(td_until(checkpoints_at_least, &d, &want, 10000),
              "the ticker never checkpointed; see %s", d.log);
    cr_assert_geq(ctl.page->loaded, 1, "the clock shim is not loaded");

    __atomic_store_n(&ctl.page->wall_offset_ns, (int64_t)3600 * 1000000000,
                     __ATOMIC_SEQ_CST);
    db = td_db(&d);
    want = td_q1(db, "SELECT max(seq) FROM checkpoints WHERE agent='ticker'");
    sqlite3_close(db);
    want += 5;
    cr_expect(td_until(checkpoints_at_least, &d, &want, 10000),
              "after the wall clock went back an hour the ticker stopped "
              "checkpointing (timers or the flush wait on the wall clock); "
              "see %s", d.log);
    cr_expect_geq(__atomic_load_n(&ctl.page->wall_shifted, __ATOMIC_SEQ_CST),
                  1, "the node never read the shifted wall clock");
    cr_expect_eq(td_term(&d, 10000), 0);
    nf_ctl_close(&ctl);
}
