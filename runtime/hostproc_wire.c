/*
 * The wire to an agent-host process, the node's side: items queued for a
 * host and written as one frame just before the loop would block, the
 * slots that name its agents, and the frames that come back, cut from the
 * stream and dispatched item by item to the agents they name.  A frame or
 * item that is not what ipc.h says gets the host killed: nothing it sends
 * is trusted.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "code.h"
#include "base/err.h"
#include "hostproc.h"
#include "base/log.h"
#include "node.h"
#include "agent.h"
#include "logs.h"
#include "step.h"
#include "fx.h"

#define FRAME_PREFIX 11 /* header: length, [BATCH, array32 count] */

/* ---- writing ---- */

struct wreq {
    uv_write_t req;
    struct ol__hostproc *hp;
    uint8_t *base;
    size_t len;
};

static void write_cb(uv_write_t *req, int status)
{
    struct wreq *w = req->data;

    if (w->hp->write_backlog >= w->len)
        w->hp->write_backlog -= w->len;
    (void)status; /* a broken pipe shows up as the host's exit */
    free(w->base);
    free(w);
}

static void flusher_cb(uv_prepare_t *h)
{
    struct ol__node *n = h->data;

    ol__hostprocs_flush(n);
    if (n->hp_dirty == NULL)
        uv_prepare_stop(h);
}

static void mark_dirty(struct ol__hostproc *hp)
{
    struct ol__node *n = hp->node;

    /* Once the node closed its flusher, nothing more is sent (a closed
     * handle started would count as active for ever). */
    if (hp->dirty || hp->state == OL_HP_DEAD ||
        uv_is_closing((uv_handle_t *)&n->hp_flusher))
        return;
    hp->dirty = 1;
    hp->dirty_next = n->hp_dirty;
    n->hp_dirty = hp;
    if (!uv_is_active((uv_handle_t *)&n->hp_flusher))
        uv_prepare_start(&n->hp_flusher, flusher_cb);
}

static msgpack_packer *item(struct ol__hostproc *hp, msgpack_packer *pk)
{
    if (hp->out.len == 0) {
        static const uint8_t room[FRAME_PREFIX];

        (void)ol__buf_append(&hp->out, room, sizeof room);
    }
    msgpack_packer_init(pk, &hp->out, ol__buf_write);
    hp->out_items++;
    hp->items_out++;
    mark_dirty(hp);
    return pk;
}

void ol__hp_flush_one(struct ol__hostproc *hp)
{
    struct wreq *w;
    uv_buf_t b;
    uint8_t *h;
    int rv;

    if (hp->state != OL_HP_READY || hp->out_items == 0)
        return;
    if (hp->out.base == NULL) {
        ol__hostproc_kill(hp, UINT32_MAX, 0, "out of memory queueing steps");
        return;
    }
    h = hp->out.base;
    ol__ipc_hdr(h, (uint32_t)(hp->out.len - OL_IPC_HDR));
    h[4] = 0x92;
    h[5] = OL_IPC_BATCH;
    h[6] = 0xdd;
    h[7] = (uint8_t)(hp->out_items >> 24);
    h[8] = (uint8_t)(hp->out_items >> 16);
    h[9] = (uint8_t)(hp->out_items >> 8);
    h[10] = (uint8_t)hp->out_items;
    w = calloc(1, sizeof *w);
    if (w == NULL) {
        ol__hostproc_kill(hp, UINT32_MAX, 0, "out of memory queueing steps");
        return;
    }
    w->hp = hp;
    w->base = ol__buf_steal(&hp->out, &w->len);
    w->req.data = w;
    hp->out_items = 0;
    hp->frames_out++;
    b = uv_buf_init((char *)w->base, (unsigned)w->len);
    rv = uv_write(&w->req, (uv_stream_t *)&hp->pipe, &b, 1, write_cb);
    if (rv != 0) {
        free(w->base);
        free(w);
        return; /* the exit callback deals with the host */
    }
    hp->write_backlog += w->len;
}

void ol__hostprocs_flush(struct ol__node *n)
{
    struct ol__hostproc *hp = n->hp_dirty, *next;

    n->hp_dirty = NULL;
    for (; hp; hp = next) {
        next = hp->dirty_next;
        hp->dirty = 0;
        hp->dirty_next = NULL;
        /* A starting host's items wait for its HELLO. */
        if (hp->state == OL_HP_READY)
            ol__hp_flush_one(hp);
    }
}

/* ---- items ---- */

