/*
 * The raft FSM over the state machine: entries are held until an entry of
 * the current term commits after them, made durable together with their
 * hashes and the applied index, and only then reported.  See fsm.h for
 * why.
 */
#include "fsm.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/hist.h"
#include "base/log.h"
#include "base/mpr.h"

#define RING_DEFAULT 65536

struct ol__fsm_held {
    struct ol__fsm_held *next;
    uint64_t index;
    size_t len;
    uint8_t bytes[];
};

static void fatal(struct ol__fsm *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void fatal(struct ol__fsm *f, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (f->stopped)
        return;
    f->stopped = 1;
    if (f->hooks.fatal)
        f->hooks.fatal(f->hooks.data, msg);
}

/* The length of the entry inside a raft buffer: one msgpack object,
 * followed by the zero padding libraft needs (fewer than 8 bytes). */
static size_t entry_len(const struct raft_buffer *buf)
{
    struct ol__mpr r;

    ol__mpr_init(&r, buf->base, buf->len);
    if (ol__mpr_skip(&r) != 0 || buf->len - r.off >= 8)
        return buf->len;
    for (size_t i = r.off; i < buf->len; i++)
        if (((const uint8_t *)buf->base)[i] != 0)
            return buf->len;
    return r.off;
}

static void entry_hash(const void *p, size_t len, uint8_t out[OL_HASH_SIZE])
{
    crypto_generichash(out, OL_HASH_SIZE, p, len, NULL, 0);
}

/* ---- the ring of applied entry hashes ---- */

static int ring_put(struct ol__fsm *f, uint64_t index, const void *p,
                    size_t len)
{
    sqlite3_stmt *st = f->ring_put;
    uint8_t h[OL_HASH_SIZE];
    int rc;

    entry_hash(p, len, h);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)(index % f->cfg.ring));
    sqlite3_bind_int64(st, 2, (sqlite3_int64)index);
    sqlite3_bind_blob(st, 3, h, OL_HASH_SIZE, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : OL_EIO;
}

/* An entry at an index this store has applied: it must be the one that
 * was applied.  libraft applies again from its last snapshot after a
 * restart; a different entry there means the log this node holds is not
 * the one it acted on. */
static void ring_check(struct ol__fsm *f, uint64_t index, const void *p,
                       size_t len)
{
    sqlite3_stmt *st = f->ring_get;
    uint8_t h[OL_HASH_SIZE];
    int rc, differs = 0;

    sqlite3_bind_int64(st, 1, (sqlite3_int64)(index % f->cfg.ring));
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW &&
        (uint64_t)sqlite3_column_int64(st, 0) == index &&
        sqlite3_column_bytes(st, 1) == OL_HASH_SIZE) {
        entry_hash(p, len, h);
        differs = memcmp(h, sqlite3_column_blob(st, 1), OL_HASH_SIZE) != 0;
        f->n.ring_checked++;
    }
    sqlite3_reset(st);
    if (differs)
        fatal(f,
              "raft index %" PRIu64 " holds a different entry from the one "
              "this node applied there: its raft log diverged from its "
              "database; stopping. Rebuild this node from the cluster: "
              "move its data directory aside and start it with --rejoin",
              index);
}

/* ---- the log's size in bytes ---- */

/* Remember the size of the entry at `index`, and once the entries since
 * the last snapshot hold log_bytes, have libraft take one after this
 * apply: it does when last_applied - the snapshot's index reaches its
 * threshold. */
static void note_size(struct ol__fsm *f, uint64_t index, size_t len)
{
    struct ol__fsm_size *s;
    uint64_t since;

    if (f->sizes == NULL)
        return;
    s = &f->sizes[index % f->sizes_cap];
    s->index = index;
    s->len = len;
    f->since_snap += len;
    if (f->raft == NULL || f->since_snap < f->cfg.log_bytes ||
        index <= f->raft->log.snapshot.last_index)
        return;
    since = index - f->raft->log.snapshot.last_index;
    if (since < f->raft->snapshot.threshold) {
        raft_set_snapshot_threshold(f->raft, (unsigned)since);
        f->n.snapshots_by_bytes++;
    }
}

