/*
 * Stopping a node: shutdown drains.  Agents get a STOP event whose
 * checkpoint must commit before they close, then the commit path, the
 * control socket and the store close in that order.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libgen.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/log.h"
#include "state/verify.h"
#include "agent.h"
#include "handlers.h"
#include "host.h"
#include "hostproc.h"
#include "http.h"
#include "logs.h"
#include "node.h"
#include "notify.h"
#include "resume.h"
#include "watchdog.h"
#include "node_int.h"

void ol__node_close_store(struct ol__node *n)
{
    ol__sm_close(n->sm);
    n->sm = NULL;
    ol__walck_close(&n->walck);
    ol__verify_cache_detach(n->vcache);
    ol__store_close(&n->reader);
    ol__store_close(&n->store);
}

/* Once the node has stopped, only its agent hosts may keep the loop
 * alive, for as long as they take to exit.  A handle still open some
 * seconds on is one nothing will close (the process would stay after
 * saying it stopped): each is named in the log.  A loop that counts
 * active handles none of its handles account for (a closed handle that
 * was started again) can do nothing more: it is stopped. */
#define LINGER_MS 3000

struct leftover {
    struct ol__node *n;
    int open;
};

static void say_open(uv_handle_t *h, void *arg)
{
    struct leftover *l = arg;

    if (uv_is_closing(h) || h == (uv_handle_t *)&l->n->linger_timer)
        return;
    l->open++;
    ol_log(OL_LOG_WARN, "stopped %d ms ago, but a %s handle (%p%s) is still "
                        "open",
           LINGER_MS, uv_handle_type_name(uv_handle_get_type(h)), (void *)h,
           uv_is_active(h) ? ", active" : "");
}

static void linger_cb(uv_timer_t *t)
{
    struct leftover l = {t->data, 0};
    uv_loop_t *loop = l.n->loop;

    uv_walk(loop, say_open, &l);
    if (l.open > 0 || loop->active_reqs.count > 0)
        return;
    ol_log(OL_LOG_WARN, "stopped %d ms ago, but the loop counts %u active "
                        "handle(s) that no open handle accounts for; "
                        "ending it",
           LINGER_MS, loop->active_handles);
    uv_stop(loop);
}

static void record_quiet(void *data)
{
    struct ol__node *n = data;

    ol__node_record_finish(n);
    ol_log(OL_LOG_INFO, "stopped");
    /* Unreferenced: the check never keeps the loop alive itself. */
    uv_timer_init(n->loop, &n->linger_timer);
    n->linger_timer.data = n;
    n->linger_open = 1;
    uv_timer_start(&n->linger_timer, linger_cb, LINGER_MS, 0);
    uv_unref((uv_handle_t *)&n->linger_timer);
}

static void replica_closed(void *data)
{
    struct ol__node *n = data;

    n->replica->vt->destroy(n->replica);
    n->replica = NULL;
    if (n->nst.timer_open)
        ol__nstate_quiesce(&n->nst, record_quiet, n);
    else
        record_quiet(n);
}

static void http_closed(void *data)
{
    struct ol__node *n = data;

    n->replica->vt->close(n->replica, replica_closed, n);
}

static void ctl_closed(void *data)
{
    struct ol__node *n = data;
    struct ol__http *h = n->http;

    n->ctl = NULL;
    n->http = NULL;
    ol__http_close(h, http_closed, n);
}

static void close_node_handles(struct ol__node *n)
{
    if (!n->handles_init)
        return;
    n->handles_init = 0;
    ol__node_signals(NULL);
    uv_close((uv_handle_t *)&n->drain_timer, NULL);
    uv_close((uv_handle_t *)&n->crash_timer, NULL);
    uv_timer_stop(&n->sd_watchdog);
    uv_close((uv_handle_t *)&n->sd_watchdog, NULL);
    uv_close((uv_handle_t *)&n->runner, NULL);
    ol__resume_close(n);
    uv_close((uv_handle_t *)&n->sig_async, NULL);
    uv_close((uv_handle_t *)&n->hp_flusher, NULL);
    ol__inproc_stop(n);
}

static void finish_shutdown(struct ol__node *n)
{
    uv_timer_stop(&n->drain_timer);
    ol__logs_close(n);
    ol__agents_close_all(n);
    /* The hosts get their CLOSE items, then EOF, and exit. */
    for (struct ol__code *c = ol__codes_first(&n->codes); c; c = c->next)
        ol__hostproc_close(c->hp);
    close_node_handles(n);
    ol__waiters_drop(n);
    if (n->ctl)
        ol__ctl_close(n->ctl, ctl_closed, n);
    else
        ctl_closed(n);
}

static int drained(struct ol__node *n)
{
    void *v;

    for (size_t i = 0; ol__map_next(&n->agents, &i, &v);) {
        struct ol_agent *a = v;

        if (a->phase == OL_PHASE_DRAINING || a->inflight)
            return 0;
    }
    return n->replica->vt->idle(n->replica);
}

/* A cluster node without a lease cannot commit: it has had no answer from
 * a majority for a lease's length, as the last node of a cluster being
 * stopped one node at a time has not.  Waiting would change nothing, and
 * nothing is lost by not waiting: its agents resume from their last
 * committed checkpoints wherever they run next.  It waits two election
 * timeouts first, for a lease lost only while the others elect a leader
 * (the node stopped before it led). */
