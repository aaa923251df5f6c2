/*
 * What the agent files (agent.c, agent_queue.c) share and nobody else
 * needs.
 */
#ifndef OL_AGENT_INT_H_
#define OL_AGENT_INT_H_

#include <stdint.h>

struct ol_agent;
struct ol__armed;

/* Queue a new event of `type` (START, RESUME, ...) with no payload. */
void ol__agent_push_new(struct ol_agent *a, int type);
/* The agent is being stopped for good: one STOP event, then its final
 * checkpoint. */
void ol__agent_push_final_stop(struct ol_agent *a);
/* Queue the next page of mailbox rows past the watermark; 0 or
 * OL_EIO. */
int ol__agent_load_mail(struct ol_agent *a);
/* Set a timer's due time, on both clocks. */
void ol__armed_set(struct ol__armed *t, int64_t due_ms);
/* agent_handoff.c: handed over from a node that may still run it: no
 * step for up to `ms` unless that node says it let the agent go. */
void ol__agent_handoff_begin(struct ol_agent *a, uint32_t ms);

#endif
