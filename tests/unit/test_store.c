/* Unit tests for the store: a database is created whole with its identity,
 * a file that is not outlast's is refused without being changed, schema 1
 * is upgraded, the heads trigger keeps each agent's newest checkpoint, the
 * commit count rises with every commit, and a read-only open of a closed
 * database creates no file beside it. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "state/store.h"

static char dir[64], db[128];

static void setup(void)
{
    ol_log_set_level(OL_LOG_ERROR);
    snprintf(dir, sizeof dir, "/tmp/ol-store-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(db, sizeof db, "%s/outlast.db", dir);
}

static void teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(store, .init = setup, .fini = teardown, .timeout = 30);

static int file_exists(const char *suffix)
{
    char p[160];

    snprintf(p, sizeof p, "%s%s", db, suffix);
    return access(p, F_OK) == 0;
}

/* The whole file, to prove a refused open changed nothing. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *b;

    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    rewind(f);
    b = malloc(*len + 1);
    cr_assert_eq(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

static void sql(const char *path, const char *text)
{
    sqlite3 *d;
    char *err = NULL;

    cr_assert_eq(sqlite3_open(path, &d), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(d, text, NULL, NULL, &err), SQLITE_OK, "%s",
                 err);
    sqlite3_close(d);
}

static void expect_refused(const char *needle)
{
    struct ol__store s;
    size_t n0, n1;
    char *before = slurp(db, &n0), *after;

    for (int mode = OL_STORE_WRITE_FULL; mode <= OL_STORE_READ; mode++) {
        cr_expect_eq(ol__store_open(&s, db, mode), OL_EMALFORMED,
                     "mode %d accepted it", mode);
        cr_expect(strstr(s.errmsg, needle) != NULL, "'%s' lacks '%s'",
                  s.errmsg, needle);
    }
    after = slurp(db, &n1);
    cr_expect(n0 == n1 && memcmp(before, after, n0) == 0,
              "the refused file was changed");
    cr_expect(!file_exists("-wal"), "a WAL was created beside it");
    free(before);
    free(after);
}

Test(store, a_new_database_has_an_identity_and_counts_commits)
{
    static const uint8_t zero[OL_DBID_SIZE];
    struct ol__store s, r;
    struct stat st;

    cr_assert_eq(ol__store_open(&s, db, OL_STORE_WRITE_FULL), 0, "%s",
                 s.errmsg);
    cr_expect_eq(s.schema, OL_SCHEMA_VERSION);
    cr_expect_neq(memcmp(s.db_id, zero, OL_DBID_SIZE), 0);
    cr_expect_eq(s.commits, 0);
    cr_expect(!file_exists(".new"), "the temp file was left behind");
    cr_assert_eq(stat(db, &st), 0);
    cr_expect_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(ol__store_begin(&s), 0);
        cr_assert_eq(ol__store_commit(&s), 0);
    }
    cr_expect_eq(s.commits, 3);
    cr_assert_eq(ol__store_open(&r, db, OL_STORE_READ_SHARED), 0, "%s",
                 r.errmsg);
    cr_expect_eq(r.commits, 3);
    cr_expect_eq(memcmp(r.db_id, s.db_id, OL_DBID_SIZE), 0);
    ol__store_close(&r);
    /* A rolled-back transaction is not counted. */
    cr_assert_eq(ol__store_begin(&s), 0);
    ol__store_rollback(&s);
    ol__store_close(&s);
    cr_assert_eq(ol__store_open(&s, db, OL_STORE_WRITE_FULL), 0);
    cr_expect_eq(s.commits, 3);
    ol__store_close(&s);
    cr_assert_eq(ol__store_create(&s, db, OL_STORE_WRITE_FULL), OL_EEXISTS);
}

Test(store, an_empty_file_is_refused)
{
    int fd = open(db, O_CREAT | O_WRONLY, 0600);

    cr_assert(fd >= 0);
    close(fd);
    expect_refused("is empty (0 bytes)");
}

