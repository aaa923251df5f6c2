/*
 * Storage integrity with real outlastd processes: a node never starts over
 * silently, never signs a second, different checkpoint for an (agent,
 * epoch, seq) it signed before, recovers only when told to, and reports
 * damage it finds while running.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/chain.h"
#include "tests/support/daemon.h"
#include "tests/support/wait.h"

static const char agents[] =
    "[checkpoint]\n"
    "retain = 0\n"
    "[agent.fast]\n"
    "kind = counter\n"
    "config = {\"interval_ms\": 10}\n"
    "[agent.slow]\n"
    "kind = counter\n"
    "config = {\"interval_ms\": 1000000}\n";

/* No (agent, epoch, seq) signed twice with different contents. */
static void expect_no_resigned(const struct td_row *a, size_t na,
                               const struct td_row *b, size_t nb)
{
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++)
            if (a[i].seq == b[j].seq && a[i].epoch == b[j].epoch &&
                strcmp(a[i].agent, b[j].agent) == 0)
                cr_expect_eq(memcmp(a[i].hash, b[j].hash, 32), 0,
                             "'%s' epoch %" PRId64 " seq %" PRId64
                             " was signed twice with different contents",
                             a[i].agent, a[i].epoch, a[i].seq);
}

static int fast_at_least(struct td *d, void *arg)
{
    return td_state_int(d, "fast", "count", 0) >= *(int64_t *)arg;
}

static char *slurp(const char *path)
{
    char *out = NULL;

    td_sh(&out, "cat '%s'", path);
    return out;
}

/* Kill -9 with the newest commits only in the WAL, then the
 * WAL deleted.  The node used to start over at seq 0 under epoch 1. */
Test(storage, a_lost_wal_is_refused_and_recovery_never_resigns,
     .timeout = 180)
{
    struct td d;
    struct td_row *before, *after;
    size_t nb, na;
    int64_t want = 30;
    char *out, path[300];
    int code;

    td_init(&d, "storage", agents);
    cr_assert_eq(td_start(&d, 20000), 0, "see %s", d.log);
    cr_assert(td_until(fast_at_least, &d, &want, 30000), "no progress");
    td_kill9(&d);
    nb = td_rows(&d, &before);
    snprintf(path, sizeof path, "%s/outlast.db-wal", d.data);
    cr_assert_eq(unlink(path), 0);

    td_spawn(&d);
    code = td_wait_exit(&d, 20000);
    cr_expect_eq(code, 1, "the node started on a database that lost its "
                          "WAL");
    out = slurp(d.log);
    cr_expect(strstr(out, "cannot start:") && strstr(out, "outlast recover"),
              "%s", out);
    free(out);

    code = td_sh(&out, "%s recover --data-dir %s --new-history",
                 td_bin("outlast"), d.data);
    cr_assert_eq(code, 0, "%s", out);
    free(out);
    want = 5;
    cr_assert_eq(td_start(&d, 20000), 0, "see %s", d.log);
    cr_assert(td_until(fast_at_least, &d, &want, 30000), "no progress");
    cr_assert_eq(td_term(&d, 20000), 0);
    na = td_rows(&d, &after);
    expect_no_resigned(before, nb, after, na);
    for (size_t i = 0; i < na; i++)
        cr_expect_gt(after[i].epoch, 1, "seq %" PRId64 " of '%s' reuses "
                                        "epoch %" PRId64,
                     after[i].seq, after[i].agent, after[i].epoch);
    code = td_sh(&out, "%s verify --data-dir %s", td_bin("outlast"), d.data);
    cr_expect_eq(code, 0, "%s", out);
    free(out);
    free(before);
    free(after);
    td_cleanup(&d);
}

static int fast_degraded(struct td *d, void *arg)
{
    char st[32], why[512];
    int degraded = 0;

    (void)arg;
    td_agent_status(d, "fast", st, sizeof st, &degraded, why, sizeof why);
    return degraded;
}

/* Deleting an agent's newest checkpoints: the node does not resume it from
 * the shorter chain (it used to, and re-committed the deleted seqs). */