void ol__hp_open(struct ol__hostproc *hp, struct ol_agent *a,
                 const void *config, size_t config_len, const void *state,
                 size_t state_len, const uint64_t *timers, uint32_t n_timers)
{
    msgpack_packer pk;

    item(hp, &pk);
    msgpack_pack_array(&pk, 7);
    msgpack_pack_uint32(&pk, OL_IPC_OPEN);
    msgpack_pack_uint32(&pk, a->slot);
    msgpack_pack_uint32(&pk, a->gen);
    ol__ipc_str(&pk, a->name);
    ol__ipc_bin(&pk, config, config_len);
    if (state)
        ol__ipc_bin(&pk, state, state_len);
    else
        msgpack_pack_nil(&pk);
    msgpack_pack_array(&pk, n_timers);
    for (uint32_t i = 0; i < n_timers; i++)
        msgpack_pack_uint64(&pk, timers[i]);
}

void ol__hp_step(struct ol__hostproc *hp, const struct ol__ipc_step *s)
{
    msgpack_packer pk;

    ol__ipc_pack_step(item(hp, &pk), s);
}

void ol__hp_save(struct ol__hostproc *hp, struct ol_agent *a)
{
    msgpack_packer pk;

    item(hp, &pk);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint32(&pk, OL_IPC_SAVE);
    msgpack_pack_uint32(&pk, a->slot);
    msgpack_pack_uint32(&pk, a->gen);
}

void ol__hp_perform(struct ol__hostproc *hp, const struct ol__ipc_perform *p)
{
    msgpack_packer pk;

    ol__ipc_pack_perform(item(hp, &pk), p);
}

void ol__hp_full(struct ol__hostproc *hp, const char *name, int full)
{
    msgpack_packer pk;

    if (hp->state == OL_HP_DEAD)
        return;
    item(hp, &pk);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint32(&pk, OL_IPC_FULL);
    ol__ipc_str(&pk, name);
    if (full)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
}

static void close_item(struct ol__hostproc *hp, uint32_t slot, uint32_t gen)
{
    msgpack_packer pk;

    if (hp->state == OL_HP_DEAD)
        return;
    item(hp, &pk);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint32(&pk, OL_IPC_CLOSE);
    msgpack_pack_uint32(&pk, slot);
    msgpack_pack_uint32(&pk, gen);
}

/* ---- slots ---- */

int ol__hostproc_attach(struct ol__hostproc *hp, struct ol_agent *a)
{
    uint32_t i;

    if (hp->n_agents == hp->n_slots) {
        uint32_t n = hp->n_slots ? hp->n_slots * 2 : 64;
        struct ol_agent **s = realloc(hp->slots, n * sizeof *s);
        uint32_t *g;

        if (s == NULL)
            return OL_ENOMEM;
        hp->slots = s;
        g = realloc(hp->gens, n * sizeof *g);
        if (g == NULL)
            return OL_ENOMEM;
        hp->gens = g;
        memset(s + hp->n_slots, 0, (n - hp->n_slots) * sizeof *s);
        memset(g + hp->n_slots, 0, (n - hp->n_slots) * sizeof *g);
        hp->free_hint = hp->n_slots;
        hp->n_slots = n;
    }
    for (i = hp->free_hint; i < hp->n_slots && hp->slots[i]; i++)
        ;
    if (i == hp->n_slots)
        for (i = 0; hp->slots[i]; i++)
            ;
    hp->slots[i] = a;
    hp->gens[i]++;
    hp->free_hint = i + 1;
    hp->n_agents++;
    a->hp = hp;
    a->slot = i;
    a->gen = hp->gens[i];
    return 0;
}

void ol__hostproc_detach(struct ol__hostproc *hp, struct ol_agent *a)
{
    if (hp == NULL || a->slot >= hp->n_slots || hp->slots[a->slot] != a)
        return;
    close_item(hp, a->slot, a->gen);
    hp->slots[a->slot] = NULL;
    if (a->slot < hp->free_hint)
        hp->free_hint = a->slot;
    hp->n_agents--;
    a->hp = NULL;
}

static struct ol_agent *slot_agent(struct ol__hostproc *hp, uint64_t slot,
                                   uint64_t gen)
{
    if (slot >= hp->n_slots || hp->gens[slot] != gen)
        return NULL;
    return hp->slots[slot];
}

/* ---- reading ---- */

