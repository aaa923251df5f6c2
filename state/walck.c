/*
 * Background WAL checkpoints (see walck.h).
 *
 * Threads: the hook runs on whichever thread commits on the writer (the
 * group-commit worker, or the loop for the raft FSM); the checkpoint runs
 * on the thread pool; everything else runs on the loop.  The hook and the
 * loop share only the three atomics.
 */
#include "walck.h"

#include <inttypes.h>
#include <string.h>

#include "base/err.h"
#include "base/hist.h"
#include "base/log.h"

static void ck_work(uv_work_t *req)
{
    struct ol__walck *w = req->data;

    w->rc = sqlite3_wal_checkpoint_v2(w->db, NULL, SQLITE_CHECKPOINT_PASSIVE,
                                      NULL, &w->done);
}

static void queue(struct ol__walck *w);

static void ck_after(uv_work_t *req, int status)
{
    struct ol__walck *w = req->data;
    int pages;

    w->busy = 0;
    if (w->closing) {
        sqlite3_close(w->db);
        w->db = NULL;
        return;
    }
    if (status != 0 || (w->rc != SQLITE_OK && w->rc != SQLITE_BUSY)) {
        /* Nothing is lost: the frames stay in the WAL for the next run. */
        ol_log_rl(OL_LOG_WARN, "WAL checkpoint: %s",
                  status != 0 ? uv_strerror(status) : sqlite3_errstr(w->rc));
        if (status == 0 && w->fault_cb &&
            ((w->rc & 0xff) == SQLITE_CORRUPT ||
             (w->rc & 0xff) == SQLITE_NOTADB))
            w->fault_cb(w->fault_data, sqlite3_errstr(w->rc));
    } else {
        w->runs++;
        if (w->done >= 0)
            atomic_store(&w->base, w->done);
    }
    atomic_store(&w->pending, 0);
    pages = atomic_load(&w->pages);
    if (pages - atomic_load(&w->base) >= OL_WALCK_PAGES &&
        !atomic_exchange(&w->pending, 1))
        queue(w);
}

static void queue(struct ol__walck *w)
{
    if (w->busy || w->closing)
        return;
    w->busy = 1;
    w->work.data = w;
    if (uv_queue_work(w->loop, &w->work, ck_work, ck_after) != 0) {
        w->busy = 0;
        atomic_store(&w->pending, 0);
    }
}

static void wake_cb(uv_async_t *h)
{
    queue(h->data);
}

static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct ol__walck *w = arg;
    int base = atomic_load(&w->base);

    (void)name;
    atomic_store(&w->pages, pages);
    if (pages < base) {
        /* The WAL restarted from its beginning. */
        atomic_compare_exchange_strong(&w->base, &base, 0);
        base = 0;
    }
    if (pages >= OL_WALCK_LIMIT) {
        /* The background runs cannot keep up: checkpoint here, where no
         * frame can be added meanwhile, so the WAL can restart. */
        uint64_t t0 = ol__now_us(), ms;
        int done = 0;

        sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL,
                                  &done);
        ms = (ol__now_us() - t0) / 1000;
        ol_log_rl(ms >= 100 ? OL_LOG_INFO : OL_LOG_DEBUG,
                  "WAL checkpoint: the WAL reached %d pages; %d backfilled "
                  "by the writer in %" PRIu64 " ms",
                  pages, done, ms);
        return SQLITE_OK;
    }
    if (pages - base >= OL_WALCK_PAGES && !atomic_exchange(&w->pending, 1))
        uv_async_send(&w->wake);
    return SQLITE_OK;
}

int ol__walck_start(struct ol__walck *w, uv_loop_t *loop, sqlite3 *writer,
                    const char *path, char *errmsg)
{
    void (*fault_cb)(void *, const char *) = w->fault_cb;
    void *fault_data = w->fault_data;
    int rc;

    memset(w, 0, sizeof *w);
    w->fault_cb = fault_cb;
    w->fault_data = fault_data;
    rc = sqlite3_open_v2(path, &w->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(w->db, "PRAGMA journal_mode=WAL;", NULL, NULL,
                          NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(writer, "PRAGMA journal_size_limit=67108864;",
                          NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        ol__errf(errmsg, "checkpointer for '%s': %s", path,
                 w->db ? sqlite3_errmsg(w->db) : sqlite3_errstr(rc));
        sqlite3_close(w->db);
        w->db = NULL;
        return OL_EIO;
    }
    sqlite3_busy_timeout(w->db, 1000);
    w->loop = loop;
    w->writer = writer;
    uv_async_init(loop, &w->wake, wake_cb);
    w->wake.data = w;
    /* Replaces SQLite's automatic checkpoint on this connection. */
    sqlite3_wal_hook(writer, wal_hook, w);
    return 0;
}

void ol__walck_close(struct ol__walck *w)
{
    if (w->loop == NULL || w->closing)
        return;
    w->closing = 1;
    sqlite3_wal_hook(w->writer, NULL, NULL);
    uv_close((uv_handle_t *)&w->wake, NULL);
    if (!w->busy) {
        sqlite3_close(w->db);
        w->db = NULL;
    }
}
