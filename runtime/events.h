/*
 * The node's recent events for operators: agents that moved between nodes
 * (failover, re-grant, rebalancing), agents quarantined, and this node's
 * lease lost and regained.  A fixed ring of the last OL_EVENTS_MAX, fed
 * from the state machine's effects on the loop thread and copied out for
 * the status page.
 *
 * Moves are seen by comparing an agent's owner with the one it had before,
 * so in a cluster the node keeps each agent's last owner and status (a
 * name and two numbers per agent).  A single node never moves agents and
 * keeps nothing per agent.
 */
#ifndef OL_EVENTS_H
#define OL_EVENTS_H

#include <stdint.h>

#include "state/sm.h"
#include "base/map.h"

#define OL_EVENTS_MAX 64

enum ol__event_kind {
    OL_EV_MOVED = 1,       /* owner changed from `from` to `to` */
    OL_EV_QUARANTINED = 2, /* `text` is the reason */
    OL_EV_LEASE_LOST = 3,
    OL_EV_LEASE_HELD = 4,
};

struct ol__event {
    int64_t time_ms;
    int kind;
    char agent[OL_NAME_MAX + 1];
    uint64_t from, to, epoch;
    char text[160];
};

struct ol__events {
    struct ol__event ring[OL_EVENTS_MAX];
    uint32_t head, count;
    uint64_t total;      /* events ever recorded */
    int track_owners;    /* keep owners to see moves (cluster) */
    struct ol__map owners; /* name -> struct owner_ent */
};

void ol__events_init(struct ol__events *ev, int track_owners);
void ol__events_close(struct ol__events *ev);

/* An agent row changed (an OL_FX_AGENT effect, or a row loaded at start
 * with `initial` set, which only records the owner). */
void ol__events_agent(struct ol__events *ev, const struct ol__sm_agent *row,
                      int initial);

void ol__events_add(struct ol__events *ev, int kind, const char *agent,
                    uint64_t from, uint64_t to, uint64_t epoch,
                    const char *text);

/* Copy the events, oldest first, into out (at most OL_EVENTS_MAX);
 * returns how many. */
uint32_t ol__events_copy(const struct ol__events *ev, struct ol__event *out);

const char *ol__event_kind_name(int kind);

#endif
