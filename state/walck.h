/*
 * Background WAL checkpoints.
 *
 * SQLite's automatic checkpoint runs inside the commit that crosses its
 * threshold, on the committing thread: in a cluster that is the loop (the
 * raft FSM applies there), and two fsyncs every few MiB were the commit
 * latency's p99.  The checkpointer takes that work off the writer: a WAL
 * hook on the writer connection notes the WAL's size, and once it has grown
 * by OL_WALCK_PAGES since the last checkpoint (more pages make rarer but
 * longer checkpoints: 2048 kept both one agent's and a hundred agents'
 * p99 lowest in bench_cluster), a PASSIVE checkpoint runs on
 * the thread pool through a connection of its own.
 *
 * A passive checkpoint never blocks the writer, but it cannot restart the
 * WAL while frames are being added behind it.  If the WAL still reaches
 * OL_WALCK_LIMIT pages, the writer checkpoints inline at that commit, as
 * SQLite would have by itself, so the file stays bounded.
 */
#ifndef OL_WALCK_H
#define OL_WALCK_H

#include <sqlite3.h>
#include <stdatomic.h>
#include <uv.h>

#define OL_WALCK_PAGES 2048  /* 8 MiB of 4 KiB pages */
#define OL_WALCK_LIMIT 16384 /* 64 MiB */

struct ol__walck {
    uv_loop_t *loop;
    sqlite3 *writer; /* not owned */
    sqlite3 *db;     /* the checkpointer's own connection */
    uv_async_t wake;
    uv_work_t work;
    int busy;    /* work queued or running */
    int closing; /* close the connection when the work returns */
    int rc;      /* the last checkpoint's result */
    int done;    /* frames backfilled by the last run */
    atomic_int pages;   /* WAL size after the writer's last commit */
    atomic_int base;    /* pages already backfilled when it was noted */
    atomic_int pending; /* a wake-up is on its way to the loop */
    unsigned long runs;
    /* Told (on the loop) when a checkpoint finds the database damaged;
     * set before ol__walck_start(), which keeps it. */
    void (*fault_cb)(void *data, const char *msg);
    void *fault_data;
};

/* Attach to the writer connection of the database at path.  Returns 0, or
 * OL_EIO with errmsg (OL_ERRMSG_SIZE bytes) filled. */
int ol__walck_start(struct ol__walck *w, uv_loop_t *loop, sqlite3 *writer,
                    const char *path, char *errmsg);

/* Detach from the writer and close the handle; the connection closes when
 * a running checkpoint returns.  Call from the loop before the writer
 * connection is closed. */
void ol__walck_close(struct ol__walck *w);

#endif
