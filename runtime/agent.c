/*
 * Agent instances: the host side of each agent this node runs.  An
 * instance is created when the state machine says this node owns the agent
 * under some epoch; it resumes from the newest committed checkpoint after
 * that checkpoint verifies, restores the timers and undelivered messages
 * the checkpoint implies, and is released when ownership moves or the agent
 * stops.  A checkpoint that fails verification leaves the agent degraded:
 * never loaded, nothing deleted.
 *
 * The plugin instance lives in the agent's host process, or in the node
 * for code configured to run there; restart.c starts an instance again
 * when its host dies or its code changes.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/pack.h"
#include "state/verify.h"
#include "state/reads.h"
#include "agent.h"
#include "alog.h"
#include "host.h"
#include "hostproc.h"
#include "logs.h"
#include "node.h"
#include "restart.h"
#include "step.h"
#include "agent_int.h"
#include "fx.h"

struct ol_agent *ol__agent_get(struct ol__node *n, const char *name)
{
    return ol__map_get(&n->agents, name);
}

/* ---- creation ---- */

static void row_free(struct ol__sm_agent *row)
{
    free(row->config);
    row->config = NULL;
}

static void handle_closed(uv_handle_t *h);

static void close_handles(struct ol_agent *a)
{
    uv_close((uv_handle_t *)&a->timer, handle_closed);
    uv_close((uv_handle_t *)&a->flush, handle_closed);
    uv_close((uv_handle_t *)&a->handoff, handle_closed);
    uv_close((uv_handle_t *)&a->fxt, handle_closed);
}

static void handle_closed(uv_handle_t *h)
{
    struct ol_agent *a = h->data;

    if (--a->handles_open > 0)
        return;
    ol__agent_drop_queue(a);
    ol__agent_free_ev(a->busy_ev);
    for (uint32_t i = 0; i < a->n_outbox; i++) {
        free(a->outbox[i].to);
        free(a->outbox[i].data);
    }
    free(a->outbox);
    for (uint32_t i = 0; i < a->n_acks; i++)
        free(a->acks[i].from);
    free(a->acks);
    free(a->timers);
    ol__fx_free(a);
    row_free(&a->row);
    ol__code_unref(a->code);
    ol__alog_destroy(a->log);
    free(a);
}

static struct ol_agent *instance_new(struct ol__node *n,
                                     const struct ol__sm_agent *row)
{
    struct ol_agent *a = calloc(1, sizeof *a);

    if (a == NULL)
        return NULL;
    a->node = n;
    snprintf(a->name, sizeof a->name, "%s", row->name);
    a->epoch = row->epoch;
    a->row = *row;
    a->row.config = malloc(row->config_len ? row->config_len : 1);
    if (a->row.config == NULL) {
        free(a);
        return NULL;
    }
    memcpy(a->row.config, row->config, row->config_len);
    a->phase = OL_PHASE_ACTIVE;
    a->committed_seq = row->head_seq;
    uv_timer_init(n->loop, &a->timer);
    a->timer.data = a;
    uv_timer_init(n->loop, &a->flush);
    a->flush.data = a;
    uv_timer_init(n->loop, &a->handoff);
    a->handoff.data = a;
    uv_timer_init(n->loop, &a->fxt);
    a->fxt.data = a;
    a->handles_open = 4;
    a->last_ckpt_ms = ol__wall_ms();
    a->last_ckpt_mono = ol__mono_ms();
    if (ol__map_put(&n->agents, a->name, a) != 0) {
        a->phase = OL_PHASE_FAULT;
        close_handles(a);
        return NULL;
    }
    return a;
}

/* "node-<id>" for the node whose key signed a checkpoint.  The last
 * answer is kept: a node resuming many agents finds most of them signed
 * by one node, and a key's id never changes. */
