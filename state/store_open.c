/*
 * Opening a database: creating one whole, refusing files that are not
 * outlast's before anything is written to them, the schema and its
 * upgrade, the identity, and read-only opens that create nothing.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/fsutil.h"
#include "base/log.h"

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
    /* Request ids of recently applied commands, for exactly-once
     * commands (state/sm_reqs.c): n is the apply counter that orders
     * eviction, oldest first. */
    "CREATE TABLE IF NOT EXISTS reqs("
    "  req INTEGER PRIMARY KEY, n INTEGER NOT NULL UNIQUE,"
    "  type INTEGER NOT NULL, status INTEGER NOT NULL,"
    "  why TEXT NOT NULL DEFAULT '');"
    "CREATE TABLE IF NOT EXISTS evidence("
    "  id INTEGER PRIMARY KEY, agent TEXT NOT NULL, seq INTEGER NOT NULL,"
    "  time_ms INTEGER NOT NULL, kind TEXT NOT NULL, stored_hash BLOB,"
    "  other_hash BLOB, other_body BLOB, note TEXT NOT NULL DEFAULT '');"
    /* The hash of each recently applied raft entry, by index modulo the
     * ring's size: an entry that comes back different at an index already
     * applied is caught (replication/fsm.c). */
    "CREATE TABLE IF NOT EXISTS raft_ring("
    "  slot INTEGER PRIMARY KEY, idx INTEGER NOT NULL, hash BLOB NOT NULL);"
    /* Every stored checkpoint moves its agent's head forward; nothing
     * moves it back, so deleting the newest rows leaves the head above
     * the chain (a row that replaces the one at its seq, as a snapshot
     * install does with a divergent row, is the head at that seq).  In the same transaction as the row, whoever inserts it
     * (state machine, snapshot install, export, recovery). */
    "CREATE TABLE IF NOT EXISTS heads("
    "  agent TEXT PRIMARY KEY, seq INTEGER NOT NULL, epoch INTEGER NOT NULL,"
    "  hash BLOB NOT NULL) WITHOUT ROWID;"
    "CREATE TRIGGER IF NOT EXISTS heads_advance AFTER INSERT ON checkpoints"
    " BEGIN"
    "  INSERT INTO heads(agent, seq, epoch, hash)"
    "   VALUES(new.agent, new.seq, new.epoch, new.hash)"
    "   ON CONFLICT(agent) DO UPDATE SET seq = excluded.seq,"
    "    epoch = excluded.epoch, hash = excluded.hash"
    "   WHERE excluded.seq >= heads.seq;"
    " END;";

/* Schema 1 had no heads, identity or commit count. */
static const char upgrade_1_2[] =
    "INSERT OR IGNORE INTO heads(agent, seq, epoch, hash)"
    " SELECT agent, seq, epoch, hash FROM checkpoints c"
    " WHERE seq = (SELECT max(seq) FROM checkpoints WHERE agent = c.agent);";

void ol__store_files(const char *path, struct ol__store_files *out)
{
    char wal[4096 + 8];
    struct stat st;

    memset(out, 0, sizeof *out);
    if (stat(path, &st) == 0) {
        out->db = 1;
        out->db_size = (long long)st.st_size;
    }
    snprintf(wal, sizeof wal, "%s-wal", path);
    if (stat(wal, &st) == 0) {
        out->wal = 1;
        out->wal_size = (long long)st.st_size;
    }
}

static int fail(struct ol__store *s, int rv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct ol__store *s, int rv, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(s->errmsg, sizeof s->errmsg, fmt, ap);
    va_end(ap);
    return rv;
}

/* Is this an outlast database?  Looks at the tables only, so it is safe on
 * any SQLite file: nothing is written. */
