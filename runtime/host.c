/*
 * Plugins that run inside the node ([plugin.KIND] isolation = none): the
 * host services they call (struct ol_host in outlast/agent.h), their work
 * pool, and the step marks around every call into their code.
 *
 * Every argument is input: names, sizes and msgpack bytes are checked, and
 * services that change what the next checkpoint holds are refused outside
 * handle(), so nothing a plugin does escapes the record of its step.  What
 * such a plugin can still do is take the node down with it: a crash kills
 * the node (the restarted node finds the step mark in its data directory
 * and reports the crash, so it counts towards quarantine like a host's),
 * and a step past its deadline makes the watchdog end the node.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mpr.h"
#include "hostapi.h"
#include "ipc.h"
#include "node.h"
#include "agent.h"
#include "host.h"
#include "logs.h"
#include "fx.h"

/* The public codes are the internal ones; keep them that way. */
_Static_assert(OL_AGENT_ENOMEM == OL_ENOMEM, "abi: ENOMEM");
_Static_assert(OL_AGENT_EINVAL == OL_EINVAL, "abi: EINVAL");
_Static_assert(OL_AGENT_EMALFORMED == OL_EMALFORMED, "abi: EMALFORMED");
_Static_assert(OL_AGENT_ENOTFOUND == OL_ENOTFOUND, "abi: ENOTFOUND");
_Static_assert(OL_AGENT_ETOOBIG == OL_ETOOBIG, "abi: ETOOBIG");
_Static_assert(OL_AGENT_ESTATE == OL_ESTATE, "abi: ESTATE");
_Static_assert(OL_AGENT_EFULL == OL_EFULL, "abi: EFULL");
_Static_assert(OL_AGENT_LOG_DEBUG == OL_LOG_DEBUG, "abi: log levels");

static pthread_t loop_thread;

/* A handle the plugin passed back that services may use now: a plugin
 * that calls a service from a work thread gets an error, not a race. */
static int usable(const struct ol_agent *a)
{
    return a != NULL && pthread_equal(pthread_self(), loop_thread);
}

