/*
 * Inside the resume queue (resume.c, resume_load.c): batches of agents
 * whose heads are loaded and verified on libuv's thread pool before the
 * loop hosts them.
 */
#ifndef OL_RESUME_INT_H
#define OL_RESUME_INT_H

#include <stddef.h>
#include <uv.h>

#include "state/store.h"
#include "agent.h"
#include "resume.h"

/* Batches loaded at once, each by a loader of its own. */
#define OL_RESUME_LOADERS 2

/* One agent of a batch: its name (owned) and its head as loaded. */
struct ol__rhead {
    char *name;
    struct ol__head_pre pre; /* rv OL_ECANCELED: not loaded, or taken */
};

/* A read-only connection and its verify cache, used by one batch at a
 * time on the pool (and never by the loop). */
struct ol__rloader {
    struct ol__store db;
    struct ol__verify_cache *vc;
    int open;
    struct ol__rbatch *busy; /* the batch it is loading, or NULL */
};

struct ol__rbatch {
    uv_work_t req;
    struct ol__node *node;
    struct ol__rloader *ld;
    struct ol__rbatch *after; /* the next batch queued */
    struct ol__rhead *v;
    size_t n, next; /* next: the first not hosted yet */
    int done;       /* back from the pool */
};

/* Send names[0..count) to a free loader as one batch, queued after the
 * others (the batch owns the names from then on).  0, or -1 when no batch
 * can go (every loader is busy, there is no connection for one, or no
 * memory): the names stay the caller's. */
int ol__rload_submit(struct ol__node *n, char **names, size_t count);
/* Free a batch, its names and the heads nobody took. */
void ol__rbatch_free(struct ol__rbatch *b);
/* Close the loaders' connections (those not loading). */
void ol__rload_release(struct ol__node *n);
/* Shutdown: drop the batches (one still on the pool is freed when it
 * comes back). */
void ol__rload_close(struct ol__node *n);

#endif
