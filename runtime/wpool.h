/*
 * A bounded pool of worker threads for plugin work (ol_host.work).  It is
 * separate from libuv's thread pool on purpose: that pool runs the commit
 * path (group commits, WAL checkpoints, raft's disk work), and plugin work
 * that sleeps or spins must never hold a commit up.
 *
 * Items run in submission order on the first free thread.  When one has
 * run, the pool calls `notify` from the worker thread; the owner then takes
 * the finished items with ol__wpool_take() on its own thread.  Each worker
 * marks its slot in a step-mark page (mark.h) while it runs plugin code, so
 * a crash or an overrun in a work function is pinned on its agent.
 */
#ifndef OL_WPOOL_H
#define OL_WPOOL_H

#include <stdint.h>

#include "mark.h"

#define OL_WPOOL_MAX 64

struct ol__witem {
    struct ol__witem *next;
    void (*fn)(void *arg);
    void *arg;
    void *owner; /* the owner's, untouched by the pool */
    uint64_t id; /* the work id */
    /* For the step mark: who this work belongs to. */
    uint32_t slot, gen;
    uint64_t epoch;
    char name[OL_NAME_MAX + 1];
};

struct ol__wpool;

/* Start `threads` workers (1..OL_WPOOL_MAX).  `mark` may be NULL.  Returns
 * 0 or OL_ENOMEM / OL_EIO. */
int ol__wpool_create(unsigned threads, struct ol__mark *mark,
                     void (*notify)(void *data), void *data,
                     struct ol__wpool **out);

/* Queue an item (ownership passes to the pool until it is taken back). */
void ol__wpool_submit(struct ol__wpool *p, struct ol__witem *it);

/* Take every finished item, oldest first (NULL if none). */
struct ol__witem *ol__wpool_take(struct ol__wpool *p);

/* Items queued or running. */
unsigned ol__wpool_busy(struct ol__wpool *p);

/* Stop the workers and free the pool.  Items still queued are dropped
 * (not run); a worker still inside a work function is left running
 * (detached) and the pool's memory with it, since the function may never
 * return.  NULL is a no-op. */
void ol__wpool_destroy(struct ol__wpool *p);

#endif
