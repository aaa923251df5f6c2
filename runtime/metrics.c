/*
 * The Prometheus text exposition of an observation (format 0.0.4): names
 * in base units with the conventional suffixes (_total for counters,
 * _seconds, _bytes), one HELP and TYPE line per family.  Counters are the
 * node's since it started; the agents gauges come from the replicated
 * database, so every node of a cluster reports the same ones.
 */
#include <dirent.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "obs.h"
#include "state/store.h"

struct out {
    struct ol__buf *b;
    int bad;
};

static void put(struct out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void put(struct out *o, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line ||
        ol__buf_append(o->b, line, (size_t)n) != 0)
        o->bad = 1;
}

static void family(struct out *o, const char *name, const char *type,
                   const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void one_u64(struct out *o, const char *name, const char *type,
                    const char *help, uint64_t v)
{
    family(o, name, type, help);
    put(o, "%s %" PRIu64 "\n", name, v);
}

static void one_f(struct out *o, const char *name, const char *type,
                  const char *help, double v)
{
    family(o, name, type, help);
    put(o, "%s %.6f\n", name, v);
}

/* One sample of a family with one label: name{label="value"} v. */
static void labelled(struct out *o, const char *name, const char *label,
                     const char *value, uint64_t v)
{
    put(o, "%s{%s=\"%s\"} %" PRIu64 "\n", name, label, value, v);
}

/* A run of single-value families read from one struct: each row names
 * the family and where its uint64_t sits. */
struct u64_row {
    const char *name, *type, *help;
    size_t off;
};

static void u64_rows(struct out *o, const void *base,
                     const struct u64_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t v;

        memcpy(&v, (const char *)base + rows[i].off, sizeof v);
        one_u64(o, rows[i].name, rows[i].type, rows[i].help, v);
    }
}

/* The same from keys of a status map (absent: 0). */
struct key_row {
    const char *name, *type, *help, *key;
};

/* A label value with \, " and newlines escaped. */
static void label_esc(const char *in, char *out, size_t cap)
{
    size_t k = 0;

    for (; *in && k + 3 < cap; in++) {
        if (*in == '\\' || *in == '"') {
            out[k++] = '\\';
            out[k++] = *in;
        } else if (*in == '\n') {
            out[k++] = '\\';
            out[k++] = 'n';
        } else {
            out[k++] = *in;
        }
    }
    out[k] = '\0';
}

/* v / 10^shift as an exact decimal ("0.00025", "12"). */
static void decimal(uint64_t v, unsigned shift, char *out, size_t cap)
{
    uint64_t p = 1, whole, frac;
    int len;

    for (unsigned i = 0; i < shift; i++)
        p *= 10;
    whole = v / p;
    frac = v % p;
    if (frac == 0) {
        snprintf(out, cap, "%" PRIu64, whole);
        return;
    }
    len = snprintf(out, cap, "%" PRIu64 ".%0*" PRIu64, whole, (int)shift,
                   frac);
    while (len > 0 && out[len - 1] == '0')
        out[--len] = '\0';
}

/* Values are integers in units of 10^-shift (shift 6: microseconds shown
 * as seconds). */
static void histogram(struct out *o, const char *name, const char *help,
                      const struct ol__phist *h, const uint64_t *bounds,
                      unsigned n, unsigned shift)
{
    uint64_t cum = 0;
    char le[32], sum[32];

    family(o, name, "histogram", help);
    for (unsigned i = 0; i < n; i++) {
        cum += h->b[i];
        decimal(bounds[i], shift, le, sizeof le);
        put(o, "%s_bucket{le=\"%s\"} %" PRIu64 "\n", name, le, cum);
    }
    put(o, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, h->count);
    decimal(h->sum, shift, sum, sizeof sum);
    put(o, "%s_sum %s\n", name, sum);
    put(o, "%s_count %" PRIu64 "\n", name, h->count);
}

/* ---- the replica's status map ---- */

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
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

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
}

static void cluster_metrics(struct out *o, const struct ol__obs *ob,
                            const msgpack_object *st)
{
    const msgpack_object *nodes = get(st, "nodes");
    int leader = get_b(st, "from_follower") == 0;

    raft_metrics(o, ob, st, leader);
    if (leader && nodes && nodes->type == MSGPACK_OBJECT_ARRAY)
        peer_metrics(o, nodes);
    transport_metrics(o, &ob->cm.transport);
}

/* ---- the process ---- */

