/*
 * Placement: which node should own each agent.  Pure logic over the state
 * machine's view and what the leader knows about each node: no clock, no
 * I/O, no cluster state.  The leader (cluster_place.c) fills one
 * struct ol__pl_node per roster member from its liveness records, calls
 * ol__placement(), and proposes the PLACE or MOVE commands for the moves
 * it returns; tests/unit/test_placement.c calls it the same way.
 */
#ifndef OL_PLACEMENT_H
#define OL_PLACEMENT_H

#include <stddef.h>
#include <stdint.h>

#include "state/sm.h"

enum ol__pl_health {
    OL_PL_UNKNOWN = 0, /* not heard from yet; within the grace period */
    OL_PL_LIVE = 1,    /* pinging; `inc` is its current incarnation */
    OL_PL_DEAD = 2,    /* silent for longer than the failover time */
};

struct ol__pl_node {
    uint64_t id;
    uint64_t inc;
    int health;
    char cloud[64]; /* the `cloud=` label, "" if none */
    uint32_t load;  /* filled in by ol__placement() */
    int nohost;     /* a witness or standby: never hosts an agent */
    const char *labels; /* all its labels (borrowed), for affinity; may
                         * be NULL */
    uint32_t rtt_us; /* round trip to the leader (0: the leader itself;
                      * OL_PL_RTT_UNKNOWN: no sample yet) */
    uint32_t busy;   /* busy agents on it; filled in by placement */
};

/*
 * Busy agents stay near the leader.  Every step of an agent is a commit,
 * and a commit costs its owner one round trip to the leader more than it
 * costs the leader itself; an agent that steps often gains most from an
 * owner near the leader.  The leader estimates each agent's rate of
 * committed checkpoints (steprate.h); at OL_PL_BUSY_CPS or more per
 * second the agent is busy.  For a busy agent, among the nodes that rank
 * best for it by the rules below (roles, avoid, prefer, a failover's other
 * cloud: unchanged), placement takes the one with the lowest RTT to the
 * leader (in steps of OL_PL_NEAR_HYST_US: nodes on one LAN are all as
 * near, and the least loaded of them wins) that is below the fair-share caps (ties: least loaded, lowest
 * id): its busy agents below ceil(B / N) + slack, and those of all the
 * nodes of its cloud below ceil(B / C) + slack, for B busy agents, N
 * candidate nodes and C clouds among the nodes that may host agents (a
 * node without a `cloud=` label is a cloud of its own); slack is a
 * quarter of the share, at least 1 (ol__pl_busy_cap).  So the near nodes
 * fill first, but no node and no cloud holds much more than its share: a
 * node or a cloud that fails takes about its share of busy agents, not
 * most of them.  With no node below the caps, and for idle agents, the
 * least-loaded rule.  Rebalancing moves at most one busy agent per pass
 * onto a node at least OL_PL_NEAR_HYST_US nearer the leader, below the
 * caps, that its prefer/avoid allow (never onto an avoided node, never off
 * a preferred one onto one that is not); and load rebalancing moves a
 * busy agent to a node farther from the leader (by the hysteresis, both
 * RTTs known) only off a node over the node cap.
 * RTTs come from the transport's pings (transport.h, their moving
 * average); a node without a sample counts as the farthest.
 */
#define OL_PL_BUSY_CPS 2.0        /* checkpoints per second */
#define OL_PL_NEAR_HYST_US 10000  /* 10 ms */
#define OL_PL_RTT_UNKNOWN UINT32_MAX

/* A fair-share cap on busy agents: `busy_total` of them shared by `n`
 * nodes (or clouds): ceil(busy_total / n) plus a quarter of that, at
 * least 1 (see above). */
uint32_t ol__pl_busy_cap(uint32_t busy_total, uint32_t n_nodes);

/* An agent's affinity: label lists "k=v,k=v" (NULL or "": none).  A node
 * matches a list when any of its items is one of the node's labels. */
struct ol__pl_affinity {
    const char *prefer;
    const char *avoid;
};

/* Fill `out` with agent `a`'s affinity; may leave it empty. */
typedef void (*ol__pl_affinity_fn)(void *data, const struct ol__sm_agent *a,
                                   struct ol__pl_affinity *out);

struct ol__pl_move {
    char agent[OL_NAME_MAX + 1];
    uint64_t owner;
    uint64_t inc;
    uint64_t epoch;
    int reason; /* OL_PL_PLACE, OL_PL_FAILOVER, OL_PL_REGRANT, OL_PL_BALANCE */
    int avoided; /* it goes to a node it avoids: no other node was up */
    int closer;  /* a rebalance of a busy agent nearer the leader */
    uint32_t rtt_from_us, rtt_to_us; /* closer: the two nodes' RTTs */
};

enum {
    OL_PL_PLACE = 1,    /* not placed yet */
    OL_PL_FAILOVER = 2, /* its owner is dead */
    OL_PL_REGRANT = 3,  /* its owner restarted */
    OL_PL_BALANCE = 4,  /* spreading load after a node came back */
};

