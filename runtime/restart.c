/*
 * Starting an agent's instance again.  When a host process dies, the agent
 * whose code was running is reported with a CRASH command (the count is
 * part of the replicated state, so a restart or a failover does not reset
 * it) and is restarted, after a pause that doubles with each crash, once
 * the crash is on record; enough crashes in the window quarantine it.  The
 * host's other agents start again at once from their committed heads, as
 * does an agent whose code is being upgraded, at a checkpoint boundary.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alog.h"
#include "base/err.h"
#include "base/log.h"
#include "base/pack.h"
#include "node.h"
#include "agent.h"
#include "logs.h"
#include "restart.h"
#include "step.h"

/* A CRASH whose outcome has not arrived is proposed again after this. */
#define CRASH_RETRY_MS 2000

static void rehost_retry_cb(uv_timer_t *t)
{
    ol__agent_rehost(t->data);
}

void ol__agent_rehost(struct ol_agent *a)
{
    struct ol__node *n = a->node;
    struct ol__sm_agent row;
    struct ol__alog *log;

    if (a->inflight) {
        a->rehost = 1;
        return;
    }
    if (n->cluster && n->sm) {
        /* In a cluster the leader says a checkpoint committed before this
         * node's own store may have applied it; the new instance loads
         * its head from that store, so it waits until it is there. */
        const struct ol__sm_agent *r = ol__sm_agent(n->sm, a->name);

        if (r && r->head_seq < a->committed_seq && !n->stopping) {
            a->rehost = 1;
            ol__runq_remove(a);
            uv_timer_start(&a->flush, rehost_retry_cb, 10, 0);
            return;
        }
    }
    /* The row (with its config) moves to the new instance. */
    a->row.head_seq = a->committed_seq;
    row = a->row;
    a->row.config = NULL;
    a->rehost = 0;
    /* The new instance keeps the agent's log lines. */
    log = a->log;
    a->log = NULL;
    if (ol__map_get(&n->agents, a->name) == a)
        ol__map_del(&n->agents, a->name);
    a->phase = OL_PHASE_CLOSING;
    ol__agent_drop_queue(a);
    uv_timer_stop(&a->timer);
    uv_timer_stop(&a->flush);
    ol__agent_finish(a);
    if (!n->stopping && row.config)
        ol__agent_host_again(n, &row, log);
    else
        ol__alog_destroy(log);
    free(row.config);
}

static void restart_cb(uv_timer_t *t)
{
    struct ol_agent *a = t->data;

    if (a->phase == OL_PHASE_CRASHED)
        ol__agent_rehost(a);
}

void ol__agent_retry_later(struct ol_agent *a, uint64_t ms, const char *why)
{
    a->phase = OL_PHASE_CRASHED;
    a->crash_req = 0;
    snprintf(a->reason, sizeof a->reason, "%s", why);
    uv_timer_start(&a->flush, restart_cb, ms, 0);
}

static void propose_crash(struct ol_agent *a);

static void crash_retry_cb(uv_timer_t *t)
{
    struct ol_agent *a = t->data;

    if (a->phase == OL_PHASE_CRASHED && a->crash_req)
        propose_crash(a);
}

static void propose_crash(struct ol_agent *a)
{
    struct ol__node *n = a->node;
    struct ol__entry_w w;
    int rv;

    ol__entry_w_init(&w);
    rv = ol__entry_add_crash(&w, a->crash_req, a->name, a->epoch,
                             ol__wall_ms(), n->cfg.crash_limit,
                             n->cfg.crash_window_ms, a->reason);
    if (rv == 0)
        rv = ol__node_propose(n, &w);
    ol__entry_w_close(&w);
    /* Retried with the same req until its outcome arrives: the state
     * machine counts a req once. */
    uv_timer_start(&a->flush, crash_retry_cb, CRASH_RETRY_MS, 0);
}

const char *ol__crash_kind_name(int kind)
{
    static const char *const names[OL_CRASH_KINDS] = {"signal", "exit",
                                                      "deadline", "node"};

    return kind >= 0 && kind < OL_CRASH_KINDS ? names[kind] : "?";
}

static void count_crash(struct ol__node *n, int kind)
{
    n->n.crashes++;
    if (kind >= 0 && kind < OL_CRASH_KINDS)
        n->n.crash_kind[kind]++;
}

