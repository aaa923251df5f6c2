/*
 * Proposals in a cluster (propose.h).  Checkpoint bodies and commands
 * collect until the loop is idle, then go out as one entry (one seal, one
 * signature).  The leader hands it to consensus (ops.submit); a follower
 * forwards it to the leader (ops.forward), which merges forwarded commands
 * into its own entries.  Each node keeps what it proposed until it sees
 * the outcome in its own state machine, and sends it again when the leader
 * changed, or when nothing came back in time: a follower's forward may be
 * lost on the way, but an entry in the leader's own log commits or goes
 * with the leadership, so the leader's are not sent again on the timer.
 * A retry carries the same request
 * id: checkpoints are idempotent by (agent, seq) and hash, and the state
 * machine remembers the request ids of the newest OL_SM_REQS_MAX commands
 * it applied (sm_reqs.c) and applies a repeat of one as nothing, reporting
 * the first outcome.  So a retry never duplicates unless it lands after
 * that many other commands, and RAFT_LEADERSHIPLOST (outcome unknown) is
 * never reported as either committed or lost.
 */
#include "propose.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/map.h"
#include "bodies.h"

/* A proposal this node made and has not yet seen applied. */
struct pend {
    struct pend *next_unsent;
    int is_ckpt;
    uint64_t epoch, seq;
    uint8_t *bytes; /* ckpt body, or one encoded command; NULL: superseded */
    size_t len;
    uint8_t hash[OL_HASH_SIZE];
    uint64_t sent_ms; /* 0: never sent */
    int queued;       /* on the unsent list */
    int lead_only;    /* the leader's own decision (a placement): dropped,
                       * never forwarded, once this node no longer leads */
    int submitted;    /* in an entry this node handed to consensus as
                       * leader: its outcome comes, or leadership is lost
                       * and everything is sent again (not on a timer) */
    char key[OL_NAME_MAX + 24]; /* map key: "c/<agent>" or "r/<req>" */
};

struct ol__proposer {
    struct ol__proposer_config cfg;
    struct ol__proposer_ops ops;
    int closing;
    struct ol__map pend; /* key -> struct pend * */
    struct pend *unsent_head, *unsent_tail;
    /* Commands forwarded to this leader, in chunks of at most an
     * entry's worth (ol__proposer_add_forwarded): each entry takes
     * what fits of them. */
    struct fwd_chunk *fwd_head, *fwd_tail;
    uint32_t n_fwd;
    int fwd_first; /* the next entry takes forwarded commands first */
    unsigned inflight;      /* entries submitted and not yet done */
    uint64_t last_retry_scan_ms;
    /* The retry clock (retry_now): ops.now() less the time this node's
     * state machine spent behind its commit index. */
    uint64_t clock_seen_ms, behind_ms;
    /* The longest a proposal took to come back, in this window of
     * LAT_WINDOW_MS and the one before (retry_after). */
    uint64_t lat_window_ms, lat_cur_ms, lat_prev_ms;
    struct ol__proposer_counters n;
    /* The proposals in the entry being built (flush_once). */
    struct pend *drafted[OL_PROP_ENTRY_MAX_CKPTS + OL_PROP_ENTRY_MAX_OWN_CMDS];
    uint32_t n_drafted;
};

/* Forwarded commands, as many as one entry should take; `weight` counts
 * a command as one and a CKPTS command as its bodies (the cost of applying
 * it). */
struct fwd_chunk {
    struct fwd_chunk *next;
    struct ol__entry_w w;
    uint32_t weight;
};

/* One entry in the making: what flush_once() gathers. */
struct draft {
    struct ol__entry_w w;
    struct ol__bodies ck; /* bodies borrowed from the proposals */
    size_t bytes;
    uint32_t weight; /* bodies and commands, forwarded ones included */
    int forwarded;   /* it took forwarded commands */
};

static void pend_free(struct pend *p)
{
    if (p == NULL)
        return;
    free(p->bytes);
    free(p);
}

