/*
 * The raft glue.  libraft (0.15, Debian's libraft-dev) runs consensus over
 * the authenticated transport; this file owns setting it up and tearing it
 * down, the FSM, and role tracking (proposals are in propose.c, membership
 * and leases in cluster.c).
 *
 * The FSM (fsm.c) applies an entry only once it is certainly committed,
 * in one SQLite transaction that also records the raft index, so entries
 * raft 0.15 re-applies after a restart are compared and skipped.
 */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "base/mpr.h"
#include "cluster_int.h"
#include "rstart.h"

uint64_t ol__cl_now(struct cluster *c)
{
    return uv_now(c->loop);
}

/* ---- corrections to libraft 0.15 on the wire (raftwire.h) ---- */

static void wire_append_seen(void *data, uint64_t term, uint64_t prev_index,
                             uint64_t prev_term)
{
    struct cluster *c = data;

    if (c->raft_inited)
        ol__rfix_append_seen(&c->rfix, &c->raft, term, prev_index,
                             prev_term);
}

static void wire_snapshot_seen(void *data, uint64_t term, uint64_t last)
{
    struct cluster *c = data;

    ol__rfix_snapshot_seen(&c->rfix, term, last);
}

static void wire_snapshot_of(void *data, uint64_t *index, uint64_t *term)
{
    struct cluster *c = data;

    *index = c->raft_inited ? c->raft.log.snapshot.last_index : 0;
    *term = c->raft_inited ? c->raft.log.snapshot.last_term : 0;
}

static uint64_t wire_result_cap(void *data, uint64_t term, uint64_t last)
{
    struct cluster *c = data;

    return c->raft_inited ? ol__rfix_result_cap(&c->rfix, &c->raft, term,
                                                last)
                          : 0;
}

/* ---- the cluster id ---- */

static void cluster_id_adopted(void *data, const uint8_t *id)
{
    struct cluster *c = data;
    char err[OL_ERRMSG_SIZE];

    memcpy(c->cluster_id, id, OL_CLUSTER_ID_SIZE);
    if (ol__cluster_id_save(c->cfg.raft_dir, id, err) != 0)
        ol_log(OL_LOG_ERROR, "cluster id not saved: %s", err);
}

/* Load this node's cluster id, or make it when this start bootstraps. */
static int cluster_id_prepare(struct cluster *c, int has_state,
                              char *errmsg)
{
    int rv = ol__cluster_id_load(c->cfg.raft_dir, c->cluster_id, errmsg);

    if (rv == OL_ENOTFOUND) {
        memset(c->cluster_id, 0, sizeof c->cluster_id);
        if (c->cfg.bootstrap && !has_state)
            ol__cluster_id_roster(c->cfg.cluster, c->cfg.self_id, c->key->pk,
                                  c->cfg.peers, c->cfg.n_peers,
                                  c->cluster_id);
        return 0;
    }
    return rv;
}

/* ---- FSM hooks ---- */

static void fsm_effects(void *data, struct ol__effects *fx, uint64_t term)
{
    struct cluster *c = data;

    ol__cl_dispatch(c, fx);
    if (c->role == RAFT_LEADER && !c->leader_ready &&
        term == c->raft.current_term)
        ol__cl_leader_ready(c);
}

static void fsm_fatal(void *data, const char *msg)
{
    (void)data;
    /* Raft has committed what cannot be applied, or this node's log is not
     * the one it acted on: going on would make its database lie.  Stopping
     * is the only safe answer; the message says how to recover. */
    ol_log(OL_LOG_ERROR, "%s", msg);
    exit(70);
}

static void trace_emit(struct raft_tracer *t, const char *file, int line,
                       const char *message)
{
    (void)t;
    ol_log(OL_LOG_TRACE, "raft: %s:%d: %s", file, line, message);
}

/* ---- role tracking ---- */

