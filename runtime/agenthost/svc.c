/*
 * The host services a plugin calls in an agent host (struct ol_host): they
 * record what a handler asks for (timers, messages, a checkpoint, work,
 * log lines), and the step's result (items.c) carries the record back
 * with the saved state.  Arguments are checked here exactly as the node
 * checks them in its own process (runtime/host.c), so a plugin sees the
 * same errors either way; the node checks the record again, because this
 * process runs code it does not trust.
 */
#include <errno.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "runtime/hostapi.h"
#include "runtime/ipc.h"
#include "host_int.h"

struct ahost_state ah;

int64_t ahost_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int on_main(void)
{
    return pthread_equal(pthread_self(), ah.main_thread);
}

/* A handle the plugin passed back: ours, and usable from this thread. */
static int valid(const struct ol_agent *a)
{
    return a != NULL && a->magic == AGENT_MAGIC && on_main();
}

static void notify(void *data)
{
    int fd = (int)(intptr_t)data;
    char b = 1;

    /* A full pipe already says "work is done". */
    (void)!write(fd, &b, 1);
}

int ahost_svc_init(const struct ahost_opts *o, struct ol__mark *mark,
                   const struct ol_agent_vtable *vt, int notify_fd)
{
    ah.o = o;
    ah.vt = vt;
    ah.mark = mark;
    ah.main_thread = pthread_self();
    ol__map_init(&ah.full);
    ol__buf_init(&ah.ops);
    ol__buf_init(&ah.sends);
    ol__buf_init(&ah.effects);
    return ol__wpool_create(o->workers, mark, notify,
                            (void *)(intptr_t)notify_fd, &ah.pool);
}

/* ---- results ---- */

msgpack_packer *ahost_packer(void)
{
    static msgpack_packer pk;

    msgpack_packer_init(&pk, ahost_out(), ol__buf_write);
    return &pk;
}

void ahost_item_head(msgpack_packer *pk, uint32_t n, uint32_t type,
                      const struct ol_agent *a)
{
    msgpack_pack_array(pk, n);
    msgpack_pack_uint32(pk, type);
    msgpack_pack_uint32(pk, a->slot);
    msgpack_pack_uint32(pk, a->gen);
}

void ahost_item_done(void)
{
    ahost_item_added();
    if (ahost_out()->len >= OL_IPC_FLUSH_BYTES)
        (void)ahost_flush();
}

/* ---- host services ---- */

static void host_log(struct ol_agent *a, int level, const char *fmt, ...)
{
    msgpack_packer *pk;
    char line[512];
    va_list ap;

    if (!valid(a) || fmt == NULL || ah.logs >= LOGS_PER_STEP)
        return;
    ah.logs++;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pk = ahost_packer();
    ahost_item_head(pk, 5, OL_IPC_R_LOG, a);
    msgpack_pack_int(pk, level);
    ol__ipc_str(pk, line);
    ahost_item_done();
}

static int host_error(struct ol_agent *a, const char *fmt, ...)
{
    va_list ap;

    if (!valid(a))
        return OL_AGENT_ESTATE;
    if (fmt == NULL)
        return OL_AGENT_EINVAL;
    va_start(ap, fmt);
    vsnprintf(a->err, sizeof a->err, fmt, ap);
    va_end(ap);
    return 0;
}

static const char *host_name(struct ol_agent *a)
{
    return a && a->magic == AGENT_MAGIC ? a->name : "";
}

static int64_t host_now(struct ol_agent *a)
{
    (void)a;
    return ahost_wall_ms();
}

int ahost_timer_find(const struct ol_agent *a, uint64_t id)
{
    for (uint32_t i = 0; i < a->n_timers; i++)
        if (a->timers[i] == id)
            return (int)i;
    return -1;
}

static int record_op(int op, uint64_t id, int64_t due)
{
    msgpack_packer pk;

    msgpack_packer_init(&pk, &ah.ops, ol__buf_write);
    msgpack_pack_uint32(&pk, (uint32_t)op);
    msgpack_pack_uint64(&pk, id);
    msgpack_pack_int64(&pk, due);
    if (ah.ops.base == NULL)
        return OL_AGENT_ENOMEM;
    ah.n_ops += 3;
    return 0;
}