/* A snapshot is being taken at `index`: keep behind it only the newest
 * entries that fit in a quarter of log_bytes (never more than configured),
 * and go back to the configured threshold. */
static void bound_trailing(struct ol__fsm *f, uint64_t index)
{
    uint64_t bytes = 0, budget = f->cfg.log_bytes / 4;
    uint32_t n = 0;

    if (f->sizes == NULL || f->raft == NULL)
        return;
    while (n < f->cfg.snapshot_trailing && n + 1 < f->sizes_cap &&
           n < index) {
        const struct ol__fsm_size *s = &f->sizes[(index - n) % f->sizes_cap];

        /* An entry whose size is not known (applied before a restart)
         * ends the window: what is kept is never more than the bound. */
        if (s->index != index - n || bytes + s->len > budget)
            break;
        bytes += s->len;
        n++;
    }
    /* raft_uv takes a trailing of 0 for a snapshot being installed (it
     * moves its next append index back to the snapshot's): keep one. */
    if (n == 0 && f->cfg.snapshot_trailing > 0)
        n = 1;
    raft_set_snapshot_trailing(f->raft, n);
    raft_set_snapshot_threshold(f->raft, f->cfg.snapshot_threshold);
    f->since_snap = 0;
}

/* ---- holding and releasing entries ---- */

static void held_free_all(struct ol__fsm *f)
{
    struct ol__fsm_held *h, *next;

    for (h = f->held_head; h; h = next) {
        next = h->next;
        free(h);
    }
    f->held_head = f->held_tail = NULL;
    f->n_held = 0;
    f->held_bytes = 0;
}

static int hold(struct ol__fsm *f, uint64_t index, const void *p, size_t len)
{
    struct ol__fsm_held *h = malloc(sizeof *h + len);

    if (h == NULL)
        return OL_ENOMEM;
    h->next = NULL;
    h->index = index;
    h->len = len;
    memcpy(h->bytes, p, len);
    if (f->held_tail)
        f->held_tail->next = h;
    else
        f->held_head = h;
    f->held_tail = h;
    f->n_held++;
    f->held_bytes += len;
    if (f->n_held > f->n.held_max)
        f->n.held_max = f->n_held;
    return 0;
}

/* Apply one entry inside the open transaction.  Returns 0, or non-zero
 * after fatal() was called. */
static int apply_one(struct ol__fsm *f, uint64_t index, const void *p,
                     size_t len, struct ol__effects *fx)
{
    int rv = ol__sm_apply(f->sm, p, len, 0, fx);

    if (rv == OL_EMALFORMED || rv == OL_ENOTSUP) {
        fatal(f,
              "raft index %" PRIu64 ": %s; stopping: a committed entry is "
              "never skipped%s",
              index, ol__sm_errmsg(f->sm),
              rv == OL_ENOTSUP ? " (upgrade this node to the version the "
                                 "rest of the cluster runs)"
                               : "");
        return rv;
    }
    if (rv == 0)
        rv = ring_put(f, index, p, len);
    if (rv == 0)
        rv = ol__sm_set_applied(f->sm, index);
    if (rv != 0)
        fatal(f, "store failed applying raft index %" PRIu64 ": %s; "
                 "stopping (the entry is applied again at restart)",
              index, f->st->errmsg);
    return rv;
}

/* A backlog this large is applied at once, as without a slice: the loop
 * then takes nothing more in until it is, which is the back-pressure a
 * node that cannot keep up needs. */
#define HELD_BYTES_MAX (64u << 20)

/* Whether this turn's slice has time left, `used` us into a call. */
static int slice_left(const struct ol__fsm *f, uint64_t used)
{
    return f->cfg.apply_slice_us == 0 || f->held_bytes > HELD_BYTES_MAX ||
           f->spent_us + used < f->cfg.apply_slice_us;
}

/* Drop the first `k` held entries. */
static void held_pop(struct ol__fsm *f, uint32_t k)
{
    while (k-- > 0 && f->held_head) {
        struct ol__fsm_held *h = f->held_head;

        f->held_head = h->next;
        if (f->held_head == NULL)
            f->held_tail = NULL;
        f->n_held--;
        f->held_bytes -= h->len;
        free(h);
    }
}