static int alone(struct ol__node *n)
{
    return n->cluster &&
           n->drain_waited_ms >= 2 * n->cfg.election_timeout_ms &&
           n->replica->vt->lease_left(n->replica) <= 0;
}

/* What a drain that ran out of time still waited for: the agents whose
 * final checkpoint had not committed, and the commit path's queue. */
static void say_undrained(struct ol__node *n)
{
    char names[200] = "";
    size_t used = 0;
    int waiting = 0;
    void *v;

    for (size_t i = 0; ol__map_next(&n->agents, &i, &v);) {
        struct ol_agent *a = v;
        int w;

        if (a->phase != OL_PHASE_DRAINING && !a->inflight)
            continue;
        if (waiting++ < 4 && used < sizeof names) {
            w = snprintf(names + used, sizeof names - used, "%s'%s'%s",
                         used ? ", " : "", a->name,
                         a->inflight ? " (checkpoint in flight)" : "");
            if (w > 0)
                used += (size_t)w;
        }
    }
    ol_log(OL_LOG_WARN,
           "drain did not finish in %u ms; closing: %d agent(s) not "
           "drained%s%s%s, the commit path %s",
           n->cfg.stop_timeout_ms / 4 * 3, waiting, waiting ? " (" : "",
           names, waiting > 4 ? ", ...)" : waiting ? ")" : "",
           n->replica->vt->idle(n->replica)
               ? "idle"
               : "still has proposals without an outcome");
}

static void drain_cb(uv_timer_t *t)
{
    struct ol__node *n = t->data;

    n->drain_waited_ms += 20;
    if (!drained(n) && alone(n)) {
        ol_log(OL_LOG_INFO,
               "no majority of the cluster answers (the last node of a "
               "cluster being stopped, or a partition): not waiting for "
               "commits; this node's agents resume from their last "
               "committed checkpoints");
        finish_shutdown(n);
        return;
    }
    if (drained(n) || n->drain_waited_ms >= n->cfg.stop_timeout_ms / 4 * 3) {
        if (!drained(n)) {
            say_undrained(n);
            n->exit_code = 1;
        }
        finish_shutdown(n);
        return;
    }
    uv_timer_start(t, drain_cb, 20, 0);
}

void ol__node_shutdown(struct ol__node *n)
{
    void *v;

    if (n->stopping)
        return;
    n->stopping = 1;
    (void)ol__notify("STOPPING=1\nSTATUS=draining commits and stopping "
                     "agents");
    for (size_t i = 0; ol__map_next(&n->agents, &i, &v);) {
        struct ol_agent *a = v;
        struct ol__ev *ev;

        if (a->phase != OL_PHASE_ACTIVE || !a->ready)
            continue;
        /* Events not yet delivered are still in the mailbox and the
         * timers, so they are delivered after the restart. */
        while (a->q_head) {
            ev = a->q_head;
            a->q_head = ev->next;
            ol__agent_free_ev(ev);
        }
        a->q_tail = NULL;
        a->q_len = 0;
        uv_timer_stop(&a->timer);
        a->phase = OL_PHASE_DRAINING;
        ev = calloc(1, sizeof *ev);
        if (ev == NULL)
            continue;
        ev->type = OL_EVENT_STOP;
        ev->final = 0;
        ol__agent_push(a, ev);
    }
    uv_timer_start(&n->drain_timer, drain_cb, 0, 0);
}

static void aborted(void *data)
{
    struct ol__node *n = data;

    if (n->replica) {
        n->replica->vt->destroy(n->replica);
        n->replica = NULL;
    }
    ol__node_record_finish(n);
}

void ol__node_abort(struct ol__node *n)
{
    /* The loop runs until every handle init opened is closed. */
    close_node_handles(n);
    if (n->replica)
        n->replica->vt->close(n->replica, aborted, n);
    else
        aborted(n);
}

void ol__node_free(struct ol__node *n)
{
    if (n->linger_open) {
        n->linger_open = 0;
        uv_close((uv_handle_t *)&n->linger_timer, NULL);
        uv_run(n->loop, UV_RUN_NOWAIT);
    }
    if (n->handles_init) {
        /* A node that never ran: close what init opened. */
        close_node_handles(n);
        uv_run(n->loop, UV_RUN_NOWAIT);
    }
    ol__watchdog_destroy(n->watchdog);
    n->watchdog = NULL;
    ol__verify_cache_destroy(n->vcache);
    n->vcache = NULL;
    ol__codes_close(&n->codes);
    if (n->mark) {
        ol__mark_uninstall();
        munmap(n->mark, OL_MARK_SIZE);
        n->mark = NULL;
    }
    {
        void *v;

        for (size_t i = 0; ol__map_next(&n->full, &i, &v);)
            free(v);
        ol__map_close(&n->full);
    }
    ol__key_close(&n->key);
    ol__buf_close(&n->scratch);
    ol__map_close(&n->agents);
    ol__events_close(&n->events);
    if (n->lock_fd >= 0)
        close(n->lock_fd);
    if (n->replica) {
        n->replica->vt->destroy(n->replica);
        n->replica = NULL;
    }
    ol__node_close_store(n);
}

