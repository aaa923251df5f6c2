/*
 * What step.c (delivering events) and step_ckpt.c (taking checkpoints)
 * share and nobody else needs.
 */
#ifndef OL_STEP_INT_H
#define OL_STEP_INT_H

#include <stddef.h>
#include <stdint.h>

struct ol_agent;

/* Does the checkpoint policy want one now, after an event of `type`? */
int ol__step_policy_due(const struct ol_agent *a, int type);
/* Arm the flush timer: a checkpoint by every_ms at the latest. */
void ol__step_arm_flush(struct ol_agent *a);
/* Check the state save() produced (`save_rv` its return) and propose the
 * agent's next checkpoint over it.  0 or an OL_E* code. */
int ol__step_propose(struct ol_agent *a, const uint8_t *state, size_t len,
                     int save_rv);

#endif
