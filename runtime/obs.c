/*
 * The loop thread's half of an observation: copy what the node, its agents
 * and its replica hold in memory.  It runs in microseconds for a few
 * thousand hosted agents (one pass over them) and touches no file.
 */
#include "obs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "hostproc.h"
#include "http.h"
#include "base/log.h"
#include "node.h"
#include "agent.h"
#include "ol_config.h"

_Static_assert(OL_CRASH_KINDS == 4, "obs: crashes[] has one per kind");

const char *ol__agent_phase_name(const struct ol_agent *a)
{
    if (a->degraded)
        return "degraded";
    switch (a->phase) {
    case OL_PHASE_ACTIVE:
        if (a->handoff_until)
            return "handing over";
        return a->inflight ? "committing" : "active";
    case OL_PHASE_DRAINING:
        return "draining";
    case OL_PHASE_CLOSING:
        return "closing";
    case OL_PHASE_FAULT:
        return "fault";
    case OL_PHASE_CRASHED:
        return "crashed";
    }
    return "?";
}

/* The node's identity and counters. */
static void collect_node(struct ol__node *n, struct ol__obs *o)
{
    o->node_id = n->self_id;
    snprintf(o->node_name, sizeof o->node_name, "%s", n->cfg.node_name);
    snprintf(o->version, sizeof o->version, "%s", OL_VERSION);
    snprintf(o->data_dir, sizeof o->data_dir, "%s", n->cfg.data_dir);
    if (n->http) {
        ol__http_address(n->http, o->http_addr, sizeof o->http_addr);
        ol__http_counters(n->http, &o->http_requests, &o->http_jobs,
                          &o->http_loop_us);
    }
    o->cluster = n->cluster;
    o->paused = n->paused;
    o->stopping = n->stopping;
    o->started_ms = n->started_ms;
    o->now_ms = ol__wall_ms();
    o->steps = n->n.steps;
    o->checkpoints = n->n.checkpoints;
    o->refused = n->n.refused;
    o->steps_refused = n->n.steps_refused;
    o->fx_attempts = n->n.fx_attempts;
    o->fx_done = n->n.fx_done;
    o->fx_dropped = n->n.fx_dropped;
    o->quarantined = n->n.quarantined;
    for (int k = 0; k < OL_CRASH_KINDS; k++)
        o->crashes[k] = n->n.crash_kind[k];
    o->quarantined_crash = n->n.quarantined_crash;
    for (const struct ol__hostproc *hp = n->hps; hp; hp = hp->next)
        o->hosts += hp->state != OL_HP_DEAD;
    o->host_starts = n->n.host_starts;
    o->host_restarts = n->n.host_deaths;
    o->commit = n->commit_hist;
    o->p50_us = ol__hist_quantile(&n->commit_lat, 0.50);
    o->p99_us = ol__hist_quantile(&n->commit_lat, 0.99);
}

/* The replica's counters and its status map as msgpack. */
static int collect_replica(struct ol__node *n, struct ol__obs *o)
{
    struct ol__buf sb;
    msgpack_packer pk;

    o->leader = n->replica->vt->is_leader(n->replica);
    n->replica->vt->counters(n->replica, &o->rc);
    if (n->cluster)
        ol__cluster_metrics(n->replica, &o->cm);
    ol__buf_init(&sb);
    msgpack_packer_init(&pk, &sb, ol__buf_write);
    n->replica->vt->status(n->replica, &pk);
    o->status_mp = ol__buf_steal(&sb, &o->status_len);
    return o->status_mp == NULL ? OL_ENOMEM : 0;
}

/* Aggregates over the hosted agents. */
static void collect_agents(struct ol__node *n, struct ol__obs *o)
{
    void *v;

    for (size_t i = 0; ol__map_next(&n->agents, &i, &v);) {
        const struct ol_agent *a = v;

        o->hosted++;
        if (a->degraded)
            o->degraded++;
        else if (a->phase == OL_PHASE_FAULT)
            o->faulted++;
        else if (a->phase == OL_PHASE_ACTIVE)
            o->active++;
        o->inflight += a->inflight != 0;
        o->queued_sum += a->q_len;
        if (a->q_len > o->queued_max)
            o->queued_max = a->q_len;
        o->held_sum += a->n_outbox;
    }
}

/* live[i] for each row whose agent is hosted here. */
static int collect_live(struct ol__node *n, struct ol__obs *o,
                        const struct ol__obs_row *rows, uint32_t n_rows)
{
    if (n_rows)
        o->live = calloc(n_rows, sizeof *o->live);
    if (n_rows && o->live == NULL)
        return OL_ENOMEM;
    o->n_live = n_rows;
    for (uint32_t i = 0; i < n_rows; i++) {
        const struct ol_agent *a = ol__agent_get(n, rows[i].name);
        struct ol__obs_agent *l = &o->live[i];

        if (a == NULL)
            continue;
        l->hosted = 1;
        snprintf(l->phase, sizeof l->phase, "%s", ol__agent_phase_name(a));
        l->epoch = a->epoch;
        l->queued = a->q_len;
        l->held = a->n_outbox;
        l->steps = a->steps;
        l->committed_seq = a->committed_seq;
        l->commit_us = a->commit_us;
        l->last_ckpt_ms = a->last_ckpt_ms;
        snprintf(l->reason, sizeof l->reason, "%s", a->reason);
    }
    return 0;
}

int ol__obs_collect(struct ol__node *n, struct ol__obs *o,
                    const struct ol__obs_row *rows, uint32_t n_rows)
{
    int rv = 0;

    memset(o, 0, sizeof *o);
    collect_node(n, o);
    if (n->replica)
        rv = collect_replica(n, o);
    collect_agents(n, o);
    if (collect_live(n, o, rows, n_rows) != 0)
        return OL_ENOMEM;
    o->n_events = ol__events_copy(&n->events, o->events);
    return rv;
}

void ol__obs_free(struct ol__obs *o)
{
    free(o->live);
    free(o->status_mp);
    o->live = NULL;
    o->status_mp = NULL;
}