static void check_cb(uv_check_t *h)
{
    struct cluster *c = h->data;
    int state = raft_state(&c->raft);
    raft_id lid = 0;
    const char *laddr = NULL;

    raft_leader(&c->raft, &lid, &laddr);
    if (state == RAFT_UNAVAILABLE && c->role != RAFT_UNAVAILABLE &&
        !c->closing) {
        /* libraft 0.15 gives up this way when the leader sends entries
         * that conflict with ones it has committed: this node's log is not
         * the cluster's. */
        fsm_fatal(c, "raft: this node's log conflicts with entries it had "
                     "committed; stopping. Rebuild this node from the "
                     "cluster: move its data directory aside and start it "
                     "with --rejoin");
        return;
    }
    if (state != c->role || lid != c->leader_id) {
        int old = c->role;

        if (lid != c->leader_id) {
            if (c->leader_id)
                c->prev_leader_id = c->leader_id;
            c->leader_id = lid;
            if (lid)
                c->n.leader_changes++;
            /* A new leader has not seen anything we sent: resend it all. */
            ol__cl_retry_stale(c, 1);
        }
        c->role = state;
        ol__cl_role_changed(c, old);
    }
}

static void tick_cb(uv_timer_t *t)
{
    struct cluster *c = t->data;

    if (c->closing)
        return;
    ol__cl_retry_stale(c, 0);
    ol__cl_tick(c);
}

/* ---- replica interface ---- */

static int idle(struct ol__replica *r)
{
    struct cluster *c = (struct cluster *)r;

    return c->pend.count == 0;
}

static int is_leader(struct ol__replica *r)
{
    struct cluster *c = (struct cluster *)r;

    return c->role == RAFT_LEADER;
}

static void counters(struct ol__replica *r, struct ol__replica_counters *out)
{
    struct cluster *c = (struct cluster *)r;

    memset(out, 0, sizeof *out);
    out->batches = c->n.entries;
    out->ckpts = c->n.ckpts_proposed;
    out->failures = c->n.retries;
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
    c->close_cb = cb;
    c->close_data = data;
    /* kick, tick, check, and the raft+transport teardown. */
    c->handles = 4;
    uv_close((uv_handle_t *)&c->kick, handle_closed);
    uv_close((uv_handle_t *)&c->tick, handle_closed);
    uv_close((uv_handle_t *)&c->check, handle_closed);
    if (c->raft_inited) {
        raft_close(&c->raft, raft_closed);
    } else if (c->tr) {
        ol__transport_close(c->tr, transport_closed, c);
    } else {
        handle_closed((uv_handle_t *)&c->kick);
    }
}

static const struct ol__replica_vt cluster_vt = {
    .propose_ckpt = ol__cl_propose_ckpt,
    .propose_cmds = ol__cl_propose_cmds,
    .idle = idle,
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
    void *v;

    if (c == NULL)
        return;
    while (c->unsent_head) {
        struct pend *p = c->unsent_head;

        c->unsent_head = p->next_unsent;
        if (ol__map_get(&c->pend, p->key) != p)
            ol__cl_pend_free(p);
    }
    for (size_t i = 0; ol__map_next(&c->pend, &i, &v);)
        ol__cl_pend_free(v);
    ol__map_close(&c->pend);
    ol__entry_w_close(&c->fwd);
    ol__fsm_close(&c->fsm);
    free(c->peers);
    free(c->placing);
    free(c);
}

uint64_t ol__cluster_incarnation(const struct ol__replica *r)
{
    return ((const struct cluster *)r)->inc;
}

/* raft_uv 0.15 has no async_work, which asynchronous snapshots need; the
 * io struct is ours to complete, with the loop's thread pool. */
struct async_work {
    uv_work_t w;
    struct raft_io_async_work *req;
    raft_io_async_work_cb cb;
    int status;
};

static void async_run(uv_work_t *w)
{
    struct async_work *aw = w->data;

    aw->status = aw->req->work(aw->req);
}

static void async_done(uv_work_t *w, int status)
{
    struct async_work *aw = w->data;
    struct raft_io_async_work *req = aw->req;
    raft_io_async_work_cb cb = aw->cb;
    int rv = status != 0 ? RAFT_CANCELED : aw->status;

    raft_free(aw);
    cb(req, rv);
}