static int classify(struct ol__store *s)
{
    sqlite3_stmt *st;
    char names[160] = "";
    int rc, n = 0, has_meta = 0;

    rc = sqlite3_prepare_v2(s->db,
                            "SELECT name FROM sqlite_master WHERE type = "
                            "'table' AND name NOT LIKE 'sqlite_%' ORDER BY "
                            "name",
                            -1, &st, NULL);
    if (rc != SQLITE_OK) {
        rc = sqlite3_errcode(s->db);
        if (rc == SQLITE_NOTADB)
            return fail(s, OL_EMALFORMED,
                        "'%s' is not a SQLite database, so not an outlast "
                        "database",
                        s->path);
        return fail(s, ol__err_from_sqlite(rc) ? ol__err_from_sqlite(rc)
                                               : OL_EIO,
                    "database '%s': %s", s->path, sqlite3_errmsg(s->db));
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);

        if (strcmp(t, "meta") == 0)
            has_meta = 1;
        if (n < 4) {
            size_t len = strlen(names);

            snprintf(names + len, sizeof names - len, "%s'%s'",
                     n ? ", " : "", t);
        }
        n++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        if ((rc & 0xff) == SQLITE_NOTADB)
            return fail(s, OL_EMALFORMED,
                        "'%s' is not a SQLite database, so not an outlast "
                        "database",
                        s->path);
        return fail(s, OL_EMALFORMED, "database '%s': %s", s->path,
                    sqlite3_errmsg(s->db));
    }
    if (n == 0)
        return fail(s, OL_EMALFORMED,
                    "'%s' is a SQLite database with no tables: not a "
                    "database outlast wrote",
                    s->path);
    if (!has_meta ||
        sqlite3_prepare_v2(s->db,
                           "SELECT value FROM meta WHERE key = 'schema'", -1,
                           &st, NULL) != SQLITE_OK)
        goto foreign;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        s->schema = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        goto foreign;
    if (s->schema > OL_SCHEMA_VERSION)
        return fail(s, OL_EMALFORMED,
                    "database '%s' has schema %d; this build reads up to %d",
                    s->path, s->schema, OL_SCHEMA_VERSION);
    if (s->schema < 1)
        goto foreign;
    return 0;
foreign:
    return fail(s, OL_EMALFORMED,
                "'%s' is a SQLite database but not outlast's (its tables: "
                "%s%s); outlast does not add its tables to another "
                "program's database",
                s->path, names, n > 4 ? ", ..." : "");
}

/* Read the identity into s (schema 2; a schema 1 database has none). */
static int load_identity(struct ol__store *s)
{
    int64_t v;
    int rv;

    if (s->schema < 2)
        return 0;
    rv = ol__store_meta_get_blob(s, "db_id", s->db_id, OL_DBID_SIZE);
    if (rv == OL_ENOTFOUND)
        return fail(s, OL_EMALFORMED,
                    "database '%s' has no identity (meta 'db_id')", s->path);
    if (rv != 0)
        return rv;
    if (ol__store_meta_get_int(s, "commits", &v) == 0 && v >= 0)
        s->commits = (uint64_t)v;
    if (ol__store_meta_get_int(s, "history", &v) == 0 && v >= 0)
        s->history = (uint64_t)v;
    if (ol__store_meta_get_int(s, "epoch_floor", &v) == 0 && v >= 0)
        s->epoch_floor = (uint64_t)v;
    if (ol__store_meta_get_int(s, "bundle", &v) == 0)
        s->bundle = v != 0;
    if (s->history > 0) {
        sqlite3_stmt *st;

        if (sqlite3_prepare_v2(s->db,
                               "SELECT value FROM meta WHERE key = "
                               "'recovered'",
                               -1, &st, NULL) == SQLITE_OK) {
            if (sqlite3_step(st) == SQLITE_ROW &&
                sqlite3_column_text(st, 0))
                snprintf(s->recovered, sizeof s->recovered, "%s",
                         sqlite3_column_text(st, 0));
            sqlite3_finalize(st);
        }
    }
    return 0;
}

static int exists(const char *path, const char *suffix)
{
    char p[4096 + 16];
    struct stat st;

    snprintf(p, sizeof p, "%s%s", path, suffix);
    return stat(p, &st) == 0;
}

/* "file:" URI for a path: '%', '?' and '#' are escaped. */
static int file_uri(const char *path, const char *query, char *out,
                    size_t cap)
{
    size_t n = 0;

    n += (size_t)snprintf(out, cap, "file:");
    for (const char *p = path; *p && n + 4 < cap; p++) {
        if (*p == '%' || *p == '?' || *p == '#')
            n += (size_t)snprintf(out + n, cap - n, "%%%02X",
                                  (unsigned char)*p);
        else
            out[n++] = *p;
    }
    if (n + strlen(query) + 1 >= cap)
        return -1;
    snprintf(out + n, cap - n, "%s", query);
    return 0;
}

/* Open s->db on `name` (a path or a "file:" URI; URI filenames are on, so
 * ATTACH can read another database read-only, and a path not starting with
 * "file:" is taken as it is). */