static void hello(struct ol__hostproc *hp, struct ol__mpr *r)
{
    int64_t status;
    char kind[OL_KIND_MAX + 2], version[OL_VERSION_MAX + 2];
    char msg[OL_ERRMSG_SIZE];

    if (ol__mpr_int(r, &status) ||
        ol__mpr_strcpy(r, kind, sizeof kind) ||
        ol__mpr_strcpy(r, version, sizeof version) ||
        ol__mpr_strcpy(r, msg, sizeof msg) || !ol__mpr_done(r)) {
        ol__hostproc_kill(hp, UINT32_MAX, 0, "malformed HELLO");
        return;
    }
    if (status != 0) {
        struct ol__code *c = hp->code;

        /* A plugin that does not load fails the code; the host exits. */
        if (c)
            ol__code_loaded(c, (int)status, "", msg);
        hp->state = OL_HP_DEAD;
        return;
    }
    if (hp->code && (strcmp(kind, hp->code->kind) != 0 || version[0] == 0 ||
                     strlen(version) > OL_VERSION_MAX)) {
        ol__hostproc_kill(hp, UINT32_MAX, 0, "HELLO names another plugin");
        return;
    }
    hp->state = OL_HP_READY;
    if (hp->code)
        ol__code_loaded(hp->code, 0, version, "");
    if (hp->out_items)
        mark_dirty(hp);
}

/* A string or nil (read as ""). */
static int opt_str(struct ol__mpr *r, char *out, size_t cap)
{
    if (ol__mpr_is_nil(r)) {
        out[0] = '\0';
        return ol__mpr_nil(r);
    }
    return ol__mpr_strcpy(r, out, cap);
}

/* The rest of an OPEN reply (m items in all) for agent `a` (NULL: gone). */
static int r_open(struct ol__mpr *r, uint32_t m, struct ol_agent *a)
{
    int64_t rv;
    char where[16], msg[OL_AGENT_ERROR_MAX + 1] = "";

    if ((m != 5 && m != 6) || ol__mpr_int(r, &rv) ||
        opt_str(r, where, sizeof where) ||
        (m == 6 && opt_str(r, msg, sizeof msg)))
        return OL_EMALFORMED;
    if (a)
        ol__agent_opened(a, (int)rv, where, msg);
    return 0;
}

static int r_save(struct ol__mpr *r, uint32_t m, struct ol_agent *a)
{
    const void *state = NULL;
    uint32_t len = 0;
    int64_t rv;

    if (m != 5)
        return OL_EMALFORMED;
    if (ol__mpr_is_nil(r)) {
        if (ol__mpr_nil(r))
            return OL_EMALFORMED;
    } else if (ol__mpr_bin(r, &state, &len)) {
        return OL_EMALFORMED;
    }
    if (ol__mpr_int(r, &rv))
        return OL_EMALFORMED;
    if (a)
        ol__step_saved(a, state, len, (int)rv);
    return 0;
}

static int r_work(struct ol__mpr *r, uint32_t m, struct ol_agent *a)
{
    uint64_t id, token;

    if (m != 5 || ol__mpr_uint(r, &id) || ol__mpr_uint(r, &token))
        return OL_EMALFORMED;
    if (a)
        ol__agent_work_done(a, id, token);
    return 0;
}

/* An attempt's answer; an agent gone (NULL) or moved drops it. */
static int r_perform(struct ol__hostproc *hp, struct ol__mpr *r, uint32_t m,
                     struct ol_agent *a)
{
    uint64_t token;
    int64_t status;
    const void *res = NULL;
    const char *detail = NULL;
    char why[120];
    uint32_t len = 0, dlen;

    if (m != 7 || ol__mpr_uint(r, &token) || ol__mpr_int(r, &status) ||
        status < OL_IPC_FX_NOT_RUN || status > OL_EFFECT_FAILED)
        return OL_EMALFORMED;
    if (ol__mpr_is_nil(r) ? ol__mpr_nil(r)
                          : ol__mpr_bin(r, &res, &len) ||
                                len > OL_AGENT_EFFECT_MAX)
        return OL_EMALFORMED;
    if (ol__mpr_is_nil(r)) {
        if (ol__mpr_nil(r))
            return OL_EMALFORMED;
    } else if (ol__mpr_str(r, &detail, &dlen)) {
        return OL_EMALFORMED;
    } else {
        snprintf(why, sizeof why, "%.*s", (int)dlen, detail);
        detail = why;
    }
    ol__fx_result(hp->node, a, token, (int)status, res, len, detail);
    return 0;
}

static int r_log(struct ol__mpr *r, uint32_t m, struct ol_agent *a)
{
    int64_t level;
    const char *text;
    uint32_t len;

    if (m != 5 || ol__mpr_int(r, &level) || ol__mpr_str(r, &text, &len))
        return OL_EMALFORMED;
    if (level < OL_LOG_ERROR)
        level = OL_LOG_ERROR;
    if (level > OL_LOG_DEBUG)
        level = OL_LOG_DEBUG;
    if (a)
        ol__agent_plugin_log(a, (int)level, text, len);
    return 0;
}

