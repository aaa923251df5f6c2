/*
 * What a host process tells of an agent (OPEN's outcome, a finished work
 * item), and closing every instance at shutdown: the parts of agent
 * instances (agent.c) that answer rather than start them.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "node.h"
#include "agent_int.h"

/* ---- results from a host ---- */

void ol__agent_opened(struct ol_agent *a, int rv, const char *where,
                      const char *msg)
{
    const char *sep = msg && msg[0] ? ": " : "";

    if (rv == 0 || a->phase != OL_PHASE_ACTIVE)
        return;
    if (msg == NULL)
        msg = "";
    if (strcmp(where, "restore") == 0)
        ol__agent_fail(a, "restore() refused checkpoint seq %" PRIu64
                          " (returned %d)%s%s",
                       a->committed_seq, rv, sep, msg);
    else
        ol__agent_fail(a, "open() refused its config (returned %d)%s%s",
                       rv, sep, msg);
}

void ol__agent_work_done(struct ol_agent *a, uint64_t id, uint64_t token)
{
    struct ol__ev *ev;

    if (a->work_pending)
        a->work_pending--;
    if (a->phase != OL_PHASE_ACTIVE && a->phase != OL_PHASE_DRAINING)
        return;
    ev = calloc(1, sizeof *ev);
    if (ev == NULL)
        return;
    ev->type = OL_EVENT_WORK;
    ev->work_id = id;
    ev->work_token = token;
    ol__agent_push(a, ev);
}

void ol__agents_close_all(struct ol__node *n)
{
    void *v;

    for (size_t i = 0; ol__map_next(&n->agents, &i, &v);) {
        struct ol_agent *a = v;

        a->degraded = 0;
        a->phase = OL_PHASE_CLOSING;
        ol__agent_drop_queue(a);
        uv_timer_stop(&a->timer);
        uv_timer_stop(&a->flush);
        a->inflight = 0;
        a->work_pending = 0;
        ol__agent_finish(a);
    }
    ol__map_close(&n->agents);
    ol__map_init(&n->agents);
}