static void signer_name(struct ol__node *n, const uint8_t *pk, char *out,
                        size_t cap)
{
    static uint8_t last_pk[OL_PK_SIZE];
    static int64_t last_id;
    int64_t id;

    if (last_id > 0 && memcmp(pk, last_pk, OL_PK_SIZE) == 0) {
        snprintf(out, cap, "node-%lld", (long long)last_id);
        return;
    }
    if (ol__read_node_id(n->reader.db, pk, &id) == 0) {
        memcpy(last_pk, pk, OL_PK_SIZE);
        last_id = id;
        snprintf(out, cap, "node-%lld", (long long)id);
    } else {
        snprintf(out, cap, "unknown");
    }
}

/* Restore the plugin state and the timers from a verified checkpoint. */
static int restore(struct ol_agent *a, const struct ol__ckpt *c,
                   const uint8_t hash[OL_HASH_SIZE])
{
    struct ol__code *code = a->code;
    struct ol__ev *ev;
    uint64_t *ids;
    int rv;

    if (strcmp(c->plugin.kind, code->kind) != 0) {
        ol__agent_fail(a, "checkpoint seq %" PRIu64
                          " was written by plugin '%s', not '%s'",
                       c->seq, c->plugin.kind, code->kind);
        return OL_EPLUGIN;
    }
    if (memcmp(c->plugin.so_hash, code->hash, OL_HASH_SIZE) != 0) {
        ol__agent_note(a, OL_LOG_INFO, 0,
                       "plugin '%s' changed since seq %" PRIu64
                       " (%s -> %.16s)",
                       code->kind, c->seq, c->plugin.version,
                       code->hash_hex);
        /* The next checkpoint records the new code's hash. */
        a->ckpt_requested = 1;
    }
    a->timers = calloc(c->n_timers ? c->n_timers : 1, sizeof *a->timers);
    ids = calloc(c->n_timers ? c->n_timers : 1, sizeof *ids);
    if (a->timers == NULL || ids == NULL) {
        free(ids);
        return OL_ENOMEM;
    }
    for (uint32_t i = 0; i < c->n_timers; i++) {
        a->timers[i].id = c->timers[i].id;
        ol__armed_set(&a->timers[i], c->timers[i].due_ms);
        ids[i] = c->timers[i].id;
    }
    a->n_timers = c->n_timers;
    if (ol__fx_restore(a, c) != 0) {
        free(ids);
        return OL_ENOMEM;
    }
    if (a->hp) {
        ol__hp_open(a->hp, a, a->row.config, a->row.config_len, c->state,
                    c->state_len, ids, c->n_timers);
        a->ready = 1;
    } else {
        a->in_handle = 0;
        a->plugin_err[0] = '\0';
        ol__inproc_enter(a, OL_MARK_RESTORE, 0);
        rv = code->plugin.vt->restore(a->self, a, c->state, c->state_len);
        ol__inproc_leave(a);
        if (rv != 0) {
            free(ids);
            ol__agent_fail(a, "restore() refused checkpoint seq %" PRIu64
                              " (returned %d)%s%s",
                           c->seq, rv, a->plugin_err[0] ? ": " : "",
                           a->plugin_err);
            return OL_EPLUGIN;
        }
    }
    free(ids);
    a->seq = c->seq;
    a->head_epoch = c->epoch;
    a->committed_seq = c->seq;
    memcpy(a->head_hash, hash, OL_HASH_SIZE);
    ev = calloc(1, sizeof *ev);
    if (ev == NULL)
        return OL_ENOMEM;
    ev->type = OL_EVENT_RESUME;
    ev->seq = c->seq;
    ev->ckpt_time_ms = c->time_ms;
    signer_name(a->node, c->signer, ev->prev_node, sizeof ev->prev_node);
    ol__agent_push(a, ev);
    return 0;
}

/* Whether the plugin file of the agent's kind must be looked at again:
 * once per kind while the loop's clock reads the same millisecond (it is
 * read once per iteration), since a node hosting thousands of agents in
 * one slice would otherwise look the same file up for each. */
static int code_recheck(struct ol__node *n, const struct ol_agent *a)
{
    uint64_t now = uv_now(n->loop);

    if (n->code_seen.set && n->code_seen.ms == now &&
        strcmp(n->code_seen.kind, a->row.kind) == 0)
        return 0;
    n->code_seen.set = 1;
    n->code_seen.ms = now;
    snprintf(n->code_seen.kind, sizeof n->code_seen.kind, "%s", a->row.kind);
    return 1;
}

