/*
 * Liveness and leases.  Every node pings the leader each heartbeat over
 * the message channel; the leader answers with the ping's own timestamp.
 * A node may run agents only until lease = (send time of its last answered
 * ping) + failover/2, and the leader only while a majority has pinged it
 * within the same window.  The leader moves a node's agents only after
 * failover ms of silence, so a node cut off from the majority has stopped
 * stepping its agents before they resume elsewhere.  Epochs fence what
 * slips through: a checkpoint from the old owner never commits.
 *
 * The pings also carry each node's feature level, from which the leader
 * learns the level every voter runs; and a suspend of the machine, seen
 * here, drops every lease.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "cluster_int.h"
#include "placement.h"

uint64_t ol__cl_fresh_ms(void)
{
    return uv_hrtime() / 1000000;
}

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

struct peer_state *ol__cl_peer(struct cluster *c, uint64_t id, int create)
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

/* May the leader renew this node's lease?  Not while agents are being
 * moved off the node, and not before the node has applied the moves that
 * were (by what its ping says it had applied, which is never newer than
 * the truth).  A new leader whose state machine is not current yet may not
 * know of an older leader's moves: until it is, it grants only to a node
 * that has applied its whole log, which holds every committed entry. */
/* Whether node `id` may host agents: a voter by the roster and by raft.
 * A witness or a standby never needs an agent lease. */
static int hosts_agents(struct cluster *c, uint64_t id)
{
    const struct ol__sm_node *nd = ol__sm_node(c->sm, id);

    return (nd == NULL || ol__label_role(nd->labels) == OL_ROLE_VOTER) &&
           ol__cl_voter(c, id);
}

static int grants_to(struct cluster *c, const struct peer_state *p)
{
    if (p->moving_off != 0 || p->applied < p->fence_index ||
        !hosts_agents(c, p->id))
        return 0;
    return c->leader_ready || p->applied >= raft_last_index(&c->raft);
}

/* v: node, inc, applied, sent_ms, level, echo of our last answer's time.
 * The echo is what proves contact: it is a time on this leader's own
 * clock that the node had heard from it by, whatever the message's delay
 * (a ping that sat in a queue echoes an old time). */
void ol__cl_on_ping(struct cluster *c, uint64_t from, const uint64_t *v)
{
    struct peer_state *p;
    uint64_t now, reply[8];

    if (v[0] != from || c->role != RAFT_LEADER)
        return;
    ol__cl_notice_suspend(c, ol__cl_now(c));
    now = ol__cl_fresh_ms();
    p = ol__cl_peer(c, from, 1);
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
        ol__cl_leader_lease(c, now);
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
void ol__cl_ping_leader(struct cluster *c, uint64_t now, uint64_t fresh)
{
    uint64_t v[7] = {MSG_PING, c->cfg.self_id, c->inc, ol__sm_applied(c->sm),
                     fresh, c->level, c->leader_time};

    c->last_ping_ms = now;
    c->pinged_leader = c->leader_id;
    send_msg(c, c->leader_id, v, 7);
}

void ol__cl_on_pong(struct cluster *c, uint64_t from, const uint64_t *v)
{
    uint64_t now;
    int bar_was_unset;

    if (v[1] != from || from != c->leader_id)
        return;
    ol__cl_notice_suspend(c, ol__cl_now(c));
    now = ol__cl_fresh_ms();
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
        ol__cl_report_lease(c, 1);
    else if (bar_was_unset)
        ol__cl_ping_leader(c, ol__cl_now(c), now);
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
        p = ol__cl_peer(c, s->id, 0);
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

int ol__cl_voter(struct cluster *c, uint64_t id)
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
 * clock, never seeded.  Voters are raft's RAFT_VOTER servers: witnesses
 * count, standbys (RAFT_STANDBY) do not.  A leader that hosts no agents
 * (a witness) keeps the lead lease to grant others theirs, but takes no
 * agent lease for itself. */
void ol__cl_leader_lease(struct cluster *c, uint64_t now)
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
        p = ol__cl_peer(c, s->id, 0);
        seen[n++] = p ? p->contact_ms : 0;
    }
    if (voters == 0)
        return;
    qsort(seen, n, sizeof seen[0], cmp_desc);
    c->lead_lease_until_ms = seen[voters / 2] ? seen[voters / 2] + c->lease_ms
                                              : 0;
    if (c->lead_lease_until_ms > c->lease_until_ms &&
        hosts_agents(c, c->cfg.self_id))
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

/* After a suspend every lease and contact is forgotten, and a leader
 * learns again who is alive before it moves anything.  Returns 1 when a
 * suspend was seen. */
int ol__cl_notice_suspend(struct cluster *c, uint64_t now)
{
    if (!suspended(c))
        return 0;
    ol_log(OL_LOG_WARN, "this machine was suspended: lease dropped");
    drop_leases(c);
    /* The monotonic clock stood still: an echo of a time from before
     * now looks recent but is not.  Only echoes from here on count. */
    c->resumed_ms = ol__cl_fresh_ms();
    if (c->role == RAFT_LEADER)
        ol__cl_relearn_liveness(c, now, "resumed from a suspend");
    return 1;
}

/* Tell the node when its lease comes or goes. */
void ol__cl_report_lease(struct cluster *c, int ok)
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
    ol__cl_notice_suspend(c, ol__cl_now(c));
    fresh = ol__cl_fresh_ms();
    if (fresh >= c->lease_until_ms) {
        ol__cl_report_lease(c, 0);
        return 0;
    }
    return (int64_t)(c->lease_until_ms - fresh);
}

