/*
 * Cluster duties around consensus.
 *
 * Liveness and leases.  Every node pings the leader each heartbeat over the
 * message channel; the leader answers with the ping's own timestamp.  A
 * node may run agents only until lease = (send time of its last answered
 * ping) + failover/2, and the leader only while a majority has pinged it
 * within the same window.  The leader moves a node's agents only after
 * failover ms of silence, so a node cut off from the majority has stopped
 * stepping its agents before they resume elsewhere.  Epochs fence what
 * slips through: a checkpoint from the old owner never commits.
 *
 * The leader, once an entry of its own term has committed (so its state
 * machine is current), registers the roster's keys in the replicated nodes
 * table, adds roster nodes to the raft configuration one change at a time,
 * and runs placement every tick.
 */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mpr.h"
#include "base/pack.h"
#include "cluster_int.h"
#include "placement.h"

#define PLACE_BATCH 256
#define PLACING_TIMEOUT_MS 3000
#define REBALANCE_EVERY_MS 2000

/* ---- roster ---- */

void ol__cl_roster_sync(struct cluster *c)
{
    struct ol__peer peers[64];
    const struct ol__sm_node *nodes;
    size_t n = 0, nn = ol__sm_nodes(c->sm, &nodes);

    for (size_t i = 0; i < nn && n < 64; i++) {
        if (nodes[i].removed || nodes[i].id == c->cfg.self_id)
            continue;
        peers[n].id = nodes[i].id;
        snprintf(peers[n].address, sizeof peers[n].address, "%s",
                 nodes[i].address);
        memcpy(peers[n].pk, nodes[i].pk, OL_PK_SIZE);
        n++;
    }
    /* Config peers the replicated roster does not know yet. */
    for (size_t i = 0; i < c->cfg.n_peers && n < 64; i++) {
        const struct ol__sm_node *known = ol__sm_node(c->sm,
                                                      c->cfg.peers[i].id);

        if (known)
            continue;
        peers[n++] = c->cfg.peers[i];
    }
    if (ol__transport_set_roster(c->tr, peers, n) != 0)
        ol_log(OL_LOG_ERROR, "transport: cannot update the roster");
}

/* ---- messages ---- */

static void send_msg(struct cluster *c, uint64_t to, const uint64_t *v,
                     int n)
{
    struct ol__buf b;
    msgpack_packer pk;

    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    msgpack_pack_array(&pk, (size_t)n);
    for (int i = 0; i < n; i++)
        msgpack_pack_uint64(&pk, v[i]);
    if (b.base)
        (void)ol__transport_send(c->tr, to, b.base, b.len);
    ol__buf_close(&b);
}

static struct peer_state *peer(struct cluster *c, uint64_t id, int create)
{
    struct peer_state *p;

    for (size_t i = 0; i < c->n_peers; i++)
        if (c->peers[i].id == id)
            return &c->peers[i];
    if (!create)
        return NULL;
    p = realloc(c->peers, (c->n_peers + 1) * sizeof *p);
    if (p == NULL)
        return NULL;
    c->peers = p;
    p = &c->peers[c->n_peers++];
    memset(p, 0, sizeof *p);
    p->id = id;
    return p;
}

/*
 * A follower learns that an entry committed only with the leader's next
 * AppendEntries, up to a heartbeat later, and its agents wait that long
 * for every step.  The leader, which applies first, tells each owner which
 * of its checkpoints committed; a committed entry is durable on a majority,
 * so the owner may go on at once.  Its own apply comes later and finds the
 * agent already past that seq.
 */
void ol__cl_notify_owners(struct cluster *c, const struct ol__effects *fx)
{
    const struct ol__sm_node *nodes;
    size_t nn = ol__sm_nodes(c->sm, &nodes);

    for (size_t k = 0; k < nn; k++) {
        uint64_t owner = nodes[k].id;
        struct ol__buf b;
        msgpack_packer pk;
        uint32_t n = 0;

        if (owner == c->cfg.self_id || nodes[k].removed)
            continue;
        for (const struct ol__effect *e = fx->head; e; e = e->next) {
            const struct ol__sm_agent *a;

            if (e->type != OL_FX_CKPT || e->u.ckpt.dup)
                continue;
            a = ol__sm_agent(c->sm, e->u.ckpt.agent);
            if (a && a->owner == owner)
                n++;
        }
        if (n == 0)
            continue;
        ol__buf_init(&b);
        msgpack_packer_init(&pk, &b, ol__buf_write);
        msgpack_pack_array(&pk, 2);
        msgpack_pack_uint32(&pk, MSG_APPLIED);
        msgpack_pack_array(&pk, n);
        for (const struct ol__effect *e = fx->head; e; e = e->next) {
            const struct ol__sm_agent *a;
            size_t len;

            if (e->type != OL_FX_CKPT || e->u.ckpt.dup)
                continue;
            a = ol__sm_agent(c->sm, e->u.ckpt.agent);
            if (a == NULL || a->owner != owner)
                continue;
            len = strlen(e->u.ckpt.agent);
            msgpack_pack_array(&pk, 4);
            msgpack_pack_str(&pk, len);
            msgpack_pack_str_body(&pk, e->u.ckpt.agent, len);
            msgpack_pack_uint64(&pk, e->u.ckpt.epoch);
            msgpack_pack_uint64(&pk, e->u.ckpt.seq);
            msgpack_pack_int(&pk, e->status);
        }
        if (b.base)
            (void)ol__transport_send(c->tr, owner, b.base, b.len);
        ol__buf_close(&b);
    }
}

