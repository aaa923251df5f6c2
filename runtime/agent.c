/*
 * Agent instances: the host side of each agent this node runs.  An
 * instance is created when the state machine says this node owns the agent
 * under some epoch; it resumes from the newest committed checkpoint after
 * that checkpoint verifies, restores the timers and undelivered messages
 * the checkpoint implies, and is released when ownership moves or the agent
 * stops.  A checkpoint that fails verification leaves the agent degraded:
 * never loaded, nothing deleted.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../replication/verify.h"
#include "alog.h"
#include "err.h"
#include "log.h"
#include "node.h"

struct ol_agent *ol__agent_get(struct ol__node *n, const char *name)
{
    return ol__map_get(&n->agents, name);
}

void ol__agent_free_ev(struct ol__ev *ev)
{
    if (ev == NULL)
        return;
    free(ev->data);
    free(ev);
}

void ol__agent_push(struct ol_agent *a, struct ol__ev *ev)
{
    ev->next = NULL;
    if (a->q_tail)
        a->q_tail->next = ev;
    else
        a->q_head = ev;
    a->q_tail = ev;
    a->q_len++;
    ol__runq_add(a);
}

static void push_new(struct ol_agent *a, int type)
{
    struct ol__ev *ev = calloc(1, sizeof *ev);

    if (ev == NULL) {
        ol_log(OL_LOG_ERROR, "agent '%s': out of memory queueing an event",
               a->name);
        return;
    }
    ev->type = type;
    ol__agent_push(a, ev);
}

/* The agent is being stopped for good: one STOP event, then its final
 * checkpoint. */
static void push_final_stop(struct ol_agent *a)
{
    struct ol__ev *ev;

    if (a->final_pending)
        return;
    ev = calloc(1, sizeof *ev);
    if (ev == NULL)
        return;
    ev->type = OL_EVENT_STOP;
    ev->final = 1;
    a->final_pending = 1;
    ol__agent_push(a, ev);
}

static void drop_queue(struct ol_agent *a)
{
    struct ol__ev *ev = a->q_head, *next;

    for (; ev; ev = next) {
        next = ev->next;
        ol__agent_free_ev(ev);
    }
    a->q_head = a->q_tail = NULL;
    a->q_len = 0;
}

void ol__agent_mail(struct ol_agent *a, const char *from, uint64_t seq,
                    uint32_t idx, const void *data, uint32_t len,
                    int64_t rowid)
{
    struct ol__ev *ev;

    /* Rows already loaded from the mailbox when the agent resumed arrive
     * again as effects of the same commit; the watermark skips them. */
    if (rowid <= a->mail_watermark || a->phase != OL_PHASE_ACTIVE)
        return;
    ev = calloc(1, sizeof *ev);
    if (ev == NULL || (ev->data = malloc(len ? len : 1)) == NULL) {
        free(ev);
        ol_log(OL_LOG_ERROR, "agent '%s': out of memory queueing a message",
               a->name);
        return;
    }
    a->mail_watermark = rowid;
    ev->type = OL_EVENT_MESSAGE;
    snprintf(ev->from, sizeof ev->from, "%s", from);
    ev->from_seq = seq;
    ev->idx = idx;
    memcpy(ev->data, data, len);
    ev->len = len;
    ol__agent_push(a, ev);
}

/* ---- timers ---- */

static void timer_cb(uv_timer_t *t)
{
    struct ol_agent *a = t->data;
    int64_t now = ol__wall_ms();

    if (a->phase != OL_PHASE_ACTIVE)
        return;
    for (uint32_t i = 0; i < a->n_timers; i++) {
        struct ol__armed *tm = &a->timers[i];
        struct ol__ev *ev;

        if (tm->fired || tm->due_ms > now)
            continue;
        ev = calloc(1, sizeof *ev);
        if (ev == NULL)
            break;
        /* The timer stays armed (and in checkpoints) until its event is
         * handled, so a crash in between fires it again on resume. */
        tm->fired = 1;
        ev->type = OL_EVENT_TIMER;
        ev->timer_id = tm->id;
        ev->due_ms = tm->due_ms;
        ol__agent_push(a, ev);
    }
    ol__agent_timers_rearm(a);
}

void ol__agent_timers_rearm(struct ol_agent *a)
{
    int64_t next = INT64_MAX, now;

    for (uint32_t i = 0; i < a->n_timers; i++)
        if (!a->timers[i].fired && a->timers[i].due_ms < next)
            next = a->timers[i].due_ms;
    if (next == INT64_MAX || a->phase != OL_PHASE_ACTIVE) {
        uv_timer_stop(&a->timer);
        return;
    }
    now = ol__wall_ms();
    uv_timer_start(&a->timer, timer_cb,
                   next > now ? (uint64_t)(next - now) : 0, 0);
}

/* ---- creation ---- */