static void crashed(struct ol_agent *a, int kind, const char *why)
{
    struct ol__node *n = a->node;

    count_crash(n, kind);
    a->phase = OL_PHASE_CRASHED;
    snprintf(a->reason, sizeof a->reason, "%s", why);
    ol__agent_note(a, OL_LOG_ERROR, 0, "crashed: %s", why);
    a->crash_req = ol__random_id();
    if (n->stopping)
        return;
    propose_crash(a);
}

void ol__agent_host_lost(struct ol_agent *a, int how, int kind,
                         const char *why)
{
    a->hp = NULL;
    a->busy = 0;
    a->ready = 0;
    a->work_pending = 0;
    ol__agent_free_ev(a->busy_ev);
    a->busy_ev = NULL;
    ol__runq_remove(a);
    ol__agent_drop_queue(a);
    uv_timer_stop(&a->timer);
    if (a->phase == OL_PHASE_CLOSING || a->phase == OL_PHASE_FAULT) {
        ol__agent_settle(a);
        return;
    }
    if (how == OL_LOST_LOAD) {
        ol__agent_fail(a, "%s", why);
        return;
    }
    if (a->phase == OL_PHASE_DRAINING || a->node->stopping) {
        /* Shutting down: its STOP cannot run now; it resumes after the
         * restart from its last committed checkpoint. */
        if (how == OL_LOST_CRASH) {
            count_crash(a->node, kind);
            ol__agent_note(a, OL_LOG_ERROR, 0,
                           "crashed while the node was stopping: %s", why);
        }
        ol__agent_release(a, NULL);
        return;
    }
    if (how == OL_LOST_CRASH) {
        uv_timer_stop(&a->flush);
        crashed(a, kind, why);
        return;
    }
    uv_timer_stop(&a->flush);
    if (a->code && ol__code_restart_wait(a->code)) {
        char r[OL_ERRMSG_SIZE];

        /* Its host keeps dying young: start it again after a pause. */
        snprintf(r, sizeof r, "its host died: %s", why);
        ol__agent_retry_later(a, ol__code_restart_wait(a->code), r);
        return;
    }
    ol__agent_rehost(a);
}

void ol__agent_crash_recorded(struct ol__node *n, const char *name,
                              uint64_t req, int status,
                              const struct ol__sm_agent *row)
{
    struct ol_agent *a = ol__agent_get(n, name);
    uint32_t crashes;
    uint64_t delay;
    int ours = 0;

    if (n->mark) {
        for (int i = 0; i < OL_MARK_REPORTS; i++) {
            struct ol__mark_report *r = &n->mark->reports[i];

            if (r->used && r->req == req) {
                r->used = 0;
                ours = 1;
            }
        }
    }
    /* The instance may be released already (the row's change comes
     * first), but it still names the req it reported. */
    if (a && a->crash_req == req)
        ours = 1;
    /* This node's report was the one that reached the limit. */
    if (ours && status == 0 && row && strcmp(row->name, name) == 0 &&
        row->status == OL_AGENT_QUARANTINED) {
        n->n.quarantined_crash++;
        /* The state machine logged it; the agent's ring gets it too. */
        if (a)
            ol__agent_note(a, OL_LOG_ERROR, 1, "quarantined: %s",
                           row->reason);
    }
    if (a == NULL || a->phase != OL_PHASE_CRASHED || a->crash_req != req)
        return;
    a->crash_req = 0;
    uv_timer_stop(&a->flush);
    if (status != 0) {
        ol__agent_release(a, "its crash was not recorded");
        return;
    }
    if (a->row.status != OL_AGENT_RUNNING &&
        a->row.status != OL_AGENT_STOPPING)
        return; /* quarantined: the row's change releases it */
    /* A pause that doubles with each crash in the window. */
    crashes = a->row.crashes ? a->row.crashes : 1;
    delay = 200ull << (crashes > 6 ? 6 : crashes - 1);
    ol__agent_note(a, OL_LOG_WARN, 0,
                   "crash %u on record; restarting in %" PRIu64 " ms",
                   crashes, delay);
    uv_timer_start(&a->flush, restart_cb, delay, 0);
}