static void on_applied(struct cluster *c, uint64_t from, struct ol__mpr *r)
{
    struct ol__effects fx;
    uint32_t n, m;

    if (from != c->leader_id || c->role == RAFT_LEADER ||
        ol__mpr_array(r, &n) != 0)
        return;
    ol__effects_init(&fx);
    for (uint32_t i = 0; i < n; i++) {
        struct ol__effect *e = calloc(1, sizeof *e);
        int64_t status;

        if (e == NULL)
            break;
        e->type = OL_FX_CKPT;
        if (ol__mpr_array(r, &m) || m != 4 ||
            ol__mpr_strcpy(r, e->u.ckpt.agent, sizeof e->u.ckpt.agent) ||
            ol__mpr_uint(r, &e->u.ckpt.epoch) ||
            ol__mpr_uint(r, &e->u.ckpt.seq) || ol__mpr_int(r, &status) ||
            status > 0 || status < -1000) {
            free(e);
            ol_log_rl(OL_LOG_WARN, "applied notice from node %" PRIu64
                                   " is malformed", from);
            break;
        }
        e->status = (int)status;
        if (status != 0)
            snprintf(e->errmsg, sizeof e->errmsg, "refused by the leader: %s",
                     ol_strerror((int)status));
        if (fx.tail)
            fx.tail->next = e;
        else
            fx.head = e;
        fx.tail = e;
        fx.n++;
    }
    ol__cl_on_effects(c, &fx);
    if (!c->closing && c->hooks.effects)
        c->hooks.effects(c->hooks.data, &fx);
    ol__effects_free(&fx);
}

/* May node `from` ask for command `cmd`?  Members forward what operators
 * ask of them; decisions that only a leader makes (placements, removals)
 * are never forwarded, and a node speaks only for itself and its own
 * agents. */
static int forward_allowed(struct cluster *c, uint64_t from,
                           const struct ol__cmd_info *ci,
                           const struct ol__cmd *cmd)
{
    const struct ol__sm_agent *a;

    switch (ci->auth) {
    case OL_AUTH_ANY:
        return 1;
    case OL_AUTH_SELF:
        return cmd->node_id == from;
    case OL_AUTH_OWNER:
        a = ol__sm_agent(c->sm, cmd->name);
        return a != NULL && a->owner == from;
    default:
        return 0;
    }
}

static void on_forward(struct cluster *c, uint64_t from, struct ol__mpr *r)
{
    struct ol__entry e;
    const void *p;
    uint32_t len;
    char err[OL_ERRMSG_SIZE];

    if (ol__mpr_bin(r, &p, &len) != 0)
        return;
    if (c->role != RAFT_LEADER)
        return; /* the sender retries with whoever leads */
    if (ol__entry_decode(p, len, &e, err) != 0) {
        ol_log_rl(OL_LOG_WARN, "forward from node %" PRIu64 ": %s", from,
                  err);
        return;
    }
    /* Forwarded commands wait for the next entry; past the cap the sender
     * retries later rather than making an entry too big to apply. */
    if (c->fwd.n + e.n > OL_ENTRY_MAX_CMDS / 2) {
        ol_log_rl(OL_LOG_WARN, "forward from node %" PRIu64 " deferred: "
                               "%u commands already waiting",
                  from, c->fwd.n);
    } else {
        uint32_t level = ol__cl_level(c);

        for (uint32_t i = 0; i < e.n; i++) {
            const struct ol__cmd_info *ci = ol__cmd_info(e.cmds[i].type);

            /* Not every voter could apply it yet: the sender keeps it and
             * tries again. */
            if (ci == NULL || ci->level > level)
                continue;
            if (!forward_allowed(c, from, ci, &e.cmds[i])) {
                c->n.refused_fwd++;
                ol_log_rl(OL_LOG_WARN,
                          "forward from node %" PRIu64 ": a %s command is "
                          "not that node's to propose; refused",
                          from, ci->name);
                continue;
            }
            (void)ol__entry_add_raw(&c->fwd, &e.cmds[i].raw);
        }
    }
    ol__entry_free(&e);
    ol__cl_kick(c);
}

static uint64_t fresh_ms(void)
{
    return uv_hrtime() / 1000000;
}

static void leader_lease(struct cluster *c, uint64_t now);
static int notice_suspend(struct cluster *c, uint64_t now);
static void report_lease(struct cluster *c, int ok);

/* May the leader renew this node's lease?  Not while agents are being
 * moved off the node, and not before the node has applied the moves that
 * were (by what its ping says it had applied, which is never newer than
 * the truth).  A new leader whose state machine is not current yet may not
 * know of an older leader's moves: until it is, it grants only to a node
 * that has applied its whole log, which holds every committed entry. */
static int grants_to(struct cluster *c, const struct peer_state *p)
{
    if (p->moving_off != 0 || p->applied < p->fence_index)
        return 0;
    return c->leader_ready || p->applied >= raft_last_index(&c->raft);
}