static void process_metrics(struct out *o)
{
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    unsigned long utime = 0, stime = 0;
    unsigned long long start = 0;
    long rss_pages = 0;
    char buf[1024], *p;
    double boot = 0;
    uint64_t fds = 0;
    FILE *f;
    DIR *d;

    f = fopen("/proc/self/stat", "r");
    if (f && fgets(buf, sizeof buf, f) && (p = strrchr(buf, ')')) != NULL &&
        sscanf(p + 2,
               "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d "
               "%*d %*d %*d %*d %llu",
               &utime, &stime, &start) == 3 &&
        tick > 0)
        one_f(o, "process_cpu_seconds_total", "counter",
              "User and system CPU time spent, in seconds.",
              (double)(utime + stime) / (double)tick);
    if (f)
        fclose(f);
    f = fopen("/proc/self/statm", "r");
    if (f && fscanf(f, "%*d %ld", &rss_pages) == 1)
        one_u64(o, "process_resident_memory_bytes", "gauge",
                "Resident memory size in bytes.",
                (uint64_t)rss_pages * (uint64_t)page);
    if (f)
        fclose(f);
    d = opendir("/proc/self/fd");
    if (d) {
        while (readdir(d))
            fds++;
        closedir(d);
        /* ".", ".." and the directory's own descriptor. */
        one_u64(o, "process_open_fds", "gauge",
                "Number of open file descriptors.", fds > 3 ? fds - 3 : 0);
    }
    f = fopen("/proc/stat", "r");
    while (f && fgets(buf, sizeof buf, f))
        if (sscanf(buf, "btime %lf", &boot) == 1)
            break;
    if (f)
        fclose(f);
    if (boot > 0 && tick > 0 && start > 0)
        one_f(o, "process_start_time_seconds", "gauge",
              "Start time of the process since the Unix epoch, in seconds.",
              boot + (double)start / (double)tick);
}

#define OB(f) offsetof(struct ol__obs, f)

static const struct u64_row step_rows[] = {
    {"outlast_steps_total", "counter",
     "Events handled by agents hosted on this node.", OB(steps)},
    {"outlast_steps_late_total", "counter",
     "Steps an agent host did not start because this node's lease had run "
     "out by the time it read them (a stop or suspend).",
     OB(steps_refused)},
    {"outlast_checkpoints_committed_total", "counter",
     "Checkpoints of agents hosted on this node that committed.",
     OB(checkpoints)},
    {"outlast_checkpoints_refused_total", "counter",
     "Checkpoints of agents hosted on this node that the state machine "
     "refused (stale epoch, divergence).",
     OB(refused)},
    {"outlast_effect_attempts_total", "counter",
     "Attempts at effects (perform() or reconcile() calls) that answered.",
     OB(fx_attempts)},
    {"outlast_effects_done_total", "counter",
     "Effect outcomes (done or failed) consumed by agents hosted here.",
     OB(fx_done)},
    {"outlast_effect_answers_dropped_total", "counter",
     "Effect answers that came after their agent left this node or moved "
     "to a newer epoch; the new owner has the effect in doubt.",
     OB(fx_dropped)},
};

static const struct u64_row host_rows[] = {
    {"outlast_agent_hosts", "gauge",
     "Agent-host processes running for this node (one per plugin build in "
     "use).",
     OB(hosts)},
    {"outlast_agent_host_starts_total", "counter",
     "Agent-host processes this node started.", OB(host_starts)},
    {"outlast_agent_host_restarts_total", "counter",
     "Agent-host processes that died without being asked to (a crash, a "
     "step past its deadline, a plugin that would not load); their agents "
     "resume from their last checkpoints in a new one.",
     OB(host_restarts)},
};

static const struct u64_row hosted_rows[] = {
    {"outlast_agents_hosted", "gauge",
     "Agent instances on this node (active, committing, faulted or "
     "degraded).",
     OB(hosted)},
    {"outlast_agents_degraded", "gauge",
     "Agents here whose stored checkpoint failed verification.",
     OB(degraded)},
    {"outlast_agent_events_queued", "gauge",
     "Events waiting to be handled, summed over the agents hosted here.",
     OB(queued_sum)},
    {"outlast_agent_events_queued_max", "gauge",
     "Events waiting at the busiest agent hosted here.", OB(queued_max)},
    {"outlast_messages_held", "gauge",
     "Messages sent in steps whose checkpoint has not committed yet "
     "(released only once it does).",
     OB(held_sum)},
};

static const struct u64_row http_rows[] = {
    {"outlast_http_requests_total", "counter",
     "HTTP requests this endpoint answered.", OB(http_requests)},
    {"outlast_http_loop_jobs_total", "counter",
     "Times the event loop was asked for something by the HTTP endpoint: "
     "one observation per interval however many clients ask, and each log "
     "fetch.",
     OB(http_jobs)},
};

