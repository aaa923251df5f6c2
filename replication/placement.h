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
};

struct ol__pl_move {
    char agent[OL_NAME_MAX + 1];
    uint64_t owner;
    uint64_t inc;
    uint64_t epoch;
    int reason; /* OL_PL_PLACE, OL_PL_FAILOVER, OL_PL_REGRANT, OL_PL_BALANCE */
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

/* Copy the value of `key=` from a "k=v,k=v" label string. */
void ol__label_get(const char *labels, const char *key, char *out,
                   size_t cap);

#endif
