/*
 * Hosting many agents at once without stalling the loop.  When one
 * applied entry hands this node thousands of agents (a failover of a
 * whole node), starting each (verify its head, decode, open it in its
 * host) costs a few hundred microseconds; done in one go, the loop would
 * stop answering the cluster for seconds, and a node that does not
 * answer loses its lease (and a leader its view of who is alive).  So
 * the agents this node must newly host are started in slices of at most
 * OL_RESUME_SLICE_US of work per loop iteration, in the order their rows
 * were applied, with network and timers served in between.  Each is
 * looked up again in the state machine when its turn comes: only an
 * agent still owned here is hosted, under the row as it is then.
 */
#ifndef OL_RESUME_H
#define OL_RESUME_H

#include "state/sm.h"

struct ol__node;

#define OL_RESUME_SLICE_US 20000

/* Set up the queue and its idle handle (before anything can fail). */
void ol__resume_init(struct ol__node *n);

/* Host `row`, which this node owns and hosts no instance of, now or in a
 * later slice. */
void ol__resume_host(struct ol__node *n, const struct ol__sm_agent *row);

/* Agents waiting for their slice. */
size_t ol__resume_pending(const struct ol__node *n);

/* A batch's effects were delivered (the state machine is still): go on
 * with the agents waiting, if any. */
void ol__resume_kick(struct ol__node *n);

/* Drop the queue and close the handle (node shutdown). */
void ol__resume_close(struct ol__node *n);

#endif