/*
 * Make held entries known to be committed durable in one transaction, as
 * many as the slice allows (at least one), then `p` (index `index`; NULL:
 * none; it commits with ready_index) if every held entry went and the
 * slice still allows; report their effects.  Returns whether `p` was
 * applied.
 */
static int release(struct ol__fsm *f, uint64_t index, const void *p,
                   size_t len)
{
    struct ol__effects fx;
    struct ol__fsm_held *h;
    uint64_t t0 = ol__now_us(), last = 0;
    uint32_t done = 0;
    int rv, took = 0;

    ol__effects_init(&fx);
    rv = ol__store_begin(f->st);
    if (rv != 0) {
        fatal(f, "store failed opening a transaction for raft index %" PRIu64
                 ": %s; stopping",
              p ? index : f->ready_index, f->st->errmsg);
        return 0;
    }
    for (h = f->held_head; h && h->index <= f->ready_index && rv == 0;
         h = h->next) {
        if (done > 0 && !slice_left(f, ol__now_us() - t0))
            break;
        rv = apply_one(f, h->index, h->bytes, h->len, &fx);
        last = h->index;
        done++;
    }
    if (rv == 0 && p && h == NULL &&
        (done == 0 || slice_left(f, ol__now_us() - t0))) {
        rv = apply_one(f, index, p, len, &fx);
        last = index;
        took = 1;
    }
    if (rv == 0) {
        rv = ol__store_commit(f->st);
        if (rv != 0)
            fatal(f, "store failed committing raft index %" PRIu64
                     ": %s; stopping",
                  last, f->st->errmsg);
    }
    f->spent_us += ol__now_us() - t0;
    if (rv != 0) {
        ol__store_rollback(f->st);
        (void)ol__sm_reload(f->sm);
        ol__effects_free(&fx);
        return 0;
    }
    f->n.applied += done + (uint64_t)took;
    held_pop(f, done);
    /* The term only once the entry of that term is in: a leader is
     * current when its own first entry is (cluster.c). */
    if (f->hooks.effects)
        f->hooks.effects(f->hooks.data, &fx,
                         last == f->ready_index ? f->ready_term : 0);
    ol__effects_free(&fx);
    return took;
}

static int fsm_apply(struct raft_fsm *rf, const struct raft_buffer *buf,
                     void **result)
{
    struct ol__fsm *f = rf->data;
    uint64_t index = raft_last_applied(f->raft) + 1;
    uint64_t term = f->raft->current_term;
    size_t len = entry_len(buf);
    struct ol__entry hdr;
    int rv;

    *result = NULL;
    if (f->stopped)
        return 0;
    note_size(f, index, buf->len);
    if (index <= ol__sm_applied(f->sm)) {
        ring_check(f, index, buf->base, len);
        return 0;
    }
    rv = ol__entry_peek(buf->base, len, &hdr);
    if (rv != 0) {
        fatal(f,
              "raft index %" PRIu64 ": the %zu-byte entry %s; stopping: a "
              "committed entry is never skipped",
              index, buf->len,
              rv == OL_ENOTSUP ? "is of a newer format than this version "
                                 "reads (upgrade this node)"
                               : "is not an outlast log entry");
        return 0;
    }
    /* An entry of this node's current term was committed by the leader of
     * that term under Raft's rule; what is held before it commits with it.
     * Anything else waits. */
    if (hdr.term != term) {
        if (hold(f, index, buf->base, len) != 0)
            fatal(f, "out of memory holding raft index %" PRIu64
                     "; stopping",
                  index);
        return 0;
    }
    f->ready_index = index;
    f->ready_term = term;
    if (slice_left(f, 0) && release(f, index, buf->base, len))
        return 0;
    /* This turn has applied all it may: the entry waits for the next. */
    if (!f->stopped && hold(f, index, buf->base, len) != 0)
        fatal(f, "out of memory holding raft index %" PRIu64 "; stopping",
              index);
    f->n.deferred++;
    if (!f->stopped && f->hooks.deferred)
        f->hooks.deferred(f->hooks.data);
    return 0;
}

void ol__fsm_turn(struct ol__fsm *f)
{
    f->spent_us = 0;
}

