/*
 * The cluster replica: the commit path over libraft behind the replica
 * interface (replica.h), and the duties of a node around consensus.  This
 * file holds its life: creating it (transport, FSM, raft, proposer),
 * closing it, the tick that drives the leader's duties, and what changes
 * when the role does.
 *
 * The leader, once an entry of its own term has committed (so its state
 * machine is current), registers the roster's keys in the replicated nodes
 * table, adds roster nodes to the raft configuration one change at a time
 * (cluster_members.c), and runs placement every tick (cluster_place.c).
 * Liveness and leases are in cluster_lease.c, messages in cluster_msg.c,
 * proposals behind propose.h.
 */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "base/pack.h"
#include "cluster_int.h"
#include "lease.h"
#include "rstart.h"

/* ---- the proposer's view of the cluster (propose.h) ---- */

static int prop_is_leader(void *data)
{
    return ((struct cluster *)data)->role == RAFT_LEADER;
}

static int prop_has_leader(void *data)
{
    return ((struct cluster *)data)->leader_id != 0;
}

static uint64_t prop_term(void *data)
{
    return ((struct cluster *)data)->raft.current_term;
}

static uint32_t prop_level(void *data)
{
    return ol__cl_level(data);
}

static uint64_t prop_now(void *data)
{
    return ol__cl_now(data);
}

static int prop_behind(void *data)
{
    struct cluster *c = data;

    return ol__fsm_held(&c->fsm) > 0 ||
           c->raft.commit_index > c->raft.last_applied;
}

static void prop_wake(void *data)
{
    ol__cl_kick(data);
}

static void kick_cb(uv_idle_t *h)
{
    struct cluster *c = h->data;

    uv_idle_stop(h);
    ol__proposer_flush(c->prop);
}

void ol__cl_kick(struct cluster *c)
{
    if (!c->closing && !uv_is_active((uv_handle_t *)&c->kick))
        uv_idle_start(&c->kick, kick_cb);
}

static void tick_cb(uv_timer_t *t)
{
    struct cluster *c = t->data;

    if (c->closing)
        return;
    ol__proposer_retry(c->prop, 0);
    ol__cl_tick(c);
}

/* ---- replica interface ---- */

static int propose_ckpt(struct ol__replica *r, const char *agent,
                        uint64_t epoch, uint64_t seq, uint8_t *body,
                        size_t len, const uint8_t hash[OL_HASH_SIZE])
{
    return ol__proposer_ckpt(((struct cluster *)r)->prop, agent, epoch, seq,
                             body, len, hash);
}

static int propose_cmds(struct ol__replica *r, const struct ol__entry_w *w)
{
    return ol__proposer_cmds(((struct cluster *)r)->prop, w, 0);
}

static int idle(struct ol__replica *r)
{
    return ol__proposer_pending(((struct cluster *)r)->prop) == 0;
}

static int sm_busy(struct ol__replica *r)
{
    (void)r;
    return 0;
}

static int is_leader(struct ol__replica *r)
{
    struct cluster *c = (struct cluster *)r;

    return c->role == RAFT_LEADER;
}

static void counters(struct ol__replica *r, struct ol__replica_counters *out)
{
    struct cluster *c = (struct cluster *)r;
    struct ol__proposer_counters pc;

    ol__proposer_counters(c->prop, &pc);
    memset(out, 0, sizeof *out);
    out->batches = pc.entries;
    out->ckpts = pc.ckpts_proposed;
    out->failures = pc.retries;
    out->batch_sizes = c->n.batch_sizes;
}

static void status(struct ol__replica *r, msgpack_packer *pk)
{
    ol__cluster_status(r, pk);
}

static void handle_closed(uv_handle_t *h)
{
    struct cluster *c = h->data;

    if (--c->handles > 0)
        return;
    if (c->close_cb) {
        void (*cb)(void *) = c->close_cb;

        c->close_cb = NULL;
        cb(c->close_data);
    }
}