static void host_log(struct ol_agent *a, int level, const char *fmt, ...)
{
    char line[512];
    va_list ap;

    if (!usable(a))
        return;
    if (level < OL_AGENT_LOG_ERROR)
        level = OL_AGENT_LOG_ERROR;
    if (level > OL_AGENT_LOG_DEBUG)
        level = OL_AGENT_LOG_DEBUG;
    if (level > ol__log_level || fmt == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    ol__agent_plugin_log(a, level, line, strlen(line));
}

static int host_error(struct ol_agent *a, const char *fmt, ...)
{
    va_list ap;

    if (!usable(a))
        return OL_AGENT_ESTATE;
    if (fmt == NULL)
        return OL_AGENT_EINVAL;
    va_start(ap, fmt);
    vsnprintf(a->plugin_err, sizeof a->plugin_err, fmt, ap);
    va_end(ap);
    return 0;
}

static const char *host_name(struct ol_agent *a)
{
    return a ? a->name : "";
}

static int64_t host_now(struct ol_agent *a)
{
    (void)a;
    return ol__wall_ms();
}

static int arm(struct ol_agent *a, uint64_t id, int64_t due)
{
    if (!usable(a) || !a->in_handle)
        return OL_AGENT_ESTATE;
    return ol__agent_arm(a, id, due);
}

static int host_timer_after(struct ol_agent *a, uint64_t id,
                            uint64_t delay_ms)
{
    if (delay_ms > (uint64_t)INT32_MAX * 1000)
        return OL_AGENT_EINVAL;
    return arm(a, id, ol__wall_ms() + (int64_t)delay_ms);
}

static int host_timer_at(struct ol_agent *a, uint64_t id, int64_t unix_ms)
{
    return arm(a, id, unix_ms);
}

static int host_timer_cancel(struct ol_agent *a, uint64_t id)
{
    if (!usable(a) || !a->in_handle)
        return OL_AGENT_ESTATE;
    return ol__agent_cancel(a, id);
}

static int host_send(struct ol_agent *a, const char *to, const void *msg,
                     size_t len)
{
    int rv;

    if (!usable(a) || !a->in_handle || a->final_pending)
        return OL_AGENT_ESTATE;
    rv = ol__send_check(to, msg, len, a->n_outbox);
    if (rv != 0)
        return rv;
    if (ol__map_get(&a->node->full, to))
        return OL_AGENT_EFULL;
    return ol__agent_outbox_add(a, to, msg, (uint32_t)len);
}

static int host_checkpoint(struct ol_agent *a)
{
    if (!usable(a) || !a->in_handle)
        return OL_AGENT_ESTATE;
    a->ckpt_requested = 1;
    return 0;
}

static int host_effect(struct ol_agent *a, uint64_t id, const char *kind,
                       const void *payload, size_t len)
{
    const struct ol_agent_vtable *vt;

    if (!usable(a) || !a->in_handle || a->final_pending)
        return OL_AGENT_ESTATE;
    vt = a->code->plugin.vt;
    return ol__fx_declare(a, id, kind, payload, len,
                          OL_VTABLE_HAS(vt, perform) && vt->perform != NULL);
}

/* ---- work, on the node's own pool ---- */

static void wp_notify(void *data)
{
    uv_async_send(data);
}

static void wp_done_cb(uv_async_t *h)
{
    struct ol__node *n = h->data;
    struct ol__witem *it = n->wpool ? ol__wpool_take(n->wpool) : NULL, *next;

    for (; it; it = next) {
        struct ol_agent *a = it->owner;
        struct ol__ev *ev;

        next = it->next;
        if (it->fn == ol__fxjob_run) {
            ol__fx_inproc_done(n, it);
            continue;
        }
        a->work_pending--;
        if (a->phase == OL_PHASE_ACTIVE || a->phase == OL_PHASE_DRAINING) {
            ev = calloc(1, sizeof *ev);
            if (ev) {
                ev->type = OL_EVENT_WORK;
                ev->work_id = it->id;
                ev->work_arg = it->arg;
                ev->work_epoch = it->epoch;
                ol__agent_push(a, ev);
            }
        } else if (a->self) {
            /* The agent is going away: hand the argument back so the
             * plugin can free it; nothing it does now is recorded. */
            struct ol_event e;

            memset(&e, 0, sizeof e);
            e.type = OL_EVENT_WORK;
            e.size = sizeof e;
            e.now_ms = ol__wall_ms();
            e.work_id = it->id;
            e.work_arg = it->arg;
            e.epoch = a->epoch;
            e.work_epoch = it->epoch;
            e.fenced = 1;
            a->in_handle = 0;
            ol__inproc_enter(a, OL_MARK_HANDLE, OL_EVENT_WORK);
            (void)a->code->plugin.vt->handle(a->self, a, &e);
            ol__inproc_leave(a);
            ol__agent_settle(a);
        }
        free(it);
    }
}

static int pool_ready(struct ol__node *n)
{
    if (n->wpool == NULL &&
        ol__wpool_create(n->cfg.agent_defaults.work_threads, n->mark,
                         wp_notify, &n->wp_async, &n->wpool) != 0)
        return OL_AGENT_ENOMEM;
    return 0;
}

int ol__inproc_perform(struct ol_agent *a, const struct ol__ipc_perform *p)
{
    struct ol__fxjob *j;
    struct ol__witem *it;

    if (pool_ready(a->node) != 0)
        return OL_ENOMEM;
    j = ol__fxjob_new(a->code->plugin.vt, &p->e);
    it = j ? ol__witem_new(ol__fxjob_run, j, p->e.effect_id, p->e.epoch,
                           a->name)
           : NULL;
    if (it == NULL) {
        ol__fxjob_free(j);
        return OL_ENOMEM;
    }
    j->token = p->token;
    j->run_by = p->run_by;
    ol__wpool_submit(a->node->wpool, it);
    return 0;
}

static int host_work(struct ol_agent *a, uint64_t id, ol_work_fn fn,
                     void *arg)
{
    struct ol__node *n;
    struct ol__witem *it;

    if (!usable(a) || !a->in_handle)
        return OL_AGENT_ESTATE;
    if (fn == NULL)
        return OL_AGENT_EINVAL;
    n = a->node;
    if (pool_ready(n) != 0)
        return OL_AGENT_ENOMEM;
    it = ol__witem_new(fn, arg, id, a->epoch, a->name);
    if (it == NULL)
        return OL_AGENT_ENOMEM;
    it->owner = a;
    a->work_pending++;
    ol__wpool_submit(n->wpool, it);
    return 0;
}

const struct ol_host ol__host_table = OL__HOST_TABLE;

/* ---- binding and marks ---- */

int ol__inproc_bind(struct ol__node *n, struct ol__code *c, char *errmsg)
{
    int rv;

    (void)n;
    ol__inproc_enter(NULL, OL_MARK_LOAD, 0);
    rv = ol__plugin_bind(c->path, c->src, c->kind, &ol__host_table,
                         &c->plugin, errmsg);
    ol__inproc_leave(NULL);
    if (rv != 0)
        return rv;
    memcpy(c->plugin.so_hash, c->hash, OL_HASH_SIZE);
    snprintf(c->version, sizeof c->version, "%s", c->plugin.version);
    return 0;
}

static struct ol__mark *cur_mark;

void ol__inproc_enter(struct ol_agent *a, uint32_t phase, int event)
{
    struct ol__mark_slot *s;

    if (cur_mark == NULL)
        return;
    s = &cur_mark->main;
    if (a) {
        snprintf(s->name, sizeof s->name, "%s", a->name);
        s->epoch = a->epoch;
        s->deadline_ms = a->code ? a->code->cfg.step_deadline_ms : 0;
    } else {
        s->name[0] = '\0';
        s->deadline_ms = 0;
    }
    ol__mark_begin(s, phase, 0, 0, (uint32_t)event);
}

void ol__inproc_leave(struct ol_agent *a)
{
    (void)a;
    if (cur_mark)
        ol__mark_end(&cur_mark->main);
}

int ol__inproc_start(struct ol__node *n, char *errmsg)
{
    loop_thread = pthread_self();
    cur_mark = n->mark;
    if (uv_async_init(n->loop, &n->wp_async, wp_done_cb) != 0) {
        ol__errf(errmsg, "cannot set up the work pool");
        return OL_EIO;
    }
    n->wp_async.data = n;
    n->inproc_init = 1;
    /* Crash handlers only where plugin code runs in this process. */
    if (n->mark && ol__config_any_inproc(&n->cfg) &&
        (ol__mark_install(n->mark) != 0 || ol__mark_thread(-1) != 0)) {
        ol__errf(errmsg, "cannot install crash handlers");
        return OL_EIO;
    }
    return 0;
}

void ol__inproc_stop(struct ol__node *n)
{
    ol__wpool_destroy(n->wpool);
    n->wpool = NULL;
    if (n->inproc_init) {
        n->inproc_init = 0;
        uv_close((uv_handle_t *)&n->wp_async, NULL);
    }
}
