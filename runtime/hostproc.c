/*
 * Agent-host processes, the node's side (see hostproc.h).
 *
 * Life of a host: spawned with its socket, its step-mark page and the
 * plugin file as its only descriptors; READY once it says HELLO; DEAD once
 * the node has seen it exit (or killed it).  Dying is handled once, in the
 * exit callback, where the kernel's word on how it died is known: the step
 * mark names the agent whose code was running, that agent is reported as
 * crashed, and every other agent of the host is resumed elsewhere from its
 * last committed checkpoint.  The node never waits on a host: writes are
 * queued by libuv, and a host that stops reading only stops its own agents.
 */
#include "hostproc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "code.h"
#include "err.h"
#include "log.h"
#include "node.h"

#define FRAME_PREFIX 11 /* header: length, [BATCH, array32 count] */
#define WATCH_MS 50
#define LOAD_LIMIT_MS 30000
#define EXIT_GRACE_MS 2000
#define SOCK_BUF (4 << 20)

static void dead(struct ol__hostproc *hp);

/* ---- handles ---- */

static void handle_closed(uv_handle_t *h)
{
    struct ol__hostproc *hp = h->data;

    if (--hp->handles > 0)
        return;
    if (hp->mark)
        munmap(hp->mark, OL_MARK_SIZE);
    ol__buf_close(&hp->out);
    ol__buf_close(&hp->in);
    free(hp->slots);
    free(hp->gens);
    free(hp);
}

static void close_handles(struct ol__hostproc *hp)
{
    struct ol__node *n = hp->node;

    /* Off the node's lists first: nothing may reach it from now on. */
    if (hp->prev)
        hp->prev->next = hp->next;
    else if (n->hps == hp)
        n->hps = hp->next;
    if (hp->next)
        hp->next->prev = hp->prev;
    hp->next = hp->prev = NULL;
    if (hp->dirty) {
        struct ol__hostproc **pp = &n->hp_dirty;

        while (*pp && *pp != hp)
            pp = &(*pp)->dirty_next;
        if (*pp)
            *pp = hp->dirty_next;
        hp->dirty = 0;
    }
    if (hp->code && hp->code->hp == hp)
        hp->code->hp = NULL;
    hp->code = NULL;
    if (hp->pipe_init && !uv_is_closing((uv_handle_t *)&hp->pipe))
        uv_close((uv_handle_t *)&hp->pipe, handle_closed);
    if (!uv_is_closing((uv_handle_t *)&hp->watch))
        uv_close((uv_handle_t *)&hp->watch, handle_closed);
    if (hp->spawned && !uv_is_closing((uv_handle_t *)&hp->proc))
        uv_close((uv_handle_t *)&hp->proc, handle_closed);
}

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

    if (hp->dirty || hp->state == OL_HP_DEAD)
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

static void flush(struct ol__hostproc *hp)
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
            flush(hp);
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