/* One reply of `m` items whose type has been read. */
static int reply(struct ol__hostproc *hp, struct ol__mpr *r, uint32_t m,
                 uint64_t type)
{
    uint64_t slot, gen;
    struct ol_agent *a;

    if (type == OL_IPC_R_STEP) {
        struct ol__ipc_result res;

        if (m != 11 || ol__ipc_read_result(r, &res) != 0)
            return OL_EMALFORMED;
        a = slot_agent(hp, res.slot, res.gen);
        if (a)
            ol__step_result(a, &res);
        return 0;
    }
    if (ol__mpr_uint(r, &slot) || ol__mpr_uint(r, &gen))
        return OL_EMALFORMED;
    a = slot_agent(hp, slot, gen);
    switch (type) {
    case OL_IPC_R_OPEN:
        return r_open(r, m, a);
    case OL_IPC_R_SAVE:
        return r_save(r, m, a);
    case OL_IPC_R_WORK:
        return r_work(r, m, a);
    case OL_IPC_R_LOG:
        return r_log(r, m, a);
    case OL_IPC_R_PERFORM:
        return r_perform(hp, r, m, a);
    default:
        return OL_EMALFORMED;
    }
}

static int batch(struct ol__hostproc *hp, struct ol__mpr *r)
{
    uint32_t n, m;
    uint64_t type;

    if (ol__mpr_array(r, &n))
        return OL_EMALFORMED;
    for (uint32_t i = 0; i < n && hp->state == OL_HP_READY; i++) {
        hp->items_in++;
        if (ol__mpr_array(r, &m) || m < 3 || ol__mpr_uint(r, &type) ||
            reply(hp, r, m, type) != 0)
            return OL_EMALFORMED;
    }
    return 0;
}

static void frame(struct ol__hostproc *hp, const uint8_t *p, size_t len)
{
    struct ol__mpr r;
    uint32_t n;
    uint64_t type;

    hp->frames_in++;
    ol__mpr_init(&r, p, len);
    if (ol__mpr_array(&r, &n) || n < 1 || ol__mpr_uint(&r, &type))
        goto bad;
    if (hp->state == OL_HP_STARTING) {
        if (type != OL_IPC_HELLO || n != 5)
            goto bad;
        hello(hp, &r);
        return;
    }
    if (type != OL_IPC_BATCH || n != 2 || batch(hp, &r) != 0)
        goto bad;
    return;
bad:
    if (hp->state != OL_HP_DEAD)
        ol__hostproc_kill(hp, UINT32_MAX, 0,
                          "malformed frame from the agent host");
}

static void alloc_cb(uv_handle_t *h, size_t want, uv_buf_t *buf)
{
    struct ol__hostproc *hp = h->data;
    size_t room = 256 * 1024;

    (void)want;
    if (hp->in.cap - hp->in.len < room) {
        size_t cap = hp->in.cap ? hp->in.cap : room;
        uint8_t *p;

        while (cap - hp->in.len < room)
            cap *= 2;
        p = realloc(hp->in.base, cap);
        if (p == NULL) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
        hp->in.base = p;
        hp->in.cap = cap;
    }
    *buf = uv_buf_init((char *)hp->in.base + hp->in.len,
                       (unsigned)(hp->in.cap - hp->in.len));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct ol__hostproc *hp = s->data;
    size_t off = 0;

    (void)buf;
    if (nread < 0) {
        uv_read_stop(s);
        /* The exit callback decides what happened; the watchdog helps a
         * host that closed its socket but lingers. */
        if (hp->eof_ms == 0)
            hp->eof_ms = ol__mono_ms();
        return;
    }
    hp->in.len += (size_t)nread;
    while (hp->state != OL_HP_DEAD && hp->in.len - off >= OL_IPC_HDR) {
        uint32_t len = ol__ipc_hdr_len(hp->in.base + off);

        if (len > OL_IPC_FRAME_MAX) {
            ol__hostproc_kill(hp, UINT32_MAX, 0, "oversized frame");
            break;
        }
        if (hp->in.len - off - OL_IPC_HDR < len)
            break;
        frame(hp, hp->in.base + off + OL_IPC_HDR, len);
        off += OL_IPC_HDR + len;
    }
    if (hp->state == OL_HP_DEAD) {
        hp->in.len = 0;
        return;
    }
    if (off) {
        memmove(hp->in.base, hp->in.base + off, hp->in.len - off);
        hp->in.len -= off;
    }
}

void ol__hp_read_start(struct ol__hostproc *hp)
{
    uv_read_start((uv_stream_t *)&hp->pipe, alloc_cb, read_cb);
}
