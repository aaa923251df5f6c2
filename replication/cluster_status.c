/*
 * What the cluster shows of itself: cluster.status (one msgpack map, for
 * `outlast cluster status`, the status page and /status) and the counters
 * /metrics adds beyond it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/pack.h"
#include "cluster_int.h"
#include "placement.h"

/* What this node knows of node `nd`'s health: on the leader, what its
 * placement acts on (cluster_place.c).  A node not heard from for a
 * failover period since the leader began watching (it took over, or
 * relearned liveness after a stall) is down, though it was never seen. */
static const char *node_health(struct cluster *c,
                               const struct ol__sm_node *nd,
                               const struct peer_state *ps, uint64_t now)
{
    if (nd->removed)
        return "removed";
    if (nd->id == c->cfg.self_id)
        return "self";
    if (c->role != RAFT_LEADER)
        return nd->id == c->leader_id ? "leader" : "unknown";
    if (ps == NULL)
        return c->leader_ready &&
                       now - c->leader_since_ms > c->cfg.failover_ms
                   ? "down"
                   : "unknown";
    if (now - ps->last_ms > c->cfg.failover_ms)
        return "down";
    if (!ps->seen)
        return "unknown";
    return "alive";
}

static void pack_node(struct cluster *c, const struct ol__sm_node *nd,
                      uint64_t now, struct ol__pk_map *parent)
{
    struct peer_state *ps = ol__cl_peer(c, nd->id, 0);
    const struct ol__sm_agent *a;
    struct ol__pk_map m;
    uint32_t agents = 0;
    char hex[OL_PK_HEX_SIZE];

    for (size_t k = 0; ol__sm_agent_next(c->sm, &k, &a);)
        if (a->owner == nd->id && (a->status == OL_AGENT_RUNNING ||
                                   a->status == OL_AGENT_STOPPING))
            agents++;
    ol__pk_hex(nd->pk, hex);
    ol__pk_map_begin(&m, parent->pk, parent->buf);
    ol__pk_kv_uint(&m, "id", nd->id);
    ol__pk_kv_str(&m, "address", nd->address);
    ol__pk_kv_str(&m, "labels", nd->labels);
    ol__pk_kv_str(&m, "pk", hex);
    ol__pk_kv_bool(&m, "leader", nd->id == c->leader_id);
    ol__pk_kv_bool(&m, "voter", ol__cl_voter(c, nd->id));
    ol__pk_kv_str(&m, "role", ol__role_name(ol__label_role(nd->labels))
                                  ? ol__role_name(ol__label_role(nd->labels))
                                  : "unknown");
    ol__pk_kv_str(&m, "health", node_health(c, nd, ps, now));
    ol__pk_key(&m, "last_contact_ms");
    if (c->role == RAFT_LEADER && ps && ps->seen)
        msgpack_pack_uint64(m.pk, now - ps->last_ms);
    else
        msgpack_pack_nil(m.pk);
    ol__pk_kv_uint(&m, "applied", ps ? ps->applied : 0);
    ol__pk_kv_uint(&m, "agents", agents);
    (void)ol__pk_map_end(&m);
}

static void pack_counters(struct cluster *c, struct ol__pk_map *parent)
{
    struct ol__proposer_counters pc;
    struct ol__pk_map m;

    ol__proposer_counters(c->prop, &pc);
    ol__pk_map_begin(&m, parent->pk, parent->buf);
    ol__pk_kv_uint(&m, "entries", pc.entries);
    ol__pk_kv_uint(&m, "checkpoints_proposed", pc.ckpts_proposed);
    ol__pk_kv_uint(&m, "forwarded", pc.forwarded);
    ol__pk_kv_uint(&m, "retries", pc.retries);
    ol__pk_kv_uint(&m, "placements", c->n.placements);
    ol__pk_kv_uint(&m, "snapshots_taken", c->fsm.n.snapshots_taken);
    ol__pk_kv_uint(&m, "snapshots_installed", c->fsm.n.snapshots_installed);
    /* Snapshots taken before the threshold in entries because the log
     * reached snapshot_mb (fsm.h). */
    ol__pk_kv_uint(&m, "snapshots_by_bytes", c->fsm.n.snapshots_by_bytes);
    /* Committed entries left for a later loop turn, the turn's apply
     * slice used up (fsm.h). */
    ol__pk_kv_uint(&m, "applies_deferred", c->fsm.n.deferred);
    /* The leader's append completions (ackpace.h): passed on at once, held
     * until an answer made a majority, held until the guard let them go,
     * and the time they were held in all. */
    ol__pk_kv_uint(&m, "appends_passed", c->pace.n.passed);
    ol__pk_kv_uint(&m, "appends_held_to_majority", c->pace.n.by_ack);
    ol__pk_kv_uint(&m, "appends_held_to_guard", c->pace.n.by_guard);
    ol__pk_kv_uint(&m, "appends_held_ms", c->pace.n.held_ms);
    ol__pk_kv_uint(&m, "beacons", c->n.beacons);
    ol__pk_kv_uint(&m, "fast_elections", c->n.fast_elections);
    ol__pk_kv_uint(&m, "stood_at_once", c->n.stood);
    (void)ol__pk_map_end(&m);
}