/* Done with `p` (decided, or replaced): a queued one is unlinked lazily,
 * skipped when flushed. */
static void pend_retire(struct pend *p)
{
    if (p->queued) {
        free(p->bytes);
        p->bytes = NULL;
    } else {
        pend_free(p);
    }
}

int ol__proposer_create(const struct ol__proposer_config *cfg,
                        const struct ol__proposer_ops *ops,
                        struct ol__proposer **out)
{
    struct ol__proposer *p = calloc(1, sizeof *p);

    if (p == NULL)
        return OL_ENOMEM;
    p->cfg = *cfg;
    p->ops = *ops;
    ol__map_init(&p->pend);
    *out = p;
    return 0;
}

void ol__proposer_destroy(struct ol__proposer *p)
{
    void *v;

    if (p == NULL)
        return;
    while (p->unsent_head) {
        struct pend *x = p->unsent_head;

        p->unsent_head = x->next_unsent;
        if (ol__map_get(&p->pend, x->key) != x)
            pend_free(x);
    }
    for (size_t i = 0; ol__map_next(&p->pend, &i, &v);)
        pend_free(v);
    ol__map_close(&p->pend);
    ol__proposer_drop_forwarded(p);
    free(p);
}

void ol__proposer_shutdown(struct ol__proposer *p)
{
    p->closing = 1;
}

static void wake(struct ol__proposer *p)
{
    if (!p->closing)
        p->ops.wake(p->ops.data);
}

static void unsent_push(struct ol__proposer *p, struct pend *x)
{
    if (x->queued)
        return;
    x->queued = 1;
    x->next_unsent = NULL;
    if (p->unsent_tail)
        p->unsent_tail->next_unsent = x;
    else
        p->unsent_head = x;
    p->unsent_tail = x;
}

static int pend_add(struct ol__proposer *p, struct pend *x)
{
    struct pend *old = ol__map_del(&p->pend, x->key);

    /* A newer proposal under the same key replaces a stale one. */
    if (old)
        pend_retire(old);
    if (ol__map_put(&p->pend, x->key, x) != 0)
        return OL_ENOMEM;
    unsent_push(p, x);
    wake(p);
    return 0;
}

int ol__proposer_ckpt(struct ol__proposer *p, const char *agent,
                      uint64_t epoch, uint64_t seq, uint8_t *body,
                      size_t len, const uint8_t hash[OL_HASH_SIZE])
{
    struct pend *x;

    if (p->closing)
        return OL_ESHUTDOWN;
    x = calloc(1, sizeof *x);
    if (x == NULL)
        return OL_ENOMEM;
    x->is_ckpt = 1;
    x->epoch = epoch;
    x->seq = seq;
    snprintf(x->key, sizeof x->key, "c/%s", agent);
    x->bytes = body;
    x->len = len;
    memcpy(x->hash, hash, OL_HASH_SIZE);
    p->n.ckpts_proposed++;
    if (pend_add(p, x) != 0) {
        x->bytes = NULL;
        pend_free(x);
        return OL_ENOMEM;
    }
    return 0;
}

static int cmds_add(struct ol__proposer *p, const struct ol__entry_w *w,
                    uint64_t req, int lead_only)
{
    struct ol__buf e;
    struct ol__entry dec;
    char err[OL_ERRMSG_SIZE];
    int rv;

    if (p->closing)
        return OL_ESHUTDOWN;
    /* A command some voter could not apply would stop that voter: it
     * waits until every voter runs its level. */
    if (w->level > p->ops.level(p->ops.data))
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
        struct pend *x = calloc(1, sizeof *x);
        uint64_t r = dec.cmds[i].req ? dec.cmds[i].req : req;

        if (x == NULL || (x->bytes = malloc(dec.cmds[i].raw.len)) == NULL) {
            free(x);
            rv = OL_ENOMEM;
            break;
        }
        memcpy(x->bytes, dec.cmds[i].raw.p, dec.cmds[i].raw.len);
        x->len = dec.cmds[i].raw.len;
        x->lead_only = lead_only;
        snprintf(x->key, sizeof x->key, "r/%016" PRIx64, r);
        rv = pend_add(p, x);
        if (rv != 0)
            pend_free(x);
    }
    ol__entry_free(&dec);
    ol__buf_close(&e);
    return rv;
}