static void transport_closed(struct ol__transport *t, void *data)
{
    struct cluster *c = data;

    (void)t;
    c->tr = NULL;
    handle_closed((uv_handle_t *)&c->kick);
}

static void raft_closed(struct raft *r)
{
    struct cluster *c = r->data;

    raft_uv_close(&c->io);
    ol__transport_close(c->tr, transport_closed, c);
}

static void cluster_close(struct ol__replica *r, void (*cb)(void *data),
                          void *data)
{
    struct cluster *c = (struct cluster *)r;

    c->closing = 1;
    ol__cl_lead_close(c);
    if (c->prop && ol__proposer_pending(c->prop)) {
        char what[512];

        ol__proposer_describe(c->prop, what, sizeof what);
        ol_log(OL_LOG_INFO, "closing with %zu proposal(s) without an "
                            "outcome: %s",
               ol__proposer_pending(c->prop), what);
    }
    if (c->prop)
        ol__proposer_shutdown(c->prop);
    c->close_cb = cb;
    c->close_data = data;
    /* kick, tick, check, drain, and the raft+transport teardown. */
    c->handles = 5;
    uv_close((uv_handle_t *)&c->kick, handle_closed);
    uv_close((uv_handle_t *)&c->tick, handle_closed);
    uv_close((uv_handle_t *)&c->check, handle_closed);
    uv_close((uv_handle_t *)&c->drain, handle_closed);
    if (c->raft_inited) {
        raft_close(&c->raft, raft_closed);
    } else if (c->tr) {
        ol__transport_close(c->tr, transport_closed, c);
    } else {
        handle_closed((uv_handle_t *)&c->kick);
    }
}

static const struct ol__replica_vt cluster_vt = {
    .propose_ckpt = propose_ckpt,
    .propose_cmds = propose_cmds,
    .idle = idle,
    .sm_busy = sm_busy,
    .is_leader = is_leader,
    .lease_left = ol__cluster_lease_left,
    .level = ol__cluster_level,
    .counters = counters,
    .status = status,
    .close = cluster_close,
    .destroy = ol__cluster_destroy,
};

void ol__cluster_destroy(struct ol__replica *r)
{
    struct cluster *c = (struct cluster *)r;

    if (c == NULL)
        return;
    ol__proposer_destroy(c->prop);
    ol__fsm_close(&c->fsm);
    free(c->peers);
    ol__cl_placing_clear(c, 1);
    free(c);
}

uint64_t ol__cluster_incarnation(const struct ol__replica *r)
{
    return ((const struct cluster *)r)->inc;
}

/* ---- creating ---- */

/* The parts that cannot fail: settings, the proposer's table, handles.
 * The handles come first: closing a cluster that failed to start closes
 * them whatever step failed.  Returns 0 or OL_ENOMEM. */
static int init_parts(struct cluster *c, uv_loop_t *loop,
                      const struct ol__cluster_config *cfg)
{
    struct ol__proposer_config pcfg;
    struct ol__proposer_ops ops = {
        .data = c,
        .is_leader = prop_is_leader,
        .has_leader = prop_has_leader,
        .term = prop_term,
        .level = prop_level,
        .now = prop_now,
        .behind = prop_behind,
        .submit = ol__cl_raft_submit,
        .forward = ol__cl_forward,
        .wake = prop_wake,
    };

    c->base.vt = &cluster_vt;
    c->loop = loop;
    c->cfg = *cfg;
    c->role = RAFT_UNAVAILABLE;
    while (c->inc == 0)
        randombytes_buf(&c->inc, sizeof c->inc);
    /* Two leases back to back stay inside the failover time however the
     * clocks' rates differ within the bound (lease.h). */
    c->drift_pct = cfg->drift_pct ? cfg->drift_pct : 10;
    c->lease_ms = ol__cluster_lease_ms(cfg->failover_ms, c->drift_pct);
    /* A node held at an older level decodes only what that level knows,
     * as an older build would. */
    ol__cmd_set_level(cfg->feature_level ? cfg->feature_level
                                         : OL_FEATURE_LEVEL);
    c->level = ol__cmd_level();
    uv_idle_init(loop, &c->kick);
    c->kick.data = c;
    uv_timer_init(loop, &c->tick);
    c->tick.data = c;
    uv_check_init(loop, &c->check);
    c->check.data = c;
    uv_idle_init(loop, &c->drain);
    c->drain.data = c;
    pcfg.key = c->key;
    pcfg.retry_ms = cfg->election_ms > 200 ? cfg->election_ms : 200;
    return ol__proposer_create(&pcfg, &ops, &c->prop);
}