/* v: node, inc, applied, sent_ms, level, echo of our last answer's time.
 * The echo is what proves contact: it is a time on this leader's own
 * clock that the node had heard from it by, whatever the message's delay
 * (a ping that sat in a queue echoes an old time). */
static void on_ping(struct cluster *c, uint64_t from, const uint64_t *v)
{
    struct peer_state *p;
    uint64_t now, reply[8];

    if (v[0] != from || c->role != RAFT_LEADER)
        return;
    notice_suspend(c, ol__cl_now(c));
    now = fresh_ms();
    p = peer(c, from, 1);
    if (p == NULL)
        return;
    p->last_ms = ol__cl_now(c);
    p->inc = v[1];
    p->applied = v[2];
    p->level = (uint32_t)v[4];
    p->seen = 1;
    if (v[5] && v[5] >= c->resumed_ms && v[5] <= now &&
        v[5] > p->contact_ms) {
        p->contact_ms = v[5];
        /* This echo may be the one that completes a majority. */
        leader_lease(c, now);
    }
    reply[0] = MSG_PONG;
    reply[1] = c->raft.current_term;
    reply[2] = c->cfg.self_id;
    reply[3] = ol__sm_applied(c->sm);
    reply[4] = v[3];
    reply[5] = ol__cl_level(c);
    reply[6] = now;
    /* Only a leader that a majority can hear grants leases: a leader cut
     * off with a minority stops renewing its followers' leases within one
     * lease (cluster.h) instead of until libraft deposes it. */
    reply[7] = now < c->lead_lease_until_ms && grants_to(c, p);
    send_msg(c, from, reply, 8);
}

/* v: term, leader, applied, echo of our ping's time, level, the leader's
 * time, whether it grants a lease. */
static void ping_leader(struct cluster *c, uint64_t now, uint64_t fresh)
{
    uint64_t v[7] = {MSG_PING, c->cfg.self_id, c->inc, ol__sm_applied(c->sm),
                     fresh, c->level, c->leader_time};

    c->last_ping_ms = now;
    c->pinged_leader = c->leader_id;
    send_msg(c, c->leader_id, v, 7);
}

static void on_pong(struct cluster *c, uint64_t from, const uint64_t *v)
{
    uint64_t now;
    int bar_was_unset;

    if (v[1] != from || from != c->leader_id)
        return;
    notice_suspend(c, ol__cl_now(c));
    now = fresh_ms();
    bar_was_unset = c->pong_commit == UINT64_MAX;
    c->last_pong_ms = ol__cl_now(c);
    c->leader_time = v[5];
    /* A held lease is renewed by any granting answer.  A lost one comes
     * back only once this node has applied what the leader had committed
     * one answer ago: a node back from a partition must learn where its
     * agents went before it steps any of them, but a node that is merely
     * busy must not lose its lease for lagging a little. */
    if (v[6] && v[3] >= c->resumed_ms && v[3] <= now &&
        (now < c->lease_until_ms ||
         ol__sm_applied(c->sm) >= c->pong_commit) &&
        v[3] + c->lease_ms > c->lease_until_ms)
        c->lease_until_ms = v[3] + c->lease_ms;
    c->pong_commit = v[2];
    c->cluster_level = (uint32_t)v[4];
    /* Without a lease, the answer that only set the bar is followed by
     * another ping at once (its echo may also complete a new leader's
     * majority), not a heartbeat later: this is on a failover's path. */
    if (now < c->lease_until_ms)
        report_lease(c, 1);
    else if (bar_was_unset)
        ping_leader(c, ol__cl_now(c), now);
}

void ol__cl_recv(void *data, uint64_t from, const void *msg, size_t len)
{
    struct cluster *c = data;
    struct ol__mpr r;
    uint32_t n;
    uint64_t type, v[7];

    if (c->closing)
        return;
    ol__mpr_init(&r, msg, len);
    if (ol__mpr_array(&r, &n) || n < 2 || ol__mpr_uint(&r, &type)) {
        ol_log_rl(OL_LOG_WARN, "message from node %" PRIu64 " is malformed",
                  from);
        return;
    }
    if (type == MSG_FORWARD && n == 2) {
        on_forward(c, from, &r);
        return;
    }
    if (type == MSG_APPLIED && n == 2) {
        on_applied(c, from, &r);
        return;
    }
    if (type == MSG_APP && n == 2) {
        const void *p;
        uint32_t plen;

        if (ol__mpr_bin(&r, &p, &plen) == 0 && c->hooks.app)
            c->hooks.app(c->hooks.data, from, p, plen);
        return;
    }
    if ((type == MSG_PING && (n < 5 || n > 7)) ||
        (type == MSG_PONG && (n < 5 || n > 8)) ||
        (type != MSG_PING && type != MSG_PONG))
        return;
    /* Fields after the first four are newer: absent, they take the values
     * an older node meant (level 1, no echo, a granting answer). */
    v[4] = 1;
    v[5] = 0;
    v[6] = 1;
    for (uint32_t i = 0; i < n - 1; i++)
        if (ol__mpr_uint(&r, &v[i]) != 0)
            return;
    if (v[4] == 0 || v[4] > UINT32_MAX)
        return;
    if (type == MSG_PING)
        on_ping(c, from, v);
    else
        on_pong(c, from, v);
}

