/*
 * The deterministic cluster simulation (see sim.h).
 *
 * Each simulated node is a raft instance of libraft's fixture with
 * outlast's FSM over its own SQLite file, plus a small model of the
 * runtime above it: the agents it hosts (learned from its own state
 * machine's effects, as the daemon learns them), each with at most one
 * checkpoint in flight, retried until an outcome arrives.  Proposals travel
 * to the leader through a delay queue (forwarding); the leader wraps them
 * in an entry tagged with its term, as propose.c does.
 */
#include "sim.h"

#include <inttypes.h>
#include <msgpack.h>
#include <raft.h>
#include <raft/fixture.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "record/cmd.h"
#include "replication/ackpace.h"
#include "replication/fsm.h"
#include "replication/raftfix.h"
#include "replication/raftwire.h"
#include "state/sm.h"
#include "state/sm_int.h"
#include "state/verify.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mpr.h"

#define MAX_NODES 5
#define MAX_AGENTS 8
#define TICK_MS 5
#define RETRY_MS 400
#define BASE_MS 1700000000000LL

/* ---- deterministic randomness ---- */

struct rng {
    uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static unsigned below(struct rng *r, unsigned n)
{
    return n ? (unsigned)(rnd(r) % n) : 0;
}

/* True with probability per_mille / 1000. */
static int chance(struct rng *r, unsigned per_mille)
{
    return below(r, 1000) < per_mille;
}

/* ---- the model ---- */

/* A node's runtime hosting one agent. */
struct host {
    int active;
    int zombie;      /* a proposal was refused: stop stepping */
    uint64_t epoch;
    uint64_t seq;    /* head known committed */
    uint8_t head[OL_HASH_SIZE];
    int inflight;
    uint64_t in_seq;
    uint8_t in_hash[OL_HASH_SIZE];
    uint8_t *in_body;
    size_t in_len;
    uint64_t sent_ms;
    uint64_t next_ms;
};

struct sim;

struct node {
    struct raft_tracer tracer;
    int (*send)(struct raft_io *io, struct raft_io_send *req,
                const struct raft_message *m, raft_io_send_cb cb);
    int (*start)(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
                 raft_io_recv_cb recv);
    raft_io_recv_cb recv;
    int (*append)(struct raft_io *io, struct raft_io_append *req,
                  const struct raft_entry entries[], unsigned n,
                  raft_io_append_cb cb);
    int (*truncate)(struct raft_io *io, raft_index index);
    unsigned pending; /* disk writes not yet completed */
    struct ol__rfix fix;
    struct ol__ackpace pace; /* as the daemon paces its leader's appends */
    struct sim *s;
    unsigned i;
    uint64_t id;
    struct ol__key key;
    struct ol__store st;
    struct ol__sm *sm;
    struct ol__fsm fsm;
    struct raft_fsm naive;
    struct raft *raft;
    uint64_t noop_term;  /* the term whose first entry it proposed */
    uint64_t ready_term; /* the term whose entry it released as leader */
    int fatal;
    char why[512];
    struct host hosts[MAX_AGENTS];
    uint64_t revive_at;  /* killed until then; 0: alive */
};

struct ack {
    uint32_t agent;
    uint64_t seq;
    uint8_t hash[OL_HASH_SIZE];
};

struct fwd {
    struct fwd *next;
    unsigned from;
    uint64_t due_ms;
    struct ol__buf entry;
};

struct sim {
    struct sim_opts o;
    struct sim_result *r;
    struct rng rng;
    struct raft_fixture F;
    int fixture_up;
    unsigned n, na;
    struct node nodes[MAX_NODES];
    char names[MAX_AGENTS][16];
    uint64_t spawn_sent_ms;
    struct ack *acks;
    size_t n_acks, cap_acks;
    struct fwd *fwd;
    int cut[MAX_NODES][MAX_NODES]; /* disconnected i -> j */
    uint64_t heal_at;              /* partition heals then; 0: none */
    uint64_t desat_at[MAX_NODES][MAX_NODES];
    uint64_t calm_at;              /* election timeouts reset then */
    uint64_t kill_leader_at;       /* a fresh leader crashes then */
    unsigned kill_leader;
    int workload;                  /* owners step and the leader moves */
    int abandoned;                 /* left the fixture's faithful range */
    int storm;                     /* leader churn around every election */
    struct pend_append {
        struct raft_io_append *req;
        raft_io_append_cb cb;
        struct node *nd;
    } appends[256];
    unsigned n_appends;
    char dir[256];
};

static void note(struct sim *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void note(struct sim *s, const char *fmt, ...)
{
    va_list ap;

    if (!s->o.verbose)
        return;
    printf("t=%6llu ", (unsigned long long)(s->fixture_up
                                                 ? raft_fixture_time(&s->F)
                                                 : 0));
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

static void violation(struct sim *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void violation(struct sim *s, const char *fmt, ...)
{
    va_list ap;

    if (s->r->violations++ == 0) {
        va_start(ap, fmt);
        vsnprintf(s->r->first, sizeof s->r->first, fmt, ap);
        va_end(ap);
    }
    if (s->o.verbose) {
        va_start(ap, fmt);
        printf("VIOLATION: ");
        vprintf(fmt, ap);
        putchar('\n');
        va_end(ap);
    }
}

static uint64_t now(struct sim *s)
{
    return raft_fixture_time(&s->F);
}

static int agent_index(struct sim *s, const char *name)
{
    for (unsigned a = 0; a < s->na; a++)
        if (strcmp(s->names[a], name) == 0)
            return (int)a;
    return -1;
}

static int alive(struct sim *s, unsigned i)
{
    return raft_fixture_alive(&s->F, i);
}

static uint64_t last_index(const struct raft *r);
static void set_disk(struct sim *s, unsigned i, unsigned ms);
static void split(struct sim *s, unsigned side, unsigned ms);

/* ---- what the state machines report ---- */

static void record_ack(struct sim *s, int a, uint64_t seq,
                       const uint8_t *hash)
{
    for (size_t k = 0; k < s->n_acks; k++) {
        struct ack *x = &s->acks[k];

        if (x->agent == (uint32_t)a && x->seq == seq) {
            if (memcmp(x->hash, hash, OL_HASH_SIZE) != 0)
                violation(s, "two different checkpoints were reported "
                             "committed for '%s' seq %" PRIu64,
                          s->names[a], seq);
            return;
        }
    }
    if (s->n_acks == s->cap_acks) {
        s->cap_acks = s->cap_acks ? 2 * s->cap_acks : 256;
        s->acks = realloc(s->acks, s->cap_acks * sizeof *s->acks);
        if (s->acks == NULL)
            abort();
    }
    s->acks[s->n_acks].agent = (uint32_t)a;
    s->acks[s->n_acks].seq = seq;
    memcpy(s->acks[s->n_acks].hash, hash, OL_HASH_SIZE);
    s->n_acks++;
    s->r->acked++;
}

static void host_drop_inflight(struct host *h)
{
    free(h->in_body);
    h->in_body = NULL;
    h->in_len = 0;
    h->inflight = 0;
}

/* An outcome for (agent, epoch, seq): the owner that waits for it goes on
 * (as with the leader's MSG_APPLIED notice or its own apply). */
static void outcome(struct sim *s, int a, const struct ol__effect *e)
{
    for (unsigned i = 0; i < s->n; i++) {
        struct host *h = &s->nodes[i].hosts[a];

        if (!h->active || !h->inflight || h->epoch != e->u.ckpt.epoch ||
            h->in_seq != e->u.ckpt.seq)
            continue;
        if (e->status == 0) {
            h->seq = h->in_seq;
            memcpy(h->head, h->in_hash, OL_HASH_SIZE);
            host_drop_inflight(h);
            h->next_ms = now(s) + 20 + below(&s->rng, 60);
        } else {
            /* A refused checkpoint (stale epoch, stopped agent) ends this
             * owner's run, as the daemon releases the agent. */
            s->r->refusals++;
            host_drop_inflight(h);
            h->zombie = 1;
        }
    }
}

static void host_start(struct node *nd, int a, const struct ol__sm_agent *row)
{
    struct host *h = &nd->hosts[a];
    const struct ol__sm_agent *cur = ol__sm_agent(nd->sm, row->name);

    host_drop_inflight(h);
    memset(h, 0, sizeof *h);
    h->active = 1;
    h->epoch = row->epoch;
    h->seq = cur ? cur->head_seq : 0;
    if (cur)
        memcpy(h->head, cur->head_hash, OL_HASH_SIZE);
    h->next_ms = now(nd->s);
    note(nd->s, "node %u hosts '%s' epoch %" PRIu64 " from seq %" PRIu64,
         nd->i + 1, row->name, row->epoch, h->seq);
}

static void effects(void *data, struct ol__effects *fx, uint64_t term)
{
    struct node *nd = data;
    struct sim *s = nd->s;

    for (const struct ol__effect *e = fx->head; e; e = e->next) {
        int a;

        switch (e->type) {
        case OL_FX_CKPT:
            a = agent_index(s, e->u.ckpt.agent);
            if (a < 0)
                break;
            if (e->status == 0)
                record_ack(s, a, e->u.ckpt.seq, e->u.ckpt.hash);
            outcome(s, a, e);
            break;
        case OL_FX_AGENT: {
            const struct ol__sm_agent *row = &e->u.agent;
            struct host *h;

            a = agent_index(s, row->name);
            if (a < 0)
                break;
            h = &nd->hosts[a];
            if (row->owner == nd->id && row->status == OL_AGENT_RUNNING) {
                if (!h->active || row->epoch > h->epoch)
                    host_start(nd, a, row);
            } else if (h->active) {
                host_drop_inflight(h);
                h->active = 0;
            }
            break;
        }
        case OL_FX_DIVERGED:
            violation(s, "node %u: snapshot install found a divergent row "
                         "for '%s' seq %" PRIu64,
                      nd->i + 1, e->u.ckpt.agent, e->u.ckpt.seq);
            break;
        default:
            break;
        }
    }
    if (raft_state(nd->raft) == RAFT_LEADER &&
        term == nd->raft->current_term)
        nd->ready_term = term;
}

static void fatal(void *data, const char *msg)
{
    struct node *nd = data;

    nd->fatal = 1;
    snprintf(nd->why, sizeof nd->why, "%s", msg);
    note(nd->s, "node %u STOPS: %s", nd->i + 1, msg);
}

/* The FSM as libraft 0.15 drives it without outlast's hold: every entry
 * libraft applies is made durable and reported at once. */
static int naive_apply(struct raft_fsm *f, const struct raft_buffer *buf,
                       void **result)
{
    struct node *nd = f->data;
    uint64_t index = raft_last_applied(nd->raft) + 1;
    struct ol__effects fx;
    struct ol__mpr r;
    size_t len;

    *result = NULL;
    if (index <= ol__sm_applied(nd->sm))
        return 0;
    /* Skip libraft's padding: one msgpack object. */
    ol__mpr_init(&r, buf->base, buf->len);
    len = ol__mpr_skip(&r) == 0 ? r.off : buf->len;
    ol__effects_init(&fx);
    if (ol__store_begin(&nd->st) != 0 ||
        ol__sm_apply(nd->sm, buf->base, len, 0, &fx) != 0 ||
        ol__sm_set_applied(nd->sm, index) != 0 ||
        ol__store_commit(&nd->st) != 0) {
        ol__store_rollback(&nd->st);
        fatal(nd, "naive apply failed");
    } else {
        effects(nd, &fx, raft_state(nd->raft) == RAFT_LEADER
                             ? nd->raft->current_term
                             : 0);
    }
    ol__effects_free(&fx);
    return 0;
}

static int naive_snapshot(struct raft_fsm *f, struct raft_buffer *bufs[],
                          unsigned *n)
{
    (void)f;
    (void)bufs;
    (void)n;
    return RAFT_BUSY;
}

static int naive_restore(struct raft_fsm *f, struct raft_buffer *buf)
{
    (void)f;
    (void)buf;
    return RAFT_MALFORMED;
}

/* ---- proposing ---- */

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    (void)status;
    (void)result;
    raft_free(req);
}

/* Hand an entry to the leader `ld`, tagged with its term as propose.c
 * does.  Returns 0 or -1. */
static int leader_apply(struct sim *s, struct node *ld, struct ol__entry_w *w)
{
    struct ol__buf e;
    struct raft_buffer buf;
    struct raft_apply *req;
    int rv;

    w->term = ld->raft->current_term;
    w->time_ms = BASE_MS + (int64_t)now(s);
    ol__buf_init(&e);
    if (ol__entry_w_finish(w, &e) != 0) {
        ol__buf_close(&e);
        return -1;
    }
    buf.len = (e.len + 7) & ~(size_t)7;
    buf.base = raft_calloc(1, buf.len);
    req = raft_malloc(sizeof *req);
    if (buf.base == NULL || req == NULL)
        abort();
    memcpy(buf.base, e.base, e.len);
    ol__buf_close(&e);
    rv = raft_apply(ld->raft, req, &buf, 1, apply_cb);
    if (rv != 0) {
        note(s, "node %u: raft_apply: %s", ld->i + 1, raft_strerror(rv));
        raft_free(buf.base);
        raft_free(req);
        return -1;
    }
    s->r->entries++;
    return 0;
}

/* The live node that leads in the highest term, if any (a deposed leader
 * that has not noticed yet may lead an older term). */
static struct node *leader(struct sim *s)
{
    struct node *best = NULL;

    for (unsigned i = 0; i < s->n; i++) {
        struct node *nd = &s->nodes[i];

        if (!alive(s, i) || raft_state(nd->raft) != RAFT_LEADER)
            continue;
        if (best == NULL || nd->raft->current_term > best->raft->current_term)
            best = nd;
    }
    return best;
}

/* A follower's entry goes to whoever leads when it arrives (or is lost,
 * as on_forward() drops it on a node that does not lead); the leader
 * re-wraps its commands in an entry of its own. */
static void forward(struct sim *s, unsigned from, struct ol__entry_w *w)
{
    struct fwd *f = calloc(1, sizeof *f);

    if (f == NULL)
        abort();
    f->from = from;
    f->due_ms = now(s) + below(&s->rng, 40);
    ol__buf_init(&f->entry);
    w->term = 0;
    w->time_ms = BASE_MS + (int64_t)now(s);
    if (ol__entry_w_finish(w, &f->entry) != 0)
        abort();
    f->next = s->fwd;
    s->fwd = f;
}

static void deliver_forwards(struct sim *s, int all)
{
    struct fwd **pp = &s->fwd;

    while (*pp) {
        struct fwd *f = *pp;
        struct node *ld;

        if (!all && f->due_ms > now(s)) {
            pp = &f->next;
            continue;
        }
        *pp = f->next;
        ld = leader(s);
        if (ld && !s->cut[f->from][ld->i]) {
            struct ol__entry dec;
            struct ol__entry_w w;

            ol__entry_w_init(&w);
            if (ol__entry_decode(f->entry.base, f->entry.len, &dec, NULL) ==
                0) {
                for (uint32_t k = 0; k < dec.n; k++)
                    (void)ol__entry_add_raw(&w, &dec.cmds[k].raw);
                ol__entry_free(&dec);
                (void)leader_apply(s, ld, &w);
            }
            ol__entry_w_close(&w);
        }
        ol__buf_close(&f->entry);
        free(f);
    }
}

static int pack_state(struct ol__buf *b, uint64_t v)
{
    msgpack_packer pk;

    ol__buf_init(b);
    msgpack_packer_init(&pk, b, ol__buf_write);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "n", 1);
    msgpack_pack_uint64(&pk, v);
    return b->base ? 0 : -1;
}

/* The next checkpoint of hosted agent `a` on node `nd`; `salt` changes
 * its state (and so its hash) without changing anything else. */
static void make_ckpt(struct node *nd, int a, uint64_t salt)
{
    struct host *h = &nd->hosts[a];
    struct ol__ckpt c;
    struct ol__buf state, body;
    char kind[] = "counter", version[] = "1";

    memset(&c, 0, sizeof c);
    c.agent = nd->s->names[a];
    c.epoch = h->epoch;
    c.seq = h->seq + 1;
    memcpy(c.prev_hash, h->head, OL_HASH_SIZE);
    c.time_ms = BASE_MS + (int64_t)now(nd->s);
    c.plugin.kind = kind;
    c.plugin.version = version;
    memcpy(c.signer, nd->key.pk, OL_PK_SIZE);
    /* The state names the node and epoch that wrote it, so that two owners
     * of one seq would write different bodies. */
    if (pack_state(&state,
                   (nd->id << 48) ^ (h->epoch << 32) ^ c.seq ^ salt) != 0)
        abort();
    c.state = state.base;
    c.state_len = (uint32_t)state.len;
    ol__buf_init(&body);
    if (ol__ckpt_encode(&c, &body) != 0)
        abort();
    ol__buf_close(&state);
    h->in_body = ol__buf_steal(&body, &h->in_len);
    ol__ckpt_hash(h->in_body, h->in_len, h->in_hash);
    h->in_seq = c.seq;
    h->inflight = 1;
}

/* Each live node proposes one batch with what its agents have due. */
static void owners_step(struct sim *s)
{
    for (unsigned i = 0; i < s->n; i++) {
        struct node *nd = &s->nodes[i];
        struct ol__blob bodies[MAX_AGENTS];
        uint8_t hashes[MAX_AGENTS * OL_HASH_SIZE];
        uint32_t nb = 0;

        if (!alive(s, i) || nd->fatal)
            continue;
        for (unsigned a = 0; a < s->na; a++) {
            struct host *h = &nd->hosts[a];

            if (!h->active || h->zombie)
                continue;
            if (h->inflight && now(s) - h->sent_ms < RETRY_MS)
                continue;
            if (!h->inflight) {
                if (now(s) < h->next_ms)
                    continue;
                make_ckpt(nd, (int)a, 0);
            }
            h->sent_ms = now(s);
            bodies[nb].p = h->in_body;
            bodies[nb].len = (uint32_t)h->in_len;
            memcpy(hashes + (size_t)nb * OL_HASH_SIZE, h->in_hash,
                   OL_HASH_SIZE);
            nb++;
        }
        if (nb) {
            struct ol__entry_w w;

            ol__entry_w_init(&w);
            if (ol__entry_add_ckpts(&w, &nd->key,
                                    BASE_MS + (int64_t)now(s), bodies,
                                    hashes, nb) == 0)
                forward(s, i, &w);
            ol__entry_w_close(&w);
        }
    }
}

static void leader_duties(struct sim *s)
{
    struct node *ld = leader(s);
    struct ol__entry_w w;
    const struct ol__sm_agent *row;
    unsigned a;

    if (ld == NULL)
        return;
    ol__entry_w_init(&w);
    if (ld->noop_term != ld->raft->current_term) {
        ld->noop_term = ld->raft->current_term;
        s->r->leaders++;
        note(s, "node %u leads term %llu", ld->i + 1,
             (unsigned long long)ld->raft->current_term);
        if (ol__entry_add_noop(&w) == 0)
            (void)leader_apply(s, ld, &w);
        ol__entry_w_reset(&w);
        /* The moments right after an election are where libraft 0.15
         * commits entries of earlier terms early: crash some fresh
         * leaders there, and slow the disks of others. */
        if (s->workload && s->storm) {
            /* Figure 8's shape: the new leader's own disk lags its
             * followers', and it crashes soon after it leads. */
            set_disk(s, ld->i, 60 + below(&s->rng, 60));
            if (s->heal_at == 0 && chance(&s->rng, 400))
                split(s, (1u << ld->i) | (1u << below(&s->rng, s->n)),
                      50 + below(&s->rng, 400));
            if (chance(&s->rng, 600)) {
                s->kill_leader = ld->i;
                s->kill_leader_at = now(s) + below(&s->rng, 120);
            }
        } else if (s->workload && chance(&s->rng, 200)) {
            s->kill_leader = ld->i;
            s->kill_leader_at = now(s) + below(&s->rng, 80);
        } else if (s->workload && chance(&s->rng, 200)) {
            set_disk(s, ld->i, 60 + below(&s->rng, 60));
        }
    }
    if (ld->ready_term != ld->raft->current_term || !s->workload)
        goto out;
    /* Spawn what is missing (again, if an earlier spawn was lost). */
    if (now(s) - s->spawn_sent_ms > 300) {
        for (a = 0; a < s->na; a++)
            if (ol__sm_agent(ld->sm, s->names[a]) == NULL)
                (void)ol__entry_add_spawn(&w, 1000 + a, s->names[a],
                                          "counter", "\x80", 1,
                                          1 + below(&s->rng, s->n), 0);
        if (w.n) {
            s->spawn_sent_ms = now(s);
            (void)leader_apply(s, ld, &w);
        }
        ol__entry_w_reset(&w);
    }
    /* Move an agent now and then, as failover and rebalancing do. */
    if (chance(&s->rng, 25)) {
        a = below(&s->rng, s->na);
        row = ol__sm_agent(ld->sm, s->names[a]);
        if (row && row->status == OL_AGENT_RUNNING) {
            uint64_t to = 1 + below(&s->rng, s->n);

            if (to != row->owner &&
                ol__entry_add_move(&w, rnd(&s->rng) | 1, row->name, to,
                                   row->epoch + 1, 0,
                                   ld->raft->current_term, 0) == 0) {
                note(s, "node %u moves '%s' to node %" PRIu64
                        " epoch %" PRIu64,
                     ld->i + 1, row->name, to, row->epoch + 1);
                (void)leader_apply(s, ld, &w);
            }
        }
    }
out:
    ol__entry_w_close(&w);
}

/* ---- the nemesis ---- */

/*
 * Disk latency.  The fixture's in-memory disk differs from libraft's real
 * one in two ways that the nemesis must not provoke, or it would report
 * the fixture's faults as the system's: it completes a node's writes out
 * of order when their latency drops while one is pending, and its
 * truncate reads past the entries it holds when a write is still pending
 * (raft_uv queues a truncate behind pending writes).  So a node's latency
 * changes only while none of its writes is pending, and stays below the
 * shortest election timeout the nemesis sets, by which time any write
 * from an earlier leader has completed.
 */
static void set_disk(struct sim *s, unsigned i, unsigned ms)
{
    struct raft *r = s->nodes[i].raft;

    if (r->last_stored == last_index(r))
        raft_fixture_set_disk_latency(&s->F, i, ms);
}

static void heal_partition(struct sim *s)
{
    for (unsigned i = 0; i < s->n; i++)
        for (unsigned j = 0; j < s->n; j++)
            if (s->cut[i][j]) {
                raft_fixture_reconnect(&s->F, i, j);
                s->cut[i][j] = 0;
            }
    s->heal_at = 0;
}

/* Cut the nodes in `side` off from the others until `ms` from now. */
static void split(struct sim *s, unsigned side, unsigned ms)
{
    if (side == 0 || side == (1u << s->n) - 1)
        return;
    for (unsigned i = 0; i < s->n; i++)
        for (unsigned j = 0; j < s->n; j++)
            if (((side >> i) & 1) != ((side >> j) & 1)) {
                raft_fixture_disconnect(&s->F, i, j);
                s->cut[i][j] = 1;
            }
    s->heal_at = now(s) + ms;
    s->r->partitions++;
    note(s, "partition %#x until %llu", side,
         (unsigned long long)s->heal_at);
}

static void nemesis(struct sim *s)
{
    struct rng *r = &s->rng;
    uint64_t t = now(s);
    unsigned i, j, dead = 0;

    for (i = 0; i < s->n; i++) {
        struct node *nd = &s->nodes[i];

        if (nd->revive_at && t >= nd->revive_at) {
            raft_fixture_revive(&s->F, i);
            nd->revive_at = 0;
            note(s, "node %u revived", i + 1);
        }
        for (j = 0; j < s->n; j++)
            if (s->desat_at[i][j] && t >= s->desat_at[i][j]) {
                raft_fixture_desaturate(&s->F, i, j);
                s->desat_at[i][j] = 0;
            }
        dead += nd->revive_at != 0;
    }
    if (s->heal_at && t >= s->heal_at) {
        heal_partition(s);
        note(s, "partition healed");
    }
    if (s->calm_at && t >= s->calm_at) {
        for (i = 0; i < s->n; i++)
            raft_fixture_set_randomized_election_timeout(&s->F, i,
                                                         1000 + 100 * i);
        s->calm_at = 0;
    }
    if (s->kill_leader_at && t >= s->kill_leader_at) {
        i = s->kill_leader;
        s->kill_leader_at = 0;
        if (alive(s, i) && dead + 1 < s->n) {
            raft_fixture_kill(&s->F, i);
            s->nodes[i].revive_at = t + 100 + below(r, 3000);
            s->r->kills++;
            dead++;
            note(s, "fresh leader node %u killed until %llu", i + 1,
                 (unsigned long long)s->nodes[i].revive_at);
        }
    }
    /* Kill a node (a crash or a long pause: its memory and disk stay). */
    if (chance(r, 4) && dead + 1 < s->n) {
        i = below(r, s->n);
        if (alive(s, i)) {
            raft_fixture_kill(&s->F, i);
            s->nodes[i].revive_at = t + 200 + below(r, 4000);
            s->r->kills++;
            note(s, "node %u killed until %llu", i + 1,
                 (unsigned long long)s->nodes[i].revive_at);
        }
    }
    /* Split the cluster in two: at random, or the leader with at most one
     * follower on its side. */
    if (chance(r, 3) && s->heal_at == 0) {
        unsigned side = 1 + below(r, (1u << s->n) - 2);
        struct node *ld = leader(s);

        if (ld && chance(r, 500))
            side = (1u << ld->i) | (chance(r, 500)
                                        ? 1u << below(r, s->n)
                                        : 0);
        if (side == (1u << s->n) - 1)
            side = 1u << (ld ? ld->i : 0);

        for (i = 0; i < s->n; i++)
            for (j = 0; j < s->n; j++)
                if (((side >> i) & 1) != ((side >> j) & 1)) {
                    raft_fixture_disconnect(&s->F, i, j);
                    s->cut[i][j] = 1;
                }
        s->heal_at = t + 100 + below(r, 3000);
        s->r->partitions++;
        note(s, "partition %#x until %llu", side,
             (unsigned long long)s->heal_at);
    }
    /* Drop everything on one direction of one link for a while. */
    if (chance(r, 5)) {
        i = below(r, s->n);
        j = below(r, s->n);
        if (i != j && s->desat_at[i][j] == 0) {
            raft_fixture_saturate(&s->F, i, j);
            s->desat_at[i][j] = t + 50 + below(r, 2000);
            note(s, "link %u->%u drops", i + 1, j + 1);
        }
    }
    /* Slow or quick network and disks. */
    if (chance(r, 8)) {
        i = below(r, s->n);
        raft_fixture_set_network_latency(&s->F, i, 1 + below(r, 150));
    }
    if (chance(r, 8)) {
        i = below(r, s->n);
        set_disk(s, i, chance(r, 300) ? 60 + below(r, 60) : 1 + below(r, 30));
    }
    /* Elections: shorten some timeouts for a while. */
    if (chance(r, s->storm ? 20 : 6)) {
        i = below(r, s->n);
        raft_fixture_set_randomized_election_timeout(&s->F, i,
                                                     150 + below(r, 400));
        s->calm_at = t + 500 + below(r, 2000);
    }
}

/* ---- the wire ---- */

static struct sim *current; /* the fixture's send hook has no user data */

static struct node *node_of(struct sim *s, struct raft_io *io)
{
    for (unsigned i = 0; i < s->n; i++)
        if (s->nodes[i].raft->io == io)
            return &s->nodes[i];
    abort();
}

/*
 * What the transport does to libraft's messages in the daemon
 * (raftwire.h, raftfix.h), applied where the fixture hands a message to a
 * node and takes one from it: an arriving AppendEntries has its commit
 * capped and its prev entry checked against the receiver's log; a
 * successful result leaving a node is capped at what that node knows
 * matches the leader.
 */
/* The transport's trim of entries at or before the receiver's snapshot
 * (raftwire.h), on the fixture's decoded message. */
static void trim_below_snapshot(struct node *nd, struct raft_append_entries *a)
{
    uint64_t si = nd->raft->log.snapshot.last_index;
    uint64_t st = nd->raft->log.snapshot.last_term, k;
    struct raft_entry *rest;

    if (si == 0 || a->prev_log_index >= si)
        return;
    k = si - a->prev_log_index;
    if (k > a->n_entries)
        k = a->n_entries;
    if (k == a->n_entries) {
        /* Nothing past the snapshot: a heartbeat the snapshot matches.
         * The entries go, batch and all, as the fixture would free them. */
        if (a->n_entries) {
            raft_free(a->entries[0].batch);
            raft_free(a->entries);
        }
        a->entries = NULL;
        a->n_entries = 0;
    } else {
        rest = raft_malloc((a->n_entries - k) * sizeof *rest);
        if (rest == NULL)
            abort();
        memcpy(rest, a->entries + k, (a->n_entries - k) * sizeof *rest);
        rest[0].batch = a->entries[0].batch;
        raft_free(a->entries);
        a->entries = rest;
        a->n_entries -= (unsigned)k;
    }
    a->prev_log_index = si;
    a->prev_log_term = st;
}

static void wire_recv(struct raft_io *io, struct raft_message *m)
{
    struct node *nd = node_of(current, io);

    if (!current->o.as_is && m->type == RAFT_IO_APPEND_ENTRIES) {
        struct raft_append_entries *a = &m->append_entries;

        trim_below_snapshot(nd, a);
        a->leader_commit = ol__rw_commit_cap(a->leader_commit,
                                             a->prev_log_index, a->n_entries);
        ol__rfix_append_seen(&nd->fix, nd->raft, a->term, a->prev_log_index,
                             a->prev_log_term);
    } else if (!current->o.as_is &&
               m->type == RAFT_IO_APPEND_ENTRIES_RESULT &&
               m->append_entries_result.rejected == 0) {
        ol__ackpace_answer(&nd->pace, m->server_id,
                           m->append_entries_result.term,
                           m->append_entries_result.last_log_index);
    } else if (!current->o.as_is && m->type == RAFT_IO_INSTALL_SNAPSHOT) {
        ol__rfix_snapshot_seen(&nd->fix, m->install_snapshot.term,
                               m->install_snapshot.last_index);
    }
    nd->recv(io, m);
}

static int wire_start(struct raft_io *io, unsigned msecs,
                      raft_io_tick_cb tick, raft_io_recv_cb recv)
{
    struct node *nd = node_of(current, io);

    nd->recv = recv;
    return nd->start(io, msecs, tick, wire_recv);
}

static int wire_send(struct raft_io *io, struct raft_io_send *req,
                     const struct raft_message *m, raft_io_send_cb cb)
{
    struct node *nd = node_of(current, io);
    struct raft_message copy = *m;

    if (!current->o.as_is && copy.type == RAFT_IO_APPEND_ENTRIES_RESULT &&
        copy.append_entries_result.rejected == 0) {
        struct raft_append_entries_result *res = &copy.append_entries_result;

        res->last_log_index = ol__rfix_result_cap(&nd->fix, nd->raft,
                                                  res->term,
                                                  res->last_log_index);
    }
    return nd->send(io, req, &copy, cb);
}

/*
 * The fixture's in-memory disk truncates at once, even with writes still
 * pending, which libraft's real disk never does (raft_uv queues a truncate
 * behind them), and it counts entries from index 1 even when its log
 * starts after a snapshot; its log is then wrong, and it reads past its
 * buffer.
 * Such a schedule has left what the fixture models faithfully: it is
 * abandoned (counted, not checked) instead of blamed on the system.
 */
/* Does the fixture's in-memory disk hold at least n entries?  Its state
 * is private; it is read here only after checking that the layout is the
 * one libraft 0.15's fixture.c has (the io it serves, then its index and
 * the cluster's clock), else the answer is "no" once a snapshot exists. */
static int stub_holds(struct sim *s, struct raft_io *io, uint64_t n)
{
    const uintptr_t *w = io->impl;
    const struct node *nd = node_of(s, io);

    if (w[0] == (uintptr_t)io && w[1] == nd->i &&
        w[2] == (uintptr_t)&s->F.time)
        return (uint64_t)w[8] >= n;
    return nd->raft->log.snapshot.last_index == 0;
}

static void disk_done(struct raft_io_append *req, int status)
{
    struct sim *s = current;

    for (unsigned k = 0; k < s->n_appends; k++) {
        struct pend_append p = s->appends[k];

        if (p.req != req)
            continue;
        s->appends[k] = s->appends[--s->n_appends];
        p.nd->pending--;
        p.cb(req, status);
        return;
    }
    abort();
}

static int disk_append(struct raft_io *io, struct raft_io_append *req,
                       const struct raft_entry entries[], unsigned n,
                       raft_io_append_cb cb)
{
    struct sim *s = current;
    struct node *nd = node_of(s, io);
    int rv;

    if (s->n_appends == sizeof s->appends / sizeof s->appends[0])
        return RAFT_NOMEM;
    rv = nd->append(io, req, entries, n, disk_done);
    if (rv != 0)
        return rv;
    s->appends[s->n_appends].req = req;
    s->appends[s->n_appends].cb = cb;
    s->appends[s->n_appends].nd = nd;
    s->n_appends++;
    nd->pending++;
    return 0;
}

static int disk_truncate(struct raft_io *io, raft_index index)
{
    struct sim *s = current;
    struct node *nd = node_of(s, io);

    /* Its truncate also reads index - 1 entries from the start of what it
     * holds, which is fewer after a snapshot was installed. */
    if (nd->pending || !stub_holds(s, io, index - 1)) {
        if (!s->abandoned)
            note(s, "node %u truncates at %llu with %u write(s) pending "
                    "or past what its disk holds: past the fixture's "
                    "model, schedule abandoned",
                 nd->i + 1, (unsigned long long)index, nd->pending);
        s->abandoned = 1;
        return RAFT_IOERR;
    }
    return nd->truncate(io, index);
}

/* The leader's append completions go through the pacer, as in the daemon
 * (replication/raft.c); the disk below it is disk_append(). */
static int paced_append(struct raft_io *io, struct raft_io_append *req,
                        const struct raft_entry entries[], unsigned n,
                        raft_io_append_cb cb)
{
    struct node *nd = node_of(current, io);

    if (current->o.as_is)
        return disk_append(io, req, entries, n, cb);
    return ol__ackpace_append(&nd->pace, io, req, entries, n, cb);
}

static void (*fixture_close)(struct raft_io *io, raft_io_close_cb cb);

static void paced_close(struct raft_io *io, raft_io_close_cb cb)
{
    ol__ackpace_close(&node_of(current, io)->pace, io, cb);
}

static uint64_t pace_now(void *data)
{
    return now(data);
}

/* Pass on what the pacers of the live nodes allow now. */
static void pace_pump(struct sim *s)
{
    for (unsigned i = 0; i < s->n; i++)
        if (raft_fixture_alive(&s->F, i))
            ol__ackpace_pump(&s->nodes[i].pace);
}

static void sim_step(struct sim *s)
{
    raft_fixture_step(&s->F);
    pace_pump(s);
}

static void wire_wrap(struct node *nd)
{
    fixture_close = nd->raft->io->close;
    /* A held completion is let go after an election timeout (1000 ms in
     * these schedules), as the daemon's guard does. */
    ol__ackpace_init(&nd->pace, nd->raft, disk_append, fixture_close, 1000,
                     pace_now, nd->s);
    nd->append = nd->raft->io->append;
    nd->raft->io->append = paced_append;
    nd->raft->io->close = paced_close;
    nd->truncate = nd->raft->io->truncate;
    nd->raft->io->truncate = disk_truncate;
    nd->send = nd->raft->io->send;
    nd->raft->io->send = wire_send;
    nd->start = nd->raft->io->start;
    nd->raft->io->start = wire_start;
}

/* ---- set-up and tear-down ---- */

static void trace(struct raft_tracer *t, const char *file, int line,
                  const char *msg)
{
    struct node *nd = t->impl;

    printf("t=%6llu   raft S%u %s:%d %s\n",
           (unsigned long long)raft_fixture_time(&nd->s->F), nd->i + 1, file,
           line, msg);
}

static void seed_key(struct sim *s, unsigned i, struct ol__key *k)
{
    uint8_t seed[crypto_sign_SEEDBYTES];

    memset(seed, 0, sizeof seed);
    memcpy(seed, &s->o.seed, sizeof s->o.seed);
    seed[sizeof seed - 1] = (uint8_t)(i + 1);
    k->sk = sodium_malloc(OL_SK_SIZE);
    if (k->sk == NULL)
        abort();
    crypto_sign_seed_keypair(k->pk, k->sk, seed);
}

static int node_open(struct sim *s, unsigned i, char *err)
{
    struct node *nd = &s->nodes[i];
    struct ol__sm_config smc = {.retain = 0};
    struct ol__fsm_config fc;
    struct ol__fsm_hooks fh;
    char path[512];

    nd->s = s;
    nd->i = i;
    nd->id = i + 1;
    seed_key(s, i, &nd->key);
    snprintf(path, sizeof path, "%s/node%u.db", s->dir, i + 1);
    if (ol__store_open(&nd->st, path, OL_STORE_WRITE_NORMAL) != 0) {
        snprintf(err, OL_ERRMSG_SIZE, "%s", nd->st.errmsg);
        return -1;
    }
    if (ol__sm_open(&nd->st, &smc, &nd->sm, err) != 0)
        return -1;
    if (s->o.naive) {
        nd->naive.version = 1;
        nd->naive.data = nd;
        nd->naive.apply = naive_apply;
        nd->naive.snapshot = naive_snapshot;
        nd->naive.restore = naive_restore;
        return 0;
    }
    memset(&fc, 0, sizeof fc);
    fc.db_path = path;
    fc.ring = 4096;
    fh.data = nd;
    fh.effects = effects;
    fh.fatal = fatal;
    return ol__fsm_init(&nd->fsm, &nd->st, nd->sm, &fc, &fh, err) ? -1 : 0;
}

/* Every node knows every node's key (the roster), before the log. */
static int roster(struct sim *s)
{
    for (unsigned i = 0; i < s->n; i++)
        for (unsigned j = 0; j < s->n; j++) {
            struct ol__sm_node n;

            memset(&n, 0, sizeof n);
            n.id = j + 1;
            memcpy(n.pk, s->nodes[j].key.pk, OL_PK_SIZE);
            snprintf(n.address, sizeof n.address, "sim:%u", j + 1);
            if (ol__sm_put_node(s->nodes[i].sm, &n) != 0)
                return -1;
        }
    return 0;
}

static int cluster_up(struct sim *s, char *err)
{
    struct raft_configuration conf;

    current = s;
    if (raft_fixture_initialize(&s->F) != 0) {
        snprintf(err, OL_ERRMSG_SIZE, "raft_fixture_initialize");
        return -1;
    }
    s->fixture_up = 1;
    for (unsigned i = 0; i < s->n; i++) {
        struct node *nd = &s->nodes[i];

        if (node_open(s, i, err) != 0)
            return -1;
        if (raft_fixture_grow(&s->F, s->o.naive ? &nd->naive
                                                : &nd->fsm.fsm) != 0) {
            snprintf(err, OL_ERRMSG_SIZE, "raft_fixture_grow");
            return -1;
        }
        nd->raft = raft_fixture_get(&s->F, i);
        ol__fsm_attach(&nd->fsm, nd->raft);
        wire_wrap(nd);
        if (getenv("SIM_TRACE_RAFT")) {
            nd->tracer.impl = nd;
            nd->tracer.enabled = true;
            nd->tracer.emit = trace;
            nd->raft->tracer = &nd->tracer;
        }
        raft_set_snapshot_threshold(nd->raft, 48);
        raft_set_snapshot_trailing(nd->raft, 8);
        raft_set_pre_vote(nd->raft, true);
        /* As the daemon sets it (raft.c): libraft's 30 s default stalls a
         * follower that was taking its own snapshot when one arrived. */
        raft_set_install_snapshot_timeout(nd->raft, 4000);
    }
    if (roster(s) != 0) {
        snprintf(err, OL_ERRMSG_SIZE, "roster");
        return -1;
    }
    if (raft_fixture_configuration(&s->F, s->n, &conf) != 0 ||
        raft_fixture_bootstrap(&s->F, &conf) != 0) {
        snprintf(err, OL_ERRMSG_SIZE, "bootstrap");
        return -1;
    }
    raft_configuration_close(&conf);
    if (raft_fixture_start(&s->F) != 0) {
        snprintf(err, OL_ERRMSG_SIZE, "raft_fixture_start");
        return -1;
    }
    return 0;
}

static void cluster_down(struct sim *s)
{
    while (s->fwd) {
        struct fwd *f = s->fwd;

        s->fwd = f->next;
        ol__buf_close(&f->entry);
        free(f);
    }
    if (s->fixture_up)
        raft_fixture_close(&s->F);
    s->fixture_up = 0;
    for (unsigned i = 0; i < s->n; i++) {
        struct node *nd = &s->nodes[i];

        for (unsigned a = 0; a < MAX_AGENTS; a++)
            host_drop_inflight(&nd->hosts[a]);
        if (!s->o.naive)
            ol__fsm_close(&nd->fsm);
        ol__sm_close(nd->sm);
        nd->sm = NULL;
        ol__store_close(&nd->st);
        ol__key_close(&nd->key);
    }
    free(s->acks);
    s->acks = NULL;
}

static void remove_dir(struct sim *s)
{
    char path[512];

    for (unsigned i = 0; i < s->n; i++) {
        static const char *const sfx[] = {"", "-wal", "-shm"};

        for (unsigned k = 0; k < 3; k++) {
            snprintf(path, sizeof path, "%s/node%u.db%s", s->dir, i + 1,
                     sfx[k]);
            unlink(path);
        }
    }
    rmdir(s->dir);
}

/* ---- running ---- */

static void step_for(struct sim *s, uint64_t ms)
{
    uint64_t end = now(s) + ms, next_tick = now(s);

    /* Bounded in events as well as in simulated time. */
    for (unsigned k = 0; k < 4000000 && now(s) < end && !s->abandoned;
         k++) {
        sim_step(s);
        if (now(s) < next_tick)
            continue;
        next_tick = now(s) + TICK_MS;
        deliver_forwards(s, 0);
        leader_duties(s);
        if (s->workload) {
            owners_step(s);
            nemesis(s);
        }
    }
}

/* The index of the newest entry in a raft instance's log (the fixture's
 * in-memory log is libraft's own circular buffer). */
static uint64_t last_index(const struct raft *r)
{
    const struct raft_log *l = &r->log;
    size_t n = l->back >= l->front ? l->back - l->front
                                   : l->size - l->front + l->back;

    return n ? l->offset + n : l->snapshot.last_index;
}

/* Bring every node back and wait until all have made everything the
 * leader has durable. */
static int converge(struct sim *s)
{
    struct node *ld = NULL;
    uint64_t target = 0;

    s->workload = 0;
    for (unsigned i = 0; i < s->n; i++) {
        if (!alive(s, i))
            raft_fixture_revive(&s->F, i);
        s->nodes[i].revive_at = 0;
        raft_fixture_set_network_latency(&s->F, i, 5);
        raft_fixture_set_disk_latency(&s->F, i, 5);
        raft_fixture_set_randomized_election_timeout(&s->F, i,
                                                     1000 + 100 * i);
        for (unsigned j = 0; j < s->n; j++) {
            raft_fixture_desaturate(&s->F, i, j);
            s->desat_at[i][j] = 0;
        }
    }
    heal_partition(s);
    deliver_forwards(s, 1);
    for (int round = 0; round < 200 && ld == NULL; round++) {
        step_for(s, 100);
        ld = leader(s);
        if (ld && ld->ready_term != ld->raft->current_term)
            ld = NULL;
    }
    if (ld == NULL)
        return -1;
    /* One more entry of the leader's term releases what any node holds. */
    {
        struct ol__entry_w w;

        ol__entry_w_init(&w);
        (void)ol__entry_add_noop(&w);
        (void)leader_apply(s, ld, &w);
        ol__entry_w_close(&w);
    }
    target = last_index(ld->raft);
    for (int round = 0; round < 300; round++) {
        unsigned done = 0;

        step_for(s, 100);
        /* Another entry now and then, as the daemon's proposers retry: the
         * fixture completes a node's disk writes out of order when its
         * latency drops while one is pending, and libraft 0.15 then leaves
         * its own newest entry unstored until the next one arrives. */
        if (round % 20 == 19 && (ld = leader(s)) != NULL) {
            struct ol__entry_w w;

            ol__entry_w_init(&w);
            (void)ol__entry_add_noop(&w);
            (void)leader_apply(s, ld, &w);
            ol__entry_w_close(&w);
        }
        for (unsigned i = 0; i < s->n; i++)
            done += ol__sm_applied(s->nodes[i].sm) >= target ||
                    s->nodes[i].fatal;
        if (done == s->n)
            return 0;
    }
    return -1;
}

/* ---- the checker ---- */

static int64_t one_int(struct node *nd, const char *sql, const char *arg,
                       int64_t arg2)
{
    sqlite3_stmt *q;
    int64_t v = -1;

    if (sqlite3_prepare_v2(nd->st.db, sql, -1, &q, NULL) != SQLITE_OK)
        return -1;
    if (arg)
        sqlite3_bind_text(q, 1, arg, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, arg2);
    if (sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return v;
}

/* A digest of every row `sql` returns. */
static void digest(struct node *nd, const char *sql, uint8_t out[32])
{
    crypto_generichash_state h;
    sqlite3_stmt *q;

    crypto_generichash_init(&h, NULL, 0, 32);
    if (sqlite3_prepare_v2(nd->st.db, sql, -1, &q, NULL) == SQLITE_OK) {
        while (sqlite3_step(q) == SQLITE_ROW)
            for (int c = 0; c < sqlite3_column_count(q); c++) {
                const void *p = sqlite3_column_blob(q, c);
                int n = sqlite3_column_bytes(q, c);
                uint8_t sep = 0x1f;

                if (p)
                    crypto_generichash_update(&h, p, (size_t)n);
                crypto_generichash_update(&h, &sep, 1);
            }
        sqlite3_finalize(q);
    } else {
        memset(out, 0xee, 32);
        return;
    }
    crypto_generichash_final(&h, out, 32);
}

static void check_acks(struct sim *s)
{
    for (size_t k = 0; k < s->n_acks; k++) {
        const struct ack *x = &s->acks[k];
        const char *name = s->names[x->agent];
        unsigned have = 0;

        for (unsigned i = 0; i < s->n; i++) {
            struct node *nd = &s->nodes[i];
            uint8_t h[OL_HASH_SIZE];
            int found = ol__sm_stored_hash(nd->sm, name, x->seq, h);

            if (found == 1 && memcmp(h, x->hash, OL_HASH_SIZE) != 0) {
                violation(s, "node %u holds a different '%s' seq %" PRIu64
                             " from the one reported committed",
                          i + 1, name, x->seq);
            } else if (found == 1) {
                have++;
            } else if (one_int(nd,
                               "SELECT count(*) FROM checkpoints WHERE "
                               "agent = ?1 AND seq > ?2 AND flags & 1",
                               name, (int64_t)x->seq) <= 0) {
                /* Missing without a snapshot install above it. */
                violation(s, "node %u lost '%s' seq %" PRIu64
                             ", reported committed",
                          i + 1, name, x->seq);
            }
        }
        if (have == 0)
            violation(s, "'%s' seq %" PRIu64 " was reported committed and "
                         "no node has it",
                      name, x->seq);
    }
}

static const char *const tables[] = {
    "SELECT name, kind, config, owner, inc, epoch, status, reason, req, "
    "created_ms, updated_ms FROM agents ORDER BY name",
    "SELECT agent, seq, hash FROM checkpoints c WHERE seq = (SELECT max(seq) "
    "FROM checkpoints WHERE agent = c.agent) ORDER BY agent",
    "SELECT id, to_agent, from_agent, from_seq, idx, payload FROM mailbox "
    "ORDER BY id",
    "SELECT id, pk, address, labels, removed FROM nodes ORDER BY id",
};

static void check_tables(struct sim *s)
{
    static const char *const what[] = {"agents", "checkpoint heads",
                                       "mailbox", "nodes"};
    uint8_t ref[32], d[32];

    for (unsigned t = 0; t < sizeof tables / sizeof tables[0]; t++) {
        digest(&s->nodes[0], tables[t], ref);
        for (unsigned i = 1; i < s->n; i++) {
            digest(&s->nodes[i], tables[t], d);
            if (memcmp(ref, d, 32) != 0)
                violation(s, "%s differ between node 1 and node %u",
                          what[t], i + 1);
        }
    }
    for (unsigned i = 0; i < s->n; i++) {
        if (s->nodes[i].fatal)
            violation(s, "node %u stopped: %s", i + 1, s->nodes[i].why);
        if (one_int(&s->nodes[i], "SELECT count(*) FROM evidence", NULL,
                    0) != 0)
            violation(s, "node %u recorded divergence evidence", i + 1);
    }
}

static void report(void *data, const char *agent, uint64_t seq,
                   const char *problem)
{
    struct sim *s = data;

    violation(s, "verify: '%s' seq %" PRIu64 ": %s", agent ? agent : "-",
              seq, problem);
}

static void check_verify(struct sim *s)
{
    sqlite3 *dbs[MAX_NODES];
    const char *names[MAX_NODES] = {"node1", "node2", "node3", "node4",
                                    "node5"};
    struct ol__verify_report rep;

    for (unsigned i = 0; i < s->n; i++) {
        memset(&rep, 0, sizeof rep);
        if (ol__verify_store(s->nodes[i].st.db, NULL, NULL, 0, report, s,
                             &rep) != 0)
            violation(s, "node %u: verify could not read the store", i + 1);
        dbs[i] = s->nodes[i].st.db;
    }
    memset(&rep, 0, sizeof rep);
    if (ol__verify_cluster(dbs, names, s->n, report, s, &rep) != 0)
        violation(s, "verify --cluster could not read the stores");
}

static void choose(struct sim *s)
{
    struct rng *r = &s->rng;

    s->n = s->o.nodes ? s->o.nodes : (chance(r, 500) ? 3 : 5);
    if (s->n > MAX_NODES)
        s->n = MAX_NODES;
    s->na = s->o.agents ? s->o.agents : 2 + below(r, MAX_AGENTS - 1);
    s->storm = chance(r, 300);
    if (s->na > MAX_AGENTS)
        s->na = MAX_AGENTS;
    for (unsigned a = 0; a < s->na; a++)
        snprintf(s->names[a], sizeof s->names[a], "agent-%u", a);
}

int sim_run(const struct sim_opts *o, struct sim_result *r)
{
    struct sim *s = calloc(1, sizeof *s);
    const char *tmp = o->tmpdir ? o->tmpdir : getenv("TMPDIR");
    char err[OL_ERRMSG_SIZE] = "";
    unsigned duration;
    int rv = 0;

    if (s == NULL || sodium_init() < 0)
        return -1;
    memset(r, 0, sizeof *r);
    s->o = *o;
    s->r = r;
    s->rng.s = o->seed ^ 0x6f75746c617374ull;
    choose(s);
    duration = o->duration_ms ? o->duration_ms : 2000 + below(&s->rng, 4000);
    r->nodes = s->n;
    r->agents = s->na;
    snprintf(s->dir, sizeof s->dir, "%s/ol-sim-%" PRIu64 "-XXXXXX",
             tmp ? tmp : "/tmp", o->seed);
    if (mkdtemp(s->dir) == NULL) {
        snprintf(r->first, sizeof r->first, "mkdtemp '%s' failed", s->dir);
        free(s);
        return -1;
    }
    if (cluster_up(s, err) != 0) {
        snprintf(r->first, sizeof r->first, "set-up: %s", err);
        rv = -1;
        goto out;
    }
    s->workload = 1;
    step_for(s, duration);
    if (!s->abandoned && converge(s) != 0 && !s->abandoned) {
        for (unsigned i = 0; i < s->n; i++) {
            struct raft *rf = s->nodes[i].raft;

            note(s, "node %u: state %d term %llu commit %llu applied %llu "
                    "last %llu stored %llu, store applied %llu, held %u%s",
                 i + 1, raft_state(rf), (unsigned long long)rf->current_term,
                 (unsigned long long)rf->commit_index,
                 (unsigned long long)raft_last_applied(rf),
                 (unsigned long long)last_index(rf),
                 (unsigned long long)rf->last_stored,
                 (unsigned long long)ol__sm_applied(s->nodes[i].sm),
                 o->naive ? 0 : ol__fsm_held(&s->nodes[i].fsm),
                 alive(s, i) ? "" : " (dead)");
            if (raft_state(rf) == RAFT_LEADER)
                for (unsigned j = 0; j < rf->configuration.n; j++)
                    note(s, "  progress of server %llu: match %llu next %llu "
                            "state %u",
                         (unsigned long long)rf->configuration.servers[j].id,
                         (unsigned long long)
                             rf->leader_state.progress[j].match_index,
                         (unsigned long long)
                             rf->leader_state.progress[j].next_index,
                         rf->leader_state.progress[j].state);
        }
        violation(s, "the cluster did not converge after healing");
    }
    r->sim_ms = now(s);
    for (unsigned i = 0; i < s->n; i++) {
        r->paced += s->nodes[i].pace.n.by_ack;
        if (!o->naive) {
            r->installs += s->nodes[i].fsm.n.snapshots_installed;
            if (s->nodes[i].fsm.n.held_max > r->held_max)
                r->held_max = s->nodes[i].fsm.n.held_max;
        }
    }
    r->abandoned = s->abandoned;
    if (!s->abandoned) {
        check_acks(s);
        check_tables(s);
        check_verify(s);
    }
out:
    cluster_down(s);
    if (r->violations || o->keep || rv != 0)
        snprintf(r->dir, sizeof r->dir, "%s", s->dir);
    else
        remove_dir(s);
    free(s);
    return rv;
}

/* ---- Figure 8 ---- */

/*
 * The schedule of ../shared/reference/raft-fig8, against outlast's FSM:
 * S1 led term 2 and got entry A (agent x seq 1) to S2 only; S5 led term 3
 * and wrote entry B (a different x seq 1) only to itself.  S1 wins term 4,
 * appends its first entry of the term, and libraft 0.15 commits A as soon
 * as S1, S2 and S3 store it, although no entry of term 4 is on a majority
 * (S1 -> S2 drops once S2 has answered, S4 cannot hear S1, S5 is down).
 * S1 crashes; S5 wins term 6 and B replaces A on every survivor.
 */
static struct sim *fig8;
static int fig8_cut = 1;

static void fig8_hook(struct raft_fixture *f, struct raft_fixture_event *ev)
{
    struct sim *s = fig8;
    struct raft *r1 = raft_fixture_get(f, 0);

    (void)ev;
    if (fig8_cut && raft_fixture_alive(f, 0) &&
        raft_state(r1) == RAFT_LEADER &&
        r1->leader_state.progress[1].match_index >= 2) {
        note(s, "nemesis: S1 -> S2 drops from now on");
        raft_fixture_saturate(f, 0, 1);
        fig8_cut = 0;
    }
    /* A leader's first entry, appended as soon as it leads (the daemon does
     * it from its loop's check phase, after libraft's first heartbeat). */
    for (unsigned i = 0; i < s->n; i++) {
        struct node *nd = &s->nodes[i];
        struct ol__entry_w w;

        if (!raft_fixture_alive(f, i) || raft_state(nd->raft) != RAFT_LEADER ||
            nd->noop_term == nd->raft->current_term)
            continue;
        nd->noop_term = nd->raft->current_term;
        note(s, "S%u leads term %llu: first entry at index %llu", i + 1,
             (unsigned long long)nd->raft->current_term,
             (unsigned long long)nd->raft->last_stored + 1);
        ol__entry_w_init(&w);
        (void)ol__entry_add_noop(&w);
        (void)leader_apply(s, nd, &w);
        ol__entry_w_close(&w);
    }
}

/* A log entry holding one checkpoint of agent "x", seq 1, by node 1,
 * tagged with `term`; `variant` makes A and B differ. */
static void fig8_entry(struct sim *s, uint64_t term, int variant,
                       struct raft_entry *out, uint8_t hash[OL_HASH_SIZE])
{
    struct node *nd = &s->nodes[0];
    struct host *h = &nd->hosts[0];
    struct ol__entry_w w;
    struct ol__blob b;
    struct ol__buf e;

    memset(h, 0, sizeof *h);
    h->epoch = 1;
    make_ckpt(nd, 0, (uint64_t)variant << 16);
    memcpy(hash, h->in_hash, OL_HASH_SIZE);
    b.p = h->in_body;
    b.len = (uint32_t)h->in_len;
    ol__entry_w_init(&w);
    if (ol__entry_add_ckpts(&w, &nd->key, BASE_MS, &b, h->in_hash, 1) != 0)
        abort();
    w.term = term;
    w.time_ms = BASE_MS;
    ol__buf_init(&e);
    if (ol__entry_w_finish(&w, &e) != 0)
        abort();
    ol__entry_w_close(&w);
    host_drop_inflight(h);
    memset(out, 0, sizeof *out);
    out->term = term;
    out->type = RAFT_COMMAND;
    out->buf.len = (e.len + 7) & ~(size_t)7;
    out->buf.base = raft_calloc(1, out->buf.len);
    memcpy(out->buf.base, e.base, e.len);
    ol__buf_close(&e);
}

static void fig8_add(struct sim *s, unsigned i, const struct raft_entry *src)
{
    struct raft_entry e = *src;

    e.buf.base = raft_malloc(src->buf.len);
    memcpy(e.buf.base, src->buf.base, src->buf.len);
    raft_fixture_add_entry(&s->F, i, &e);
}

/* Spawn agent x (owner node 1, epoch 1) in every store, before the log. */
static int fig8_spawn(struct sim *s)
{
    for (unsigned i = 0; i < s->n; i++) {
        struct node *nd = &s->nodes[i];
        struct ol__entry_w w;
        struct ol__effects fx;
        struct ol__buf e;
        int rv;

        ol__entry_w_init(&w);
        ol__buf_init(&e);
        rv = ol__entry_add_spawn(&w, 1, "x", "counter", "\x80", 1, 1, 0);
        if (rv == 0)
            rv = ol__entry_w_finish(&w, &e);
        ol__effects_init(&fx);
        if (rv == 0)
            rv = ol__store_begin(&nd->st);
        if (rv == 0)
            rv = ol__sm_apply(nd->sm, e.base, e.len, 0, &fx);
        if (rv == 0)
            rv = ol__store_commit(&nd->st);
        ol__effects_free(&fx);
        ol__buf_close(&e);
        ol__entry_w_close(&w);
        if (rv != 0)
            return -1;
    }
    return 0;
}

int sim_figure8(int naive, int verbose, struct sim_result *r)
{
    return sim_figure8_as(naive, naive, verbose, r);
}

int sim_figure8_as(int naive, int as_is, int verbose, struct sim_result *r)
{
    struct sim *s = calloc(1, sizeof *s);
    struct raft_configuration conf;
    struct raft_entry a, b;
    uint8_t ha[OL_HASH_SIZE], hb[OL_HASH_SIZE];
    char err[OL_ERRMSG_SIZE] = "";
    const char *tmp = getenv("TMPDIR");
    struct raft *s1;
    int rv = -1;

    if (s == NULL || sodium_init() < 0)
        return -1;
    memset(r, 0, sizeof *r);
    s->o.naive = naive;
    s->o.as_is = as_is;
    s->o.verbose = verbose;
    s->o.seed = 8;
    current = s;
    s->r = r;
    s->n = 5;
    s->na = 1;
    snprintf(s->names[0], sizeof s->names[0], "x");
    r->nodes = 5;
    r->agents = 1;
    snprintf(s->dir, sizeof s->dir, "%s/ol-fig8-XXXXXX", tmp ? tmp : "/tmp");
    if (mkdtemp(s->dir) == NULL) {
        free(s);
        return -1;
    }
    fig8 = s;
    fig8_cut = 1;
    if (raft_fixture_initialize(&s->F) != 0)
        goto out;
    s->fixture_up = 1;
    for (unsigned i = 0; i < s->n; i++) {
        struct node *nd = &s->nodes[i];

        if (node_open(s, i, err) != 0 ||
            raft_fixture_grow(&s->F, naive ? &nd->naive : &nd->fsm.fsm) != 0)
            goto out;
        nd->raft = raft_fixture_get(&s->F, i);
        ol__fsm_attach(&nd->fsm, nd->raft);
        wire_wrap(nd);
    }
    if (roster(s) != 0 || fig8_spawn(s) != 0)
        goto out;
    if (raft_fixture_configuration(&s->F, 5, &conf) != 0 ||
        raft_fixture_bootstrap(&s->F, &conf) != 0)
        goto out;
    raft_configuration_close(&conf);
    fig8_entry(s, 2, 0, &a, ha);
    fig8_entry(s, 3, 1, &b, hb);
    fig8_add(s, 0, &a);
    fig8_add(s, 1, &a);
    fig8_add(s, 4, &b);
    raft_free(a.buf.base);
    raft_free(b.buf.base);
    for (unsigned i = 0; i < 5; i++)
        raft_fixture_set_term(&s->F, i, 3);
    raft_fixture_hook(&s->F, fig8_hook);
    if (raft_fixture_start(&s->F) != 0)
        goto out;
    raft_fixture_kill(&s->F, 4);
    raft_fixture_disconnect(&s->F, 0, 3);
    raft_fixture_disconnect(&s->F, 3, 0);
    raft_fixture_set_disk_latency(&s->F, 0, 400);
    for (unsigned i = 0; i < 5; i++)
        raft_fixture_set_randomized_election_timeout(&s->F, i,
                                                     i == 0 ? 1000 : 100000);
    s1 = s->nodes[0].raft;
    for (int k = 0; k < 100000 && s1->commit_index < 2; k++)
        sim_step(s);
    note(s, "S1: term %llu commit %llu applied %llu, store applied %llu",
         (unsigned long long)s1->current_term,
         (unsigned long long)s1->commit_index,
         (unsigned long long)raft_last_applied(s1),
         (unsigned long long)ol__sm_applied(s->nodes[0].sm));
    /* Let S1 apply what it committed, as it would before crashing. */
    for (int k = 0; k < 1000 && raft_last_applied(s1) < 2; k++)
        sim_step(s);
    if (!naive)
        r->held_max = s->nodes[0].fsm.n.held_max;
    raft_fixture_kill(&s->F, 0);
    raft_fixture_desaturate(&s->F, 0, 1);
    raft_fixture_reconnect(&s->F, 0, 3);
    raft_fixture_reconnect(&s->F, 3, 0);
    raft_fixture_revive(&s->F, 4);
    raft_fixture_set_randomized_election_timeout(&s->F, 4, 1000);
    for (int k = 0; k < 400000; k++) {
        unsigned done = 0;

        sim_step(s);
        for (unsigned i = 1; i < 5; i++)
            done += ol__sm_applied(s->nodes[i].sm) >= 3;
        if (done == 4)
            break;
    }
    r->sim_ms = raft_fixture_time(&s->F);
    /* What was reported committed must be on every survivor. */
    for (size_t k = 0; k < s->n_acks; k++)
        for (unsigned i = 1; i < 5; i++) {
            uint8_t h[OL_HASH_SIZE];

            if (ol__sm_stored_hash(s->nodes[i].sm, "x", s->acks[k].seq, h) !=
                    1 ||
                memcmp(h, s->acks[k].hash, OL_HASH_SIZE) != 0)
                violation(s, "'x' seq %" PRIu64 " was reported committed "
                             "(entry %s) and S%u does not have it",
                          s->acks[k].seq,
                          memcmp(s->acks[k].hash, ha, OL_HASH_SIZE) == 0
                              ? "A"
                              : "B",
                          i + 1);
        }
    for (unsigned i = 1; i < 5; i++)
        if (ol__sm_applied(s->nodes[i].sm) < 3)
            violation(s, "S%u did not apply the survivors' history", i + 1);
    rv = 0;
out:
    if (rv != 0)
        snprintf(r->first, sizeof r->first, "set-up failed: %s", err);
    cluster_down(s);
    remove_dir(s);
    fig8 = NULL;
    free(s);
    return rv;
}
