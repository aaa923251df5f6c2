/*
 * Hosting newly owned agents in slices of loop time (resume.h).
 */
#include "resume.h"

#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "base/log.h"
#include "node.h"

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

static void host_timed(struct ol__node *n, const struct ol__sm_agent *row)
{
    uint64_t t0 = uv_hrtime();

    ol__agent_host(n, row);
    *spent(n) += (uv_hrtime() - t0) / 1000;
}

/* On one node the group commit applies batches to the state machine on
 * the thread pool: its rows may be read here only while none is out.  A
 * batch that goes out meanwhile (an agent just hosted proposes) stops the
 * slice; the batch's effects kick it again (ol__resume_kick). */
static int sm_busy(struct ol__node *n)
{
    return n->replica && n->replica->vt->sm_busy &&
           n->replica->vt->sm_busy(n->replica);
}

/* Host queued agents until this iteration's slice is used up. */
static void resume_cb(uv_idle_t *h)
{
    struct ol__node *n = h->data;

    if (sm_busy(n)) {
        uv_idle_stop(&n->resume.idle);
        return;
    }
    while (n->resume.head < n->resume.n && !sm_busy(n) &&
           *spent(n) < OL_RESUME_SLICE_US) {
        char *name = n->resume.names[n->resume.head++];
        const struct ol__sm_agent *row;

        ol__map_del(&n->resume.queued, name);
        row = n->sm ? ol__sm_agent(n->sm, name) : NULL;
        if (row && !n->stopping && ol__node_owns(n, row))
            host_timed(n, row);
        free(name);
    }
    if (n->resume.head == n->resume.n) {
        n->resume.head = n->resume.n = 0;
        uv_idle_stop(&n->resume.idle);
    } else if (sm_busy(n)) {
        uv_idle_stop(&n->resume.idle);
    }
}

void ol__resume_kick(struct ol__node *n)
{
    if (ol__resume_pending(n) > 0)
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

    if (ol__map_get(&n->resume.queued, name) != NULL)
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

void ol__resume_host(struct ol__node *n, const struct ol__sm_agent *row)
{
    /* Small batches start at once, as they always did; only what is
     * left over when a slice is used up waits for the next one. */
    if (n->sm == NULL ||
        (ol__resume_pending(n) == 0 && *spent(n) < OL_RESUME_SLICE_US)) {
        host_timed(n, row);
        return;
    }
    if (enqueue(n, row->name) != 0) {
        ol_log(OL_LOG_WARN, "agent '%s': out of memory queueing its "
                            "start; starting it now", row->name);
        host_timed(n, row);
    }
}

size_t ol__resume_pending(const struct ol__node *n)
{
    return n->resume.n - n->resume.head;
}

void ol__resume_close(struct ol__node *n)
{
    for (size_t i = n->resume.head; i < n->resume.n; i++)
        free(n->resume.names[i]);
    free(n->resume.names);
    n->resume.names = NULL;
    n->resume.head = n->resume.n = n->resume.cap = 0;
    ol__map_close(&n->resume.queued);
    uv_close((uv_handle_t *)&n->resume.idle, NULL);
}
