/*
 * How often each agent steps, as the leader sees it: an estimate of
 * committed checkpoints per second per agent, updated in O(1) for each
 * checkpoint the leader applies.  Placement (placement.h) calls an agent
 * busy when its rate is at least OL_PL_BUSY_CPS.  Pure logic: the caller
 * passes the time.
 */
#ifndef OL_STEPRATE_H
#define OL_STEPRATE_H

#include <stddef.h>
#include <stdint.h>

/* The estimate's time constant: a steady rate is learned (and forgotten)
 * over about this long. */
#define OL_STEPRATE_TAU_MS 5000
/* At most this many agents are tracked; checkpoints of agents past it are
 * not counted (those agents look idle).  About 150 bytes each with the
 * map's slot; a deleted agent's record stays until the table is dropped
 * (the leader drops it with its placements: leadership lost, a stall). */
#define OL_STEPRATE_MAX 200000
/* Agents at this rate or more are also kept in a small table of their
 * own, which ol__steprate_busy() asks first. */
#define OL_STEPRATE_HOT_CPS 1.0

struct ol__steprate;

/* NULL when out of memory. */
struct ol__steprate *ol__steprate_create(void);
/* NULL-safe. */
void ol__steprate_destroy(struct ol__steprate *r);

/*
 * One committed checkpoint of `agent` at `now_ms` (a monotonic clock).
 * The rate is an EWMA of the instantaneous rate 1/dt with weight
 * dt / (tau + dt), which for a steady stream converges to the true rate
 * whatever the spacing, and for a burst (dt = 0) adds 1/tau per event.
 */
void ol__steprate_note(struct ol__steprate *r, const char *agent,
                       uint64_t now_ms);

/* `agent`'s rate in checkpoints per second at `now_ms`: its last estimate
 * decayed by tau / (tau + time since its last checkpoint), so an agent
 * that stopped stepping goes idle.  0 for an agent never seen.  NULL-safe. */
double ol__steprate_get(const struct ol__steprate *r, const char *agent,
                        uint64_t now_ms);

/* Whether `agent`'s rate at `now_ms` is at least `cps`: the same answer
 * as ol__steprate_get() >= cps.  For cps at or above OL_STEPRATE_HOT_CPS
 * an agent that never stepped that often is answered without a lookup in
 * the table of all agents.  0 for a NULL table. */
int ol__steprate_busy(const struct ol__steprate *r, const char *agent,
                      uint64_t now_ms, double cps);

/* How many agents reached OL_STEPRATE_HOT_CPS at their last checkpoint
 * (an upper bound on how many are that busy now). */
size_t ol__steprate_hot(const struct ol__steprate *r);

/* How many agents are tracked. */
size_t ol__steprate_count(const struct ol__steprate *r);

#endif