int ol__proposer_cmds(struct ol__proposer *p, const struct ol__entry_w *w,
                      uint64_t req)
{
    return cmds_add(p, w, req, 0);
}

int ol__proposer_lead_cmds(struct ol__proposer *p,
                           const struct ol__entry_w *w)
{
    if (!p->ops.is_leader(p->ops.data))
        return OL_ENOTLEADER;
    return cmds_add(p, w, 0, 1);
}

/* A leader's placements were decided on its own view of the nodes and
 * are checked against its term when applied (a deposed leader's are
 * refused); the new leader decides its own.  Forwarding them to it only
 * makes it refuse them one by one, so they are forgotten.  One submitted
 * before leadership was lost may still commit: that changes nothing, the
 * state machine applies it or refuses it on its own. */
size_t ol__proposer_drop_lead(struct ol__proposer *p)
{
    size_t n = 0;
    void *v;

    for (size_t i = 0; ol__map_next(&p->pend, &i, &v);) {
        struct pend *x = v;

        if (!x->lead_only)
            continue;
        ol__map_del(&p->pend, x->key);
        pend_retire(x);
        n++;
    }
    return n;
}

int ol__proposer_submit_raw(struct ol__proposer *p, const void *entry,
                            size_t len)
{
    int rv = p->ops.submit(p->ops.data, entry, len);

    if (rv == 0) {
        p->inflight++;
        p->n.entries++;
    }
    return rv;
}

void ol__proposer_submitted(struct ol__proposer *p, int failed)
{
    void *v;

    p->inflight--;
    /* Not applied, though this node may still lead: what its entries
     * carried is sent again on the timer. */
    for (size_t i = 0; failed && ol__map_next(&p->pend, &i, &v);)
        ((struct pend *)v)->submitted = 0;
    wake(p);
}

/* Add one proposal to the draft: a command as it is, a checkpoint body to
 * the seal made at the end. */
static int draft_add(struct draft *d, const struct pend *x)
{
    d->weight++;
    if (!x->is_ckpt) {
        struct ol__blob raw = {x->bytes, (uint32_t)x->len};

        return ol__entry_add_raw(&d->w, &raw);
    }
    return ol__bodies_add(&d->ck, x->bytes, x->len, x->hash);
}

/* The clock retries are judged on.  An outcome is seen when this node
 * applies it; while the state machine has committed entries it has not
 * applied yet (a failed node's thousands of moves and first checkpoints
 * are applied a slice at a time), the outcome may be among them, and a
 * retry would put every pending proposal into the log a second time, for
 * every node to apply again, behind which the backlog only grows.  So
 * the clock stands still while the node is behind; the time between two
 * readings counts as it is found at the second. */
static uint64_t retry_now(struct ol__proposer *p)
{
    uint64_t now = p->ops.now(p->ops.data);

    if (p->clock_seen_ms && now > p->clock_seen_ms && p->ops.behind &&
        p->ops.behind(p->ops.data))
        p->behind_ms += now - p->clock_seen_ms;
    if (now > p->clock_seen_ms)
        p->clock_seen_ms = now;
    return now - p->behind_ms;
}

/* Outcomes that came back as slowly as this recently (a loaded leader
 * queues what its followers forward behind its entries in flight) make a
 * retry wait twice as long, up to LAT_RETRY_MAX times the retry time: a
 * retry that comes before the original's outcome is only work for every
 * node. */
#define LAT_WINDOW_MS 1000
#define LAT_RETRY_MAX 8

