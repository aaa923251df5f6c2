/*
 * SQLite statements, transactions and the meta table.  Statements that run
 * per checkpoint are prepared once by their users (the state machine, the
 * queries); opening, the schema and the identity are in store_open.c.
 */
#include "store.h"

#include <stdio.h>
#include <string.h>

#include "base/err.h"

const char *ol__status_name(int status)
{
    switch (status) {
    case OL_AGENT_RUNNING:
        return "running";
    case OL_AGENT_STOPPING:
        return "stopping";
    case OL_AGENT_STOPPED:
        return "stopped";
    case OL_AGENT_QUARANTINED:
        return "quarantined";
    case OL_AGENT_REMOVED:
        return "removed";
    }
    return "unknown";
}

int ol__status_parse(const char *name)
{
    for (int s = OL_AGENT_RUNNING; s <= OL_AGENT_STATUS_MAX; s++)
        if (strcmp(name, ol__status_name(s)) == 0)
            return s;
    return 0;
}

int ol__err_from_sqlite(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return 0;
    case SQLITE_NOMEM:
        return OL_ENOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return OL_EBUSY;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return OL_EMALFORMED;
    case SQLITE_CONSTRAINT:
        return OL_EEXISTS;
    case SQLITE_PERM:
    case SQLITE_AUTH:
    case SQLITE_READONLY:
        return OL_EUNAUTH;
    }
    return OL_EIO;
}

int ol__store_exec(struct ol__store *s, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, &err);

    if (rc != SQLITE_OK) {
        snprintf(s->errmsg, sizeof s->errmsg, "database '%s': %s", s->path,
                 err ? err : sqlite3_errstr(rc));
        sqlite3_free(err);
        return ol__err_from_sqlite(rc) ? ol__err_from_sqlite(rc) : OL_EIO;
    }
    return 0;
}

int ol__store_prepare(struct ol__store *s, const char *sql,
                      sqlite3_stmt **st)
{
    int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                st, NULL);

    if (rc != SQLITE_OK) {
        snprintf(s->errmsg, sizeof s->errmsg, "database '%s': prepare: %s",
                 s->path, sqlite3_errmsg(s->db));
        return OL_EIO;
    }
    return 0;
}

int ol__store_begin(struct ol__store *s)
{
    return ol__store_exec(s, "BEGIN IMMEDIATE;");
}

int ol__store_commit(struct ol__store *s)
{
    int rc, rv;

    if (s->bump) {
        rc = sqlite3_step(s->bump);
        sqlite3_reset(s->bump);
        if (rc != SQLITE_DONE) {
            snprintf(s->errmsg, sizeof s->errmsg,
                     "database '%s': count the commit: %s", s->path,
                     sqlite3_errmsg(s->db));
            return ol__err_from_sqlite(rc) ? ol__err_from_sqlite(rc)
                                           : OL_EIO;
        }
    }
    rv = ol__store_exec(s, "COMMIT;");
    if (rv == 0)
        s->commits++;
    return rv;
}

int ol__store_meta_put_int(struct ol__store *s, const char *key, int64_t v)
{
    int rv = ol__store_begin(s);

    if (rv == 0)
        rv = ol__store_meta_set_int(s, key, v);
    if (rv == 0)
        rv = ol__store_commit(s);
    if (rv != 0)
        ol__store_rollback(s);
    return rv;
}

void ol__store_rollback(struct ol__store *s)
{
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK;", NULL, NULL, NULL);
}

static int meta_get(struct ol__store *s, const char *key, sqlite3_stmt **st)
{
    int rc;

    if (ol__store_prepare(s, "SELECT value FROM meta WHERE key = ?", st))
        return OL_EIO;
    sqlite3_bind_text(*st, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(*st);
    if (rc == SQLITE_ROW)
        return 0;
    sqlite3_finalize(*st);
    *st = NULL;
    if (rc == SQLITE_DONE)
        return OL_ENOTFOUND;
    snprintf(s->errmsg, sizeof s->errmsg, "database '%s': read meta '%s': %s",
             s->path, key, sqlite3_errmsg(s->db));
    return OL_EIO;
}

int ol__store_meta_get_int(struct ol__store *s, const char *key, int64_t *v)
{
    sqlite3_stmt *st;
    int rv = meta_get(s, key, &st);

    if (rv != 0)
        return rv;
    *v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return 0;
}

int ol__store_meta_get_blob(struct ol__store *s, const char *key, void *out,
                            size_t len)
{
    sqlite3_stmt *st;
    int rv = meta_get(s, key, &st);

    if (rv != 0)
        return rv;
    if ((size_t)sqlite3_column_bytes(st, 0) != len) {
        snprintf(s->errmsg, sizeof s->errmsg,
                 "database '%s': meta '%s' has the wrong size", s->path, key);
        rv = OL_EMALFORMED;
    } else {
        memcpy(out, sqlite3_column_blob(st, 0), len);
    }
    sqlite3_finalize(st);
    return rv;
}

static int meta_set(struct ol__store *s, const char *key, sqlite3_stmt **st)
{
    return ol__store_prepare(
        s, "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", st);
}

static int meta_finish(struct ol__store *s, sqlite3_stmt *st,
                       const char *key)
{
    int rc = sqlite3_step(st);

    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        snprintf(s->errmsg, sizeof s->errmsg,
                 "database '%s': write meta '%s': %s", s->path, key,
                 sqlite3_errmsg(s->db));
        return OL_EIO;
    }
    return 0;
}

int ol__store_meta_set_int(struct ol__store *s, const char *key, int64_t v)
{
    sqlite3_stmt *st;

    if (meta_set(s, key, &st))
        return OL_EIO;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, v);
    return meta_finish(s, st, key);
}

int ol__store_meta_set_blob(struct ol__store *s, const char *key,
                            const void *p, size_t len)
{
    sqlite3_stmt *st;

    if (meta_set(s, key, &st))
        return OL_EIO;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, p, (int)len, SQLITE_STATIC);
    return meta_finish(s, st, key);
}