static int batch(struct ol__hostproc *hp, struct ol__mpr *r)
{
    uint32_t n, m;
    uint64_t type, slot, gen;

    if (ol__mpr_array(r, &n))
        return OL_EMALFORMED;
    for (uint32_t i = 0; i < n && hp->state == OL_HP_READY; i++) {
        struct ol_agent *a;

        hp->items_in++;
        if (ol__mpr_array(r, &m) || m < 3 || ol__mpr_uint(r, &type))
            return OL_EMALFORMED;
        if (type == OL_IPC_R_STEP) {
            struct ol__ipc_result res;

            if (m != 10 || ol__ipc_read_result(r, &res) != 0)
                return OL_EMALFORMED;
            a = slot_agent(hp, res.slot, res.gen);
            if (a)
                ol__step_result(a, &res);
            continue;
        }
        if (ol__mpr_uint(r, &slot) || ol__mpr_uint(r, &gen))
            return OL_EMALFORMED;
        a = slot_agent(hp, slot, gen);
        switch (type) {
        case OL_IPC_R_OPEN: {
            int64_t rv;
            char where[16];

            if (m != 5 || ol__mpr_int(r, &rv))
                return OL_EMALFORMED;
            if (ol__mpr_is_nil(r)) {
                where[0] = '\0';
                if (ol__mpr_nil(r))
                    return OL_EMALFORMED;
            } else if (ol__mpr_strcpy(r, where, sizeof where)) {
                return OL_EMALFORMED;
            }
            if (a)
                ol__agent_opened(a, (int)rv, where);
            break;
        }
        case OL_IPC_R_SAVE: {
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
            break;
        }
        case OL_IPC_R_WORK: {
            uint64_t id, token;

            if (m != 5 || ol__mpr_uint(r, &id) || ol__mpr_uint(r, &token))
                return OL_EMALFORMED;
            if (a)
                ol__agent_work_done(a, id, token);
            break;
        }
        case OL_IPC_R_LOG: {
            int64_t level;
            const char *text;
            uint32_t len;

            if (m != 5 || ol__mpr_int(r, &level) ||
                ol__mpr_str(r, &text, &len))
                return OL_EMALFORMED;
            if (level < OL_LOG_ERROR)
                level = OL_LOG_ERROR;
            if (level > OL_LOG_DEBUG)
                level = OL_LOG_DEBUG;
            if (a)
                ol_log_rl((int)level, "agent '%s': %.*s", a->name,
                          (int)(len > 512 ? 512 : len), text);
            break;
        }
        default:
            return OL_EMALFORMED;
        }
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

/* ---- the watchdog ---- */

static void watch_cb(uv_timer_t *t)
{
    struct ol__hostproc *hp = t->data;
    struct ol__mark_slot s;
    uint64_t now = ol__mono_ms();
    uint32_t deadline = hp->code ? hp->code->cfg.step_deadline_ms : 5000;
    uint32_t stopping = hp->node->cfg.stop_timeout_ms / 4;

    /* A node that is stopping waits for no step longer than a quarter of
     * its stop timeout: the rest is for the commits. */
    if (hp->node->stopping && deadline > stopping)
        deadline = stopping;

    if (hp->exited)
        return;
    if (hp->eof_ms && now - hp->eof_ms >= EXIT_GRACE_MS) {
        uv_process_kill(&hp->proc, SIGKILL);
        return;
    }
    if (hp->state == OL_HP_STARTING && now - hp->started_ms > LOAD_LIMIT_MS) {
        ol__hostproc_kill(hp, UINT32_MAX, 0,
                          "the plugin did not load within 30 s");
        return;
    }
    if (hp->state != OL_HP_READY || hp->mark == NULL ||
        ol__mark_read(&hp->mark->main, &s) != 0 || s.phase == OL_MARK_IDLE)
        return;
    if ((int64_t)now - s.started_ms > (int64_t)deadline) {
        char why[160];

        if (s.phase == OL_MARK_HANDLE)
            snprintf(why, sizeof why,
                     "step deadline (%u ms) exceeded in handle() of a %s "
                     "event",
                     deadline, ol__event_name((int)s.event));
        else
            snprintf(why, sizeof why, "step deadline (%u ms) exceeded in %s",
                     deadline, ol__mark_phase_name(s.phase));
        ol__hostproc_kill(hp, s.slot, s.gen, why);
    }
}

void ol__hostproc_kill(struct ol__hostproc *hp, uint32_t slot, uint32_t gen,
                       const char *why)
{
    if (hp->exited || hp->killed)
        return;
    hp->killed = 1;
    hp->kill_slot = slot;
    hp->kill_gen = gen;
    snprintf(hp->kill_reason, sizeof hp->kill_reason, "%s", why);
    ol_log(OL_LOG_WARN, "agent host for '%s' (pid %d): %s; killing it",
           hp->code ? hp->code->kind : "?", hp->proc.pid, why);
    if (hp->state != OL_HP_DEAD)
        hp->state = OL_HP_DEAD;
    uv_read_stop((uv_stream_t *)&hp->pipe);
    if (hp->spawned)
        uv_process_kill(&hp->proc, SIGKILL);
}

/* ---- death ---- */

/* Whose code was running, and how the host died.  Returns the number of
 * culprits written to `who` (slot, gen pairs). */
static int culprits(struct ol__hostproc *hp, uint32_t who[][2], int cap,
                    char *why, size_t why_cap)
{
    struct ol__mark *m = hp->mark;
    struct ol__mark_slot s;
    char how[64];
    int n = 0, thread = -2;

    if (hp->term_signal)
        snprintf(how, sizeof how, "killed by %s", ol__signal_name(hp->term_signal));
    else
        snprintf(how, sizeof how, "exit(%" PRId64 ")", hp->exit_status);
    if (hp->killed) {
        snprintf(why, why_cap, "%s", hp->kill_reason);
        if (hp->kill_slot != UINT32_MAX) {
            who[0][0] = hp->kill_slot;
            who[0][1] = hp->kill_gen;
            return 1;
        }
        return 0;
    }
    if (m == NULL) {
        snprintf(why, why_cap, "agent host %s", how);
        return 0;
    }
    if (m->crash_sig)
        thread = m->crash_thread;
    else if (m->exit_thread != -2)
        thread = m->exit_thread;
    if (thread == -1 || thread == -3 || thread == -2) {
        memcpy(&s, &m->main, sizeof s);
        if (s.phase != OL_MARK_IDLE) {
            if (s.phase == OL_MARK_HANDLE)
                snprintf(why, why_cap, "%s in handle() of a %s event", how,
                         ol__event_name((int)s.event));
            else
                snprintf(why, why_cap, "%s in %s", how,
                         ol__mark_phase_name(s.phase));
            who[0][0] = s.slot;
            who[0][1] = s.gen;
            return 1;
        }
    }
    if (thread >= 0 && thread < OL_MARK_WORKERS) {
        memcpy(&s, &m->worker[thread], sizeof s);
        if (s.phase != OL_MARK_IDLE) {
            snprintf(why, why_cap, "%s in a work function", how);
            who[0][0] = s.slot;
            who[0][1] = s.gen;
            return 1;
        }
    }
    /* No thread named: every work function running is a suspect. */
    for (int i = 0; i < OL_MARK_WORKERS && n < cap; i++) {
        memcpy(&s, &m->worker[i], sizeof s);
        if (s.phase == OL_MARK_IDLE)
            continue;
        who[n][0] = s.slot;
        who[n][1] = s.gen;
        n++;
    }
    snprintf(why, why_cap, "agent host %s%s", how,
             n ? " while work functions ran" : "");
    return n;
}

static void dead(struct ol__hostproc *hp)
{
    uint32_t who[OL_MARK_WORKERS][2];
    char why[200];
    int n_who, expected = hp->closing && !hp->killed;
    struct ol__code *c = hp->code;

    n_who = expected ? 0 : culprits(hp, who, OL_MARK_WORKERS, why,
                                    sizeof why);
    if (!expected && hp->state == OL_HP_STARTING && c) {
        char msg[OL_ERRMSG_SIZE];

        ol__errf(msg, "plugin '%s': its host died while loading it (%s)",
                 c->kind, why);
        hp->state = OL_HP_DEAD;
        ol__code_loaded(c, OL_EPLUGIN, "", msg);
    }
    hp->state = OL_HP_DEAD;
    if (!expected && hp->n_agents)
        ol_log(OL_LOG_WARN, "agent host for '%s' (pid %d) died: %s; %u "
                            "agent(s) resume from their last checkpoints",
               c ? c->kind : "?", hp->proc.pid, why, hp->n_agents);
    if (c && !expected) {
        uint64_t now = ol__mono_ms();

        /* A host that keeps dying soon after it starts with nobody to
         * blame is restarted after a growing pause (an agent to blame is
         * paused by its own crash record instead). */
        if (n_who == 0 && now - hp->started_ms < 10000)
            c->hp_quick_deaths++;
        else
            c->hp_quick_deaths = 0;
        c->hp_not_before_ms =
            now + (c->hp_quick_deaths > 1
                       ? 100u << (c->hp_quick_deaths > 5 ? 5
                                                         : c->hp_quick_deaths)
                       : 0);
    }
    /* Off the code first, so the agents restarted below get a new host;
     * then tell each agent (which may restart it at once). */
    if (c && c->hp == hp)
        c->hp = NULL;
    for (uint32_t i = 0; i < hp->n_slots; i++) {
        struct ol_agent *a = hp->slots[i];
        int how = OL_LOST_OTHER;

        if (a == NULL)
            continue;
        for (int k = 0; k < n_who; k++)
            if (who[k][0] == i && who[k][1] == hp->gens[i])
                how = OL_LOST_CRASH;
        if (c && c->state == OL_CODE_FAILED)
            how = OL_LOST_LOAD;
        hp->slots[i] = NULL;
        hp->n_agents--;
        a->hp = NULL;
        ol__agent_host_lost(a, how,
                            how == OL_LOST_LOAD ? c->errmsg : why);
    }
    close_handles(hp);
}

static void exit_cb(uv_process_t *p, int64_t status, int sig)
{
    struct ol__hostproc *hp = p->data;

    hp->exited = 1;
    hp->exit_status = status;
    hp->term_signal = sig;
    uv_read_stop((uv_stream_t *)&hp->pipe);
    dead(hp);
}

/* ---- starting ---- */

static int mark_page(struct ol__hostproc *hp)
{
    int fd = memfd_create("outlast-mark", MFD_CLOEXEC);

    if (fd < 0)
        return -1;
    if (ftruncate(fd, OL_MARK_SIZE) != 0) {
        close(fd);
        return -1;
    }
    hp->mark = mmap(NULL, OL_MARK_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
                    fd, 0);
    if (hp->mark == MAP_FAILED) {
        hp->mark = NULL;
        close(fd);
        return -1;
    }
    ol__mark_init(hp->mark);
    return fd;
}

int ol__hostproc_create(struct ol__node *n, struct ol__code *c,
                        struct ol__hostproc **out)
{
    struct ol__hostproc *hp = calloc(1, sizeof *hp);
    uv_process_options_t po;
    uv_stdio_container_t io[6];
    char a_workers[16], a_mem[16], a_parent[24], a_net[4];
    char *args[26];
    int sv[2] = {-1, -1}, mfd = -1, cfd = -1, k = 0, rv;
    int one = SOCK_BUF;

    if (hp == NULL)
        return OL_ENOMEM;
    hp->node = n;
    hp->code = c;
    hp->state = OL_HP_STARTING;
    hp->started_ms = ol__mono_ms();
    ol__buf_init(&hp->out);
    ol__buf_init(&hp->in);
    uv_timer_init(n->loop, &hp->watch);
    hp->watch.data = hp;
    hp->handles = 1;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 ||
        (mfd = mark_page(hp)) < 0 ||
        (cfd = open(c->path, O_RDONLY | O_CLOEXEC)) < 0) {
        ol_log(OL_LOG_ERROR, "plugin '%s': cannot set up its host: %s",
               c->kind, strerror(errno));
        rv = OL_EIO;
        goto fail;
    }
    for (int i = 0; i < 2; i++) {
        setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &one, sizeof one);
        setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &one, sizeof one);
    }
    uv_pipe_init(n->loop, &hp->pipe, 0);
    hp->pipe.data = hp;
    hp->pipe_init = 1;
    hp->handles++;
    if (uv_pipe_open(&hp->pipe, sv[0]) != 0) {
        close(sv[0]);
        sv[0] = -1;
        rv = OL_EIO;
        goto fail;
    }
    sv[0] = -1;

    snprintf(a_workers, sizeof a_workers, "%u", c->cfg.work_threads);
    snprintf(a_mem, sizeof a_mem, "%u", c->cfg.memory_mb);
    snprintf(a_parent, sizeof a_parent, "%ld", (long)getpid());
    snprintf(a_net, sizeof a_net, "%d", c->cfg.allow_network ? 1 : 0);
    args[k++] = n->host_exe;
    args[k++] = "--fd";
    args[k++] = "3";
    args[k++] = "--mark-fd";
    args[k++] = "4";
    args[k++] = "--code-fd";
    args[k++] = "5";
    args[k++] = "--kind";
    args[k++] = c->kind;
    args[k++] = "--node";
    args[k++] = n->cfg.node_name;
    args[k++] = "--parent";
    args[k++] = a_parent;
    args[k++] = "--workers";
    args[k++] = a_workers;
    args[k++] = "--memory-mb";
    args[k++] = a_mem;
    args[k++] = "--network";
    args[k++] = a_net;
    args[k++] = "--user";
    args[k++] = n->cfg.host_user;
    args[k++] = "--source";
    args[k++] = c->src;
    args[k] = NULL;

    memset(io, 0, sizeof io);
    io[0].flags = UV_IGNORE;
    io[1].flags = UV_INHERIT_FD;
    io[1].data.fd = 2;
    io[2].flags = UV_INHERIT_FD;
    io[2].data.fd = 2;
    io[3].flags = UV_INHERIT_FD;
    io[3].data.fd = sv[1];
    io[4].flags = UV_INHERIT_FD;
    io[4].data.fd = mfd;
    io[5].flags = UV_INHERIT_FD;
    io[5].data.fd = cfd;
    memset(&po, 0, sizeof po);
    po.file = n->host_exe;
    po.args = args;
    po.exit_cb = exit_cb;
    po.stdio = io;
    po.stdio_count = 6;
    /* Its own session: a terminal's ^C and kill(0, ...) stay with it. */
    po.flags = UV_PROCESS_DETACHED;
    hp->proc.data = hp;
    rv = uv_spawn(n->loop, &hp->proc, &po);
    if (rv != 0) {
        ol_log(OL_LOG_ERROR, "plugin '%s': cannot start %s: %s", c->kind,
               n->host_exe, uv_strerror(rv));
        rv = OL_EIO;
        goto fail;
    }
    hp->spawned = 1;
    hp->handles++;
    close(sv[1]);
    close(mfd);
    close(cfd);
    uv_read_start((uv_stream_t *)&hp->pipe, alloc_cb, read_cb);
    uv_timer_start(&hp->watch, watch_cb, WATCH_MS, WATCH_MS);
    {
        void *v;

        /* The host starts out knowing which mailboxes are full. */
        for (size_t i = 0; ol__map_next(&n->full, &i, &v);)
            ol__hp_full(hp, v, 1);
    }
    hp->next = n->hps;
    if (n->hps)
        n->hps->prev = hp;
    n->hps = hp;
    *out = hp;
    return 0;