/* The leader: the lowest level any voter reported.  A voter not heard from
 * since this node leads counts at the level the previous leader last
 * announced (it had heard every voter then; a node does not move down a
 * level without restarting, and one that comes back older stops on the
 * first command it cannot apply rather than apply it differently), or at
 * level 1 when there was none: so a leader elected while a voter is down
 * keeps the cluster's level instead of falling back to 1.  A follower:
 * what its leader said last. */
uint32_t ol__cl_level(struct cluster *c)
{
    uint32_t level = c->level, unknown = c->cluster_level ? c->cluster_level
                                                          : 1;

    if (c->role != RAFT_LEADER)
        return unknown;
    for (unsigned i = 0; i < c->raft.configuration.n; i++) {
        const struct raft_server *s = &c->raft.configuration.servers[i];
        struct peer_state *p;
        uint32_t l;

        if (s->role != RAFT_VOTER || s->id == c->cfg.self_id)
            continue;
        p = peer(c, s->id, 0);
        l = p == NULL || p->level == 0 ? unknown : p->level;
        if (l < level)
            level = l;
    }
    return level;
}

uint32_t ol__cluster_level(struct ol__replica *r)
{
    return ol__cl_level((struct cluster *)r);
}

/* ---- leases ---- */

static int voter(struct cluster *c, uint64_t id)
{
    for (unsigned i = 0; i < c->raft.configuration.n; i++)
        if (c->raft.configuration.servers[i].id == id)
            return c->raft.configuration.servers[i].role == RAFT_VOTER;
    return 0;
}

static int cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? 1 : x > y ? -1 : 0;
}

/* The leader holds a lease while a majority of voters (itself included)
 * echoed one of its answers sent within the last lease: contact on its own
 * clock, never seeded. */
static void leader_lease(struct cluster *c, uint64_t now)
{
    uint64_t seen[64];
    unsigned n = 0, voters = 0;

    for (unsigned i = 0; i < c->raft.configuration.n && n < 64; i++) {
        const struct raft_server *s = &c->raft.configuration.servers[i];
        struct peer_state *p;

        if (s->role != RAFT_VOTER)
            continue;
        voters++;
        if (s->id == c->cfg.self_id) {
            seen[n++] = now;
            continue;
        }
        p = peer(c, s->id, 0);
        seen[n++] = p ? p->contact_ms : 0;
    }
    if (voters == 0)
        return;
    qsort(seen, n, sizeof seen[0], cmp_desc);
    c->lead_lease_until_ms = seen[voters / 2] ? seen[voters / 2] + c->lease_ms
                                              : 0;
    if (c->lead_lease_until_ms > c->lease_until_ms)
        c->lease_until_ms = c->lead_lease_until_ms;
}

/*
 * CLOCK_MONOTONIC stops while the machine is suspended; CLOCK_BOOTTIME
 * does not.  A node whose boot clock ran ahead of its monotonic clock was
 * suspended (a laptop lid, a VM frozen by its host): every time it measured
 * on the monotonic clock (its lease, the leader's contacts) is older than
 * it looks.  Returns 1 when a suspend is seen since the last call.
 */
static int suspended(struct cluster *c)
{
    struct timespec ts;
    uint64_t mono = uv_hrtime() / 1000000, boot;

    if (clock_gettime(CLOCK_BOOTTIME, &ts) != 0)
        return 0;
    boot = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    if (c->clock_mono && boot - c->clock_boot > mono - c->clock_mono +
                                                    OL_SUSPEND_SLACK_MS) {
        c->clock_mono = mono;
        c->clock_boot = boot;
        return 1;
    }
    c->clock_mono = mono;
    c->clock_boot = boot;
    return 0;
}

/* Forget every lease and every contact (after a suspend). */
static void drop_leases(struct cluster *c)
{
    c->lease_until_ms = 0;
    c->lead_lease_until_ms = 0;
    c->pong_commit = UINT64_MAX;
    for (size_t i = 0; i < c->n_peers; i++)
        c->peers[i].contact_ms = 0;
    c->n.suspends++;
}

static void relearn_liveness(struct cluster *c, uint64_t now,
                             const char *why);

/* After a suspend every lease and contact is forgotten, and a leader
 * learns again who is alive before it moves anything.  Returns 1 when a
 * suspend was seen. */
static int notice_suspend(struct cluster *c, uint64_t now)
{
    if (!suspended(c))
        return 0;
    ol_log(OL_LOG_WARN, "this machine was suspended: lease dropped");
    drop_leases(c);
    /* The monotonic clock stood still: an echo of a time from before
     * now looks recent but is not.  Only echoes from here on count. */
    c->resumed_ms = fresh_ms();
    if (c->role == RAFT_LEADER)
        relearn_liveness(c, now, "resumed from a suspend");
    return 1;
}

/* Tell the node when its lease comes or goes. */
static void report_lease(struct cluster *c, int ok)
{
    if (ok == c->lease_reported)
        return;
    c->lease_reported = ok;
    /* After losing the lease, the first answer only sets the bar. */
    if (!ok) {
        c->pong_commit = UINT64_MAX;
        c->n.lease_losses++;
    }
    ol_log(ok ? OL_LOG_INFO : OL_LOG_WARN,
           ok ? "lease held: agents may run here"
              : "lease lost: agents here are paused");
    if (c->hooks.lease)
        c->hooks.lease(c->hooks.data, ok);
}

