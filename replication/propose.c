/*
 * Proposals in a cluster.  Checkpoint bodies and commands collect until the
 * loop is idle, then go out as one entry (one seal, one signature).  The
 * leader hands it to raft_apply(); a follower forwards it to the leader,
 * which merges forwarded commands into its own next entry.  Each node keeps
 * what it proposed until it sees the outcome in its own state machine, and
 * sends it again if nothing came back in time or the leader changed.  A
 * retry carries the same request id: checkpoints are idempotent by (agent,
 * seq) and hash, and the state machine remembers the request ids of the
 * newest OL_SM_REQS_MAX commands it applied (sm_reqs.c) and applies a
 * repeat of one as nothing, reporting the first outcome.  So a retry never
 * duplicates unless it lands after that many other commands, and
 * RAFT_LEADERSHIPLOST (outcome unknown) is never reported as either
 * committed or lost.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/pack.h"
#include "cluster_int.h"

/* One entry holds at most this many of our own proposals, so that with
 * the forwarded commands merged in it stays under OL_ENTRY_MAX_CMDS. */
#define ENTRY_MAX_CKPTS 1024
#define ENTRY_MAX_OWN_CMDS 8192
#define ENTRY_MAX_BYTES (1u << 20)
#define APPLIES_MAX 64

/* ---- proposals ---- */

void ol__cl_pend_free(struct pend *p)
{
    if (p == NULL)
        return;
    free(p->bytes);
    free(p);
}

static void unsent_push(struct cluster *c, struct pend *p)
{
    if (p->queued)
        return;
    p->queued = 1;
    p->next_unsent = NULL;
    if (c->unsent_tail)
        c->unsent_tail->next_unsent = p;
    else
        c->unsent_head = p;
    c->unsent_tail = p;
}

static int pend_add(struct cluster *c, struct pend *p)
{
    struct pend *old = ol__map_del(&c->pend, p->key);

    /* A newer proposal under the same key replaces a stale one. */
    if (old) {
        if (old->queued) {
            /* Unlink lazily: it is skipped when flushed. */
            free(old->bytes);
            old->bytes = NULL;
        } else {
            ol__cl_pend_free(old);
        }
    }
    if (ol__map_put(&c->pend, p->key, p) != 0)
        return OL_ENOMEM;
    unsent_push(c, p);
    ol__cl_kick(c);
    return 0;
}

int ol__cl_propose_ckpt(struct ol__replica *r, const char *agent,
                        uint64_t epoch, uint64_t seq, uint8_t *body,
                        size_t len, const uint8_t hash[OL_HASH_SIZE])
{
    struct cluster *c = (struct cluster *)r;
    struct pend *p;

    if (c->closing)
        return OL_ESHUTDOWN;
    p = calloc(1, sizeof *p);
    if (p == NULL)
        return OL_ENOMEM;
    p->is_ckpt = 1;
    snprintf(p->agent, sizeof p->agent, "%s", agent);
    p->epoch = epoch;
    p->seq = seq;
    snprintf(p->key, sizeof p->key, "c/%s", agent);
    p->bytes = body;
    p->len = len;
    memcpy(p->hash, hash, OL_HASH_SIZE);
    c->n.ckpts_proposed++;
    if (pend_add(c, p) != 0) {
        p->bytes = NULL;
        ol__cl_pend_free(p);
        return OL_ENOMEM;
    }
    return 0;
}

int ol__cl_propose_raw(struct cluster *c, const struct ol__entry_w *w,
                       uint64_t req)
{
    struct ol__buf e;
    struct ol__entry dec;
    char err[OL_ERRMSG_SIZE];
    int rv;

    if (c->closing)
        return OL_ESHUTDOWN;
    /* A command some voter could not apply would stop that voter: it
     * waits until every voter runs its level. */
    if (w->level > ol__cl_level(c))
        return OL_ENOTSUP;
    ol__buf_init(&e);
    rv = ol__entry_w_finish(w, &e);
    if (rv == 0)
        rv = ol__entry_decode(e.base, e.len, &dec, err);
    if (rv != 0) {
        ol__buf_close(&e);
        return rv;
    }
    for (uint32_t i = 0; i < dec.n && rv == 0; i++) {
        struct pend *p = calloc(1, sizeof *p);

        if (p == NULL || (p->bytes = malloc(dec.cmds[i].raw.len)) == NULL) {
            free(p);
            rv = OL_ENOMEM;
            break;
        }
        memcpy(p->bytes, dec.cmds[i].raw.p, dec.cmds[i].raw.len);
        p->len = dec.cmds[i].raw.len;
        p->req = dec.cmds[i].req ? dec.cmds[i].req : req;
        snprintf(p->key, sizeof p->key, "r/%016" PRIx64, p->req);
        rv = pend_add(c, p);
        if (rv != 0)
            ol__cl_pend_free(p);
    }
    ol__entry_free(&dec);
    ol__buf_close(&e);
    return rv;
}

