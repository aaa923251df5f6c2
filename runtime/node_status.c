/*
 * The node's side of `outlast status` and of the live figures in
 * `outlast agents` and `outlast show`: what the control handlers ask
 * through node_view.h, answered from struct ol__node's fields.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "base/keys.h"
#include "base/log.h"
#include "replication/cluster.h"
#include "replication/handshake.h"
#include "agent.h"
#include "hostproc.h"
#include "http.h"
#include "node.h"
#include "ol_config.h"
#include "state/reads.h"

int ol__node_stopping(const struct ol__node *n)
{
    return n->stopping;
}

int ol__node_clustered(const struct ol__node *n)
{
    return n->cluster;
}

uint64_t ol__node_self(const struct ol__node *n)
{
    return n->self_id;
}

sqlite3 *ol__node_reader(struct ol__node *n)
{
    return n->reader.db;
}

struct ol__replica *ol__node_replica(struct ol__node *n)
{
    return n->replica;
}

struct ol__codes *ol__node_codes(struct ol__node *n)
{
    return &n->codes;
}

const struct ol__sm_agent *ol__node_row(struct ol__node *n, const char *name)
{
    return n->sm ? ol__sm_agent(n->sm, name) : NULL;
}

int ol__node_row_next(struct ol__node *n, size_t *iter,
                      const struct ol__sm_agent **row)
{
    return n->sm ? ol__sm_agent_next(n->sm, iter, row) : 0;
}

struct ol__waiter **ol__node_waiters(struct ol__node *n)
{
    return &n->waiters;
}

static void live_one(msgpack_packer *pk, struct ol__buf *buf,
                     const struct ol_agent *a)
{
    struct ol__pk_map m;

    ol__pk_map_begin(&m, pk, buf);
    ol__pk_kv_uint(&m, "steps", a->steps);
    ol__pk_kv_uint(&m, "commit_us", a->commit_us);
    ol__pk_kv_uint(&m, "held", a->n_outbox);
    ol__pk_kv_bool(&m, "local", 1);
    ol__pk_kv_bool(&m, "degraded", a->degraded);
    ol__pk_kv_str(&m, "phase", ol__agent_phase_name(a));
    ol__pk_kv_uint(&m, "queued", a->q_len);
    ol__pk_kv_uint(&m, "committed_seq", a->committed_seq);
    ol__pk_kv_str(&m, "reason", a->reason);
    (void)ol__pk_map_end(&m);
}

void ol__node_pack_live(struct ol__node *n, msgpack_packer *pk,
                        struct ol__buf *buf, const char *only)
{
    struct ol__pk_map m;
    struct ol_agent *a;
    void *v;

    if (only) {
        a = ol__agent_get(n, only);
        if (a)
            live_one(pk, buf, a);
        else
            msgpack_pack_map(pk, 0);
        return;
    }
    ol__pk_map_begin(&m, pk, buf);
    for (size_t i = 0; ol__map_next(&n->agents, &i, &v);) {
        a = v;
        ol__pk_key(&m, a->name);
        live_one(pk, buf, a);
    }
    (void)ol__pk_map_end(&m);
}

/* Agents by status (by[0]: all but the removed), counted in one pass
 * over the state machine's rows: a query per count scanned the agents
 * table each time, tens of ms of the loop per status at 100,000 agents. */
static void count_statuses(struct ol__node *n,
                           uint64_t by[OL_AGENT_STATUS_MAX + 1])
{
    const struct ol__sm_agent *row;

    memset(by, 0, (OL_AGENT_STATUS_MAX + 1) * sizeof *by);
    /* A group commit changing the rows on the thread pool: the store's
     * reader sees the last committed state instead. */
    if (n->sm == NULL || ol__node_sm_busy(n)) {
        for (int st = 0; st <= OL_AGENT_STATUS_MAX; st++)
            (void)ol__read_count_agents(n->reader.db, st, &by[st]);
        return;
    }
    for (size_t i = 0; ol__sm_agent_next(n->sm, &i, &row);) {
        if (row->status > 0 && row->status <= OL_AGENT_STATUS_MAX)
            by[row->status]++;
        by[0] += row->status != OL_AGENT_REMOVED;
    }
}

static void pack_storage(struct ol__node *n, struct ol__pk_map *top)
{
    struct ol__pk_map m;

    ol__pk_key(top, "storage");
    ol__pk_map_begin(&m, top->pk, top->buf);
    ol__pk_kv_str(&m, "state", n->storage.errors ? "damaged" : "ok");
    ol__pk_kv_uint(&m, "errors", n->storage.errors);
    ol__pk_kv_str(&m, "first", n->storage.first);
    ol__pk_kv_uint(&m, "first_ms", (uint64_t)n->storage.first_ms);
    (void)ol__pk_map_end(&m);
}

