/*
 * Hand-offs: an agent moved between two live nodes.  The old owner lets
 * it go and says so; the new one holds its first step until then, or
 * until the hand-off wait ends, so that the two never step it at once.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "agent.h"
#include "logs.h"
#include "node.h"
#include "step.h"
#include "agent_int.h"

static void handoff_end(struct ol_agent *a, const char *why)
{
    if (a->handoff_until == 0)
        return;
    uv_timer_stop(&a->handoff);
    a->handoff_until = 0;
    a->row.handoff_ms = 0; /* a host restart does not wait again */
    ol__agent_note(a, OL_LOG_INFO, 0, "handed over: %s", why);
    ol__runq_add(a);
}

static void handoff_cb(uv_timer_t *t)
{
    handoff_end(t->data, "the previous owner's lease has run out");
}

void ol__agent_handed_over(struct ol__node *n, uint64_t from,
                           const char *name, uint64_t epoch)
{
    struct ol_agent *a = ol__agent_get(n, name);
    unsigned i;

    if (a && a->epoch == epoch) {
        if (a->row.handoff_from == from)
            handoff_end(a, "the previous owner let it go");
        return;
    }
    if (a && a->epoch > epoch)
        return;
    /* The old owner applied the move first (it may be the leader): keep
     * its word for when this node applies it. */
    i = n->let_go_next++ % OL_LET_GO_MAX;
    n->let_go[i].from = from;
    n->let_go[i].epoch = epoch;
    snprintf(n->let_go[i].name, sizeof n->let_go[i].name, "%s", name);
}

/* Did node `from` say it let `name` go for `epoch` already? */
static int let_go_before(struct ol__node *n, uint64_t from, const char *name,
                         uint64_t epoch)
{
    for (unsigned i = 0; i < OL_LET_GO_MAX; i++)
        if (n->let_go[i].from == from && n->let_go[i].epoch == epoch &&
            strcmp(n->let_go[i].name, name) == 0) {
            n->let_go[i].from = 0;
            return 1;
        }
    return 0;
}

void ol__agent_hand_over(struct ol__node *n, const struct ol__sm_agent *row)
{
    struct ol_agent *a = ol__agent_get(n, row->name);
    int busy = a && a->busy;

    if (a && a->phase != OL_PHASE_CLOSING)
        ol__agent_release(a, "handed over to another node");
    /* A step still running at the agent's host ends on its own time: the
     * new owner then waits out this node's lease instead. */
    if (!busy)
        ol__logs_send_handed_over(n, row->owner, row->name, row->epoch);
}

/* Handed over from a node that may still run it (a rebalance, a node
 * being removed): the instance is made and restored now, but takes no
 * step until that node has certainly stopped (cmd.h, MOVE). */
void ol__agent_handoff_begin(struct ol_agent *a, uint32_t ms)
{
    if (let_go_before(a->node, a->row.handoff_from, a->name, a->epoch)) {
        a->row.handoff_ms = 0;
        ol__agent_note(a, OL_LOG_INFO, 0, "handed over: the previous owner "
                                          "let it go");
        return;
    }
    a->handoff_until = ol__mono_ms() + ms;
    uv_timer_start(&a->handoff, handoff_cb, ms, 0);
    ol__agent_note(a, OL_LOG_INFO, 0,
                   "handing over from node %" PRIu64 ": no step for up to "
                   "%" PRIu32 " ms, until it has certainly stopped",
                   a->row.handoff_from, ms);
}
