/*
 * The single-node replica: group commit.  Proposals collect in a pending
 * batch while the previous batch is being written; a thread-pool worker
 * seals the batch's checkpoints with one signature, applies the entry
 * through the state machine in one transaction and fsyncs once.  Only after
 * COMMIT returns are the effects handed to the runtime, so nothing is called
 * committed before it is durable.  A failed batch is rolled back and retried
 * with backoff; its proposals are not lost and not reported twice.
 *
 * A batch that fails because the database is damaged (SQLITE_CORRUPT) would
 * fail the same way forever, so it is not retried as a whole: each of its
 * checkpoints and commands is committed in a transaction of its own (each
 * checkpoint under a seal of its own), and those that still fail are
 * reported as refused with OL_EIO and the database's message, so their
 * agents stop (degraded) while the rest of the node keeps committing.
 */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "base/err.h"
#include "base/log.h"
#include "state/store.h"
#include "bodies.h"
#include "replica.h"
#include "record/seal.h"
#include "state/sm_int.h"

/* A batch is one transaction and one seal (at most OL_SEAL_MAX_HASHES
 * hashes): proposals that arrive while one is being written fill a queue
 * of batches, each below these caps. */
#define BATCH_MAX_CKPTS 8192
#define BATCH_MAX_CMDS 8192
#define BATCH_MAX_BYTES (64u << 20)

struct batch {
    struct batch *next;      /* queued after this one */
    struct ol__bodies ck;    /* bodies malloc'd, owned here */
    size_t bytes;
    struct ol__entry_w cmds;
    /* filled by the worker */
    struct ol__buf entry;
    struct ol__effects fx;
    int rv;
    int corrupt; /* the database said it is damaged */
    char errmsg[OL_ERRMSG_SIZE];
};

struct local {
    struct ol__replica base;
    uv_loop_t *loop;
    struct ol__store *st;
    struct ol__sm *sm;
    const struct ol__key *key;
    ol__replica_effects_cb cb;
    void *cb_data;
    struct batch *pending; /* the queue of batches; the tail collects */
    struct batch *pending_tail;
    struct batch *inflight; /* in the worker */
    struct batch *retry_batch; /* failed; goes again first */
    uv_work_t work;
    uv_idle_t kick;  /* starts a batch once the loop is otherwise idle */
    uv_timer_t retry;
    uint64_t backoff_ms;
    int closing;
    int handles;
    void (*close_cb)(void *data);
    void *close_data;
    struct ol__replica_counters n;
};

static struct batch *batch_new(void)
{
    struct batch *b = calloc(1, sizeof *b);

    if (b)
        ol__entry_w_init(&b->cmds);
    return b;
}

static void batch_free(struct batch *b)
{
    if (b == NULL)
        return;
    for (uint32_t i = 0; i < b->ck.n; i++)
        free((void *)b->ck.bodies[i].p);
    ol__bodies_close(&b->ck);
    ol__entry_w_close(&b->cmds);
    ol__buf_close(&b->entry);
    ol__effects_free(&b->fx);
    free(b);
}

static int batch_full(const struct batch *b)
{
    return b->ck.n >= BATCH_MAX_CKPTS || b->cmds.n >= BATCH_MAX_CMDS ||
           b->bytes >= BATCH_MAX_BYTES;
}

/* The batch that collects new proposals: the queue's tail, or a new one
 * when the tail is full. */
static struct batch *pending(struct local *l)
{
    struct batch *b;

    if (l->pending_tail && !batch_full(l->pending_tail))
        return l->pending_tail;
    b = batch_new();
    if (b == NULL)
        return NULL;
    if (l->pending_tail)
        l->pending_tail->next = b;
    else
        l->pending = b;
    l->pending_tail = b;
    return b;
}

static void start(struct local *l);
static void kick_cb(uv_idle_t *h);

static void schedule(struct local *l)
{
    if (l->inflight == NULL && !uv_is_active((uv_handle_t *)&l->retry))
        uv_idle_start(&l->kick, kick_cb);
}

/* One transaction around fn; rolled back (and the cache reloaded) when it
 * fails.  Returns 0 or the failure, with why set. */
static int one_txn(struct local *l, int (*fn)(struct local *l, void *arg,
                                              struct ol__effects *fx),
                   void *arg, struct ol__effects *fx, char *why)
{
    struct ol__effects mine;
    int rv;

    ol__effects_init(&mine);
    rv = ol__store_begin(l->st);
    if (rv == 0)
        rv = fn(l, arg, &mine);
    if (rv == 0)
        rv = ol__store_commit(l->st);
    if (rv == 0) {
        ol__effects_splice(fx, &mine);
        return 0;
    }
    ol__errf(why, "store: %s", sqlite3_errmsg(l->st->db));
    ol__store_rollback(l->st);
    ol__effects_free(&mine);
    ol__sm_reload(l->sm);
    return rv;
}