/* The node itself: build, steps, commits, quarantines, crashes, hosts. */
static void node_metrics(struct out *o, const struct ol__obs *ob)
{
    /* enum ol__crash_kind, in order. */
    static const char *const crash_kinds[] = {"signal", "exit", "deadline",
                                              "node"};
    char name[200];

    label_esc(ob->node_name, name, sizeof name);
    family(o, "outlast_build_info", "gauge",
           "Always 1; the labels say which outlast this is.");
    put(o,
        "outlast_build_info{version=\"%s\",node_id=\"%" PRIu64
        "\",node_name=\"%s\",mode=\"%s\"} 1\n",
        ob->version, ob->node_id, name, ob->cluster ? "cluster" : "single");
    one_f(o, "outlast_start_time_seconds", "gauge",
          "When this node started, in seconds since the Unix epoch.",
          (double)ob->started_ms / 1e3);
    u64_rows(o, ob, step_rows, N(step_rows));
    histogram(o, "outlast_commit_latency_seconds",
              "Time from proposing a checkpoint to its commit (fsync on a "
              "single node, a majority in a cluster), for agents hosted "
              "here.",
              &ob->commit, ol__lat_bounds_us, ol__lat_nbounds, 6);
    histogram(o, "outlast_commit_batch_checkpoints",
              "Checkpoints per commit batch: one group commit on a single "
              "node; in a cluster one raft entry (or the entries a new "
              "term's first commit released together).",
              &ob->rc.batch_sizes, ol__batch_bounds, ol__batch_nbounds, 0);
    one_u64(o, "outlast_commit_retries_total", "counter",
            ob->cluster ? "Proposals this node sent again (no outcome in "
                          "time, or a new leader)."
                        : "Group commits that failed and were retried.",
            ob->rc.failures);
    family(o, "outlast_quarantines_total", "counter",
           "Agents quarantined on this node's word, by reason: error (a "
           "plugin failure or a refused checkpoint) or crash_loop (this "
           "node reported the crash that reached crash_limit).");
    labelled(o, "outlast_quarantines_total", "reason", "error",
             ob->quarantined);
    labelled(o, "outlast_quarantines_total", "reason", "crash_loop",
             ob->quarantined_crash);
    family(o, "outlast_agent_crashes_total", "counter",
           "Crashes of agents' code on this node, by reason: signal (a "
           "fault or abort killed its host process), exit (it called "
           "exit()), deadline (a step overran step_deadline_ms and its "
           "host was killed) or node (in-process code took the node down; "
           "counted when the node starts again).");
    for (int k = 0; k < 4; k++)
        labelled(o, "outlast_agent_crashes_total", "reason", crash_kinds[k],
                 ob->crashes[k]);
    u64_rows(o, ob, host_rows, N(host_rows));
    one_u64(o, "outlast_lease_held", "gauge",
            "1 if this node may run its agents now (a single node always "
            "may).",
            (uint64_t)!ob->paused);
}

/* The agents: the cluster's from the database, this node's from the
 * loop; then the database's size. */
static void agent_metrics(struct out *o, const struct ol__obs *ob,
                          const struct ol__obs_db *d)
{
    static const char *const status[] = {"", "running", "stopping",
                                         "stopped", "quarantined", "removed"};

    if (d->ok) {
        family(o, "outlast_agents", "gauge",
               "Agents in the cluster by status (from the replicated "
               "database).");
        for (int s = 1; s <= OL_AGENT_STATUS_MAX; s++)
            labelled(o, "outlast_agents", "status", status[s],
                     d->by_status[s]);
        one_u64(o, "outlast_mailbox_messages", "gauge",
                "Messages delivered to mailboxes and not yet consumed.",
                d->mailbox_total);
        one_u64(o, "outlast_mailbox_messages_max", "gauge",
                "The deepest mailbox, in messages.", d->mailbox_max);
    }
    u64_rows(o, ob, hosted_rows, N(hosted_rows));
    if (d->db_bytes >= 0)
        one_u64(o, "outlast_db_size_bytes", "gauge",
                "Size of the node's database file.", (uint64_t)d->db_bytes);
    if (d->wal_bytes >= 0)
        one_u64(o, "outlast_db_wal_size_bytes", "gauge",
                "Size of the database's write-ahead log.",
                (uint64_t)d->wal_bytes);
}

int ol__metrics_text(const struct ol__obs *ob, const struct ol__obs_db *d,
                     struct ol__buf *b)
{
    struct out o = {b, 0};
    msgpack_unpacked u;
    const msgpack_object *st = NULL;

    msgpack_unpacked_init(&u);
    if (ob->status_mp &&
        msgpack_unpack_next(&u, (const char *)ob->status_mp, ob->status_len,
                            NULL) == MSGPACK_UNPACK_SUCCESS)
        st = &u.data;
    node_metrics(&o, ob);
    agent_metrics(&o, ob, d);
    u64_rows(&o, ob, http_rows, N(http_rows));
    one_f(&o, "outlast_http_loop_seconds_total", "counter",
          "CPU time the node's event loop spent answering HTTP requests "
          "(it only copies counters; database reads run on the request "
          "threads).",
          (double)ob->http_loop_us / 1e6);
    if (ob->cluster && st)
        cluster_metrics(&o, ob, st);
    process_metrics(&o);
    msgpack_unpacked_destroy(&u);
    return o.bad ? OL_ENOMEM : 0;
}
