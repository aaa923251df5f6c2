/*
 * The cluster in the /metrics exposition (metrics.c formats the rest):
 * raft's indexes and the cluster's counters, read from the replica's
 * status map, each peer's health and last contact (on the leader),
 * leadership transfers, and the transport's figures (metrics_wire.c has
 * the per-peer wire).
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "metrics_int.h"
#include "obs.h"

/* The same from keys of a status map (absent: 0). */
struct key_row {
    const char *name, *type, *help, *key;
};

static const msgpack_object *get(const msgpack_object *m, const char *key)
{
    size_t n = strlen(key);

    if (m == NULL || m->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;

        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
            memcmp(k->via.str.ptr, key, n) == 0)
            return &m->via.map.ptr[i].val;
    }
    return NULL;
}

static uint64_t get_u(const msgpack_object *m, const char *key)
{
    const msgpack_object *v = get(m, key);

    return v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? v->via.u64 : 0;
}

static int get_b(const msgpack_object *m, const char *key)
{
    const msgpack_object *v = get(m, key);

    return v && v->type == MSGPACK_OBJECT_BOOLEAN && v->via.boolean;
}

static int get_s(const msgpack_object *m, const char *key, char *out,
                 size_t cap)
{
    const msgpack_object *v = get(m, key);

    out[0] = '\0';
    if (v == NULL || v->type != MSGPACK_OBJECT_STR)
        return -1;
    snprintf(out, cap, "%.*s", (int)v->via.str.size, v->via.str.ptr);
    return 0;
}

static void key_rows(struct out *o, const msgpack_object *m,
                     const struct key_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        one_u64(o, rows[i].name, rows[i].type, rows[i].help,
                get_u(m, rows[i].key));
}

#define CM(f) offsetof(struct ol__cluster_metrics, f)

static const struct u64_row cm_rows[] = {
    {"outlast_raft_leader_changes_total", "counter",
     "Times this node learned of a new leader.", CM(leader_changes)},
    {"outlast_lease_losses_total", "counter",
     "Times this node lost its lease and paused its agents.",
     CM(lease_losses)},
    {"outlast_suspends_total", "counter",
     "Suspends of this machine seen (each drops the lease).", CM(suspends)},
    {"outlast_leader_stalls_total", "counter",
     "Times this node, leading, relearned liveness after a stall.",
     CM(stalls)},
    {"outlast_leader_busy_gaps_total", "counter",
     "Times this node, leading, found its loop busy (not stalled).",
     CM(busy_gaps)},
    {"outlast_forwards_refused_total", "counter",
     "Forwarded commands refused: not the proposer's to make.",
     CM(refused_fwd)},
};

static const struct key_row index_rows[] = {
    {"outlast_raft_term", "gauge", "The current raft term.", "term"},
    {"outlast_raft_commit_index", "gauge",
     "The highest raft log index this node knows to be committed.",
     "commit_index"},
    {"outlast_raft_applied_index", "gauge",
     "The highest raft log index this node has applied to its database.",
     "store_applied"},
};

static const struct key_row counter_rows[] = {
    {"outlast_raft_entries_proposed_total", "counter",
     "Raft entries this node appended as leader.", "entries"},
    {"outlast_proposals_forwarded_total", "counter",
     "Proposals this node forwarded to the leader.", "forwarded"},
    {"outlast_raft_snapshots_taken_total", "counter",
     "Raft snapshots this node took.", "snapshots_taken"},
    {"outlast_raft_snapshots_installed_total", "counter",
     "Raft snapshots this node installed from the leader.",
     "snapshots_installed"},
    {"outlast_raft_snapshots_by_bytes_total", "counter",
     "Raft snapshots taken early because the log reached snapshot_mb.",
     "snapshots_by_bytes"},
    {"outlast_raft_applies_deferred_total", "counter",
     "Committed entries left for a later loop turn: the turn's time for "
     "applying was used up.",
     "applies_deferred"},
};


/* Leadership transfers this node began as leader, by who asked. */
static void transfer_metrics(struct out *o,
                             const struct ol__cluster_metrics *cm)
{
    static const char *const why[] = {"", "operator", "preference"};

    family(o, "outlast_leader_transfers_total", "counter",
           "Leadership transfers this node began as leader, by who asked "
           "(operator: cluster transfer; preference: leader_preference).");
    for (int r = 1; r <= 2; r++)
        labelled(o, "outlast_leader_transfers_total", "reason", why[r],
                 cm->transfers[r]);
    family(o, "outlast_leader_transfers_failed_total", "counter",
           "Leadership transfers this node began that did not make their "
           "target lead.");
    for (int r = 1; r <= 2; r++)
        labelled(o, "outlast_leader_transfers_failed_total", "reason",
                 why[r], cm->transfers_failed[r]);
}

