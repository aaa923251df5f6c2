/*
 * The plugin work pool (see wpool.h): a mutex, a condition variable, a
 * queue of items to run and a list of items that have run.
 */
#include "wpool.h"

#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/err.h"

struct worker {
    struct ol__wpool *pool;
    pthread_t tid;
    unsigned index;
};

struct ol__wpool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_cond_t idle; /* signalled when a running item finishes */
    struct ol__witem *q_head, *q_tail;     /* to run */
    struct ol__witem *d_head, *d_tail;     /* have run */
    unsigned queued, running;
    int stopping;
    unsigned n_workers;
    unsigned refs; /* the owner plus each live worker */
    struct ol__mark *mark;
    void (*notify)(void *data);
    void *data;
    struct worker workers[];
};

static void free_list(struct ol__witem *it)
{
    struct ol__witem *next;

    for (; it; it = next) {
        next = it->next;
        free(it);
    }
}

static void unref(struct ol__wpool *p)
{
    unsigned left;

    pthread_mutex_lock(&p->mu);
    left = --p->refs;
    pthread_mutex_unlock(&p->mu);
    if (left == 0) {
        free_list(p->q_head);
        free_list(p->d_head);
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        pthread_cond_destroy(&p->idle);
        free(p);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct ol__wpool *p = w->pool;
    struct ol__mark_slot *slot =
        p->mark && w->index < OL_MARK_WORKERS ? &p->mark->worker[w->index]
                                              : NULL;

    (void)ol__mark_thread((int)w->index);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        struct ol__witem *it;

        while (!p->stopping && p->q_head == NULL)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stopping)
            break;
        it = p->q_head;
        p->q_head = it->next;
        if (p->q_head == NULL)
            p->q_tail = NULL;
        p->queued--;
        p->running++;
        pthread_mutex_unlock(&p->mu);

        if (slot) {
            snprintf(slot->name, sizeof slot->name, "%s", it->name);
            slot->epoch = it->epoch;
            ol__mark_begin(slot, OL_MARK_WORK, it->slot, it->gen, 0);
        }
        it->fn(it->arg);
        if (slot)
            ol__mark_end(slot);

        pthread_mutex_lock(&p->mu);
        p->running--;
        pthread_cond_signal(&p->idle);
        it->next = NULL;
        if (p->d_tail)
            p->d_tail->next = it;
        else
            p->d_head = it;
        p->d_tail = it;
        if (p->notify && !p->stopping) {
            /* Outside the lock: notify may write to a pipe. */
            pthread_mutex_unlock(&p->mu);
            p->notify(p->data);
            pthread_mutex_lock(&p->mu);
        }
    }
    pthread_mutex_unlock(&p->mu);
    ol__mark_thread_done();
    unref(p);
    return NULL;
}

int ol__wpool_create(unsigned threads, struct ol__mark *mark,
                     void (*notify)(void *data), void *data,
                     struct ol__wpool **out)
{
    struct ol__wpool *p;

    if (threads == 0)
        threads = 1;
    if (threads > OL_WPOOL_MAX)
        threads = OL_WPOOL_MAX;
    p = calloc(1, sizeof *p + threads * sizeof p->workers[0]);
    if (p == NULL)
        return OL_ENOMEM;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_cond_init(&p->idle, NULL);
    p->mark = mark;
    p->notify = notify;
    p->data = data;
    p->refs = 1;
    for (unsigned i = 0; i < threads; i++) {
        struct worker *w = &p->workers[i];
        int rc;

        w->pool = p;
        w->index = i;
        pthread_mutex_lock(&p->mu);
        p->refs++;
        pthread_mutex_unlock(&p->mu);
        rc = pthread_create(&w->tid, NULL, worker_main, w);
        if (rc != 0) {
            pthread_mutex_lock(&p->mu);
            p->refs--;
            pthread_mutex_unlock(&p->mu);
            ol__wpool_destroy(p);
            return OL_EIO;
        }
        p->n_workers++;
    }
    *out = p;
    return 0;
}

void ol__wpool_submit(struct ol__wpool *p, struct ol__witem *it)
{
    it->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->q_tail)
        p->q_tail->next = it;
    else
        p->q_head = it;
    p->q_tail = it;
    p->queued++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

struct ol__witem *ol__wpool_take(struct ol__wpool *p)
{
    struct ol__witem *it;

    pthread_mutex_lock(&p->mu);
    it = p->d_head;
    p->d_head = p->d_tail = NULL;
    pthread_mutex_unlock(&p->mu);
    return it;
}

unsigned ol__wpool_busy(struct ol__wpool *p)
{
    unsigned n;

    pthread_mutex_lock(&p->mu);
    n = p->queued + p->running;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void ol__wpool_destroy(struct ol__wpool *p)
{
    struct timespec until;
    int stuck;

    if (p == NULL)
        return;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 1;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    /* Queued items never run; finished ones were never taken.  Both
     * belong to the owner, who is going away with their agents. */
    free_list(p->q_head);
    free_list(p->d_head);
    p->q_head = p->q_tail = p->d_head = p->d_tail = NULL;
    p->queued = 0;
    pthread_cond_broadcast(&p->cv);
    while (p->running > 0 &&
           pthread_cond_timedwait(&p->idle, &p->mu, &until) == 0)
        ;
    stuck = p->running > 0;
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->n_workers; i++) {
        if (stuck)
            pthread_detach(p->workers[i].tid);
        else
            pthread_join(p->workers[i].tid, NULL);
    }
    unref(p);
}
