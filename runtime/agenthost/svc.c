/*
 * The agent host's half of a step.  Items from the node open, step, save
 * and close agent instances; the host services (struct ol_host) record
 * what a handler asks for (timers, messages, a checkpoint, work, log
 * lines) and the step's result carries the record back with the saved
 * state.  Arguments are checked here exactly as the node checks them in
 * its own process (runtime/host.c), so a plugin sees the same errors
 * either way; the node checks the record again, because this process runs
 * code it does not trust.
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

#include "../err.h"
#include "../ipc.h"
#include "agenthost.h"

#define AGENT_MAGIC 0x61676e74u
#define LOGS_PER_STEP 64

/* An agent instance; `struct ol_agent` is its name in the plugin SDK. */
struct ol_agent {
    uint32_t magic;
    uint32_t slot, gen;
    uint64_t epoch;
    char name[OL_NAME_MAX + 1];
    void *self;
    int open;          /* open() succeeded */
    int in_handle;
    int final_pending;
    uint32_t n_outbox; /* messages sent since the last checkpoint */
    uint64_t *timers;  /* armed timer ids (the node keeps the due times) */
    uint32_t n_timers;
    uint32_t work_pending;
    int closing;       /* CLOSE arrived; close() once work is back */
    struct ol_agent *next_closing;
};

/* A finished work item waiting for its WORK event. */
struct done {
    void *arg;
    uint32_t slot, gen;
    uint64_t id;
    int used;
};

static struct {
    const struct ahost_opts *o;
    const struct ol_agent_vtable *vt;
    struct ol__mark *mark;
    struct ol__wpool *pool;
    pthread_t main_thread;
    struct ol_agent **slots;
    uint32_t n_slots;
    struct ol_agent *closing;
    struct done *done;
    uint32_t n_done;
    struct ol__map full;  /* recipients whose mailbox is full */
    /* The record of the step in progress. */
    struct ol__buf ops, sends;
    uint32_t n_ops, n_sends, works, logs;
    int ckpt_requested;
    struct ol_agent *stepping;
} H;

static int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int on_main(void)
{
    return pthread_equal(pthread_self(), H.main_thread);
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
    H.o = o;
    H.vt = vt;
    H.mark = mark;
    H.main_thread = pthread_self();
    ol__map_init(&H.full);
    ol__buf_init(&H.ops);
    ol__buf_init(&H.sends);
    return ol__wpool_create(o->workers, mark, notify,
                            (void *)(intptr_t)notify_fd, &H.pool);
}

/* ---- results ---- */

static msgpack_packer *packer(void)
{
    static msgpack_packer pk;

    msgpack_packer_init(&pk, ahost_out(), ol__buf_write);
    return &pk;
}

static void item_head(msgpack_packer *pk, uint32_t n, uint32_t type,
                      const struct ol_agent *a)
{
    msgpack_pack_array(pk, n);
    msgpack_pack_uint32(pk, type);
    msgpack_pack_uint32(pk, a->slot);
    msgpack_pack_uint32(pk, a->gen);
}

static void item_done(void)
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

    if (!valid(a) || fmt == NULL || H.logs >= LOGS_PER_STEP)
        return;
    H.logs++;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pk = packer();
    item_head(pk, 5, OL_IPC_R_LOG, a);
    msgpack_pack_int(pk, level);
    ol__ipc_str(pk, line);
    item_done();
}

static const char *host_name(struct ol_agent *a)
{
    return a && a->magic == AGENT_MAGIC ? a->name : "";
}

static int64_t host_now(struct ol_agent *a)
{
    (void)a;
    return wall_ms();
}

static int timer_find(const struct ol_agent *a, uint64_t id)
{
    for (uint32_t i = 0; i < a->n_timers; i++)
        if (a->timers[i] == id)
            return (int)i;
    return -1;
}

static int record_op(int op, uint64_t id, int64_t due)
{
    msgpack_packer pk;

    msgpack_packer_init(&pk, &H.ops, ol__buf_write);
    msgpack_pack_uint32(&pk, (uint32_t)op);
    msgpack_pack_uint64(&pk, id);
    msgpack_pack_int64(&pk, due);
    if (H.ops.base == NULL)
        return OL_AGENT_ENOMEM;
    H.n_ops += 3;
    return 0;
}