static int io_async_work(struct raft_io *io, struct raft_io_async_work *req,
                         raft_io_async_work_cb cb)
{
    /* raft_init() points io->data at the raft instance. */
    struct raft *r = io->data;
    struct cluster *c = r->data;
    struct async_work *aw = raft_malloc(sizeof *aw);
    int rv;

    if (aw == NULL)
        return RAFT_NOMEM;
    aw->w.data = aw;
    aw->req = req;
    aw->cb = cb;
    rv = uv_queue_work(c->loop, &aw->w, async_run, async_done);
    if (rv != 0) {
        raft_free(aw);
        return RAFT_IOERR;
    }
    return 0;
}

static int raft_setup(struct cluster *c, char *errmsg)
{
    struct raft_configuration conf;
    int rv;

    rv = raft_uv_init(&c->io, c->loop, c->cfg.raft_dir,
                      ol__transport_raft(c->tr));
    if (rv != 0) {
        ol__errf(errmsg, "raft storage '%s': %s", c->cfg.raft_dir,
                 c->io.errmsg);
        return OL_EIO;
    }
    /* libraft's 8 MiB segments roll over every half second at 100 agents'
     * load, and appends wait for each rollover: 32 MiB segments cut the
     * commit p99 there from about 40 to 25 ms (bench_cluster). */
    if (c->cfg.segment_mb)
        raft_uv_set_segment_size(&c->io, (size_t)c->cfg.segment_mb << 20);
    if (c->io.version < 2 || c->io.async_work == NULL) {
        c->io.version = 2;
        c->io.async_work = io_async_work;
    }
    ol__fsm_attach(&c->fsm, &c->raft);
    rv = raft_init(&c->raft, &c->io, &c->fsm.fsm, c->cfg.self_id,
                   c->cfg.listen);
    if (rv != 0) {
        ol__errf(errmsg, "raft init: %s", raft_errmsg(&c->raft));
        raft_uv_close(&c->io);
        return OL_EIO;
    }
    c->raft_inited = 1;
    c->raft.data = c;
    c->tracer.impl = c;
    c->tracer.enabled = ol__log_level >= OL_LOG_TRACE;
    c->tracer.emit = trace_emit;
    c->raft.tracer = &c->tracer;
    raft_set_pre_vote(&c->raft, true);
    raft_set_election_timeout(&c->raft, c->cfg.election_ms);
    raft_set_heartbeat_timeout(&c->raft, c->cfg.heartbeat_ms);
    raft_set_snapshot_threshold(&c->raft, c->cfg.snapshot_threshold);
    raft_set_snapshot_trailing(&c->raft, c->cfg.snapshot_trailing);
    /* The default (30 s) stalls a follower that was busy taking its own
     * snapshot when the leader's arrived; a few election timeouts do. */
    raft_set_install_snapshot_timeout(
        &c->raft, c->cfg.election_ms * 4 > 2000 ? c->cfg.election_ms * 4
                                                : 2000);
    if (c->cfg.bootstrap) {
        raft_configuration_init(&conf);
        rv = raft_configuration_add(&conf, c->cfg.self_id, c->cfg.listen,
                                    RAFT_VOTER);
        for (size_t i = 0; i < c->cfg.n_peers && rv == 0; i++)
            rv = raft_configuration_add(&conf, c->cfg.peers[i].id,
                                        c->cfg.peers[i].address, RAFT_VOTER);
        if (rv == 0)
            rv = raft_bootstrap(&c->raft, &conf);
        raft_configuration_close(&conf);
        if (rv != 0 && rv != RAFT_CANTBOOTSTRAP) {
            ol__errf(errmsg, "raft bootstrap: %s", raft_errmsg(&c->raft));
            return OL_EIO;
        }
        if (rv == 0) {
            ol_log(OL_LOG_INFO, "raft: bootstrapped with %zu voters",
                   c->cfg.n_peers + 1);
            if (ol__cluster_id_save(c->cfg.raft_dir, c->cluster_id,
                                    errmsg) != 0)
                return OL_EIO;
        }
    }
    rv = raft_start(&c->raft);
    if (rv != 0) {
        ol__errf(errmsg, "raft start: %s", raft_errmsg(&c->raft));
        return OL_EIO;
    }
    /* The log is loaded: it must reach what the database has applied. */
    if (ol__raft_last_index(&c->raft) < ol__sm_applied(c->sm)) {
        ol__errf(errmsg,
                 "the raft log in '%s' ends at index %" PRIu64 " but this "
                 "node's database has applied up to %" PRIu64 ": the raft "
                 "directory is older than the database. To rebuild this "
                 "node from the cluster: `outlast cluster remove %" PRIu64
                 "` on the leader, start it with `outlastd --rejoin`, then "
                 "add it again",
                 c->cfg.raft_dir, ol__raft_last_index(&c->raft),
                 ol__sm_applied(c->sm), c->cfg.self_id);
        return OL_ESTATE;
    }
    return 0;
}

