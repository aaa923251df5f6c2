/*
 * Cluster integration test support: N real outlastd processes that form
 * one raft group, each a `struct td` with its own temp dir, node key and
 * config, plus the waits the cluster tests need and the checker of the
 * invariants in DESIGN.md over every node's SQLite file.
 *
 * Nodes have ids 1..n and index id - 1.  Every wait is bounded by a
 * deadline.  Node i listens on 127.0.0.1:base+i unless the test sets
 * `addr` (and `ns`, a network namespace to run it in; `env`, variables
 * for its environment) before tc_start().
 */
#ifndef OL_TEST_CLUSTER_H
#define OL_TEST_CLUSTER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "daemon.h"

#define TC_MAX_NODES 7

struct tc_node {
    struct td d;
    uint64_t id;
    char addr[64];     /* host:port it listens on */
    char pk[65];       /* public key, hex */
    char labels[64];   /* cloud=c<id> */
    char ns[64];       /* network namespace to run in; "" for none */
    char env[3][1024]; /* "NAME=value" set in its environment; "" unused */
    int up;            /* started and not killed since */
};

struct tc_opts {
    int n;                       /* nodes, 1..TC_MAX_NODES */
    const char *tag;             /* temp dir tag */
    unsigned snapshot_threshold; /* 0: the product default */
    unsigned snapshot_trailing;  /* used when snapshot_threshold is set */
    unsigned snapshot_mb;        /* 0: the product default */
    unsigned segment_mb;         /* raft segment size; 0: 8 MiB, which
                                    keeps a test's disk use low */
    unsigned failover_ms;        /* 0: 1000 */
    const char *extra;           /* appended to every node's config (a
                                    section or key given twice is an
                                    error) */
    const char *cluster_extra;   /* more lines for every node's [cluster] */
};

struct tc_seen; /* rows observed during the test */

struct tc {
    int n;
    int base_port;
    char name[32]; /* cluster name */
    struct tc_opts opts;
    struct tc_node nodes[TC_MAX_NODES];
    struct tc_seen *seen;
};

/* One node's answer to cluster.status. */
struct tc_status {
    char role[16];
    uint64_t leader, term, commit_index, applied_index, store_applied;
    int lease;
    int64_t lease_ms, lease_margin_ms; /* margin: INT64_MIN when unknown */
    uint64_t snapshots_installed, snapshots_taken;
    /* the leader's append completions (replication/ackpace.h) */
    uint64_t appends_passed, appends_held_to_majority, appends_held_to_guard;
    int n_nodes;
    struct {
        uint64_t id;
        char health[16];
        uint64_t agents;
        char pk[65];
        int voter;
    } nodes[16];
};

/* An agent row as the `agents` op shows it. */
struct tc_agent {
    char name[65];
    char status[16];
    uint64_t owner, epoch, seq;
};

/* Create temp dirs and keys for opts->n nodes and pick a free port range.
 * Configs are written by tc_start(), so a test may still change `addr`
 * and `ns` in between. */
void tc_init(struct tc *c, const struct tc_opts *opts);

/* Write every node's config and start all nodes; each must answer on its
 * control socket.  Fails the test otherwise. */
void tc_start(struct tc *c);

/* Write node i's config (tc_start() does it for every node). */
void tc_write_config(struct tc *c, int i);

/* The start of a config for node `id` of cluster c listening at `addr`:
 * its [node], [checkpoint] and [cluster] keys, [cluster] left open for
 * more; tc_write_config() begins with it. */
void tc_write_head(FILE *f, const struct tc *c, uint64_t id,
                   const char *data, const char *labels, const char *addr,
                   unsigned failover_ms);

/* A [peer] section for every node of c but the one numbered `self`. */
void tc_write_peers(FILE *f, const struct tc *c, uint64_t self);

/* Start (or restart) node i and wait until it answers; 0 or -1 (if it
 * exited, nodes[i].d.status holds its wait status). */
int tc_start_node(struct tc *c, int i, int timeout_ms);

/* Record the committed rows of every running node, then SIGKILL node i. */
void tc_kill(struct tc *c, int i);