static void raft_metrics(struct out *o, const struct ol__obs *ob,
                         const msgpack_object *st, int leader)
{
    static const char *const reasons[] = {"", "place", "failover", "regrant",
                                          "rebalance"};

    key_rows(o, st, index_rows, N(index_rows));
    one_u64(o, "outlast_raft_leader", "gauge",
            "1 if this node is the raft leader.", (uint64_t)leader);
    one_u64(o, "outlast_raft_leader_id", "gauge",
            "The id of the node this node believes leads (0: none known).",
            get_u(st, "leader"));
    u64_rows(o, &ob->cm, cm_rows, N(cm_rows));
    key_rows(o, get(st, "counters"), counter_rows, N(counter_rows));
    family(o, "outlast_placements_total", "counter",
           "Agents this node placed as leader, by reason (failover: moved "
           "off a node silent for failover_ms).");
    for (int r = 1; r <= 4; r++)
        labelled(o, "outlast_placements_total", "reason", reasons[r],
                 ob->cm.placed[r]);
    transfer_metrics(o, &ob->cm);
}

/* A peer the leader has a view of: alive or down (not self, not spare). */
static int peer_known(const msgpack_object *nd)
{
    char h[16];

    get_s(nd, "health", h, sizeof h);
    return strcmp(h, "alive") == 0 || strcmp(h, "down") == 0;
}

static int peer_alive(const msgpack_object *nd)
{
    char h[16];

    get_s(nd, "health", h, sizeof h);
    return strcmp(h, "alive") == 0;
}

/* Peer health is the leader's to know; a follower reports none. */
static void peer_metrics(struct out *o, const msgpack_object *nodes)
{
    const msgpack_object *nd, *end = nodes->via.array.ptr +
                                      nodes->via.array.size;

    family(o, "outlast_peer_up", "gauge",
           "1 if the peer pinged this leader within failover_ms, 0 if "
           "not (the leader's view).");
    for (nd = nodes->via.array.ptr; nd < end; nd++)
        if (peer_known(nd))
            put(o, "outlast_peer_up{peer=\"%" PRIu64 "\"} %d\n",
                get_u(nd, "id"), peer_alive(nd));
    family(o, "outlast_peer_applied_index", "gauge",
           "The raft index each peer last reported applied (the "
           "leader's view); the lag is the commit index minus this.");
    for (nd = nodes->via.array.ptr; nd < end; nd++)
        if (peer_known(nd))
            put(o, "outlast_peer_applied_index{peer=\"%" PRIu64
                   "\"} %" PRIu64 "\n",
                get_u(nd, "id"), get_u(nd, "applied"));
    family(o, "outlast_peer_last_contact_seconds", "gauge",
           "Seconds since each peer last pinged this leader.");
    for (nd = nodes->via.array.ptr; nd < end; nd++) {
        const msgpack_object *lc = get(nd, "last_contact_ms");

        if (lc && lc->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            put(o, "outlast_peer_last_contact_seconds{peer=\"%" PRIu64
                   "\"} %.3f\n",
                get_u(nd, "id"), (double)lc->via.u64 / 1e3);
    }
}

static void transport_metrics(struct out *o,
                              const struct ol__transport_stats *t)
{
    one_u64(o, "outlast_transport_connections", "gauge",
            "Open node-to-node connections (raft and messages, "
            "authenticated or still in their handshake).",
            t->conns_open);
    family(o, "outlast_transport_handshakes_total", "counter",
           "Node-to-node handshakes, by result (refused: unknown key, bad "
           "signature, garbage or timeout).");
    labelled(o, "outlast_transport_handshakes_total", "result", "ok",
             t->handshakes_ok);
    labelled(o, "outlast_transport_handshakes_total", "result", "refused",
             t->handshakes_failed);
    one_u64(o, "outlast_transport_frames_rejected_total", "counter",
            "Frames dropped for failing authentication or exceeding the "
            "size cap.",
            t->frames_rejected);
    family(o, "outlast_transport_messages_total", "counter",
           "Messages on the node-to-node message channel.");
    labelled(o, "outlast_transport_messages_total", "direction", "sent",
             t->msgs_sent);
    labelled(o, "outlast_transport_messages_total", "direction", "received",
             t->msgs_received);
    family(o, "outlast_transport_raft_spares_total", "counter",
           "Raft connections dialled to peers ahead of need, and how many "
           "raft then took at once (an election's first vote, say).");
    labelled(o, "outlast_transport_raft_spares_total", "use", "dialled",
             t->raft_spares);
    labelled(o, "outlast_transport_raft_spares_total", "use", "taken",
             t->raft_spares_taken);
}

void ol__metrics_cluster(struct out *o, const struct ol__obs *ob,
                         const msgpack_object *st)
{
    const msgpack_object *nodes = get(st, "nodes");
    int leader = get_b(st, "from_follower") == 0;

    raft_metrics(o, ob, st, leader);
    if (leader && nodes && nodes->type == MSGPACK_OBJECT_ARRAY)
        peer_metrics(o, nodes);
    transport_metrics(o, &ob->cm.transport);
    if (ol__metrics_wire(o->b, &ob->cm.transport) != 0)
        o->bad = 1;
}