static int ready_left(const struct ol__fsm *f)
{
    return !f->stopped && f->held_head &&
           f->held_head->index <= f->ready_index;
}

int ol__fsm_drain(struct ol__fsm *f)
{
    if (ready_left(f) && slice_left(f, 0))
        (void)release(f, 0, NULL, 0);
    return ready_left(f);
}

/* ---- snapshots ---- */

/* Called on the loop: pin the state raft is snapshotting. */
static int fsm_snapshot(struct raft_fsm *rf, struct raft_buffer *bufs[],
                        unsigned *n_bufs)
{
    struct ol__fsm *f = rf->data;
    sqlite3_stmt *st;

    if (f->snap_db == NULL)
        return RAFT_NOMEM;
    if (f->snap_busy)
        return RAFT_BUSY;
    if (f->n_held) {
        /* libraft would record the snapshot at its last applied index,
         * past what the store holds; it asks again later. */
        f->n.snapshots_refused++;
        return RAFT_BUSY;
    }
    if (sqlite3_exec(f->snap_db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(f->snap_db, "SELECT count(*) FROM meta", -1, &st,
                           NULL) != SQLITE_OK)
        return RAFT_IOERR;
    /* The first read takes the WAL read lock: the view is now fixed. */
    sqlite3_step(st);
    sqlite3_finalize(st);
    *bufs = raft_calloc(1, sizeof **bufs);
    if (*bufs == NULL) {
        sqlite3_exec(f->snap_db, "COMMIT", NULL, NULL, NULL);
        return RAFT_NOMEM;
    }
    *n_bufs = 1;
    f->snap_index = ol__sm_applied(f->sm);
    f->snap_busy = 1;
    bound_trailing(f, f->snap_index);
    if (f->cfg.async_snapshots)
        return 0;
    /* Without async work the snapshot is built here, on the loop. */
    ol__buf_reset(&f->snap_buf);
    if (ol__sm_snapshot_db(f->snap_db, f->snap_index, &f->snap_buf) != 0) {
        sqlite3_exec(f->snap_db, "COMMIT", NULL, NULL, NULL);
        raft_free(*bufs);
        *bufs = NULL;
        *n_bufs = 0;
        f->snap_busy = 0;
        return RAFT_IOERR;
    }
    (*bufs)[0].base = f->snap_buf.base;
    (*bufs)[0].len = f->snap_buf.len;
    return 0;
}

/* Called on a worker thread: only the pinned connection is touched. */
static int fsm_snapshot_async(struct raft_fsm *rf, struct raft_buffer *bufs[],
                              unsigned *n_bufs)
{
    struct ol__fsm *f = rf->data;

    ol__buf_reset(&f->snap_buf);
    if (ol__sm_snapshot_db(f->snap_db, f->snap_index, &f->snap_buf) != 0)
        return RAFT_IOERR;
    (*bufs)[0].base = f->snap_buf.base;
    (*bufs)[0].len = f->snap_buf.len;
    (void)n_bufs;
    return 0;
}

static int fsm_snapshot_finalize(struct raft_fsm *rf,
                                 struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct ol__fsm *f = rf->data;

    sqlite3_exec(f->snap_db, "COMMIT", NULL, NULL, NULL);
    ol__buf_close(&f->snap_buf);
    raft_free(*bufs);
    *bufs = NULL;
    *n_bufs = 0;
    f->snap_busy = 0;
    f->n.snapshots_taken++;
    ol_log(OL_LOG_DEBUG, "snapshot taken at index %" PRIu64, f->snap_index);
    return 0;
}

static int fsm_restore(struct raft_fsm *rf, struct raft_buffer *buf)
{
    struct ol__fsm *f = rf->data;
    struct ol__effects fx;
    char err[OL_ERRMSG_SIZE];
    uint64_t before = ol__sm_applied(f->sm);
    int rv;

    /* Whatever was held is older than the snapshot, which holds it if it
     * committed. */
    held_free_all(f);
    f->since_snap = 0;
    ol__effects_init(&fx);
    rv = ol__sm_restore(f->sm, buf->base, buf->len, 0, &fx, err);
    if (rv != 0) {
        ol_log(OL_LOG_ERROR, "%s", err);
        return rv == OL_EMALFORMED ? RAFT_MALFORMED : RAFT_IOERR;
    }
    raft_free(buf->base);
    if (ol__sm_applied(f->sm) == before) {
        ol__effects_free(&fx);
        return 0;
    }
    f->n.snapshots_installed++;
    /* The tables were replaced: the node looks at every agent and every
     * waiting message again. */
    ol__sm_effects_all(f->sm, &fx);
    ol__sm_effects_mail(f->sm, &fx);
    if (f->hooks.effects)
        f->hooks.effects(f->hooks.data, &fx,
                         f->raft ? f->raft->current_term : 0);
    ol__effects_free(&fx);
    return 0;
}

/* ---- set-up ---- */

int ol__fsm_init(struct ol__fsm *f, struct ol__store *st, struct ol__sm *sm,
                 const struct ol__fsm_config *cfg,
                 const struct ol__fsm_hooks *hooks, char *errmsg)
{
    int rc;

    memset(f, 0, sizeof *f);
    f->st = st;
    f->sm = sm;
    f->cfg = *cfg;
    if (f->cfg.ring == 0)
        f->cfg.ring = RING_DEFAULT;
    f->hooks = *hooks;
    ol__buf_init(&f->snap_buf);
    /* Only the trailing window is ever walked (bound_trailing), and it
     * is kept to at most 2^20 entries whatever snapshot_trailing says. */
    if (f->cfg.log_bytes) {
        f->sizes_cap = (f->cfg.snapshot_trailing < (1u << 20)
                            ? (size_t)f->cfg.snapshot_trailing
                            : (size_t)1 << 20) +
                       1;
        f->sizes = calloc(f->sizes_cap, sizeof *f->sizes);
        if (f->sizes == NULL) {
            ol__errf(errmsg, "out of memory");
            return OL_ENOMEM;
        }
    }
    if (ol__store_prepare(st,
                          "INSERT OR REPLACE INTO raft_ring(slot, idx, hash) "
                          "VALUES(?, ?, ?)",
                          &f->ring_put) != 0 ||
        ol__store_prepare(st,
                          "SELECT idx, hash FROM raft_ring WHERE slot = ?",
                          &f->ring_get) != 0) {
        ol__errf(errmsg, "%s", st->errmsg);
        ol__fsm_close(f);
        return OL_EIO;
    }
    if (cfg->db_path) {
        rc = sqlite3_open_v2(cfg->db_path, &f->snap_db,
                             SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX,
                             NULL);
        /* A snapshot's temporary tables (sm_snap.c) stay in memory:
         * the service's sandbox may leave no directory for temp files. */
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(f->snap_db, "PRAGMA temp_store=MEMORY", NULL,
                              NULL, NULL);
        if (rc != SQLITE_OK) {
            ol__errf(errmsg, "snapshot reader '%s': %s", cfg->db_path,
                     sqlite3_errstr(rc));
            ol__fsm_close(f);
            return OL_EIO;
        }
    }
    f->fsm.version = f->cfg.async_snapshots ? 3 : 2;
    f->fsm.data = f;
    f->fsm.apply = fsm_apply;
    f->fsm.snapshot = fsm_snapshot;
    f->fsm.restore = fsm_restore;
    f->fsm.snapshot_finalize = fsm_snapshot_finalize;
    f->fsm.snapshot_async = f->cfg.async_snapshots ? fsm_snapshot_async
                                                   : NULL;
    return 0;
}

void ol__fsm_attach(struct ol__fsm *f, struct raft *raft)
{
    f->raft = raft;
}

void ol__fsm_close(struct ol__fsm *f)
{
    if (f == NULL)
        return;
    held_free_all(f);
    free(f->sizes);
    f->sizes = NULL;
    sqlite3_finalize(f->ring_put);
    sqlite3_finalize(f->ring_get);
    f->ring_put = f->ring_get = NULL;
    if (f->snap_db) {
        sqlite3_close(f->snap_db);
        f->snap_db = NULL;
    }
    ol__buf_close(&f->snap_buf);
}

uint32_t ol__fsm_held(const struct ol__fsm *f)
{
    return f->n_held;
}