Test(store, a_file_that_is_not_sqlite_is_refused)
{
    FILE *f = fopen(db, "w");

    fputs("this is not a database, but it is long enough to have a "
          "header: 0123456789012345678901234567890123456789\n", f);
    fclose(f);
    expect_refused("is not a SQLite database");
}

Test(store, another_programs_database_is_never_adopted)
{
    /* Even one with a table called meta. */
    sql(db, "CREATE TABLE meta(name TEXT, v INTEGER);"
            "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT);"
            "INSERT INTO users(email) VALUES('a@example.com');");
    expect_refused("not outlast's (its tables: 'meta', 'users')");
}

Test(store, a_sqlite_file_without_tables_is_refused)
{
    sql(db, "CREATE TABLE x(a); DROP TABLE x;");
    expect_refused("with no tables");
}

Test(store, a_newer_schema_is_refused)
{
    struct ol__store s;

    cr_assert_eq(ol__store_open(&s, db, OL_STORE_WRITE_FULL), 0);
    ol__store_close(&s);
    sql(db, "UPDATE meta SET value = 99 WHERE key = 'schema'");
    cr_assert_eq(ol__store_open(&s, db, OL_STORE_WRITE_FULL), OL_EMALFORMED);
    cr_expect(strstr(s.errmsg, "has schema 99") != NULL, "%s", s.errmsg);
}

static void put_ckpt(struct ol__store *s, const char *agent, int seq,
                     uint8_t tag)
{
    sqlite3_stmt *st;
    uint8_t hash[32];

    memset(hash, tag, sizeof hash);
    cr_assert_eq(sqlite3_prepare_v2(s->db,
                                    "INSERT INTO checkpoints(agent, seq, "
                                    "epoch, time_ms, hash, seal, idx, body) "
                                    "VALUES(?, ?, 1, 0, ?, 1, 0, x'00')",
                                    -1, &st, NULL),
                 SQLITE_OK);
    sqlite3_bind_text(st, 1, agent, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, seq);
    sqlite3_bind_blob(st, 3, hash, 32, SQLITE_STATIC);
    cr_assert_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
}

