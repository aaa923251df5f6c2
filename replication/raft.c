/*
 * The raft glue.  libraft (0.15, Debian's libraft-dev) runs consensus over
 * the authenticated transport; this file owns setting it up, the FSM's
 * hooks, role tracking, handing entries to raft_apply() for the proposer
 * (propose.h), and the offline bootstrap.  The replica's life is in
 * cluster.c; every other raft call is in cluster_*.c.
 *
 * The FSM (fsm.c) applies an entry only once it is certainly committed,
 * in one SQLite transaction that also records the raft index, so entries
 * raft 0.15 re-applies after a restart are compared and skipped.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "cluster_int.h"
#include "placement.h"
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

static void wire_result_seen(void *data, uint64_t peer, uint64_t term,
                             uint64_t last)
{
    struct cluster *c = data;

    if (c->raft_inited)
        ol__ackpace_answer(&c->pace, peer, term, last);
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
int ol__cl_cluster_id_prepare(struct cluster *c, int has_state,
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

/* What the transport tells the raft glue: libraft's messages as they pass
 * (raftwire.h) and the cluster id a peer's handshake carried. */
void ol__cl_transport_hooks(struct cluster *c,
                            struct ol__transport_config *tc)
{
    tc->raft_hooks.data = c;
    tc->raft_hooks.append_seen = wire_append_seen;
    tc->raft_hooks.snapshot_seen = wire_snapshot_seen;
    tc->raft_hooks.result_cap = wire_result_cap;
    tc->raft_hooks.result_seen = wire_result_seen;
    tc->raft_hooks.snapshot_of = wire_snapshot_of;
    tc->cluster_id = c->cluster_id;
    tc->cluster_id_cb = cluster_id_adopted;
    tc->cluster_id_data = c;
}

/* ---- FSM hooks ---- */

void ol__cl_fsm_effects(void *data, struct ol__effects *fx, uint64_t term)
{
    struct cluster *c = data;

    ol__cl_dispatch(c, fx);
    if (c->role == RAFT_LEADER && !c->leader_ready &&
        term == c->raft.current_term)
        ol__cl_leader_ready(c);
}

void ol__cl_fsm_fatal(void *data, const char *msg)
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

void ol__cl_check_cb(uv_check_t *h)
{
    struct cluster *c = h->data;
    int state = raft_state(&c->raft);
    raft_id lid = 0;
    const char *laddr = NULL;

    ol__cl_raft_time_mark(c);
    ol__fsm_turn(&c->fsm);
    raft_leader(&c->raft, &lid, &laddr);
    if (c->raft_inited) {
        ol__ackpace_pump(&c->pace);
        ol__cl_election_restore(c, state, lid);
    }
    if (state == RAFT_UNAVAILABLE && c->role != RAFT_UNAVAILABLE &&
        !c->closing) {
        /* libraft 0.15 gives up this way when the leader sends entries
         * that conflict with ones it has committed: this node's log is not
         * the cluster's. */
        ol__cl_fsm_fatal(c, "raft: this node's log conflicts with entries it had "
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
            /* A ping echoes only a time of the leader it goes to: another
             * node's clock is not comparable (cluster_lease.c). */
            c->leader_time = 0;
            if (lid)
                c->n.leader_changes++;
            /* A new leader has not seen anything we sent: resend it all. */
            ol__proposer_retry(c->prop, 1);
        }
        c->role = state;
        ol__cl_role_changed(c, old);
    }
}

/* ---- entries to raft ---- */

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    struct cluster *c = req->data;

    (void)result;
    if (status != 0)
        ol_log(OL_LOG_DEBUG, "raft entry not applied here: %s; proposals "
                             "are retried",
               raft_strerror(status));
    raft_free(req);
    ol__proposer_submitted(c->prop, status != 0);
}

/* Hand finished entry bytes to raft (leader only): the proposer counts
 * it in flight until apply_cb. */
int ol__cl_raft_submit(void *data, const void *p, size_t len)
{
    struct cluster *c = data;
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
    return 0;
}

/* ---- setup ---- */

/* raft_uv 0.15 has no async_work, which asynchronous snapshots need; the
 * io struct is ours to complete, with the loop's thread pool. */
struct async_work {
    uv_work_t w;
    struct raft_io_async_work *req;
    raft_io_async_work_cb cb;
    int status;
};

/*
 * The work is a snapshot: the whole database read and packed, seconds of
 * CPU with 100,000 agents.  What triggers one is many entries committed,
 * which is also when the loop has most to do (a failed node's agents
 * moving and starting), and on a small machine the snapshot would take
 * its CPU from the loops just then.  It runs at nice ASYNC_WORK_NICE: the
 * loop and its workers come first, and a machine that is never idle still
 * gives it about a tenth of a CPU, so it ends and the log stays bounded.
 * An unprivileged thread may raise its nice value but never lower it
 * again, so the work runs on a thread of its own, which the pool thread
 * waits for.
 */
#define ASYNC_WORK_NICE 10

static void async_low(void *arg)
{
    struct async_work *aw = arg;

    (void)setpriority(PRIO_PROCESS, (id_t)gettid(), ASYNC_WORK_NICE);
    aw->status = aw->req->work(aw->req);
}

