/*
 * A real outlast cluster for the benchmarks: N `outlastd` processes on
 * loopback (or, with OL_WAN_SITES set, one per site of the WAN test bed:
 * see cb_wan_site() in cb_proc.h) in a fresh scratch directory, each with
 * a generated key, a config with [cluster] and one [peer.ID] per other
 * node and `bootstrap = true`, and the control calls the benchmarks need.
 */
#ifndef OL_BENCH_CB_OUTLAST_H
#define OL_BENCH_CB_OUTLAST_H

#include <limits.h>
#include <msgpack.h>
#include <stdint.h>
#include <sys/types.h>

#include "cb_proc.h"

#define CB_OL_MAX 3

struct cb_ol_opts {
    int n;                 /* nodes, 1..CB_OL_MAX */
    uint32_t election_ms;  /* election_timeout_ms */
    uint32_t heartbeat_ms; /* heartbeat_timeout_ms */
    uint32_t failover_ms;
    const char *log_level; /* outlastd's [node] log_level */
    const char *cluster_extra; /* more lines for [cluster], or NULL */
    const char *extra;         /* more sections at the end, or NULL */
    char outlastd[PATH_MAX];
    char plugin_dir[PATH_MAX];
};

struct cb_ol_node {
    uint64_t id;
    pid_t pid;
    int port;
    char dir[PATH_MAX];  /* data_dir */
    char conf[PATH_MAX];
    char log[PATH_MAX];
    char sock[PATH_MAX];
    char db[PATH_MAX];
    char addr[CB_WAN_NAME + 8]; /* it listens on: 127.0.0.1:port, or its
                                   WAN site's address:port */
    char ns[CB_WAN_NAME];       /* its WAN site's network namespace, or "" */
};

struct cb_ol {
    struct cb_ol_opts o;
    char root[PATH_MAX];
    struct cb_ol_node nodes[CB_OL_MAX];
};

/* One node's `status` figures. */
struct cb_ol_status {
    uint64_t checkpoints;
    uint64_t batches;
    uint64_t p50_us, p99_us, max_us, samples;
    uint64_t agents_total, agents_local;
    int leader;          /* role is "leader" */
    uint64_t t_us;       /* when the answer arrived (CLOCK_MONOTONIC) */
    double cpu_s;        /* the process's CPU seconds then */
    char http[64];       /* its HTTP address, "" if none */
};

/* One node's `cluster.status` view. */
struct cb_ol_view {
    uint64_t leader, term, commit_index;
    uint64_t snapshots_taken; /* by this node since it started */
    int role_leader;
    int n_nodes;
    struct {
        uint64_t id, agents;
        char health[16];
    } nodes[CB_OL_MAX];
};

struct cb_ol_agent {
    char name[72];
    uint64_t owner, epoch, seq;
    int running;
};

/* Send one packed control request (a msgpack map with "op") to node
 * `via` and wait for its answer: 0 when it says ok, else -1 with its
 * error in err (OL_ERRMSG_SIZE bytes). */
int cb_ol_request(struct cb_ol *c, int via, const void *req, size_t len,
                  char *err);

/* Fill in the defaults: 3 nodes, election 300 ms, heartbeat 50 ms,
 * failover 600 ms, binaries found from this executable's build tree. */
void cb_ol_defaults(struct cb_ol_opts *o);

/* Create the scratch directory, keys and configs.  0 or -1 (message on
 * stderr). */
int cb_ol_init(struct cb_ol *c, const struct cb_ol_opts *o);

/* Start node i and wait until its control socket answers.  0 or -1. */
int cb_ol_start_node(struct cb_ol *c, int i, int timeout_ms);
int cb_ol_start(struct cb_ol *c, int timeout_ms);

/* kill -9 node i (no reap delay beyond waitpid). */
void cb_ol_kill(struct cb_ol *c, int i);

/* Kill every node and remove the scratch directory.  NULL-safe. */
void cb_ol_destroy(struct cb_ol *c);

/* A node that exited on its own: its index, or -1. */
int cb_ol_dead(struct cb_ol *c);

int cb_ol_index(const struct cb_ol *c, uint64_t id);

/* Control calls.  0, or -1 when the node did not answer `ok`. */
int cb_ol_status(struct cb_ol *c, int i, int reset, struct cb_ol_status *out);
int cb_ol_view(struct cb_ol *c, int i, struct cb_ol_view *out);

/* The agents table as node i sees it (malloc'd into *out).  With `ready`,
 * also counts the agents hosted on node i whose first checkpoint has
 * committed.  Returns the number of rows or -1. */
int cb_ol_agents(struct cb_ol *c, int i, struct cb_ol_agent **out,
                 uint32_t *ready);

/* The leader's index once every running node agrees on it and it says it
 * leads, or -1 after timeout_ms. */
int cb_ol_wait_leader(struct cb_ol *c, int timeout_ms);

/* Stop an agent (answers once its final checkpoint committed).  0 or -1. */
int cb_ol_stop(struct cb_ol *c, int via, const char *name);

/* Spawn `n` benchload agents named PREFIXnnnnnn through node `via`, with
 * `inflight` spawn requests outstanding at once (one connection each).
 * `config` is the agent's config as a msgpack map.  0 or -1. */
int cb_ol_spawn(struct cb_ol *c, int via, const char *prefix, uint32_t n,
                uint32_t inflight, const void *config, size_t config_len);

/* benchload's config {size, interval_ms?, start_at_ms?} as msgpack
 * (malloc'd); 0 leaves a key out. */
void *cb_benchload_config(uint32_t size, uint32_t interval_ms,
                          uint64_t start_at_ms, size_t *len);

#endif
