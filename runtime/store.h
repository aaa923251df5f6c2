/*
 * The SQLite store: one database file per node, in WAL mode.
 *
 * Tables (schema 1):
 *   meta(key, value)              schema version, node key, applied index
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

#define OL_SCHEMA_VERSION 1

enum ol__agent_status {
    OL_AGENT_RUNNING = 1,
    OL_AGENT_STOPPING = 2,
    OL_AGENT_STOPPED = 3,
    OL_AGENT_QUARANTINED = 4,
};

const char *ol__status_name(int status);

enum ol__store_mode {
    OL_STORE_WRITE_FULL,   /* every commit fsyncs (single node) */
    OL_STORE_WRITE_NORMAL, /* raft's log is the durable copy */
    OL_STORE_READ,         /* read-only */
};

struct ol__store {
    sqlite3 *db;
    char path[4096];
    char errmsg[256];
};

/* Open (creating the schema when writable).  Returns 0 or OL_EIO /
 * OL_EMALFORMED (not an outlast database, newer schema) with s->errmsg. */
int ol__store_open(struct ol__store *s, const char *path, int mode);
void ol__store_close(struct ol__store *s);

int ol__store_begin(struct ol__store *s);
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
