/*
 * SQLite connection handling and the schema.  Statements that run per
 * checkpoint are prepared once by their users (the state machine, the
 * queries); this module owns opening, pragmas, schema and transactions.
 */
#include "store.h"

#include <stdio.h>
#include <string.h>

#include "err.h"

/*
 * checkpoints is a rowid table: new rows append to its last pages and only
 * the small (agent, seq) index is written at random.  Keyed WITHOUT ROWID,
 * every insert from 10,000 interleaved agents touched a random leaf and a
 * 1 KiB body spilled to an overflow page (about 7x slower, 3x the file).
 * flags precedes body so reading it never walks a body's overflow chain.
 */
static const char schema[] =
    "CREATE TABLE IF NOT EXISTS meta("
    "  key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS nodes("
    "  id INTEGER PRIMARY KEY, pk BLOB NOT NULL, address TEXT NOT NULL,"
    "  labels TEXT NOT NULL DEFAULT '', removed INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS agents("
    "  name TEXT PRIMARY KEY, kind TEXT NOT NULL, config BLOB NOT NULL,"
    "  owner INTEGER NOT NULL, inc INTEGER NOT NULL DEFAULT 0,"
    "  epoch INTEGER NOT NULL,"
    "  status INTEGER NOT NULL, reason TEXT NOT NULL DEFAULT '',"
    "  req INTEGER NOT NULL DEFAULT 0,"
    "  created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL)"
    "  WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS seals("
    "  id INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, body BLOB NOT NULL,"
    "  sig BLOB NOT NULL, live INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS checkpoints("
    "  agent TEXT NOT NULL, seq INTEGER NOT NULL, epoch INTEGER NOT NULL,"
    "  time_ms INTEGER NOT NULL, hash BLOB NOT NULL, seal INTEGER NOT NULL,"
    "  idx INTEGER NOT NULL, flags INTEGER NOT NULL DEFAULT 0,"
    "  body BLOB NOT NULL, PRIMARY KEY(agent, seq));"
    "CREATE TABLE IF NOT EXISTS mailbox("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, to_agent TEXT NOT NULL,"
    "  from_agent TEXT NOT NULL, from_seq INTEGER NOT NULL,"
    "  idx INTEGER NOT NULL, payload BLOB NOT NULL,"
    "  UNIQUE(to_agent, from_agent, from_seq, idx));"
    "CREATE TABLE IF NOT EXISTS crashes("
    "  name TEXT PRIMARY KEY, n INTEGER NOT NULL, since_ms INTEGER NOT NULL,"
    "  floor INTEGER NOT NULL DEFAULT 0, last_req INTEGER NOT NULL DEFAULT 0,"
    "  reason TEXT NOT NULL DEFAULT '') WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS code("
    "  kind TEXT NOT NULL, node INTEGER NOT NULL, hash BLOB NOT NULL,"
    "  version TEXT NOT NULL, PRIMARY KEY(kind, node)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS evidence("
    "  id INTEGER PRIMARY KEY, agent TEXT NOT NULL, seq INTEGER NOT NULL,"
    "  time_ms INTEGER NOT NULL, kind TEXT NOT NULL, stored_hash BLOB,"
    "  other_hash BLOB, other_body BLOB, note TEXT NOT NULL DEFAULT '');"
    /* The hash of each recently applied raft entry, by index modulo the
     * ring's size: an entry that comes back different at an index already
     * applied is caught (replication/fsm.c). */
    "CREATE TABLE IF NOT EXISTS raft_ring("
    "  slot INTEGER PRIMARY KEY, idx INTEGER NOT NULL, hash BLOB NOT NULL);";

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
    }
    return "unknown";
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

static int check_schema(struct ol__store *s, int writable)
{
    int64_t v;
    int rv = ol__store_meta_get_int(s, "schema", &v);

    if (rv == OL_ENOTFOUND && writable)
        return ol__store_meta_set_int(s, "schema", OL_SCHEMA_VERSION);
    if (rv == OL_ENOTFOUND || (rv == OL_EIO && !writable)) {
        snprintf(s->errmsg, sizeof s->errmsg,
                 "'%s' is not an outlast database", s->path);
        return OL_EMALFORMED;
    }
    if (rv != 0)
        return rv;
    if (v != OL_SCHEMA_VERSION) {
        snprintf(s->errmsg, sizeof s->errmsg,
                 "database '%s' has schema %lld; this build reads %d",
                 s->path, (long long)v, OL_SCHEMA_VERSION);
        return OL_EMALFORMED;
    }
    return 0;
}

int ol__store_open(struct ol__store *s, const char *path, int mode)
{
    int flags = mode == OL_STORE_READ
                    ? SQLITE_OPEN_READONLY
                    : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    int rc, rv;

    memset(s, 0, sizeof *s);
    snprintf(s->path, sizeof s->path, "%s", path);
    rc = sqlite3_open_v2(path, &s->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(s->errmsg, sizeof s->errmsg, "open database '%s': %s", path,
                 s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        sqlite3_close(s->db);
        s->db = NULL;
        return rc == SQLITE_CANTOPEN ? OL_ENOTFOUND : OL_EIO;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 5000);
    if (mode == OL_STORE_READ) {
        /* A file that is not SQLite fails here, with a clear message. */
        rv = ol__store_exec(s, "SELECT count(*) FROM sqlite_master;");
        if (rv == 0)
            rv = check_schema(s, 0);
        if (rv != 0)
            goto fail;
        return 0;
    }
    rv = ol__store_exec(s, "PRAGMA journal_mode=WAL;");
    if (rv == 0)
        rv = ol__store_exec(s, mode == OL_STORE_WRITE_FULL
                                   ? "PRAGMA synchronous=FULL;"
                                   : "PRAGMA synchronous=NORMAL;");
    if (rv == 0)
        rv = ol__store_exec(s, "PRAGMA cache_size=-32768;");
    if (rv == 0)
        rv = ol__store_exec(s, schema);
    if (rv == 0)
        rv = check_schema(s, 1);
    if (rv != 0)
        goto fail;
    return 0;
fail:
    sqlite3_close(s->db);
    s->db = NULL;
    return rv;
}

void ol__store_close(struct ol__store *s)
{
    if (s == NULL || s->db == NULL)
        return;
    sqlite3_close(s->db);
    s->db = NULL;
}

int ol__store_begin(struct ol__store *s)
{
    return ol__store_exec(s, "BEGIN IMMEDIATE;");
}

int ol__store_commit(struct ol__store *s)
{
    return ol__store_exec(s, "COMMIT;");
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