static void pack_node(struct ol__node *n, struct ol__pk_map *top)
{
    char hex[OL_PK_HEX_SIZE], http[64];
    struct ol__pk_map m;

    ol__pk_hex(n->key.pk, hex);
    ol__http_address(n->http, http, sizeof http);
    ol__pk_key(top, "node");
    ol__pk_map_begin(&m, top->pk, top->buf);
    ol__pk_kv_str(&m, "http", http);
    ol__pk_kv_uint(&m, "id", n->self_id);
    ol__pk_kv_str(&m, "name", n->cfg.node_name);
    ol__pk_kv_str(&m, "pk", hex);
    ol__pk_kv_str(&m, "version", OL_VERSION);
    ol__pk_kv_str(&m, "mode", n->cluster ? "cluster" : "single");
    /* A single node is a cluster of one, and leads it. */
    ol__pk_kv_str(&m, "role",
                  n->replica->vt->is_leader(n->replica) ? "leader"
                                                        : "follower");
    ol__pk_kv_str(&m, "data_dir", n->cfg.data_dir);
    ol__pk_kv_uint(&m, "uptime_ms",
                   (uint64_t)(ol__wall_ms() - n->started_ms));
    (void)ol__pk_map_end(&m);
}

static void pack_agents(struct ol__node *n, struct ol__pk_map *top)
{
    uint32_t local = 0, degraded = 0;
    uint64_t by[OL_AGENT_STATUS_MAX + 1];
    struct ol__pk_map m;
    void *v;

    for (size_t i = 0; ol__map_next(&n->agents, &i, &v);) {
        struct ol_agent *a = v;

        if (a->degraded)
            degraded++;
        else if (a->phase == OL_PHASE_ACTIVE)
            local++;
    }
    ol__pk_key(top, "agents");
    ol__pk_map_begin(&m, top->pk, top->buf);
    count_statuses(n, by);
    ol__pk_kv_uint(&m, "total", by[0]);
    ol__pk_kv_uint(&m, "removed", by[OL_AGENT_REMOVED]);
    ol__pk_kv_uint(&m, "running", by[OL_AGENT_RUNNING]);
    ol__pk_kv_uint(&m, "stopping", by[OL_AGENT_STOPPING]);
    ol__pk_kv_uint(&m, "stopped", by[OL_AGENT_STOPPED]);
    ol__pk_kv_uint(&m, "quarantined", by[OL_AGENT_QUARANTINED]);
    ol__pk_kv_uint(&m, "degraded", degraded);
    ol__pk_kv_uint(&m, "local", local);
    (void)ol__pk_map_end(&m);
}

static void pack_commits(struct ol__node *n, struct ol__pk_map *top)
{
    char dbpath[PATH_MAX + 16], wal[PATH_MAX + 20];
    struct ol__replica_counters rc;
    uint64_t main_b, wal_b;
    struct ol__pk_map m;
    struct stat st;

    n->replica->vt->counters(n->replica, &rc);
    ol__pk_key(top, "commits");
    ol__pk_map_begin(&m, top->pk, top->buf);
    ol__pk_kv_uint(&m, "checkpoints", n->n.checkpoints);
    ol__pk_kv_uint(&m, "batches", rc.batches);
    ol__pk_kv_uint(&m, "refused", n->n.refused);
    ol__pk_kv_uint(&m, "steps", n->n.steps);
    ol__pk_kv_uint(&m, "quarantined", n->n.quarantined);
    ol__pk_kv_uint(&m, "latency_p50_us",
                   ol__hist_quantile(&n->commit_lat, 0.50));
    ol__pk_kv_uint(&m, "latency_p99_us",
                   ol__hist_quantile(&n->commit_lat, 0.99));
    ol__pk_kv_uint(&m, "latency_max_us", n->commit_lat.max_us);
    ol__pk_kv_uint(&m, "latency_samples", n->commit_lat.count);
    /* The database is the main file and its WAL: recent commits live in
     * the WAL until a checkpoint copies them over. */
    snprintf(dbpath, sizeof dbpath, "%s/outlast.db", n->cfg.data_dir);
    snprintf(wal, sizeof wal, "%s-wal", dbpath);
    main_b = stat(dbpath, &st) == 0 ? (uint64_t)st.st_size : 0;
    wal_b = stat(wal, &st) == 0 ? (uint64_t)st.st_size : 0;
    ol__pk_kv_uint(&m, "bytes_db", main_b + wal_b);
    ol__pk_kv_uint(&m, "bytes_wal", wal_b);
    (void)ol__pk_map_end(&m);
}