/* Give the instance its code: a host process slot, or open() in the
 * node.  0, or the agent has failed. */
static int bind_code(struct ol_agent *a)
{
    struct ol__node *n = a->node;
    struct ol__code *code;
    char err[OL_ERRMSG_SIZE];
    int rv;

    rv = ol__code_current(&n->codes, a->row.kind, code_recheck(n, a),
                          &code, err);
    if (rv == 0 && code->state == OL_CODE_FAILED) {
        snprintf(err, sizeof err, "%s", code->errmsg);
        rv = code->err ? code->err : OL_EPLUGIN;
    }
    if (rv != 0) {
        ol__agent_fail(a, "%s", err);
        return rv;
    }
    ol__code_ref(code);
    a->code = code;
    if (!ol__code_inproc(code)) {
        struct ol__hostproc *hp = ol__code_host(code);

        if (hp == NULL || ol__hostproc_attach(hp, a) != 0) {
            /* This node's trouble (fork failed, out of memory), not the
             * agent's: try again later rather than quarantine it. */
            ol_log_rl(OL_LOG_ERROR, "agent '%s': no host process for plugin "
                                    "'%s'; trying again in a second",
                      a->name, code->kind);
            ol__agent_retry_later(a, 1000, "no host process");
            return OL_ENOMEM;
        }
        return 0;
    }
    a->plugin_err[0] = '\0';
    ol__inproc_enter(a, OL_MARK_OPEN, 0);
    rv = code->plugin.vt->open(a, a->row.config, a->row.config_len,
                               &a->self);
    ol__inproc_leave(a);
    if (rv != 0) {
        a->self = NULL;
        ol__agent_opened(a, rv, "open", a->plugin_err);
        return OL_EPLUGIN;
    }
    a->ready = 1;
    return 0;
}

/* A marked crash (the node died in this agent's code) not yet on record:
 * the agent waits in CRASHED until it is. */
static uint64_t marked_crash(struct ol__node *n, const char *name)
{
    if (n->mark == NULL)
        return 0;
    for (int i = 0; i < OL_MARK_REPORTS; i++) {
        const struct ol__mark_report *r = &n->mark->reports[i];

        if (r->used && strcmp(r->name, name) == 0)
            return r->req;
    }
    return 0;
}

void ol__agent_host(struct ol__node *n, const struct ol__sm_agent *row)
{
    ol__agent_host_again(n, row, NULL);
}

/* Start the new instance `a` from its head checkpoint, or fresh when it
 * has none.  Returns 0, or -1 when it did not start (degraded, failed or
 * released; nothing more to do). */
static int start_from_head(struct ol_agent *a, const struct ol__sm_agent *row,
                           struct ol__head_pre *pre)
{
    struct ol__node *n = a->node;
    uint8_t hash[OL_HASH_SIZE];
    char err[OL_ERRMSG_SIZE];
    struct ol__ckpt c;
    int rv;

    if (pre && pre->rv == 0 && pre->c.seq == row->head_seq) {
        /* Verified off the loop, and still the row's head. */
        c = pre->c;
        memcpy(hash, pre->hash, OL_HASH_SIZE);
        memset(&pre->c, 0, sizeof pre->c);
        pre->rv = OL_ECANCELED; /* taken */
        rv = 0;
    } else if (pre && pre->rv == OL_ENOTFOUND && row->head_seq == 0) {
        rv = OL_ENOTFOUND;
    } else {
        rv = ol__verify_load_head_cached(n->reader.db, a->name, n->vcache,
                                         &c, hash, err);
    }
    if (rv == OL_ENOTFOUND) {
        if (a->hp) {
            ol__hp_open(a->hp, a, a->row.config, a->row.config_len, NULL, 0,
                        NULL, 0);
            a->ready = 1;
        }
        ol__agent_push_new(a, OL_EVENT_START);
        return 0;
    }
    if (rv != 0) {
        a->degraded = 1;
        snprintf(a->reason, sizeof a->reason, "%s", err);
        ol_log(OL_LOG_ERROR, "%s; agent '%s' is degraded and not loaded",
               err, a->name);
        if (rv == OL_EIO)
            ol__node_storage_fault(n, NULL, "%s", err);
        ol__agent_release(a, NULL);
        return -1;
    }
    if (c.seq != row->head_seq)
        ol_log(OL_LOG_WARN,
               "agent '%s': stored head is seq %" PRIu64
               ", state machine says %" PRIu64,
               a->name, c.seq, row->head_seq);
    rv = restore(a, &c, hash);
    ol__ckpt_free(&c);
    if (rv != 0) {
        if (a->phase == OL_PHASE_ACTIVE)
            ol__agent_fail(a, "resume failed: %s", ol_strerror(rv));
        return -1;
    }
    return 0;
}

