/*
 * The items of a batch from the node, in an agent host: OPEN, STEP, SAVE,
 * CLOSE and FULL, each run under a step mark, and finished work handed
 * back.  A step's result carries what the plugin's handler recorded
 * (svc.c) and, when the node asked for it or the plugin wants a
 * checkpoint, the saved state, written straight into the frame it leaves
 * in.  An instance that is closing gets its outstanding work back before
 * close() runs.  The event a STEP delivers is built in items_event.c.
 */
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "runtime/ipc.h"
#include "host_int.h"

/* ---- calling the plugin under a step mark ---- */

static void mark_begin(const struct ol_agent *a, uint32_t phase,
                       uint32_t event)
{
    ol__mark_begin(&ah.mark->main, phase, a->slot, a->gen, event);
}

static void mark_end(void)
{
    ol__mark_end(&ah.mark->main);
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
    rv = ah.vt->save(a->self, a, &sink);
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

struct ol_agent *ahost_lookup(uint32_t slot, uint32_t gen)
{
    struct ol_agent *a;

    if (slot >= ah.n_slots)
        return NULL;
    a = ah.slots[slot];
    return a && a->gen == gen ? a : NULL;
}

static void reply_open(struct ol_agent *a, uint32_t slot, uint32_t gen,
                       int rv, const char *where)
{
    msgpack_packer *pk = ahost_packer();

    msgpack_pack_array(pk, 6);
    msgpack_pack_uint32(pk, OL_IPC_R_OPEN);
    msgpack_pack_uint32(pk, a ? a->slot : slot);
    msgpack_pack_uint32(pk, a ? a->gen : gen);
    msgpack_pack_int(pk, rv);
    ol__ipc_str(pk, where);
    ol__ipc_str(pk, rv != 0 && a ? a->err : NULL);
    ahost_item_done();
}

static void free_agent(struct ol_agent *a)
{
    free(a->timers);
    a->magic = 0;
    free(a);
}

/* The rest of an OPEN item into `a`: its name, config, state and armed
 * timers.  Returns 0, OL_EMALFORMED or OL_ENOMEM. */
static int read_open(struct ol__mpr *r, struct ol_agent *a,
                     const void **cfg, uint32_t *cfg_len,
                     const void **state, uint32_t *state_len)
{
    uint64_t id;
    uint32_t nt;

    if (ol__mpr_strcpy(r, a->name, sizeof a->name) ||
        ol__mpr_bin(r, cfg, cfg_len))
        return OL_EMALFORMED;
    if (ol__mpr_is_nil(r)) {
        if (ol__mpr_nil(r))
            return OL_EMALFORMED;
    } else if (ol__mpr_bin(r, state, state_len)) {
        return OL_EMALFORMED;
    }
    if (ol__mpr_array(r, &nt) || nt > OL_AGENT_TIMERS_MAX)
        return OL_EMALFORMED;
    if (nt) {
        a->timers = malloc(OL_AGENT_TIMERS_MAX * sizeof *a->timers);
        if (a->timers == NULL)
            return OL_ENOMEM;
    }
    for (uint32_t i = 0; i < nt; i++) {
        if (ol__mpr_uint(r, &id))
            return OL_EMALFORMED;
        a->timers[a->n_timers++] = id;
    }
    return 0;
}

/* Put `a` in its slot; the node reuses a slot only after closing it. */
static int take_slot(struct ol_agent *a)
{
    if (a->slot >= ah.n_slots) {
        uint32_t n = a->slot + 64;
        struct ol_agent **s = realloc(ah.slots, n * sizeof *s);

        if (s == NULL)
            return OL_ENOMEM;
        memset(s + ah.n_slots, 0, (n - ah.n_slots) * sizeof *s);
        ah.slots = s;
        ah.n_slots = n;
    }
    if (ah.slots[a->slot])
        return OL_EMALFORMED;
    ah.slots[a->slot] = a;
    return 0;
}

/* Open the plugin's instance, restore its state, and reply. */
static void open_agent(struct ol_agent *a, const void *cfg, uint32_t cfg_len,
                       const void *state, uint32_t state_len)
{
    int rv;

    ah.logs = 0;
    a->err[0] = '\0';
    mark_begin(a, OL_MARK_OPEN, 0);
    rv = ah.vt->open(a, cfg, cfg_len, &a->self);
    mark_end();
    if (rv != 0) {
        reply_open(a, 0, 0, rv, "open");
        return;
    }
    a->open = 1;
    if (state) {
        a->err[0] = '\0';
        mark_begin(a, OL_MARK_RESTORE, 0);
        rv = ah.vt->restore(a->self, a, state, state_len);
        mark_end();
        if (rv != 0) {
            reply_open(a, 0, 0, rv, "restore");
            return;
        }
    }
    reply_open(a, 0, 0, 0, NULL);
}

static int do_open(struct ol__mpr *r)
{
    struct ol_agent *a;
    uint64_t slot, gen;
    const void *cfg = NULL, *state = NULL;
    uint32_t cfg_len, state_len = 0;
    int rv;

    if (ol__mpr_uint(r, &slot) || slot > 1u << 24 || ol__mpr_uint(r, &gen))
        return OL_EMALFORMED;
    a = calloc(1, sizeof *a);
    if (a == NULL)
        return OL_ENOMEM;
    a->magic = AGENT_MAGIC;
    a->slot = (uint32_t)slot;
    a->gen = (uint32_t)gen;
    if ((rv = read_open(r, a, &cfg, &cfg_len, &state, &state_len)) != 0 ||
        (rv = take_slot(a)) != 0) {
        free_agent(a);
        return rv;
    }
    open_agent(a, cfg, cfg_len, state, state_len);
    return 0;
}

/* An R_STEP that recorded nothing. */
static void step_reply_empty(uint32_t slot, uint32_t gen, int rv,
                             uint32_t flags)
{
    msgpack_packer *pk = ahost_packer();

    msgpack_pack_array(pk, 11);
    msgpack_pack_uint32(pk, OL_IPC_R_STEP);
    msgpack_pack_uint32(pk, slot);
    msgpack_pack_uint32(pk, gen);
    msgpack_pack_int(pk, rv);
    msgpack_pack_uint32(pk, flags);
    msgpack_pack_array(pk, 0);
    msgpack_pack_array(pk, 0);
    msgpack_pack_uint32(pk, 0);
    msgpack_pack_nil(pk);
    msgpack_pack_int(pk, 0);
    msgpack_pack_array(pk, 0);
    ahost_item_done();
}

/* The R_STEP of a handled event: what it recorded, and its state when
 * the node asked for a save or the step calls for one. */
static void reply_step(struct ol_agent *a, const struct ol__ipc_step *s,
                       int rv)
{
    msgpack_packer *pk = ahost_packer();
    int save;

    msgpack_pack_array(pk, 11);
    msgpack_pack_uint32(pk, OL_IPC_R_STEP);
    msgpack_pack_uint32(pk, a->slot);
    msgpack_pack_uint32(pk, a->gen);
    msgpack_pack_int(pk, rv);
    msgpack_pack_uint32(pk, ah.ckpt_requested ? OL_IPC_CKPT_REQ : 0);
    msgpack_pack_array(pk, ah.n_ops);
    ol__buf_append(ahost_out(), ah.ops.base, ah.ops.len);
    msgpack_pack_array(pk, ah.n_sends);
    ol__buf_append(ahost_out(), ah.sends.base, ah.sends.len);
    msgpack_pack_uint32(pk, ah.works);
    save = rv == 0 && ((s->flags & OL_IPC_SAVE_AFTER) || ah.ckpt_requested ||
                       a->n_outbox >= OL_AGENT_OUTBOX_MAX / 2 ||
                       s->type == OL_EVENT_STOP);
    if (save) {
        pack_save(a, pk);
        a->n_outbox = 0;
    } else {
        msgpack_pack_nil(pk);
        msgpack_pack_int(pk, 0);
    }
    msgpack_pack_array(pk, ah.n_effects);
    ol__buf_append(ahost_out(), ah.effects.base, ah.effects.len);
    ahost_item_done();
}

static int do_step(struct ol__mpr *r)
{
    struct ol__ipc_step s;
    struct ahost_step_text t;
    struct ol_agent *a;
    struct ol_event e;
    int rv;

    if (ol__ipc_read_step(r, &s) != 0)
        return OL_EMALFORMED;
    a = ahost_lookup(s.slot, s.gen);
    if (a == NULL || !a->open || a->closing) {
        step_reply_empty(s.slot, s.gen, OL_AGENT_ESTATE, 0);
        return 0;
    }
    /* The node's lease ran out before the step could start here: the
     * node may no longer own the agent, so the plugin never sees it. */
    if (s.run_by && ol__boot_ms() > s.run_by) {
        step_reply_empty(s.slot, s.gen, 0, OL_IPC_NOT_RUN);
        return 0;
    }
    a->epoch = s.epoch;
    a->n_outbox = s.n_outbox;
    a->final_pending = (s.flags & OL_IPC_FINAL) != 0;
    a->fx_ok = (s.flags & OL_IPC_FX_OK) != 0;
    a->fx_open = s.flags >> OL_IPC_FX_OPEN_SHIFT;
    if (ahost_step_event(a, &s, &e, &t) != 0)
        return OL_EMALFORMED;
    ol__buf_reset(&ah.ops);
    ol__buf_reset(&ah.sends);
    ol__buf_reset(&ah.effects);
    ah.n_ops = ah.n_sends = ah.works = ah.logs = ah.n_effects = 0;
    ah.ckpt_requested = 0;
    a->in_handle = 1;
    mark_begin(a, OL_MARK_HANDLE, s.type);
    rv = ah.vt->handle(a->self, a, &e);
    mark_end();
    a->in_handle = 0;
    reply_step(a, &s, rv);
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
    pk = ahost_packer();
    a = ahost_lookup((uint32_t)slot, (uint32_t)gen);
    msgpack_pack_array(pk, 5);
    msgpack_pack_uint32(pk, OL_IPC_R_SAVE);
    msgpack_pack_uint64(pk, slot);
    msgpack_pack_uint64(pk, gen);
    if (a == NULL || !a->open || a->closing) {
        msgpack_pack_nil(pk);
        msgpack_pack_int(pk, OL_AGENT_ESTATE);
    } else {
        ah.logs = 0;
        pack_save(a, pk);
        a->n_outbox = 0;
    }
    ahost_item_done();
    return 0;
}

static void closed(struct ol_agent *a)
{
    if (a->self && ah.vt->close) {
        mark_begin(a, OL_MARK_CLOSE, 0);
        ah.vt->close(a->self);
        mark_end();
    }
    free_agent(a);
}

/* Deliver a finished work item to an instance that is going away: the
 * plugin gets its argument back, and nothing it does is recorded. */
static void work_to_closing(struct ol_agent *a, uint64_t id, void *arg,
                            uint64_t epoch)
{
    struct ol_event e;

    memset(&e, 0, sizeof e);
    e.type = OL_EVENT_WORK;
    e.size = sizeof e;
    e.now_ms = ahost_wall_ms();
    e.node = ah.o->node;
    e.epoch = a->epoch;
    e.work_id = id;
    e.work_arg = arg;
    e.work_epoch = epoch;
    e.fenced = 1;
    a->in_handle = 0;
    mark_begin(a, OL_MARK_HANDLE, OL_EVENT_WORK);
    (void)ah.vt->handle(a->self, a, &e);
    mark_end();
}

static void finish_closing(void)
{
    struct ol_agent **pp = &ah.closing, *a;

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
    a = ahost_lookup((uint32_t)slot, (uint32_t)gen);
    if (a == NULL)
        return 0;
    ah.slots[a->slot] = NULL;
    a->closing = 1;
    /* Finished work the node has not delivered comes back now. */
    for (uint32_t i = 0; i < ah.n_done; i++) {
        struct done *d = &ah.done[i];

        if (d->used && d->slot == a->slot && d->gen == a->gen) {
            d->used = 0;
            if (a->open)
                work_to_closing(a, d->id, d->arg, d->epoch);
        }
    }
    a->next_closing = ah.closing;
    ah.closing = a;
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
    key = ol__map_get(&ah.full, name);
    if (full && key == NULL) {
        key = strdup(name);
        if (key == NULL || ol__map_put(&ah.full, key, key) != 0)
            free(key);
    } else if (!full && key) {
        ol__map_del(&ah.full, name);
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
            rv = m == 13 ? do_step(&r) : OL_EMALFORMED;
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
        case OL_IPC_PERFORM:
            rv = m == 14 ? ahost_do_perform(&r) : OL_EMALFORMED;
            break;
        default:
            rv = OL_EMALFORMED;
        }
    }
    return rv;
}

