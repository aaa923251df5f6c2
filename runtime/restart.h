/*
 * Starting an agent's instance again (restart.c): after its host process
 * died, after a crash was recorded, or to move it to new code.
 */
#ifndef OL_RESTART_H
#define OL_RESTART_H

#include <stdint.h>

#include "state/sm.h"

struct ol__node;
struct ol_agent;

/* How an agent lost its host process (ol__agent_host_lost). */
enum ol__lost {
    OL_LOST_OTHER = 0,   /* another agent's code took the host down */
    OL_LOST_CRASH = 1,   /* its own code did */
    OL_LOST_LOAD = 2,    /* the plugin did not load */
};

/* How an agent's code crashed, for the counters (outlast status, and
 * outlast_agent_crashes_total{reason} in /metrics). */
enum ol__crash_kind {
    OL_CRASH_SIGNAL = 0,   /* a fault or abort killed its host */
    OL_CRASH_EXIT = 1,     /* its code called exit() */
    OL_CRASH_DEADLINE = 2, /* a step overran step_deadline_ms */
    OL_CRASH_NODE = 3,     /* it took the node down (found at restart) */
    OL_CRASH_KINDS = 4
};
/* "signal", "exit", "deadline", "node". */
const char *ol__crash_kind_name(int kind);

/* Drop the instance and start again from the committed head (same epoch,
 * the kind's current code), once no checkpoint is in flight. */
void ol__agent_rehost(struct ol_agent *a);
/* Start the instance again after `ms`, for a reason that is this node's
 * trouble rather than the agent's (nothing is counted). */
void ol__agent_retry_later(struct ol_agent *a, uint64_t ms, const char *why);
/* `kind` (enum ol__crash_kind) says how, when `how` is OL_LOST_CRASH. */
void ol__agent_host_lost(struct ol_agent *a, int how, int kind,
                         const char *why);
/* A CRASH command's outcome (req matches a->crash_req or a marked
 * crash); `row` is the agent row it left, or NULL. */
void ol__agent_crash_recorded(struct ol__node *n, const char *name,
                              uint64_t req, int status,
                              const struct ol__sm_agent *row);

#endif