/* The raft directory: refused when lost or older than the database, and
 * the cluster id read (or made). */
static int check_raft_dir(struct cluster *c, char *errmsg)
{
    int has_state, rv = ol__mkdirs(c->cfg.raft_dir, 0700, errmsg);

    if (rv != 0)
        return rv;
    /* A lost raft directory is refused before anything is started. */
    has_state = ol__raft_dir_state(c->cfg.raft_dir, errmsg);
    if (has_state < 0)
        return has_state;
    rv = ol__raft_start_check(c->cfg.raft_dir, has_state,
                              ol__sm_applied(c->sm), c->cfg.self_id, errmsg);
    if (rv == 0)
        rv = ol__cl_cluster_id_prepare(c, has_state, errmsg);
    return rv;
}

/*
 * How long one loop turn may spend applying entries.  A failed node's
 * thousands of agents commit as thousands of moves and then as thousands
 * of first checkpoints, and libraft hands over everything a commit covers
 * at once: applied in one turn, that is a second of a busy loop, past the
 * election timeout, in which this node answers nobody and its own agents
 * do not step.  Half a heartbeat per turn keeps the node
 * answering; what is left waits for the next turns, which follow at once.
 */
static uint32_t apply_slice_us(const struct ol__cluster_config *cfg)
{
    uint32_t us = cfg->heartbeat_ms * 500;

    return us < 5000 ? 5000 : us;
}

static void drain_cb(uv_idle_t *h)
{
    struct cluster *c = h->data;

    if (!ol__fsm_drain(&c->fsm))
        uv_idle_stop(h);
}

static void fsm_deferred(void *data)
{
    struct cluster *c = data;

    if (!c->closing)
        uv_idle_start(&c->drain, drain_cb);
}

static int start_fsm(struct cluster *c, char *errmsg)
{
    struct ol__fsm_config fc;
    struct ol__fsm_hooks fh;

    memset(&fc, 0, sizeof fc);
    fc.db_path = c->cfg.db_path;
    fc.async_snapshots = 1;
    /* Cover what libraft applies again after a restart: everything since
     * its last snapshot, which it takes every `threshold` entries. */
    fc.ring = 2 * (c->cfg.snapshot_threshold + c->cfg.snapshot_trailing) +
              1024;
    fc.snapshot_threshold = c->cfg.snapshot_threshold;
    fc.snapshot_trailing = c->cfg.snapshot_trailing;
    fc.log_bytes = (uint64_t)c->cfg.snapshot_mb << 20;
    fc.apply_slice_us = apply_slice_us(&c->cfg);
    fh.data = c;
    fh.effects = ol__cl_fsm_effects;
    fh.fatal = ol__cl_fsm_fatal;
    fh.deferred = fsm_deferred;
    return ol__fsm_init(&c->fsm, c->st, c->sm, &fc, &fh, errmsg);
}

static int start_transport(struct cluster *c, char *errmsg)
{
    struct ol__transport_config tc;
    int rv;

    memset(&tc, 0, sizeof tc);
    tc.self_id = c->cfg.self_id;
    tc.listen = c->cfg.listen;
    tc.key = c->key;
    tc.cluster = c->cfg.cluster;
    tc.recv_cb = ol__cl_recv;
    tc.recv_data = c;
    tc.refused_cb = ol__cl_peer_refused;
    tc.compress_off = c->cfg.compress_off;
    tc.dial_only = c->cfg.dial_only;
    ol__cl_transport_hooks(c, &tc);
    rv = ol__transport_create(c->loop, &tc, &c->tr, errmsg);
    if (rv != 0)
        return rv;
    ol__cl_roster_sync(c);
    /* Bind before raft touches its directory, so an address that cannot be
     * used is reported with its reason and nothing has been bootstrapped
     * (raft's own listen call finds the listener open). */
    return ol__transport_listen(c->tr, errmsg);
}