/* Skip agents the caller is already moving. */
typedef int (*ol__pl_skip_fn)(void *data, const char *agent);

/*
 * Decide moves for every running or stopping agent.  Agents not placed yet
 * wait while any node's health is unknown.  At most `cap` moves
 * go to `out`; returns how many.  With `rebalance`, also move at most one
 * agent from the busiest live node to the idlest when they differ by two
 * or more (plus a quarter of the average).  Failover prefers a node in a
 * different cloud from the dead owner; ties go to the least loaded node,
 * then the lowest id.
 */
size_t ol__placement(const struct ol__sm *sm, struct ol__pl_node *nodes,
                     size_t n_nodes, int rebalance, ol__pl_skip_fn skip,
                     void *skip_data, struct ol__pl_move *out, size_t cap);

/*
 * The same with roles and affinity.  A node with `nohost` set (a witness
 * or a standby) never receives an agent, and agents on one move off it.
 * Among the other live nodes (running the wanted build) a target is chosen
 * by, in order: not avoided by the agent (an avoided node is taken only
 * when no other node is up: the move says so in `avoided`), preferred by
 * it, for a failover outside the dead owner's cloud, least loaded, lowest
 * id.  Rebalancing never moves an agent onto a node it avoids, nor from a
 * node it prefers onto one it does not.  `aff` may be NULL (no agent has
 * an affinity).
 */
size_t ol__placement_aff(const struct ol__sm *sm, struct ol__pl_node *nodes,
                         size_t n_nodes, int rebalance, ol__pl_skip_fn skip,
                         void *skip_data, ol__pl_affinity_fn aff,
                         void *aff_data, struct ol__pl_move *out,
                         size_t cap);

/* Whether agent `a` steps often enough to count as busy. */
typedef int (*ol__pl_busy_fn)(void *data, const struct ol__sm_agent *a);

/* Everything a placement pass takes besides the state and the nodes. */
struct ol__pl_opts {
    int rebalance;
    ol__pl_skip_fn skip;  /* may be NULL */
    void *skip_data;
    ol__pl_affinity_fn aff; /* may be NULL: no agent has an affinity */
    void *aff_data;
    ol__pl_busy_fn busy; /* may be NULL: every agent is idle */
    void *busy_data;
};

/* ol__placement_aff() with busy agents kept near the leader (above); the
 * nodes' rtt_us must be filled in. */
size_t ol__placement_run(const struct ol__sm *sm, struct ol__pl_node *nodes,
                         size_t n_nodes, const struct ol__pl_opts *o,
                         struct ol__pl_move *out, size_t cap);

/* Whether label string `labels` holds any "k=v" item of `list`; 0 when
 * either is NULL or empty. */
int ol__label_match(const char *labels, const char *list);

/* Whether `list` is a well-formed affinity list: "k=v" items, comma
 * separated, each key and value of letters, digits, _ . - */
int ol__label_list_valid(const char *list);

/*
 * The hand-off wait of a move of an agent from node `from` (0: never
 * placed) to node `to`, in milliseconds; 0 when the new owner may start at
 * once.  A move off a node the leader saw die (`from_health` OL_PL_DEAD:
 * silent for the whole failover time, so its lease ran out long ago), a
 * first placement and a re-grant to the same node need none.  Any other
 * move takes the agent from a node that may still run it: the new owner
 * waits out the longest lease the old owner can still hold.  That lease
 * was granted before the move committed (the leader grants none to a node
 * that has not applied it, cluster_lease.c) and lasts `lease_ms` on the old
 * owner's clock; the wait is measured on the new owner's clock from when
 * it applies the move.  With clock rates within drift_pct of each other's,
 * lease_ms * (100 + drift_pct) / (100 - drift_pct) covers it (lease.h);
 * `heartbeat_ms` more covers the tick on which the old owner notices its
 * lease ran out.
 */
uint32_t ol__pl_handoff_ms(uint64_t from, uint64_t to, int from_health,
                           unsigned lease_ms, unsigned drift_pct,
                           unsigned heartbeat_ms);

/* A node's role, carried in the replicated roster as its label `role=`
 * (none: a voter).  A witness votes but hosts no agents; a standby is a
 * non-voting replica (libraft's RAFT_STANDBY) and hosts no agents. */
enum ol__node_role {
    OL_ROLE_VOTER = 0,
    OL_ROLE_WITNESS = 1,
    OL_ROLE_STANDBY = 2,
};

/* The role `labels` name; -1 for a `role=` value that is no role. */
int ol__label_role(const char *labels);
/* "voter", "witness" or "standby"; NULL for anything else. */
const char *ol__role_name(int role);
/* The role named `name`, or -1. */
int ol__role_parse(const char *name);
/* `labels` with its `role=` item replaced by `role` (dropped for a voter)
 * into `out`.  Returns 0, or -1 when it does not fit. */
int ol__labels_with_role(const char *labels, int role, char *out,
                         size_t cap);

/* Copy the value of `key=` from a "k=v,k=v" label string. */
void ol__label_get(const char *labels, const char *key, char *out,
                   size_t cap);

#endif