int ol__cl_propose_cmds(struct ol__replica *r, const struct ol__entry_w *w)
{
    return ol__cl_propose_raw((struct cluster *)r, w, 0);
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    struct cluster *c = req->data;

    (void)result;
    c->applies_inflight--;
    if (status != 0)
        ol_log(OL_LOG_DEBUG, "raft entry not applied here: %s; proposals "
                             "are retried",
               raft_strerror(status));
    raft_free(req);
    ol__cl_kick(c);
}

/* Hand finished entry bytes to raft (leader only). */
int ol__cl_apply_entry(struct cluster *c, const void *p, size_t len)
{
    struct raft_buffer buf;
    struct raft_apply *req;
    int rv;

    /* libraft 0.15 lays entries out on disk assuming their length is a
     * multiple of 8 (an assertion its release build drops): anything else
     * corrupts the segment and is read back as garbage after a restart.
     * Pad with zeros; fsm_apply() reads one msgpack object and ignores
     * the padding. */
    buf.len = (len + 7) & ~(size_t)7;
    buf.base = raft_calloc(1, buf.len);
    req = raft_malloc(sizeof *req);
    if (buf.base == NULL || req == NULL) {
        raft_free(buf.base);
        raft_free(req);
        return OL_ENOMEM;
    }
    memcpy(buf.base, p, len);
    req->data = c;
    rv = raft_apply(&c->raft, req, &buf, 1, apply_cb);
    if (rv != 0) {
        raft_free(buf.base);
        raft_free(req);
        return rv == RAFT_NOTLEADER ? OL_ENOTLEADER : OL_EIO;
    }
    c->applies_inflight++;
    c->n.entries++;
    return 0;
}

/* Build one entry from unsent proposals (and forwarded commands on the
 * leader) and send it where it must go.  Returns 1 if something was sent. */
static int flush_once(struct cluster *c)
{
    struct ol__entry_w w;
    struct ol__blob *bodies = NULL;
    uint8_t *hashes = NULL;
    struct ol__buf entry;
    uint32_t nb = 0, cap = 0;
    size_t bytes = 0;
    struct pend *p;
    uint64_t now = ol__cl_now(c);
    int leader = c->role == RAFT_LEADER, rv = 0, sent = 0;

    if (!leader && c->leader_id == 0)
        return 0;
    if (leader && c->applies_inflight >= APPLIES_MAX)
        return 0;
    ol__entry_w_init(&w);
    ol__buf_init(&entry);
    while ((p = c->unsent_head) != NULL && nb < ENTRY_MAX_CKPTS &&
           w.n < ENTRY_MAX_OWN_CMDS && bytes < ENTRY_MAX_BYTES) {
        c->unsent_head = p->next_unsent;
        if (c->unsent_head == NULL)
            c->unsent_tail = NULL;
        p->queued = 0;
        if (p->bytes == NULL) { /* superseded */
            ol__cl_pend_free(p);
            continue;
        }
        p->sent_ms = now;
        bytes += p->len;
        if (!p->is_ckpt) {
            struct ol__blob raw = {p->bytes, (uint32_t)p->len};

            rv = ol__entry_add_raw(&w, &raw);
        } else {
            if (nb == cap) {
                cap = cap ? cap * 2 : 64;
                bodies = realloc(bodies, cap * sizeof *bodies);
                hashes = realloc(hashes, (size_t)cap * OL_HASH_SIZE);
                if (bodies == NULL || hashes == NULL) {
                    rv = OL_ENOMEM;
                    break;
                }
            }
            bodies[nb].p = p->bytes;
            bodies[nb].len = (uint32_t)p->len;
            memcpy(hashes + (size_t)nb * OL_HASH_SIZE, p->hash, OL_HASH_SIZE);
            nb++;
        }
        if (rv != 0)
            break;
    }
    if (rv == 0 && nb)
        rv = ol__entry_add_ckpts(&w, c->key, ol__wall_ms(), bodies, hashes,
                                 nb);
    if (rv == 0 && leader && c->fwd.n &&
        w.n + 1 + c->fwd.n <= OL_ENTRY_MAX_CMDS) {
        rv = ol__buf_append(&w.cmds, c->fwd.cmds.base, c->fwd.cmds.len);
        w.n += c->fwd.n;
        if (c->fwd.level > w.level)
            w.level = c->fwd.level;
        ol__entry_w_reset(&c->fwd);
    }
    /* The term tag is what the FSM waits for (fsm.h): the leader's term
     * now, which raft_apply() gives the entry. */
    w.term = leader ? c->raft.current_term : 0;
    w.time_ms = ol__wall_ms();
    if (rv == 0 && w.n)
        rv = ol__entry_w_finish(&w, &entry);
    if (rv == 0 && w.n) {
        if (leader) {
            rv = ol__cl_apply_entry(c, entry.base, entry.len);
        } else {
            struct ol__buf msg;
            msgpack_packer pk;

            ol__buf_init(&msg);
            msgpack_packer_init(&pk, &msg, ol__buf_write);
            msgpack_pack_array(&pk, 2);
            msgpack_pack_uint32(&pk, MSG_FORWARD);
            msgpack_pack_bin(&pk, entry.len);
            msgpack_pack_bin_body(&pk, entry.base, entry.len);
            rv = msg.base ? ol__transport_send(c->tr, c->leader_id, msg.base,
                                               msg.len)
                          : OL_ENOMEM;
            ol__buf_close(&msg);
            if (rv == 0)
                c->n.forwarded++;
        }
        sent = rv == 0;
        if (rv != 0)
            ol_log_rl(OL_LOG_DEBUG, "proposal of %u command(s) not sent: %s; "
                                    "retrying",
                      w.n, ol_strerror(rv));
    }
    free(bodies);
    free(hashes);
    ol__entry_w_close(&w);
    ol__buf_close(&entry);
    return sent;
}

