/*
 * The node's own record of what it has committed: <data dir>/node.state.
 *
 * The database alone cannot tell that it lost its newest transactions: a
 * deleted or truncated outlast.db-wal, an empty or replaced outlast.db, or
 * an older copy of the file all look like a consistent, shorter history,
 * and a node that started from one would sign different checkpoints for
 * seqs it had already signed.  So the node keeps, in a file beside the
 * database and outside it,
 *
 *   - the identity of its database (a random id stored in the database at
 *     creation) and of itself (node id and public key),
 *   - how many transactions it had committed to that database,
 *   - the highest raft index applied (in a cluster),
 *   - the highest epoch any of its agents has had (a recovery continues
 *     above it, so no (agent, epoch, seq) is ever signed twice),
 *   - the history number (how many recoveries are behind the database),
 *   - whether the node was running, closing its database, or stopped.
 *
 * Each record is signed with the node key.  The file holds two slots of
 * OL_NSTATE_SLOT bytes written in turn (a write that tears damages only the
 * slot being written); the valid slot with the higher serial is current.
 *
 * At start the record is compared with the files as they are before
 * anything opens them (ol__nstate_check); a node whose database is
 * missing, empty, foreign, replaced, behind the record, or whose WAL
 * vanished after it stopped without closing its database, is refused with
 * what was found and how to recover.  The record trails the database by at
 * most one write: on a single node it is rewritten (off the loop, at most
 * every OL_NSTATE_INTERVAL_MS) after commits; in a cluster, where commits
 * are durable only in raft's log until the next WAL checkpoint, only at
 * start and at a clean stop.
 */
#ifndef OL_NODESTATE_H
#define OL_NODESTATE_H

#include <limits.h>
#include <stdint.h>
#include <uv.h>

#include "base/err.h"
#include "base/keys.h"
#include "store.h"

#define WUR __attribute__((warn_unused_result))

#define OL_NSTATE_FILE "node.state"
#define OL_NSTATE_SLOT 512
#define OL_NSTATE_FORMAT 1
#define OL_NSTATE_INTERVAL_MS 100

enum ol__nstate_run {
    OL_NSTATE_RUNNING = 1, /* the database is open */
    OL_NSTATE_CLOSING = 2, /* commits are final; the database is closing */
    OL_NSTATE_STOPPED = 3, /* the database was closed */
};

struct ol__nstate {
    uint64_t node_id;
    uint8_t pk[OL_PK_SIZE];
    uint8_t db_id[OL_DBID_SIZE];
    uint64_t commits;   /* transactions committed to db_id */
    uint64_t applied;   /* raft index applied (cluster), else 0 */
    uint64_t max_epoch; /* highest epoch any agent has had here */
    uint64_t history;   /* recoveries behind the database */
    int run;            /* enum ol__nstate_run */
    int64_t time_ms;    /* when written */
    uint64_t serial;    /* rises with every write */
};

const char *ol__nstate_run_name(int run);

/*
 * Read the record at `path`.  Slots signed by a key other than `pk` do not
 * count (pk NULL: any record whose signature verifies under the key it
 * names counts; the caller checks that key).  Returns 0, OL_ENOTFOUND (no file), OL_EUNAUTH (signed by another
 * key) or OL_EMALFORMED (no slot is valid: damaged), with errmsg set.
 */
int ol__nstate_load(const char *path, const uint8_t pk[OL_PK_SIZE],
                    struct ol__nstate *out, char *errmsg) WUR;

/* Parse and verify one slot of OL_NSTATE_SLOT bytes (untrusted: read from
 * disk).  Returns 0, OL_EMALFORMED, or OL_EUNAUTH (valid, but not signed
 * by pk; pk NULL accepts any key). */
int ol__nstate_decode(const uint8_t *slot, const uint8_t pk[OL_PK_SIZE],
                      struct ol__nstate *st) WUR;

/* Write `st` (serial and time are set here), durably.  A new file is
 * created whole with both slots.  Returns 0 or OL_EIO with errmsg. */
int ol__nstate_write(const char *path, const struct ol__key *key,
                     struct ol__nstate *st, char *errmsg);

/* The database files as found at start, and what a read-only look at the
 * database said (store_rv 0: identity below is valid). */
struct ol__nstate_db {
    const char *path;
    struct ol__store_files files;
    int store_rv;
    char store_err[512];
    int schema;
    uint8_t db_id[OL_DBID_SIZE];
    uint64_t commits;
};

/*
 * May a node start on this database?  `rec` is the record (NULL: there is
 * none).  `hint` says how to recover (appended to refusals).  Returns 0
 * (start; *create set when there is no database yet and one may be
 * created), or OL_ESTATE with errmsg (OL_ERRMSG_SIZE * 4 bytes) saying
 * what is wrong.
 */
#define OL_NSTATE_ERR_SIZE (OL_ERRMSG_SIZE * 4)
int ol__nstate_check(const struct ol__nstate *rec,
                     const struct ol__nstate_db *db, uint64_t node_id,
                     const char *hint, int *create, char *errmsg) WUR;

/* Rewriting the record while the node runs. */
struct ol__nstate_w {
    uv_loop_t *loop;
    char path[PATH_MAX];
    const struct ol__key *key; /* borrowed; outlives the writer */
    struct ol__nstate cur;     /* as last written (or being written) */
    struct ol__nstate next;    /* newest values noted */
    int dirty;                 /* next differs from cur */
    int busy;                  /* a write is on the thread pool */
    int live;                  /* note() schedules writes */
    int quiesce;               /* no new writes; call quiesce_cb when idle */
    void (*quiesce_cb)(void *data);
    void *quiesce_data;
    uv_work_t work;
    uv_timer_t timer;
    int timer_open;
    int64_t last_ms;
    int rv;
    char errmsg[OL_ERRMSG_SIZE];
    uint64_t writes;
    uint64_t failures;
};

/* Write `initial` now (synchronously) and get ready for later writes;
 * `live`: rewrite after commits (single node). */
int ol__nstate_start(struct ol__nstate_w *w, uv_loop_t *loop,
                     const char *path, const struct ol__key *key,
                     const struct ol__nstate *initial, int live,
                     char *errmsg);
/* Note newer figures (values lower than the current ones are ignored). */
void ol__nstate_note(struct ol__nstate_w *w, uint64_t commits,
                     uint64_t applied, uint64_t max_epoch);
/* Stop writing in the background; cb runs (maybe at once) once no write is
 * in flight.  After it, ol__nstate_put() writes synchronously. */
void ol__nstate_quiesce(struct ol__nstate_w *w, void (*cb)(void *data),
                        void *data);
int ol__nstate_put(struct ol__nstate_w *w, int run, char *errmsg);
/* Close the timer handle (the loop must run once more).  NULL-safe. */
void ol__nstate_close(struct ol__nstate_w *w);

#endif