/* Asked before every step: the lease against a fresh clock, and a suspend
 * noticed now rather than at the next tick.  A lease found gone is
 * reported at once, so nothing else steps either. */
int64_t ol__cluster_lease_left(struct ol__replica *r)
{
    struct cluster *c = (struct cluster *)r;
    uint64_t fresh;

    if (c->closing)
        return 0;
    notice_suspend(c, ol__cl_now(c));
    fresh = fresh_ms();
    if (fresh >= c->lease_until_ms) {
        report_lease(c, 0);
        return 0;
    }
    return (int64_t)(c->lease_until_ms - fresh);
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
    ol__cl_kick(c);
}

/* An entry of the new term, ahead of anything else this leader proposes:
 * once it commits, so has everything before it (fsm.h). */
static void propose_noop(struct cluster *c)
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
        rv = ol__cl_apply_entry(c, e.base, e.len);
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
        c->n_placing = 0;
        for (size_t i = 0; i < c->n_peers; i++)
            c->peers[i].moving_off = 0;
        c->last_ping_ms = 0;
        c->lead_lease_until_ms = 0;
        /* Commands forwarded to this node as leader are not proposed by a
         * later leadership of its own: their senders retry with whoever
         * leads now. */
        ol__entry_w_reset(&c->fwd);
        if (c->member.active && c->member.cb) {
            c->member.cb(c->member.data, OL_ENOTLEADER,
                         "leadership lost during the change");
            c->member.active = 0;
        }
        return;
    }
    if (old == RAFT_LEADER)
        return;
    /* Make sure every node in the roster has a liveness record. */
    nn = ol__sm_nodes(c->sm, &nodes);
    for (size_t i = 0; i < nn; i++)
        if (nodes[i].id != c->cfg.self_id)
            (void)peer(c, nodes[i].id, 1);
    for (size_t i = 0; i < c->cfg.n_peers; i++)
        (void)peer(c, c->cfg.peers[i].id, 1);
    for (size_t i = 0; i < c->n_peers; i++)
        c->peers[i].last_ms = ol__cl_now(c);
    propose_noop(c);
}

/* Register this node and the configured peers in the replicated roster. */
static void register_roster(struct cluster *c, uint64_t now)
{
    struct ol__entry_w w;
    const struct ol__sm_node *me = ol__sm_node(c->sm, c->cfg.self_id);

    if (now - c->roster_checked_ms < 1000)
        return;
    c->roster_checked_ms = now;
    ol__entry_w_init(&w);
    if (me == NULL || strcmp(me->address, c->cfg.listen) != 0 ||
        strcmp(me->labels, c->cfg.labels) != 0 || me->removed)
        (void)ol__entry_add_node(&w, ol__random_id(), c->cfg.self_id,
                                 c->cfg.listen, c->key->pk, c->cfg.labels);
    for (size_t i = 0; i < c->cfg.n_peers; i++) {
        const struct ol__peer *p = &c->cfg.peers[i];

        if (ol__sm_node(c->sm, p->id) == NULL)
            (void)ol__entry_add_node(&w, ol__random_id(), p->id, p->address,
                                     p->pk, c->cfg.peer_labels[i]);
    }
    if (w.n)
        (void)ol__cl_propose_raw(c, &w, 0);
    ol__entry_w_close(&w);
}

static void change_cb(struct raft_change *req, int status)
{
    struct cluster *c = req->data;
    struct membership_op *m = &c->member;
    char msg[160];
    int rv;

    if (!m->active)
        return;
    if (status != 0) {
        snprintf(msg, sizeof msg, "raft refused the change: %s",
                 raft_strerror(status));
        goto done;
    }
    if (m->phase == 1) {
        /* Added as a spare; promote once it has caught up. */
        m->phase = 2;
        m->change.data = c;
        rv = raft_assign(&c->raft, &m->change, m->id, RAFT_VOTER, change_cb);
        if (rv == 0)
            return;
        snprintf(msg, sizeof msg, "raft_assign: %s", raft_strerror(rv));
        status = rv;
        goto done;
    }
    snprintf(msg, sizeof msg, "node %" PRIu64 " %s", m->id,
             m->phase == 3 ? "removed" : "is a voter");
    ol_log(OL_LOG_INFO, "membership: %s", msg);
done:
    m->active = 0;
    if (m->cb)
        m->cb(m->data, status ? OL_EIO : 0, msg);
}

static int in_config(struct cluster *c, uint64_t id)
{
    for (unsigned i = 0; i < c->raft.configuration.n; i++)
        if (c->raft.configuration.servers[i].id == id)
            return 1;
    return 0;
}

/* Bring the raft configuration in line with the roster, one change at a
 * time: add roster nodes it lacks, promote spares, drop removed nodes. */