static int connect(struct ol__store *s, const char *name, int flags)
{
    int rc = sqlite3_open_v2(name, &s->db,
                             flags | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI,
                             NULL);

    if (rc != SQLITE_OK)
        return fail(s, rc == SQLITE_CANTOPEN ? OL_ENOTFOUND : OL_EIO,
                    "open database '%s': %s", s->path,
                    s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 5000);
    return 0;
}

/*
 * Read-only.  SQLite's read-only connection to a WAL database creates -wal
 * and -shm files beside it when they are missing; on a database whose
 * writer closed (no -wal, no hot journal) nothing is waiting to be read
 * from them, so it is opened as immutable and nothing is created.
 */
int ol__store_ro_uri(const char *path, char *out, size_t cap)
{
    int immutable = !exists(path, "-wal") && !exists(path, "-journal");

    return file_uri(path, immutable ? "?immutable=1" : "?mode=ro", out, cap);
}

static int open_ro(struct ol__store *s, int shared)
{
    char uri[4096 * 3 + 64];

    if ((shared ? file_uri(s->path, "?mode=ro", uri, sizeof uri)
                : ol__store_ro_uri(s->path, uri, sizeof uri)) != 0)
        return fail(s, OL_EINVAL, "database path '%s' is too long", s->path);
    return connect(s, uri, SQLITE_OPEN_READONLY);
}

static int random_id(struct ol__store *s)
{
    randombytes_buf(s->db_id, OL_DBID_SIZE);
    return ol__store_meta_set_blob(s, "db_id", s->db_id, OL_DBID_SIZE);
}

/* Schema 1 to 2: heads from the rows, an identity and a commit count.
 * Schema 2 to 3: the reqs table, which the schema above creates (a schema
 * 2 database applied commands without recording them, so it starts
 * empty). */
static int upgrade(struct ol__store *s)
{
    int from = s->schema;
    int rv = ol__store_exec(s, "BEGIN IMMEDIATE;");

    if (rv == 0 && from < 2)
        rv = ol__store_exec(s, upgrade_1_2);
    if (rv == 0 && from < 2)
        rv = random_id(s);
    if (rv == 0 && from < 2)
        rv = ol__store_meta_set_int(s, "commits", 0);
    if (rv == 0)
        rv = ol__store_meta_set_int(s, "schema", OL_SCHEMA_VERSION);
    if (rv == 0)
        rv = ol__store_exec(s, "COMMIT;");
    if (rv != 0) {
        ol__store_rollback(s);
        return rv;
    }
    ol_log(OL_LOG_INFO, "database '%s': schema %d upgraded to %d", s->path,
           from, OL_SCHEMA_VERSION);
    s->schema = OL_SCHEMA_VERSION;
    return 0;
}

/* SQLite takes an empty file for an empty database: it is not ours. */
static int not_empty(struct ol__store *s)
{
    struct ol__store_files f;

    ol__store_files(s->path, &f);
    if (!f.db)
        return fail(s, OL_ENOTFOUND, "no database at '%s'", s->path);
    if (f.db_size == 0)
        return fail(s, OL_EMALFORMED,
                    "database '%s' is empty (0 bytes): not a database "
                    "outlast wrote",
                    s->path);
    return 0;
}

static int open_rw(struct ol__store *s, int mode)
{
    int rv = not_empty(s);

    if (rv != 0)
        return rv;
    rv = connect(s, s->path, SQLITE_OPEN_READWRITE);
    if (rv != 0)
        return rv;
    /* Classify before any pragma: journal_mode=WAL would already write to
     * a file that is not ours. */
    rv = classify(s);
    if (rv == 0)
        rv = ol__store_exec(s, "PRAGMA journal_mode=WAL;");
    if (rv == 0)
        rv = ol__store_exec(s, mode == OL_STORE_WRITE_FULL
                                   ? "PRAGMA synchronous=FULL;"
                                   : "PRAGMA synchronous=NORMAL;");
    if (rv == 0)
        rv = ol__store_exec(s, "PRAGMA cache_size=-32768; "
                               "PRAGMA temp_store=MEMORY;");
    if (rv == 0)
        rv = ol__store_exec(s, schema);
    if (rv == 0 && s->schema < OL_SCHEMA_VERSION)
        rv = upgrade(s);
    if (rv == 0)
        rv = load_identity(s);
    if (rv == 0)
        rv = ol__store_prepare(s,
                               "UPDATE meta SET value = value + 1 WHERE key "
                               "= 'commits'",
                               &s->bump);
    return rv;
}