static int64_t q1(struct ol__store *s, const char *text)
{
    sqlite3_stmt *st;
    int64_t v = -1;

    cr_assert_eq(sqlite3_prepare_v2(s->db, text, -1, &st, NULL), SQLITE_OK,
                 "%s", sqlite3_errmsg(s->db));
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

Test(store, heads_only_move_forward)
{
    struct ol__store s;

    cr_assert_eq(ol__store_open(&s, db, OL_STORE_WRITE_FULL), 0);
    for (int i = 1; i <= 5; i++)
        put_ckpt(&s, "a", i, (uint8_t)i);
    put_ckpt(&s, "b", 1, 9);
    cr_expect_eq(q1(&s, "SELECT seq FROM heads WHERE agent = 'a'"), 5);
    cr_expect_eq(q1(&s, "SELECT seq FROM heads WHERE agent = 'b'"), 1);
    /* Deleting the newest rows leaves the head where it was. */
    cr_assert_eq(ol__store_exec(&s, "DELETE FROM checkpoints WHERE agent = "
                                    "'a' AND seq > 2"),
                 0);
    cr_expect_eq(q1(&s, "SELECT seq FROM heads WHERE agent = 'a'"), 5);
    /* An older row inserted again does not move it back. */
    put_ckpt(&s, "a", 3, 3);
    cr_expect_eq(q1(&s, "SELECT seq FROM heads WHERE agent = 'a'"), 5);
    /* A row that replaces the one at the head's seq is the head. */
    cr_assert_eq(ol__store_exec(&s, "DELETE FROM checkpoints WHERE agent = "
                                    "'b' AND seq = 1"),
                 0);
    put_ckpt(&s, "b", 1, 0x77);
    cr_expect_eq(q1(&s, "SELECT substr(hex(hash), 1, 2) = '77' FROM heads "
                        "WHERE agent = 'b'"),
                 1);
    ol__store_close(&s);
}

Test(store, schema_1_is_upgraded_with_heads_from_its_rows)
{
    struct ol__store s;

    sql(db, "CREATE TABLE meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
            "INSERT INTO meta VALUES('schema', 1);"
            "CREATE TABLE checkpoints(agent TEXT NOT NULL, seq INTEGER NOT "
            "NULL, epoch INTEGER NOT NULL, time_ms INTEGER NOT NULL, hash "
            "BLOB NOT NULL, seal INTEGER NOT NULL, idx INTEGER NOT NULL, "
            "flags INTEGER NOT NULL DEFAULT 0, body BLOB NOT NULL, PRIMARY "
            "KEY(agent, seq));"
            "INSERT INTO checkpoints VALUES('a', 1, 1, 0, x'01', 1, 0, 0, "
            "x'00'), ('a', 2, 2, 0, x'02', 1, 1, 0, x'00'), "
            "('b', 7, 1, 0, x'07', 1, 2, 0, x'00');");
    cr_assert_eq(ol__store_open(&s, db, OL_STORE_WRITE_FULL), 0, "%s",
                 s.errmsg);
    cr_expect_eq(s.schema, OL_SCHEMA_VERSION);
    cr_expect_eq(q1(&s, "SELECT seq FROM heads WHERE agent = 'a'"), 2);
    cr_expect_eq(q1(&s, "SELECT epoch FROM heads WHERE agent = 'a'"), 2);
    cr_expect_eq(q1(&s, "SELECT seq FROM heads WHERE agent = 'b'"), 7);
    cr_expect_eq(q1(&s, "SELECT count(*) FROM meta WHERE key = 'db_id'"), 1);
    ol__store_close(&s);
}

/* Schema 2 had no table of applied request ids: the first writable open
 * adds it, empty, and moves the database to the current schema. */
Test(store, schema_2_gains_the_request_id_table)
{
    struct ol__store s;

    cr_assert_eq(ol__store_open(&s, db, OL_STORE_WRITE_FULL), 0, "%s",
                 s.errmsg);
    cr_assert_eq(ol__store_exec(&s, "DROP TABLE reqs; UPDATE meta SET "
                                    "value = 2 WHERE key = 'schema'"),
                 0);
    ol__store_close(&s);
    cr_assert_eq(ol__store_open(&s, db, OL_STORE_WRITE_FULL), 0, "%s",
                 s.errmsg);
    cr_expect_eq(s.schema, OL_SCHEMA_VERSION);
    cr_expect_eq(q1(&s, "SELECT value FROM meta WHERE key = 'schema'"),
                 OL_SCHEMA_VERSION);
    cr_expect_eq(q1(&s, "SELECT count(*) FROM reqs"), 0);
    ol__store_close(&s);
}

Test(store, reading_a_closed_database_creates_no_files)
{
    struct ol__store s, r;

    cr_assert_eq(ol__store_open(&s, db, OL_STORE_WRITE_FULL), 0);
    cr_assert_eq(ol__store_begin(&s), 0);
    put_ckpt(&s, "a", 1, 1);
    cr_assert_eq(ol__store_commit(&s), 0);
    ol__store_close(&s);
    cr_assert(!file_exists("-wal") && !file_exists("-shm"));
    cr_assert_eq(ol__store_open(&r, db, OL_STORE_READ), 0, "%s", r.errmsg);
    cr_expect_eq(q1(&r, "SELECT count(*) FROM checkpoints"), 1);
    ol__store_close(&r);
    cr_expect(!file_exists("-wal"), "a read created %s-wal", db);
    cr_expect(!file_exists("-shm"), "a read created %s-shm", db);
}

Test(store, a_missing_file_is_not_found_when_reading)
{
    struct ol__store r;

    cr_assert_eq(ol__store_open(&r, db, OL_STORE_READ), OL_ENOTFOUND);
    cr_expect(!file_exists(""), "a read created the database");
}