static void handle_closed(uv_handle_t *h)
{
    struct ol_agent *a = h->data;

    if (--a->handles_open > 0)
        return;
    drop_queue(a);
    for (uint32_t i = 0; i < a->n_outbox; i++) {
        free(a->outbox[i].to);
        free(a->outbox[i].data);
    }
    free(a->outbox);
    for (uint32_t i = 0; i < a->n_acks; i++)
        free(a->acks[i].from);
    free(a->acks);
    free(a->timers);
    ol__alog_destroy(a->log);
    free(a);
}

static struct ol_agent *instance_new(struct ol__node *n, const char *name,
                                     uint64_t epoch)
{
    struct ol_agent *a = calloc(1, sizeof *a);

    if (a == NULL)
        return NULL;
    a->node = n;
    snprintf(a->name, sizeof a->name, "%s", name);
    a->epoch = epoch;
    a->phase = OL_PHASE_ACTIVE;
    uv_timer_init(n->loop, &a->timer);
    a->timer.data = a;
    uv_timer_init(n->loop, &a->flush);
    a->flush.data = a;
    a->handles_open = 2;
    a->last_ckpt_ms = ol__wall_ms();
    if (ol__map_put(&n->agents, a->name, a) != 0) {
        a->phase = OL_PHASE_FAULT;
        uv_close((uv_handle_t *)&a->timer, handle_closed);
        uv_close((uv_handle_t *)&a->flush, handle_closed);
        return NULL;
    }
    return a;
}

