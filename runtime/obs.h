/*
 * Observation of a running node for /metrics, the status page and
 * `outlast top`, built so that looking costs the commit path nothing it can
 * notice.
 *
 * Two halves, on two threads:
 *  - ol__obs_collect() runs on the loop thread (which owns all node state)
 *    and only copies: counters, histograms, the replica's status map as
 *    msgpack, aggregates over the hosted agents, a capped list of their
 *    live rows, and the recent events.  No I/O, no queries.
 *  - ol__obs_db_read() runs on any other thread with a read-only
 *    connection of its own: agent counts by status, mailbox depths, a
 *    capped list of agent rows, and the database and WAL file sizes.
 * ol__metrics_text() and ol__status_json() then format the two halves,
 * also off the loop.
 */
#ifndef OL_OBS_H
#define OL_OBS_H

#include <jansson.h>
#include <limits.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sizes.h"
#include "replication/cluster.h"
#include "replication/replica.h"
#include "base/buf.h"
#include "events.h"
#include "base/hist.h"
#include "state/store.h"

struct ol__node;

/* One agent hosted here, as the loop sees it. */
struct ol__obs_agent {
    int hosted;             /* the rest is set only if it is hosted here */
    char phase[16];
    uint64_t epoch;
    uint64_t queued;        /* events waiting */
    uint64_t held;          /* messages sent since the last checkpoint */
    uint64_t steps;         /* events handled by this instance */
    uint64_t committed_seq;
    uint64_t commit_us;     /* its last checkpoint's commit latency */
    int64_t last_ckpt_ms;
    char reason[160];
};

struct ol__obs {
    /* the node */
    uint64_t node_id;
    char node_name[OL_NODE_NAME_MAX + 1];
    char version[32];
    char data_dir[PATH_MAX];
    char http_addr[64];
    uint64_t http_requests, http_jobs, http_loop_us;
    int cluster;
    int leader;             /* may place agents (always, alone) */
    int paused;             /* no lease */
    int stopping;
    int64_t started_ms, now_ms;
    /* counters since start */
    uint64_t steps, checkpoints, refused, quarantined;
    uint64_t steps_refused; /* reached a host after the lease ran out */
    uint64_t fx_attempts, fx_done, fx_dropped; /* effects */
    /* bad agents: crashes of agents' code by kind (signal, exit, deadline,
     * node), crash-loop quarantines this node's reports caused, and the
     * agent-host processes (running now, started, died unasked) */
    uint64_t crashes[4];
    uint64_t quarantined_crash;
    uint64_t hosts, host_starts, host_restarts;
    struct ol__phist commit;           /* us, over ol__lat_bounds_us */
    uint64_t p50_us, p99_us;           /* of the `status` window */
    struct ol__replica_counters rc;
    struct ol__cluster_metrics cm;     /* cluster only */
    /* the hosted agents */
    uint64_t hosted, active, degraded, faulted, inflight;
    uint64_t queued_sum, queued_max, held_sum;
    struct ol__obs_agent *live;        /* malloc'd: live[i] for rows[i] */
    uint32_t n_live;
    /* replica status (ol__cluster_status or the single node's), msgpack */
    uint8_t *status_mp;
    size_t status_len;
    /* recent events, oldest first */
    struct ol__event events[OL_EVENTS_MAX];
    uint32_t n_events;
};

/* One agent row from the database. */
struct ol__obs_row {
    char name[OL_NAME_MAX + 1];
    char kind[OL_KIND_MAX + 1];
    int status;
    uint64_t owner, epoch, seq, mailbox;
    int64_t time_ms;
    char reason[160];
};

/* On the loop thread: fill `o`, and live[i] for each of the `n_rows` agent
 * rows (read from the database before).  Returns 0 or OL_ENOMEM (then `o`
 * holds what fit; free it either way). */
int ol__obs_collect(struct ol__node *n, struct ol__obs *o,
                    const struct ol__obs_row *rows, uint32_t n_rows);
void ol__obs_free(struct ol__obs *o);

struct ol__obs_db {
    int ok;
    char errmsg[256];
    uint64_t by_status[OL_AGENT_STATUS_MAX + 1];      /* indexed by enum ol__agent_status */
    uint64_t total;
    uint64_t mailbox_total, mailbox_max;
    int64_t db_bytes, wal_bytes; /* -1: cannot stat */
    struct ol__obs_row *rows;    /* malloc'd: quarantined first, by name */
    uint32_t n_rows;
};

/* On any thread but the loop: read `db` (read-only, used by this thread
 * alone for the call) and stat `db_path` and its -wal.  At most rows_max
 * agent rows (0: none).  Never fails as a whole: d->ok and d->errmsg say
 * what could not be read. */
void ol__obs_db_read(sqlite3 *db, const char *db_path, uint32_t rows_max,
                     struct ol__obs_db *d);
void ol__obs_db_free(struct ol__obs_db *d);

/* The Prometheus text exposition (format 0.0.4).  0 or OL_ENOMEM. */
int ol__metrics_text(const struct ol__obs *o, const struct ol__obs_db *d,
                     struct ol__buf *out);

/* metrics_wire.c: the per-peer wire families (round trips, bytes each
 * way), appended to `out`.  0 or OL_ENOMEM. */
int ol__metrics_wire(struct ol__buf *out, const struct ol__transport_stats *t);

/* The status page's data as one JSON object (new reference, NULL when out
 * of memory).  `rows_max` is what the list was capped at. */
json_t *ol__status_json(const struct ol__obs *o, const struct ol__obs_db *d);

#endif