struct one_body {
    const struct ol__blob *body;
    const uint8_t *hash;
    int64_t now;
};

struct one_cmd {
    const struct ol__blob *raw;
    int64_t now;
};

static int apply_one_body(struct local *l, void *arg, struct ol__effects *fx)
{
    struct one_body *ob = arg;
    uint8_t sig[OL_SIG_SIZE];
    struct ol__buf seal;
    int rv;

    ol__buf_init(&seal);
    rv = ol__seal_make(l->key, ob->now, ob->hash, 1, &seal, sig);
    if (rv == 0)
        rv = ol__sm_apply_sealed(l->sm, ob->now, seal.base, seal.len, sig,
                                 ob->body, 1, fx);
    ol__buf_close(&seal);
    return rv;
}

static int apply_one_cmd(struct local *l, void *arg, struct ol__effects *fx)
{
    const struct one_cmd *oc = arg;
    struct ol__entry_w w;
    struct ol__buf e;
    int rv;

    ol__entry_w_init(&w);
    ol__buf_init(&e);
    w.time_ms = oc->now;
    rv = ol__entry_add_raw(&w, oc->raw);
    if (rv == 0)
        rv = ol__entry_w_finish(&w, &e);
    if (rv == 0)
        rv = ol__sm_apply(l->sm, e.base, e.len, 1, fx);
    ol__buf_close(&e);
    ol__entry_w_close(&w);
    return rv;
}

/* The batch failed on a damaged database: commit what still can be, one
 * item at a time; what cannot is refused with the database's message. */
static void isolate(struct local *l, struct batch *b)
{
    struct ol__entry e;
    struct ol__effect *fe;
    char why[OL_ERRMSG_SIZE], err[OL_ERRMSG_SIZE];
    uint32_t failed = 0;

    ol__effects_init(&b->fx);
    for (uint32_t i = 0; i < b->ck.n; i++) {
        struct one_body ob = {&b->ck.bodies[i],
                              b->ck.hashes + (size_t)i * OL_HASH_SIZE,
                              b->cmds.time_ms};
        struct ol__ckpt c;

        if (one_txn(l, apply_one_body, &ob, &b->fx, why) == 0)
            continue;
        failed++;
        if (ol__ckpt_decode_meta(ob.body->p, ob.body->len, &c, err) == 0) {
            ol__fx_ckpt(&b->fx, c.agent, c.epoch, c.seq, ob.hash, OL_EIO, 0,
                        why);
            ol__ckpt_free(&c);
        }
    }
    ol__buf_reset(&b->entry);
    if (b->cmds.n && ol__entry_w_finish(&b->cmds, &b->entry) == 0 &&
        ol__entry_decode(b->entry.base, b->entry.len, &e, err) == 0) {
        for (uint32_t i = 0; i < e.n; i++) {
            struct one_cmd oc = {&e.cmds[i].raw, b->cmds.time_ms};

            if (one_txn(l, apply_one_cmd, &oc, &b->fx, why) == 0)
                continue;
            failed++;
            ol__fx_cmd(&b->fx, &e.cmds[i], OL_EIO, why);
        }
        ol__entry_free(&e);
    }
    ol_log(OL_LOG_ERROR,
           "database damaged: a batch of %u checkpoints and %u commands "
           "failed (%s); committed one by one, %u could not be",
           b->ck.n, b->cmds.n, b->errmsg, failed);
    fe = ol__fx_add(&b->fx, OL_FX_STORAGE);
    if (fe)
        snprintf(fe->errmsg, sizeof fe->errmsg, "%s", b->errmsg);
    b->rv = 0; /* done: each item has its outcome */
}

/* Runs on a thread-pool thread: everything here touches only the batch,
 * the store's writer connection and the state machine. */