static void kick_cb(uv_idle_t *h)
{
    struct cluster *c = h->data;

    uv_idle_stop(h);
    while (c->unsent_head || (c->role == RAFT_LEADER && c->fwd.n)) {
        if (!flush_once(c))
            break;
    }
}

void ol__cl_kick(struct cluster *c)
{
    if (!c->closing && !uv_is_active((uv_handle_t *)&c->kick))
        uv_idle_start(&c->kick, kick_cb);
}

/* Requeue proposals whose outcome has not shown up in time. */
void ol__cl_retry_stale(struct cluster *c, int all)
{
    uint64_t now = ol__cl_now(c);
    void *v;

    /* A full scan per tick costs real CPU with thousands pending; twice
     * per retry interval is enough to keep the bound. */
    if (!all && now - c->last_retry_scan_ms < c->retry_ms / 2)
        return;
    c->last_retry_scan_ms = now;

    for (size_t i = 0; ol__map_next(&c->pend, &i, &v);) {
        struct pend *p = v;

        if (p->queued || p->sent_ms == 0)
            continue;
        if (all || now - p->sent_ms >= c->retry_ms) {
            c->n.retries++;
            unsent_push(c, p);
        }
    }
    if (c->unsent_head)
        ol__cl_kick(c);
}

/* Drop what the state machine has decided on. */
void ol__cl_on_effects(struct cluster *c, const struct ol__effects *fx)
{
    char key[OL_NAME_MAX + 24];

    for (const struct ol__effect *e = fx->head; e; e = e->next) {
        struct pend *p;

        if (e->type == OL_FX_CKPT) {
            snprintf(key, sizeof key, "c/%s", e->u.ckpt.agent);
            p = ol__map_get(&c->pend, key);
            if (p && p->seq == e->u.ckpt.seq && p->epoch == e->u.ckpt.epoch) {
                ol__map_del(&c->pend, key);
                if (p->queued) {
                    free(p->bytes);
                    p->bytes = NULL;
                } else {
                    ol__cl_pend_free(p);
                }
            }
        } else if (e->type == OL_FX_CMD) {
            snprintf(key, sizeof key, "r/%016" PRIx64, e->u.cmd.req);
            p = ol__map_del(&c->pend, key);
            if (p) {
                if (p->queued) {
                    free(p->bytes);
                    p->bytes = NULL;
                } else {
                    ol__cl_pend_free(p);
                }
            }
        }
    }
}

/* A snapshot install found this node's row for an agent differs from the
 * cluster's: the whole cluster quarantines the agent, so that an operator
 * looks at the evidence before it runs again. */
static void quarantine_diverged(struct cluster *c, const struct ol__effect *e)
{
    const struct ol__sm_agent *a = ol__sm_agent(c->sm, e->u.ckpt.agent);
    struct ol__entry_w w;

    if (a == NULL || (a->status != OL_AGENT_RUNNING &&
                      a->status != OL_AGENT_STOPPING))
        return;
    ol__entry_w_init(&w);
    if (ol__entry_add_quarantine(&w, ol__random_id(), a->name, a->epoch,
                                 e->errmsg) == 0)
        (void)ol__cl_propose_raw(c, &w, 0);
    ol__entry_w_close(&w);
}

void ol__cl_dispatch(struct cluster *c, struct ol__effects *fx)
{
    uint64_t ckpts = 0;

    for (const struct ol__effect *e = fx->head; e; e = e->next)
        ckpts += e->type == OL_FX_CKPT;
    if (ckpts)
        ol__phist_add(&c->n.batch_sizes, ol__batch_bounds, ol__batch_nbounds,
                      ckpts);
    if (c->role == RAFT_LEADER)
        ol__cl_notify_owners(c, fx);
    ol__cl_on_effects(c, fx);
    for (const struct ol__effect *e = fx->head; e; e = e->next)
        if (e->type == OL_FX_DIVERGED)
            quarantine_diverged(c, e);
    for (const struct ol__effect *e = fx->head; e; e = e->next)
        if (e->type == OL_FX_NODE) {
            ol__cl_roster_sync(c);
            break;
        }
    if (!c->closing && c->hooks.effects)
        c->hooks.effects(c->hooks.data, fx);
}