/* The agent is hosted here already under this epoch: take the row's
 * news (maybe a stop). */
static void host_same(struct ol_agent *a, const struct ol__sm_agent *row)
{
    a->row.status = row->status;
    a->row.crashes = row->crashes;
    if (row->status == OL_AGENT_STOPPING && a->phase == OL_PHASE_ACTIVE)
        ol__agent_push_final_stop(a);
}

/* Messages may wait in the agent's mailbox: the state machine counts
 * them, so an agent it counts none for needs no query. */
static int mail_waiting(struct ol__node *n, const char *name)
{
    const struct ol__sm_agent *now;

    /* Rows being changed off the loop are not read: the query decides. */
    if (n->sm == NULL || ol__node_sm_busy(n))
        return 1;
    now = ol__sm_agent(n->sm, name);
    return now == NULL || now->mail_n > 0;
}

static void host_instance(struct ol__node *n, const struct ol__sm_agent *row,
                          struct ol__alog *log, struct ol__head_pre *pre);

void ol__agent_host_again(struct ol__node *n, const struct ol__sm_agent *row,
                          struct ol__alog *log)
{
    host_instance(n, row, log, NULL);
}

void ol__agent_host_pre(struct ol__node *n, const struct ol__sm_agent *row,
                        struct ol__head_pre *pre)
{
    host_instance(n, row, NULL, pre);
}

static void host_instance(struct ol__node *n, const struct ol__sm_agent *row,
                          struct ol__alog *log, struct ol__head_pre *pre)
{
    struct ol_agent *a = ol__agent_get(n, row->name);
    uint64_t req;

    if (a && a->epoch == row->epoch && a->phase != OL_PHASE_CLOSING) {
        ol__alog_destroy(log);
        host_same(a, row);
        return;
    }
    if (a) {
        /* The new instance keeps the agent's log lines. */
        if (log == NULL) {
            log = a->log;
            a->log = NULL;
        }
        if (ol__map_get(&n->agents, a->name) == a)
            ol__map_del(&n->agents, a->name);
        ol__agent_release(a, "a newer epoch replaces it");
    }
    a = instance_new(n, row);
    if (a == NULL) {
        ol__alog_destroy(log);
        ol_log(OL_LOG_ERROR, "agent '%s': out of memory", row->name);
        return;
    }
    a->log = log;
    if (row->handoff_ms)
        ol__agent_handoff_begin(a, row->handoff_ms);
    req = marked_crash(n, a->name);
    if (req) {
        a->phase = OL_PHASE_CRASHED;
        a->crash_req = req;
        snprintf(a->reason, sizeof a->reason,
                 "crashed the node; waiting for the crash to be recorded");
        return;
    }
    if (bind_code(a) != 0 || start_from_head(a, row, pre) != 0)
        return;
    if (mail_waiting(n, a->name) && ol__agent_load_mail(a) != 0) {
        ol__node_storage_fault(n, a->name,
                               "agent '%s': its mailbox cannot be read: %s",
                               a->name, sqlite3_errmsg(n->reader.db));
        return;
    }
    ol__agent_timers_rearm(a);
    /* Effects open in the head are in doubt: ask about them once the
     * agent may act. */
    ol__fx_kick(a);
    if (row->status == OL_AGENT_STOPPING)
        ol__agent_push_final_stop(a);
    ol__agent_note(a, OL_LOG_INFO, 0,
                   "(%s) %s on node %" PRIu64 " at seq %" PRIu64
                   " epoch %" PRIu64,
                   a->code->kind, a->seq ? "resumed" : "started",
                   n->self_id, a->seq, a->epoch);
}