int ol__cluster_create(uv_loop_t *loop, const struct ol__cluster_config *cfg,
                       struct ol__store *st, struct ol__sm *sm,
                       const struct ol__key *key,
                       const struct ol__cluster_hooks *hooks,
                       struct ol__replica **out, char *errmsg)
{
    struct cluster *c = calloc(1, sizeof *c);
    int rv;

    if (c == NULL)
        return OL_ENOMEM;
    c->hooks = *hooks;
    c->st = st;
    c->sm = sm;
    c->key = key;
    rv = init_parts(c, loop, cfg);
    *out = &c->base;
    if (rv == 0)
        rv = check_raft_dir(c, errmsg);
    if (rv == 0)
        rv = start_fsm(c, errmsg);
    if (rv == 0)
        rv = start_transport(c, errmsg);
    if (rv == 0)
        rv = ol__cl_raft_setup(c, errmsg);
    if (rv != 0)
        return rv;
    uv_check_start(&c->check, ol__cl_check_cb);
    uv_timer_start(&c->tick, tick_cb, cfg->heartbeat_ms / 2 + 1,
                   cfg->heartbeat_ms / 2 + 1);
    ol_log(OL_LOG_INFO,
           "cluster '%s': node %" PRIu64 " at %s, incarnation %016" PRIx64
           ", election %u ms, heartbeat %u ms, failover %u ms",
           cfg->cluster, cfg->self_id, cfg->listen, c->inc, cfg->election_ms,
           cfg->heartbeat_ms, cfg->failover_ms);
    return 0;
}

/* ---- leader duties ---- */

/* The first entry of this leader's term committed: everything before it
 * is applied, so the leader's view of the state machine is current. */
void ol__cl_leader_ready(struct cluster *c)
{
    uint64_t now = ol__cl_now(c);

    c->leader_ready = 1;
    c->leader_since_ms = now;
    /* Everyone gets a full failover period from now, except the node that
     * led before: its silence started when we last heard from it. */
    for (size_t i = 0; i < c->n_peers; i++) {
        c->peers[i].seen = 0;
        c->peers[i].last_ms = now;
        if (c->peers[i].id == c->prev_leader_id && c->last_pong_ms)
            c->peers[i].last_ms = c->last_pong_ms;
        c->peers[i].moving_off = 0;
        c->peers[i].fence_index = ol__sm_applied(c->sm);
    }
    ol_log(OL_LOG_INFO, "leader of term %llu: state machine current at "
                        "index %" PRIu64,
           (unsigned long long)c->raft.current_term, ol__sm_applied(c->sm));
    /* Followers may grant themselves no lease until they have applied
     * what this leader committed (cluster_lease.c): tell them now. */
    ol__cl_beacon(c);
    ol__cl_kick(c);
}

/* An entry that carries nothing: the first of a new term, ahead of
 * anything else this leader proposes (once it commits, so has everything
 * before it, fsm.h), and a beacon (ol__cl_beacon). */
void ol__cl_propose_noop(struct cluster *c)
{
    struct ol__entry_w w;
    struct ol__buf e;
    int rv;

    ol__entry_w_init(&w);
    ol__buf_init(&e);
    w.term = c->raft.current_term;
    w.time_ms = ol__wall_ms();
    rv = ol__entry_add_noop(&w);
    if (rv == 0)
        rv = ol__entry_w_finish(&w, &e);
    if (rv == 0)
        rv = ol__proposer_submit_raw(c->prop, e.base, e.len);
    if (rv != 0)
        ol_log(OL_LOG_WARN, "leader of term %llu: first entry not proposed: "
                            "%s",
               (unsigned long long)c->raft.current_term, ol_strerror(rv));
    ol__buf_close(&e);
    ol__entry_w_close(&w);
}

