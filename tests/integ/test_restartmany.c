/*
 * A node restarted over a few thousand agents: enough that their heads are
 * loaded and verified in batches off the loop (runtime/resume.h).  Every
 * agent resumes from its own head (one RESUME step more, its count kept),
 * and a head damaged while the node was down still leaves exactly that
 * agent degraded, with the error the loop's own check gives, while all
 * the others resume.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/daemon.h"

#define AGENTS 3000
#define EVERY 10 /* every tenth agent is sent a message before the kill */
#define WAIT_MS 180000 /* thousands of agents on a loaded machine */

static struct td d;

static void teardown(void)
{
    td_cleanup(&d);
}

TestSuite(restartmany, .fini = teardown, .timeout = 600);

struct heads {
    char name[AGENTS][64];
    int64_t seq[AGENTS];
    size_t n;
};

/* Every agent's head record, by name. */
static void read_heads(struct heads *h)
{
    sqlite3 *db = td_db(&d);
    sqlite3_stmt *st;

    h->n = 0;
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT agent, seq FROM heads "
                                        "ORDER BY agent",
                                    -1, &st, NULL),
                 SQLITE_OK);
    while (h->n < AGENTS && sqlite3_step(st) == SQLITE_ROW) {
        snprintf(h->name[h->n], sizeof h->name[0], "%s",
                 (const char *)sqlite3_column_text(st, 0));
        h->seq[h->n++] = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static int64_t q1(const char *sql)
{
    sqlite3 *db = td_db(&d);
    int64_t v = td_q1(db, sql);

    sqlite3_close(db);
    return v;
}

static int all_started(struct td *t, void *arg)
{
    (void)t;
    (void)arg;
    return q1("SELECT count(*) FROM heads") == AGENTS;
}

/* Every message sent was taken (the mailbox is empty) and counted. */
static int all_counted(struct td *t, void *arg)
{
    const struct heads *h = arg;

    if (q1("SELECT count(*) FROM mailbox") != 0)
        return 0;
    for (size_t i = 0; i < h->n; i += EVERY)
        if (td_state_int(t, h->name[i], "count", -1) != (int64_t)i + 1)
            return 0;
    return 1;
}

struct resumed {
    const struct heads *before;
    struct heads now;
    size_t victim;
};

/* Every agent but the victim is one seq past its head before the kill. */
static int all_resumed(struct td *t, void *arg)
{
    struct resumed *r = arg;
    size_t done = 0;

    (void)t;
    read_heads(&r->now);
    if (r->now.n != r->before->n)
        return 0;
    for (size_t i = 0; i < r->now.n; i++)
        done += i != r->victim && r->now.seq[i] >= r->before->seq[i] + 1;
    return done == r->now.n - 1;
}

/* Change the middle byte of body `seq` of `agent` (the WAL the killed
 * node left stays: closing would otherwise fold it in and remove it). */
static void damage_body(const char *agent, int64_t seq)
{
    static const char sql[] =
        "UPDATE checkpoints SET body = CAST(substr(body, 1, length(body) / 2)"
        " || CASE WHEN substr(body, length(body) / 2 + 1, 1) = x'00'"
        " THEN x'01' ELSE x'00' END"
        " || substr(body, length(body) / 2 + 2) AS BLOB)"
        " WHERE agent = ?1 AND seq = ?2"
        " RETURNING length(body), typeof(body)";
    char path[256];
    sqlite3 *db;
    sqlite3_stmt *st;
    int keep_wal = 1;

    snprintf(path, sizeof path, "%s/outlast.db", d.data);
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_file_control(db, "main", SQLITE_FCNTL_PERSIST_WAL,
                                      &keep_wal),
                 SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK,
                 "%s", sqlite3_errmsg(db));
    sqlite3_bind_text(st, 1, agent, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, seq);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW, "%s", sqlite3_errmsg(db));
    cr_assert_gt(sqlite3_column_int(st, 0), 2);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 1), "blob");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void spawn_and_count(struct heads *before)
{
    char *out = NULL, err[256], json[64];
    int code;

    cr_assert_eq(td_start(&d, 30000), 0, "see %s", d.log);
    code = td_sh(&out,
                 "%s --socket %s --timeout 120000 spawn counter --prefix c "
                 "--count %d --config '{\"interval_ms\": 600000}' 2>&1",
                 td_bin("outlast"), d.sock, AGENTS);
    cr_assert_eq(code, 0, "spawn: %s", out);
    free(out);
    cr_assert(td_until(all_started, &d, NULL, WAIT_MS),
              "the agents did not all start");
    read_heads(before);
    cr_assert_eq(before->n, AGENTS);
    /* Counts of their own, so that a resume from another head (or from
     * none) shows. */
    for (size_t i = 0; i < before->n; i += EVERY) {
        snprintf(json, sizeof json, "{\"add\": %zu}", i + 1);
        cr_assert_eq(td_send_json(&d, before->name[i], json, err,
                                  sizeof err),
                     0, "send to %s: %s", before->name[i], err);
    }
    cr_assert(td_until(all_counted, &d, before, WAIT_MS),
              "the messages were not all counted");
    read_heads(before);
}

Test(restartmany, batched_resume_keeps_state_and_refuses_a_bad_head)
{
    static struct heads before;
    static struct resumed r;
    char status[32], reason[512], want[512], *log = NULL;
    int degraded;
    size_t v;

    td_init(&d, "restartmany", NULL);
    spawn_and_count(&before);
    td_kill9(&d);

    v = before.n / 2;
    damage_body(before.name[v], before.seq[v]);
    cr_assert_eq(td_start(&d, 60000), 0, "see %s", d.log);
    r.before = &before;
    r.victim = v;
    cr_assert(td_until(all_resumed, &d, &r, WAIT_MS),
              "not every agent resumed");

    /* It went through the batches. */
    cr_assert_eq(td_sh(&log, "grep -c 'in batches off the loop' %s", d.log),
                 0, "the restart did not queue its agents");
    free(log);
    /* Each resumed from its own head: one step (RESUME) more, its count
     * as it was. */
    for (size_t i = 0; i < r.now.n; i++) {
        if (i == v)
            continue;
        cr_assert_str_eq(r.now.name[i], before.name[i]);
        cr_expect_eq(r.now.seq[i], before.seq[i] + 1,
                     "%s: seq %" PRId64 " after %" PRId64, r.now.name[i],
                     r.now.seq[i], before.seq[i]);
        if (i % EVERY == 0)
            cr_expect_eq(td_state_int(&d, r.now.name[i], "count", -1),
                         (int64_t)i + 1, "%s lost its count",
                         r.now.name[i]);
    }
    /* The damaged one: degraded with the error the check on the loop
     * gives, and nothing written for it. */
    td_agent_status(&d, before.name[v], status, sizeof status, &degraded,
                    reason, sizeof reason);
    snprintf(want, sizeof want,
             "agent '%s' checkpoint seq %" PRId64
             ": body hash is not the one its seal signed (tampered)",
             before.name[v], before.seq[v]);
    cr_expect(degraded, "%s was loaded from a damaged head",
              before.name[v]);
    cr_expect_str_eq(reason, want);
    cr_expect_eq(r.now.seq[v], before.seq[v]);
    cr_assert_eq(td_term(&d, 30000), 0);
}