/* Agent-host processes and what bad agents did on this node. */
static void pack_hosts(struct ol__node *n, struct ol__pk_map *top)
{
    struct ol__pk_map m, c;
    uint64_t running = 0;

    for (const struct ol__hostproc *hp = n->hps; hp; hp = hp->next)
        running += hp->state != OL_HP_DEAD;
    ol__pk_key(top, "hosts");
    ol__pk_map_begin(&m, top->pk, top->buf);
    ol__pk_kv_uint(&m, "running", running);
    ol__pk_kv_uint(&m, "started", n->n.host_starts);
    ol__pk_kv_uint(&m, "restarts", n->n.host_deaths);
    ol__pk_key(&m, "crashes");
    ol__pk_map_begin(&c, top->pk, top->buf);
    for (int k = 0; k < OL_CRASH_KINDS; k++)
        ol__pk_kv_uint(&c, ol__crash_kind_name(k), n->n.crash_kind[k]);
    (void)ol__pk_map_end(&c);
    ol__pk_kv_uint(&m, "crash_loop_quarantines", n->n.quarantined_crash);
    (void)ol__pk_map_end(&m);
}

void ol__node_pack_status(struct ol__node *n, struct ol__pk_map *m)
{
    pack_storage(n, m);
    pack_node(n, m);
    pack_agents(n, m);
    pack_commits(n, m);
    pack_hosts(n, m);
    ol__pk_kv_bool(m, "stopping", n->stopping);
    ol__pk_key(m, "replica");
    n->replica->vt->status(n->replica, m->pk);
}

void ol__node_status_reset(struct ol__node *n)
{
    ol__hist_reset(&n->commit_lat);
}

/* One peer of the "wire" entry: its round trip in ms (last, min and
 * smoothed), bytes each way and what compression does on its links. */
static void pack_wire_peer(const struct ol__transport_peer_stats *p,
                           struct ol__pk_map *list_owner)
{
    struct ol__pk_map m;

    ol__pk_map_begin(&m, list_owner->pk, list_owner->buf);
    ol__pk_kv_uint(&m, "id", p->id);
    ol__pk_kv_double(&m, "rtt_ms", (double)p->rtt_last_us / 1e3);
    ol__pk_kv_double(&m, "rtt_min_ms", (double)p->rtt_min_us / 1e3);
    ol__pk_kv_double(&m, "rtt_avg_ms", (double)p->rtt_avg_us / 1e3);
    ol__pk_kv_uint(&m, "rtt_samples", p->rtt_samples);
    ol__pk_kv_uint(&m, "bytes_out", p->wire_out);
    ol__pk_kv_uint(&m, "bytes_in", p->wire_in);
    ol__pk_kv_uint(&m, "data_out", p->data_out);
    ol__pk_kv_uint(&m, "data_in", p->data_in);
    ol__pk_kv_str(&m, "compression",
                  p->legacy                              ? "old peer"
                  : (p->features & OL_HS_FEAT_ZSTD)      ? "zstd"
                  : (p->features & OL_HS_FEAT_FRAMES)    ? "off"
                                                         : "none");
    ol__pk_kv_double(&m, "compression_ratio",
                     p->wire_out ? (double)p->data_out / (double)p->wire_out
                                 : 0.0);
    (void)ol__pk_map_end(&m);
}

void ol__node_pack_wire(struct ol__node *n, struct ol__pk_map *top)
{
    struct ol__cluster_metrics *cm;
    struct ol__transport_stats *t;
    struct ol__sm_stats ss;
    struct ol__pk_map m;
    uint64_t ck;

    ol__pk_key(top, "wire");
    ol__pk_map_begin(&m, top->pk, top->buf);
    cm = n->cluster ? calloc(1, sizeof *cm) : NULL;
    if (cm == NULL) {
        (void)ol__pk_map_end(&m);
        return;
    }
    ol__cluster_metrics(n->replica, cm);
    t = &cm->transport;
    ol__pk_kv_str(&m, "compress", n->cfg.compress_off ? "off" : "auto");
    ol__pk_kv_uint(&m, "bytes_out", t->wire_out);
    ol__pk_kv_uint(&m, "bytes_in", t->wire_in);
    ol__pk_kv_uint(&m, "data_out", t->data_out);
    ol__pk_kv_uint(&m, "data_in", t->data_in);
    ol__pk_kv_double(&m, "compression_ratio",
                     t->wire_out ? (double)t->data_out / (double)t->wire_out
                                 : 0.0);
    /* Egress for each checkpoint the cluster committed (as applied here
     * since this node started): on the leader, what replicating one
     * costs; summed over the nodes, the cluster's traffic for one. */
    ol__sm_stats(n->sm, &ss);
    ck = ss.ckpts_applied;
    ol__pk_kv_uint(&m, "checkpoints_applied", ck);
    ol__pk_kv_uint(&m, "bytes_out_per_checkpoint",
                   ck ? t->wire_out / ck : 0);
    ol__pk_key(&m, "peers");
    msgpack_pack_array(m.pk, (uint32_t)t->n_peers);
    for (size_t i = 0; i < t->n_peers; i++)
        pack_wire_peer(&t->peers[i], &m);
    (void)ol__pk_map_end(&m);
    free(cm);
}