void ol__cl_role_changed(struct cluster *c, int old)
{
    static const char *const names[] = {"unavailable", "follower",
                                        "candidate", "leader"};
    const struct ol__sm_node *nodes;
    size_t nn;

    ol_log(OL_LOG_INFO, "raft: %s -> %s (term %llu, leader %" PRIu64 ")",
           names[old & 3], names[c->role & 3],
           (unsigned long long)c->raft.current_term, c->leader_id);
    if (c->role != RAFT_LEADER) {
        c->leader_ready = 0;
        ol__cl_placing_clear(c, 0);
        for (size_t i = 0; i < c->n_peers; i++)
            c->peers[i].moving_off = 0;
        c->last_ping_ms = 0;
        c->lead_lease_until_ms = 0;
        /* Commands forwarded to this node as leader are not proposed by a
         * later leadership of its own: their senders retry with whoever
         * leads now. */
        ol__proposer_drop_forwarded(c->prop);
        /* Nor are this node's own placements: the next leader decides
         * its own, and would refuse these one by one (propose.h). */
        if ((nn = ol__proposer_drop_lead(c->prop)) != 0)
            ol_log(OL_LOG_INFO, "no longer leader: %zu placement "
                                "command(s) not yet applied dropped",
                   nn);
        return;
    }
    if (old == RAFT_LEADER)
        return;
    /* Make sure every node in the roster has a liveness record. */
    nn = ol__sm_nodes(c->sm, &nodes);
    for (size_t i = 0; i < nn; i++)
        if (nodes[i].id != c->cfg.self_id)
            (void)ol__cl_peer(c, nodes[i].id, 1);
    for (size_t i = 0; i < c->cfg.n_peers; i++)
        (void)ol__cl_peer(c, c->cfg.peers[i].id, 1);
    for (size_t i = 0; i < c->n_peers; i++)
        c->peers[i].last_ms = ol__cl_now(c);
    ol__cl_propose_noop(c);
}

/* libraft 0.15 tells followers the commit index only with its next
 * AppendEntries: after an idle moment, up to a heartbeat after the
 * commit.  Where a follower waits on a commit (an agent moved to it, the
 * entry its lease is barred on), the leader proposes an empty entry at
 * once, which carries the news.  At most one in a quarter heartbeat. */
void ol__cl_beacon(struct cluster *c)
{
    uint64_t now = ol__cl_now(c);

    if (c->role != RAFT_LEADER || c->closing ||
        (c->beacon_ms && now - c->beacon_ms < c->cfg.heartbeat_ms / 4))
        return;
    c->beacon_ms = now;
    c->n.beacons++;
    ol__cl_propose_noop(c);
}

void ol__cl_tick(struct cluster *c)
{
    uint64_t now = ol__cl_now(c), fresh = ol__cl_fresh_ms();

    if (ol__cl_notice_suspend(c, now)) {
        c->last_tick_ms = fresh;
        c->last_tick_ran_us = ol__cl_thread_ran_us();
    } else {
        ol__cl_check_gap(c, now, fresh); /* cluster_stall.c */
    }
    /* A new leader is pinged at once: until it answers, nothing here
     * may renew its lease. */
    if (c->role != RAFT_LEADER && c->leader_id &&
        (now - c->last_ping_ms >= c->cfg.heartbeat_ms ||
         c->pinged_leader != c->leader_id))
        ol__cl_ping_leader(c, now, fresh);
    if (c->role == RAFT_LEADER)
        ol__cl_leader_lease(c, fresh);
    ol__cl_report_lease(c, fresh < c->lease_until_ms);
    ol__cl_check_margin(c, now);
    if (c->role != RAFT_LEADER || !c->leader_ready)
        return;
    ol__cl_register_roster(c, now);
    ol__cl_reconcile_members(c);
    ol__cl_place(c, now);
    ol__cl_lead_tick(c, now);
}
