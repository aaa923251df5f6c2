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
#include "metrics_int.h"
#include "obs.h"
#include "state/store.h"

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
        ol__metrics_cluster(&o, ob, st);
    process_metrics(&o);
    msgpack_unpacked_destroy(&u);
    return o.bad ? OL_ENOMEM : 0;
}
