/* Unit tests for the background WAL checkpointer over a real SQLite file:
 * it runs off the writer, keeps the WAL bounded, loses no row, and closes
 * cleanly with a checkpoint in flight. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "state/store.h"
#include "state/walck.h"

#define ROW 3000 /* about one 4 KiB page per row */

static char dir[64], dbpath[128], walpath[140];
static struct ol__store st;
static uv_loop_t loop;
static struct ol__walck w;

static void setup(void)
{
    char err[OL_ERRMSG_SIZE];

    snprintf(dir, sizeof dir, "/tmp/ol-walck-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(dbpath, sizeof dbpath, "%s/outlast.db", dir);
    snprintf(walpath, sizeof walpath, "%s-wal", dbpath);
    cr_assert_eq(ol__store_open(&st, dbpath, OL_STORE_WRITE_NORMAL), 0);
    cr_assert_eq(ol__store_exec(&st, "CREATE TABLE t(i INTEGER, b BLOB);"),
                 0);
    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_eq(ol__walck_start(&w, &loop, st.db, dbpath, err), 0, "%s",
                 err);
}

static void teardown(void)
{
    char cmd[128];

    ol__walck_close(&w);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_eq(w.db, NULL, "the checkpointer's connection is closed");
    cr_expect_eq(uv_loop_close(&loop), 0, "no handle left open");
    ol__store_close(&st);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(walck, .init = setup, .fini = teardown);

/* One transaction of n rows. */
static void write_rows(int first, int n)
{
    static uint8_t blob[ROW];
    sqlite3_stmt *ins;

    cr_assert_eq(ol__store_prepare(&st, "INSERT INTO t VALUES(?, ?)", &ins),
                 0);
    cr_assert_eq(ol__store_begin(&st), 0);
    for (int i = first; i < first + n; i++) {
        memcpy(blob, &i, sizeof i);
        sqlite3_bind_int(ins, 1, i);
        sqlite3_bind_blob(ins, 2, blob, sizeof blob, SQLITE_STATIC);
        cr_assert_eq(sqlite3_step(ins), SQLITE_DONE);
        sqlite3_reset(ins);
    }
    cr_assert_eq(ol__store_commit(&st), 0);
    sqlite3_finalize(ins);
}

static off_t wal_size(void)
{
    struct stat s;

    return stat(walpath, &s) == 0 ? s.st_size : 0;
}

static long rows_seen_by_another_connection(void)
{
    struct ol__store ro;
    sqlite3_stmt *q;
    long n = -1;

    cr_assert_eq(ol__store_open(&ro, dbpath, OL_STORE_READ), 0);
    cr_assert_eq(ol__store_prepare(&ro, "SELECT count(*), "
                                        "count(DISTINCT i) FROM t", &q),
                 0);
    if (sqlite3_step(q) == SQLITE_ROW &&
        sqlite3_column_int64(q, 0) == sqlite3_column_int64(q, 1))
        n = (long)sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    ol__store_close(&ro);
    return n;
}

Test(walck, checkpoints_run_in_the_background_and_lose_nothing)
{
    const int txns = 120, per = 50; /* 6,000 pages: about 3 thresholds */
    off_t peak = 0;

    for (int t = 0; t < txns; t++) {
        write_rows(t * per, per);
        uv_run(&loop, UV_RUN_NOWAIT);
        if (wal_size() > peak)
            peak = wal_size();
    }
    /* Let the last checkpoint finish (bounded). */
    for (int i = 0; i < 500 && w.busy; i++)
        uv_run(&loop, UV_RUN_ONCE);
    cr_expect_gt(w.runs, 0, "no background checkpoint ran");
    cr_expect_lt(peak, (off_t)(OL_WALCK_LIMIT + 2 * per) * 4200,
                 "the WAL reached %lld bytes", (long long)peak);
    cr_expect_eq(rows_seen_by_another_connection(), txns * per);
}

Test(walck, the_writer_bounds_the_wal_when_the_loop_never_runs)
{
    /* Without the loop no background run can start: the writer must
     * checkpoint at OL_WALCK_LIMIT pages itself, and the WAL then restarts
     * instead of growing to the 24,000 pages written here. */
    const int txns = 240, per = 100;
    off_t peak = 0;

    for (int t = 0; t < txns; t++) {
        write_rows(t * per, per);
        if (wal_size() > peak)
            peak = wal_size();
    }
    cr_expect_eq(w.runs, 0);
    cr_expect_lt(peak, (off_t)(OL_WALCK_LIMIT + 2 * per) * 4200,
                 "the WAL reached %lld bytes", (long long)peak);
    cr_expect_eq(rows_seen_by_another_connection(), txns * per);
}

Test(walck, closing_with_a_checkpoint_in_flight_waits_for_it)
{
    write_rows(0, OL_WALCK_PAGES + 100);
    uv_run(&loop, UV_RUN_NOWAIT); /* the wake-up queues the work */
    cr_expect(w.busy, "a checkpoint is in flight");
    /* teardown closes now, runs the loop, and checks the connection and
     * every handle were closed. */
}