int ol__cluster_create(uv_loop_t *loop, const struct ol__cluster_config *cfg,
                       struct ol__store *st, struct ol__sm *sm,
                       const struct ol__key *key,
                       const struct ol__cluster_hooks *hooks,
                       struct ol__replica **out, char *errmsg)
{
    struct ol__transport_config tc;
    struct ol__fsm_config fc;
    struct ol__fsm_hooks fh;
    struct cluster *c = calloc(1, sizeof *c);
    int has_state, rv;

    if (c == NULL)
        return OL_ENOMEM;
    c->base.vt = &cluster_vt;
    c->loop = loop;
    c->cfg = *cfg;
    c->hooks = *hooks;
    c->st = st;
    c->sm = sm;
    c->key = key;
    c->role = RAFT_UNAVAILABLE;
    while (c->inc == 0)
        randombytes_buf(&c->inc, sizeof c->inc);
    /* Two fifths: a lease and the leader's majority window together stay a
     * fifth of the failover time short of it (cluster.c). */
    c->lease_ms = cfg->failover_ms * 2 / 5;
    /* A node held at an older level decodes only what that level knows,
     * as an older build would. */
    ol__cmd_set_level(cfg->feature_level ? cfg->feature_level
                                         : OL_FEATURE_LEVEL);
    c->level = ol__cmd_level();
    c->retry_ms = cfg->election_ms > 200 ? cfg->election_ms : 200;
    ol__map_init(&c->pend);
    ol__entry_w_init(&c->fwd);
    /* The handles first: closing a cluster that failed to start (below)
     * closes them whatever step failed. */
    uv_idle_init(loop, &c->kick);
    c->kick.data = c;
    uv_timer_init(loop, &c->tick);
    c->tick.data = c;
    uv_check_init(loop, &c->check);
    c->check.data = c;
    *out = &c->base;