static void note_latency(struct ol__proposer *p, uint64_t now, uint64_t ms)
{
    if (now - p->lat_window_ms >= LAT_WINDOW_MS) {
        p->lat_prev_ms = now - p->lat_window_ms < 2 * LAT_WINDOW_MS
                             ? p->lat_cur_ms
                             : 0;
        p->lat_cur_ms = 0;
        p->lat_window_ms = now;
    }
    if (ms > p->lat_cur_ms)
        p->lat_cur_ms = ms;
}

static uint64_t retry_after(struct ol__proposer *p, uint64_t now)
{
    uint64_t lat, ms = p->cfg.retry_ms;

    note_latency(p, now, 0); /* roll the windows */
    lat = p->lat_cur_ms > p->lat_prev_ms ? p->lat_cur_ms : p->lat_prev_ms;
    if (2 * lat > ms)
        ms = 2 * lat;
    if (ms > (uint64_t)LAT_RETRY_MAX * p->cfg.retry_ms)
        ms = (uint64_t)LAT_RETRY_MAX * p->cfg.retry_ms;
    return ms;
}

/* Move unsent proposals into the draft, up to an entry's limits. */
static int draft_fill(struct ol__proposer *p, struct draft *d, uint64_t now)
{
    struct pend *x;
    int rv = 0;

    while (rv == 0 && (x = p->unsent_head) != NULL &&
           d->ck.n < OL_PROP_ENTRY_MAX_CKPTS &&
           d->w.n < OL_PROP_ENTRY_MAX_OWN_CMDS &&
           d->bytes < OL_PROP_ENTRY_MAX_BYTES &&
           (!d->forwarded || d->weight < OL_PROP_ENTRY_MAX_CKPTS)) {
        p->unsent_head = x->next_unsent;
        if (p->unsent_head == NULL)
            p->unsent_tail = NULL;
        x->queued = 0;
        if (x->bytes == NULL) { /* superseded */
            pend_free(x);
            continue;
        }
        x->sent_ms = now;
        x->submitted = 0;
        d->bytes += x->len;
        if (p->n_drafted < sizeof p->drafted / sizeof p->drafted[0])
            p->drafted[p->n_drafted++] = x;
        rv = draft_add(d, x);
    }
    if (rv == 0 && d->ck.n)
        rv = ol__entry_add_ckpts(&d->w, p->cfg.key, ol__wall_ms(),
                                 d->ck.bodies, d->ck.hashes, d->ck.n);
    return rv;
}

/* The leader merges the commands forwarded to it, a chunk at a time while
 * the entry stays within an entry's worth of applying (or one chunk into
 * an entry that has nothing of its own): the followers' checkpoints pile
 * up while the leader waits for its entries in flight, and merged all at
 * once they made one entry that every node took seconds to apply, in one
 * loop turn. */
static int draft_merge_forwarded(struct ol__proposer *p, struct draft *d)
{
    struct fwd_chunk *k;
    int rv = 0;

    while (rv == 0 && (k = p->fwd_head) != NULL) {
        if (d->weight > 0 &&
            (d->weight + k->weight > OL_PROP_ENTRY_MAX_CKPTS ||
             d->w.n + k->w.n > OL_ENTRY_MAX_CMDS))
            break;
        rv = ol__buf_append(&d->w.cmds, k->w.cmds.base, k->w.cmds.len);
        d->w.n += k->w.n;
        d->weight += k->weight;
        d->forwarded = 1;
        if (k->w.level > d->w.level)
            d->w.level = k->w.level;
        p->n_fwd -= k->w.n;
        p->fwd_head = k->next;
        if (p->fwd_head == NULL)
            p->fwd_tail = NULL;
        ol__entry_w_close(&k->w);
        free(k);
    }
    return rv;
}

/* Build one entry from unsent proposals (and forwarded commands on the
 * leader) and send it where it must go.  Returns 1 if something was sent. */
