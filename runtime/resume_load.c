/*
 * Heads of agents waiting to be hosted, loaded and verified off the loop
 * (resume.h).  A batch of names goes to libuv's thread pool, where each
 * agent's head checkpoint is loaded and verified exactly as the loop would
 * (ol__verify_load_head_cached), in one read transaction.  Up to
 * OL_RESUME_LOADERS batches are out at once, each with a loader of its
 * own: a read-only connection and a verify cache that only that batch's
 * thread uses while it is out (the loop never touches them), so a
 * connection is used by one thread at a time.
 */
#include "resume_int.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "state/verify.h"
#include "node.h"

/* A free loader, its connection opened on first need; NULL if none. */
static struct ol__rloader *free_loader(struct ol__node *n)
{
    struct ol__rloader *ld = n->resume.loaders;

    if (n->resume.db_failed || n->reader.db == NULL)
        return NULL;
    if (ld == NULL &&
        (ld = n->resume.loaders = calloc(OL_RESUME_LOADERS, sizeof *ld)) ==
            NULL)
        return NULL;
    for (int i = 0; i < OL_RESUME_LOADERS; i++, ld++) {
        if (ld->busy)
            continue;
        if (ld->open)
            return ld;
        if (ol__store_open(&ld->db, n->reader.path, OL_STORE_READ_SHARED) !=
            0) {
            ol_log(OL_LOG_WARN, "resume: no connection of its own (%s); "
                                "heads are loaded on the loop",
                   ld->db.errmsg);
            n->resume.db_failed = 1;
            return NULL;
        }
        if ((ld->vc = ol__verify_cache_create()) == NULL) {
            ol__store_close(&ld->db);
            return NULL;
        }
        ld->open = 1;
        return ld;
    }
    return NULL;
}

static void loader_close(struct ol__rloader *ld)
{
    if (!ld->open || ld->busy)
        return;
    ol__verify_cache_destroy(ld->vc);
    ld->vc = NULL;
    ol__store_close(&ld->db);
    ld->open = 0;
}

void ol__rload_release(struct ol__node *n)
{
    int busy = 0;

    if (n->resume.loaders == NULL)
        return;
    for (int i = 0; i < OL_RESUME_LOADERS; i++) {
        loader_close(&n->resume.loaders[i]);
        busy |= n->resume.loaders[i].busy != NULL;
    }
    if (!busy) {
        free(n->resume.loaders);
        n->resume.loaders = NULL;
    }
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
    sqlite3 *db = b->ld->db.db;
    char err[OL_ERRMSG_SIZE];
    int txn = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;

    /* One snapshot for the whole batch: the signers and seals are read
     * once in it. */
    if (txn)
        ol__verify_cache_pin(b->ld->vc, 1);
    for (size_t i = 0; i < b->n; i++) {
        struct ol__head_pre *p = &b->v[i].pre;

        p->rv = ol__verify_load_head_cached(db, b->v[i].name, b->ld->vc,
                                            &p->c, p->hash, err);
    }
    if (txn) {
        ol__verify_cache_pin(b->ld->vc, 0);
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    }
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
    b->ld->busy = NULL;
    if (n->resume.closing) {
        ol__rbatch_free(b);
        ol__rload_release(n);
        return;
    }
    ol__resume_kick(n);
}

int ol__rload_submit(struct ol__node *n, char **names, size_t count)
{
    struct ol__rloader *ld = free_loader(n);
    struct ol__rbatch *b;

    if (ld == NULL)
        return -1;
    b = calloc(1, sizeof *b);
    if (b == NULL || (b->v = calloc(count, sizeof *b->v)) == NULL) {
        free(b);
        return -1;
    }
    b->node = n;
    b->ld = ld;
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
    ld->busy = b;
    if (n->resume.last)
        n->resume.last->after = b;
    else
        n->resume.first = b;
    n->resume.last = b;
    return 0;
}

void ol__rload_close(struct ol__node *n)
{
    struct ol__rbatch *b = n->resume.first, *after;

    n->resume.closing = 1;
    n->resume.first = n->resume.last = NULL;
    /* A batch still on the pool is dropped when it comes back
     * (load_done). */
    for (; b; b = after) {
        after = b->after;
        if (b->done)
            ol__rbatch_free(b);
        else
            (void)uv_cancel((uv_req_t *)&b->req);
    }
    ol__rload_release(n);
}