static int arm(struct ol_agent *a, uint64_t id, int64_t due)
{
    if (!valid(a) || !a->in_handle)
        return OL_AGENT_ESTATE;
    if (timer_find(a, id) < 0) {
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
    return arm(a, id, wall_ms() + (int64_t)delay_ms);
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
    i = timer_find(a, id);
    if (i < 0)
        return OL_AGENT_ENOTFOUND;
    a->timers[i] = a->timers[--a->n_timers];
    return record_op(OL_IPC_CANCEL, id, 0);
}

static int host_send(struct ol_agent *a, const char *to, const void *msg,
                     size_t len)
{
    msgpack_packer pk;

    if (!valid(a) || !a->in_handle || a->final_pending)
        return OL_AGENT_ESTATE;
    if (to == NULL || strnlen(to, OL_NAME_MAX + 1) > OL_NAME_MAX ||
        !ol__name_valid(to) || (msg == NULL && len))
        return OL_AGENT_EINVAL;
    if (len > OL_AGENT_MSG_MAX || a->n_outbox >= OL_AGENT_OUTBOX_MAX)
        return OL_AGENT_ETOOBIG;
    if (ol__mp_check(msg, len, NULL) != 0)
        return OL_AGENT_EMALFORMED;
    if (ol__map_get(&H.full, to))
        return OL_AGENT_EFULL;
    msgpack_packer_init(&pk, &H.sends, ol__buf_write);
    ol__ipc_str(&pk, to);
    ol__ipc_bin(&pk, msg, len);
    if (H.sends.base == NULL)
        return OL_AGENT_ENOMEM;
    H.n_sends += 2;
    a->n_outbox++;
    return 0;
}

static int host_checkpoint(struct ol_agent *a)
{
    if (!valid(a) || !a->in_handle)
        return OL_AGENT_ESTATE;
    H.ckpt_requested = 1;
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
    it = calloc(1, sizeof *it);
    if (it == NULL)
        return OL_AGENT_ENOMEM;
    it->fn = fn;
    it->arg = arg;
    it->slot = a->slot;
    it->gen = a->gen;
    it->id = id;
    it->epoch = a->epoch;
    snprintf(it->name, sizeof it->name, "%s", a->name);
    a->work_pending++;
    H.works++;
    ol__wpool_submit(H.pool, it);
    return 0;
}

const struct ol_host ahost_table = {
    .abi = OL_AGENT_ABI,
    .size = sizeof(struct ol_host),
    .log = host_log,
    .name = host_name,
    .now_ms = host_now,
    .timer_after = host_timer_after,
    .timer_at = host_timer_at,
    .timer_cancel = host_timer_cancel,
    .send = host_send,
    .checkpoint = host_checkpoint,
    .work = host_work,
};

/* ---- calling the plugin under a step mark ---- */

static void mark_begin(const struct ol_agent *a, uint32_t phase,
                       uint32_t event)
{
    ol__mark_begin(&H.mark->main, phase, a->slot, a->gen, event);
}

static void mark_end(void)
{
    ol__mark_end(&H.mark->main);
}

/* ---- the save sink: state goes straight into the result ---- */

struct sink {
    size_t start;
    int err;
};

static int sink_write(void *data, const char *p, size_t n)
{
    struct sink *s = data;
    struct ol__buf *out = ahost_out();
    int rv;

    if (p == NULL && n)
        rv = OL_AGENT_EINVAL;
    else if (out->len - s->start + n > OL_AGENT_STATE_MAX)
        rv = OL_AGENT_ETOOBIG;
    else
        rv = ol__buf_append(out, p, n);
    if (rv != 0 && s->err == 0)
        s->err = rv;
    return rv;
}

/* Call save() and pack its output as one bin, then save_rv. */
static void pack_save(struct ol_agent *a, msgpack_packer *pk)
{
    struct ol__buf *out = ahost_out();
    static const uint8_t bin32[5] = {0xc6, 0, 0, 0, 0};
    struct sink s = {0, 0};
    struct ol_sink sink = {&s, sink_write};
    size_t hdr = out->len;
    uint32_t n;
    int rv;

    /* A bin32 header is patched in once the length is known, so the
     * state is written once, where it will be sent from. */
    if (ol__buf_append(out, bin32, sizeof bin32) != 0) {
        msgpack_pack_nil(pk);
        msgpack_pack_int(pk, OL_AGENT_ENOMEM);
        return;
    }
    s.start = out->len;
    mark_begin(a, OL_MARK_SAVE, 0);
    rv = H.vt->save(a->self, a, &sink);
    mark_end();
    if (s.err)
        rv = s.err;
    if (rv != 0) {
        out->len = hdr;
        msgpack_pack_nil(pk);
        msgpack_pack_int(pk, rv);
        return;
    }
    n = (uint32_t)(out->len - s.start);
    out->base[hdr + 1] = (uint8_t)(n >> 24);
    out->base[hdr + 2] = (uint8_t)(n >> 16);
    out->base[hdr + 3] = (uint8_t)(n >> 8);
    out->base[hdr + 4] = (uint8_t)n;
    msgpack_pack_int(pk, 0);
}

/* ---- items ---- */

static struct ol_agent *lookup(uint32_t slot, uint32_t gen)
{
    struct ol_agent *a;

    if (slot >= H.n_slots)
        return NULL;
    a = H.slots[slot];
    return a && a->gen == gen ? a : NULL;
}

static void reply_open(struct ol_agent *a, uint32_t slot, uint32_t gen,
                       int rv, const char *where)
{
    msgpack_packer *pk = packer();

    msgpack_pack_array(pk, 5);
    msgpack_pack_uint32(pk, OL_IPC_R_OPEN);
    msgpack_pack_uint32(pk, a ? a->slot : slot);
    msgpack_pack_uint32(pk, a ? a->gen : gen);
    msgpack_pack_int(pk, rv);
    ol__ipc_str(pk, where);
    item_done();
}

static void free_agent(struct ol_agent *a)
{
    free(a->timers);
    a->magic = 0;
    free(a);
}

static int do_open(struct ol__mpr *r)
{
    struct ol_agent *a;
    uint64_t slot, gen, id;
    const void *cfg = NULL, *state = NULL;
    uint32_t cfg_len, state_len = 0, nt;
    int rv;

    if (ol__mpr_uint(r, &slot) || slot > 1u << 24 || ol__mpr_uint(r, &gen))
        return OL_EMALFORMED;
    a = calloc(1, sizeof *a);
    if (a == NULL)
        return OL_ENOMEM;
    a->magic = AGENT_MAGIC;
    a->slot = (uint32_t)slot;
    a->gen = (uint32_t)gen;
    if (ol__mpr_strcpy(r, a->name, sizeof a->name) ||
        ol__mpr_bin(r, &cfg, &cfg_len))
        goto bad;
    if (ol__mpr_is_nil(r)) {
        if (ol__mpr_nil(r))
            goto bad;
    } else if (ol__mpr_bin(r, &state, &state_len)) {
        goto bad;
    }
    if (ol__mpr_array(r, &nt) || nt > OL_AGENT_TIMERS_MAX)
        goto bad;
    if (nt) {
        a->timers = malloc(OL_AGENT_TIMERS_MAX * sizeof *a->timers);
        if (a->timers == NULL) {
            free_agent(a);
            return OL_ENOMEM;
        }
    }
    for (uint32_t i = 0; i < nt; i++) {
        if (ol__mpr_uint(r, &id))
            goto bad;
        a->timers[a->n_timers++] = id;
    }
    if (a->slot >= H.n_slots) {
        uint32_t n = a->slot + 64;
        struct ol_agent **s = realloc(H.slots, n * sizeof *s);

        if (s == NULL) {
            free_agent(a);
            return OL_ENOMEM;
        }
        memset(s + H.n_slots, 0, (n - H.n_slots) * sizeof *s);
        H.slots = s;
        H.n_slots = n;
    }
    if (H.slots[a->slot]) {
        /* The node reuses a slot only after closing it. */
        free_agent(a);
        return OL_EMALFORMED;
    }
    H.slots[a->slot] = a;
    H.logs = 0;
    mark_begin(a, OL_MARK_OPEN, 0);
    rv = H.vt->open(a, cfg, cfg_len, &a->self);
    mark_end();
    if (rv != 0) {
        reply_open(a, 0, 0, rv, "open");
        return 0;
    }
    a->open = 1;
    if (state) {
        mark_begin(a, OL_MARK_RESTORE, 0);
        rv = H.vt->restore(a->self, a, state, state_len);
        mark_end();
        if (rv != 0) {
            reply_open(a, 0, 0, rv, "restore");
            return 0;
        }
    }
    reply_open(a, 0, 0, 0, NULL);
    return 0;
bad:
    free_agent(a);
    return OL_EMALFORMED;
}

static void step_reply_error(uint32_t slot, uint32_t gen, int rv)
{
    msgpack_packer *pk = packer();

    msgpack_pack_array(pk, 10);
    msgpack_pack_uint32(pk, OL_IPC_R_STEP);
    msgpack_pack_uint32(pk, slot);
    msgpack_pack_uint32(pk, gen);
    msgpack_pack_int(pk, rv);
    msgpack_pack_uint32(pk, 0);
    msgpack_pack_array(pk, 0);
    msgpack_pack_array(pk, 0);
    msgpack_pack_uint32(pk, 0);
    msgpack_pack_nil(pk);
    msgpack_pack_int(pk, 0);
    item_done();
}

static struct done *done_get(int64_t token, const struct ol_agent *a)
{
    if (token < 0 || (uint64_t)token >= H.n_done)
        return NULL;
    if (!H.done[token].used || H.done[token].slot != a->slot ||
        H.done[token].gen != a->gen)
        return NULL;
    return &H.done[token];
}

static int do_step(struct ol__mpr *r)
{
    struct ol__ipc_step s;
    struct ol_agent *a;
    struct ol_event e;
    msgpack_packer *pk;
    char from[OL_NAME_MAX + 2], prev[OL_NAME_MAX + 2];
    int rv, save;

    if (ol__ipc_read_step(r, &s) != 0)
        return OL_EMALFORMED;
    a = lookup(s.slot, s.gen);
    if (a == NULL || !a->open || a->closing) {
        step_reply_error(s.slot, s.gen, OL_AGENT_ESTATE);
        return 0;
    }
    memset(&e, 0, sizeof e);
    e.type = s.type;
    e.size = sizeof e;
    e.now_ms = s.now_ms;
    e.node = H.o->node;
    e.epoch = s.epoch;
    a->epoch = s.epoch;
    a->n_outbox = s.n_outbox;
    a->final_pending = (s.flags & OL_IPC_FINAL) != 0;
    if (s.s) {
        char *dst = s.type == OL_EVENT_MESSAGE ? from : prev;

        if (s.s_len > OL_NAME_MAX + 1)
            return OL_EMALFORMED;
        memcpy(dst, s.s, s.s_len);
        dst[s.s_len] = '\0';
    }
    switch (s.type) {
    case OL_EVENT_RESUME:
        e.seq = s.a1;
        e.downtime_ms = s.a2;
        e.prev_node = s.s ? prev : "unknown";
        break;
    case OL_EVENT_TIMER: {
        int i = timer_find(a, s.a1);

        e.timer_id = s.a1;
        e.due_ms = s.a2;
        if ((s.flags & OL_IPC_DISARMED) && i >= 0)
            a->timers[i] = a->timers[--a->n_timers];
        break;
    }
    case OL_EVENT_MESSAGE:
        e.from = s.s ? from : "";
        e.data = s.b;
        e.len = s.b_len;
        break;
    case OL_EVENT_WORK: {
        struct done *d = done_get(s.a2, a);

        if (d == NULL)
            return OL_EMALFORMED;
        e.work_id = d->id;
        e.work_arg = d->arg;
        d->used = 0;
        break;
    }
    case OL_EVENT_STOP:
        e.final = (int)s.a1;
        break;
    }

    ol__buf_reset(&H.ops);
    ol__buf_reset(&H.sends);
    H.n_ops = H.n_sends = H.works = H.logs = 0;
    H.ckpt_requested = 0;
    a->in_handle = 1;
    mark_begin(a, OL_MARK_HANDLE, s.type);
    rv = H.vt->handle(a->self, a, &e);
    mark_end();
    a->in_handle = 0;

    pk = packer();
    msgpack_pack_array(pk, 10);
    msgpack_pack_uint32(pk, OL_IPC_R_STEP);
    msgpack_pack_uint32(pk, a->slot);
    msgpack_pack_uint32(pk, a->gen);
    msgpack_pack_int(pk, rv);
    msgpack_pack_uint32(pk, H.ckpt_requested ? OL_IPC_CKPT_REQ : 0);
    msgpack_pack_array(pk, H.n_ops);
    ol__buf_append(ahost_out(), H.ops.base, H.ops.len);
    msgpack_pack_array(pk, H.n_sends);
    ol__buf_append(ahost_out(), H.sends.base, H.sends.len);
    msgpack_pack_uint32(pk, H.works);
    save = rv == 0 && ((s.flags & OL_IPC_SAVE_AFTER) || H.ckpt_requested ||
                       a->n_outbox >= OL_AGENT_OUTBOX_MAX / 2 ||
                       s.type == OL_EVENT_STOP);
    if (save) {
        pack_save(a, pk);
        a->n_outbox = 0;
    } else {
        msgpack_pack_nil(pk);
        msgpack_pack_int(pk, 0);
    }
    item_done();
    return 0;
}

static int do_save(struct ol__mpr *r)
{
    uint64_t slot, gen;
    struct ol_agent *a;
    msgpack_packer *pk;

    if (ol__mpr_uint(r, &slot) || ol__mpr_uint(r, &gen) ||
        slot > UINT32_MAX || gen > UINT32_MAX)
        return OL_EMALFORMED;
    pk = packer();
    a = lookup((uint32_t)slot, (uint32_t)gen);
    msgpack_pack_array(pk, 5);
    msgpack_pack_uint32(pk, OL_IPC_R_SAVE);
    msgpack_pack_uint64(pk, slot);
    msgpack_pack_uint64(pk, gen);
    if (a == NULL || !a->open || a->closing) {
        msgpack_pack_nil(pk);
        msgpack_pack_int(pk, OL_AGENT_ESTATE);
    } else {
        H.logs = 0;
        pack_save(a, pk);
        a->n_outbox = 0;
    }
    item_done();
    return 0;
}

static void closed(struct ol_agent *a)
{
    if (a->self && H.vt->close) {
        mark_begin(a, OL_MARK_CLOSE, 0);
        H.vt->close(a->self);
        mark_end();
    }
    free_agent(a);
}

/* Deliver a finished work item to an instance that is going away: the
 * plugin gets its argument back, and nothing it does is recorded. */
static void work_to_closing(struct ol_agent *a, uint64_t id, void *arg)
{
    struct ol_event e;

    memset(&e, 0, sizeof e);
    e.type = OL_EVENT_WORK;
    e.size = sizeof e;
    e.now_ms = wall_ms();
    e.node = H.o->node;
    e.epoch = a->epoch;
    e.work_id = id;
    e.work_arg = arg;
    a->in_handle = 0;
    mark_begin(a, OL_MARK_HANDLE, OL_EVENT_WORK);
    (void)H.vt->handle(a->self, a, &e);
    mark_end();
}

static void finish_closing(void)
{
    struct ol_agent **pp = &H.closing, *a;

    while ((a = *pp) != NULL) {
        if (a->work_pending) {
            pp = &a->next_closing;
            continue;
        }
        *pp = a->next_closing;
        closed(a);
    }
}

static int do_close(struct ol__mpr *r)
{
    uint64_t slot, gen;
    struct ol_agent *a;

    if (ol__mpr_uint(r, &slot) || ol__mpr_uint(r, &gen) ||
        slot > UINT32_MAX || gen > UINT32_MAX)
        return OL_EMALFORMED;
    a = lookup((uint32_t)slot, (uint32_t)gen);
    if (a == NULL)
        return 0;
    H.slots[a->slot] = NULL;
    a->closing = 1;
    /* Finished work the node has not delivered comes back now. */
    for (uint32_t i = 0; i < H.n_done; i++) {
        struct done *d = &H.done[i];

        if (d->used && d->slot == a->slot && d->gen == a->gen) {
            d->used = 0;
            if (a->open)
                work_to_closing(a, d->id, d->arg);
        }
    }
    a->next_closing = H.closing;
    H.closing = a;
    if (!a->open)
        a->self = NULL;
    finish_closing();
    return 0;
}

static int do_full(struct ol__mpr *r)
{
    char name[OL_NAME_MAX + 1];
    bool full;
    char *key;

    if (ol__mpr_strcpy(r, name, sizeof name) || ol__mpr_bool(r, &full))
        return OL_EMALFORMED;
    key = ol__map_get(&H.full, name);
    if (full && key == NULL) {
        key = strdup(name);
        if (key == NULL || ol__map_put(&H.full, key, key) != 0)
            free(key);
    } else if (!full && key) {
        ol__map_del(&H.full, name);
        free(key);
    }
    return 0;
}

int ahost_svc_batch(const void *p, size_t len)
{
    struct ol__mpr r;
    uint32_t n, m;
    uint64_t type;
    int rv = 0;

    ol__mpr_init(&r, p, len);
    if (ol__mpr_array(&r, &n) || n != 2 || ol__mpr_uint(&r, &type) ||
        type != OL_IPC_BATCH || ol__mpr_array(&r, &n))
        return OL_EMALFORMED;
    for (uint32_t i = 0; i < n && rv == 0; i++) {
        if (ol__mpr_array(&r, &m) || m < 1 || ol__mpr_uint(&r, &type))
            return OL_EMALFORMED;
        switch (type) {
        case OL_IPC_OPEN:
            rv = m == 7 ? do_open(&r) : OL_EMALFORMED;
            break;
        case OL_IPC_STEP:
            rv = m == 12 ? do_step(&r) : OL_EMALFORMED;
            break;
        case OL_IPC_SAVE:
            rv = m == 3 ? do_save(&r) : OL_EMALFORMED;
            break;
        case OL_IPC_CLOSE:
            rv = m == 3 ? do_close(&r) : OL_EMALFORMED;
            break;
        case OL_IPC_FULL:
            rv = m == 3 ? do_full(&r) : OL_EMALFORMED;
            break;
        default:
            rv = OL_EMALFORMED;
        }
    }
    return rv;
}

static int done_put(struct ol_agent *a, uint64_t id, void *arg,
                    uint64_t *token)
{
    uint32_t i;

    for (i = 0; i < H.n_done && H.done[i].used; i++)
        ;
    if (i == H.n_done) {
        uint32_t n = H.n_done ? H.n_done * 2 : 64;
        struct done *d = realloc(H.done, n * sizeof *d);

        if (d == NULL)
            return OL_ENOMEM;
        memset(d + H.n_done, 0, (n - H.n_done) * sizeof *d);
        H.done = d;
        H.n_done = n;
    }
    H.done[i].used = 1;
    H.done[i].arg = arg;
    H.done[i].id = id;
    H.done[i].slot = a->slot;
    H.done[i].gen = a->gen;
    *token = i;
    return 0;
}

void ahost_svc_work_done(void)
{
    struct ol__witem *it = ol__wpool_take(H.pool), *next;

    for (; it; it = next) {
        struct ol_agent *a = lookup(it->slot, it->gen);
        uint64_t token;

        next = it->next;
        if (a == NULL) {
            /* Its instance is closing: hand the argument back there. */
            for (a = H.closing; a; a = a->next_closing)
                if (a->slot == it->slot && a->gen == it->gen)
                    break;
            if (a) {
                a->work_pending--;
                if (a->open)
                    work_to_closing(a, it->id, it->arg);
            }
        } else {
            a->work_pending--;
            if (done_put(a, it->id, it->arg, &token) == 0) {
                msgpack_packer *pk = packer();

                item_head(pk, 5, OL_IPC_R_WORK, a);
                msgpack_pack_uint64(pk, it->id);
                msgpack_pack_uint64(pk, token);
                item_done();
            }
        }
        free(it);
    }
    finish_closing();
}