/* Load the mailbox rows waiting for `a` into its queue. */
static int load_mail(struct ol_agent *a)
{
    sqlite3 *db = a->node->reader.db;
    sqlite3_stmt *st;
    int rc;

    if (sqlite3_prepare_v2(db,
                           "SELECT id, from_agent, from_seq, idx, payload "
                           "FROM mailbox WHERE to_agent = ? ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK)
        return OL_EIO;
    sqlite3_bind_text(st, 1, a->name, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ol__agent_mail(a, (const char *)sqlite3_column_text(st, 1),
                       (uint64_t)sqlite3_column_int64(st, 2),
                       (uint32_t)sqlite3_column_int64(st, 3),
                       sqlite3_column_blob(st, 4),
                       (uint32_t)sqlite3_column_bytes(st, 4),
                       sqlite3_column_int64(st, 0));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : OL_EIO;
}

/* "node-<id>" for the node whose key signed a checkpoint. */
static void signer_name(struct ol__node *n, const uint8_t *pk, char *out,
                        size_t cap)
{
    sqlite3_stmt *st;

    snprintf(out, cap, "unknown");
    if (sqlite3_prepare_v2(n->reader.db, "SELECT id FROM nodes WHERE pk = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_blob(st, 1, pk, OL_PK_SIZE, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        snprintf(out, cap, "node-%lld", (long long)sqlite3_column_int64(st, 0));
    sqlite3_finalize(st);
}

/* Restore the plugin state and the timers from a verified checkpoint. */
static int restore(struct ol_agent *a, const struct ol__ckpt *c,
                   const uint8_t hash[OL_HASH_SIZE])
{
    const struct ol_agent_vtable *vt = a->plugin->vt;
    struct ol__ev *ev;
    int rv;

    if (strcmp(c->plugin.kind, a->plugin->kind) != 0) {
        ol__agent_fail(a, "checkpoint seq %" PRIu64
                          " was written by plugin '%s', not '%s'",
                       c->seq, c->plugin.kind, a->plugin->kind);
        return OL_EPLUGIN;
    }
    if (memcmp(c->plugin.so_hash, a->plugin->so_hash, OL_HASH_SIZE) != 0)
        ol_log(OL_LOG_INFO,
               "agent '%s': plugin '%s' changed since seq %" PRIu64
               " (%s -> %s)",
               a->name, a->plugin->kind, c->seq, c->plugin.version,
               a->plugin->version);
    a->in_handle = 0;
    rv = vt->restore(a->self, a, c->state, c->state_len);
    if (rv != 0) {
        ol__agent_fail(a, "restore() refused checkpoint seq %" PRIu64
                          " (returned %d)",
                       c->seq, rv);
        return OL_EPLUGIN;
    }
    a->seq = c->seq;
    a->head_epoch = c->epoch;
    a->committed_seq = c->seq;
    memcpy(a->head_hash, hash, OL_HASH_SIZE);
    a->timers = calloc(c->n_timers ? c->n_timers : 1, sizeof *a->timers);
    if (a->timers == NULL)
        return OL_ENOMEM;
    for (uint32_t i = 0; i < c->n_timers; i++) {
        a->timers[i].id = c->timers[i].id;
        a->timers[i].due_ms = c->timers[i].due_ms;
    }
    a->n_timers = c->n_timers;
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

void ol__agent_host(struct ol__node *n, const struct ol__sm_agent *row)
{
    struct ol_agent *a = ol__agent_get(n, row->name);
    struct ol__alog *log = NULL;
    struct ol__ckpt c;
    uint8_t hash[OL_HASH_SIZE];
    char err[OL_ERRMSG_SIZE];
    int rv;

    if (a && a->epoch == row->epoch && a->phase != OL_PHASE_CLOSING) {
        /* Already hosted under this epoch; maybe now asked to stop. */
        if (row->status == OL_AGENT_STOPPING && a->phase == OL_PHASE_ACTIVE)
            push_final_stop(a);
        return;
    }
    if (a) {
        /* The new instance keeps the agent's log lines. */
        log = a->log;
        a->log = NULL;
        ol__agent_release(a, "a newer epoch replaces it");
    }
    a = instance_new(n, row->name, row->epoch);
    if (a == NULL) {
        ol__alog_destroy(log);
        ol_log(OL_LOG_ERROR, "agent '%s': out of memory", row->name);
        return;
    }
    a->log = log;
    rv = ol__plugin_get(&n->plugins, row->kind, &a->plugin, err);
    if (rv != 0) {
        ol__agent_fail(a, "%s", err);
        return;
    }
    rv = a->plugin->vt->open(a, row->config, row->config_len, &a->self);
    if (rv != 0) {
        a->self = NULL;
        ol__agent_fail(a, "open() refused its config (returned %d)", rv);
        return;
    }
    rv = ol__verify_load_head_cached(n->reader.db, a->name, n->vcache, &c,
                                     hash, err);
    if (rv == OL_ENOTFOUND) {
        push_new(a, OL_EVENT_START);
    } else if (rv != 0) {
        a->degraded = 1;
        snprintf(a->reason, sizeof a->reason, "%s", err);
        ol_log(OL_LOG_ERROR, "%s; agent '%s' is degraded and not loaded",
               err, a->name);
        if (rv == OL_EIO)
            ol__node_storage_fault(n, NULL, "%s", err);
        ol__agent_release(a, NULL);
        return;
    } else {
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
            return;
        }
    }
    if (load_mail(a) != 0) {
        ol__node_storage_fault(n, a->name,
                               "agent '%s': its mailbox cannot be read: %s",
                               a->name, sqlite3_errmsg(n->reader.db));
        return;
    }
    ol__agent_timers_rearm(a);
    if (row->status == OL_AGENT_STOPPING)
        push_final_stop(a);
    ol__agent_note(a, OL_LOG_INFO, 0,
                   "(%s) %s on node %" PRIu64 " at seq %" PRIu64
                   " epoch %" PRIu64,
                   a->plugin->kind, a->seq ? "resumed" : "started",
                   n->self_id, a->seq, a->epoch);
}

/* ---- teardown ---- */

static void finish(struct ol_agent *a)
{
    if (a->handles_open <= 0 || uv_is_closing((uv_handle_t *)&a->timer))
        return;
    /* A committed checkpoint may have queued it to run again just before
     * it was released; it must not be on the run queue once freed. */
    ol__runq_remove(a);
    if (a->self && a->plugin && a->plugin->vt->close)
        a->plugin->vt->close(a->self);
    a->self = NULL;
    uv_close((uv_handle_t *)&a->timer, handle_closed);
    uv_close((uv_handle_t *)&a->flush, handle_closed);
}

/* Called when a closing instance may have settled. */
void ol__agent_settle(struct ol_agent *a);
void ol__agent_settle(struct ol_agent *a)
{
    if (a->phase != OL_PHASE_CLOSING && a->phase != OL_PHASE_FAULT)
        return;
    if (a->inflight || a->work_pending)
        return;
    if (a->phase == OL_PHASE_FAULT && ol__map_get(&a->node->agents,
                                                  a->name) == a) {
        /* Degraded and quarantined instances stay listed so the CLI can
         * show why; only their plugin instance goes. */
        if (a->self && a->plugin && a->plugin->vt->close)
            a->plugin->vt->close(a->self);
        a->self = NULL;
        return;
    }
    finish(a);
}

void ol__agent_release(struct ol_agent *a, const char *why)
{
    ol__runq_remove(a);
    if (why)
        ol_log(OL_LOG_INFO, "agent '%s' epoch %" PRIu64 " released here: %s",
               a->name, a->epoch, why);
    if (a->degraded || a->phase == OL_PHASE_FAULT) {
        a->phase = OL_PHASE_FAULT;
    } else {
        if (ol__map_get(&a->node->agents, a->name) == a)
            ol__map_del(&a->node->agents, a->name);
        a->phase = OL_PHASE_CLOSING;
    }
    drop_queue(a);
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
    if (ol__entry_add_quarantine(&w, ol__node_req_id(), a->name, a->epoch,
                                 a->reason) == 0)
        ol__node_propose(a->node, &w);
    ol__entry_w_close(&w);
    ol__agent_release(a, NULL);
}

void ol__agents_close_all(struct ol__node *n)
{
    void *v;

    for (size_t i = 0; ol__map_next(&n->agents, &i, &v);) {
        struct ol_agent *a = v;

        a->degraded = 0;
        a->phase = OL_PHASE_CLOSING;
        drop_queue(a);
        uv_timer_stop(&a->timer);
        uv_timer_stop(&a->flush);
        a->inflight = 0;
        a->work_pending = 0;
        finish(a);
    }
    ol__map_close(&n->agents);
    ol__map_init(&n->agents);
}
