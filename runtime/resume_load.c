/*
 * Heads of agents waiting to be hosted, loaded and verified off the loop
 * (resume.h).  A batch of names goes to libuv's thread pool, where each
 * agent's head checkpoint is loaded and verified exactly as the loop would
 * (ol__verify_load_head_cached) on a read-only connection and a verify
 * cache of the batches' own, in one read transaction.  One batch is on the
 * pool at a time, so that connection is used by one thread at a time, and
 * the loop never touches it while a batch is out.
 */
#include "resume_int.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "state/verify.h"
#include "node.h"

/* The connection and cache the batches use, opened on first need. */
static int pool_ready(struct ol__node *n)
{
    struct ol__store *s = &n->resume.db;

    if (n->resume.db_open)
        return 1;
    if (n->resume.db_failed || n->reader.db == NULL)
        return 0;
    if (ol__store_open(s, n->reader.path, OL_STORE_READ_SHARED) != 0) {
        ol_log(OL_LOG_WARN, "resume: no connection of its own (%s); heads "
                            "are loaded on the loop", s->errmsg);
        n->resume.db_failed = 1;
        return 0;
    }
    n->resume.vc = ol__verify_cache_create();
    if (n->resume.vc == NULL) {
        ol__store_close(s);
        n->resume.db_failed = 1;
        return 0;
    }
    n->resume.db_open = 1;
    return 1;
}

void ol__rload_release(struct ol__node *n)
{
    if (!n->resume.db_open || n->resume.loading)
        return;
    ol__verify_cache_destroy(n->resume.vc);
    n->resume.vc = NULL;
    ol__store_close(&n->resume.db);
    n->resume.db_open = 0;
}

void ol__rbatch_free(struct ol__rbatch *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->n; i++) {
        if (b->v[i].pre.rv == 0)
            ol__ckpt_free(&b->v[i].pre.c);
        free(b->v[i].name);
    }
    free(b->v);
    free(b);
}

/* On the pool: load and verify every head of the batch. */
static void load_work(uv_work_t *req)
{
    struct ol__rbatch *b = req->data;
    sqlite3 *db = b->node->resume.db.db;
    struct ol__verify_cache *vc = b->node->resume.vc;
    char err[OL_ERRMSG_SIZE];
    int txn = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;

    for (size_t i = 0; i < b->n; i++) {
        struct ol__head_pre *p = &b->v[i].pre;

        p->rv = ol__verify_load_head_cached(db, b->v[i].name, vc, &p->c,
                                            p->hash, err);
    }
    if (txn)
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
}

/* Back on the loop: the batch may be hosted (or, at shutdown, dropped). */
static void load_done(uv_work_t *req, int status)
{
    struct ol__rbatch *b = req->data;
    struct ol__node *n = b->node;

    /* A batch that did not run leaves every head to the loop. */
    if (status != 0)
        for (size_t i = 0; i < b->n; i++)
            b->v[i].pre.rv = OL_ECANCELED;
    b->done = 1;
    if (n->resume.closing) {
        n->resume.loading = NULL;
        ol__rbatch_free(b);
        ol__rload_release(n);
        return;
    }
    ol__resume_kick(n);
}

int ol__rload_submit(struct ol__node *n, char **names, size_t count)
{
    struct ol__rbatch *b;

    if (n->resume.loading || !pool_ready(n))
        return -1;
    b = calloc(1, sizeof *b);
    if (b == NULL || (b->v = calloc(count, sizeof *b->v)) == NULL) {
        free(b);
        return -1;
    }
    b->node = n;
    b->n = count;
    for (size_t i = 0; i < count; i++) {
        b->v[i].name = names[i];
        b->v[i].pre.rv = OL_ECANCELED;
    }
    b->req.data = b;
    if (uv_queue_work(n->loop, &b->req, load_work, load_done) != 0) {
        for (size_t i = 0; i < count; i++)
            b->v[i].name = NULL;
        ol__rbatch_free(b);
        return -1;
    }
    n->resume.loading = b;
    return 0;
}

void ol__rload_close(struct ol__node *n)
{
    n->resume.closing = 1;
    ol__rbatch_free(n->resume.ready);
    n->resume.ready = NULL;
    /* A batch on the pool is dropped when it comes back (load_done). */
    if (n->resume.loading)
        (void)uv_cancel((uv_req_t *)&n->resume.loading->req);
    ol__rload_release(n);
}
