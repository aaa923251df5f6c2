/*
 * Crash safety of a single node: a real outlastd is killed with SIGKILL at
 * random moments and restarted, many times.  After every kill the rows that
 * were committed before it must still be there; at the end every chain
 * verifies, every agent's seqs are gap-free, and every message the sender
 * released reached the ledger exactly once.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "state/verify.h"
#include "base/buf.h"
#include "tests/support/chain.h"
#include "tests/support/daemon.h"

#define KILLS 12
#define MESSAGES 400

static const char agents[] =
    "[checkpoint]\n"
    "retain = 0\n"
    "[agent.ticker]\n"
    "kind = counter\n"
    "config = {\"interval_ms\": 15}\n"
    "[agent.ledger]\n"
    "kind = ledger\n"
    "[agent.sender]\n"
    "kind = sender\n";

static void expect_rows_kept(struct td *d, const struct td_row *rows, size_t n,
                             int kill_no)
{
    sqlite3 *db = td_db(d);
    sqlite3_stmt *st;

    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT hash FROM checkpoints "
                                        "WHERE agent = ? AND seq = ?",
                                    -1, &st, NULL), SQLITE_OK);
    for (size_t i = 0; i < n; i++) {
        sqlite3_bind_text(st, 1, rows[i].agent, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, rows[i].seq);
        cr_assert_eq(sqlite3_step(st), SQLITE_ROW,
                     "kill %d lost committed checkpoint '%s' seq %" PRId64,
                     kill_no, rows[i].agent, rows[i].seq);
        cr_assert_eq(memcmp(sqlite3_column_blob(st, 0), rows[i].hash, 32),
                     0, "kill %d changed '%s' seq %" PRId64, kill_no,
                     rows[i].agent, rows[i].seq);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void send_burst(struct td *d, const char *to, int count)
{
    struct ol__buf b;
    msgpack_packer pk;
    struct td_resp r;
    char err[256];
    int rv;

    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "op", 2);
    msgpack_pack_str_with_body(&pk, "send", 4);
    msgpack_pack_str_with_body(&pk, "name", 4);
    msgpack_pack_str_with_body(&pk, "sender", 6);
    msgpack_pack_str_with_body(&pk, "message", 7);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "to", 2);
    msgpack_pack_str_with_body(&pk, to, strlen(to));
    msgpack_pack_str_with_body(&pk, "n", 1);
    msgpack_pack_int(&pk, count);
    rv = td_call_raw(d, b.base, b.len, &r);
    cr_assert_eq(rv, 0, "send: %s", td_errmsg(&r, err, sizeof err));
    td_resp_free(&r);
    ol__buf_close(&b);
}

static int ledger_done(struct td *d, void *arg)
{
    return td_state_int(d, "ledger", "entries", 0) >= *(int *)arg;
}

static void verify_cb(void *data, const char *agent, uint64_t seq,
                      const char *problem)
{
    cr_log_error("verify: '%s' seq %" PRIu64 ": %s", agent, seq, problem);
}

Test(crash, kill9_loses_no_committed_checkpoint_and_no_message,
     .timeout = 240)
{
    struct td d;
    struct td_row *rows;
    unsigned seed = (unsigned)time(NULL);
    int want = MESSAGES;
    struct ol__verify_report rep;
    sqlite3 *db;

    cr_log_info("seed %u", seed);
    srand(seed);
    td_init(&d, "crash", agents);
    cr_assert_eq(td_start(&d, 10000), 0, "outlastd did not start; see %s",
                 d.log);
    send_burst(&d, "ledger", MESSAGES);

    for (int k = 0; k < KILLS; k++) {
        size_t n;

        /* Not a wait for a condition: the kill lands at a random point
         * of the node's work (seeded), which is the point of the test. */
        td_sleep_ms(40 + rand() % 260);
        n = td_rows(&d, &rows);
        td_kill9(&d);
        expect_rows_kept(&d, rows, n, k);
        free(rows);
        cr_assert_eq(td_start(&d, 10000), 0,
                     "restart %d failed; see %s (seed %u)", k, d.log, seed);
    }

    cr_assert(td_until(ledger_done, &d, &want, 60000),
              "ledger has %" PRId64 " of %d entries (seed %u)",
              td_state_int(&d, "ledger", "entries", 0), MESSAGES, seed);
    cr_expect_eq(td_state_int(&d, "ledger", "entries", -1), MESSAGES);
    cr_expect_eq(td_state_int(&d, "ledger", "dups", -1), 0,
                 "a message was delivered twice");
    cr_expect_eq(td_state_int(&d, "ledger", "gaps", -1), 0,
                 "a message was lost");
    cr_expect_gt(td_state_int(&d, "ticker", "count", 0), 0);

    cr_assert_eq(td_term(&d, 20000), 0, "SIGTERM did not exit 0");

    db = td_db(&d);
    cr_expect_eq(td_q1(db, "SELECT count(*) FROM (SELECT agent FROM "
                           "checkpoints GROUP BY agent HAVING min(seq) != 1 "
                           "OR count(*) != max(seq))"),
                 0, "an agent's seqs have a gap");
    cr_expect_eq(td_q1(db, "SELECT count(*) FROM mailbox WHERE "
                           "to_agent = 'ledger'"),
                 0, "messages still waiting for the ledger");
    cr_assert_eq(ol__verify_store(db, NULL, NULL, 0, verify_cb, NULL, &rep),
                 0);
    cr_expect_eq(rep.bad, 0, "%" PRIu64 " checkpoints failed verification",
                 rep.bad);
    cr_expect_eq(rep.agents, 3);
    sqlite3_close(db);
    td_cleanup(&d);
}