/* Build a new database in `tmp`: schema and identity, then WAL mode. */
static int build_new(struct ol__store *s, const char *tmp)
{
    struct ol__store t;
    int rc, rv;

    memset(&t, 0, sizeof t);
    snprintf(t.path, sizeof t.path, "%s", tmp);
    rc = sqlite3_open_v2(tmp, &t.db, SQLITE_OPEN_READWRITE, NULL);
    if (rc != SQLITE_OK) {
        rv = fail(s, OL_EIO, "create database '%s': %s", s->path,
                  t.db ? sqlite3_errmsg(t.db) : sqlite3_errstr(rc));
        sqlite3_close(t.db);
        return rv;
    }
    rv = ol__store_exec(&t, "PRAGMA journal_mode=DELETE; BEGIN;");
    if (rv == 0)
        rv = ol__store_exec(&t, schema);
    if (rv == 0)
        rv = ol__store_meta_set_int(&t, "schema", OL_SCHEMA_VERSION);
    if (rv == 0)
        rv = random_id(&t);
    if (rv == 0)
        rv = ol__store_meta_set_int(&t, "commits", 0);
    if (rv == 0)
        rv = ol__store_meta_set_int(&t, "created_ms", ol__wall_ms());
    if (rv == 0)
        rv = ol__store_exec(&t, "COMMIT; PRAGMA journal_mode=WAL;");
    if (rv != 0)
        fail(s, rv, "create database '%s': %s", s->path, t.errmsg);
    sqlite3_close(t.db);
    return rv;
}

int ol__store_create(struct ol__store *s, const char *path, int mode)
{
    char tmp[4096 + 8], err[OL_ERRMSG_SIZE];
    const char *sfx[] = {"", "-wal", "-shm", "-journal"};
    int fd, rv;

    memset(s, 0, sizeof *s);
    snprintf(s->path, sizeof s->path, "%s", path);
    if (exists(path, ""))
        return fail(s, OL_EEXISTS, "'%s' already exists", path);
    snprintf(tmp, sizeof tmp, "%s.new", path);
    for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
        char p[4096 + 16];

        snprintf(p, sizeof p, "%s%s", tmp, sfx[i]);
        unlink(p);
    }
    fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return fail(s, ol__err_from_errno(errno), "create database '%s': %s",
                    path, strerror(errno));
    close(fd);
    rv = build_new(s, tmp);
    if (rv == 0 && ((fd = open(tmp, O_RDONLY | O_CLOEXEC)) < 0 ||
                    fsync(fd) != 0))
        rv = fail(s, OL_EIO, "create database '%s': fsync: %s", path,
                  strerror(errno));
    if (fd >= 0)
        close(fd);
    /* link() never replaces a file that appeared meanwhile. */
    if (rv == 0 && link(tmp, path) != 0)
        rv = fail(s, errno == EEXIST ? OL_EEXISTS : OL_EIO,
                  "create database '%s': %s", path, strerror(errno));
    unlink(tmp);
    if (rv == 0 && ol__fsync_dir_of(path, err) != 0)
        ol_log(OL_LOG_WARN, "%s", err);
    if (rv != 0)
        return rv;
    return ol__store_open(s, path, mode);
}

int ol__store_open(struct ol__store *s, const char *path, int mode)
{
    int rv;

    memset(s, 0, sizeof *s);
    snprintf(s->path, sizeof s->path, "%s", path);
    if (mode != OL_STORE_READ && mode != OL_STORE_READ_SHARED &&
        !exists(path, ""))
        return ol__store_create(s, path, mode);
    if (mode == OL_STORE_READ || mode == OL_STORE_READ_SHARED) {
        rv = not_empty(s);
        if (rv == 0)
            rv = open_ro(s, mode == OL_STORE_READ_SHARED);
        if (rv == 0)
            rv = classify(s);
        if (rv == 0)
            rv = load_identity(s);
    } else {
        rv = open_rw(s, mode);
    }
    if (rv != 0) {
        sqlite3_finalize(s->bump);
        s->bump = NULL;
        sqlite3_close(s->db);
        s->db = NULL;
    }
    return rv;
}

void ol__store_close(struct ol__store *s)
{
    if (s == NULL || s->db == NULL)
        return;
    sqlite3_finalize(s->bump);
    s->bump = NULL;
    sqlite3_close(s->db);
    s->db = NULL;
}