static void fill_status(struct ol__pk_map *m, void *data)
{
    static const char *const names[] = {"unavailable", "follower",
                                        "candidate", "leader"};
    struct cluster *c = data;
    const struct ol__sm_node *nodes;
    size_t nn = ol__sm_nodes(c->sm, &nodes);
    uint64_t now = ol__cl_now(c);
    char inc[24];

    snprintf(inc, sizeof inc, "%016" PRIx64, c->inc);
    ol__pk_kv_str(m, "mode", "cluster");
    ol__pk_kv_str(m, "cluster", c->cfg.cluster);
    ol__pk_kv_uint(m, "self", c->cfg.self_id);
    ol__pk_kv_str(m, "role", names[c->role & 3]);
    ol__pk_kv_bool(m, "from_follower", c->role != RAFT_LEADER);
    ol__pk_kv_uint(m, "leader", c->leader_id);
    ol__pk_kv_uint(m, "term", c->raft.current_term);
    ol__pk_kv_uint(m, "commit_index", c->raft.commit_index);
    ol__pk_kv_uint(m, "applied_index", raft_last_applied(&c->raft));
    ol__pk_kv_uint(m, "store_applied", ol__sm_applied(c->sm));
    ol__pk_kv_uint(m, "held", ol__fsm_held(&c->fsm));
    ol__pk_kv_uint(m, "feature_level", c->level);
    ol__pk_kv_uint(m, "cluster_feature_level", ol__cl_level(c));
    ol__pk_kv_bool(m, "lease", ol__cl_fresh_ms() < c->lease_until_ms);
    ol__pk_kv_uint(m, "lease_ms", c->lease_ms);
    ol__pk_key(m, "lease_margin_ms");
    if (ol__cl_lease_margin(c) == INT64_MIN)
        msgpack_pack_nil(m->pk);
    else
        msgpack_pack_int64(m->pk, ol__cl_lease_margin(c));
    ol__pk_kv_str(m, "incarnation", inc);
    ol__pk_kv_uint(m, "pending", ol__proposer_pending(c->prop));
    ol__pk_key(m, "counters");
    pack_counters(c, m);
    ol__pk_key(m, "leadership");
    ol__cl_lead_status(c, m);
    ol__pk_key(m, "nodes");
    msgpack_pack_array(m->pk, nn);
    for (size_t i = 0; i < nn; i++)
        pack_node(c, &nodes[i], now, m);
}

void ol__cluster_status(struct ol__replica *r, msgpack_packer *pk)
{
    (void)ol__replica_pack_map(pk, fill_status, r);
}

void ol__cluster_metrics(struct ol__replica *r,
                         struct ol__cluster_metrics *out)
{
    struct cluster *c = (struct cluster *)r;

    memset(out, 0, sizeof *out);
    out->leader_changes = c->n.leader_changes;
    out->lease_losses = c->n.lease_losses;
    out->suspends = c->n.suspends;
    out->stalls = c->n.stalls;
    out->busy_gaps = c->n.busy_gaps;
    out->refused_fwd = c->n.refused_fwd;
    memcpy(out->placed, c->n.placed, sizeof out->placed);
    ol__cl_lead_metrics(c, out);
    if (c->tr)
        ol__transport_stats(c->tr, &out->transport);
}
