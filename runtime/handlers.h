/*
 * The daemon's answers to control requests (handlers*.c), and the
 * requests waiting for a command to commit.
 */
#ifndef OL_HANDLERS_H
#define OL_HANDLERS_H

#include <msgpack.h>

#include "ctl.h"
#include "state/sm.h"

struct ol__node;

void ol__ctl_handle(void *data, struct ol__ctl_req *req, const char *op,
                    const msgpack_object *args);
void ol__waiters_effect(struct ol__node *n, const struct ol__effect *e,
                        const struct ol__sm_agent *row);
void ol__waiters_agent(struct ol__node *n, const struct ol__sm_agent *row);
/* A spawn that waits for the agent's first checkpoint: it committed. */
void ol__waiters_ckpt(struct ol__node *n, const char *name);
void ol__waiters_drop(struct ol__node *n);

#endif