Test(storage, a_chain_cut_short_is_not_resumed, .timeout = 180)
{
    struct td d;
    struct td_row *before, *after;
    size_t nb, na;
    int64_t want = 20, top;
    sqlite3 *db;
    char path[300], st[32], why[512];
    int degraded;

    td_init(&d, "storage", agents);
    cr_assert_eq(td_start(&d, 20000), 0, "see %s", d.log);
    cr_assert(td_until(fast_at_least, &d, &want, 30000), "no progress");
    cr_assert_eq(td_term(&d, 20000), 0);
    nb = td_rows(&d, &before);
    snprintf(path, sizeof path, "%s/outlast.db", d.data);
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db,
                              "DELETE FROM checkpoints WHERE agent = 'fast' "
                              "AND seq > (SELECT max(seq) - 5 FROM "
                              "checkpoints WHERE agent = 'fast')",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(db);
    db = td_db(&d);
    top = td_q1(db, "SELECT max(seq) FROM checkpoints WHERE agent = 'fast'");
    sqlite3_close(db);

    cr_assert_eq(td_start(&d, 20000), 0, "see %s", d.log);
    cr_expect(td_until(fast_degraded, &d, NULL, 10000),
              "the agent was resumed from the shorter chain");
    td_agent_status(&d, "fast", st, sizeof st, &degraded, why, sizeof why);
    cr_expect(strstr(why, "below its head") != NULL, "reason: %s", why);
    /* Observation window: the degraded agent commits none of the deleted
     * seqs again. */
    tw_window_ms(300);
    cr_assert_eq(td_term(&d, 20000), 0);
    db = td_db(&d);
    cr_expect_eq(td_q1(db, "SELECT max(seq) FROM checkpoints WHERE agent = "
                           "'fast'"),
                 top, "the deleted seqs were committed again");
    sqlite3_close(db);
    na = td_rows(&d, &after);
    expect_no_resigned(before, nb, after, na);
    free(before);
    free(after);
    td_cleanup(&d);
}

static int storage_damaged(struct td *d, void *arg)
{
    struct td_resp r;
    const msgpack_object *s;
    int yes = 0;

    (void)arg;
    if (td_call(d, &r, "op", "status", NULL) == 0) {
        s = td_get(&r.u.data, "storage");
        yes = td_int(s, "errors", 0) > 0;
    }
    td_resp_free(&r);
    return yes;
}

static int slow_degraded(struct td *d, void *arg)
{
    char st[32], why[512];
    int degraded = 0;

    (void)arg;
    td_agent_status(d, "slow", st, sizeof st, &degraded, why, sizeof why);
    return degraded && strstr(why, "could not be stored") != NULL;
}

/*
 * A damaged page met while the node runs: the page new checkpoints are
 * appended to is overwritten.  The agent whose head is elsewhere resumes,
 * and its next checkpoint fails on that page: it is reported (log,
 * status) and the agent degraded, while the node keeps answering.
 */
Test(storage, damage_found_while_running_is_reported, .timeout = 180)
{
    struct td d;
    int64_t want = 40;
    sqlite3 *db;
    sqlite3_stmt *q;
    int64_t pg = -1;
    char path[300], err[256], *log;
    uint8_t junk[4096];
    FILE *f;

    td_init(&d, "storage", agents);
    cr_assert_eq(td_start(&d, 20000), 0, "see %s", d.log);
    cr_assert(td_until(fast_at_least, &d, &want, 30000), "no progress");
    /* Killed: 'slow' keeps its head (seq 1) on an early page. */
    td_kill9(&d);
    snprintf(path, sizeof path, "%s/outlast.db", d.data);
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL,
                              NULL, NULL),
                 SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT max(pageno) FROM dbstat WHERE "
                                    "name = 'checkpoints' AND pagetype = "
                                    "'leaf'",
                                    -1, &q, NULL),
                 SQLITE_OK);
    if (sqlite3_step(q) == SQLITE_ROW)
        pg = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db); /* merges the WAL, and removes it: put one back */
    cr_assert_gt(pg, 1);
    memset(junk, 0xee, sizeof junk);
    f = fopen(path, "r+b");
    cr_assert_not_null(f);
    fseek(f, (long)((pg - 1) * 4096), SEEK_SET);
    fwrite(junk, 1, sizeof junk, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/outlast.db-wal", d.data);
    fclose(fopen(path, "w"));

    cr_assert_eq(td_start(&d, 20000), 0, "see %s", d.log);
    cr_expect(td_send_json(&d, "slow", "{\"add\": 1}", err, sizeof err) == 0,
              "%s", err);
    cr_expect(td_until(slow_degraded, &d, NULL, 10000),
              "the failed checkpoint did not degrade its agent");
    cr_expect(td_until(storage_damaged, &d, NULL, 5000),
              "status does not show the damage");
    log = slurp(d.log);
    cr_expect(strstr(log, "storage: ") != NULL, "%s", log);
    cr_expect(strstr(log, "malformed") != NULL, "%s", log);
    free(log);
    /* Still serving. */
    cr_expect_eq(td_term(&d, 20000), 0);
    td_cleanup(&d);
}