fail:
    if (sv[0] >= 0)
        close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    if (mfd >= 0)
        close(mfd);
    if (cfd >= 0)
        close(cfd);
    hp->code = NULL;
    hp->state = OL_HP_DEAD;
    /* Not on the node's list yet; close_handles copes. */
    close_handles(hp);
    return rv;
}

/* ---- going away ---- */

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    (void)status;
    free(req);
}

void ol__hostproc_close(struct ol__hostproc *hp)
{
    uv_shutdown_t *req;

    if (hp == NULL || hp->closing)
        return;
    hp->closing = 1;
    if (hp->code && hp->code->hp == hp)
        hp->code->hp = NULL;
    hp->code = NULL;
    if (hp->exited || !hp->spawned) {
        close_handles(hp);
        return;
    }
    flush(hp);
    /* EOF tells the host to finish the CLOSE items and exit; the watchdog
     * kills it if it takes longer than the grace period. */
    req = calloc(1, sizeof *req);
    if (req == NULL ||
        uv_shutdown(req, (uv_stream_t *)&hp->pipe, shutdown_cb) != 0) {
        free(req);
        uv_process_kill(&hp->proc, SIGKILL);
    }
    hp->eof_ms = ol__mono_ms();
}

void ol__hostproc_abandon(struct ol__hostproc *hp)
{
    if (hp == NULL)
        return;
    if (hp->spawned && !hp->exited)
        uv_process_kill(&hp->proc, SIGKILL);
    hp->code = NULL;
}