/* Kill every node and delete the temp dirs (unless OL_KEEP_TMP is set). */
void tc_cleanup(struct tc *c);

/* Fail the test if a node that should be running has exited on its own
 * (naming the signal or exit code).  Every wait here calls it. */
void tc_expect_running(struct tc *c);

/* cluster.status of node i; 0 or -1. */
int tc_status(struct tc *c, int i, struct tc_status *out);

/* Wait until one node leads and every running node in `mask` (bit i for
 * node i; 0 for all running nodes) names it as leader.  Returns its index,
 * or -1 on timeout. */
int tc_wait_leader(struct tc *c, unsigned mask, int timeout_ms);
/* Wait until node index `want` leads and every running node in `mask`
 * (0: all) agrees.  Returns 1, or 0 after timeout_ms. */
int tc_wait_leads(struct tc *c, int want, unsigned mask, int timeout_ms);
/* Wait until node i's database holds `more` checkpoints than now.
 * Returns 1, or 0 after timeout_ms. */
int tc_wait_commits(struct tc *c, int i, int64_t more, int timeout_ms);

/* The agents table as node i's `agents` op shows it; returns how many
 * (at most cap), or -1 if the node did not answer. */
int tc_agents(struct tc *c, int i, struct tc_agent *out, int cap);

/* Index of the node with id `id`, or -1. */
int tc_index(const struct tc *c, uint64_t id);

/* Running agents owned by node `owner` in node `via`'s view. */
int tc_agents_on(struct tc *c, int via, int owner, struct tc_agent *out,
                 int cap);

/* Wait until each agent in `moved` (rows taken while `from` owned them)
 * has a new owner other than `from`, a newer epoch, and a committed
 * checkpoint under that epoch, as node `via`'s database shows.  Returns
 * 1, or 0 on timeout (with the first agent still waiting in `why`). */
int tc_wait_moved(struct tc *c, int via, const struct tc_agent *moved,
                  int n, int from, int timeout_ms, char *why, size_t cap);

/* Wait until node `via` (a leader) sees node i as alive. */
int tc_wait_alive(struct tc *c, int via, int i, int timeout_ms);

/* Record (agent, seq, hash) of every committed checkpoint on every
 * running node.  A row seen before with another hash fails the test. */
void tc_observe(struct tc *c);

/* The invariant checker.  Every node must be running.  It observes once
 * more, waits (bounded) until every node has applied the highest commit
 * index any node reports, then checks every node's database:
 *  - every chain verifies (ol__verify_store, bad == 0);
 *  - no seq gap per agent, except where the row after the gap was
 *    installed from a snapshot (flags & 1);
 *  - every row ever observed is present with the same hash on every node
 *    (a node may lack it only inside such a snapshot gap);
 *  - every (agent, seq) two nodes both hold has the same hash, and no
 *    node has divergence evidence;
 *  - all checkpoints of one (agent, epoch), on all nodes, were signed by
 *    one node (the signer named in the seal body).
 * Failures are reported with cr_expect; returns the number of problems. */
int tc_check(struct tc *c, int timeout_ms);

/* Integer field `key` of the head state of `agent` in node i's database. */
int64_t tc_state_int(struct tc *c, int i, const char *agent,
                     const char *key, int64_t dflt);

/* Checkpoint rows and the store's applied index in node i's database. */
int64_t tc_ckpt_count(struct tc *c, int i);
int64_t tc_db_applied(struct tc *c, int i);

/* How many checkpoint rows of node i's database were signed by node
 * `signer`'s key (for `agent` only, unless NULL). */
int64_t tc_signed_by(struct tc *c, int i, int signer, const char *agent);

/* Pick a running follower (not `leader`) that owns at least one running
 * agent in the leader's view, skipping nodes in `skip` (bitmask); -1 if
 * none. */
int tc_pick_follower(struct tc *c, int leader, unsigned skip);

/* Count lines of node i's log that contain `needle`. */
int tc_log_count(struct tc *c, int i, const char *needle);

#endif