static void work_cb(uv_work_t *req)
{
    struct local *l = req->data;
    struct batch *b = l->inflight;
    struct ol__buf seal;
    uint8_t sig[OL_SIG_SIZE];
    int64_t now = ol__wall_ms();
    int rv = 0;

    ol__buf_reset(&b->entry);
    ol__effects_init(&b->fx);
    ol__buf_init(&seal);
    /* One signature over the batch's hashes; the bodies go to the state
     * machine as they are, without being copied into an entry. */
    if (b->ck.n)
        rv = ol__seal_make(l->key, now, b->ck.hashes, b->ck.n, &seal, sig);
    b->cmds.time_ms = now;
    if (rv == 0 && b->cmds.n)
        rv = ol__entry_w_finish(&b->cmds, &b->entry);
    if (rv != 0) {
        ol__errf(b->errmsg, "seal batch: %s", ol_strerror(rv));
        ol__buf_close(&seal);
        b->rv = rv;
        return;
    }
    rv = ol__store_begin(l->st);
    if (rv == 0 && b->ck.n)
        rv = ol__sm_apply_sealed(l->sm, now, seal.base, seal.len, sig,
                                 b->ck.bodies, b->ck.n, &b->fx);
    /* The entry was built here, so a decode failure is a bug, not input;
     * it is reported the same way as an I/O failure. */
    if (rv == 0 && b->cmds.n)
        rv = ol__sm_apply(l->sm, b->entry.base, b->entry.len, 1, &b->fx);
    if (rv == 0)
        rv = ol__store_commit(l->st);
    if (rv != 0) {
        int code = sqlite3_extended_errcode(l->st->db) & 0xff;

        b->corrupt = code == SQLITE_CORRUPT || code == SQLITE_NOTADB;
        ol__errf(b->errmsg, "%s",
                 l->st->errmsg[0] ? l->st->errmsg
                 : b->corrupt     ? sqlite3_errmsg(l->st->db)
                                  : ol_strerror(rv));
        ol__store_rollback(l->st);
        ol__effects_free(&b->fx);
        if (ol__sm_reload(l->sm) != 0)
            ol__errwrap(b->errmsg, "reload after failed batch");
    }
    ol__buf_close(&seal);
    b->rv = rv;
    if (rv != 0 && b->corrupt)
        isolate(l, b);
}

static void retry_cb(uv_timer_t *t)
{
    struct local *l = t->data;

    start(l);
}

static void after_cb(uv_work_t *req, int status)
{
    struct local *l = req->data;
    struct batch *b = l->inflight;

    l->inflight = NULL;
    if (b->rv == 0 && status == 0) {
        l->n.batches++;
        l->n.ckpts += b->ck.n;
        if (b->ck.n)
            ol__phist_add(&l->n.batch_sizes, ol__batch_bounds,
                          ol__batch_nbounds, b->ck.n);
        l->n.cmds += b->cmds.n;
        l->backoff_ms = 0;
        if (!l->closing)
            l->cb(l->cb_data, &b->fx);
        batch_free(b);
    } else {
        /* Keep the batch as it was and try it again, ahead of anything
         * proposed since; nothing in it has been reported. */
        l->n.failures++;
        ol_log_rl(OL_LOG_ERROR,
                  "commit of %u checkpoints and %u commands failed: %s; "
                  "retrying",
                  b->ck.n, b->cmds.n, b->errmsg);
        ol__buf_reset(&b->entry);
        b->rv = 0;
        l->retry_batch = b;
        l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : 50;
        if (l->backoff_ms > 5000)
            l->backoff_ms = 5000;
        if (!l->closing) {
            uv_timer_start(&l->retry, retry_cb, l->backoff_ms, 0);
            return;
        }
    }
    if (l->closing) {
        if (l->close_cb && l->handles == 0) {
            void (*cb)(void *) = l->close_cb;

            l->close_cb = NULL;
            cb(l->close_data);
        }
        return;
    }
    start(l);
}

static void start(struct local *l)
{
    int rv;

    if (l->inflight || l->closing)
        return;
    if (l->retry_batch) {
        l->inflight = l->retry_batch;
        l->retry_batch = NULL;
    } else if (l->pending && (l->pending->ck.n || l->pending->cmds.n)) {
        l->inflight = l->pending;
        l->pending = l->pending->next;
        if (l->pending == NULL)
            l->pending_tail = NULL;
        l->inflight->next = NULL;
    } else {
        return;
    }
    l->work.data = l;
    rv = uv_queue_work(l->loop, &l->work, work_cb, after_cb);
    if (rv != 0) {
        ol_log(OL_LOG_ERROR, "commit: cannot queue work: %s",
               uv_strerror(rv));
        l->retry_batch = l->inflight;
        l->inflight = NULL;
    }
}

static void kick_cb(uv_idle_t *h)
{
    struct local *l = h->data;

    uv_idle_stop(h);
    start(l);
}

