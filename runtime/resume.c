/*
 * Hosting newly owned agents in slices of loop time (resume.h), their
 * heads loaded in batches on the thread pool (resume_load.c).
 */
#include "resume.h"

#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "base/log.h"
#include "node.h"
#include "resume_int.h"

/* The time spent hosting in the current loop iteration, in us; the
 * iteration is told by the loop's cached time. */
static uint64_t *spent(struct ol__node *n)
{
    uint64_t now = uv_now(n->loop);

    if (n->resume.iter_ms != now) {
        n->resume.iter_ms = now;
        n->resume.spent_us = 0;
    }
    return &n->resume.spent_us;
}

static void host_timed(struct ol__node *n, const struct ol__sm_agent *row,
                       struct ol__head_pre *pre)
{
    uint64_t t0 = uv_hrtime();

    if (pre)
        ol__agent_host_pre(n, row, pre);
    else
        ol__agent_host(n, row);
    *spent(n) += (uv_hrtime() - t0) / 1000;
}

/* Host the queued agent `name` if it is still this node's, under its row
 * as it is now. */
static void host_name(struct ol__node *n, const char *name,
                      struct ol__head_pre *pre)
{
    const struct ol__sm_agent *row;

    ol__map_del(&n->resume.queued, name);
    row = n->sm ? ol__sm_agent(n->sm, name) : NULL;
    if (row && !n->stopping && ol__node_owns(n, row))
        host_timed(n, row, pre);
}

/* The names waiting go to the loaders, a batch each, while one is free. */
static void advance(struct ol__node *n)
{
    while (!n->stopping) {
        size_t waiting = n->resume.n - n->resume.head;
        size_t k = waiting < OL_RESUME_BATCH ? waiting : OL_RESUME_BATCH;

        if (waiting < OL_RESUME_BATCH_MIN ||
            ol__rload_submit(n, n->resume.names + n->resume.head, k) != 0)
            return;
        n->resume.head += k;
    }
}

/* The oldest batch, when it is back from the pool. */
static struct ol__rbatch *ready(const struct ol__node *n)
{
    struct ol__rbatch *b = n->resume.first;

    return b && b->done ? b : NULL;
}

/* Host the ready batch's agents until the slice is used up. */
static void host_ready(struct ol__node *n, struct ol__rbatch *b)
{
    while (b->next < b->n && *spent(n) < OL_RESUME_SLICE_US) {
        struct ol__rhead *h = &b->v[b->next++];

        host_name(n, h->name, &h->pre);
        free(h->name);
        h->name = NULL;
    }
    if (b->next == b->n) {
        n->resume.first = b->after;
        if (n->resume.first == NULL)
            n->resume.last = NULL;
        ol__rbatch_free(b);
    }
}

/* Host queued agents until this iteration's slice is used up: from the
 * oldest batch loaded off the loop, or, with none out, the few left one
 * by one as before. */
static void resume_cb(uv_idle_t *h)
{
    struct ol__node *n = h->data;
    struct ol__rbatch *b;

    /* On one node the group commit applies batches to the state machine
     * on the thread pool: hosting reads its rows, so it waits for the
     * batch's effects, which kick it again (node.c).  No batch starts
     * while this callback runs (they start from the replica's own idle
     * handle, its timer or the end of a batch). */
    if (ol__node_sm_busy(n)) {
        uv_idle_stop(&n->resume.idle);
        return;
    }
    advance(n);
    while (*spent(n) < OL_RESUME_SLICE_US) {
        if ((b = ready(n)) != NULL) {
            host_ready(n, b);
            advance(n);
        } else if (n->resume.first == NULL &&
                   n->resume.head < n->resume.n) {
            char *name = n->resume.names[n->resume.head++];

            host_name(n, name, NULL);
            free(name);
        } else {
            break;
        }
    }
    if (n->resume.head == n->resume.n)
        n->resume.head = n->resume.n = 0;
    /* Nothing to do here until a batch comes back (ol__resume_kick). */
    if (ready(n) == NULL &&
        (n->resume.first || n->resume.head == n->resume.n))
        uv_idle_stop(&n->resume.idle);
    if (ol__resume_pending(n) == 0)
        ol__rload_release(n);
}

void ol__resume_kick(struct ol__node *n)
{
    /* Effects still come while the node closes (its replica applies what
     * committed), after the idle handle was closed: starting a closed
     * handle counts it active for ever, and the loop never ends. */
    if (n->resume.closing)
        return;
    uv_idle_start(&n->resume.idle, resume_cb);
}

void ol__resume_init(struct ol__node *n)
{
    ol__map_init(&n->resume.queued);
    uv_idle_init(n->loop, &n->resume.idle);
    n->resume.idle.data = n;
}

static int enqueue(struct ol__node *n, const char *name)
{
    char *copy;

    if (n->resume.closing || ol__map_get(&n->resume.queued, name) != NULL)
        return 0;
    if (n->resume.n == n->resume.cap) {
        size_t cap = n->resume.cap ? n->resume.cap * 2 : 256;
        char **nn = realloc(n->resume.names, cap * sizeof *nn);

        if (nn == NULL)
            return -1;
        n->resume.names = nn;
        n->resume.cap = cap;
    }
    if ((copy = strdup(name)) == NULL ||
        ol__map_put(&n->resume.queued, copy, copy) != 0) {
        free(copy);
        return -1;
    }
    n->resume.names[n->resume.n++] = copy;
    uv_idle_start(&n->resume.idle, resume_cb);
    return 0;
}

void ol__resume_queue(struct ol__node *n, const struct ol__sm_agent *row)
{
    if (n->sm == NULL || enqueue(n, row->name) != 0) {
        if (n->sm)
            ol_log(OL_LOG_WARN, "agent '%s': out of memory queueing its "
                                "start; starting it now", row->name);
        host_timed(n, row, NULL);
    }
}

void ol__resume_host(struct ol__node *n, const struct ol__sm_agent *row)
{
    /* Small batches start at once, as they always did; only what is
     * left over when a slice is used up waits for the next one. */
    if (n->sm == NULL ||
        (ol__resume_pending(n) == 0 && *spent(n) < OL_RESUME_SLICE_US)) {
        host_timed(n, row, NULL);
        return;
    }
    ol__resume_queue(n, row);
}

size_t ol__resume_pending(const struct ol__node *n)
{
    size_t k = n->resume.n - n->resume.head;

    for (const struct ol__rbatch *b = n->resume.first; b; b = b->after)
        k += b->n - b->next;
    return k;
}

void ol__resume_close(struct ol__node *n)
{
    for (size_t i = n->resume.head; i < n->resume.n; i++)
        free(n->resume.names[i]);
    free(n->resume.names);
    n->resume.names = NULL;
    n->resume.head = n->resume.n = n->resume.cap = 0;
    ol__rload_close(n);
    ol__map_close(&n->resume.queued);
    uv_close((uv_handle_t *)&n->resume.idle, NULL);
}
