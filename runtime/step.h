/*
 * Delivering events to agents and taking their checkpoints (step.c): the
 * run queue, a host's step and save results, and committed checkpoints.
 */
#ifndef OL_STEP_H
#define OL_STEP_H

#include <stdint.h>
#include <uv.h>

#include "ipc.h"
#include "state/sm.h"

struct ol_agent;

void ol__runq_add(struct ol_agent *a);
/* Take an agent off the run queue (before it is freed). */
void ol__runq_remove(struct ol_agent *a);
void ol__runner_cb(uv_idle_t *h);
void ol__step_committed(struct ol_agent *a, const struct ol__effect *e);
int ol__step_checkpoint(struct ol_agent *a);
/* A host's results: one step, one save. */
void ol__step_result(struct ol_agent *a, const struct ol__ipc_result *r);
void ol__step_saved(struct ol_agent *a, const void *state, uint32_t len,
                    int rv);

#endif