static int propose_ckpt(struct ol__replica *r, const char *agent,
                        uint64_t epoch, uint64_t seq, uint8_t *body,
                        size_t len, const uint8_t hash[OL_HASH_SIZE])
{
    struct local *l = (struct local *)r;
    struct batch *b;

    if (l->closing)
        return OL_ESHUTDOWN;
    b = pending(l);
    if (b == NULL)
        return OL_ENOMEM;
    if (ol__bodies_add(&b->ck, body, len, hash) != 0)
        return OL_ENOMEM;
    b->bytes += len;
    schedule(l);
    return 0;
}

static int propose_cmds(struct ol__replica *r, const struct ol__entry_w *w)
{
    struct local *l = (struct local *)r;
    struct batch *b;
    int rv;

    if (l->closing)
        return OL_ESHUTDOWN;
    if (w->n > BATCH_MAX_CMDS)
        return OL_ETOOBIG;
    b = pending(l);
    if (b == NULL)
        return OL_ENOMEM;
    rv = ol__buf_append(&b->cmds.cmds, w->cmds.base, w->cmds.len);
    if (rv != 0)
        return rv;
    b->cmds.n += w->n;
    schedule(l);
    return 0;
}

static int sm_busy(struct ol__replica *r)
{
    return ((struct local *)r)->inflight != NULL;
}

static int idle(struct ol__replica *r)
{
    struct local *l = (struct local *)r;

    return l->inflight == NULL && l->retry_batch == NULL &&
           (l->pending == NULL ||
            (l->pending->ck.n == 0 && l->pending->cmds.n == 0 &&
             l->pending->next == NULL));
}

static int is_leader(struct ol__replica *r)
{
    return 1;
}

static void counters(struct ol__replica *r, struct ol__replica_counters *out)
{
    *out = ((struct local *)r)->n;
}

static void fill_status(struct ol__pk_map *m, void *data)
{
    struct local *l = data;

    ol__pk_kv_str(m, "mode", "single");
    ol__pk_kv_uint(m, "batches", l->n.batches);
    ol__pk_kv_uint(m, "checkpoints", l->n.ckpts);
    ol__pk_kv_uint(m, "commands", l->n.cmds);
    ol__pk_kv_uint(m, "failures", l->n.failures);
}

static void status(struct ol__replica *r, msgpack_packer *pk)
{
    (void)ol__replica_pack_map(pk, fill_status, r);
}

static void handle_closed(uv_handle_t *h)
{
    struct local *l = h->data;

    if (--l->handles > 0 || l->inflight)
        return;
    if (l->close_cb) {
        void (*cb)(void *) = l->close_cb;

        l->close_cb = NULL;
        cb(l->close_data);
    }
}

static void local_close(struct ol__replica *r, void (*cb)(void *data),
                        void *data)
{
    struct local *l = (struct local *)r;

    l->closing = 1;
    l->close_cb = cb;
    l->close_data = data;
    uv_close((uv_handle_t *)&l->kick, handle_closed);
    uv_close((uv_handle_t *)&l->retry, handle_closed);
}

void ol__local_destroy(struct ol__replica *r);

static int64_t lease_left(struct ol__replica *r)
{
    (void)r;
    return INT64_MAX;
}

static uint32_t level(struct ol__replica *r)
{
    (void)r;
    return ol__cmd_level();
}

static const struct ol__replica_vt local_vt = {
    .propose_ckpt = propose_ckpt,
    .propose_cmds = propose_cmds,
    .idle = idle,
    .sm_busy = sm_busy,
    .is_leader = is_leader,
    .lease_left = lease_left,
    .level = level,
    .counters = counters,
    .status = status,
    .close = local_close,
    .destroy = ol__local_destroy,
};

void ol__local_destroy(struct ol__replica *r)
{
    struct local *l = (struct local *)r;

    if (l == NULL)
        return;
    while (l->pending) {
        struct batch *b = l->pending;

        l->pending = b->next;
        batch_free(b);
    }
    batch_free(l->inflight);
    batch_free(l->retry_batch);
    free(l);
}

int ol__local_create(uv_loop_t *loop, struct ol__store *st, struct ol__sm *sm,
                     const struct ol__key *key, ol__replica_effects_cb cb,
                     void *data, struct ol__replica **out)
{
    struct local *l = calloc(1, sizeof *l);

    if (l == NULL)
        return OL_ENOMEM;
    l->base.vt = &local_vt;
    l->loop = loop;
    l->st = st;
    l->sm = sm;
    l->key = key;
    l->cb = cb;
    l->cb_data = data;
    uv_idle_init(loop, &l->kick);
    l->kick.data = l;
    uv_timer_init(loop, &l->retry);
    l->retry.data = l;
    l->handles = 2;
    *out = &l->base;
    return 0;
}