/* After a stall of the loop (a stopped process, a frozen VM, a slow disk
 * holding the loop) or a suspend, a leader has not heard anyone for as long
 * as it was away, through no fault of theirs: it gives every node a full
 * failover period from now before it moves any agent.  The moves already
 * in flight stay remembered: the node each moves off must get no lease
 * until it has applied it (moving_off, fence_index), and forgetting them
 * here would leave that node's count of moves off it above zero for the
 * rest of this leadership.  They are forgotten as usual once they land
 * or time out (cluster_place.c). */
void ol__cl_relearn_liveness(struct cluster *c, uint64_t now,
                             const char *why)
{
    for (size_t i = 0; i < c->n_peers; i++) {
        c->peers[i].last_ms = now;
        c->peers[i].seen = 0;
    }
    ol__cl_rates_forget(c);
    c->n.stalls++;
    ol_log(OL_LOG_WARN, "%s: no agent moves until every node has had a "
                        "failover period to answer",
           why);
}

int64_t ol__cl_lease_margin(const struct cluster *c)
{
    if (c->role == RAFT_LEADER)
        return (int64_t)c->lease_ms - 2 * (int64_t)c->cfg.heartbeat_ms;
    if (c->rtt_leader_us == 0)
        return INT64_MIN;
    return (int64_t)c->lease_ms - 2 * (int64_t)c->cfg.heartbeat_ms -
           (int64_t)((c->rtt_leader_us + 999) / 1000);
}

/* A follower renews its lease with a ping each heartbeat, answered a round
 * trip later; a lease shorter than two heartbeats and that round trip
 * lapses whenever one answer is late, and the node's agents pause until
 * the next.  The transport measures the round trip (its pings): once a
 * second this node compares, and says so at most once a minute. */
void ol__cl_check_margin(struct cluster *c, uint64_t now)
{
    struct ol__transport_peer_stats ps[OL_TRANSPORT_PEERS_MAX];
    size_t n;
    int64_t margin;

    if (c->tr == NULL || now - c->margin_checked_ms < 1000)
        return;
    c->margin_checked_ms = now;
    c->rtt_leader_us = 0;
    n = ol__transport_peer_stats(c->tr, ps, OL_TRANSPORT_PEERS_MAX);
    for (size_t i = 0; i < n; i++)
        if (ps[i].id == c->leader_id)
            c->rtt_leader_us = ps[i].rtt_avg_us;
    margin = ol__cl_lease_margin(c);
    if (c->role == RAFT_LEADER || margin == INT64_MIN || margin >= 0 ||
        (c->margin_warned_ms && now - c->margin_warned_ms < 60000))
        return;
    c->margin_warned_ms = now;
    ol_log(OL_LOG_WARN,
           "lease of %u ms is shorter than two heartbeats (%u ms) and the "
           "round trip to the leader (%" PRIu64 " ms): leases will lapse "
           "and agents here pause between answers. Raise failover_ms, "
           "lower heartbeat_timeout_ms, or lower clock_drift_pct "
           "(replication/lease.h)",
           c->lease_ms, c->cfg.heartbeat_ms,
           (c->rtt_leader_us + 999) / 1000);
}