/* ---- teardown ---- */

/* Let go of the plugin instance: close() in the node, CLOSE to the host
 * (which hands back outstanding work itself). */
static void drop_instance(struct ol_agent *a)
{
    if (a->hp) {
        ol__hostproc_detach(a->hp, a);
        a->work_pending = 0;
    } else if (a->self && a->code && a->code->plugin.vt->close) {
        ol__inproc_enter(a, OL_MARK_CLOSE, 0);
        a->code->plugin.vt->close(a->self);
        ol__inproc_leave(a);
    }
    a->self = NULL;
    a->ready = 0;
    a->busy = 0;
}

void ol__agent_finish(struct ol_agent *a)
{
    if (a->handles_open <= 0 || uv_is_closing((uv_handle_t *)&a->timer))
        return;
    /* A committed checkpoint may have queued it to run again just before
     * it was released; it must not be on the run queue once freed. */
    ol__runq_remove(a);
    drop_instance(a);
    close_handles(a);
}

/* Called when a closing instance may have settled. */
void ol__agent_settle(struct ol_agent *a)
{
    if (a->phase != OL_PHASE_CLOSING && a->phase != OL_PHASE_FAULT)
        return;
    if (a->inflight || (a->work_pending && a->hp == NULL))
        return;
    if (a->phase == OL_PHASE_FAULT && ol__map_get(&a->node->agents,
                                                  a->name) == a) {
        /* Degraded and quarantined instances stay listed so the CLI can
         * show why; only their plugin instance goes. */
        drop_instance(a);
        return;
    }
    ol__agent_finish(a);
}

void ol__agent_release(struct ol_agent *a, const char *why)
{
    ol__runq_remove(a);
    if (why)
        ol_log(OL_LOG_INFO, "agent '%s' epoch %" PRIu64 " released here: %s",
               a->name, a->epoch, why);
    if (a->degraded || a->phase == OL_PHASE_FAULT ||
        a->phase == OL_PHASE_CRASHED) {
        a->phase = OL_PHASE_FAULT;
        uv_timer_stop(&a->flush);
    } else {
        if (ol__map_get(&a->node->agents, a->name) == a)
            ol__map_del(&a->node->agents, a->name);
        a->phase = OL_PHASE_CLOSING;
    }
    ol__agent_drop_queue(a);
    uv_timer_stop(&a->timer);
    uv_timer_stop(&a->flush);
    ol__agent_settle(a);
}

void ol__agent_degrade(struct ol_agent *a, const char *fmt, ...)
{
    va_list ap;

    if (a->degraded)
        return;
    va_start(ap, fmt);
    vsnprintf(a->reason, sizeof a->reason, fmt, ap);
    va_end(ap);
    a->degraded = 1;
    ol__agent_note(a, OL_LOG_ERROR, 0, "degraded and stopped: %s",
                   a->reason);
    ol__agent_release(a, NULL);
}

void ol__agent_fail(struct ol_agent *a, const char *fmt, ...)
{
    struct ol__entry_w w;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(a->reason, sizeof a->reason, fmt, ap);
    va_end(ap);
    ol__agent_note(a, OL_LOG_ERROR, 0, "quarantined: %s", a->reason);
    a->node->n.quarantined++;
    a->phase = OL_PHASE_FAULT;
    ol__entry_w_init(&w);
    if (ol__entry_add_quarantine(&w, ol__random_id(), a->name, a->epoch,
                                 a->reason) == 0)
        ol__node_propose(a->node, &w);
    ol__entry_w_close(&w);
    ol__agent_release(a, NULL);
}