static int flush_once(struct ol__proposer *p)
{
    struct draft d;
    struct ol__buf entry;
    int leader = p->ops.is_leader(p->ops.data), rv = 0, sent = 0;
    int fwd_first;

    if (!leader && !p->ops.has_leader(p->ops.data))
        return 0;
    if (leader && p->inflight >= OL_PROP_APPLIES_MAX)
        return 0;
    memset(&d, 0, sizeof d);
    ol__entry_w_init(&d.w);
    ol__buf_init(&entry);
    p->n_drafted = 0;
    /* Forwarded commands that waited behind an entry of this node's own
     * go first in the next, so a busy leader's own proposals cannot keep
     * its followers' waiting. */
    fwd_first = leader && p->fwd_first;
    if (fwd_first)
        rv = draft_merge_forwarded(p, &d);
    if (rv == 0)
        rv = draft_fill(p, &d, retry_now(p));
    if (rv == 0 && leader && !fwd_first)
        rv = draft_merge_forwarded(p, &d);
    if (leader)
        p->fwd_first = p->n_fwd > 0 && !d.forwarded;
    /* The term tag is what the FSM waits for (fsm.h): the leader's term
     * now, which consensus gives the entry. */
    d.w.term = leader ? p->ops.term(p->ops.data) : 0;
    d.w.time_ms = ol__wall_ms();
    if (rv == 0 && d.w.n)
        rv = ol__entry_w_finish(&d.w, &entry);
    if (rv == 0 && d.w.n) {
        if (leader) {
            rv = ol__proposer_submit_raw(p, entry.base, entry.len);
            /* In the leader's log: committed, or lost with the leadership
             * (then everything is sent again), never lost on its own. */
            for (uint32_t i = 0; rv == 0 && i < p->n_drafted; i++)
                p->drafted[i]->submitted = 1;
        } else {
            rv = p->ops.forward(p->ops.data, entry.base, entry.len);
            if (rv == 0)
                p->n.forwarded++;
        }
        sent = rv == 0;
        if (rv != 0)
            ol_log_rl(OL_LOG_DEBUG, "proposal of %u command(s) not sent: "
                                    "%s; retrying",
                      d.w.n, ol_strerror(rv));
    }
    ol__bodies_close(&d.ck);
    ol__entry_w_close(&d.w);
    ol__buf_close(&entry);
    return sent;
}

void ol__proposer_flush(struct ol__proposer *p)
{
    while (p->unsent_head ||
           (p->n_fwd && p->ops.is_leader(p->ops.data))) {
        if (!flush_once(p))
            break;
    }
}

void ol__proposer_retry(struct ol__proposer *p, int all)
{
    uint64_t now = retry_now(p), after = retry_after(p, now);
    size_t n = 0;
    void *v;

    /* A full scan per tick costs real CPU with thousands pending; twice
     * per retry interval is enough to keep the bound. */
    if (!all && now - p->last_retry_scan_ms < p->cfg.retry_ms / 2)
        return;
    p->last_retry_scan_ms = now;

    for (size_t i = 0; ol__map_next(&p->pend, &i, &v);) {
        struct pend *x = v;

        if (x->queued || x->sent_ms == 0 || (x->submitted && !all))
            continue;
        if (all || now - x->sent_ms >= after) {
            p->n.retries++;
            n++;
            x->submitted = 0;
            unsent_push(p, x);
        }
    }
    if (n && !all)
        ol_log_rl(OL_LOG_INFO, "proposals: %zu with no outcome after %u ms "
                               "sent again", n, (unsigned)after);
    if (p->unsent_head)
        wake(p);
}