static void reconcile_members(struct cluster *c)
{
    const struct ol__sm_node *nodes;
    size_t nn = ol__sm_nodes(c->sm, &nodes);
    struct membership_op *m = &c->member;
    int rv = 0;

    if (m->active || c->raft.leader_state.change != NULL)
        return;
    for (size_t i = 0; i < nn; i++) {
        const struct ol__sm_node *nd = &nodes[i];

        memset(m, 0, sizeof *m);
        m->id = nd->id;
        m->change.data = c;
        if (nd->removed && in_config(c, nd->id) &&
            nd->id != c->cfg.self_id) {
            m->active = 1;
            m->phase = 3;
            rv = raft_remove(&c->raft, &m->change, nd->id, change_cb);
        } else if (!nd->removed && !in_config(c, nd->id) &&
                   nd->address[0]) {
            m->active = 1;
            m->phase = 1;
            rv = raft_add(&c->raft, &m->change, nd->id, nd->address,
                          change_cb);
        } else if (!nd->removed && in_config(c, nd->id) &&
                   !voter(c, nd->id)) {
            m->active = 1;
            m->phase = 2;
            rv = raft_assign(&c->raft, &m->change, nd->id, RAFT_VOTER,
                             change_cb);
        }
        if (m->active) {
            if (rv != 0) {
                ol_log_rl(OL_LOG_WARN, "membership change for node %" PRIu64
                                       ": %s",
                          nd->id, raft_strerror(rv));
                m->active = 0;
            }
            return;
        }
    }
}

static int skip_placing(void *data, const char *agent)
{
    struct cluster *c = data;

    for (size_t i = 0; i < c->n_placing; i++)
        if (strcmp(c->placing[i].agent, agent) == 0)
            return 1;
    return 0;
}

/* What the leader knows of node `id`'s liveness (enum ol__pl_health), and
 * the incarnation it last reported. */
static int health(struct cluster *c, uint64_t id, uint64_t now,
                  uint64_t *inc)
{
    struct peer_state *ps;

    if (id == c->cfg.self_id) {
        *inc = c->inc;
        return OL_PL_LIVE;
    }
    ps = peer(c, id, 0);
    if (ps == NULL)
        return now - c->leader_since_ms > c->cfg.failover_ms
                   ? OL_PL_DEAD
                   : OL_PL_UNKNOWN;
    if (now - ps->last_ms > c->cfg.failover_ms)
        return OL_PL_DEAD;
    if (!ps->seen)
        return OL_PL_UNKNOWN;
    *inc = ps->inc;
    return OL_PL_LIVE;
}

/* The hand-off wait of one move (placement.h): none off a node that has
 * been silent for the failover time, so a failover is never slowed. */
static uint32_t handoff_ms(struct cluster *c, const struct ol__pl_move *m,
                           uint64_t now)
{
    const struct ol__sm_agent *a = ol__sm_agent(c->sm, m->agent);
    uint64_t inc = 0;

    if (a == NULL || a->owner == 0)
        return 0;
    return ol__pl_handoff_ms(a->owner, m->owner,
                             health(c, a->owner, now, &inc), c->lease_ms,
                             c->cfg.heartbeat_ms);
}

static void place(struct cluster *c, uint64_t now)
{
    uint32_t level = ol__cl_level(c);
    const struct ol__sm_node *nodes;
    size_t nn = ol__sm_nodes(c->sm, &nodes), n_pl = 0, n_moves;
    struct ol__pl_node *pl = calloc(nn ? nn : 1, sizeof *pl);
    struct ol__pl_move *moves = calloc(PLACE_BATCH, sizeof *moves);
    struct ol__entry_w w;
    int rebalance = now - c->last_rebalance_ms >= REBALANCE_EVERY_MS;

    if (pl == NULL || moves == NULL)
        goto out;
    /* Forget placements that did not land; they may be retried. */
    for (size_t i = 0; i < c->n_placing;) {
        const struct ol__sm_agent *a = ol__sm_agent(c->sm,
                                                    c->placing[i].agent);

        struct peer_state *ps;

        if (a != NULL && a->epoch < c->placing[i].epoch &&
            now - c->placing[i].since_ms <= PLACING_TIMEOUT_MS) {
            i++;
            continue;
        }
        ps = c->placing[i].from ? peer(c, c->placing[i].from, 0) : NULL;
        if (ps) {
            if (ps->moving_off)
                ps->moving_off--;
            if (ps->fence_index < ol__sm_applied(c->sm))
                ps->fence_index = ol__sm_applied(c->sm);
        }
        c->placing[i] = c->placing[--c->n_placing];
    }
    for (size_t i = 0; i < nn; i++) {
        struct ol__pl_node *p = &pl[n_pl];

        if (nodes[i].removed)
            continue;
        p->id = nodes[i].id;
        ol__label_get(nodes[i].labels, "cloud", p->cloud, sizeof p->cloud);
        p->health = health(c, nodes[i].id, now, &p->inc);
        n_pl++;
    }
    n_moves = ol__placement(c->sm, pl, n_pl, rebalance, skip_placing, c,
                            moves, PLACE_BATCH);
    if (n_moves == 0)
        goto out;
    ol__entry_w_init(&w);
    for (size_t i = 0; i < n_moves; i++) {
        static const char *const why[] = {"", "place", "failover",
                                          "re-grant", "rebalance"};
        const struct ol__sm_agent *cur;
        struct peer_state *ps;
        struct placing *np;

        /* A placement carries this leader's term where every voter can
         * read it, so that a deposed leader's is refused when applied. */
        if ((level >= 2
                 ? ol__entry_add_move(&w, ol__random_id(), moves[i].agent,
                                      moves[i].owner, moves[i].epoch,
                                      moves[i].inc, c->raft.current_term,
                                      handoff_ms(c, &moves[i], now))
                 : ol__entry_add_place(&w, ol__random_id(), moves[i].agent,
                                       moves[i].owner, moves[i].epoch,
                                       moves[i].inc)) != 0)
            break;
        np = realloc(c->placing, (c->n_placing + 1) * sizeof *np);
        if (np == NULL)
            break;
        c->placing = np;
        np = &c->placing[c->n_placing++];
        snprintf(np->agent, sizeof np->agent, "%s", moves[i].agent);
        np->epoch = moves[i].epoch;
        np->since_ms = now;
        cur = ol__sm_agent(c->sm, moves[i].agent);
        np->from = cur && cur->owner != moves[i].owner ? cur->owner : 0;
        if (np->from && (ps = peer(c, np->from, 0)) != NULL)
            ps->moving_off++;
        if (moves[i].reason == OL_PL_BALANCE)
            c->last_rebalance_ms = now;
        if ((unsigned)moves[i].reason < 5)
            c->n.placed[moves[i].reason]++;
        ol_log(moves[i].reason == OL_PL_REGRANT ? OL_LOG_DEBUG : OL_LOG_INFO,
               "placement: '%s' -> node %" PRIu64 " epoch %" PRIu64 " (%s)",
               moves[i].agent, moves[i].owner, moves[i].epoch,
               why[moves[i].reason]);
    }
    c->n.placements += w.n;
    (void)ol__cl_propose_raw(c, &w, 0);
    ol__entry_w_close(&w);
out:
    free(pl);
    free(moves);
}

