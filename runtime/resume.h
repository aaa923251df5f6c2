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
 *
 * Most of starting an agent is loading and verifying its head checkpoint
 * (hash and decode the body, check it against its seal and its head
 * record).  When many agents wait, that is done off the loop: batches of
 * up to OL_RESUME_BATCH agents go to libuv's thread pool, two at a time
 * (resume_load.c), where their heads are loaded and verified with the
 * same checks, each batch on a read-only connection of its own, while the
 * loop hosts the batches before them, in order.  The loop hosts an agent from its preloaded head only
 * when its row still names that head's seq; otherwise, and for any head
 * that failed to load or verify, it loads the head itself as it always
 * did, so a bad head gives the same error and the same outcome (degraded,
 * or a storage fault) either way.
 */
#ifndef OL_RESUME_H
#define OL_RESUME_H

#include "state/sm.h"

struct ol__node;

#define OL_RESUME_SLICE_US 20000
/* Agents whose heads are loaded off the loop together, and the fewest
 * waiting that are worth a batch (fewer are started on the loop). */
#define OL_RESUME_BATCH 1024
#define OL_RESUME_BATCH_MIN 64

/* Set up the queue and its idle handle (before anything can fail). */
void ol__resume_init(struct ol__node *n);

/* Host `row`, which this node owns and hosts no instance of, now or in a
 * later slice. */
void ol__resume_host(struct ol__node *n, const struct ol__sm_agent *row);

/* Host `row` in a later slice, whatever is pending: a node restarted
 * over many agents queues them all (node_start.c). */
void ol__resume_queue(struct ol__node *n, const struct ol__sm_agent *row);

/* Agents waiting for their slice. */
size_t ol__resume_pending(const struct ol__node *n);

/* A batch of heads came back from the pool, or a group commit's effects
 * were delivered (the state machine is still): go on with the agents
 * waiting, if any. */
void ol__resume_kick(struct ol__node *n);

/* Drop the queue and close the handle (node shutdown). */
void ol__resume_close(struct ol__node *n);

#endif
