/*
 * Tampering with a stored checkpoint: `outlast verify` names the record and
 * exits non-zero, the daemon refuses to load it (the agent is degraded, the
 * CLI shows it), the other agents keep running, and nothing is deleted.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/daemon.h"
#include "tests/support/wait.h"

static const char agents[] =
    "[agent.victim]\n"
    "kind = counter\n"
    "config = {\"interval_ms\": 20}\n"
    "[agent.bystander]\n"
    "kind = counter\n"
    "config = {\"interval_ms\": 20}\n";

/* Flip one bit in the middle of the newest body of `agent`; returns its
 * seq. */
static int64_t flip_head(struct td *d, const char *agent)
{
    char path[256];
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t seq;
    uint8_t *body;
    int len;

    snprintf(path, sizeof path, "%s/outlast.db", d->data);
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT seq, body FROM checkpoints "
                                    "WHERE agent = ? ORDER BY seq DESC "
                                    "LIMIT 1",
                                    -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, agent, -1, SQLITE_STATIC);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    seq = sqlite3_column_int64(st, 0);
    len = sqlite3_column_bytes(st, 1);
    body = malloc((size_t)len);
    memcpy(body, sqlite3_column_blob(st, 1), (size_t)len);
    sqlite3_finalize(st);
    body[len / 2] ^= 0x01;
    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "UPDATE checkpoints SET body = ? WHERE "
                                    "agent = ? AND seq = ?",
                                    -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_blob(st, 1, body, len, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, agent, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, seq);
    cr_assert_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(body);
    return seq;
}

static int counting(struct td *t, void *arg)
{
    return td_state_int(t, "bystander", "count", 0) > *(int64_t *)arg;
}

Test(tamper, flipped_byte_is_named_refused_and_kept, .timeout = 120)
{
    struct td d;
    char *out = NULL, status[32], reason[512], needle[96];
    int64_t seq, rows, before;
    int degraded, code;
    sqlite3 *db;

    td_init(&d, "tamper", agents);
    cr_assert_eq(td_start(&d, 10000), 0, "see %s", d.log);
    td_wait_reached(&d, "victim", NULL, 2, 10000);
    cr_assert_eq(td_term(&d, 10000), 0);

    code = td_sh(&out, "%s verify --db %s/outlast.db", td_bin("outlast"),
                 d.data);
    cr_expect_eq(code, 0, "clean database failed verify:\n%s", out);
    free(out);

    seq = flip_head(&d, "victim");
    db = td_db(&d);
    rows = td_q1(db, "SELECT count(*) FROM checkpoints");
    sqlite3_close(db);

    code = td_sh(&out, "%s verify --db %s/outlast.db", td_bin("outlast"),
                 d.data);
    cr_expect_eq(code, 1, "verify exit code %d:\n%s", code, out);
    snprintf(needle, sizeof needle, "seq %" PRId64, seq);
    cr_expect(strstr(out, "victim") && strstr(out, needle),
              "verify did not name 'victim' %s:\n%s", needle, out);
    free(out);

    cr_assert_eq(td_start(&d, 10000), 0, "see %s", d.log);
    td_agent_status(&d, "victim", status, sizeof status, &degraded, reason,
                    sizeof reason);
    cr_expect(degraded, "the tampered agent was loaded");
    cr_expect(strstr(reason, needle) != NULL, "reason: %s", reason);
    before = td_state_int(&d, "bystander", "count", 0);
    cr_expect(td_until(counting, &d, &before, 5000),
              "the other agent stopped");

    code = td_sh(&out, "%s agents --data-dir %s", td_bin("outlast"), d.data);
    cr_expect_eq(code, 0, "%s", out);
    cr_expect(strstr(out, "degraded") != NULL, "agents output:\n%s", out);
    free(out);

    /* Nothing was deleted, and the tampered row was not rewritten. */
    cr_assert_eq(td_term(&d, 10000), 0);
    db = td_db(&d);
    cr_expect_geq(td_q1(db, "SELECT count(*) FROM checkpoints"), rows);
    cr_expect_eq(td_q1(db, "SELECT max(seq) FROM checkpoints WHERE "
                           "agent = 'victim'"),
                 seq);
    sqlite3_close(db);
    td_cleanup(&d);
}