void ol__proposer_on_effects(struct ol__proposer *p,
                             const struct ol__effects *fx)
{
    char key[OL_NAME_MAX + 24];
    uint64_t now = 0, lat = 0;

    for (const struct ol__effect *e = fx->head; e; e = e->next) {
        struct pend *x = NULL;

        if (e->type == OL_FX_CKPT) {
            snprintf(key, sizeof key, "c/%s", e->u.ckpt.agent);
            x = ol__map_get(&p->pend, key);
            if (x && (x->seq != e->u.ckpt.seq ||
                      x->epoch != e->u.ckpt.epoch))
                x = NULL;
            else if (x)
                ol__map_del(&p->pend, key);
        } else if (e->type == OL_FX_CMD) {
            snprintf(key, sizeof key, "r/%016" PRIx64, e->u.cmd.req);
            x = ol__map_del(&p->pend, key);
        }
        if (x == NULL)
            continue;
        if (x->sent_ms && !x->queued) {
            if (now == 0)
                now = retry_now(p);
            if (now > x->sent_ms && now - x->sent_ms > lat)
                lat = now - x->sent_ms;
        }
        pend_retire(x);
    }
    if (now)
        note_latency(p, now, lat);
}

int ol__proposer_add_forwarded(struct ol__proposer *p,
                               const struct ol__blob *raw, uint32_t weight)
{
    struct fwd_chunk *k = p->fwd_tail;
    int rv;

    if (weight == 0)
        weight = 1;
    /* A new chunk when the last is full (an empty one takes anything). */
    if (k == NULL ||
        (k->w.n > 0 && (k->weight + weight > OL_PROP_ENTRY_MAX_CKPTS ||
                        k->w.n >= OL_PROP_ENTRY_MAX_OWN_CMDS ||
                        k->w.cmds.len + raw->len > OL_PROP_ENTRY_MAX_BYTES))) {
        if ((k = calloc(1, sizeof *k)) == NULL)
            return OL_ENOMEM;
        ol__entry_w_init(&k->w);
        if (p->fwd_tail)
            p->fwd_tail->next = k;
        else
            p->fwd_head = k;
        p->fwd_tail = k;
    }
    rv = ol__entry_add_raw(&k->w, raw);
    if (rv == 0) {
        k->weight += weight;
        p->n_fwd++;
    }
    return rv;
}

uint32_t ol__proposer_n_forwarded(const struct ol__proposer *p)
{
    return p->n_fwd;
}

void ol__proposer_drop_forwarded(struct ol__proposer *p)
{
    while (p->fwd_head) {
        struct fwd_chunk *k = p->fwd_head;

        p->fwd_head = k->next;
        ol__entry_w_close(&k->w);
        free(k);
    }
    p->fwd_tail = NULL;
    p->n_fwd = 0;
    p->fwd_first = 0;
}

size_t ol__proposer_pending(const struct ol__proposer *p)
{
    return p->pend.count;
}

void ol__proposer_describe(struct ol__proposer *p, char *buf, size_t size)
{
    uint64_t now = p->ops.now(p->ops.data);
    size_t used = 0, k = 0;
    void *v;
    int w;

    buf[0] = '\0';
    for (size_t i = 0; ol__map_next(&p->pend, &i, &v) && k < 3; k++) {
        const struct pend *x = v;
        char state[48];

        if (x->queued)
            snprintf(state, sizeof state, "queued");
        else if (x->submitted)
            snprintf(state, sizeof state, "in this leader's log");
        else if (x->sent_ms)
            snprintf(state, sizeof state, "sent %" PRIu64 " ms ago",
                     now > x->sent_ms ? now - x->sent_ms : 0);
        else
            snprintf(state, sizeof state, "never sent");
        if (x->is_ckpt)
            w = snprintf(buf + used, size - used,
                         "%scheckpoint of '%s' epoch %" PRIu64
                         " seq %" PRIu64 " (%s)",
                         used ? ", " : "", x->key + 2, x->epoch, x->seq,
                         state);
        else
            w = snprintf(buf + used, size - used, "%scommand %s (%s)",
                         used ? ", " : "", x->key + 2, state);
        if (w < 0 || (size_t)w >= size - used)
            return;
        used += (size_t)w;
    }
    if (p->pend.count > k)
        snprintf(buf + used, size - used, ", and %zu more",
                 p->pend.count - k);
}

void ol__proposer_counters(const struct ol__proposer *p,
                           struct ol__proposer_counters *out)
{
    *out = p->n;
}