/* After a stall of the loop (a stopped process, a frozen VM, a slow disk
 * holding the loop) or a suspend, a leader has not heard anyone for as long
 * as it was away, through no fault of theirs: it gives every node a full
 * failover period from now before it moves any agent. */
static void relearn_liveness(struct cluster *c, uint64_t now,
                             const char *why)
{
    for (size_t i = 0; i < c->n_peers; i++) {
        c->peers[i].last_ms = now;
        c->peers[i].seen = 0;
    }
    c->n_placing = 0;
    c->n.stalls++;
    ol_log(OL_LOG_WARN, "%s: no agent moves until every node has had a "
                        "failover period to answer",
           why);
}

void ol__cl_tick(struct cluster *c)
{
    uint64_t now = ol__cl_now(c), fresh = fresh_ms();

    if (!notice_suspend(c, now) && c->last_tick_ms &&
        fresh - c->last_tick_ms > c->cfg.failover_ms / 4 &&
        c->role == RAFT_LEADER)
        relearn_liveness(c, now, "the loop stalled");
    c->last_tick_ms = fresh;
    /* A new leader is pinged at once: until it answers, nothing here
     * may renew its lease. */
    if (c->role != RAFT_LEADER && c->leader_id &&
        (now - c->last_ping_ms >= c->cfg.heartbeat_ms ||
         c->pinged_leader != c->leader_id))
        ping_leader(c, now, fresh);
    if (c->role == RAFT_LEADER)
        leader_lease(c, fresh);
    report_lease(c, fresh < c->lease_until_ms);
    if (c->role != RAFT_LEADER || !c->leader_ready)
        return;
    register_roster(c, now);
    reconcile_members(c);
    place(c, now);
}


/* ---- membership requests ---- */

int ol__cluster_add(struct ol__replica *r, uint64_t id, const char *address,
                    const uint8_t pk[OL_PK_SIZE], const char *labels,
                    ol__cluster_done_cb cb, void *data, char *errmsg)
{
    struct cluster *c = (struct cluster *)r;
    struct ol__entry_w w;
    int rv;

    if (c->role != RAFT_LEADER || !c->leader_ready) {
        ol__errf(errmsg, "this node is not the leader; ask node %" PRIu64,
                 c->leader_id);
        return OL_ENOTLEADER;
    }
    if (c->member.active) {
        ol__errf(errmsg, "another membership change is in progress");
        return OL_EBUSY;
    }
    if (ol__sm_node(c->sm, id) && !ol__sm_node(c->sm, id)->removed) {
        ol__errf(errmsg, "node %" PRIu64 " is already a member", id);
        return OL_EEXISTS;
    }
    /* The key goes into the replicated roster first: the transport admits
     * the new node once every member has applied it, and the tick adds it
     * to the raft configuration and promotes it to voter. */
    ol__entry_w_init(&w);
    rv = ol__entry_add_node(&w, ol__random_id(), id, address, pk,
                            labels ? labels : "");
    if (rv == 0)
        rv = ol__cl_propose_raw(c, &w, 0);
    ol__entry_w_close(&w);
    if (rv != 0) {
        ol__errf(errmsg, "propose: %s", ol_strerror(rv));
        return rv;
    }
    if (cb)
        cb(data, 0, "roster entry proposed; raft membership follows");
    return 0;
}

