/*
 * The SQLite store: one database file per node, in WAL mode.
 *
 * Tables (schema 3):
 *   meta(key, value)              schema version, identity (db_id), the
 *                                 count of committed transactions
 *                                 (commits), applied index, and after a
 *                                 recovery its history number and epoch
 *                                 floor
 *   nodes(id, pk, address, labels, removed)
 *   agents(name, kind, config, owner, inc, epoch, status, reason, req,
 *          created_ms, updated_ms)
 *   seals(id, hash, body, sig, live)           batch signatures
 *   checkpoints(agent, seq, epoch, time_ms, hash, seal, idx, body, flags)
 *                                 flags & 1: installed from a snapshot
 *   mailbox(id, to_agent, from_agent, from_seq, idx, payload)
 *   evidence(id, agent, seq, time_ms, kind, stored_hash, other_hash,
 *            other_body, note)                 divergence reports
 *   raft_ring(slot, idx, hash)    hashes of recently applied raft entries
 *   crashes(name, n, since_ms, floor, last_req, reason)
 *                                 crashes of an agent's code in the current
 *                                 window (replicated, see sm_crash.c)
 *   code(kind, node, hash, version)
 *                                 the plugin build each node runs; node 0:
 *                                 the build an upgrade asked for
 *   heads(agent, seq, epoch, hash)             each agent's newest
 *                                 checkpoint, kept by a trigger on
 *                                 checkpoints: a chain that ends below its
 *                                 head has lost its newest records
 *   reqs(req, n, type, status, why)            request ids of the newest
 *                                 applied commands and their outcomes
 *                                 (replicated, schema 3, see sm_reqs.c)
 *
 * A database is created whole (schema and identity in a temp file that is
 * then linked into place), so an empty or half-made outlast.db is never
 * one outlast wrote.  A file that is not outlast's is never adopted: a
 * writable open refuses an empty file, a file that is not SQLite, and a
 * SQLite database without outlast's schema, before changing anything.
 * Schema 1 and 2 databases are upgraded on their first writable open.
 *
 * Ownership.  The state layer (state/) owns this schema: store.c and
 * store_open.c create and upgrade it, and the state machine (sm*.c) is
 * the only writer of its tables while a node runs, so every node that
 * applies the same log holds the same rows.  Reads belong here too:
 * query.c answers `agents`, `show` and `history`, verify*.c checks the
 * history, walck.c checkpoints the WAL.  Code above this layer should
 * ask through those interfaces rather than run its own SQL; the places
 * that still do (reads in runtime/ and replication/fsm.c, and the offline
 * `outlast recover` and `outlast export`, which write a new file) are to
 * move behind them.
 *
 * The writer connection is used by one thread at a time (the group-commit
 * worker or the raft FSM); readers use their own connections, and WAL
 * checkpoints run on the thread pool from one more (walck.h).
 */
#ifndef OL_STORE_H
#define OL_STORE_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#define OL_SCHEMA_VERSION 3 /* 3 added the reqs table */
#define OL_DBID_SIZE 16

enum ol__agent_status {
    OL_AGENT_RUNNING = 1,
    OL_AGENT_STOPPING = 2,
    OL_AGENT_STOPPED = 3,
    OL_AGENT_QUARANTINED = 4,
    OL_AGENT_REMOVED = 5, /* a tombstone: `outlast rm`; history kept */
};
#define OL_AGENT_STATUS_MAX OL_AGENT_REMOVED

const char *ol__status_name(int status);
/* The status named `name` ("running", ...), or 0. */
int ol__status_parse(const char *name);

enum ol__store_mode {
    OL_STORE_WRITE_FULL,   /* every commit fsyncs (single node) */
    OL_STORE_WRITE_NORMAL, /* raft's log is the durable copy */
    OL_STORE_READ,         /* read-only; creates no file beside the
                            * database (a stopped node's is read as it is) */
    OL_STORE_READ_SHARED,  /* read-only beside a writer of this process */
};

struct ol__store {
    sqlite3 *db;
    char path[4096];
    char errmsg[512];
    /* Identity, read at open (schema 1: zeroes). */
    int schema;
    uint8_t db_id[OL_DBID_SIZE];
    uint64_t commits;     /* transactions committed so far */
    uint64_t history;     /* 0, or the number of recoveries behind it */
    uint64_t epoch_floor; /* agents it spawns start at this epoch */
    char recovered[256];  /* how `outlast recover` made it, or "" */
    int bundle;           /* an export bundle, not a node's database */
    sqlite3_stmt *bump;   /* counts a commit, inside its transaction */
};

/*
 * Open a database.  A writable open of a path that does not exist creates
 * a new database there (whole, see above); any other file must already be
 * an outlast database.  Returns 0, or with s->errmsg:
 *   OL_ENOTFOUND   (read-only) no such file;
 *   OL_EMALFORMED  empty, not SQLite, another program's database, a newer
 *                  schema, or no identity;
 *   OL_EIO         anything else.
 */
int ol__store_open(struct ol__store *s, const char *path, int mode);
/* Create a new database at `path`, which must not exist (OL_EEXISTS), and
 * open it in `mode`.  The file is mode 0600. */
int ol__store_create(struct ol__store *s, const char *path, int mode);
void ol__store_close(struct ol__store *s);

/* Files beside a database, as they are before anything opens it. */
struct ol__store_files {
    int db;       /* the database exists */
    long long db_size;
    int wal;      /* <path>-wal exists */
    long long wal_size;
};
void ol__store_files(const char *path, struct ol__store_files *out);

/* A "file:" URI that opens `path` read-only without creating anything
 * beside it (for ATTACH).  0, or -1 when it does not fit in cap. */
int ol__store_ro_uri(const char *path, char *out, size_t cap);

/* Set a meta value in its own transaction (counted as a commit). */
int ol__store_meta_put_int(struct ol__store *s, const char *key, int64_t v);

int ol__store_begin(struct ol__store *s);
/* Count the transaction in meta 'commits' and commit it; s->commits goes
 * up only when COMMIT succeeds. */
int ol__store_commit(struct ol__store *s);
void ol__store_rollback(struct ol__store *s);

/* Run SQL with no result rows.  Returns 0 or OL_EIO with s->errmsg. */
int ol__store_exec(struct ol__store *s, const char *sql);

/* Prepare a statement; OL_EIO with s->errmsg on failure. */
int ol__store_prepare(struct ol__store *s, const char *sql,
                      sqlite3_stmt **st);

/* meta table accessors.  get returns OL_ENOTFOUND when absent. */
int ol__store_meta_get_int(struct ol__store *s, const char *key,
                           int64_t *v);
int ol__store_meta_set_int(struct ol__store *s, const char *key, int64_t v);
int ol__store_meta_get_blob(struct ol__store *s, const char *key, void *out,
                            size_t len);
int ol__store_meta_set_blob(struct ol__store *s, const char *key,
                            const void *p, size_t len);

/* Translate a SQLite result code. */
int ol__err_from_sqlite(int rc);

#endif