static void async_run(uv_work_t *w)
{
    struct async_work *aw = w->data;
    uv_thread_t t;

    if (uv_thread_create(&t, async_low, aw) == 0) {
        uv_thread_join(&t);
        return;
    }
    aw->status = aw->req->work(aw->req); /* at the pool's priority */
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

/* raft_uv's append and close, through the pacer (ackpace.h). */
static int io_append(struct raft_io *io, struct raft_io_append *req,
                     const struct raft_entry entries[], unsigned n,
                     raft_io_append_cb cb)
{
    struct raft *r = io->data;
    struct cluster *c = r->data;

    return ol__ackpace_append(&c->pace, io, req, entries, n, cb);
}

static void io_close(struct raft_io *io, raft_io_close_cb cb)
{
    struct raft *r = io->data;
    struct cluster *c = r->data;

    ol__ackpace_close(&c->pace, io, cb);
}

static raft_time io_time(struct raft_io *io)
{
    struct raft *r = io->data;

    return ol__cl_raft_time(r->data);
}

static uint64_t pace_now(void *data)
{
    return ol__cl_now(data);
}

/* A configuration of `self` and `others`, all voters.  Returns 0 or a
 * RAFT_* code; the caller closes `conf` either way. */
/* The raft role of a node with `labels`: a standby (placement.h) is
 * RAFT_STANDBY, a voter or a witness RAFT_VOTER. */
static int raft_role(const char *labels)
{
    return labels && ol__label_role(labels) == OL_ROLE_STANDBY
               ? RAFT_STANDBY
               : RAFT_VOTER;
}

/* The bootstrap configuration: this node and `others`, each in the raft
 * role its labels name (`self_labels`/`other_labels` may be NULL: every
 * node a voter). */
static int roster_conf(struct raft_configuration *conf, uint64_t self_id,
                       const char *address, const struct ol__peer *others,
                       size_t n_others, const char *self_labels,
                       char (*other_labels)[OL_LABELS_MAX + 1])
{
    int rv;

    raft_configuration_init(conf);
    rv = raft_configuration_add(conf, self_id, address,
                                raft_role(self_labels));
    for (size_t i = 0; i < n_others && rv == 0; i++)
        rv = raft_configuration_add(
            conf, others[i].id, others[i].address,
            raft_role(other_labels ? other_labels[i] : NULL));
    return rv;
}

/* raft_uv over the transport, completed with async_work. */
static int io_setup(struct cluster *c, char *errmsg)
{
    int rv = raft_uv_init(&c->io, c->loop, c->cfg.raft_dir,
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
    /* raft_uv dials a peer it lost again after a second by default, and
     * holds what it sends that peer meanwhile: a node back from a restart
     * would miss an election's votes for that long.  A heartbeat apart
     * instead; a dial that finds a spare connection (transport_raft.c)
     * costs nothing, one to a peer that is down is refused at once. */
    raft_uv_set_connect_retry_delay(&c->io, c->cfg.heartbeat_ms);
    /* An answer the pacer missed holds a completion for at most one
     * election timeout: long past any round trip a healthy cluster has. */
    ol__ackpace_init(&c->pace, &c->raft, c->io.append, c->io.close,
                     c->cfg.election_ms, pace_now, c);
    c->io.append = io_append;
    c->io.close = io_close;
    c->io.time = io_time; /* cluster_stall.c */
    ol__cl_raft_time_mark(c);
    if (c->io.version < 2 || c->io.async_work == NULL) {
        c->io.version = 2;
        c->io.async_work = io_async_work;
    }
    return 0;
}

static void tune(struct cluster *c)
{
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
}

/* Bootstrap every configured node as a voter (a no-op when the
 * directory already holds state). */
static int bootstrap(struct cluster *c, char *errmsg)
{
    struct raft_configuration conf;
    int rv = roster_conf(&conf, c->cfg.self_id, c->cfg.listen, c->cfg.peers,
                         c->cfg.n_peers, c->cfg.labels, c->cfg.peer_labels);

    if (rv == 0)
        rv = raft_bootstrap(&c->raft, &conf);
    raft_configuration_close(&conf);
    if (rv != 0 && rv != RAFT_CANTBOOTSTRAP) {
        ol__errf(errmsg, "raft bootstrap: %s", raft_errmsg(&c->raft));
        return OL_EIO;
    }
    if (rv == 0) {
        ol_log(OL_LOG_INFO, "raft: bootstrapped with %zu nodes (standbys "
                            "as non-voters)",
               c->cfg.n_peers + 1);
        if (ol__cluster_id_save(c->cfg.raft_dir, c->cluster_id, errmsg) != 0)
            return OL_EIO;
    }
    return 0;
}

int ol__cl_raft_setup(struct cluster *c, char *errmsg)
{
    int rv = io_setup(c, errmsg);

    if (rv != 0)
        return rv;
    ol__fsm_attach(&c->fsm, &c->raft);
    rv = raft_init(&c->raft, &c->io, &c->fsm.fsm, c->cfg.self_id,
                   c->cfg.listen);
    if (rv != 0) {
        ol__errf(errmsg, "raft init: %s", raft_errmsg(&c->raft));
        raft_uv_close(&c->io);
        return OL_EIO;
    }
    c->raft_inited = 1;
    tune(c);
    if (c->cfg.bootstrap && (rv = bootstrap(c, errmsg)) != 0)
        return rv;
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

/* ---- offline bootstrap ---- */

static void boot_closed(struct raft *r)
{
    (void)r;
}

int ol__cluster_bootstrap_dir(const char *raft_dir, uint64_t self_id,
                              const char *address, const char *self_labels,
                              const struct ol__peer *others,
                              char (*other_labels)[OL_LABELS_MAX + 1],
                              size_t n_others,
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
        rv = roster_conf(&conf, self_id, address, others, n_others,
                         self_labels, other_labels);
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