    rv = ol__mkdirs(cfg->raft_dir, 0700, errmsg);
    if (rv != 0)
        return rv;
    /* A lost raft directory is refused before anything is started. */
    has_state = ol__raft_dir_state(cfg->raft_dir, errmsg);
    if (has_state < 0)
        return has_state;
    rv = ol__raft_start_check(cfg->raft_dir, has_state, ol__sm_applied(sm),
                              cfg->self_id, errmsg);
    if (rv == 0)
        rv = cluster_id_prepare(c, has_state, errmsg);
    if (rv != 0)
        return rv;
    memset(&fc, 0, sizeof fc);
    fc.db_path = cfg->db_path;
    fc.async_snapshots = 1;
    /* Cover what libraft applies again after a restart: everything since
     * its last snapshot, which it takes every `threshold` entries. */
    fc.ring = 2 * (cfg->snapshot_threshold + cfg->snapshot_trailing) + 1024;
    fh.data = c;
    fh.effects = fsm_effects;
    fh.fatal = fsm_fatal;
    rv = ol__fsm_init(&c->fsm, st, sm, &fc, &fh, errmsg);
    if (rv != 0)
        return rv;
    memset(&tc, 0, sizeof tc);
    tc.self_id = cfg->self_id;
    tc.listen = cfg->listen;
    tc.key = key;
    tc.cluster = cfg->cluster;
    tc.recv_cb = ol__cl_recv;
    tc.recv_data = c;
    tc.raft_hooks.data = c;
    tc.raft_hooks.append_seen = wire_append_seen;
    tc.raft_hooks.snapshot_seen = wire_snapshot_seen;
    tc.raft_hooks.result_cap = wire_result_cap;
    tc.raft_hooks.snapshot_of = wire_snapshot_of;
    tc.cluster_id = c->cluster_id;
    tc.cluster_id_cb = cluster_id_adopted;
    tc.cluster_id_data = c;
    rv = ol__transport_create(loop, &tc, &c->tr, errmsg);
    if (rv != 0)
        return rv;
    ol__cl_roster_sync(c);
    /* Bind before raft touches its directory, so an address that cannot be
     * used is reported with its reason and nothing has been bootstrapped
     * (raft's own listen call finds the listener open). */
    rv = ol__transport_listen(c->tr, errmsg);
    if (rv != 0)
        return rv;
    rv = raft_setup(c, errmsg);
    if (rv != 0)
        return rv;
    uv_check_start(&c->check, check_cb);
    uv_timer_start(&c->tick, tick_cb, cfg->heartbeat_ms / 2 + 1,
                   cfg->heartbeat_ms / 2 + 1);
    ol_log(OL_LOG_INFO,
           "cluster '%s': node %" PRIu64 " at %s, incarnation %016" PRIx64
           ", election %u ms, heartbeat %u ms, failover %u ms",
           cfg->cluster, cfg->self_id, cfg->listen, c->inc, cfg->election_ms,
           cfg->heartbeat_ms, cfg->failover_ms);
    return 0;
}

/* ---- offline bootstrap ---- */

static void boot_closed(struct raft *r)
{
    (void)r;
}

int ol__cluster_bootstrap_dir(const char *raft_dir, uint64_t self_id,
                              const char *address,
                              const struct ol__peer *others, size_t n_others,
                              const uint8_t cluster_id[OL_CLUSTER_ID_SIZE],
                              char *errmsg)
{
    struct raft_uv_transport tr;
    struct raft_configuration conf;
    struct raft_io io;
    struct raft_fsm fsm;
    struct raft r;
    uv_loop_t loop;
    int rv;

    memset(&fsm, 0, sizeof fsm);
    fsm.version = 1;
    if (mkdir(raft_dir, 0700) != 0 && access(raft_dir, W_OK) != 0) {
        ol__errf(errmsg, "raft dir '%s': cannot create", raft_dir);
        return OL_EIO;
    }
    uv_loop_init(&loop);
    memset(&tr, 0, sizeof tr);
    rv = raft_uv_tcp_init(&tr, &loop);
    if (rv == 0)
        rv = raft_uv_init(&io, &loop, raft_dir, &tr);
    if (rv != 0) {
        ol__errf(errmsg, "raft storage '%s': cannot open", raft_dir);
        uv_loop_close(&loop);
        return OL_EIO;
    }
    rv = raft_init(&r, &io, &fsm, self_id, address);
    if (rv == 0) {
        raft_configuration_init(&conf);
        rv = raft_configuration_add(&conf, self_id, address, RAFT_VOTER);
        for (size_t i = 0; i < n_others && rv == 0; i++)
            rv = raft_configuration_add(&conf, others[i].id,
                                        others[i].address, RAFT_VOTER);
        if (rv == 0)
            rv = raft_bootstrap(&r, &conf);
        raft_configuration_close(&conf);
        if (rv == RAFT_CANTBOOTSTRAP)
            ol__errf(errmsg, "raft dir '%s' already holds a cluster's state",
                     raft_dir);
        else if (rv != 0)
            ol__errf(errmsg, "bootstrap '%s': %s", raft_dir, raft_errmsg(&r));
        raft_close(&r, boot_closed);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    raft_uv_close(&io);
    raft_uv_tcp_close(&tr);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    if (rv == RAFT_CANTBOOTSTRAP)
        return OL_EEXISTS;
    if (rv == 0 && ol__cluster_id_save(raft_dir, cluster_id, errmsg) != 0)
        return OL_EIO;
    return rv == 0 ? 0 : OL_EIO;
}