int ol__cluster_remove(struct ol__replica *r, uint64_t id,
                       ol__cluster_done_cb cb, void *data, char *errmsg)
{
    struct cluster *c = (struct cluster *)r;
    struct ol__entry_w w;
    int rv;

    if (c->role != RAFT_LEADER || !c->leader_ready) {
        ol__errf(errmsg, "this node is not the leader; ask node %" PRIu64,
                 c->leader_id);
        return OL_ENOTLEADER;
    }
    if (id == c->cfg.self_id) {
        ol__errf(errmsg, "the leader cannot remove itself; remove it from "
                         "another node after a new leader is elected");
        return OL_EINVAL;
    }
    if (ol__sm_node(c->sm, id) == NULL) {
        ol__errf(errmsg, "no node %" PRIu64 " in the roster", id);
        return OL_ENOTFOUND;
    }
    ol__entry_w_init(&w);
    rv = ol__entry_add_node_del(&w, ol__random_id(), id);
    if (rv == 0)
        rv = ol__cl_propose_raw(c, &w, 0);
    ol__entry_w_close(&w);
    if (rv != 0) {
        ol__errf(errmsg, "propose: %s", ol_strerror(rv));
        return rv;
    }
    if (cb)
        cb(data, 0, "removal proposed; its agents move once it is gone");
    return 0;
}

/* ---- status ---- */

static void pk_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

static void pk_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
    pk_str(pk, k);
    msgpack_pack_uint64(pk, v);
}

static void pk_bool(msgpack_packer *pk, const char *k, int v)
{
    pk_str(pk, k);
    if (v)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

void ol__cluster_status(struct ol__replica *r, msgpack_packer *pk)
{
    static const char *const names[] = {"unavailable", "follower",
                                        "candidate", "leader"};
    struct cluster *c = (struct cluster *)r;
    const struct ol__sm_node *nodes;
    const struct ol__sm_agent *a;
    size_t nn = ol__sm_nodes(c->sm, &nodes);
    uint64_t now = ol__cl_now(c);
    char inc[24];

    snprintf(inc, sizeof inc, "%016" PRIx64, c->inc);
    msgpack_pack_map(pk, 18);
    pk_str(pk, "mode");
    pk_str(pk, "cluster");
    pk_str(pk, "cluster");
    pk_str(pk, c->cfg.cluster);
    pk_u64(pk, "self", c->cfg.self_id);
    pk_str(pk, "role");
    pk_str(pk, names[c->role & 3]);
    pk_bool(pk, "from_follower", c->role != RAFT_LEADER);
    pk_u64(pk, "leader", c->leader_id);
    pk_u64(pk, "term", c->raft.current_term);
    pk_u64(pk, "commit_index", c->raft.commit_index);
    pk_u64(pk, "applied_index", raft_last_applied(&c->raft));
    pk_u64(pk, "store_applied", ol__sm_applied(c->sm));
    pk_u64(pk, "held", ol__fsm_held(&c->fsm));
    pk_u64(pk, "feature_level", c->level);
    pk_u64(pk, "cluster_feature_level", ol__cl_level(c));
    pk_bool(pk, "lease", fresh_ms() < c->lease_until_ms);
    pk_str(pk, "incarnation");
    pk_str(pk, inc);
    pk_u64(pk, "pending", c->pend.count);
    pk_str(pk, "counters");
    msgpack_pack_map(pk, 7);
    pk_u64(pk, "entries", c->n.entries);
    pk_u64(pk, "checkpoints_proposed", c->n.ckpts_proposed);
    pk_u64(pk, "forwarded", c->n.forwarded);
    pk_u64(pk, "retries", c->n.retries);
    pk_u64(pk, "placements", c->n.placements);
    pk_u64(pk, "snapshots_taken", c->fsm.n.snapshots_taken);
    pk_u64(pk, "snapshots_installed", c->fsm.n.snapshots_installed);
    pk_str(pk, "nodes");
    msgpack_pack_array(pk, nn);
    for (size_t i = 0; i < nn; i++) {
        const struct ol__sm_node *nd = &nodes[i];
        struct peer_state *ps = peer(c, nd->id, 0);
        uint32_t agents = 0;
        const char *health;
        char hex[OL_PK_HEX_SIZE];

        for (size_t k = 0; ol__sm_agent_next(c->sm, &k, &a);)
            if (a->owner == nd->id && (a->status == OL_AGENT_RUNNING ||
                                       a->status == OL_AGENT_STOPPING))
                agents++;
        if (nd->removed)
            health = "removed";
        else if (nd->id == c->cfg.self_id)
            health = "self";
        else if (c->role != RAFT_LEADER)
            health = nd->id == c->leader_id ? "leader" : "unknown";
        else if (ps == NULL || !ps->seen)
            health = "unknown";
        else if (now - ps->last_ms > c->cfg.failover_ms)
            health = "down";
        else
            health = "alive";
        ol__pk_hex(nd->pk, hex);
        msgpack_pack_map(pk, 10);
        pk_u64(pk, "id", nd->id);
        pk_str(pk, "address");
        pk_str(pk, nd->address);
        pk_str(pk, "labels");
        pk_str(pk, nd->labels);
        pk_str(pk, "pk");
        pk_str(pk, hex);
        pk_bool(pk, "leader", nd->id == c->leader_id);
        pk_bool(pk, "voter", voter(c, nd->id));
        pk_str(pk, "health");
        pk_str(pk, health);
        pk_str(pk, "last_contact_ms");
        if (c->role == RAFT_LEADER && ps && ps->seen)
            msgpack_pack_uint64(pk, now - ps->last_ms);
        else
            msgpack_pack_nil(pk);
        pk_u64(pk, "applied", ps ? ps->applied : 0);
        pk_u64(pk, "agents", agents);
    }
}
