/*
 * The host services for plugins run inside the node (host.c), and
 * entering and leaving their code on the loop thread.
 */
#ifndef OL_HOST_H
#define OL_HOST_H

#include <stdint.h>

#include "outlast/agent.h"

struct ol__node;
struct ol__code;
struct ol_agent;

extern const struct ol_host ol__host_table;
int ol__inproc_bind(struct ol__node *n, struct ol__code *c, char *errmsg);
int ol__inproc_start(struct ol__node *n, char *errmsg);
void ol__inproc_stop(struct ol__node *n);
/* Enter and leave plugin code on the loop thread. */
void ol__inproc_enter(struct ol_agent *a, uint32_t phase, int event);
void ol__inproc_leave(struct ol_agent *a);
struct ol__ipc_perform;
/* Start an attempt at an effect of an agent in the node, on the node's
 * work pool.  0 or OL_ENOMEM. */
int ol__inproc_perform(struct ol_agent *a, const struct ol__ipc_perform *p);

#endif