static int arm(struct ol_agent *a, uint64_t id, int64_t due)
{
    if (!valid(a) || !a->in_handle)
        return OL_AGENT_ESTATE;
    if (ahost_timer_find(a, id) < 0) {
        if (a->n_timers >= OL_AGENT_TIMERS_MAX)
            return OL_AGENT_ETOOBIG;
        if (a->timers == NULL) {
            a->timers = malloc(OL_AGENT_TIMERS_MAX * sizeof *a->timers);
            if (a->timers == NULL)
                return OL_AGENT_ENOMEM;
        }
        a->timers[a->n_timers++] = id;
    }
    return record_op(OL_IPC_ARM, id, due);
}

static int host_timer_after(struct ol_agent *a, uint64_t id,
                            uint64_t delay_ms)
{
    if (delay_ms > (uint64_t)INT32_MAX * 1000)
        return OL_AGENT_EINVAL;
    return arm(a, id, ahost_wall_ms() + (int64_t)delay_ms);
}

static int host_timer_at(struct ol_agent *a, uint64_t id, int64_t unix_ms)
{
    return arm(a, id, unix_ms);
}

static int host_timer_cancel(struct ol_agent *a, uint64_t id)
{
    int i;

    if (!valid(a) || !a->in_handle)
        return OL_AGENT_ESTATE;
    i = ahost_timer_find(a, id);
    if (i < 0)
        return OL_AGENT_ENOTFOUND;
    a->timers[i] = a->timers[--a->n_timers];
    return record_op(OL_IPC_CANCEL, id, 0);
}

static int host_send(struct ol_agent *a, const char *to, const void *msg,
                     size_t len)
{
    msgpack_packer pk;
    int rv;

    if (!valid(a) || !a->in_handle || a->final_pending)
        return OL_AGENT_ESTATE;
    rv = ol__send_check(to, msg, len, a->n_outbox);
    if (rv != 0)
        return rv;
    if (ol__map_get(&ah.full, to))
        return OL_AGENT_EFULL;
    msgpack_packer_init(&pk, &ah.sends, ol__buf_write);
    ol__ipc_str(&pk, to);
    ol__ipc_bin(&pk, msg, len);
    if (ah.sends.base == NULL)
        return OL_AGENT_ENOMEM;
    ah.n_sends += 2;
    a->n_outbox++;
    return 0;
}

static int host_effect(struct ol_agent *a, uint64_t id, const char *kind,
                       const void *payload, size_t len)
{
    msgpack_packer pk;
    int rv;

    if (!valid(a) || !a->in_handle || a->final_pending)
        return OL_AGENT_ESTATE;
    if (!a->fx_ok)
        return OL_AGENT_ENOTSUP;
    rv = ol__effect_check(kind, payload, len, a->fx_open + ah.n_effects / 3,
                          OL_VTABLE_HAS(ah.vt, perform) &&
                              ah.vt->perform != NULL);
    if (rv != 0)
        return rv;
    msgpack_packer_init(&pk, &ah.effects, ol__buf_write);
    msgpack_pack_uint64(&pk, id);
    ol__ipc_str(&pk, kind);
    ol__ipc_bin(&pk, payload, len);
    if (ah.effects.base == NULL)
        return OL_AGENT_ENOMEM;
    ah.n_effects += 3;
    /* The step's checkpoint holds the intent. */
    ah.ckpt_requested = 1;
    return 0;
}

static int host_checkpoint(struct ol_agent *a)
{
    if (!valid(a) || !a->in_handle)
        return OL_AGENT_ESTATE;
    ah.ckpt_requested = 1;
    return 0;
}

static int host_work(struct ol_agent *a, uint64_t id, ol_work_fn fn,
                     void *arg)
{
    struct ol__witem *it;

    if (!valid(a) || !a->in_handle)
        return OL_AGENT_ESTATE;
    if (fn == NULL)
        return OL_AGENT_EINVAL;
    it = ol__witem_new(fn, arg, id, a->epoch, a->name);
    if (it == NULL)
        return OL_AGENT_ENOMEM;
    it->slot = a->slot;
    it->gen = a->gen;
    a->work_pending++;
    ah.works++;
    ol__wpool_submit(ah.pool, it);
    return 0;
}

const struct ol_host ahost_table = OL__HOST_TABLE;
