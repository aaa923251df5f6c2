/*
 * The single-node replica: group commit.  Proposals collect in a pending
 * batch while the previous batch is being written; a thread-pool worker
 * seals the batch's checkpoints with one signature, applies the entry
 * through the state machine in one transaction and fsyncs once.  Only after
 * COMMIT returns are the effects handed to the runtime, so nothing is called
 * committed before it is durable.  A failed batch is rolled back and retried
 * with backoff; its proposals are not lost and not reported twice.
 */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../runtime/err.h"
#include "../runtime/log.h"
#include "../runtime/store.h"
#include "replica.h"
#include "seal.h"

/* A batch is one transaction and one seal (at most OL_SEAL_MAX_HASHES
 * hashes): proposals that arrive while one is being written fill a queue
 * of batches, each below these caps. */
#define BATCH_MAX_CKPTS 8192
#define BATCH_MAX_CMDS 8192
#define BATCH_MAX_BYTES (64u << 20)

struct batch {
    struct batch *next;      /* queued after this one */
    struct ol__blob *bodies; /* malloc'd bodies */
    uint8_t *hashes;
    uint32_t n, cap;
    size_t bytes;
    struct ol__entry_w cmds;
    /* filled by the worker */
    struct ol__buf entry;
    struct ol__effects fx;
    int rv;
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
    for (uint32_t i = 0; i < b->n; i++)
        free((void *)b->bodies[i].p);
    free(b->bodies);
    free(b->hashes);
    ol__entry_w_close(&b->cmds);
    ol__buf_close(&b->entry);
    ol__effects_free(&b->fx);
    free(b);
}

static int batch_full(const struct batch *b)
{
    return b->n >= BATCH_MAX_CKPTS || b->cmds.n >= BATCH_MAX_CMDS ||
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
    if (b->n)
        rv = ol__seal_make(l->key, now, b->hashes, b->n, &seal, sig);
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
    if (rv == 0 && b->n)
        rv = ol__sm_apply_sealed(l->sm, now, seal.base, seal.len, sig,
                                 b->bodies, b->n, &b->fx);
    /* The entry was built here, so a decode failure is a bug, not input;
     * it is reported the same way as an I/O failure. */
    if (rv == 0 && b->cmds.n)
        rv = ol__sm_apply(l->sm, b->entry.base, b->entry.len, 1, &b->fx);
    if (rv == 0)
        rv = ol__store_commit(l->st);
    if (rv != 0) {
        ol__errf(b->errmsg, "%s", l->st->errmsg[0] ? l->st->errmsg
                                                   : ol_strerror(rv));
        ol__store_rollback(l->st);
        ol__effects_free(&b->fx);
        if (ol__sm_reload(l->sm) != 0)
            ol__errwrap(b->errmsg, "reload after failed batch");
    }
    ol__buf_close(&seal);
    b->rv = rv;
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
        l->n.ckpts += b->n;
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
                  b->n, b->cmds.n, b->errmsg);
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
    } else if (l->pending && (l->pending->n || l->pending->cmds.n)) {
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
    if (b->n == b->cap) {
        uint32_t cap = b->cap ? b->cap * 2 : 64;
        struct ol__blob *nb = realloc(b->bodies, cap * sizeof *nb);
        uint8_t *nh;

        if (nb == NULL)
            return OL_ENOMEM;
        b->bodies = nb;
        nh = realloc(b->hashes, (size_t)cap * OL_HASH_SIZE);
        if (nh == NULL)
            return OL_ENOMEM;
        b->hashes = nh;
        b->cap = cap;
    }
    b->bodies[b->n].p = body;
    b->bodies[b->n].len = (uint32_t)len;
    memcpy(b->hashes + (size_t)b->n * OL_HASH_SIZE, hash, OL_HASH_SIZE);
    b->n++;
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

static int idle(struct ol__replica *r)
{
    struct local *l = (struct local *)r;

    return l->inflight == NULL && l->retry_batch == NULL &&
           (l->pending == NULL ||
            (l->pending->n == 0 && l->pending->cmds.n == 0 &&
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

static void status(struct ol__replica *r, msgpack_packer *pk)
{
    struct local *l = (struct local *)r;

    msgpack_pack_map(pk, 5);
    msgpack_pack_str_with_body(pk, "mode", 4);
    msgpack_pack_str_with_body(pk, "single", 6);
    msgpack_pack_str_with_body(pk, "batches", 7);
    msgpack_pack_uint64(pk, l->n.batches);
    msgpack_pack_str_with_body(pk, "checkpoints", 11);
    msgpack_pack_uint64(pk, l->n.ckpts);
    msgpack_pack_str_with_body(pk, "commands", 8);
    msgpack_pack_uint64(pk, l->n.cmds);
    msgpack_pack_str_with_body(pk, "failures", 8);
    msgpack_pack_uint64(pk, l->n.failures);
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

static const struct ol__replica_vt local_vt = {
    .propose_ckpt = propose_ckpt,
    .propose_cmds = propose_cmds,
    .idle = idle,
    .is_leader = is_leader,
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
