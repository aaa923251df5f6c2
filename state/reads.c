#include "reads.h"

#include "base/err.h"
#include "store.h"

/* Run a one-row, one-integer query; `bind` binds its parameters. */
static int one_int(sqlite3 *db, const char *sql, int64_t *out,
                   void (*bind)(sqlite3_stmt *st, const void *arg),
                   const void *arg)
{
    sqlite3_stmt *st;
    int rc;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return OL_EIO;
    if (bind)
        bind(st, arg);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? OL_ENOTFOUND : OL_EIO;
}

static void bind_pk(sqlite3_stmt *st, const void *pk)
{
    sqlite3_bind_blob(st, 1, pk, OL_PK_SIZE, SQLITE_STATIC);
}

static void bind_name(sqlite3_stmt *st, const void *name)
{
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
}

static void bind_status(sqlite3_stmt *st, const void *status)
{
    sqlite3_bind_int(st, 1, *(const int *)status);
}

int ol__read_node_id(sqlite3 *db, const uint8_t pk[OL_PK_SIZE], int64_t *id)
{
    return one_int(db, "SELECT id FROM nodes WHERE pk = ?", id, bind_pk, pk);
}

int ol__read_agent_status(sqlite3 *db, const char *name, int *status)
{
    int64_t v = 0;
    int rv = one_int(db, "SELECT status FROM agents WHERE name = ?", &v,
                     bind_name, name);

    if (rv == 0)
        *status = (int)v;
    return rv;
}

int ol__read_count_agents(sqlite3 *db, int status, uint64_t *n)
{
    static const int removed = OL_AGENT_REMOVED;
    int64_t v = 0;
    int rv = status
                 ? one_int(db, "SELECT count(*) FROM agents WHERE status = ?",
                           &v, bind_status, &status)
                 : one_int(db, "SELECT count(*) FROM agents WHERE status != ?",
                           &v, bind_status, &removed);

    *n = rv == 0 ? (uint64_t)v : 0;
    return rv;
}

/* The mailbox query, for callers that keep it prepared. */
const char ol__read_mail_sql[] = "SELECT id, from_agent, from_seq, idx, payload "
                                 "FROM mailbox WHERE to_agent = ? AND id > ? "
                                 "ORDER BY id LIMIT ?";

int ol__read_mail_st(sqlite3_stmt *st, const char *agent, int64_t after,
                     uint32_t rows, size_t bytes,
                     void (*fn)(void *arg, const struct ol__mail_row *m),
                     void *arg, int *more)
{
    uint32_t n = 0;
    size_t got = 0;
    int rc = SQLITE_DONE;

    *more = 0;
    sqlite3_bind_text(st, 1, agent, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, after);
    sqlite3_bind_int64(st, 3, rows);
    while (got < bytes && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct ol__mail_row m = {
            .id = sqlite3_column_int64(st, 0),
            .from = (const char *)sqlite3_column_text(st, 1),
            .from_seq = (uint64_t)sqlite3_column_int64(st, 2),
            .idx = (uint32_t)sqlite3_column_int64(st, 3),
            .payload = sqlite3_column_blob(st, 4),
            .len = (uint32_t)sqlite3_column_bytes(st, 4),
        };

        fn(arg, &m);
        n++;
        got += m.len;
    }
    sqlite3_reset(st);
    /* A full page means there may be more. */
    *more = n == rows || got >= bytes;
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : OL_EIO;
}

int ol__read_mail(sqlite3 *db, const char *agent, int64_t after,
                  uint32_t rows, size_t bytes,
                  void (*fn)(void *arg, const struct ol__mail_row *m),
                  void *arg, int *more)
{
    sqlite3_stmt *st;
    int rv;

    *more = 0;
    if (sqlite3_prepare_v2(db, ol__read_mail_sql, -1, &st, NULL) !=
        SQLITE_OK)
        return OL_EIO;
    rv = ol__read_mail_st(st, agent, after, rows, bytes, fn, arg, more);
    sqlite3_finalize(st);
    return rv;
}