static int done_put(struct ol_agent *a, const struct ol__witem *it,
                    uint64_t *token)
{
    uint32_t i;

    for (i = 0; i < ah.n_done && ah.done[i].used; i++)
        ;
    if (i == ah.n_done) {
        uint32_t n = ah.n_done ? ah.n_done * 2 : 64;
        struct done *d = realloc(ah.done, n * sizeof *d);

        if (d == NULL)
            return OL_ENOMEM;
        memset(d + ah.n_done, 0, (n - ah.n_done) * sizeof *d);
        ah.done = d;
        ah.n_done = n;
    }
    ah.done[i].used = 1;
    ah.done[i].arg = it->arg;
    ah.done[i].id = it->id;
    ah.done[i].epoch = it->epoch;
    ah.done[i].slot = a->slot;
    ah.done[i].gen = a->gen;
    *token = i;
    return 0;
}

void ahost_svc_work_done(void)
{
    struct ol__witem *it = ol__wpool_take(ah.pool), *next;

    for (; it; it = next) {
        struct ol_agent *a = ahost_lookup(it->slot, it->gen);
        uint64_t token;

        next = it->next;
        if (it->fn == ol__fxjob_run) {
            ahost_fx_done(it);
            continue;
        }
        if (a == NULL) {
            /* Its instance is closing: hand the argument back there. */
            for (a = ah.closing; a; a = a->next_closing)
                if (a->slot == it->slot && a->gen == it->gen)
                    break;
            if (a) {
                a->work_pending--;
                if (a->open)
                    work_to_closing(a, it->id, it->arg, it->epoch);
            }
        } else {
            a->work_pending--;
            if (done_put(a, it, &token) == 0) {
                msgpack_packer *pk = ahost_packer();

                ahost_item_head(pk, 5, OL_IPC_R_WORK, a);
                msgpack_pack_uint64(pk, it->id);
                msgpack_pack_uint64(pk, token);
                ahost_item_done();
            }
        }
        free(it);
    }
    finish_closing();
}
